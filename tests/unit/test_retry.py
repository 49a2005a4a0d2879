"""The retry policy: which failures are retried, how long to wait, and when to stop."""

from __future__ import annotations

import pytest

from sidecar.core.retry import RetryPolicy, backoff_s, decide, retryable

POLICY = RetryPolicy(max_attempts=3, base_delay_s=0.5, max_delay_s=8.0, max_retry_after_s=60.0)
TRANSIENT = ["rate_limited", "provider_error", "network_error", "timeout"]
NEVER = [
    "auth_failed",
    "invalid_request",
    "missing_key",
    "quota_exceeded",
    "model_not_found",
    "budget_exceeded",
    "cancelled",
    "unsupported_provider",
    "keychain_unavailable",
    "internal_error",
]


def top() -> float:
    return 0.999999


@pytest.mark.parametrize("kind", TRANSIENT)
def test_transient_kinds_are_retried(kind: str) -> None:
    assert retryable(kind, started=False)
    decision = decide(POLICY, attempt=1, kind=kind, started=False, retry_after_s=None, random=top)
    assert decision.retry
    assert 0 < decision.delay_s <= 0.5


@pytest.mark.parametrize("kind", NEVER)
def test_other_kinds_are_never_retried(kind: str) -> None:
    assert not retryable(kind, started=False)
    decision = decide(POLICY, attempt=1, kind=kind, started=False, retry_after_s=None, random=top)
    assert not decision.retry
    assert kind in decision.reason


@pytest.mark.parametrize("kind", TRANSIENT)
def test_nothing_is_retried_once_the_answer_reached_the_host(kind: str) -> None:
    assert not retryable(kind, started=True)
    decision = decide(POLICY, attempt=1, kind=kind, started=True, retry_after_s=0.0, random=top)
    assert not decision.retry
    assert "started" in decision.reason


def test_the_attempt_budget_counts_the_first_try() -> None:
    assert decide(POLICY, attempt=2, kind="timeout", started=False, retry_after_s=None, random=top).retry
    last = decide(POLICY, attempt=3, kind="timeout", started=False, retry_after_s=None, random=top)
    assert not last.retry
    assert "3 attempts" in last.reason
    single = RetryPolicy(max_attempts=1)
    assert not decide(single, attempt=1, kind="timeout", started=False, retry_after_s=None, random=top).retry


def test_backoff_is_exponential_with_full_jitter_under_a_ceiling() -> None:
    ceilings = [backoff_s(n, POLICY, lambda: 1.0) for n in range(1, 8)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert backoff_s(3, POLICY, lambda: 0.0) == 0.0
    assert backoff_s(3, POLICY, lambda: 0.25) == pytest.approx(0.5)
    # a misbehaving random source cannot push the wait past the ceiling or below zero
    assert backoff_s(2, POLICY, lambda: 7.0) == 1.0
    assert backoff_s(2, POLICY, lambda: -1.0) == 0.0


def test_jitter_spreads_the_waits() -> None:
    values = iter([0.1, 0.5, 0.9])
    waits = [backoff_s(4, POLICY, lambda: next(values)) for _ in range(3)]
    assert waits == pytest.approx([0.4, 2.0, 3.6])


def test_retry_after_is_honoured_instead_of_backoff() -> None:
    decision = decide(POLICY, attempt=1, kind="rate_limited", started=False, retry_after_s=2.5, random=top)
    assert decision.retry
    assert decision.delay_s == 2.5
    zero = decide(POLICY, attempt=1, kind="rate_limited", started=False, retry_after_s=0.0, random=top)
    assert zero.retry and zero.delay_s == 0.0


def test_a_retry_after_over_the_cap_is_not_waited_out() -> None:
    decision = decide(POLICY, attempt=1, kind="rate_limited", started=False, retry_after_s=61.0, random=top)
    assert not decision.retry
    assert "61s" in decision.reason
    at_cap = decide(POLICY, attempt=1, kind="rate_limited", started=False, retry_after_s=60.0, random=top)
    assert at_cap.retry and at_cap.delay_s == 60.0


def test_no_retry_that_would_start_after_the_deadline() -> None:
    late = decide(
        POLICY, attempt=1, kind="rate_limited", started=False, retry_after_s=5.0, random=top, time_left_s=4.0
    )
    assert not late.retry
    assert "time limit" in late.reason
    soon = decide(
        POLICY, attempt=1, kind="rate_limited", started=False, retry_after_s=3.0, random=top, time_left_s=4.0
    )
    assert soon.retry
