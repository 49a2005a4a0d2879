"""Routes inbound JSON-RPC messages to handlers, one task and one cancel scope per request.

Many requests run at once and are answered in any order; answers and notifications go out through
the single `write` function given at construction. Cancellation (`$/cancelRequest`,
`notifications/cancelled`) cancels the request's scope, which closes its upstream call; the request
is answered with -32800. Messages for methods this table does not hold go to an optional `fallback`
(the MCP face), so one connection can serve both.

Must not know: LLMs, providers, keys, what the methods do, where bytes come from or go.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import anyio
import msgspec

from sidecar import logs
from sidecar.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    REQUEST_CANCELLED,
    ProtocolError,
    SidecarError,
    field_path,
)
from sidecar.rpc import envelope
from sidecar.rpc.envelope import Inbound, Invalid, Notification, Reply, Request, RequestId
from sidecar.rpc.framing import Oversize
from sidecar.wire.base import ErrorData

Write = Callable[[bytes], None]
Handler = Callable[[Any, "RequestContext"], Awaitable[Any]]
Fallback = Callable[[Request | Notification | Reply], bool]

CANCEL_METHODS: Final = frozenset({"$/cancelRequest", "notifications/cancelled"})
_EMPTY_PARAMS: Final = msgspec.Raw(b"{}")
_log = logs.get_logger("rpc")


class _CancelParams(msgspec.Struct):
    id: RequestId | None = None
    requestId: RequestId | None = None


_cancel_decoder: Final = msgspec.json.Decoder(_CancelParams)


@dataclass(frozen=True, slots=True)
class Route:
    decoder: msgspec.json.Decoder[Any]
    handler: Handler


def route(params_type: type[Any], handler: Handler) -> Route:
    return Route(msgspec.json.Decoder(params_type), handler)


class RequestContext:
    """What a handler may use of the connection: its id and a way to send notifications."""

    __slots__ = ("_write", "cancel_scope", "method", "request_id")

    def __init__(
        self, request_id: RequestId, method: str, write: Write, cancel_scope: anyio.CancelScope
    ) -> None:
        self.request_id = request_id
        self.method = method
        self._write = write
        self.cancel_scope = cancel_scope

    async def notify(self, method: str, params: Any) -> None:
        self._write(envelope.encode_notification(method, params))

    @property
    def progress_token(self) -> None:
        return None


class Dispatcher:
    def __init__(
        self,
        routes: dict[str, Route],
        write: Write,
        *,
        fallback: Fallback | None = None,
        on_first_answer: Callable[[], None] | None = None,
    ) -> None:
        self._routes = routes
        self._write = write
        self.fallback = fallback
        # Called once, after the first answer is handed to `write` (the app warms caches then).
        self._on_first_answer = on_first_answer
        self._inflight: dict[RequestId, anyio.CancelScope] = {}
        self._idle = anyio.Event()
        self._idle.set()
        self._tg: anyio.abc.TaskGroup | None = None

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    async def serve(self, lines: AsyncIterable[bytes | Oversize]) -> None:
        """Handle lines until the stream ends; then let running requests finish (see `drain`)."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            async for line in lines:
                if isinstance(line, Oversize):
                    rid = envelope.id_from_prefix(line.prefix)
                    self._answer_invalid(
                        Invalid(
                            rid,
                            INVALID_REQUEST,
                            f"Invalid request: the message is longer than the {line.limit} byte limit",
                        )
                    )
                    continue
                if line.strip():  # a stray blank line between messages is not worth an error
                    self.handle(envelope.decode(line))
            await self.drain()

    async def drain(self, grace_s: float = math.inf) -> None:
        """Wait for in-flight requests, up to `grace_s`; then cancel what is left and wait for it."""
        with anyio.move_on_after(grace_s):
            await self._idle.wait()
        self.cancel_all()
        await self._idle.wait()

    def cancel_all(self) -> None:
        for scope in list(self._inflight.values()):
            scope.cancel()

    def handle(self, msg: Inbound) -> None:
        if isinstance(msg, Request):
            self._on_request(msg)
        elif isinstance(msg, Notification):
            self._on_notification(msg)
        elif isinstance(msg, Reply):
            if self.fallback is not None:
                self.fallback(msg)
        else:
            self._answer_invalid(msg)

    def _answer_invalid(self, msg: Invalid) -> None:
        self._write(envelope.encode_error(msg.id, msg.code, msg.message))

    def _on_request(self, req: Request) -> None:
        found = self._routes.get(req.method)
        if found is None:
            if req.method in CANCEL_METHODS:
                self._cancel(req.params)
                self._write(envelope.encode_result(req.id, None))
            elif self.fallback is None or not self.fallback(req):
                self._write(
                    envelope.encode_error(req.id, METHOD_NOT_FOUND, f"Method not found: {req.method}")
                )
            return
        if req.id in self._inflight:
            self._write(
                envelope.encode_error(
                    req.id, INVALID_REQUEST, f"Invalid request: id {req.id!r} is already in use"
                )
            )
            return
        scope = anyio.CancelScope()
        self._inflight[req.id] = scope
        self._idle = anyio.Event() if self._idle.is_set() else self._idle
        assert self._tg is not None, "serve() must be running"
        self._tg.start_soon(self._run, req, found, scope)

    def _on_notification(self, note: Notification) -> None:
        if note.method in CANCEL_METHODS and self._cancel(note.params):
            return
        if self.fallback is not None:
            self.fallback(note)
        # A notification is never answered, even when nobody handles it.

    def _cancel(self, params: msgspec.Raw | None) -> bool:
        """Cancel a host request; False when the id is not one of ours (it may be an MCP request)."""
        try:
            decoded = _cancel_decoder.decode(params if params is not None else _EMPTY_PARAMS)
        except msgspec.DecodeError:
            return False
        target = decoded.id if decoded.id is not None else decoded.requestId
        scope = self._inflight.get(target) if target is not None else None
        if scope is None:
            return False
        scope.cancel()
        return True

    async def _run(self, req: Request, found: Route, scope: anyio.CancelScope) -> None:
        reply: bytes | None = None
        try:
            with logs.bound(request_id=req.id, method=req.method), scope:
                reply = await self._call(req, found, scope)
            if reply is None:  # the scope caught our own cancellation
                reply = envelope.encode_error(
                    req.id,
                    REQUEST_CANCELLED,
                    "Request cancelled",
                    ErrorData(kind="cancelled", message="The request was cancelled before it finished."),
                )
        finally:
            del self._inflight[req.id]
            if reply is not None:
                self._write(reply)
                if self._on_first_answer is not None:
                    hook, self._on_first_answer = self._on_first_answer, None
                    hook()
            if not self._inflight:
                self._idle.set()

    async def _call(self, req: Request, found: Route, scope: anyio.CancelScope) -> bytes:
        try:
            params = found.decoder.decode(req.params if req.params is not None else _EMPTY_PARAMS)
        except msgspec.ValidationError as exc:
            text = str(exc)
            field = field_path(text)
            data = ErrorData(kind="invalid_request", message=f"Invalid params: {text}", field=field)
            return envelope.encode_error(req.id, INVALID_PARAMS, f"Invalid params: {text}", data)
        except msgspec.DecodeError as exc:
            return envelope.encode_error(req.id, INVALID_PARAMS, f"Invalid params: {exc}")
        ctx = RequestContext(req.id, req.method, self._write, scope)
        try:
            result = await found.handler(params, ctx)
        except SidecarError as exc:
            _log.info("request failed", kind=exc.kind, provider=exc.provider)
            return envelope.encode_error(req.id, exc.code, exc.message, exc.data())
        except ProtocolError as exc:
            return envelope.encode_error(req.id, exc.code, exc.message)
        except Exception:
            if scope.cancel_called:
                raise
            _log.exception("handler crashed")
            data = ErrorData(kind="internal_error", message="The sidecar hit an internal error; see its log.")
            return envelope.encode_error(req.id, INTERNAL_ERROR, "Internal error", data)
        return envelope.encode_result(req.id, result)
