"""The curated model catalog: lookups, snapshot tolerance, sanity of every entry, PriceBook."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import pytest

from sidecar.core import catalog
from sidecar.core.catalog import (
    CAPABILITIES,
    CATALOG_DATE,
    ModelInfo,
    PriceBook,
    local_model_info,
    lookup,
    models_for,
    providers,
)

CURATED = [m for p in providers() for m in models_for(p)]

REQUIRED = {
    "openai": {
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "o3",
        "o4-mini",
        "gpt-5",
        "gpt-5-mini",
        "gpt-5-nano",
    },
    "anthropic": {
        "claude-opus-4-1",
        "claude-opus-4-5",
        "claude-sonnet-4-5",
        "claude-sonnet-4",
        "claude-haiku-4-5",
        "claude-3-5-haiku",
    },
    "gemini": {
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "gemini-2.0-flash",
        "gemini-3-pro-preview",
    },
    "xai": {"grok-4", "grok-4-fast", "grok-3", "grok-3-mini", "grok-code-fast-1"},
    "openrouter": {
        "openai/gpt-4o-mini",
        "anthropic/claude-sonnet-4.5",
        "google/gemini-2.5-flash",
        "meta-llama/llama-3.3-70b-instruct",
        "deepseek/deepseek-chat-v3.1",
        "x-ai/grok-4-fast",
    },
}


def test_catalog_date_is_an_iso_date() -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", CATALOG_DATE)


def test_providers_are_the_contract_ids() -> None:
    assert providers() == ["openai", "anthropic", "gemini", "xai", "openrouter", "ollama"]
    assert models_for("ollama") == []
    assert models_for("nope") == []


@pytest.mark.parametrize("provider", sorted(REQUIRED))
def test_required_models_are_present(provider: str) -> None:
    assert REQUIRED[provider] <= {m.model for m in models_for(provider)}


def test_ids_are_unique() -> None:
    keys = [(m.provider, m.model) for m in CURATED]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("info", CURATED, ids=lambda m: m.ref)
def test_every_entry_is_sane(info: ModelInfo) -> None:
    assert info.display_name
    assert info.context_window > info.max_output_tokens > 0
    assert info.input_per_mtok > 0
    assert info.output_per_mtok >= info.input_per_mtok
    if info.cache_read_per_mtok is not None:
        assert 0 < info.cache_read_per_mtok < info.input_per_mtok
        assert "prompt_cache" in info.capabilities
    if info.cache_write_per_mtok is not None:
        assert info.cache_write_per_mtok >= info.input_per_mtok
    assert info.capabilities <= CAPABILITIES
    assert "streaming" in info.capabilities
    tier = info.long_context
    if tier is not None:
        # <=: Anthropic's tier starts where the default window ends (it needs the 1M-context beta)
        assert tier.above_input_tokens <= info.context_window
        assert tier.input_per_mtok >= info.input_per_mtok
        assert tier.output_per_mtok >= info.output_per_mtok
        if tier.cache_read_per_mtok is not None:
            assert tier.cache_read_per_mtok < tier.input_per_mtok


@pytest.mark.parametrize("info", CURATED, ids=lambda m: m.ref)
def test_exact_lookup_is_the_entry_itself(info: ModelInfo) -> None:
    assert lookup(info.provider, info.model) is info


def test_anthropic_cache_writes_are_one_and_a_quarter_input() -> None:
    for info in models_for("anthropic"):
        assert info.cache_write_per_mtok == pytest.approx(info.input_per_mtok * 1.25)
        assert info.cache_read_per_mtok == pytest.approx(info.input_per_mtok * 0.1)


def test_openrouter_mirrors_match_upstream_prices() -> None:
    pairs = [
        ("openai/gpt-4o-mini", "openai", "gpt-4o-mini"),
        ("anthropic/claude-sonnet-4.5", "anthropic", "claude-sonnet-4-5"),
        ("google/gemini-2.5-flash", "gemini", "gemini-2.5-flash"),
        ("x-ai/grok-4-fast", "xai", "grok-4-fast"),
    ]
    for slug, provider, model in pairs:
        mirror, upstream = lookup("openrouter", slug), lookup(provider, model)
        assert mirror is not None and upstream is not None
        assert (mirror.input_per_mtok, mirror.output_per_mtok, mirror.cache_read_per_mtok) == (
            upstream.input_per_mtok,
            upstream.output_per_mtok,
            upstream.cache_read_per_mtok,
        )


@pytest.mark.parametrize(
    ("provider", "asked", "expected"),
    [
        ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
        ("openai", "gpt-4.1-2025-04-14", "gpt-4.1"),
        ("openai", "o3-2025-04-16", "o3"),
        ("openai", "gpt-5-mini-2025-08-07", "gpt-5-mini"),
        ("openai", "GPT-4o ", "gpt-4o"),
        ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("anthropic", "claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        ("anthropic", "claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("anthropic", "claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("anthropic", "claude-sonnet-4-0", "claude-sonnet-4"),
        ("anthropic", "claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("anthropic", "claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("anthropic", "claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("gemini", "models/gemini-2.5-flash", "gemini-2.5-flash"),
        ("gemini", "models/gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("gemini", "gemini-2.5-flash-preview-09-2025", "gemini-2.5-flash"),
        ("gemini", "gemini-2.5-flash-lite-preview-09-2025", "gemini-2.5-flash-lite"),
        ("gemini", "gemini-flash-latest", "gemini-2.5-flash"),
        ("xai", "grok-4-0709", "grok-4"),
        ("xai", "grok-3-latest", "grok-3"),
        ("xai", "grok-3-mini-latest", "grok-3-mini"),
        ("xai", "grok-4-fast-reasoning", "grok-4-fast"),
        ("xai", "grok-4-fast-non-reasoning", "grok-4-fast"),
    ],
)
def test_snapshots_and_aliases_resolve(provider: str, asked: str, expected: str) -> None:
    info = lookup(provider, asked)
    assert info is not None
    assert (info.provider, info.model) == (provider, expected)


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "chatgpt-4o-latest"),  # a different model with its own price
        ("openai", "o1-mini"),  # must not fall back to o1
        ("openai", "gpt-3.5-turbo-0125"),
        ("gemini", "gemini-2.0-flash-lite-001"),  # must not fall back to gemini-2.0-flash
        ("xai", "grok-3-fast"),  # priced above grok-3
        ("anthropic", "claude-3-opus"),
        ("openrouter", "openai/gpt-5:nitro"),  # a routing variant with its own price
        ("openrouter", "mistralai/mistral-large"),
        ("openrouter", "gpt-4o"),
        ("nope", "gpt-4o"),
        ("openai", ""),
        ("ollama", ""),
    ],
)
def test_unknown_models_are_none(provider: str, model: str) -> None:
    assert lookup(provider, model) is None


def test_dated_snapshot_with_its_own_price_is_not_folded_into_the_alias() -> None:
    old = lookup("openai", "gpt-4o-2024-05-13")
    assert old is not None and old.model == "gpt-4o-2024-05-13"
    assert old.input_per_mtok > catalog._CATALOG[("openai", "gpt-4o")].input_per_mtok


def test_openrouter_first_party_slugs_take_upstream_prices() -> None:
    info = lookup("openrouter", "anthropic/claude-opus-4.1")
    upstream = lookup("anthropic", "claude-opus-4-1")
    assert info is not None and upstream is not None
    assert (info.provider, info.model) == ("openrouter", "anthropic/claude-opus-4.1")
    assert (info.input_per_mtok, info.output_per_mtok) == (upstream.input_per_mtok, upstream.output_per_mtok)
    gpt5 = lookup("openrouter", "openai/gpt-5")
    assert gpt5 is not None and gpt5.output_per_mtok == 10.0
    pro = lookup("openrouter", "google/gemini-2.5-pro")
    assert pro is not None and pro.long_context is not None


def test_openrouter_free_variant_is_zero_priced() -> None:
    free = lookup("openrouter", "meta-llama/llama-3.3-70b-instruct:free")
    assert free is not None
    assert free.model == "meta-llama/llama-3.3-70b-instruct:free"
    assert free.is_free and free.cache_read_per_mtok is None and free.long_context is None
    paid = lookup("openrouter", "meta-llama/llama-3.3-70b-instruct")
    assert paid is not None and not paid.is_free


def test_ollama_models_are_free() -> None:
    info = lookup("ollama", "llama3.2:3b")
    assert info is not None
    assert info.ref == "ollama:llama3.2:3b"
    assert info.is_free
    assert info.context_window == catalog.OLLAMA_DEFAULT_CONTEXT
    custom = local_model_info("qwen3:8b", context_window=40_960, capabilities=["tools", "streaming", "bogus"])
    assert custom.context_window == custom.max_output_tokens == 40_960
    assert custom.capabilities == {"tools", "streaming"}
    assert local_model_info("x", context_window=0).context_window == catalog.OLLAMA_DEFAULT_CONTEXT


def test_model_info_is_frozen() -> None:
    info = lookup("openai", "gpt-4o")
    assert info is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.input_per_mtok = 0.0  # type: ignore[misc]


# --- PriceBook -----------------------------------------------------------------------------------


def _repriced(info: ModelInfo, input_per_mtok: float) -> ModelInfo:
    return dataclasses.replace(info, input_per_mtok=input_per_mtok)


def test_pricebook_without_overrides_is_the_catalog() -> None:
    book = PriceBook()
    info, date = book.price_for("openai", "gpt-4o-mini")
    assert info is lookup("openai", "gpt-4o-mini")
    assert date == CATALOG_DATE
    assert book.price_for("openai", "gpt-4o-mini-2024-07-18") == (info, CATALOG_DATE)
    assert book.price_for("openai", "nope") == (None, None)
    ollama, ollama_date = book.price_for("ollama", "llama3.2")
    assert ollama is not None and ollama.is_free and ollama_date == CATALOG_DATE


def test_overrides_win_with_their_own_date_and_leave_the_catalog_alone() -> None:
    base = lookup("openrouter", "meta-llama/llama-3.3-70b-instruct")
    assert base is not None
    book = PriceBook()
    newer = _repriced(base, 0.05)
    brand_new = ModelInfo("openrouter", "acme/new-model", "Acme New", 32_000, 4_000, 1.0, 2.0)
    assert book.apply_overrides([newer, brand_new], "2026-11-01") == 2
    assert book.override_count == 2
    assert book.price_for("openrouter", "meta-llama/llama-3.3-70b-instruct") == (newer, "2026-11-01")
    assert book.price_for("openrouter", "acme/new-model") == (brand_new, "2026-11-01")
    # the curated table is untouched, and other models keep the catalog date
    assert lookup("openrouter", "meta-llama/llama-3.3-70b-instruct") is base
    assert book.price_for("openai", "gpt-4o") == (lookup("openai", "gpt-4o"), CATALOG_DATE)
    listed = dict((m.model, d) for m, d in book.models_for("openrouter"))
    assert listed["meta-llama/llama-3.3-70b-instruct"] == "2026-11-01"
    assert listed["acme/new-model"] == "2026-11-01"
    assert listed["openai/gpt-4o-mini"] == CATALOG_DATE


def test_override_of_a_catalog_model_applies_to_its_snapshots() -> None:
    base = lookup("anthropic", "claude-sonnet-4-5")
    assert base is not None
    book = PriceBook()
    book.apply_overrides([_repriced(base, 2.0)], "2026-10-07")
    info, date = book.price_for("anthropic", "claude-sonnet-4-5-20250929")
    assert info is not None and info.input_per_mtok == 2.0 and date == "2026-10-07"


def test_later_overrides_replace_earlier_ones_and_can_be_cleared() -> None:
    base = lookup("xai", "grok-3")
    assert base is not None
    book = PriceBook()
    book.apply_overrides([_repriced(base, 2.0)], "2026-01-01")
    book.apply_overrides([_repriced(base, 1.0)], "2026-02-01")
    info, date = book.price_for("xai", "grok-3")
    assert info is not None and info.input_per_mtok == 1.0 and date == "2026-02-01"
    gem = lookup("gemini", "gemini-2.0-flash")
    assert gem is not None
    book.apply_overrides([_repriced(gem, 0.2)], "2026-02-01")
    book.clear_overrides("xai")
    assert book.price_for("xai", "grok-3") == (base, CATALOG_DATE)
    assert book.override_count == 1
    book.clear_overrides()
    assert book.override_count == 0


def test_invalid_overrides_are_skipped_or_refused() -> None:
    base = lookup("openai", "gpt-4o")
    assert base is not None
    book = PriceBook()
    assert book.apply_overrides([_repriced(base, -1.0)], "2026-11-01") == 0
    assert book.price_for("openai", "gpt-4o") == (base, CATALOG_DATE)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        book.apply_overrides([base], "yesterday")


# --- start-up cost -------------------------------------------------------------------------------


def test_import_is_cheap_and_reads_nothing() -> None:
    """The catalog is plain Python data: importing it pulls in no parser, I/O or network module."""
    code = (
        "import sys; before = set(sys.modules); import sidecar.core.catalog, sidecar.core.cost; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    forbidden = {"json", "tomllib", "msgspec", "socket", "ssl", "sqlite3", "asyncio", "httpx2"}
    assert not set(out.split()) & forbidden


def test_rows_added_later_are_their_own_models_not_a_neighbours() -> None:
    o3_mini, o3 = lookup("openai", "o3-mini"), lookup("openai", "o3")
    assert o3_mini is not None and o3 is not None and o3_mini.input_per_mtok != o3.input_per_mtok
    opus4 = lookup("anthropic", "claude-opus-4-20250514")
    assert opus4 is not None and opus4.model == "claude-opus-4"
    fast = lookup("xai", "grok-4-1-fast-reasoning")
    assert fast is not None and fast.model == "grok-4-1-fast"
