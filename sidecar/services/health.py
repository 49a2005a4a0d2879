"""`provider_health`: a cheap authenticated probe per provider (the key-validation call: a model
list or key-info route; Ollama's version), timed, and classified healthy, degraded or unhealthy.

Probes run on request and, for providers something declared in use (`watch`, called by the gateway
or a router), every `interval_s` (30 s) in the background. The latest result per provider is kept
for `latest` (which `list_providers` shows) and for routers that pick by health.

Service API for other parts of the sidecar: `await check(id)`, `latest(id)`, `watch(id)`,
`unwatch(id)`.

Must not know: stdin/stdout, providers' wire formats.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Final

import anyio
import anyio.abc

from sidecar import logs
from sidecar.core.breaker import Breakers
from sidecar.errors import SidecarError
from sidecar.providers.base import ProviderSpec
from sidecar.providers.http import Timeouts
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.context import CallContext, Handler
from sidecar.wire.health import HealthStatus, ProviderHealth, ProviderHealthParams, ProviderHealthResult

INTERVAL_S: Final = 30.0
SLOW_MS: Final = 2000.0  # a probe slower than this marks the provider degraded
PROBE_TIMEOUTS: Final = Timeouts(connect_s=5.0, read_s=10.0, write_s=5.0)
_DEGRADED_KINDS: Final = frozenset({"rate_limited", "quota_exceeded"})
# Probes that never reached the provider say nothing about it to the breaker.
_NOT_REACHED: Final = frozenset({"missing_key", "keychain_unavailable", "provider_disabled", "cancelled"})
_log = logs.get_logger("health")


class HealthService:
    def __init__(
        self,
        providers: ProviderRegistry,
        *,
        key_configured: Callable[[ProviderSpec], Awaitable[bool | None]] | None = None,
        breakers: Breakers | None = None,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.providers = providers
        self.key_configured = key_configured
        self.breakers = breakers
        self.interval_s = interval_s
        self._clock = clock
        self._wall = wall_clock
        self._latest: dict[str, ProviderHealth] = {}
        self._watched: set[str] = set()
        self._wake = anyio.Event()

    def handlers(self) -> dict[str, Handler]:
        return {"provider_health": self.provider_health}

    async def provider_health(self, params: ProviderHealthParams, ctx: CallContext) -> ProviderHealthResult:
        if params.provider is not None:
            self.providers.spec(params.provider)  # unknown -> unsupported_provider
            return ProviderHealthResult(providers=[await self.check(params.provider)])
        wanted = [pid for pid in self.providers.ids if await self._worth_probing(pid)]
        results: dict[str, ProviderHealth] = {}

        async def one(pid: str) -> None:
            results[pid] = await self.check(pid)

        async with anyio.create_task_group() as tg:
            for pid in wanted:
                tg.start_soon(one, pid)
        return ProviderHealthResult(providers=[results[pid] for pid in wanted])

    # --- the service API -------------------------------------------------------------------------

    def latest(self, provider_id: str) -> ProviderHealth | None:
        return self._latest.get(provider_id)

    def status(self, provider_id: str) -> str | None:
        found = self._latest.get(provider_id)
        return found.status if found is not None else None

    def watch(self, provider_id: str) -> None:
        """Probe this provider every `interval_s` from now on (a router or the gateway uses it)."""
        self.providers.spec(provider_id)
        if provider_id not in self._watched:
            self._watched.add(provider_id)
            self._wake.set()

    def unwatch(self, provider_id: str) -> None:
        self._watched.discard(provider_id)

    async def check(self, provider_id: str) -> ProviderHealth:
        """Probe one provider now and keep the result. The provider's circuit breaker reads it: the
        probe counts like a request (a half-open breaker's trial, when one is due), so background
        probes notice a recovery without risking a host's request, and a failure without one."""
        breaker = self.breakers.get(provider_id) if self.breakers is not None else None
        counted = breaker is not None and breaker.state != "open" and breaker.allow()
        report = await self._probe(provider_id)
        if counted and breaker is not None:
            kind = report.error.kind if report.error is not None else None
            if kind is None:
                breaker.success()
            elif kind in _NOT_REACHED:
                breaker.release()
            else:
                breaker.failure(kind)
        return report

    async def _probe(self, provider_id: str) -> ProviderHealth:
        started = self._clock()
        error: SidecarError | None = None
        try:
            provider = self.providers.get(provider_id)
            if provider.spec.kind == "ollama":
                from sidecar.providers.ollama import OllamaClient

                await OllamaClient(provider.http, provider.spec.base_url, provider_id).get(
                    "/api/version", PROBE_TIMEOUTS
                )
            else:
                key = await provider.key()
                check = await provider.validate_key(key or "", PROBE_TIMEOUTS)
                if not check.valid:
                    error = check.error or SidecarError(
                        "auth_failed", "The provider refused the key.", provider=provider_id
                    )
        except SidecarError as exc:
            error = exc
        latency_ms = round((self._clock() - started) * 1000, 3)
        status: HealthStatus
        if error is None:
            status = "degraded" if latency_ms > SLOW_MS else "healthy"
        else:
            status = "degraded" if error.kind in _DEGRADED_KINDS else "unhealthy"
        when = dt.datetime.fromtimestamp(self._wall(), dt.UTC).isoformat(timespec="milliseconds")
        report = ProviderHealth(
            provider=provider_id,
            status=status,
            checked_at=when.replace("+00:00", "Z"),
            latency_ms=latency_ms,
            error=error.data() if error is not None else None,
        )
        self._latest[provider_id] = report
        return report

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The background loop: idle until something is watched, then a probe round per interval."""
        task_status.started()
        while True:
            if not self._watched:
                await self._wake.wait()
                self._wake = anyio.Event()
            for pid in sorted(self._watched):
                if pid in self.providers.specs and self.providers.enabled(pid):
                    try:
                        await self.check(pid)
                    except Exception:
                        _log.exception("health probe failed", provider=pid)
            await anyio.sleep(self.interval_s)

    async def _worth_probing(self, pid: str) -> bool:
        spec = self.providers.specs[pid]
        if not self.providers.enabled(pid):
            return False
        if not spec.needs_key:
            return True
        return bool(await self.key_configured(spec)) if self.key_configured else False
