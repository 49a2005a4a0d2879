"""The circuit breaker, driven by a fake clock."""

from __future__ import annotations

import pytest

from sidecar.core.breaker import Breakers, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def make(failures: int = 3, cooldown: float = 10.0) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    return CircuitBreaker(failures, cooldown, clock), clock


def trip(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert breaker.allow()
        breaker.failure("provider_error")


def test_closed_lets_everything_through() -> None:
    breaker, _ = make()
    assert breaker.state == "closed"
    assert all(breaker.allow() for _ in range(10))
    assert breaker.retry_in_s() is None


def test_opens_after_n_consecutive_transient_failures() -> None:
    breaker, _ = make(failures=3)
    trip(breaker, 2)
    assert breaker.state == "closed"
    trip(breaker, 1)
    assert breaker.state == "open"
    assert not breaker.allow()
    snap = breaker.snapshot()
    assert snap.consecutive_failures == 3
    assert snap.retry_in_s == pytest.approx(10.0)


def test_a_success_resets_the_count() -> None:
    breaker, _ = make(failures=3)
    trip(breaker, 2)
    assert breaker.allow()
    breaker.success()
    trip(breaker, 2)
    assert breaker.state == "closed"


@pytest.mark.parametrize("kind", ["auth_failed", "invalid_request", "model_not_found", "quota_exceeded"])
def test_non_transient_failures_do_not_count_and_reset(kind: str) -> None:
    breaker, _ = make(failures=2)
    trip(breaker, 1)
    assert breaker.allow()
    breaker.failure(kind)  # the provider answered: it is up
    trip(breaker, 1)
    assert breaker.state == "closed"


@pytest.mark.parametrize("kind", ["rate_limited", "provider_error", "network_error", "timeout"])
def test_every_transient_kind_counts(kind: str) -> None:
    breaker, _ = make(failures=2)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure(kind)
    assert breaker.state == "open"


def test_half_open_after_the_cooldown_lets_one_probe_through() -> None:
    breaker, clock = make(failures=1, cooldown=10.0)
    trip(breaker, 1)
    clock.advance(9.9)
    assert breaker.state == "open"
    assert not breaker.allow()
    assert breaker.retry_in_s() == pytest.approx(0.1)
    clock.advance(0.1)
    assert breaker.state == "half_open"
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else waits for its verdict
    assert not breaker.allow()
    assert breaker.snapshot().probe_in_flight


def test_a_successful_probe_closes() -> None:
    breaker, clock = make(failures=1, cooldown=5.0)
    trip(breaker, 1)
    clock.advance(5.0)
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed"
    assert breaker.allow() and breaker.allow()
    assert breaker.snapshot().consecutive_failures == 0


def test_a_failed_probe_opens_again_for_a_full_cooldown() -> None:
    breaker, clock = make(failures=3, cooldown=5.0)
    trip(breaker, 3)
    clock.advance(6.0)
    assert breaker.allow()
    breaker.failure("timeout")  # one failure is enough in half-open
    assert breaker.state == "open"
    assert breaker.retry_in_s() == pytest.approx(5.0)
    clock.advance(4.0)
    assert not breaker.allow()
    clock.advance(1.0)
    assert breaker.allow()


def test_a_probe_without_verdict_hands_over_to_the_next_request() -> None:
    breaker, clock = make(failures=1, cooldown=1.0)
    trip(breaker, 1)
    clock.advance(1.0)
    assert breaker.allow()
    breaker.release()  # cancelled by the host
    assert breaker.state == "half_open"
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed"


def test_release_in_closed_state_changes_nothing() -> None:
    breaker, _ = make(failures=2)
    trip(breaker, 1)
    assert breaker.allow()
    breaker.release()
    assert breaker.snapshot().consecutive_failures == 1
    assert breaker.state == "closed"


def test_breakers_are_per_provider_and_share_settings() -> None:
    clock = Clock()
    breakers = Breakers(failure_threshold=1, cooldown_s=3.0, clock=clock)
    assert breakers.state("openai") == "closed"
    a = breakers.get("openai")
    assert breakers.get("openai") is a
    assert a.allow()
    a.failure("network_error")
    assert breakers.state("openai") == "open"
    assert breakers.state("anthropic") == "closed"
    assert breakers.get("anthropic").cooldown_s == 3.0
    clock.advance(3.0)
    assert breakers.state("openai") == "half_open"


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(0, 1.0)
