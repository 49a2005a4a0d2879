"""One request and its response on a `/v1` route, at the ASGI level: the body read under the size
limit (413), decoded in the route's API shape (400), the key and model admitted
(`admission`), the method's handler run under the client's name (cancelled when the client
goes away), the answer sent as JSON or relayed as SSE, and the request's access record.

A stream starts its 200 response only when the first bytes a client is shown are ready, so a
failure before it is still an HTTP error; a client that disconnects cancels the call, which
closes the upstream connection and records the partial usage.

Must not know: providers' wire formats, the routes' API shapes, how the services decide anything.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Final

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectSendStream

from sidecar.errors import SidecarError, field_path
from sidecar.gateway import admission, connection
from sidecar.gateway.access import AccessRecord, iso_now
from sidecar.gateway.errors import Dialect, HttpError, body, from_sidecar, headers
from sidecar.services import loop
from sidecar.services.client_keys import ClientKeyRecord
from sidecar.services.context import AfterReply, Handler, after_reply, asked_whole, current_client
from sidecar.wire.chat import ChatResult, CompleteParams

if TYPE_CHECKING:
    from sidecar.gateway.asgi import Gateway

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_SSE_HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_JSON: Final = b"application/json"
_json = msgspec.json.Encoder()


class Disconnected(Exception):
    """The client went away before its answer was sent."""


class Call:
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


def _cancel_on_disconnect(scope: anyio.CancelScope, watcher: asyncio.Future[None]) -> None:
    if not watcher.cancelled() and watcher.exception() is None:
        scope.cancel()


def _settled(handler: Handler) -> Handler:
    """The handler itself, or once the app has built its service the one its first-use wrapper
    names `settled` (as the stdio dispatcher calls): a coroutine less on the request's path, and
    on every step its task takes."""
    settled: Handler = getattr(handler, "settled", handler)
    return settled


def too_large(limit: int) -> str:
    return f"The request body is larger than the gateway's limit of {limit} bytes ([gateway] max_body_bytes)."


def complete_params(raw: dict[str, Any]) -> CompleteParams:
    try:
        return msgspec.convert(raw, CompleteParams)
    except msgspec.ValidationError as exc:
        raise HttpError(
            400, "invalid_request", f"Invalid request: {exc}", param=field_path(str(exc))
        ) from None


class Exchange:
    """One request/response on a `/v1` route."""

    __slots__ = (
        "client",
        "dialect",
        "gw",
        "id",
        "key",
        "later",
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
        self.later = AfterReply()  # the call's bookkeeping, run once the answer is sent
        # provider, model, input tokens, output tokens, cost: what the access log shows
        self.usage: tuple[str, str, int, int, float | None] | None = None

    # --- request side ---------------------------------------------------------------------------

    async def body(self) -> bytes:
        limit = self.gw.max_body
        for name, value in self.scope["headers"]:
            if name == b"content-length":
                try:
                    if int(value) > limit:
                        raise HttpError(413, "request_too_large", too_large(limit))
                except ValueError:
                    raise HttpError(400, "invalid_request", "Content-Length is not a number.") from None
        msg = await self.receive()
        if msg["type"] == "http.disconnect":
            raise Disconnected
        first: bytes = msg.get("body", b"")
        if not msg.get("more_body", False):  # the usual case: the whole body in one message
            if len(first) > limit:
                raise HttpError(413, "request_too_large", too_large(limit))
            return first
        chunks = [first]
        size = len(first)
        while True:
            msg = await self.receive()
            if msg["type"] == "http.disconnect":
                raise Disconnected
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise HttpError(413, "request_too_large", too_large(limit))
            chunks.append(chunk)
            if not msg.get("more_body", False):
                return b"".join(chunks)

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
        key = await admission.authenticate(self.gw.backend, self.scope)
        self.client = key.name
        self.key = key
        return key

    async def admit(self, key: ClientKeyRecord, requested: str) -> str:
        """The model to run (`provider:model`), once the key may use it now."""
        bookkeeping = self.gw.bookkeeping
        if bookkeeping.running:  # what the requests answered before spent counts
            await bookkeeping.wait()
        model = await self.place(key, requested)
        await admission.admit(self.gw.backend, key)
        return model

    async def place(self, key: ClientKeyRecord, requested: str) -> str:
        """The model a request names (`provider:model` or `router:<name>`), once the key may use
        it; nothing counted against the key's limits (a request that runs nothing)."""
        model, wanted = await admission.place(self.gw.backend, key, requested)
        self.model = model
        admission.check_allowed(key, model, wanted)
        return model

    # --- running the call -----------------------------------------------------------------------

    async def call(self, params: CompleteParams) -> ChatResult:
        """`complete`, cancelled when the client goes away; sent upstream whole where the
        provider takes it, unless `[gateway] upstream_streaming` is `always`."""
        token = asked_whole.set(self.gw.whole_when_asked)
        try:
            result = await self.run_method("complete", params)
        finally:
            asked_whole.reset(token)
        assert isinstance(result, ChatResult)
        await self._settle(result)
        return result

    async def run_method(self, method: str, params: Any) -> Any:
        """A method's handler under the client's name, cancelled when the client goes away.

        The handler runs in this task. The connection calls the request's scope back when the
        client goes (`connection`); where no connection is known, a plain asyncio task waits for
        the disconnect and cancels the scope (a task group and its cancellation cost ~0.1 ms per
        request here, more than the rest of this module)."""
        handler = _settled(self.gw.backend.handlers[method])
        token = current_client.set(self.client)
        later = after_reply.set(self.later)
        conn = connection.current.get()
        try:
            with loop.cancel_scope() as scope:
                if conn is not None:
                    if not conn.watch(scope.cancel):
                        scope.cancel()
                    try:
                        return await handler(params, Call(self.id, None))
                    finally:
                        conn.watch(None)
                watcher = asyncio.ensure_future(self._wait_disconnect())
                watcher.add_done_callback(functools.partial(_cancel_on_disconnect, scope))
                try:
                    return await handler(params, Call(self.id, None))
                finally:
                    watcher.cancel()
        finally:
            after_reply.reset(later)
            current_client.reset(token)
        raise Disconnected

    async def relay(
        self,
        params: CompleteParams,
        encode: Callable[[Any], bytes],
        finish: Callable[[ChatResult], bytes],
        error: Callable[[dict[str, Any]], bytes],
    ) -> None:
        """`stream`, relayed as SSE; the 200 goes out with the first bytes a client is shown."""
        handler = _settled(self.gw.backend.handlers["stream"])
        send_events, events = anyio.create_memory_object_stream[Any](4096)
        token = current_client.set(self.client)
        later = after_reply.set(self.later)
        failure: list[SidecarError] = []
        results: list[ChatResult] = []
        refusal: HttpError | None = None
        counters = self.gw.counters
        conn = connection.current.get()
        counters.open_streams += 1
        try:
            async with anyio.create_task_group() as tg:

                async def run() -> None:
                    async with send_events:
                        try:
                            result = await handler(params, Call(self.id, send_events))
                            assert isinstance(result, ChatResult)
                            results.append(result)
                        except SidecarError as exc:
                            failure.append(exc)

                async def watch() -> None:
                    await self._wait_disconnect()
                    tg.cancel_scope.cancel()

                tg.start_soon(run)
                if conn is None:
                    tg.start_soon(watch)
                elif not conn.watch(tg.cancel_scope.cancel):
                    tg.cancel_scope.cancel()
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
            if conn is not None:
                conn.watch(None)
            counters.open_streams -= 1
            after_reply.reset(later)
            current_client.reset(token)
        if refusal is not None:
            raise refusal
        if not results and not failure:
            raise Disconnected

    async def _settle(self, result: ChatResult) -> None:
        self.result = result
        u = result.usage
        self.usage = (result.provider, result.model, u.input_tokens, u.output_tokens, result.cost_usd)
        if self.key is not None:
            await self.gw.backend.client_keys.spent_tokens(self.key, u.input_tokens + u.output_tokens)

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
        await self.send_bytes(status, _json.encode(obj), _JSON)

    async def send_bytes(self, status: int, data: bytes, content_type: bytes) -> None:
        self.status = status
        self.sent_head = True
        head = [(b"content-type", content_type), (b"content-length", str(len(data)).encode())]
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
        model = self.model
        provider = u[0] if u else (model.split(":", 1)[0] if model else None)
        return AccessRecord(
            ts=iso_now(),
            request_id=self.id,
            method=self.scope.get("method", ""),
            path=self.scope.get("path", ""),
            status=self.status,
            latency_ms=round((time.monotonic() - started) * 1000, 3),
            client=self.client,
            model=f"{u[0]}:{u[1]}" if u else model,
            provider=provider,
            router=model[len("router:") :] if model and model.startswith("router:") else None,
            outcome="ok" if 200 <= self.status < 300 else "error",
            input_tokens=u[2] if u else None,
            output_tokens=u[3] if u else None,
            total_tokens=(u[2] + u[3]) if u else None,
            cost_usd=u[4] if u else None,
        )
