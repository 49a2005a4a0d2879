"""The MCP face's door: takes the MCP share of the connection and runs the MCP server behind it.

The app creates one `McpBridge` when the first MCP request arrives. `feed` is synchronous and
never blocks: messages queue here while the SDK (0.6-0.8 s to import) loads in a worker thread, so
host requests on the same connection keep being answered during that time, and nothing the MCP
client sent is lost. `run` then serves the queue with `server.serve`. Importing this module
is cheap; it never imports the SDK at import time.

Must not know: the SDK's types, providers, stdin/stdout file descriptors.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, Protocol

import anyio

from sidecar import logs
from sidecar.errors import METHOD_NOT_FOUND
from sidecar.rpc import envelope
from sidecar.rpc.envelope import Notification, Reply, Request
from sidecar.rpc.routes import Pacer

if TYPE_CHECKING:
    from anyio.abc import ObjectReceiveStream

    from sidecar.services.context import Handler

Inbound = Request | Notification | Reply
Write = Callable[[bytes], None]


class Serve(Protocol):
    def __call__(
        self,
        handlers: dict[str, Handler],
        inbox: ObjectReceiveStream[Inbound],
        write: Write,
        *,
        pacer: Pacer | None = None,
    ) -> Awaitable[None]: ...


CLOSE_GRACE_S: Final = 1.0
_log = logs.get_logger("mcp")


class HasHandlers(Protocol):
    @property
    def handlers(self) -> dict[str, Handler]: ...


def _load_server() -> Serve:
    from sidecar.mcp.server import serve

    return serve


class McpBridge:
    def __init__(self, services: HasHandlers, write: Write, pacer: Pacer | None = None) -> None:
        self._handlers: dict[str, Handler] = services.handlers
        config = getattr(services, "config", None)  # a stand-in without one gets the default
        self._admin_tools = bool(config is not None and config.mcp.admin_tools)
        self._write = write
        self._pacer = pacer
        self._send, self._receive = anyio.create_memory_object_stream[Inbound](math.inf)
        self._started = False
        self._failed = False
        self._done = anyio.Event()

    def feed(self, msg: Inbound) -> bool:
        """Queue one MCP message; False when the MCP face cannot take it (closed or unavailable)."""
        if self._failed:
            return False
        try:
            self._send.send_nowait(msg)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return False
        return True

    async def run(self) -> None:
        self._started = True
        try:
            try:
                serve = await anyio.to_thread.run_sync(_load_server)
            except Exception:
                _log.exception("the MCP SDK could not be loaded; MCP requests are refused")
                self._refuse_queued()
                return
            try:
                from sidecar.mcp.tools import offered  # loaded with the server, off the event loop

                handlers = offered(self._handlers, admin_tools=self._admin_tools)
                await serve(handlers, self._receive, self._write, pacer=self._pacer)
            except Exception:  # the MCP face failing must not take the host's connection with it
                _log.exception("the MCP server failed; further MCP requests are refused")
                self._refuse_queued()
        finally:
            self._done.set()

    def _refuse_queued(self) -> None:
        """Answer what is queued (and, through `feed` returning False, what comes later) -32601."""
        self._failed = True
        self._send.close()
        while True:
            try:
                msg = self._receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return
            if isinstance(msg, Request):
                text = f"Method not found: {msg.method} (the MCP face is unavailable; see the log)"
                self._write(envelope.encode_error(msg.id, METHOD_NOT_FOUND, text))

    async def aclose(self, wait_s: float = CLOSE_GRACE_S) -> None:
        """End the MCP connection (its in-flight calls are cancelled) and wait briefly for it."""
        self._send.close()
        if self._started:
            with anyio.move_on_after(wait_s):
                await self._done.wait()
