"""The one place that picks concrete implementations and wires the layers together.

`build_services` makes every service from a config and a key store (tests build it too). Each
service is a `GROUPS` row (which methods it serves) and a `Services` property that builds it on
first use, so start-up pays only for what the first answer needs: the HTTP client (aiohttp),
structlog, keyring and the MCP SDK are imported when first used. `sidecar.process` runs the
services on stdin/stdout.

Must not know: stdin/stdout, framing, the MCP SDK, HTTP routes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Coroutine, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio

from sidecar import __version__, logs
from sidecar.config import Config, state_dir, with_runtime
from sidecar.errors import SidecarError
from sidecar.services.context import CallContext, Handler

if TYPE_CHECKING:
    from sidecar.gateway.service import GatewayService
    from sidecar.infra.access_log import AccessLog
    from sidecar.infra.audit import AuditTrail
    from sidecar.infra.coordination import Coordinator
    from sidecar.infra.db import Database
    from sidecar.infra.keystore import KeyResolver, KeyStore
    from sidecar.infra.pg import PgBlocking
    from sidecar.infra.price_store import PriceStore
    from sidecar.infra.prices import SqlPriceStore
    from sidecar.infra.runtime_state import RuntimeState
    from sidecar.infra.sql import SqlEngine
    from sidecar.providers.base import ProviderSpec
    from sidecar.providers.http import HttpClient
    from sidecar.providers.registry import ProviderRegistry
    from sidecar.services.about import AboutService
    from sidecar.services.admin import AdminService
    from sidecar.services.audit_log import AuditLogService
    from sidecar.services.catalog import CatalogService
    from sidecar.services.chat import ChatService
    from sidecar.services.client_keys import ClientKeyService
    from sidecar.services.embed import EmbedService
    from sidecar.services.health import HealthService
    from sidecar.services.keys import KeyService
    from sidecar.services.limits import RateLimitsService, Resilience
    from sidecar.services.local import LocalService
    from sidecar.services.metrics import MetricsService
    from sidecar.services.oauth import OAuthService
    from sidecar.services.price_sync import SharedPrices
    from sidecar.services.pricing import Pricing
    from sidecar.services.routers import RouterService
    from sidecar.services.token_count import TokenCountService
    from sidecar.services.usage import UsageService
    from sidecar.wire.chat import CompleteParams

_log = logs.get_logger("app")


# Which service serves which methods. Services are built on first use, so start-up pays only for
# what the first answer needs; a test checks this table against each service's own handlers().
GROUPS: Final[dict[str, tuple[str, ...]]] = {
    "chat": ("complete", "stream"),
    "embeddings": ("embed",),
    "token_count": ("count_tokens",),
    "about": ("info",),
    "catalog": ("list_providers", "list_models", "estimate_cost"),
    "limits": ("rate_limits",),
    "local": ("ollama_status", "ollama_list", "ollama_pull", "ollama_delete", "recommend_models"),
    "usage": ("usage_summary", "set_budget", "get_budgets", "refresh_pricing"),
    "key_service": ("validate_key", "set_key", "delete_key", "list_keys"),
    "oauth": ("openrouter_auth_start", "openrouter_auth_complete"),
    "gateway": ("gateway_start", "gateway_stop", "gateway_status"),
    "metrics": ("metrics",),
    "routers": ("router_list", "router_set", "router_delete", "router_preview"),
    "client_keys": (
        "client_key_create",
        "client_key_list",
        "client_key_update",
        "client_key_rotate",
        "client_key_delete",
    ),
    "admin": ("set_provider_enabled", "endpoint_set", "endpoint_delete"),
    "health": ("provider_health",),
    "audit_log": ("audit_log",),
}

Task = Callable[..., Coroutine[Any, Any, None]]  # takes `task_status`, reports when it is ready


class Services:
    """Every service of the sidecar, each built (and its modules imported) on first use.

    Shared parts (the HTTP client, the provider registry, prices, the database) are built once,
    by whichever service needs them first. Long-lived tasks of a service (Ollama's pull hub, the
    OAuth listeners' host) start when it is built, once `serve` has given a task group.
    """

    def __init__(
        self,
        config: Config,
        *,
        store: KeyStore | None = None,
        env: Mapping[str, str] | None = None,
        config_path: Path | None = None,
    ) -> None:
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.file_config = config  # config.toml as read; `config` adds what was set at run time
        self.config_path = config_path
        self.config = with_runtime(config, self.runtime.endpoints)
        self._store = store
        self._ledger_by: float | None = None  # see `aclose`
        self._closers: list[Callable[[], Any]] = []
        self._tg: anyio.abc.TaskGroup | None = None
        self._waiting: list[Task] = []
        self._shared_prices: SharedPrices | None = None
        # Sends a notification that belongs to no request (set by `serve`; dropped until then).
        self.broadcaster: Callable[[str, Any], None] | None = None
        self.handlers: dict[str, Handler] = {
            name: self._deferred(group, name) for group, names in GROUPS.items() for name in names
        }

    def _deferred(self, group: str, name: str) -> Handler:
        real: Handler | None = None

        async def handler(params: Any, ctx: CallContext) -> Any:
            nonlocal real
            if real is None:
                real = getattr(self, group).handlers()[name]
                await self._start_waiting()
                # From now on this is a detour: the stdio dispatcher calls `real` in its place.
                handler.settled = real  # type: ignore[attr-defined]
            return await real(params, ctx)

        return handler

    def broadcast(self, method: str, params: Any) -> None:
        if self.broadcaster is not None:
            self.broadcaster(method, params)
        else:
            _log.warning("notification dropped: not serving", notification=method)

    async def start_background(self, tg: anyio.abc.TaskGroup) -> None:
        """Called by `serve`: long-lived tasks of services built so far, and of later ones, run in `tg`."""
        self._tg = tg
        if self.config_path is not None:
            from sidecar.services.config_watch import ConfigWatcher

            watcher = ConfigWatcher(self.config_path, lambda: self.admin.reload_from_disk())
            await tg.start(watcher.run)
        await self._start_waiting()

    def apply_config(self, file_config: Config) -> None:
        """Put a new configuration in force (config.toml reloaded, an endpoint set at run time) in
        every service built so far; the others read `self.config` when they are built."""
        self.file_config = file_config
        self.config = with_runtime(file_config, self.runtime.endpoints)
        built = self.__dict__
        if "providers" in built:
            self.providers.reload(self.config)
        if "resilience" in built:
            self.resilience.reconfigure(self.config)
        if "chat" in built:
            self.chat.config = self.config

    def _background(self, task: Task) -> None:
        self._waiting.append(task)

    async def _start_waiting(self) -> None:
        # `start` waits until each task is ready, so the first call that needs it finds it running.
        while self._tg is not None and self._waiting:
            await self._tg.start(self._waiting.pop(0))

    async def start_gateway(self) -> None:
        """`[gateway] enabled = true`: start it with the daemon (a failure is logged, not fatal)."""
        from sidecar.wire.gateway import GatewayStartParams

        try:
            result = await self.handlers["gateway_start"](GatewayStartParams(), _NoCaller())
        except SidecarError as exc:
            _log.error("gateway not started", error=exc.message)
            return
        _log.info("gateway started", url=getattr(result, "url", None))

    async def stop_gateway(self) -> None:
        if "gateway" in self.__dict__:
            await self.gateway.aclose()

    async def aclose(self, ledger_by: float | None = None) -> None:
        """Close what was built, newest first. `ledger_by` (a `time.monotonic()` instant) is when the
        usage ledger's close must give up (the stdio process's share of the contract's 2 s); by
        default it waits while its writer commits, within the ledger's own bound."""
        self._ledger_by = ledger_by
        for close in reversed(self._closers):
            try:
                result = close()
                if hasattr(result, "__await__"):
                    await result
            except Exception:
                _log.exception("closing a service failed")
        if "http" in self.__dict__:
            await self.http.aclose()

    # --- shared parts ---------------------------------------------------------------------------

    @cached_property
    def http(self) -> HttpClient:
        from sidecar.core.proxy import Proxies
        from sidecar.providers.http import HttpClient, PoolSettings

        proxies = Proxies(self.config.http.proxy, self.config.http.no_proxy, self.env)
        for proxy in proxies.configured:
            _log.info("upstream requests go through a proxy", proxy=proxy.shown)
        return HttpClient(f"llm-sidecar/{__version__}", PoolSettings.from_config(self.config), proxies)

    @cached_property
    def keys(self) -> KeyResolver:
        from sidecar.infra.keystore import KeyResolver, KeyringStore, RememberedKeys

        if self._store is not None:
            return KeyResolver(self._store)
        remembered = RememberedKeys(KeyringStore())
        self._closers.append(remembered.aclose)
        return KeyResolver(remembered)

    @cached_property
    def providers(self) -> ProviderRegistry:
        from sidecar.providers.registry import ProviderRegistry

        keys = self.keys

        async def get_key(provider_id: str, env_var: str | None, account: str | None) -> str:
            from_env = keys.from_env(env_var)  # the environment wins, and needs no await
            if from_env is not None:
                return from_env
            if account is None:  # an endpoint declared with `keychain = false`: the environment only
                where = f"set {env_var} in the sidecar's environment" if env_var else "give it `api_key_env`"
                message = f"No API key for {provider_id}: {where}."
                raise SidecarError("missing_key", message, provider=provider_id)
            return (await keys.resolve(provider_id, env_var, account=account)).value

        return ProviderRegistry(
            self.config, self.env, self.http, get_key, enabled_overrides=self.runtime.enabled
        )

    async def key_configured(self, spec: ProviderSpec) -> bool | None:
        """Whether the provider's key is in the environment or the keychain; None when the keychain
        could not be asked."""
        try:
            configured, _, _ = await self.keys.describe_source(
                spec.id, spec.key_env, account=spec.keychain_account
            )
        except SidecarError:
            return None
        return configured

    @cached_property
    def runtime(self) -> RuntimeState:
        """Settings changed at run time (`runtime.json` in the state directory)."""
        from sidecar.infra.runtime_state import RuntimeState

        return RuntimeState(state_dir(self.env))

    @cached_property
    def pricing(self) -> Pricing:
        import sqlite3

        from sidecar.core.catalog import PriceBook
        from sidecar.infra.price_store import PriceStore
        from sidecar.services.pricing import Pricing

        book = PriceBook()
        stored: list[Any] = []
        # Only a database that exists can hold refreshed prices: a fresh state directory is not
        # created (nor migrated) on the first request's path just to find none. A team's shared
        # prices are loaded by `open_storage` instead.
        store = self.price_store
        if isinstance(store, PriceStore) and self.db.path.exists():
            try:
                stored = store.load_sync()
            except (sqlite3.Error, OSError) as exc:  # a broken state file must not stop pricing
                _log.warning("stored prices unreadable, the catalog's are used", error=type(exc).__name__)
        by_date: dict[str, list[Any]] = {}
        for row in stored:
            by_date.setdefault(row.price_date, []).append(row.info)
        for date, entries in sorted(by_date.items()):
            book.apply_overrides(entries, date)
        if not isinstance(store, PriceStore):
            # A team's prices are in the shared database: re-read in the background, so another
            # replica's `refresh_pricing` is used here within seconds.
            from sidecar.services.price_sync import SharedPrices

            self._shared_prices = SharedPrices(store, book)
            if self._tg is not None:  # serving already: start now, not at the next service built
                self._tg.start_soon(self._shared_prices.run)
            else:
                self._background(self._shared_prices.run)
        return Pricing(self.providers, book)

    @cached_property
    def price_store(self) -> PriceStore | SqlPriceStore:
        """Prices fetched by `refresh_pricing`, kept in the state database across restarts (in the
        shared database for a team, so every replica prices alike)."""
        if self.team:
            from sidecar.infra.prices import SqlPriceStore

            return SqlPriceStore(self.storage)
        from sidecar.infra.price_store import PriceStore

        return PriceStore(self.db)

    @cached_property
    def resilience(self) -> Resilience:
        from sidecar.services.limits import Resilience

        # With Redis, the providers' client-side limits are shared by every replica.
        shared = self.coordination if self.config.coordination.url else None
        resilience = Resilience(self.config, coordinator=shared)
        if shared is None:  # this process's own view: the gateway may take it in after answering
            from sidecar.services.limits import observed_after_reply

            self.http.observers.append(observed_after_reply(resilience.tracker.observe))
        else:
            self.http.observers.append(resilience.tracker.observe)
        return resilience

    @cached_property
    def db(self) -> Database:
        """The state directory's database (`sidecar.db`); components register their migrations."""
        from sidecar.infra.db import state_database

        db = state_database(state_dir(self.env))
        self._closers.append(db.close)
        return db

    @cached_property
    def storage(self) -> SqlEngine:
        """Where the stores keep their tables: the state database (`db`) by default, PostgreSQL
        when `[storage] url` or `SIDECAR_DATABASE_URL` names one (psycopg is imported only then)."""
        from sidecar.infra.storage import open_engine

        engine = open_engine(self.config.storage, self.env, self.db)
        if engine.engine != "sqlite":  # the SQLite engine is closed with `db`
            self._closers.append(engine.aclose)
        return engine

    @cached_property
    def coordination(self) -> Coordinator:
        """Shared counters (rate windows, budget reservations): this process's own by default,
        Redis when `[coordination] url` names one."""
        from sidecar.infra.coordination import from_config

        coordinator = from_config(self.config.coordination)
        self._closers.append(coordinator.aclose)
        return coordinator

    @cached_property
    def ledger_db(self) -> Database | PgBlocking:
        """The ledger's database, used from its writer thread: `db`, or PostgreSQL for a team."""
        from sidecar.infra.storage import open_blocking

        db = open_blocking(self.config.storage, self.env, self.db)
        if db is not self.db:
            self._closers.append(db.close)
        return db

    async def open_storage(self) -> dict[str, object]:
        """Connect to the configured database and Redis now, apply pending migrations and load the
        stored prices (a team gateway does this before it binds, so a replica that cannot reach
        them never takes traffic); raises `SidecarError` (`storage_unavailable`,
        `coordination_unavailable`) naming what could not be reached, never a password."""
        engine = self.storage
        opener = getattr(engine, "open", None)
        if opener is not None:
            await opener()
        # The ledger's own connection (its writer runs on a thread), migrated now, not on the
        # first request's path.
        await anyio.to_thread.run_sync(self.usage.ledger.budgets)
        coordination = await self.coordination.health()
        if not coordination.get("ok"):
            where = coordination.get("at") or "the configured Redis"
            raise SidecarError(
                "coordination_unavailable", f"Redis at {where} cannot be reached.", retry_after_s=5.0
            )
        if self.team:
            await self._load_shared_prices()
        return {"database": await self.storage_health(), "coordination": coordination}

    async def _load_shared_prices(self) -> None:
        self.pricing  # noqa: B018 (built here: it makes `_shared_prices` in team mode)
        if self._shared_prices is not None:
            await self._shared_prices.sync()

    @property
    def team(self) -> bool:
        """True when a shared database or Redis is configured (a team gateway's replica)."""
        from sidecar.infra.storage import database_url

        return database_url(self.config.storage, self.env) is not None or bool(self.config.coordination.url)

    async def team_health(self) -> dict[str, object] | None:
        """`/health`'s shared parts: the database (and ledger rows waiting for it) and Redis;
        None without a team configuration (the desktop's `/health` stays `{"status": "ok"}`)."""
        if not self.team:
            return None
        database = await self.storage_health()
        if "usage" in self.__dict__:
            database = {**database, "ledger_rows_waiting": self.usage.ledger.pending_count}
        return {"database": database, "coordination": await self.coordination.health()}

    async def storage_health(self) -> dict[str, object]:
        health = getattr(self.storage, "health", None)
        if health is not None:
            result: dict[str, object] = await health()
            return result
        return {"engine": self.storage.engine, "ok": True}

    @cached_property
    def audit(self) -> AuditTrail:
        from sidecar.infra.audit import AuditTrail

        return AuditTrail(self.storage)

    # --- the services ---------------------------------------------------------------------------

    @cached_property
    def chat(self) -> ChatService:
        from sidecar.infra.response_store import ResponseStore
        from sidecar.services.chat import ChatService
        from sidecar.services.response_cache import ResponseCache
        from sidecar.services.suggestions import Suggestions
        from sidecar.services.window_limits import WindowLimitHooks

        chat = ChatService(self.providers, self.pricing, self.config, self.resilience)
        chat.hooks.append(WindowLimitHooks(lambda: self.config, self.pricing))
        chat.hooks.append(self.usage)
        chat.hooks.append(self.metrics)
        # Without Redis every budget and limit the hooks settle lives in this process, so the
        # gateway may settle them once its answer is sent (it holds back the next admission).
        chat.after_reply = not self.config.coordination.url
        chat.expand = self._expand_router
        chat.cache = ResponseCache(ResponseStore(self.db), lambda: self.config)
        chat.suggest = Suggestions(
            self.providers,
            self.pricing,
            key_configured=self.key_configured,
            circuit_state=lambda provider: self.resilience.circuit_state(provider),
        )
        return chat

    async def _expand_router(self, params: CompleteParams) -> CompleteParams:
        if not params.model.startswith("router:"):
            return params  # the common path builds nothing
        routers = self.routers
        chat = self.chat
        hooks = chat.hooks
        if routers not in hooks:
            # Counts what each router request used; before the usage hook, so a request's cost is
            # on the router's counter before its ledger row (the counter's floor) is queued.
            # A new list, never an insert: requests waiting inside a hook (the usage hook waits on
            # Redis) walk the old one, and an insert ahead of them made them run that hook again
            # (a second reservation, a second ledger row).
            at = hooks.index(self.usage)
            chat.hooks = [*hooks[:at], routers, *hooks[at:]]
        return await routers.expand(params)

    @cached_property
    def embeddings(self) -> EmbedService:
        from sidecar.services.embed import EmbedService

        return EmbedService(self.providers, self.config, hooks=[self.usage, self.metrics])

    @cached_property
    def token_count(self) -> TokenCountService:
        from sidecar.services.token_count import TokenCountService

        return TokenCountService(self.chat, self.providers, self.config)

    @cached_property
    def about(self) -> AboutService:
        from sidecar.services.about import AboutService

        return AboutService(self.env, self.config_path)

    @cached_property
    def catalog(self) -> CatalogService:
        from sidecar.services.catalog import CatalogService
        from sidecar.services.live_models import LiveModels

        return CatalogService(
            self.providers,
            self.pricing,
            circuit_state=lambda provider: self.resilience.circuit_state(provider),
            key_configured=self.key_configured,
            health_state=lambda provider: self.health.status(provider),
            live=LiveModels(self.providers),
        )

    @cached_property
    def limits(self) -> RateLimitsService:
        from sidecar.services.limits import RateLimitsService

        return RateLimitsService(self.resilience, self.providers)

    @cached_property
    def local(self) -> LocalService:
        from sidecar.services.local import LocalService

        local = LocalService(self.providers, self.keys, self.pricing.book)
        self._background(local.run)
        return local

    @cached_property
    def usage(self) -> UsageService:
        from sidecar.infra.ledger import Ledger
        from sidecar.services.usage import UsageService

        # Built after the database, so its closer (which commits the queue) runs before the db's.
        usage = UsageService(
            Ledger(self.ledger_db),
            self.pricing,
            self.providers,
            self.http,
            broadcast=self.broadcast,
            price_store=self.price_store,
            coordinator=self.coordination,
            client_limits=self._client_limits,
            # No request outlives `total_s`; the margin covers settling after the last byte.
            hold_s=self.config.timeouts.total_s + 10,
        )
        self._closers.append(lambda: usage.close(self._ledger_close_s()))
        self._closers.append(usage.stop_background)  # closers run newest first: before the ledger
        return usage

    def _ledger_close_s(self) -> float | None:
        """How long the ledger's close may take now (None: its own bound)."""
        if self._ledger_by is None:
            return None
        return max(0.0, self._ledger_by - time.monotonic())

    async def _client_limits(self, name: str) -> tuple[float | None, float | None]:
        return await self.client_keys.limits_for(name)

    @cached_property
    def key_service(self) -> KeyService:
        from sidecar.services.keys import KeyService

        return KeyService(self.providers, self.keys, self.audit, env=self.env)

    @cached_property
    def oauth(self) -> OAuthService:
        from sidecar.services.oauth import DEFAULT_AUTH_URL, OAuthService, ttl_from_env

        oauth = OAuthService(
            self.providers,
            self.http,
            self.keys.store,
            self.audit,
            notify=self.broadcast,
            auth_url=self.env.get("OPENROUTER_AUTH_URL") or DEFAULT_AUTH_URL,
            ttl_s=ttl_from_env(self.env),
        )
        self._background(oauth.run)
        return oauth

    @cached_property
    def client_keys(self) -> ClientKeyService:
        from sidecar.infra.client_keys import SqlClientKeyStore
        from sidecar.services.client_keys import ClientKeyService

        service = ClientKeyService(
            SqlClientKeyStore(self.storage),
            self.audit,
            self.usage,
            self.coordination,
            renamed=[self.metrics.rename_client],
        )
        self._closers.append(service.aclose)
        return service

    @cached_property
    def gateway(self) -> GatewayService:
        from sidecar.gateway.service import build

        def spawn(task: Callable[[], Any]) -> None:
            if self._tg is None:
                raise SidecarError("internal_error", "The gateway can only start while the sidecar serves.")
            self._tg.start_soon(task)

        gateway = build(self, spawn)
        self._closers.append(gateway.aclose)
        return gateway

    @cached_property
    def access_log(self) -> AccessLog:
        from sidecar.infra.access_log import AccessLog

        log = AccessLog(state_dir(self.env) / "logs")
        self._closers.append(log.close)
        return log

    @cached_property
    def routers(self) -> RouterService:
        from sidecar.infra.routers import SqlRouterStore
        from sidecar.services.routers import RouterService

        metrics = self.metrics
        routers = RouterService(
            self.config,
            SqlRouterStore(self.storage),
            self.catalog,
            self.providers,
            self.resilience,
            self.keys,
            self.env,
            latency=metrics.latency_p50_by_provider,
            coordinator=self.coordination,
            spent=self._router_spend,
        )
        self._closers.append(routers.aclose)
        return routers

    async def _router_spend(self, name: str, day: str) -> float:
        return await self.usage.router_spend(name, day)

    @cached_property
    def metrics(self) -> MetricsService:
        from sidecar.services.metrics import MetricsService

        return MetricsService(lambda: self.usage.ledger)

    @cached_property
    def health(self) -> HealthService:
        """Provider probes; the gateway and routers call `health.watch(id)` for providers in use."""
        from sidecar.services.health import HealthService

        health = HealthService(
            self.providers, key_configured=self.key_configured, breakers=self.resilience.breakers
        )
        if self._tg is not None:  # built by a lambda (list_providers), not a method: start it now
            self._tg.start_soon(health.run)
        else:
            self._background(health.run)
        return health

    @cached_property
    def audit_log(self) -> AuditLogService:
        from sidecar.services.audit_log import AuditLogService

        return AuditLogService(self.audit)

    @cached_property
    def admin(self) -> AdminService:
        from sidecar.services.admin import AdminService

        return AdminService(
            self.providers,
            self.runtime,
            self.audit,
            file_config=self.file_config,
            apply=self.apply_config,
            config_path=self.config_path,
            broadcast=self.broadcast,
        )


class _NoCaller:
    """The call context of a method the sidecar calls itself (no request, nowhere to notify)."""

    request_id = "sidecar"

    async def notify(self, method: str, params: Any) -> None:
        return None


def build_services(
    config: Config,
    *,
    store: KeyStore | None = None,
    env: Mapping[str, str] | None = None,
    config_path: str | Path | None = None,
) -> Services:
    """`config_path` may be text (the daemon's start spells it without pathlib)."""
    return Services(
        config, store=store, env=env, config_path=None if config_path is None else Path(config_path)
    )
