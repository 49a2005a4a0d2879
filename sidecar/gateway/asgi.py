"""The gateway's ASGI application and the state its requests share (backend, counters, request
ids, the dashboard's sessions, the access-log hook).

The routes of `routes.TABLE` are plain ASGI endpoints (`Endpoint`: errors in the route's dialect,
the access record). Without CORS they are reached straight from `FastPath` once the `Host` header
is allowed (DNS-rebinding protection), skipping Starlette's middleware and router; the other
routes (`/health`, `/openapi.json`, the dashboard), and every route when CORS is on, go through
Starlette with `TrustedHostMiddleware` (and `CORSMiddleware`).

Must not know: providers' wire formats, the routes' API shapes, how the services decide anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

import msgspec
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sidecar import logs
from sidecar.errors import SidecarError
from sidecar.gateway import routes
from sidecar.gateway.access import AccessRecord, Counters
from sidecar.gateway.backend import Backend
from sidecar.gateway.bookkeeping import Bookkeeping
from sidecar.gateway.errors import Dialect, HttpError, from_sidecar
from sidecar.gateway.exchange import Disconnected, Exchange, Receive, Scope, Send
from sidecar.gateway.response_store import ResponseStore

DEFAULT_MAX_BODY: Final = 32 * 1024 * 1024
_log = logs.get_logger("gateway")
_json = msgspec.json.Encoder()


class Gateway:
    """The ASGI application (`app`) and the state it shares between requests."""

    def __init__(
        self,
        backend: Backend,
        *,
        allowed_hosts: list[str],
        cors_origins: list[str] | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        on_access: Callable[[AccessRecord], None] | None = None,
        whole_when_asked: bool = True,
    ) -> None:
        self.backend = backend
        self.max_body = max_body
        # `[gateway] upstream_streaming = "as_asked"`: a request not streamed by its client is sent
        # upstream whole where the provider takes it (`services.context.asked_whole`).
        self.whole_when_asked = whole_when_asked
        self.counters = Counters()
        self.bookkeeping = Bookkeeping()
        self.on_access = on_access
        self._next_id = 0
        self.responses = ResponseStore()  # the Responses API's stored responses
        from sidecar.gateway.dashboard import Dashboard

        self.dashboard = Dashboard(self)
        endpoints = {
            (method, path): Endpoint(self, route, dialect)
            for (method, path), (route, dialect) in routes.TABLE.items()
        }
        plain = [
            Route("/health", self.health, methods=["GET"]),
            Route("/", self.dashboard.page, methods=["GET"]),
            Route("/login", self.dashboard.login, methods=["POST"]),
            Route("/static/{name}", self.dashboard.static, methods=["GET"]),
            Route("/dashboard/data", self.dashboard.data, methods=["GET"]),
            Route("/openapi.json", self.openapi, methods=["GET"]),
        ]
        table = [Route(path, endpoint, methods=[method]) for (method, path), endpoint in endpoints.items()]
        middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)]
        if cors_origins:
            middleware.append(
                Middleware(
                    CORSMiddleware,
                    allow_origins=cors_origins,
                    allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                    allow_headers=["authorization", "content-type", "x-api-key", "anthropic-version"],
                )
            )
        self.starlette = Starlette(routes=plain + table, middleware=middleware)
        self.app: Any = self.starlette if cors_origins else FastPath(endpoints, self.starlette, allowed_hosts)

    def request_id(self) -> str:
        self._next_id += 1
        return f"gw-{self._next_id}"

    async def health(self, request: Request) -> Response:
        # Always 200 while the process serves: with PostgreSQL or Redis away requests are still
        # answered (README "Running it for a team"); the body says what is degraded.
        shared = await self.backend.health()
        if shared is None:
            return JSONResponse({"status": "ok"})
        ok = all(part.get("ok", True) for part in shared.values() if isinstance(part, dict))
        return JSONResponse({"status": "ok" if ok else "degraded", **shared})

    async def openapi(self, request: Request) -> Response:
        from sidecar.gateway.openapi import document

        return Response(_json.encode(document()), media_type="application/json")


class FastPath:
    """ASGI: the table's routes straight to their endpoint once the Host header is allowed."""

    def __init__(
        self, endpoints: dict[tuple[str, str], Endpoint], app: Any, allowed_hosts: list[str]
    ) -> None:
        self.endpoints = endpoints
        self.app = app
        self.any_host = "*" in allowed_hosts
        self.hosts = frozenset(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self.endpoints.get((scope["method"], scope["path"]))
            if endpoint is not None and self._host_ok(scope):
                await endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _host_ok(self, scope: Scope) -> bool:
        if self.any_host:
            return True
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
                host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
                return host in self.hosts
        return False


class Endpoint:
    """An ASGI endpoint around one route: errors in the route's dialect, the access record, and
    the call's bookkeeping once the answer is sent (`bookkeeping`)."""

    __slots__ = ("dialect", "gateway", "route")

    def __init__(self, gateway: Gateway, route: routes.Route, dialect: Dialect) -> None:
        self.gateway = gateway
        self.route = route
        self.dialect = dialect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw = self.gateway
        ex = Exchange(gw, scope, receive, send, self.dialect)
        gw.counters.requests += 1
        started = time.monotonic()
        try:
            await self.route(ex)
        except HttpError as err:
            await ex.send_error(err)
        except SidecarError as exc:
            await ex.send_error(from_sidecar(exc))
        except Disconnected:
            ex.status = 499
        except Exception:
            _log.exception("gateway request failed", path=scope.get("path"))
            await ex.send_error(
                HttpError(500, "internal_error", "The gateway failed to answer this request.")
            )
        finally:
            record = ex.record(started)
            gw.dashboard.recent.append(record)
            if gw.on_access is not None:
                gw.on_access(record)
            later = ex.later
            later.open = False  # offered from now on (by a task the call left behind): run at once
            if later:  # the answer is sent: now what the call only records
                try:
                    await gw.bookkeeping.run(later)
                finally:
                    # Each deferred call holds a copy of the context, which holds this list: a
                    # cycle the garbage collector would otherwise have to find, every request.
                    later.clear()
