"""Routes inbound JSON-RPC messages to handlers, one task and one cancel scope per request.

Many requests run at once and are answered in any order; answers and notifications go out through
the single `write` function given at construction. Cancellation (`$/cancelRequest`,
`notifications/cancelled`) cancels the request's scope, which closes its upstream call; the request
is answered with -32800. Messages for methods this table does not hold go to an optional `fallback`
(the MCP face), so one connection can serve both.

A batch (a JSON array) is answered with one array holding the answers to its requests, written
when the last of them is done; its notifications get none, and a batch of notifications gets
nothing. The MCP face does not take part in batches (MCP has had none since 2025-06-18): its
requests inside one are answered -32600 in the array.

Params are decoded when the message is read, so a request whose params do not fit is answered at
once, like an unknown method. A route marked `inline` (the METHODS table's `inline`: the handler
finishes without ever suspending, so nothing can block or cancel it) is also answered at once,
without a task or a cancel scope, possibly outside any task (from the loop's read callback). Its
first call still runs in a task: what a handler builds on first use (the app builds services then,
and starts their background tasks) may need one. Should an inline handler suspend after all, it is
finished in a task of its own like any other request. A handler that, once its first call is
done, names another as `settled` (the app's, which build their service on first use) is left out
from then on: its route calls the settled one. Messages handed over together
(`handle_batch`, one read of the pipe) are all routed before any spawned request runs.

Nothing one message does can end the serving loop: an exception while decoding or dispatching it
becomes an error answer for that message (-32603 at worst), and other requests carry on.

Back-pressure: after writing a notification, a request waits while the optional `pacer` says
the outgoing buffer is congested, so a host that reads slowly slows the streams that fill it
instead of growing the heap. Answers are written at once and never dropped.

Must not know: LLMs, providers, keys, what the methods do, where bytes come from or go.
"""

from __future__ import annotations

import math
import types
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Generator, Sequence
from functools import partial
from typing import Any, Final, Protocol

import anyio
import anyio.lowlevel
import msgspec

from sidecar import logs
from sidecar.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    REQUEST_CANCELLED,
    ProtocolError,
    SidecarError,
)
from sidecar.rpc import envelope
from sidecar.rpc.envelope import (
    Batch,
    Inbound,
    Invalid,
    Notification,
    Reply,
    Request,
    RequestId,
    encode_result_tail,
)
from sidecar.rpc.framing import Oversize, Unframed
from sidecar.rpc.routes import NOTHING, Pacer, RequestContext, Route, Write
from sidecar.wire.base import ErrorData
from sidecar.wire.invalid import explain

Fallback = Callable[[Request | Notification | Reply], bool]
Line = bytes | Oversize | Unframed


class HandleBatch(Protocol):
    """`Dispatcher.handle_batch`: one read's messages, and where their at-once answers go."""

    def __call__(self, lines: Sequence[Line], answer: Write | None = None, /) -> None: ...


# Hands each read's messages to the dispatcher (`Dispatcher.handle_batch`) until the input ends.
Pump = Callable[[HandleBatch], Awaitable[None]]


CANCEL_METHODS: Final = frozenset({"$/cancelRequest", "notifications/cancelled"})
_EMPTY_PARAMS: Final = msgspec.Raw(b"{}")
_COROUTINE: Final = types.CoroutineType
_log = logs.get_logger("rpc")


class _CancelParams(msgspec.Struct):
    id: RequestId | None = None
    requestId: RequestId | None = None


_cancel_decoder: Final = msgspec.json.Decoder(_CancelParams)


class Dispatcher:
    def __init__(
        self,
        routes: dict[str, Route],
        write: Write,
        *,
        fallback: Fallback | None = None,
        on_first_answer: Callable[[], None] | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self._routes = routes
        self._write = write
        self._pacer = pacer
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

    async def serve(
        self,
        lines: AsyncIterable[Line],
        *,
        grace_s: float = math.inf,
        settle_s: float = math.inf,
    ) -> None:
        """Handle lines until the stream ends; then let running requests finish (see `drain`)."""

        async def pump(handle: Callable[[Sequence[Line]], None]) -> None:
            async for line in lines:
                handle((line,))

        await self.serve_batches(pump, grace_s=grace_s, settle_s=settle_s)

    async def serve_batches(
        self, pump: Pump, *, grace_s: float = math.inf, settle_s: float = math.inf
    ) -> None:
        """Like `serve`, for a `pump` that hands over each read's messages as they arrive."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await pump(self.handle_batch)
            await self.drain(grace_s, settle_s)
            tg.cancel_scope.cancel()  # whatever did not settle in time is not waited for

    def handle_batch(self, lines: Sequence[Line], answer: Write | None = None) -> None:
        """The messages of one read, in order; whatever goes wrong costs its own message only.

        `answer`, when given, takes the answers given at once (inline, errors) in `write`'s place,
        in order with it: the stdio face passes the list its writer gathers a read's answers in.
        Requests that run in a task answer through `write`, whenever they finish."""
        decode = envelope.decode
        write = self._write if answer is None else answer
        for line in lines:
            if line.__class__ is not bytes:
                self._answer_unreadable(line)
                continue
            try:
                msg = decode(line)
            except Exception:  # decode is meant never to raise; a bug there must not end the process
                _log.exception("decoding a message failed")
                msg = Invalid(None, PARSE_ERROR, "Parse error")
            if msg.__class__ is Request:  # the usual message: straight to its route (a busy pipe's hot path)
                try:
                    self._on_request(msg, write, False)
                except Exception:
                    self._crashed(msg, write)
            elif isinstance(msg, Batch):
                self._on_batch(msg)
            elif msg.__class__ is not Invalid or line.strip(b" \t\r"):
                self.handle(msg)
            # else a stray blank line between messages (what decodes to Invalid): not worth an error

    def handle_line(self, line: Line) -> None:
        """One framed message; whatever goes wrong costs this message only."""
        self.handle_batch((line,))

    def _answer_unreadable(self, line: Line) -> None:
        if isinstance(line, Oversize):
            message = f"Invalid request: the message is longer than the {line.limit} byte limit"
            self._answer_invalid(Invalid(envelope.id_from_prefix(line.prefix), INVALID_REQUEST, message))
        elif isinstance(line, Unframed):
            self._answer_invalid(Invalid(None, PARSE_ERROR, f"Parse error: {line.reason}"))

    async def drain(self, grace_s: float = math.inf, settle_s: float = math.inf) -> None:
        """Wait for in-flight requests, up to `grace_s`; then cancel what is left and wait up to
        `settle_s` for their -32800 answers (the chat hooks record them meanwhile)."""
        with anyio.move_on_after(grace_s):
            await self._idle.wait()
        self.cancel_all()
        with anyio.move_on_after(settle_s):
            await self._idle.wait()

    def cancel_all(self) -> None:
        for scope in list(self._inflight.values()):
            scope.cancel()

    def handle(self, msg: Inbound, reply: Write | None = None) -> None:
        """Dispatch one message; its answer (if any) goes to `reply`, by default the connection."""
        answer = self._write if reply is None else reply
        try:
            if isinstance(msg, Request):
                self._on_request(msg, answer, reply is not None)
            elif isinstance(msg, Notification):
                self._on_notification(msg)
            elif isinstance(msg, Reply):
                if self.fallback is not None:
                    self.fallback(msg)
            else:
                answer(envelope.encode_error(msg.id, msg.code, msg.message))
        except Exception:
            self._crashed(msg, answer)

    def _crashed(self, msg: Inbound, answer: Write) -> None:
        """Dispatching `msg` raised: log it, and answer it if it is a request nobody will answer."""
        _log.exception("dispatching a message failed")
        if isinstance(msg, Request) and msg.id not in self._inflight:
            data = ErrorData(kind="internal_error", message="The sidecar hit an internal error; see its log.")
            answer(envelope.encode_error(msg.id, INTERNAL_ERROR, "Internal error", data))

    def _answer_invalid(self, msg: Invalid) -> None:
        self._write(envelope.encode_error(msg.id, msg.code, msg.message))

    def _on_batch(self, batch: Batch) -> None:
        expected = sum(1 for item in batch.items if isinstance(item, Request | Invalid))
        collect = _BatchAnswers(expected, self._write)
        for item in batch.items:
            self.handle(item, collect)

    def _on_request(self, req: Request, answer: Write, in_batch: bool) -> None:
        found = self._routes.get(req.method)
        if found is None:
            if req.method in CANCEL_METHODS:
                self._cancel(req.params)
                answer(envelope.encode_result(req.id, None))
            elif in_batch:
                answer(envelope.encode_error(req.id, *_not_batchable(req.method, self.fallback)))
            elif self.fallback is None or not self.fallback(req):
                answer(envelope.encode_error(req.id, METHOD_NOT_FOUND, f"Method not found: {req.method}"))
            return
        if req.id in self._inflight:
            answer(
                envelope.encode_error(
                    req.id, INVALID_REQUEST, f"Invalid request: id {req.id!r} is already in use"
                )
            )
            return
        raw = req.params
        if raw is None and found.no_params is not NOTHING:
            params = found.no_params
        else:
            try:
                params = found.decoder.decode(_EMPTY_PARAMS if raw is None else raw)
            except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
                self._answered(answer, _invalid_params(req.id, found, exc))
                return
            if raw is None and _holds_nothing(params):
                found.no_params = params
        ctx = RequestContext(req.id, req.method, self._write, self._pacer)
        if not (found.inline and found.called):
            found.called = True
            # A partial, not a lambda: a closure's variables would be cells, made on every call.
            self._spawn(req, found, answer if in_batch else self._write, partial(found.handler, params, ctx))
            return
        # An inline route: run the handler to its end, here and now, and answer it. No
        # `logs.bound` here (it would cost more than the handler): what this path logs names the
        # request itself.
        call = found.handler(params, ctx)
        step = call if call.__class__ is _COROUTINE else call.__await__()
        try:
            suspended_on = step.send(None)
        except StopIteration as done:
            result = done.value
            if result is found.kept:  # the result answered last time: splice this id in (`_result`)
                try:
                    reply = encode_result_tail(req.id, found.kept_tail)
                except Exception:
                    reply = _result(req, found, result)
            else:
                reply = _result(req, found, result)
        except Exception as exc:
            reply = _failure(req, exc)
        else:  # it suspended after all: it goes on in a task, cancellable like any request
            self._spawn(req, found, answer if in_batch else self._write, partial(_resume, step, suspended_on))
            return
        answer(reply)
        if self._on_first_answer is not None:
            self._first_answer()

    def _spawn(self, req: Request, found: Route, answer: Write, call: Callable[[], Awaitable[Any]]) -> None:
        scope = anyio.CancelScope()
        self._inflight[req.id] = scope
        self._idle = anyio.Event() if self._idle.is_set() else self._idle
        assert self._tg is not None, "serve() must be running"
        self._tg.start_soon(self._run, req, found, scope, answer, call)

    def _answered(self, answer: Write, reply: bytes) -> None:
        answer(reply)
        if self._on_first_answer is not None:
            self._first_answer()

    def _first_answer(self) -> None:
        hook, self._on_first_answer = self._on_first_answer, None
        if hook is not None:
            hook()

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
        except (msgspec.DecodeError, RecursionError):
            return False
        target = decoded.id if decoded.id is not None else decoded.requestId
        scope = self._inflight.get(target) if target is not None else None
        if scope is None:
            return False
        scope.cancel()
        return True

    async def _run(
        self,
        req: Request,
        found: Route,
        scope: anyio.CancelScope,
        answer: Write,
        call: Callable[[], Awaitable[Any]],
    ) -> None:
        reply: bytes | None = None
        try:
            try:
                with logs.bound(request_id=req.id, method=req.method), scope:
                    reply = await _call(req, found, call, scope)
            except Exception:
                if not scope.cancel_called:
                    _log.exception("request failed outside its handler")
                    reply = _internal_error(req.id)
            if reply is None:  # the scope caught our own cancellation
                reply = _cancelled(req.id)
        finally:
            # A handler that only led to another on its first call (the app builds a service on
            # first use) names it `settled` then: later requests call that one directly.
            settled = getattr(found.handler, "settled", None)
            if settled is not None:
                found.handler = settled
            del self._inflight[req.id]
            if reply is None and scope.cancel_called:
                # Cancelled by us, and cancelled again from outside (the settle time at EOF ran
                # out) before its scope let go: it is still answered, as it may be recorded.
                reply = _cancelled(req.id)
            if reply is not None:
                self._answered(answer, reply)
            if not self._inflight:
                self._idle.set()


async def _call(
    req: Request, found: Route, call: Callable[[], Awaitable[Any]], scope: anyio.CancelScope
) -> bytes:
    try:
        result = await call()
    except Exception as exc:
        if scope.cancel_called and not isinstance(exc, SidecarError | ProtocolError):
            raise
        return _failure(req, exc)
    return _result(req, found, result)


def _holds_nothing(params: Any) -> bool:
    """Whether `params` is a Struct without fields or a `__dict__`: nothing in it can change."""
    return (
        isinstance(params, msgspec.Struct)
        and not params.__struct_fields__
        and not hasattr(params, "__dict__")
    )


def _invalid_params(rid: RequestId, found: Route, exc: Exception) -> bytes:
    if isinstance(exc, msgspec.ValidationError):
        data = explain(found.params_type, exc)
        return envelope.encode_error(rid, INVALID_PARAMS, data.message, data)
    if isinstance(exc, RecursionError):
        data = ErrorData(kind="invalid_request", message="Invalid params: nested too deeply", field="$")
        return envelope.encode_error(rid, INVALID_PARAMS, data.message, data)
    return envelope.encode_error(rid, INVALID_PARAMS, f"Invalid params: {exc}")


def _result(req: Request, found: Route, result: Any) -> bytes:
    try:
        if not found.same_result:
            return envelope.encode_result(req.id, result)
        if result is not found.kept:
            found.kept_tail = envelope.result_tail(result)
            found.kept = result
        return envelope.encode_result_tail(req.id, found.kept_tail)
    except Exception:  # a result that cannot be encoded (too deep, a lone surrogate) is our bug
        _log.exception("encoding a result failed", request_id=req.id, method=req.method)
        return _internal_error(req.id)


def _failure(req: Request, exc: Exception) -> bytes:
    """The answer to a handler that raised `exc` (called while it is being handled)."""
    if isinstance(exc, SidecarError):
        _log.info(
            "request failed", kind=exc.kind, provider=exc.provider, request_id=req.id, method=req.method
        )
        return envelope.encode_error(req.id, exc.code, exc.message, exc.data())
    if isinstance(exc, ProtocolError):
        return envelope.encode_error(req.id, exc.code, exc.message)
    _log.exception("handler crashed", request_id=req.id, method=req.method)
    return _internal_error(req.id)


@types.coroutine
def _resume(
    step: Coroutine[Any, Any, Any] | Generator[Any, Any, Any], suspended_on: Any
) -> Generator[Any, Any, Any]:
    """Go on with a handler that suspended while run inline, as the awaiting task's own: what it
    waits for is handed to this task, and whatever the task is sent or thrown goes on to it."""
    while True:
        try:
            sent = yield suspended_on
        except BaseException as exc:  # cancellation included: the handler decides what it does
            try:
                suspended_on = step.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                suspended_on = step.send(sent)
            except StopIteration as done:
                return done.value


def _cancelled(rid: RequestId) -> bytes:
    data = ErrorData(kind="cancelled", message="The request was cancelled before it finished.")
    return envelope.encode_error(rid, REQUEST_CANCELLED, "Request cancelled", data)


def _internal_error(rid: RequestId) -> bytes:
    data = ErrorData(kind="internal_error", message="The sidecar hit an internal error; see its log.")
    return envelope.encode_error(rid, INTERNAL_ERROR, "Internal error", data)


def _not_batchable(method: str, fallback: Fallback | None) -> tuple[int, str]:
    claims = getattr(fallback, "claims", None)
    if claims is not None and claims(method):
        return INVALID_REQUEST, f"Invalid request: `{method}` cannot be sent in a batch (MCP has no batches)"
    return METHOD_NOT_FOUND, f"Method not found: {method}"


class _BatchAnswers:
    """Collects the answers of one batch's requests; writes them as one array when all are in."""

    __slots__ = ("_answers", "_expected", "_write")

    def __init__(self, expected: int, write: Write) -> None:
        self._expected = expected
        self._answers: list[bytes] = []
        self._write = write

    def __call__(self, answer: bytes) -> None:
        self._answers.append(answer.rstrip(b"\n"))
        if len(self._answers) == self._expected:
            self._write(b"[" + b",".join(self._answers) + b"]\n")
