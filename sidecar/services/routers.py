"""Routers as a service: `router_list`, `router_set`, `router_delete`, `router_preview`, and the
expansion of a request whose model is `router:<name>` (every face) into the model to try first
and the rest as its fallback chain, so the chat service tries the next candidate when one fails
before the first token.

Candidates come from the model catalog (and custom endpoints); availability from the circuit
breakers, the client-side limiters and whether each provider has a key; measured latency from
the metrics service. Ordering is `core.router`'s.

A router's own limits are checked as a chat hook (`before`) and charged after (`after`): requests
and tokens per minute as windows, `usd_per_day` as a budget line of the coordinator (shared by
every replica with Redis) whose floor is what the ledger holds for the router today (its spend
rollup, as the budget gate keeps it in memory): a restarted process, or a Redis restarted without
persistence, starts the day from what was spent, not from zero. The hook runs before the usage
hook, so a request's cost is settled on the counter before its ledger row is queued (a floor read
meanwhile never counts it twice).

Must not know: HTTP, stdin/stdout, providers' wire formats.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import msgspec

from sidecar import logs
from sidecar.config import Config, RouterSettings
from sidecar.core import router as policy
from sidecar.core.counters import BudgetLine, Reservation, Window
from sidecar.core.kept import Kept
from sidecar.core.models import ModelRef
from sidecar.errors import SidecarError, invalid_request
from sidecar.infra.keystore import KeyResolver
from sidecar.infra.routers import RouterStore
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.catalog import CatalogService
from sidecar.services.context import CallContext, Handler
from sidecar.services.limits import Resilience
from sidecar.services.outcome import Outcome
from sidecar.wire.base import Empty
from sidecar.wire.catalog import ListModelsParams
from sidecar.wire.chat import CompleteParams, ImagePart
from sidecar.wire.routers import (
    RouterCandidate,
    RouterDeleteParams,
    RouterDeleteResult,
    RouterInfo,
    RouterListResult,
    RouterPreviewParams,
    RouterPreviewRequest,
    RouterPreviewResult,
    RouterSetParams,
    RouterSetResult,
)

KEY_CHECK_TTL_S = 30.0

# The router a chat request was expanded from, for the `before` hook, which sees the expanded
# request only (same task as the expansion; `after` reads it from the outcome, and clears it).
_current_router: ContextVar[str | None] = ContextVar("current_router", default=None)


def _is_local(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def needs_of(request: RouterPreviewRequest | CompleteParams | None) -> tuple[str, ...]:
    if request is None:
        return ()
    needs = []
    if request.tools:
        needs.append("tools")
    for msg in request.messages or ():
        if isinstance(msg.content, list) and any(isinstance(p, ImagePart) for p in msg.content):
            needs.append("vision")
            break
    if request.reasoning is not None:
        needs.append("reasoning")
    return tuple(needs)


if TYPE_CHECKING:
    from sidecar.infra.coordination import Coordinator

STORED_TTL_S: Final = 2.0
"""The oldest the routers read from storage may be when used (another replica's change is seen
within this time; this process's own at once); they are read again ahead of that while in use."""
WINDOW_S: Final = 60.0
DAY_GRACE_S: Final = 3600.0

RouterSpend = Callable[[str, str], Awaitable[float]]
"""USD the ledger holds for a router (by name) on a UTC day (`YYYY-MM-DD`), queued rows included."""

_log = logs.get_logger("routers")


def _day_line(name: str, usd_per_day: float, committed_usd: float, day: str, end_ts: float) -> BudgetLine:
    """A router's spend on UTC `day` as a coordinator budget line: shared by every replica with
    Redis, never below what the ledger has committed for the router that day."""
    return BudgetLine(f"router:{name}:usd:{day}", usd_per_day, committed_usd, end_ts + DAY_GRACE_S)


def _utc_day() -> tuple[str, float]:
    """Today (UTC) as `YYYY-MM-DD`, with the Unix time the next day starts."""
    now = dt.datetime.now(dt.UTC)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return start.date().isoformat(), (start + dt.timedelta(days=1)).timestamp()


def _windows(name: str, limits: Any) -> list[tuple[Window, float]]:
    """A router's per-minute windows and what admitting one request charges each (its tokens are
    charged when known; a router in token debt waits)."""
    out: list[tuple[Window, float]] = []
    if limits.requests_per_minute:
        out.append((Window(f"router:{name}:requests", float(limits.requests_per_minute), WINDOW_S), 1.0))
    if limits.tokens_per_minute:
        out.append((Window(f"router:{name}:tokens", float(limits.tokens_per_minute), WINDOW_S), 0.0))
    return out


class RouterService:
    def __init__(
        self,
        config: Config,
        store: RouterStore,
        catalog: CatalogService,
        providers: ProviderRegistry,
        resilience: Resilience,
        keys: KeyResolver,
        env: Mapping[str, str],
        latency: Callable[[], dict[str, float]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        coordinator: Coordinator | None = None,
        spent: RouterSpend | None = None,
    ) -> None:
        if coordinator is None:
            from sidecar.infra.coordination import LocalCoordinator

            coordinator = LocalCoordinator()
        self.coordinator = coordinator
        self.config = config
        self.store = store
        self.catalog = catalog
        self.providers = providers
        self.resilience = resilience
        self.keys = keys
        self.env = env
        self._latency = latency or (lambda: {})
        self._clock = clock
        # Re-read now and then, ahead of the requests: another replica may set or delete a router.
        # While the database is away the last ones read serve.
        self._stored: Kept[dict[str, dict[str, Any]]] = Kept(
            store.all, ttl_s=STORED_TTL_S, last_on=(SidecarError,), name="routers"
        )
        self._key_checks: dict[str, tuple[float, str | None]] = {}
        self._limits_of: dict[str, Any] = {}
        self._spent = spent
        # Per router: the UTC day, and what the ledger held for it that day as last read.
        self._floors: dict[str, tuple[str, float]] = {}

    def handlers(self) -> dict[str, Handler]:
        return {
            "router_list": self.list_routers,
            "router_set": self.set_router,
            "router_delete": self.delete_router,
            "router_preview": self.preview,
        }

    # --- the methods ------------------------------------------------------------------------------

    async def list_routers(self, params: Empty, ctx: CallContext) -> RouterListResult:
        return RouterListResult(routers=list((await self._all()).values()))

    async def set_router(self, params: RouterSetParams, ctx: CallContext) -> RouterSetResult:
        if params.name in policy.BUILTINS or params.name in self.config.routers:
            where = "built in" if params.name in policy.BUILTINS else "defined in config.toml"
            raise invalid_request(f"Router {params.name!r} is {where}; choose another name.", field="name")
        settings = msgspec.to_builtins(params.settings)
        await self.store.put(params.name, settings, time.time())
        self._stored.forget()
        return RouterSetResult(router=RouterInfo(name=params.name, source="stored", settings=params.settings))

    async def delete_router(self, params: RouterDeleteParams, ctx: CallContext) -> RouterDeleteResult:
        if params.name in policy.BUILTINS or params.name in self.config.routers:
            raise invalid_request(f"Router {params.name!r} is not one made with router_set.", field="name")
        deleted = await self.store.delete(params.name)
        self._stored.forget()
        return RouterDeleteResult(deleted=deleted)

    async def preview(self, params: RouterPreviewParams, ctx: CallContext) -> RouterPreviewResult:
        name = policy.router_name(params.router) or params.router
        planned = await self.plan(name, needs_of(params.request))
        chosen = policy.chain(planned)
        return RouterPreviewResult(
            router=name,
            chosen=chosen[0] if chosen else None,
            candidates=[
                RouterCandidate(
                    position=i + 1,
                    model=p.candidate.model,
                    provider=p.candidate.provider,
                    why=p.why,
                    available=p.available,
                    unavailable_because=p.unavailable_because,
                    input_per_mtok=p.candidate.input_per_mtok,
                    output_per_mtok=p.candidate.output_per_mtok,
                )
                for i, p in enumerate(planned)
            ],
        )

    # --- what chat and the gateway use ------------------------------------------------------------

    async def exists(self, name: str) -> bool:
        return name in await self._all()

    async def expand(self, params: CompleteParams) -> CompleteParams:
        """A `router:<name>` request as its first available candidate, the others as its fallback."""
        name = policy.router_name(params.model)
        if name is None:
            return params
        planned = await self.plan(name, needs_of(params))
        models = policy.chain(planned)
        if not models:
            reasons = (
                "; ".join(f"{p.candidate.model}: {p.unavailable_because}" for p in planned)
                or "no model matches"
            )
            raise SidecarError(
                "provider_error",
                f"No candidate of router {name!r} can take a request now ({reasons}).",
                field="model",
            )
        _current_router.set(name)
        return msgspec.structs.replace(params, model=models[0], fallback=models[1:])

    # --- the router's own limits (a chat hook counts what each request used) ----------------------

    async def _check_limits(self, name: str, settings: RouterSettings) -> None:
        limits = settings.limits
        if limits is None:
            return
        self._limits_of[name] = limits
        if limits.usd_per_day is not None:
            # The coordinator's counter: with Redis, what every replica's requests spent today.
            line = await self._spend_line(name, limits.usd_per_day)
            ((spent, _),) = await self.coordinator.figures([line])
            if spent >= limits.usd_per_day:
                raise SidecarError(
                    "budget_exceeded",
                    f"Router {name!r} spent its ${limits.usd_per_day:g} for today (${spent:.4f}).",
                    retry_after_s=_seconds_to_midnight(),
                )
        if limits.requests_per_minute is None and limits.tokens_per_minute is None:
            return
        # The coordinator's windows: with Redis, every replica's requests count against one limit.
        admission = await self.coordinator.acquire(_windows(name, limits))
        if not admission.allowed:
            wait = max(admission.retry_after_s, 0.001)
            raise SidecarError(
                "rate_limited",
                f"Router {name!r} reached its per-minute limit; retry in {wait:.0f}s.",
                retry_after_s=round(wait, 3),
            )

    async def before(self, ref: ModelRef, params: CompleteParams) -> None:
        """The router's own limits, checked as a chat hook (not while expanding) so that a request
        they refuse is recorded like any other refused before sending: one ledger row."""
        name = _current_router.get()
        if name is None:
            return
        info = (await self._all()).get(name)
        if info is not None:
            await self._check_limits(name, info.settings)

    async def after(self, outcome: Outcome) -> None:
        name = outcome.router
        if name is None:
            return
        _current_router.set(None)
        usage = outcome.usage
        limits = self._limits_of.get(name)
        if limits is not None and limits.tokens_per_minute and usage is not None:
            used = float(usage.input_tokens + usage.output_tokens)
            await self.coordinator.adjust(
                [(w, used) for w, _ in _windows(name, limits) if w.key.endswith(":tokens")]
            )
        if outcome.cost_usd and limits is not None and limits.usd_per_day is not None:
            line = await self._spend_line(name, limits.usd_per_day, read=False)
            # Settling a reservation nobody holds adds the cost to the line's spend, atomically.
            await self.coordinator.settle(Reservation(uuid.uuid4().hex, (line,), 0.0), outcome.cost_usd)

    async def _spend_line(self, name: str, usd_per_day: float, *, read: bool = True) -> BudgetLine:
        """The router's budget line of today, its floor what the ledger holds for the router today
        (as last read when `read` is False). A floor read before a request is never one that counts
        the request itself: its cost is settled before its ledger row is queued."""
        day, end_ts = _utc_day()
        known = self._floors.get(name)
        committed = known[1] if known is not None and known[0] == day else 0.0
        if read and self._spent is not None:
            try:
                committed = await self._spent(name, day)
            except (sqlite3.Error, OSError, SidecarError) as exc:
                _log.warning("ledger unreadable, router spend not floored", error=type(exc).__name__)
            self._floors[name] = (day, committed)
        return _day_line(name, usd_per_day, committed, day, end_ts)

    async def plan(self, name: str, needs: tuple[str, ...] = ()) -> list[policy.Planned]:
        routers = await self._all()
        info = routers.get(name)
        if info is None:
            known = ", ".join(sorted(routers))
            raise SidecarError(
                "model_not_found", f"No router is named {name!r} (known: {known}).", field="model"
            )
        spec = policy.spec_from_mapping(name, msgspec.to_builtins(info.settings))
        if needs:
            spec = policy.RouterSpec(**{**_fields(spec), "needs": tuple(sorted({*spec.needs, *needs}))})
        ranked = policy.rank(spec, await self._candidates())
        return policy.plan(ranked, await self._availability({r.candidate.provider for r in ranked}))

    # --- internals --------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop re-reading the stored routers in the background (the storage is about to close)."""
        await self._stored.aclose()

    async def _all(self) -> dict[str, RouterInfo]:
        stored = await self._stored.get()
        out: dict[str, RouterInfo] = {}
        for name, spec in policy.BUILTINS.items():
            out[name] = RouterInfo(
                name=name, source="builtin", settings=RouterSettings(strategy=spec.strategy)
            )
        for name, settings in self.config.routers.items():
            out[name] = RouterInfo(name=name, source="config", settings=settings)
        for name, raw in stored.items():
            if name not in out:
                out[name] = RouterInfo(
                    name=name, source="stored", settings=msgspec.convert(raw, RouterSettings)
                )
        return out

    async def _candidates(self) -> list[policy.Candidate]:
        listed = await self.catalog.list_models(ListModelsParams(), _Quiet())
        latency = self._latency()
        specs = self.providers.specs
        return [
            policy.Candidate(
                model=m.model,
                provider=m.provider,
                input_per_mtok=m.input_per_mtok,
                output_per_mtok=m.output_per_mtok,
                context_window=m.context_window,
                capabilities=frozenset(m.capabilities),
                local=m.provider == "ollama"
                or (m.provider in specs and _is_local(specs[m.provider].base_url)),
                latency_ms=latency.get(m.provider),
            )
            for m in listed.models
        ]

    async def _availability(self, providers: set[str]) -> policy.Availability:
        out = policy.Availability()
        for provider in providers:
            if provider not in self.providers.specs:
                out.reasons[provider] = "unknown provider"
                continue
            if self.resilience.circuit_state(provider) == "open":
                out.reasons[provider] = "circuit breaker open after repeated failures"
                continue
            limiter = self.resilience.limiter(provider)
            if limiter is not None:
                requests_left, tokens_left = limiter.available()
                if (requests_left is not None and requests_left < 1) or (
                    tokens_left is not None and tokens_left <= 0
                ):
                    out.reasons[provider] = "client-side rate limit spent for this minute"
                    continue
            missing = await self._key_missing(provider)
            if missing is not None:
                out.reasons[provider] = missing
        return out

    async def _key_missing(self, provider: str) -> str | None:
        spec = self.providers.specs[provider]
        if not spec.needs_key:
            return None
        cached = self._key_checks.get(provider)
        now = self._clock()
        if cached is not None and now - cached[0] < KEY_CHECK_TTL_S:
            return cached[1]
        reason: str | None = None
        try:
            if spec.keychain_account is None:
                if not spec.key_env or not self.env.get(spec.key_env, "").strip():
                    reason = "no API key"
            else:
                await self.keys.resolve(provider, spec.key_env, account=spec.keychain_account)
        except SidecarError as exc:
            reason = "no API key" if exc.kind == "missing_key" else f"key unavailable ({exc.kind})"
        self._key_checks[provider] = (now, reason)
        return reason


def _seconds_to_midnight() -> float:
    now = dt.datetime.now(dt.UTC)
    tomorrow = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return round((tomorrow - now).total_seconds(), 3)


def _fields(spec: policy.RouterSpec) -> dict[str, Any]:
    return {f: getattr(spec, f) for f in spec.__dataclass_fields__}


class _Quiet:
    request_id = "router"

    async def notify(self, method: str, params: Any) -> None:
        return None
