"""The one place that picks concrete I/O and wires the layers together, and runs the server.

`build_services` makes every service from a config and a key store (tests build it too);
`serve` connects them to stdin/stdout through the dispatcher and runs until EOF or SIGTERM.

Start-up is kept to what the first answer needs: httpx2, structlog, keyring and the MCP SDK are
imported when first used; the HTTP client is built in the background right after the first
answer has gone out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import anyio

from sidecar import __version__, logs, redact
from sidecar.config import Config, state_dir
from sidecar.core.catalog import PriceBook
from sidecar.errors import SidecarError
from sidecar.infra.audit import AuditTrail
from sidecar.infra.db import Database, state_database
from sidecar.infra.keystore import KeyResolver, KeyringStore, KeyStore
from sidecar.infra.ledger import Ledger
from sidecar.providers.http import HttpClient
from sidecar.providers.registry import ProviderRegistry
from sidecar.rpc import envelope, stdio
from sidecar.rpc.dispatcher import Dispatcher, Route, route
from sidecar.rpc.envelope import Notification, Reply, Request
from sidecar.rpc.framing import DEFAULT_MAX_LINE, Oversize
from sidecar.services.catalog import CatalogService
from sidecar.services.chat import ChatService
from sidecar.services.context import Handler
from sidecar.services.keys import KeyService
from sidecar.services.limits import RateLimitsService, Resilience
from sidecar.services.local import LocalService
from sidecar.services.oauth import DEFAULT_AUTH_URL, OAuthService, ttl_from_env
from sidecar.services.pricing import Pricing
from sidecar.services.usage import UsageService
from sidecar.wire.methods import METHODS, NOTIFICATIONS

EOF_GRACE_S: Final = 1.0
_log = logs.get_logger("app")


@dataclass
class Services:
    config: Config
    http: HttpClient
    providers: ProviderRegistry
    keys: KeyResolver
    pricing: Pricing
    chat: ChatService
    catalog: CatalogService
    handlers: dict[str, Handler] = field(default_factory=dict)
    closers: list[Callable[[], Any]] = field(default_factory=list)
    # The state directory's database (`sidecar.db`); components register their migrations on it.
    db: Database | None = None
    # Tasks that live as long as the server (e.g. the OAuth loopback listeners' host).
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    # Sends a notification that belongs to no request (set by `serve`; dropped until then).
    broadcaster: Callable[[str, Any], None] | None = None

    def broadcast(self, method: str, params: Any) -> None:
        if self.broadcaster is not None:
            self.broadcaster(method, params)
        else:
            _log.warning("notification dropped: not serving", notification=method)

    async def aclose(self) -> None:
        for close in reversed(self.closers):
            try:
                result = close()
                if hasattr(result, "__await__"):
                    await result
            except Exception:
                _log.exception("closing a service failed")
        await self.http.aclose()


def build_services(
    config: Config, *, store: KeyStore | None = None, env: Mapping[str, str] | None = None
) -> Services:
    env = os.environ if env is None else env
    http = HttpClient(f"llm-sidecar/{__version__}")
    keys = KeyResolver(store or KeyringStore())

    async def get_key(provider_id: str, env_var: str | None, account: str | None) -> str:
        if account is None:  # an endpoint declared with `keychain = false`: the environment only
            value = os.environ.get(env_var, "").strip() if env_var else ""
            if not value:
                where = f"set {env_var} in the sidecar's environment" if env_var else "give it `api_key_env`"
                raise SidecarError(
                    "missing_key", f"No API key for {provider_id}: {where}.", provider=provider_id
                )
            redact.remember(value)
            return value
        return (await keys.resolve(provider_id, env_var, account=account)).value

    providers = ProviderRegistry(config, env, http, get_key)
    pricing = Pricing(providers, PriceBook())
    resilience = Resilience(config)
    http.observers.append(resilience.tracker.observe)
    chat = ChatService(providers, pricing, config, resilience)
    catalog = CatalogService(
        providers,
        pricing,
        methods=lambda: list(METHODS),
        notifications=lambda: list(NOTIFICATIONS),
        circuit_state=resilience.circuit_state,
    )
    limits = RateLimitsService(resilience, providers)
    services = Services(config, http, providers, keys, pricing, chat, catalog)
    services.handlers.update(chat.handlers())
    services.handlers.update(catalog.handlers())
    services.handlers.update(limits.handlers())
    local = LocalService(providers, keys, pricing.book)
    services.handlers.update(local.handlers())
    services.background.append(local.run)
    services.db = db = state_database(state_dir(env))
    services.closers.append(db.close)
    # The ledger's closer runs before the database's (closers run in reverse): it commits the queue.
    usage = UsageService(Ledger(db), pricing, providers, http, broadcast=services.broadcast)
    chat.hooks.append(usage)
    services.handlers.update(usage.handlers())
    services.closers.append(usage.close)
    audit = AuditTrail(db)
    services.handlers.update(KeyService(providers, keys, audit, env=env).handlers())
    oauth = OAuthService(
        providers,
        http,
        keys.store,
        audit,
        notify=services.broadcast,
        auth_url=env.get("OPENROUTER_AUTH_URL") or DEFAULT_AUTH_URL,
        ttl_s=ttl_from_env(env),
    )
    services.handlers.update(oauth.handlers())
    services.background.append(oauth.run)
    return services


def routes_for(handlers: Mapping[str, Handler]) -> dict[str, Route]:
    """Dispatcher routes for every method of the table that has a handler."""
    return {name: route(spec.params, handlers[name]) for name, spec in METHODS.items() if name in handlers}


class _McpGate:
    """Hands MCP traffic to the MCP face, created on the first MCP request (it loads the SDK off the loop)."""

    def __init__(self, services: Services, write: Callable[[bytes], None], tg: anyio.abc.TaskGroup) -> None:
        self._services = services
        self._write = write
        self._tg = tg
        self._bridge: Any = None

    def __call__(self, msg: Request | Notification | Reply) -> bool:
        if isinstance(msg, Request | Notification) and not _looks_like_mcp(msg):
            return False  # a host's unknown method stays a plain -32601, whatever MCP is doing
        if self._bridge is None:
            if not isinstance(msg, Request):
                # Only an MCP client's first request opens its connection; a host's late
                # `notifications/cancelled` (for a request already answered) must not load the SDK.
                return False
            try:
                from sidecar.mcp_bridge import McpBridge
            except ImportError:
                return False
            self._bridge = McpBridge(self._services, self._write)
            self._tg.start_soon(self._bridge.run)
        return bool(self._bridge.feed(msg))

    async def aclose(self) -> None:
        if self._bridge is not None:
            await self._bridge.aclose()


_MCP_PREFIXES: Final = (
    "notifications/",
    "tools/",
    "resources/",
    "prompts/",
    "completion/",
    "logging/",
    "tasks/",
)
_MCP_METHODS: Final = frozenset({"initialize", "ping", "server/discover", "subscriptions/listen"})


def _looks_like_mcp(msg: Request | Notification) -> bool:
    return msg.method in _MCP_METHODS or msg.method.startswith(_MCP_PREFIXES)


async def serve(
    services: Services,
    *,
    stdin_fd: int,
    stdout_fd: int,
    max_line: int = DEFAULT_MAX_LINE,
) -> None:
    """Serve until stdin ends or SIGTERM/SIGINT arrives; in-flight requests finish or are cancelled."""
    stopping = anyio.Event()
    writer = stdio.StdoutWriter(stdout_fd, on_broken_pipe=lambda: None)
    dispatcher = Dispatcher(routes_for(services.handlers), writer.write)
    first_answer_sent = False
    write = writer.write

    def write_and_warm(data: bytes) -> None:
        nonlocal first_answer_sent
        write(data)
        if not first_answer_sent:
            first_answer_sent = True
            warm_soon()

    def warm_soon() -> None:
        # Import the HTTP stack off the critical path, once the host has its first answer.
        tg.start_soon(anyio.to_thread.run_sync, services.http.warm)

    dispatcher._write = write_and_warm
    services.broadcaster = lambda method, params: write(envelope.encode_notification(method, params))
    send, receive = anyio.create_memory_object_stream[bytes | Oversize](64)
    try:
        async with anyio.create_task_group() as tg:
            gate = _McpGate(services, write, tg)
            dispatcher.fallback = gate
            stdio.start_stdin_reader(stdin_fd, send, max_line)

            async def watch_signals() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for signum in signals:
                        _log.info("signal received, shutting down", signal=signal.Signals(signum).name)
                        dispatcher.cancel_all()
                        stopping.set()
                        return

            async def run_dispatcher() -> None:
                async with receive:
                    await dispatcher.serve(_Relay(receive, stopping))
                stopping.set()

            tg.start_soon(watch_signals)
            tg.start_soon(run_dispatcher)
            for task in services.background:
                tg.start_soon(task)
            await stopping.wait()
            with anyio.move_on_after(EOF_GRACE_S):
                await dispatcher.drain(EOF_GRACE_S / 2)
            await gate.aclose()
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(0.5):
            await services.aclose()
        writer.close(timeout=0.5)


class _Relay:
    """An async iterator over `receive` that stops once `stopping` is set."""

    def __init__(
        self, receive: anyio.abc.ObjectReceiveStream[bytes | Oversize], stopping: anyio.Event
    ) -> None:
        self._receive = receive
        self._stopping = stopping

    def __aiter__(self) -> _Relay:
        return self

    async def __anext__(self) -> bytes | Oversize:
        if self._stopping.is_set():
            raise StopAsyncIteration
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None


def run(services: Services, *, max_line: int = DEFAULT_MAX_LINE) -> int:
    proto_out = stdio.protect_stdout()
    _log.debug("serving", version=__version__, pid=os.getpid())
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(
            lambda: serve(services, stdin_fd=sys.stdin.fileno(), stdout_fd=proto_out, max_line=max_line)
        )
    return 0
