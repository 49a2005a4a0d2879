"""Provider health in one place, and the `rate_limits` method that shows it.

`Resilience` holds, per provider, what the sidecar knows and enforces about its capacity: the
rate-limit state learned from upstream headers (fed by an `HttpClient` observer), the circuit
breaker, and the client-side limiter from `config.toml`; plus the retry policy. The chat service
consults it on every attempt; `rate_limits` and `list_providers` report it.

With a shared coordinator (a team gateway's `[coordination] url`), each limiter also passes the
same limits through it (`ProviderGate`): requests and tokens per minute and `min_interval_s` as
shared windows, `max_concurrent` as a shared lease, so the replicas together keep to what one
alone would. A place lapses `total_s` + `LEASE_GRACE_S` after it was taken, so a replica killed
while holding one frees it; a request that lasts longer has its place renewed every third of that
time until it leaves (a task of its own, cancelled on release). `rate_limits` still shows this
process's own view.

Must not know: stdin/stdout, providers' wire formats, how a request is retried.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import anyio

from sidecar import logs
from sidecar.config import Config, Limits
from sidecar.core.breaker import Breakers
from sidecar.core.counters import Lease
from sidecar.core.counters import Window as SharedWindow
from sidecar.core.limiter import GateAnswer, Limiter, LimitSettings
from sidecar.core.ratelimit import Pacer, RateLimitTracker, Window
from sidecar.core.retry import RetryPolicy
from sidecar.errors import SidecarError
from sidecar.providers.errors import display
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.context import CallContext, Handler, after_reply
from sidecar.wire.limits import (
    CircuitInfo,
    ClientLimits,
    LimitWindow,
    ProviderRateLimits,
    RateLimitsParams,
    RateLimitsResult,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sidecar.infra.coordination import Coordinator
    from sidecar.providers.http import HeadersObserver

LEASE_GRACE_S: Final = 10.0
"""A shared `max_concurrent` place lapses `[timeouts] total_s` plus this much after it was taken
or last renewed (the place of a replica killed mid-request comes free then)."""
RENEWALS_PER_TTL: Final = 3
"""A held place is renewed this many times per lease TTL: two renewals may fail (Redis briefly
away, a busy loop) before it lapses."""

_log = logs.get_logger("limits")


class ProviderGate:
    """One provider's client-side limits, shared through the coordinator (see the module doc)."""

    def __init__(
        self, coordinator: Coordinator, provider: str, settings: LimitSettings, hold_s: float
    ) -> None:
        self.coordinator = coordinator
        prefix = f"provider:{provider}"
        self.requests = (
            SharedWindow(f"{prefix}:requests", float(settings.requests_per_minute), 60.0)
            if settings.requests_per_minute
            else None
        )
        self.tokens = (
            SharedWindow(f"{prefix}:tokens", float(settings.tokens_per_minute), 60.0)
            if settings.tokens_per_minute
            else None
        )
        self.interval = (
            SharedWindow(f"{prefix}:interval", 1.0, settings.min_interval_s)
            if settings.min_interval_s
            else None
        )
        self.lease = (
            Lease(f"{prefix}:slots", settings.max_concurrent, hold_s) if settings.max_concurrent else None
        )
        # The renewal of each place held by a request of this process, by lease id. An asyncio
        # task, not one of a task group: the request's limiter slot (an async context manager)
        # cannot hold a task group open across its `yield` without wrapping the request's errors.
        # The coordinator that shares a lease is Redis's asyncio client.
        self._renewals: dict[str, asyncio.Task[None]] = {}

    async def enter(self, tokens: int) -> GateAnswer:
        charges: list[tuple[SharedWindow, float]] = []
        if self.requests is not None:
            charges.append((self.requests, 1.0))
        if self.interval is not None:
            charges.append((self.interval, 1.0))
        if self.tokens is not None and tokens > 0:
            charges.append((self.tokens, float(tokens)))
        admission = await self.coordinator.acquire(charges, self.lease)
        if admission.allowed:
            if self.lease is not None and admission.lease_id is not None:
                self._renewals[admission.lease_id] = asyncio.get_running_loop().create_task(
                    self._renew(self.lease, admission.lease_id)
                )
            return GateAnswer(True, handle=admission.lease_id)
        return GateAnswer(False, max(admission.retry_after_s, 0.0))

    async def _renew(self, lease: Lease, lease_id: str) -> None:
        """Keep a place for as long as its request holds it (cancelled by `leave`)."""
        while True:
            await asyncio.sleep(lease.ttl_s / RENEWALS_PER_TTL)
            try:
                held = await self.coordinator.renew_lease(lease, lease_id)
            except Exception:
                _log.exception("renewing a max_concurrent place failed", key=lease.key)
                continue
            if not held:
                # Lapsed (this process was stalled for longer than the TTL): another request may
                # have it now; this one goes on, as it would have without renewals.
                _log.warning("a max_concurrent place lapsed while its request went on", key=lease.key)
                return

    @property
    def renewing(self) -> int:
        """How many places this gate is renewing now."""
        return len(self._renewals)

    async def leave(self, handle: Any, estimated: int, actual: int | None) -> None:
        if self.tokens is not None and actual is not None:
            cap = self.tokens.limit
            extra = min(float(actual), cap) - min(float(estimated), cap)
            if extra:
                await self.coordinator.adjust([(self.tokens, extra)])
        if self.lease is not None and handle is not None:
            renewal = self._renewals.pop(str(handle), None)
            if renewal is not None:
                renewal.cancel()
                await asyncio.wait([renewal])  # no renewal in flight once the place is released
            await self.coordinator.release_lease(self.lease, str(handle))


def observed_after_reply(observe: HeadersObserver) -> HeadersObserver:
    """`observe` (the rate-limit tracker's headers observer), with a successful response's
    headers taken in once the answer is sent when the call's face collects such work
    (`context.after_reply`): they only record what the provider said, and the next request is
    admitted after that bookkeeping. A failure's headers (a 429's wait, nothing remaining) steer
    this request's next attempt, so they are taken in at once, as is everything elsewhere."""

    def observer(provider: str, status: int, headers: Mapping[str, str]) -> None:
        later = after_reply.get()
        if later is None or not later.open or not 200 <= status < 300:
            observe(provider, status, headers)
            return

        async def take_in() -> None:
            observe(provider, status, headers)

        later.append(take_in)

    return observer


class Resilience:
    """Per-provider rate-limit state, breakers and limiters, and the retry policy."""

    def __init__(
        self,
        config: Config,
        *,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        coordinator: Coordinator | None = None,
    ) -> None:
        self.config = config
        self.coordinator = coordinator
        self.tracker = RateLimitTracker(wall_clock)
        self.pacer = Pacer()
        self.breakers = Breakers(config.breaker.failures, config.breaker.cooldown_s, clock)
        r = config.retry
        self.policy = RetryPolicy(
            max_attempts=r.max_attempts,
            base_delay_s=r.base_delay_s,
            max_delay_s=r.max_delay_s,
            max_retry_after_s=r.max_retry_after_s,
        )
        self.random = rand
        self._limiters: dict[str, Limiter | None] = {}

    def reconfigure(self, config: Config) -> None:
        """Use a reloaded configuration: limiters whose settings changed start afresh (requests
        holding a slot of the old one finish with it); breakers and learned limits stay."""
        self.config = config
        for provider in list(self._limiters):
            limiter = self._limiters[provider]
            if (limiter.state.settings if limiter is not None else None) != self.settings(provider):
                del self._limiters[provider]

    def settings(self, provider: str) -> LimitSettings | None:
        limits: Limits | None = None
        if provider in self.config.endpoints:
            limits = self.config.endpoints[provider].limits
        elif provider in self.config.providers:
            limits = self.config.providers[provider].limits
        if limits is None:
            return None
        settings = LimitSettings(
            max_concurrent=limits.max_concurrent,
            min_interval_s=limits.min_interval_s,
            requests_per_minute=limits.requests_per_minute,
            tokens_per_minute=limits.tokens_per_minute,
        )
        return settings if settings.any else None

    def limiter(self, provider: str) -> Limiter | None:
        """The provider's limiter, or None when config.toml sets no limits for it."""
        if provider not in self._limiters:
            settings = self.settings(provider)
            gate = None
            if settings is not None and self.coordinator is not None:
                hold_s = self.config.timeouts.total_s + LEASE_GRACE_S
                gate = ProviderGate(self.coordinator, provider, settings, hold_s)
            self._limiters[provider] = (
                Limiter(provider, display(provider), settings, gate) if settings else None
            )
        return self._limiters[provider]

    async def respect_upstream(self, provider: str, max_wait_s: float) -> SidecarError | None:
        """Before sending: when the provider's last answer said nothing remains until a reset, wait
        for it (cancellably) if it comes within `max_wait_s`, else return the `rate_limited` error
        that sends the request to its next candidate, so no request is spent on a certain 429.
        Requests that wait for a bucket to refill go one refill apart (`Pacer`)."""
        limits = self.tracker.get(provider)
        if limits is None:
            return None
        now = self.tracker.now()
        blocked = limits.blocked(now) or self.pacer.queued(provider, limits, now)
        if blocked is None:
            return None
        wait, every_s = blocked
        wait = self.pacer.wait_s(provider, now, wait, every_s)
        if wait <= max_wait_s:
            self.pacer.take(provider, limits, now + wait, every_s)
            await anyio.sleep(wait)
            return None
        return SidecarError(
            "rate_limited",
            f"{display(provider)} said no requests remain for another {wait:.1f}s (its rate-limit "
            "headers), longer than this request may wait; it was not sent there.",
            provider=provider,
            retry_after_s=round(wait, 3),
        )

    def circuit_state(self, provider: str) -> str:
        return self.breakers.state(provider)


def _instant(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    when = datetime.fromtimestamp(epoch, UTC)
    spec = "seconds" if when.microsecond == 0 else "milliseconds"
    return when.isoformat(timespec=spec).replace("+00:00", "Z")


def _window(window: Window | None, now: float) -> LimitWindow | None:
    if window is None:
        return None
    remaining = window.remaining
    resets_in = None
    if window.reset_at is not None:
        resets_in = round(max(0.0, window.reset_at - now), 3)
        if window.reset_at <= now and window.limit is not None:
            remaining = window.limit  # the window has refilled since the provider last said
    return LimitWindow(
        limit=window.limit, remaining=remaining, reset_at=_instant(window.reset_at), resets_in_s=resets_in
    )


class RateLimitsService:
    def __init__(self, resilience: Resilience, providers: ProviderRegistry) -> None:
        self.resilience = resilience
        self.providers = providers

    def handlers(self) -> dict[str, Handler]:
        return {"rate_limits": self.rate_limits}

    async def rate_limits(self, params: RateLimitsParams, ctx: CallContext) -> RateLimitsResult:
        if params.provider:
            self.providers.spec(params.provider)  # unknown provider -> unsupported_provider
            wanted = [params.provider]
        else:
            wanted = self.providers.ids
        now = self.resilience.tracker.now()
        return RateLimitsResult(providers=[self.one(pid, now) for pid in wanted], as_of=_instant(now) or "")

    def one(self, provider: str, now: float) -> ProviderRateLimits:
        res = self.resilience
        learned = res.tracker.get(provider)
        breaker = res.breakers.get(provider).snapshot()
        circuit = CircuitInfo(
            state=breaker.state,
            consecutive_failures=breaker.consecutive_failures,
            failure_threshold=breaker.failure_threshold,
            cooldown_s=breaker.cooldown_s,
            retry_in_s=round(breaker.retry_in_s, 3) if breaker.retry_in_s is not None else None,
        )
        client = None
        limiter = res.limiter(provider)
        if limiter is not None:
            s = limiter.state.settings
            requests_left, tokens_left = limiter.available()
            client = ClientLimits(
                max_concurrent=s.max_concurrent,
                in_flight=limiter.state.in_flight,
                waiting=limiter.waiting,
                min_interval_s=s.min_interval_s,
                requests_per_minute=s.requests_per_minute,
                requests_available=round(requests_left, 3) if requests_left is not None else None,
                tokens_per_minute=s.tokens_per_minute,
                tokens_available=round(tokens_left, 3) if tokens_left is not None else None,
            )
        if learned is None:
            return ProviderRateLimits(provider=provider, circuit=circuit, client=client)
        wait = learned.retry_after_s(now)
        return ProviderRateLimits(
            provider=provider,
            requests=_window(learned.windows.get("requests"), now),
            tokens=_window(learned.windows.get("tokens"), now),
            input_tokens=_window(learned.windows.get("input_tokens"), now),
            output_tokens=_window(learned.windows.get("output_tokens"), now),
            retry_after_s=round(wait, 3) if wait is not None else None,
            retry_at=_instant(learned.retry_at) if wait is not None else None,
            last_status=learned.last_status,
            updated_at=_instant(learned.updated_at),
            circuit=circuit,
            client=client,
        )
