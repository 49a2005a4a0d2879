"""`gateway_start`, `gateway_stop`, `gateway_status`: the gateway as a service of the running
sidecar. Importing this module is cheap; starlette and uvicorn load when the gateway starts.

Must not know: providers, stdin/stdout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from sidecar import logs
from sidecar.config import GatewaySettings
from sidecar.errors import SidecarError, invalid_request
from sidecar.services.context import CallContext, Handler
from sidecar.wire.base import Empty
from sidecar.wire.gateway import (
    GatewayStartParams,
    GatewayStartResult,
    GatewayStatusResult,
    GatewayStopResult,
)

if TYPE_CHECKING:
    from sidecar.gateway.access import AccessRecord
    from sidecar.gateway.asgi import Gateway
    from sidecar.gateway.backend import Backend
    from sidecar.gateway.server import Running

DEFAULT_HOST = "127.0.0.1"
_log = logs.get_logger("gateway")


def build(services: Any, spawn: Callable[[Callable[[], Any]], None]) -> GatewayService:
    """The gateway service over the app's services (duck-typed: the face never imports the app);
    `spawn` runs a coroutine function in the app's task group. Requests reach the access log when
    `[gateway] access_log` is on (the log writes off the request path)."""
    from sidecar.gateway.backend import SidecarBackend

    settings = services.config.gateway
    # The record itself is queued: the log's writer thread encodes it, off the request path.
    on_access: Callable[[AccessRecord], None] | None = (
        services.access_log.write if settings.access_log else None
    )
    return GatewayService(SidecarBackend(services), settings, spawn, on_access)


class GatewayService:
    def __init__(
        self,
        backend: Backend,
        settings: GatewaySettings,
        spawn: Callable[[Callable[[], Any]], None],
        on_access: Callable[[AccessRecord], None] | None = None,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self._spawn = spawn  # runs a coroutine function in the app's task group
        self._on_access = on_access
        self._running: Running | None = None
        self._gateway: Gateway | None = None
        self._lock = anyio.Lock()

    def handlers(self) -> dict[str, Handler]:
        return {"gateway_start": self.start, "gateway_stop": self.stop, "gateway_status": self.status}

    async def start(self, params: GatewayStartParams, ctx: CallContext) -> GatewayStartResult:
        async with self._lock:
            if self._running is not None:
                return GatewayStartResult(url=self._running.url, port=self._running.port)
            host = params.host or self.settings.host or DEFAULT_HOST
            port = self.settings.port if params.port is None else params.port
            return await self._start(host, port)

    async def _start(self, host: str, port: int) -> GatewayStartResult:
        from sidecar.gateway.asgi import Gateway
        from sidecar.gateway.server import Running, allowed_hosts, bind, is_loopback

        if not is_loopback(host) and await self.backend.client_keys.count() == 0:
            raise invalid_request(
                f"The gateway will not listen on {host} without client keys: create one with "
                "client_key_create first (every request must then present it).",
                field="host",
            )
        try:
            sock = bind(host, port)
        except OSError as exc:
            raise SidecarError(
                "invalid_request", f"Cannot listen on {host}:{port}: {exc.strerror or exc}.", field="port"
            ) from None
        gateway = Gateway(
            self.backend,
            allowed_hosts=allowed_hosts(host, port),
            cors_origins=self.settings.cors_origins,
            max_body=self.settings.max_body_bytes,
            whole_when_asked=self.settings.upstream_streaming == "as_asked",
            on_access=self._on_access,
        )
        running = Running(gateway.app, host, sock)
        self._spawn(running.serve)
        self._running, self._gateway = running, gateway
        _log.info("gateway listening", url=running.url)
        return GatewayStartResult(url=running.url, port=running.port)

    async def stop(self, params: Empty, ctx: CallContext) -> GatewayStopResult:
        async with self._lock:
            running, self._running, self._gateway = self._running, None, None
            if running is None:
                return GatewayStopResult(stopped=False)
            await running.stop()
            return GatewayStopResult(stopped=True)

    async def status(self, params: Empty, ctx: CallContext) -> GatewayStatusResult:
        running, gateway = self._running, self._gateway
        if running is None or gateway is None:
            return GatewayStatusResult(running=False)
        return GatewayStatusResult(
            running=True,
            url=running.url,
            port=running.port,
            uptime_s=round(time.monotonic() - running.started, 3),
            requests_served=gateway.counters.requests,
            open_streams=gateway.counters.open_streams,
            login_url=f"{running.url}/?login={gateway.dashboard.issue_login()}",
        )

    async def aclose(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            await running.stop()
