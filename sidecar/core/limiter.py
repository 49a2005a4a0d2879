"""Client-side limits per provider: how many requests at once, how often, how many per minute.

From `[providers.<id>.limits]` (or an endpoint's `limits`) in `config.toml`: `max_concurrent`,
`min_interval_s`, `requests_per_minute` and `tokens_per_minute`, the last two as token buckets
that start full and refill continuously.

Two halves: `TokenBucket` and `LimitState` are the pure arithmetic (every method takes `now`);
`Limiter` waits for a slot with anyio, first come first served. A `SharedGate` (injected; a team
gateway's replicas share one through Redis, see `services.limits`) is asked last, once this
process's own limits let a request go, so several processes together keep to the same limits.
A waiting request can be cancelled at any time; a request that would have to wait longer than its
time limit fails at once (or when its limit runs out, if it waits behind others) with
`rate_limited` and `retry_after_s`.

Must not know: HTTP, the protocol, config files, which provider is which.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final, Protocol

import anyio

from sidecar.errors import SidecarError

# -- pure arithmetic -------------------------------------------------------------------------------


class TokenBucket:
    """`per_minute` units a minute, refilled continuously, holding at most one minute's worth."""

    __slots__ = ("capacity", "level", "rate", "updated")

    def __init__(self, per_minute: float, now: float) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self.updated = now

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def available(self, now: float) -> float:
        self._refill(now)
        return self.level

    def wait_s(self, amount: float, now: float) -> float:
        """Seconds until `amount` can be taken (an amount over capacity needs a full bucket)."""
        self._refill(now)
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def take(self, amount: float, now: float) -> None:
        self._refill(now)
        self.level -= min(amount, self.capacity)

    def adjust(self, extra: float, now: float) -> None:
        """Charge `extra` more units (negative refunds); the level may go below zero (a debt)."""
        self._refill(now)
        self.level = min(self.capacity, self.level - extra)


@dataclass(frozen=True, slots=True)
class LimitSettings:
    max_concurrent: int | None = None
    min_interval_s: float | None = None
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None

    @property
    def any(self) -> bool:
        values = (self.max_concurrent, self.min_interval_s, self.requests_per_minute, self.tokens_per_minute)
        return any(v is not None for v in values)


class LimitState:
    """The pure state of one provider's limits."""

    def __init__(self, settings: LimitSettings, now: float) -> None:
        self.settings = settings
        self.in_flight = 0
        self.last_start: float | None = None
        rpm, tpm = settings.requests_per_minute, settings.tokens_per_minute
        self.requests = TokenBucket(rpm, now) if rpm else None
        self.tokens = TokenBucket(tpm, now) if tpm else None

    @property
    def full(self) -> bool:
        cap = self.settings.max_concurrent
        return cap is not None and self.in_flight >= cap

    def delay_s(self, tokens: int, now: float) -> float:
        """Seconds until a request of `tokens` may start, ignoring the concurrency cap."""
        delay = 0.0
        gap = self.settings.min_interval_s
        if gap and self.last_start is not None:
            delay = max(delay, self.last_start + gap - now)
        if self.requests is not None:
            delay = max(delay, self.requests.wait_s(1, now))
        if self.tokens is not None and tokens > 0:
            delay = max(delay, self.tokens.wait_s(tokens, now))
        return delay

    def start(self, tokens: int, now: float) -> None:
        self.in_flight += 1
        self.last_start = now
        if self.requests is not None:
            self.requests.take(1, now)
        if self.tokens is not None and tokens > 0:
            self.tokens.take(tokens, now)

    def finish(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)

    def settle(self, estimated: int, actual: int, now: float) -> None:
        """Correct the token bucket once the real token count is known."""
        if self.tokens is not None:
            cap = self.tokens.capacity
            self.tokens.adjust(min(actual, cap) - min(estimated, cap), now)


# -- waiting ---------------------------------------------------------------------------------------

GATE_POLL_S: Final = (0.05, 0.5)
"""First and longest pause before asking a full shared gate again (it says no when to retry)."""
LEAVE_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class GateAnswer:
    """A shared gate's answer: admitted (with a `handle` to leave with), or wait `wait_s` (0 when
    it cannot tell: every place is taken and one may come free at any moment)."""

    admitted: bool
    wait_s: float = 0.0
    handle: Any = None


class SharedGate(Protocol):
    """The same limits, counted with other processes (see the module doc)."""

    async def enter(self, tokens: int) -> GateAnswer: ...

    async def leave(self, handle: Any, estimated: int, actual: int | None) -> None:
        """The request is over: free its place, and correct its token estimate (`actual`, when
        known). Never raises."""
        ...


@dataclass(slots=True)
class Permit:
    """A granted slot; `settle` corrects the token estimate it was granted with."""

    limiter: Limiter
    tokens: int
    waited_s: float
    handle: Any = None
    actual: int | None = None

    def settle(self, actual_tokens: int) -> None:
        self.actual = actual_tokens
        self.limiter.state.settle(self.tokens, actual_tokens, anyio.current_time())


class Limiter:
    """Waits for one provider's limits, first come first served."""

    def __init__(
        self, provider: str, display_name: str, settings: LimitSettings, gate: SharedGate | None = None
    ) -> None:
        self.provider = provider
        self.display_name = display_name
        self.state = LimitState(settings, _now())
        self.gate = gate
        self.waiting = 0
        self._line = anyio.Lock()  # FIFO: the head of the line waits for the limits, the rest for it
        self._freed = anyio.Event()

    @contextlib.asynccontextmanager
    async def slot(self, tokens: int = 0, max_wait_s: float | None = None) -> AsyncIterator[Permit]:
        """Hold a slot for the duration of the block; raises `rate_limited` if the wait would be too long."""
        started = anyio.current_time()
        deadline = math.inf if max_wait_s is None else started + max_wait_s
        self.waiting += 1
        try:
            handle = await self._wait_turn(tokens, deadline, max_wait_s)
        finally:
            self.waiting -= 1
        permit = Permit(self, tokens, anyio.current_time() - started, handle)
        try:
            yield permit
        finally:
            self.state.finish()
            self._freed.set()
            self._freed = anyio.Event()
            if self.gate is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(LEAVE_TIMEOUT_S):
                    await self.gate.leave(handle, tokens, permit.actual)

    async def _wait_turn(self, tokens: int, deadline: float, max_wait_s: float | None) -> Any:
        shared_full = False
        with anyio.move_on_after(deadline - anyio.current_time()):
            async with self._line:
                poll = GATE_POLL_S[0]
                while True:
                    now = anyio.current_time()
                    if self.state.full:
                        await self._freed.wait()
                        continue
                    delay = self.state.delay_s(tokens, now)
                    if delay <= 0 and self.gate is not None:
                        answer = await self.gate.enter(tokens)
                        if answer.admitted:
                            self.state.start(tokens, anyio.current_time())
                            return answer.handle
                        shared_full = answer.wait_s <= 0
                        delay = answer.wait_s if not shared_full else poll
                        poll = min(poll * 2, GATE_POLL_S[1])
                        now = anyio.current_time()
                    if delay <= 0:
                        self.state.start(tokens, now)
                        return None
                    if now + delay > deadline:
                        raise self._too_long(None if shared_full else delay, max_wait_s, shared_full)
                    await anyio.sleep(delay)
        raise self._too_long(None, max_wait_s, shared_full)  # the time limit ran out while waiting

    def _too_long(
        self, delay: float | None, max_wait_s: float | None, shared_full: bool = False
    ) -> SidecarError:
        limit = f"{max_wait_s:g}s" if max_wait_s is not None else "allowed"
        cap = self.state.settings.max_concurrent
        if delay is not None:
            message = (
                f"The client-side rate limits for {self.display_name} in config.toml would hold this request "
                f"for {delay:.1f}s, longer than its {limit} time limit. Retry after {delay:.1f}s, "
                "raise timeout_s, or raise the limits."
            )
            retry = round(delay, 3)
        elif cap is not None and (self.state.full or shared_full):
            message = (
                f"This request waited {limit} for a free slot at {self.display_name} (max_concurrent = {cap} "
                "in config.toml) and none came free. Retry shortly, or raise max_concurrent."
            )
            retry = self.state.settings.min_interval_s or 1.0
        else:
            message = (
                f"This request waited {limit} in line behind other requests to {self.display_name} "
                "(client-side rate limits in config.toml). Retry shortly, or raise the limits."
            )
            retry = round(self.state.delay_s(0, anyio.current_time()), 3) or 1.0
        return SidecarError("rate_limited", message, provider=self.provider, retry_after_s=retry)

    def available(self) -> tuple[float | None, float | None]:
        """Requests and tokens left in the per-minute buckets now (None where there is no bucket)."""
        now = _now()
        state = self.state
        return (
            state.requests.available(now) if state.requests is not None else None,
            state.tokens.available(now) if state.tokens is not None else None,
        )


def _now() -> float:
    try:
        return anyio.current_time()
    except Exception:  # built outside an event loop (at start-up): any monotonic origin will do
        import time

        return time.monotonic()
