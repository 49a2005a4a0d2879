"""Rate-limit headers of every provider, read into one state with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sidecar.core.ratelimit import (
    Pacer,
    ProviderLimits,
    RateLimitTracker,
    Window,
    parse_go_duration,
    parse_headers,
    parse_reset,
    parse_retry_after,
    parse_rfc3339,
)

NOW = datetime(2025, 8, 21, 12, 40, 0, tzinfo=UTC).timestamp()


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("1h2m3s", 3723.0),
        ("12ms", 0.012),
        ("1.5s", 1.5),
        ("0s", 0.0),
        ("0", 0.0),
        ("20m", 1200.0),
        ("2h", 7200.0),
        ("7.66s", 7.66),
        ("250us", 0.00025),
        ("3µs", 0.000003),
        ("500ns", 0.0000005),
        ("1m30.5s", 90.5),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "1", "1x", "abc", "1s2", "-1s", "1 s", "m1s"])
def test_not_go_durations(text: str) -> None:
    assert parse_go_duration(text) is None


def test_rfc3339_instants() -> None:
    assert parse_rfc3339("2025-08-21T12:40:59Z") == epoch("2025-08-21T12:40:59+00:00")
    assert parse_rfc3339("2025-08-21T14:40:59+02:00") == epoch("2025-08-21T12:40:59+00:00")
    assert parse_rfc3339("2025-08-21T12:40:59.500Z") == epoch("2025-08-21T12:40:59.500+00:00")
    assert parse_rfc3339("not a time") is None
    assert parse_rfc3339("") is None


def test_reset_values_of_every_shape_become_instants() -> None:
    assert parse_reset("6m0s", NOW) == NOW + 360
    assert parse_reset("20", NOW) == NOW + 20
    assert parse_reset("2025-08-21T12:40:59Z", NOW) == NOW + 59
    assert parse_reset("1755780059", NOW) == 1755780059.0  # epoch seconds
    assert parse_reset("1755780059000", NOW) == 1755780059.0  # epoch milliseconds (OpenRouter)
    assert parse_reset("soon", NOW) is None


def test_retry_after_ms_wins_over_retry_after() -> None:
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}, NOW) == 1.5
    assert parse_retry_after({"retry-after": "2"}, NOW) == 2.0
    assert parse_retry_after({"retry-after": "0.25"}, NOW) == 0.25
    date = "Thu, 21 Aug 2025 12:40:30 GMT"
    assert parse_retry_after({"retry-after": date}, NOW) == 30.0
    assert parse_retry_after({"retry-after": "garbage"}, NOW) is None
    assert parse_retry_after({"retry-after-ms": "x", "retry-after": "3"}, NOW) == 3.0
    assert parse_retry_after({}, NOW) is None


def test_openai_headers() -> None:
    headers = {
        "x-ratelimit-limit-requests": "5000",
        "x-ratelimit-limit-tokens": "4000000",
        "x-ratelimit-remaining-requests": "4999",
        "x-ratelimit-remaining-tokens": "3999990",
        "x-ratelimit-reset-requests": "12ms",
        "x-ratelimit-reset-tokens": "6m0s",
        "x-request-id": "req_1",
        "openai-processing-ms": "42",
    }
    seen = parse_headers(headers, NOW)
    assert seen.windows["requests"] == Window(5000, 4999, NOW + 0.012)
    assert seen.windows["tokens"] == Window(4_000_000, 3_999_990, NOW + 360)
    assert seen.retry_after_s is None


def test_header_names_are_case_insensitive() -> None:
    seen = parse_headers([("X-RateLimit-Remaining-Requests", "7"), ("Retry-After", "3")], NOW)
    assert seen.windows["requests"].remaining == 7
    assert seen.retry_after_s == 3.0


def test_anthropic_headers() -> None:
    # As Anthropic documents them, with values from a real capture (2025-08-21) and a 429's retry-after.
    headers = {
        "retry-after": "59",
        "anthropic-ratelimit-requests-limit": "1000",
        "anthropic-ratelimit-requests-remaining": "999",
        "anthropic-ratelimit-requests-reset": "2025-08-21T12:40:59Z",
        "anthropic-ratelimit-tokens-limit": "96000",
        "anthropic-ratelimit-tokens-remaining": "96000",
        "anthropic-ratelimit-tokens-reset": "2025-08-21T12:40:59Z",
        "anthropic-ratelimit-input-tokens-limit": "80000",
        "anthropic-ratelimit-input-tokens-remaining": "80000",
        "anthropic-ratelimit-input-tokens-reset": "2025-08-21T12:40:59Z",
        "anthropic-ratelimit-output-tokens-limit": "16000",
        "anthropic-ratelimit-output-tokens-remaining": "16000",
        "anthropic-ratelimit-output-tokens-reset": "2025-08-21T12:41:00Z",
        "request-id": "req_011CSLsW7mFqvHHnzrKdKjAE",
    }
    seen = parse_headers(headers, NOW)
    assert seen.windows == {
        "requests": Window(1000, 999, NOW + 59),
        "tokens": Window(96000, 96000, NOW + 59),
        "input_tokens": Window(80000, 80000, NOW + 59),
        "output_tokens": Window(16000, 16000, NOW + 60),
    }
    assert seen.retry_after_s == 59.0


def test_openrouter_platform_limit_headers() -> None:
    headers = {"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1755780100000"}
    seen = parse_headers(headers, NOW)
    assert seen.windows == {"requests": Window(20, 0, 1755780100.0)}


def test_no_rate_limit_headers() -> None:
    seen = parse_headers({"content-type": "application/json", "x-request-id": "r"}, NOW)
    assert seen.empty


def test_malformed_numbers_are_ignored() -> None:
    seen = parse_headers({"x-ratelimit-remaining-requests": "lots", "x-ratelimit-limit-requests": "10"}, NOW)
    assert seen.windows["requests"] == Window(limit=10)


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_tracker_keeps_absolute_instants_and_merges() -> None:
    clock = Clock(NOW)
    tracker = RateLimitTracker(clock)
    tracker.observe(
        "openai", 200, {"x-ratelimit-remaining-tokens": "100", "x-ratelimit-reset-tokens": "1m0s"}
    )
    clock.t = NOW + 30
    tracker.observe(
        "openai", 200, {"x-ratelimit-remaining-requests": "9", "x-ratelimit-reset-requests": "1s"}
    )
    state = tracker.get("openai")
    assert state is not None
    assert state.windows["tokens"] == Window(None, 100, NOW + 60)  # still the instant learned at NOW
    assert state.windows["requests"] == Window(None, 9, NOW + 31)
    assert state.updated_at == NOW + 30
    assert state.last_status == 200
    assert tracker.get("anthropic") is None


def test_tracker_retry_after_runs_out_and_a_success_clears_it() -> None:
    clock = Clock(NOW)
    tracker = RateLimitTracker(clock)
    tracker.observe("openai", 429, {"retry-after": "20"})
    state = tracker.get("openai")
    assert state is not None and state.last_status == 429
    assert state.retry_after_s(NOW + 5) == 15.0
    assert state.retry_after_s(NOW + 20) is None
    tracker.observe("openai", 200, {"x-ratelimit-remaining-requests": "5"})
    state = tracker.get("openai")
    assert state is not None and state.retry_at is None


def test_tracker_learns_gemini_retry_info_from_the_body() -> None:
    clock = Clock(NOW)
    tracker = RateLimitTracker(clock)
    tracker.observe("gemini", 200, {"content-type": "text/event-stream"})  # Gemini sends no headers
    assert tracker.get("gemini") is None
    tracker.note_retry_after("gemini", 34.4)
    state = tracker.get("gemini")
    assert state is not None
    assert state.retry_after_s(NOW) == pytest.approx(34.4)
    assert state.windows == {}


def test_a_bare_429_is_remembered() -> None:
    tracker = RateLimitTracker(Clock(NOW))
    tracker.observe("xai", 429, {})
    state = tracker.get("xai")
    assert state is not None and state.last_status == 429


def test_the_observer_never_raises() -> None:
    tracker = RateLimitTracker(Clock(NOW))

    class Broken(dict[str, str]):
        def items(self) -> Any:
            raise RuntimeError("boom")

    tracker.observe("openai", 200, Broken())
    assert tracker.get("openai") is None


def test_blocked_for_by_retry_after_else_by_exhausted_windows() -> None:
    from sidecar.core.ratelimit import ProviderLimits, Window

    exhausted = ProviderLimits("p", windows={"requests": Window(limit=10, remaining=0, reset_at=130.0)})
    assert exhausted.blocked_s(100.0) == 30.0
    assert exhausted.blocked_s(131.0) is None  # the window has refilled
    some_left = ProviderLimits("p", windows={"requests": Window(limit=10, remaining=1, reset_at=130.0)})
    assert some_left.blocked_s(100.0) is None
    told = ProviderLimits("p", windows=exhausted.windows, retry_at=100.4)
    assert told.blocked_s(100.0) is not None and abs(told.blocked_s(100.0) - 0.4) < 1e-9  # type: ignore[operator]
    assert told.blocked_s(101.0) is None


def test_a_spent_bucket_of_requests_gives_one_back_a_limit_th_of_the_way_to_its_reset() -> None:
    # OpenAI and Anthropic refill continuously and reset when whole again: with 5,000 a minute
    # spent, one request is back in 12 ms, not in the minute (OpenAI's sample: 60, 59 left, "1s").
    openai = parse_headers(
        {
            "x-ratelimit-limit-requests": "5000",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "1m0s",
            "x-ratelimit-limit-tokens": "4000000",
            "x-ratelimit-remaining-tokens": "3999990",
            "x-ratelimit-reset-tokens": "6m0s",
        },
        NOW,
    )
    assert openai.windows["requests"] == Window(5000, 0, NOW + 60, NOW + 0.012, 0.012)
    spent = ProviderLimits("openai", windows=openai.windows)
    assert spent.blocked_s(NOW) == pytest.approx(0.012, abs=1e-6)
    assert spent.blocked_s(NOW + 0.02) is None
    anthropic = parse_headers(
        {
            "anthropic-ratelimit-requests-limit": "4000",
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": "2025-08-21T12:41:00Z",
        },
        NOW,
    )
    assert ProviderLimits("anthropic", windows=anthropic.windows).blocked_s(NOW) == pytest.approx(
        0.015, abs=1e-6
    )


def test_spent_tokens_and_fixed_windows_wait_for_their_reset() -> None:
    # A request needs many tokens, not one; OpenRouter's platform limit is a fixed window.
    tokens = parse_headers(
        {
            "x-ratelimit-limit-tokens": "4000000",
            "x-ratelimit-remaining-tokens": "0",
            "x-ratelimit-reset-tokens": "6m0s",
        },
        NOW,
    )
    assert ProviderLimits("openai", windows=tokens.windows).blocked_s(NOW) == 360.0
    fixed = parse_headers(
        {
            "X-RateLimit-Limit": "20",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int((NOW + 30) * 1000)),
        },
        NOW,
    )
    assert ProviderLimits("openrouter", windows=fixed.windows).blocked_s(NOW) == pytest.approx(30.0)


def test_a_later_answer_without_a_count_keeps_when_a_request_is_back() -> None:
    tracker = RateLimitTracker(Clock(NOW))
    tracker.observe(
        "openai",
        200,
        {
            "x-ratelimit-limit-requests": "100",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "1m0s",
        },
    )
    tracker.observe("openai", 200, {"x-ratelimit-limit-requests": "100"})
    state = tracker.get("openai")
    assert state is not None and state.blocked_s(NOW) == pytest.approx(0.6, abs=1e-6)


def test_requests_waiting_on_a_spent_bucket_go_one_refill_apart() -> None:
    # 600 a minute, none left: one request is back every 0.1 s. Four waiting at once go at 0.1,
    # 0.2, 0.3 and 0.4 s, not all at 0.1 s, where three would meet a 429.
    spent = parse_headers(
        {
            "x-ratelimit-limit-requests": "600",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "1m0s",
        },
        NOW,
    )
    limits = ProviderLimits("openai", windows=spent.windows)
    blocked = limits.blocked(NOW)
    assert blocked is not None and blocked == pytest.approx((0.1, 0.1))
    first, every = blocked
    pacer = Pacer()
    waits = []
    for _ in range(4):
        wait = pacer.wait_s("openai", NOW, first, every)
        pacer.take("openai", limits, NOW + wait, every)
        waits.append(wait)
    assert waits == pytest.approx([0.1, 0.2, 0.3, 0.4], abs=1e-6)
    assert pacer.wait_s("anthropic", NOW, 0.05, 0.05) == 0.05  # each provider its own pace
    # Later, the pace still holds for what is queued (the fifth goes at 0.5 s); once it has
    # passed, a wait is its own again.
    assert pacer.wait_s("openai", NOW + 0.25, 0.1, 0.1) == pytest.approx(0.25, abs=1e-6)
    assert pacer.wait_s("openai", NOW + 1.0, 0.1, 0.1) == pytest.approx(0.1, abs=1e-6)
    # Once the first is back (0.1 s), the headers say nothing more; a request that comes then
    # still queues behind the paced ones, unless a newer answer has said how things stand.
    assert limits.blocked(NOW + 0.15) is None
    assert pacer.queued("openai", limits, NOW + 0.15) == pytest.approx((0.35, 0.1), abs=1e-6)
    newer = ProviderLimits("openai", windows=spent.windows)
    assert pacer.queued("openai", newer, NOW + 0.15) is None
    assert pacer.queued("openai", limits, NOW + 0.6) is None


def test_a_whole_window_or_a_retry_after_releases_everyone_at_once() -> None:
    fixed = parse_headers(
        {
            "X-RateLimit-Limit": "20",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int((NOW + 30) * 1000)),
        },
        NOW,
    )
    assert ProviderLimits("openrouter", windows=fixed.windows).blocked(NOW) == pytest.approx((30.0, 0.0))
    told = ProviderLimits("openai", retry_at=NOW + 2)
    assert told.blocked(NOW) == (2.0, 0.0)
    pacer = Pacer()
    pacer.take("openrouter", told, NOW + 30, 0.0)
    assert pacer.wait_s("openrouter", NOW, 30.0, 0.0) == 30.0
    assert pacer.queued("openrouter", told, NOW) is None
