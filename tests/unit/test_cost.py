"""Cost of a finished request and pre-run estimates, from catalog prices."""

from __future__ import annotations

import pytest

from sidecar.core.catalog import ModelInfo, PriceTier, lookup
from sidecar.core.cost import CostRange, TokenUsage, cost_usd, estimate
from sidecar.wire.base import Usage


def _info(provider: str, model: str) -> ModelInfo:
    info = lookup(provider, model)
    assert info is not None
    return info


def test_plain_usage() -> None:
    # gpt-4o-mini: $0.15 in, $0.60 out
    usage = TokenUsage(input_tokens=1_000, output_tokens=500)
    assert cost_usd(usage, _info("openai", "gpt-4o-mini")) == pytest.approx(0.00045)


def test_wire_usage_struct_is_accepted_as_is() -> None:
    usage = Usage(
        input_tokens=1_000, output_tokens=500, cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0
    )
    assert cost_usd(usage, _info("openai", "gpt-4o-mini")) == pytest.approx(0.00045)


def test_anthropic_cache_write_and_read() -> None:
    # claude-sonnet-4-5: $3 in, $15 out, $0.30 cache read, $3.75 cache write.
    # input_tokens counts everything: 100 uncached + 2,000 written + 10,000 read.
    usage = TokenUsage(
        input_tokens=12_100, output_tokens=400, cache_read_tokens=10_000, cache_write_tokens=2_000
    )
    expected = (100 * 3.00 + 2_000 * 3.75 + 10_000 * 0.30 + 400 * 15.00) / 1e6
    assert cost_usd(usage, _info("anthropic", "claude-sonnet-4-5-20250929")) == pytest.approx(expected)
    assert expected == pytest.approx(0.0168)


def test_openai_reasoning_tokens_are_billed_once_as_output() -> None:
    # o4-mini: $1.10 in, $4.40 out, $0.275 cached. 800 of the 1,000 output tokens were reasoning.
    usage = TokenUsage(input_tokens=2_000, output_tokens=1_000, cache_read_tokens=1_024, reasoning_tokens=800)
    expected = ((2_000 - 1_024) * 1.10 + 1_024 * 0.275 + 1_000 * 4.40) / 1e6
    assert cost_usd(usage, _info("openai", "o4-mini")) == pytest.approx(expected)
    without_breakdown = TokenUsage(input_tokens=2_000, output_tokens=1_000, cache_read_tokens=1_024)
    assert cost_usd(usage, _info("openai", "o4-mini")) == cost_usd(
        without_breakdown, _info("openai", "o4-mini")
    )


def test_cache_prices_fall_back_to_input_price() -> None:
    info = ModelInfo("test", "m", "M", 10_000, 1_000, input_per_mtok=2.0, output_per_mtok=4.0)
    cached = TokenUsage(input_tokens=1_000, output_tokens=0, cache_read_tokens=600, cache_write_tokens=400)
    plain = TokenUsage(input_tokens=1_000, output_tokens=0)
    assert cost_usd(cached, info) == cost_usd(plain, info) == pytest.approx(0.002)


def test_unknown_model_costs_none() -> None:
    usage = TokenUsage(input_tokens=10, output_tokens=10)
    assert cost_usd(usage, lookup("openai", "no-such-model")) is None
    assert cost_usd(usage, None) is None


def test_local_models_cost_zero_not_none() -> None:
    usage = TokenUsage(input_tokens=10_000, output_tokens=10_000)
    assert cost_usd(usage, _info("ollama", "llama3.2:3b")) == 0.0
    assert cost_usd(usage, _info("openrouter", "meta-llama/llama-3.3-70b-instruct:free")) == 0.0


def test_zero_and_inconsistent_usage() -> None:
    info = _info("anthropic", "claude-haiku-4-5")
    assert cost_usd(TokenUsage(), info) == 0.0
    # cache counts above the total leave no negative uncached input
    odd = TokenUsage(input_tokens=100, output_tokens=0, cache_read_tokens=150)
    assert cost_usd(odd, info) == pytest.approx(150 * 0.10 / 1e6)


def test_rounded_to_ten_decimals() -> None:
    usage = TokenUsage(input_tokens=1, output_tokens=1)
    result = cost_usd(usage, _info("openai", "gpt-5-nano"))  # 0.05 + 0.40 per million
    assert result is not None
    assert result == 4.5e-07 == round(result, 10)


def test_long_prompt_tier_applies_to_the_whole_request() -> None:
    pro = _info("gemini", "gemini-2.5-pro")  # <=200K: 1.25 / 10; >200K: 2.50 / 15
    short = cost_usd(TokenUsage(input_tokens=200_000, output_tokens=1_000), pro)
    long = cost_usd(TokenUsage(input_tokens=200_001, output_tokens=1_000), pro)
    assert short == pytest.approx((200_000 * 1.25 + 1_000 * 10) / 1e6)
    assert long == pytest.approx((200_001 * 2.50 + 1_000 * 15) / 1e6)
    # cache reads count toward the threshold: the prompt is every input token
    cached = TokenUsage(input_tokens=250_000, output_tokens=0, cache_read_tokens=240_000)
    assert cost_usd(cached, pro) == pytest.approx((10_000 * 2.50 + 240_000 * 0.25) / 1e6)


def test_tier_without_cache_prices_uses_tier_input() -> None:
    info = ModelInfo(
        "test", "m", "M", 1_000_000, 1_000, 1.0, 2.0, 0.1, None, long_context=PriceTier(100, 3.0, 4.0)
    )
    usage = TokenUsage(input_tokens=1_000, output_tokens=0, cache_read_tokens=500)
    assert cost_usd(usage, info) == pytest.approx(1_000 * 3.0 / 1e6)


# --- estimates -----------------------------------------------------------------------------------


def test_estimate_range() -> None:
    info = _info("openai", "gpt-4o")  # $2.50 in, $10 out
    rng = estimate(info, 10_000, 1_000)
    assert rng == CostRange(input_cost=0.025, min_total=0.025, max_total=0.035)
    assert rng.min_total <= rng.max_total


def test_estimate_defaults_to_the_models_output_cap() -> None:
    info = _info("anthropic", "claude-haiku-4-5")
    rng = estimate(info, 1_000)
    assert rng.max_total == pytest.approx((1_000 * 1.0 + info.max_output_tokens * 5.0) / 1e6)


def test_estimate_of_a_free_model_is_zero() -> None:
    assert estimate(_info("ollama", "phi4"), 5_000, 5_000) == CostRange(0.0, 0.0, 0.0)


def test_estimate_uses_the_long_tier() -> None:
    info = _info("xai", "grok-4-fast")
    assert estimate(info, 128_001, 0).input_cost == pytest.approx(128_001 * 0.40 / 1e6)
    assert estimate(info, 128_000, 0).input_cost == pytest.approx(128_000 * 0.20 / 1e6)


def test_estimate_max_matches_cost_of_a_full_length_answer() -> None:
    info = _info("gemini", "gemini-2.5-flash")
    rng = estimate(info, 3_000, 2_000)
    assert rng.max_total == cost_usd(TokenUsage(input_tokens=3_000, output_tokens=2_000), info)
    assert rng.input_cost == cost_usd(TokenUsage(input_tokens=3_000), info)


def test_estimate_clamps_negative_counts() -> None:
    assert estimate(_info("openai", "gpt-4o"), -5, -5) == CostRange(0.0, 0.0, 0.0)
