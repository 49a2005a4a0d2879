"""The gateway's HTTP application: routes, client-key checks, the relay of a service call to an
HTTP response (JSON or SSE), and the safety middleware (Host check, CORS).

Each `/v1` route is a small ASGI endpoint: it reads the body (refusing one over the size limit
with 413), checks the client key (401), decodes the request in its API's shape (400), places the
model (404) and checks the key may use it (403), its per-minute limits and budgets (429), then
calls the same handler the stdio face calls (`complete`/`stream`), with the key's name in
`current_client` so the ledger records it. A stream starts its 200 response only when the first
token is ready, so a failure before it is still an HTTP error; a client that disconnects cancels
the call, which closes the upstream connection and records the partial usage.

Must not know: providers' wire formats, how the services decide anything.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectSendStream
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sidecar import logs
from sidecar.errors import SidecarError, field_path
from sidecar.gateway import anthropic_api, openai_api
from sidecar.gateway.errors import Dialect, HttpError, body, from_sidecar, headers
from sidecar.services.client_keys import ClientKeyRecord, ClientKeyService
from sidecar.services.context import Handler, current_client
from sidecar.wire.base import Empty
from sidecar.wire.catalog import ListModelsParams, ListModelsResult
from sidecar.wire.chat import ChatResult, CompleteParams
from sidecar.wire.embed import EmbedParams, EmbedResult
from sidecar.wire.routers import RouterListResult

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_MAX_BODY: Final = 32 * 1024 * 1024
_SSE_HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_log = logs.get_logger("gateway")


class Backend(Protocol):
    """What the gateway uses of the sidecar: the methods' handlers, the model resolver, the client
    keys, and each key's spend."""

    @property
    def handlers(self) -> dict[str, Handler]: ...

    async def resolve(self, model: str) -> str:
        """`provider:model` of a model string, or `router:<name>` (SidecarError when neither)."""

    @property
    def client_keys(self) -> ClientKeyService: ...

    async def client_spend(self, name: str) -> tuple[float, float]:
        """USD spent today and this month by a client key."""

    def prometheus(self) -> str:
        """The counters of `/metrics`, in Prometheus' text format."""

    async def health(self) -> dict[str, Any] | None:
        """A team gateway's database and Redis states (None on the desktop: nothing shared)."""


@dataclass
class Counters:
    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    open_streams: int = 0


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """One request as the access log keeps it: never a prompt or a completion."""

    ts: str
    request_id: str
    method: str
    path: str
    status: int
    latency_ms: float
    client: str | None = None
    model: str | None = None
    provider: str | None = None
    router: str | None = None
    outcome: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cost_usd: float | None = None


class _Disconnected(Exception):
    pass


class _Call:
    """The `CallContext` of a gateway request: stream events go to a memory channel."""

    __slots__ = ("_send", "request_id")

    def __init__(self, request_id: str, send: MemoryObjectSendStream[Any] | None) -> None:
        self.request_id = request_id
        self._send = send

    async def notify(self, method: str, params: Any) -> None:
        if self._send is not None and method == "stream/event":
            # No checkpoint while the buffer has room: the producer decodes a whole upstream read
            # before the relay runs, which then sends those events to the client in one write.
            try:
                self._send.send_nowait(params.event)
            except anyio.WouldBlock:
                await self._send.send(params.event)


def _complete_params(raw: dict[str, Any]) -> CompleteParams:
    try:
        return msgspec.convert(raw, CompleteParams)
    except msgspec.ValidationError as exc:
        raise HttpError(
            400, "invalid_request", f"Invalid request: {exc}", param=field_path(str(exc))
        ) from None


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                if int(value) > limit:
                    raise HttpError(413, "request_too_large", _too_large(limit))
            except ValueError:
                raise HttpError(400, "invalid_request", "Content-Length is not a number.") from None
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise _Disconnected
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HttpError(413, "request_too_large", _too_large(limit))
        chunks.append(chunk)
        if not msg.get("more_body", False):
            return b"".join(chunks)


def _too_large(limit: int) -> str:
    return f"The request body is larger than the gateway's limit of {limit} bytes ([gateway] max_body_bytes)."


def _presented_key(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            text: str = value.decode("latin-1").strip()
            if text[:7].lower() == "bearer ":
                return text[7:].strip()
        elif name == b"x-api-key":
            return str(value.decode("latin-1").strip())
    return None


def _iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_json = msgspec.json.Encoder()


class Gateway:
    """The ASGI application and the state it shares between requests."""

    def __init__(
        self,
        backend: Backend,
        *,
        allowed_hosts: list[str],
        cors_origins: list[str] | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        on_access: Callable[[AccessRecord], None] | None = None,
    ) -> None:
        self.backend = backend
        self.max_body = max_body
        self.counters = Counters()
        self.on_access = on_access
        self._next_id = 0
        from sidecar.gateway.dashboard import Dashboard

        self.dashboard = Dashboard(self)
        routes = [
            Route("/health", self.health, methods=["GET"]),
            Route("/", self.dashboard.page, methods=["GET"]),
            Route("/login", self.dashboard.login, methods=["POST"]),
            Route("/static/{name}", self.dashboard.static, methods=["GET"]),
            Route("/dashboard/data", self.dashboard.data, methods=["GET"]),
            Route("/openapi.json", self.openapi, methods=["GET"]),
            Route("/v1/models", _Endpoint(self, self.models, "openai"), methods=["GET"]),
            Route("/metrics", _Endpoint(self, self.metrics, "openai"), methods=["GET"]),
            Route("/v1/chat/completions", _Endpoint(self, self.chat, "openai"), methods=["POST"]),
            Route("/v1/completions", _Endpoint(self, self.completions, "openai"), methods=["POST"]),
            Route("/v1/embeddings", _Endpoint(self, self.embeddings, "openai"), methods=["POST"]),
            Route("/v1/messages", _Endpoint(self, self.messages, "anthropic"), methods=["POST"]),
        ]
        middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)]
        if cors_origins:
            middleware.append(
                Middleware(
                    CORSMiddleware,
                    allow_origins=cors_origins,
                    allow_methods=["GET", "POST", "OPTIONS"],
                    allow_headers=["authorization", "content-type", "x-api-key", "anthropic-version"],
                )
            )
        self.starlette = Starlette(routes=routes, middleware=middleware)
        self.app: Any = self.starlette
        if not cors_origins:
            # The /v1 routes skip Starlette's middleware and router (the Host check stays); the
            # other routes, and every route when CORS is on, go through Starlette.
            fast = {
                (method, route.path): route.app
                for route in routes
                if route.path.startswith("/v1/") and isinstance(route.app, _Endpoint)
                for method in route.methods or ()
            }
            self.app = _FastPath(fast, self.starlette, allowed_hosts)

    def request_id(self) -> str:
        self._next_id += 1
        return f"gw-{self._next_id}"

    # --- plain routes ---------------------------------------------------------------------------

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

    # --- /v1 routes -------------------------------------------------------------------------------

    async def models(self, ex: _Exchange) -> None:
        key = await ex.authenticate()
        result = await self.backend.handlers["list_models"](ListModelsParams(), _Call(ex.id, None))
        assert isinstance(result, ListModelsResult)
        from sidecar.core.client_access import allowed

        ids = [m.model for m in result.models if allowed(key.allow, m.model)]
        routers = await self.backend.handlers["router_list"](Empty(), _Call(ex.id, None))
        assert isinstance(routers, RouterListResult)
        ids += [f"router:{r.name}" for r in routers.routers if allowed(key.allow, f"router:{r.name}")]
        await ex.send_json(200, openai_api.model_list(ids))

    async def metrics(self, ex: _Exchange) -> None:
        await ex.authenticate()
        text = self.backend.prometheus().encode()
        ex.status = 200
        ex.sent_head = True
        head = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
        await ex.send({"type": "http.response.start", "status": 200, "headers": head})
        await ex.send({"type": "http.response.body", "body": text})

    async def chat(self, ex: _Exchange) -> None:
        raw = await ex.body()
        key = await ex.authenticate()
        req = ex.decode(raw, openai_api.ChatCompletionRequest)
        model = await ex.admit(key, req.model)
        try:
            params = _complete_params(openai_api.to_params(req, model))
        except openai_api.InvalidRequest as exc:
            raise HttpError(400, "invalid_request", str(exc), param=exc.param) from None
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        if req.stream:
            encoder = openai_api.ChunkEncoder(req.model, include_usage=include_usage)
            await ex.relay(params, encoder.event, encoder.finish, encoder.error)
            return
        result = await ex.call(params)
        await ex.send_json(
            200, openai_api.response(result, response_id=openai_api.new_id(), created=int(time.time()))
        )

    async def completions(self, ex: _Exchange) -> None:
        raw = await ex.body()
        key = await ex.authenticate()
        req = ex.decode(raw, openai_api.CompletionRequest)
        model = await ex.admit(key, req.model)
        try:
            params = _complete_params(openai_api.completion_to_params(req, model))
        except openai_api.InvalidRequest as exc:
            raise HttpError(400, "invalid_request", str(exc), param=exc.param) from None
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            encoder = openai_api.ChunkEncoder(req.model, include_usage=include_usage, legacy=True)
            await ex.relay(params, encoder.event, encoder.finish, encoder.error)
            return
        result = await ex.call(params)
        response = openai_api.text_response(
            result, response_id=openai_api.new_id("cmpl-"), created=int(time.time())
        )
        await ex.send_json(200, response)

    async def embeddings(self, ex: _Exchange) -> None:
        raw = await ex.body()
        key = await ex.authenticate()
        req = ex.decode(raw, openai_api.EmbeddingRequest)
        model = await ex.admit(key, req.model)
        if model.startswith("router:"):
            raise HttpError(
                400, "invalid_request", "Routers choose chat models; name an embeddings model.", param="model"
            )
        try:
            params = msgspec.convert(openai_api.embed_params(req, model), EmbedParams)
        except msgspec.ValidationError as exc:
            raise HttpError(
                400, "invalid_request", f"Invalid request: {exc}", param=field_path(str(exc))
            ) from None
        result = await ex.run_method("embed", params)
        assert isinstance(result, EmbedResult)
        ex.usage = (result.provider, result.model, result.usage.input_tokens, 0, result.cost_usd)
        listed = openai_api.embedding_list(
            result.embeddings,
            f"{result.provider}:{result.model}",
            result.usage.input_tokens,
            base64=req.encoding_format == "base64",
        )
        await ex.send_json(200, listed)

    async def messages(self, ex: _Exchange) -> None:
        raw = await ex.body()
        key = await ex.authenticate()
        req = ex.decode(raw, anthropic_api.MessagesRequest)
        model = await ex.admit(key, req.model)
        try:
            params = _complete_params(anthropic_api.to_params(req, model))
        except anthropic_api.InvalidRequest as exc:
            raise HttpError(400, "invalid_request", str(exc), param=exc.param) from None
        if req.stream:
            encoder = anthropic_api.EventEncoder(req.model, sign_thinking=anthropic_api.signs_thinking(model))
            await ex.relay(params, encoder.event, encoder.finish, encoder.error)
            return
        result = await ex.call(params)
        await ex.send_json(200, anthropic_api.response(result, response_id=anthropic_api.new_id()))


class _FastPath:
    """ASGI: `/v1` routes straight to their endpoint once the Host header is allowed."""

    def __init__(self, routes: dict[tuple[str, str], Any], app: Any, allowed_hosts: list[str]) -> None:
        self.routes = routes
        self.app = app
        self.any_host = "*" in allowed_hosts
        self.hosts = frozenset(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self.routes.get((scope["method"], scope["path"]))
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


class _Endpoint:
    """An ASGI endpoint around one route handler: errors in the route's dialect, the access log."""

    def __init__(
        self, gateway: Gateway, handle: Callable[[_Exchange], Awaitable[None]], dialect: Dialect
    ) -> None:
        self.gateway = gateway
        self.handle = handle
        self.dialect = dialect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw = self.gateway
        ex = _Exchange(gw, scope, receive, send, self.dialect)
        gw.counters.requests += 1
        started = time.monotonic()
        try:
            await self.handle(ex)
        except HttpError as err:
            await ex.send_error(err)
        except SidecarError as exc:
            await ex.send_error(from_sidecar(exc))
        except _Disconnected:
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


class _Exchange:
    """One request/response on a `/v1` route."""

    __slots__ = (
        "client",
        "dialect",
        "gw",
        "id",
        "key",
        "model",
        "receive",
        "result",
        "scope",
        "send",
        "sent_head",
        "status",
        "usage",
    )

    def __init__(self, gw: Gateway, scope: Scope, receive: Receive, send: Send, dialect: Dialect) -> None:
        self.gw = gw
        self.scope = scope
        self.receive = receive
        self.send = send
        self.dialect = dialect
        self.id = gw.request_id()
        self.status = 0
        self.sent_head = False
        self.client: str | None = None
        self.key: ClientKeyRecord | None = None
        self.model: str | None = None
        self.result: ChatResult | None = None
        # provider, model, input tokens, output tokens, cost: what the access log shows
        self.usage: tuple[str, str, int, int, float | None] | None = None

    # --- request side ---------------------------------------------------------------------------

    async def body(self) -> bytes:
        return await _read_body(self.scope, self.receive, self.gw.max_body)

    def decode(self, raw: bytes, kind: type[Any]) -> Any:
        try:
            return msgspec.json.decode(raw, type=kind)
        except msgspec.ValidationError as exc:
            raise HttpError(
                400, "invalid_request", f"Invalid request: {exc}", param=field_path(str(exc))
            ) from None
        except msgspec.DecodeError as exc:
            raise HttpError(400, "invalid_request", f"The request body is not valid JSON: {exc}") from None

    async def authenticate(self) -> ClientKeyRecord:
        keys = self.gw.backend.client_keys
        presented = _presented_key(self.scope)
        if not presented:
            hint = (
                "" if await keys.count() else " No client key exists yet: create one with client_key_create."
            )
            raise HttpError(
                401, "invalid_api_key", "A client key is required (Authorization: Bearer lsk-...)." + hint
            )
        key = await keys.authenticate(presented)
        if key is None:
            raise HttpError(401, "invalid_api_key", "The client key is not valid, or it is disabled.")
        self.client = key.name
        self.key = key
        return key

    async def admit(self, key: ClientKeyRecord, requested: str) -> str:
        """The model to run (`provider:model`), once the key may use it now."""
        from sidecar.core.client_access import allowed

        wanted = requested.strip()
        if wanted in ("", "default") and key.router:
            wanted = key.router
        try:
            model = await self.gw.backend.resolve(wanted)
        except SidecarError as exc:
            raise HttpError(404, "model_not_found", exc.message, param="model") from None
        self.model = model
        if not (allowed(key.allow, model) or allowed(key.allow, wanted)):
            raise HttpError(403, "model_not_allowed", f"This client key may not use {model}.", param="model")
        wait = await self.gw.backend.client_keys.admit(key)
        if wait is not None:
            raise HttpError(
                429,
                "rate_limited",
                f"This client key's per-minute limit is spent; retry in {wait:.0f}s.",
                wait,
            )
        if key.daily_usd is not None or key.monthly_usd is not None:
            today, month = await self.gw.backend.client_spend(key.name)
            for limit, spent, period, retry in (
                (key.daily_usd, today, "daily", _seconds_to_next_day()),
                (key.monthly_usd, month, "monthly", _seconds_to_next_month()),
            ):
                if limit is not None and spent >= limit:
                    message = f"This client key's {period} budget of ${limit:g} is spent (${spent:.4f})."
                    raise HttpError(429, "budget_exceeded", message, retry)
        return model

    # --- running the call -----------------------------------------------------------------------

    async def call(self, params: CompleteParams) -> ChatResult:
        """`complete`, cancelled when the client goes away."""
        result = await self.run_method("complete", params)
        assert isinstance(result, ChatResult)
        await self._settle(result)
        return result

    async def run_method(self, method: str, params: Any) -> Any:
        """A method's handler under the client's name, cancelled when the client goes away."""
        handler = self.gw.backend.handlers[method]
        token = current_client.set(self.client)
        outcome: list[Any] = []
        failure: list[SidecarError] = []
        try:
            async with anyio.create_task_group() as tg:

                async def run() -> None:
                    try:
                        outcome.append(await handler(params, _Call(self.id, None)))
                    except SidecarError as exc:
                        failure.append(exc)
                    tg.cancel_scope.cancel()

                tg.start_soon(run)
                await self._wait_disconnect()
                tg.cancel_scope.cancel()
        finally:
            current_client.reset(token)
        if failure:
            raise failure[0]
        if not outcome:
            raise _Disconnected
        return outcome[0]

    async def relay(
        self,
        params: CompleteParams,
        encode: Callable[[Any], bytes],
        finish: Callable[[ChatResult], bytes],
        error: Callable[[dict[str, Any]], bytes],
    ) -> None:
        """`stream`, relayed as SSE; the 200 goes out with the first bytes a client is shown."""
        handler = self.gw.backend.handlers["stream"]
        send_events, events = anyio.create_memory_object_stream[Any](4096)
        token = current_client.set(self.client)
        failure: list[SidecarError] = []
        results: list[ChatResult] = []
        refusal: HttpError | None = None
        counters = self.gw.counters
        counters.open_streams += 1
        try:
            async with anyio.create_task_group() as tg:

                async def run() -> None:
                    async with send_events:
                        try:
                            result = await handler(params, _Call(self.id, send_events))
                            assert isinstance(result, ChatResult)
                            results.append(result)
                        except SidecarError as exc:
                            failure.append(exc)

                async def watch() -> None:
                    await self._wait_disconnect()
                    tg.cancel_scope.cancel()

                tg.start_soon(run)
                tg.start_soon(watch)
                async with events:
                    async for event in events:
                        out = encode(event)
                        # Send what has queued meanwhile in the same write.
                        while True:
                            try:
                                out += encode(events.receive_nowait())
                            except (anyio.WouldBlock, anyio.EndOfStream):
                                break
                        if out:
                            await self._stream_bytes(out)
                if failure:
                    err = from_sidecar(failure[0])
                    if self.sent_head:
                        await self._stream_bytes(error(body(err, self.dialect, self.id)), more=False)
                    else:
                        refusal = err  # answered as a plain HTTP error, once the task group is done
                else:
                    await self._settle(results[0])
                    await self._stream_bytes(finish(results[0]), more=False)
                tg.cancel_scope.cancel()
        finally:
            counters.open_streams -= 1
            current_client.reset(token)
        if refusal is not None:
            raise refusal
        if not results and not failure:
            raise _Disconnected

    async def _settle(self, result: ChatResult) -> None:
        self.result = result
        u = result.usage
        self.usage = (result.provider, result.model, u.input_tokens, u.output_tokens, result.cost_usd)
        if self.key is not None:
            await self.gw.backend.client_keys.spent_tokens(
                self.key, result.usage.input_tokens + result.usage.output_tokens
            )

    async def _wait_disconnect(self) -> None:
        while True:
            msg = await self.receive()
            if msg["type"] == "http.disconnect":
                return

    # --- response side --------------------------------------------------------------------------

    async def _stream_bytes(self, data: bytes, *, more: bool = True) -> None:
        if not self.sent_head:
            self.sent_head = True
            self.status = 200
            await self.send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        await self.send({"type": "http.response.body", "body": data, "more_body": more})

    async def send_json(self, status: int, obj: Any) -> None:
        data = _json.encode(obj)
        self.status = status
        self.sent_head = True
        head = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        await self.send({"type": "http.response.start", "status": status, "headers": head})
        await self.send({"type": "http.response.body", "body": data})

    async def send_error(self, err: HttpError) -> None:
        if self.sent_head:
            return
        data = _json.encode(body(err, self.dialect, self.id))
        self.status = err.status
        self.sent_head = True
        head = [*headers(err), (b"content-length", str(len(data)).encode())]
        await self.send({"type": "http.response.start", "status": err.status, "headers": head})
        await self.send({"type": "http.response.body", "body": data})

    def record(self, started: float) -> AccessRecord:
        u = self.usage
        provider = u[0] if u else (self.model.split(":", 1)[0] if self.model else None)
        return AccessRecord(
            ts=_iso_now(),
            request_id=self.id,
            method=self.scope.get("method", ""),
            path=self.scope.get("path", ""),
            status=self.status,
            latency_ms=round((time.monotonic() - started) * 1000, 3),
            client=self.client,
            model=f"{u[0]}:{u[1]}" if u else self.model,
            provider=provider,
            router=self.model[len("router:") :] if self.model and self.model.startswith("router:") else None,
            outcome="ok" if 200 <= self.status < 300 else "error",
            input_tokens=u[2] if u else None,
            output_tokens=u[3] if u else None,
            total_tokens=(u[2] + u[3]) if u else None,
            cost_usd=u[4] if u else None,
        )


def _seconds_to_next_day() -> float:
    now = dt.datetime.now(dt.UTC)
    tomorrow = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (tomorrow - now).total_seconds()


def _seconds_to_next_month() -> float:
    now = dt.datetime.now(dt.UTC)
    first = (now.replace(day=28) + dt.timedelta(days=4)).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    return (first - now).total_seconds()
