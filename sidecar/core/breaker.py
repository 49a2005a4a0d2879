"""A circuit breaker per provider: stop sending to a provider that keeps failing, try again later.

    closed ──N consecutive transient failures──▶ open ──cool-down passed──▶ half_open
      ▲                                           ▲                            │
      └──────────── the probe succeeds ───────────┼──── the probe fails ───────┘

Closed lets everything through. Open refuses everything until the cool-down has passed; then the
breaker is half-open and lets exactly ONE request (the probe) through: its success closes the
breaker, its failure opens it again for another cool-down. A probe that ends with no verdict (the
host cancelled it) hands the probe to the next request.

Only transient failures (`rate_limited`, `provider_error`, `network_error`, `timeout`) count: a
provider that answers "bad key" or "bad request" is up, and that answer resets the count.

Must not know: the protocol, HTTP, asyncio; the clock is injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from sidecar.errors import TRANSIENT_KINDS

State = Literal["closed", "open", "half_open"]
Clock = Callable[[], float]  # monotonic seconds

DEFAULT_FAILURES: Final = 5
DEFAULT_COOLDOWN_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    state: State
    consecutive_failures: int
    failure_threshold: int
    cooldown_s: float
    opened_at: float | None  # clock time the breaker last opened
    retry_in_s: float | None  # seconds until the cool-down ends (0 once it has); None when closed
    probe_in_flight: bool


class CircuitBreaker:
    """One provider's breaker. Call `allow()` before a request and exactly one of `success()`,
    `failure(kind)` or `release()` after it, whenever `allow()` returned True."""

    def __init__(
        self,
        failure_threshold: int = DEFAULT_FAILURES,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        clock: Clock = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> State:
        """The state as of now (an open breaker whose cool-down passed reads as half-open)."""
        if self._opened_at is None:
            return "closed"
        if self._probing or self._clock() - self._opened_at >= self.cooldown_s:
            return "half_open"
        return "open"

    def retry_in_s(self) -> float | None:
        """Seconds until the cool-down ends (0 once it has); None while the breaker is closed."""
        if self._opened_at is None:
            return None
        return max(0.0, self._opened_at + self.cooldown_s - self._clock())

    def allow(self) -> bool:
        """May a request go to this provider now? In half-open, True once (the probe)."""
        state = self.state
        if state == "closed":
            return True
        if state == "open" or self._probing:
            return False
        self._probing = True
        return True

    def success(self) -> None:
        """The provider answered (a success, or a non-transient error such as a bad key)."""
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def failure(self, kind: str) -> None:
        """The request failed with error `kind`; only transient kinds count against the provider."""
        if kind not in TRANSIENT_KINDS:
            self.success()
            return
        self._failures += 1
        if self._probing or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
        self._probing = False

    def release(self) -> None:
        """The request ended without a verdict (cancelled, or never sent): free the probe."""
        self._probing = False

    def snapshot(self) -> BreakerSnapshot:
        state = self.state
        return BreakerSnapshot(
            state=state,
            consecutive_failures=self._failures,
            failure_threshold=self.failure_threshold,
            cooldown_s=self.cooldown_s,
            opened_at=self._opened_at,
            retry_in_s=self.retry_in_s(),
            probe_in_flight=self._probing,
        )


class Breakers:
    """The breakers of every provider, made on first use with shared settings."""

    def __init__(
        self,
        failure_threshold: int = DEFAULT_FAILURES,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        clock: Clock = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, provider: str) -> CircuitBreaker:
        breaker = self._breakers.get(provider)
        if breaker is None:
            breaker = CircuitBreaker(self.failure_threshold, self.cooldown_s, self._clock)
            self._breakers[provider] = breaker
        return breaker

    def state(self, provider: str) -> State:
        breaker = self._breakers.get(provider)
        return "closed" if breaker is None else breaker.state
