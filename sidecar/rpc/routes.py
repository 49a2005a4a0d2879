"""What a method is bound to on the connection: its route (handler, params decoding, an answer kept
for reuse) and the context its handler is given (the request's id and a way to notify).

The dispatcher (`rpc.dispatcher`) looks routes up and runs them; this module holds what it runs.

Must not know: LLMs, providers, keys, what the methods do, how messages are read or routed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

import anyio.lowlevel
import msgspec

from sidecar.rpc import envelope
from sidecar.rpc.envelope import RequestId

Write = Callable[[bytes], None]
Handler = Callable[[Any, "RequestContext"], Awaitable[Any]]
NOTHING: Final = object()  # no result kept, no params decoded yet
_YIELD_EVERY: Final = 32  # notifications a request sends between turns it gives other tasks


class Pacer(Protocol):
    """The outgoing buffer as a notifying request sees it (see `stdio.StdoutWriter`)."""

    @property
    def congested(self) -> bool: ...

    async def wait_for_room(self) -> None: ...


class Route:
    """A method's handler and params type. Its decoder is built on first use: building one for
    every method of the table would cost start-up time (each resolves its type's annotations).
    The params type may be given as a function that returns it, called on first use too (the
    METHODS table loads a method's structs only then)."""

    __slots__ = (
        "_params",
        "called",
        "decoder",
        "handler",
        "inline",
        "kept",
        "kept_tail",
        "no_params",
        "same_result",
    )

    def __init__(
        self,
        decoder: msgspec.json.Decoder[Any] | None,
        handler: Handler,
        params_type: type[Any] | Callable[[], type[Any]],
        inline: bool = False,
        same_result: bool = False,
    ) -> None:
        # Until first used, a stand-in that puts the real decoder in its place. Not a property
        # nor `__getattr__`: either would slow down every read of every attribute of the route.
        self.decoder: msgspec.json.Decoder[Any] | _FirstDecode = (
            decoder if decoder is not None else _FirstDecode(self)
        )
        self.handler = handler
        self._params = params_type
        # The handler never suspends: answer it on the read, with no task and no cancel scope.
        self.inline = inline
        self.called = False  # an inline route's first call runs in a task (see `rpc.dispatcher`)
        # The handler returns the same object while its answer is the same (`MethodSpec.same_result`):
        # the last result it returned is kept with its encoding (`envelope.result_tail`), which
        # answers the next request that gets that same object. Keeping it also keeps its identity
        # from being reused by another object.
        self.same_result = same_result
        self.kept: Any = NOTHING
        self.kept_tail = b""
        # What absent params decode to, once, when it holds nothing a handler could change (see
        # the dispatcher's `_holds_nothing`): then every request without params shares it.
        self.no_params: Any = NOTHING

    @property
    def params_type(self) -> type[Any]:
        if not isinstance(self._params, type):
            self._params = self._params()
        return self._params


class _FirstDecode:
    """A route's decoder until its first use: builds the real one and puts it in the route."""

    __slots__ = ("_route",)

    def __init__(self, owner: Route) -> None:
        self._route = owner

    def decode(self, data: bytes) -> Any:
        decoder = msgspec.json.Decoder(self._route.params_type)
        self._route.decoder = decoder
        return decoder.decode(data)


def route(
    params_type: type[Any] | Callable[[], type[Any]],
    handler: Handler,
    *,
    inline: bool = False,
    same_result: bool = False,
) -> Route:
    return Route(None, handler, params_type, inline, same_result)


class RequestContext(msgspec.Struct, eq=False):
    """What a handler may use of the connection: its id and a way to send notifications.

    A Struct: one is built per request, by C code, with no `__init__` frame to run. `eq=False`
    keeps a plain object's identity equality and hash."""

    request_id: RequestId
    method: str
    _write: Write
    _pacer: Pacer | None = None
    _sent: int = 0

    async def notify(self, method: str, params: Any) -> None:
        self._write(envelope.encode_notification(method, params))
        if self._pacer is not None and self._pacer.congested:
            await self._pacer.wait_for_room()
        else:
            self._sent += 1
            if self._sent % _YIELD_EVERY == 0:
                # An upstream that is never empty would let this stream run without ever giving
                # the loop up (a read with data buffered does not suspend): let others have a turn.
                await anyio.lowlevel.checkpoint()

    @property
    def progress_token(self) -> None:
        return None
