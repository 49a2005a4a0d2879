"""What a method handler may use of whoever called it: the request's id and a way to notify.

The JSON-RPC dispatcher and the MCP face each provide an implementation; handlers never know
which one they run under.

Must not know: stdin/stdout, MCP, JSON-RPC.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Protocol

from sidecar.wire.base import Wire


class CallContext(Protocol):
    @property
    def request_id(self) -> int | str: ...

    async def notify(self, method: str, params: Any) -> None: ...


Handler = Callable[[Any, CallContext], Awaitable[Wire]]


current_client: ContextVar[str | None] = ContextVar("current_client", default=None)
"""The gateway client key (by name) a call is made for; None for the host's own calls. The gateway
sets it around a service call; the usage ledger records it with the request."""


asked_whole: ContextVar[bool] = ContextVar("asked_whole", default=False)
"""Set by a face that sends a non-streamed request upstream as a non-streamed call, as its client
would send it to the provider itself (the gateway), where the provider allows it
(`Provider.takes_whole_call`). Unset (every other face): `complete` streams upstream too, so its
`timeout_s` bounds every wait without progress."""


Later = Callable[[], Awaitable[None]]
"""Work that only records what a call did (the chat hooks' `after`: the ledger row, metrics,
budget and limit accounting), to run once the call's answer has been sent."""


class AfterReply(list[Later]):
    """The `Later` work of one call, in order. Closed (`open` false) once the face runs it: work
    offered afterwards (by a task the call started, which inherited the variable) runs at once."""

    open = True  # a class default: built by list's own constructor, per request


after_reply: ContextVar[AfterReply | None] = ContextVar("after_reply", default=None)
"""Where a face that sends its answer before the call's bookkeeping is done (the gateway) collects
that bookkeeping (`Later`), then runs it once the answer is handed to the socket, before anything
else may check a budget or a limit, and outside every cancel scope of the call (the work is not
shielded: nothing may cancel it there). Unset (the default, every other face) or closed: a handler
does its bookkeeping before it returns."""
