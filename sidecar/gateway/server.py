"""Runs the gateway's ASGI app with uvicorn inside the sidecar's own event loop (no second
process): a socket bound here (so port 0 can report the port it got), and `uvicorn.Server.serve`
as a task of the caller's task group. Signals stay the sidecar's: uvicorn's own handlers are not
installed. An idle gateway does nothing: uvicorn's server wakes ten times a second to see whether
it should stop and to renew the `date` header, which kept the process busy (~2.9 ms of CPU a
second here) and a laptop's CPU out of its sleep states for as long as the gateway ran; here the
stop is an event and the header is made when a response asks for it.

Must not know: routes, services.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import Callable, Generator
from email.utils import formatdate
from typing import Any, Final

import anyio
import uvicorn
from uvicorn.server import ServerState

from sidecar import logs
from sidecar.gateway import connection

SHUTDOWN_GRACE_S: Final = 1.0
_log = logs.get_logger("gateway")


class _CoalescingTransport:
    """Writes made in one step of the event loop leave in one `send`: uvicorn writes a response's
    head and its body (and each relayed SSE chunk) apart, and on a loaded machine every send to
    loopback costs as much as the gateway's own work on a request. The buffer is flushed on the
    next turn of the loop, when a response is complete (`flush`), and before the connection
    closes."""

    __slots__ = ("_buffer", "_loop", "_scheduled", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._buffer: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._buffer.append(bytes(data))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if self._buffer:
            data = self._buffer[0] if len(self._buffer) == 1 else b"".join(self._buffer)
            self._buffer.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Coalescing(asyncio.Protocol):
    """A uvicorn HTTP protocol over a `_CoalescingTransport` (mixed in before it). A complete
    response leaves at once: the client has its answer before the gateway turns to the request's
    bookkeeping (its access record) or to anything else queued on the loop.

    It is also the `connection.Connection` of its requests: uvicorn starts a request's task while
    it parses the request (`data_received`) or when the one before it on the connection is answered
    (`on_response_complete`, pipelining), so setting `connection.current` around both gives each
    request task this connection in its context, and `connection_lost` calls the request back."""

    _coalescing: _CoalescingTransport
    _on_lost: Callable[[], None] | None = None
    _lost = False
    flow: Any  # uvicorn's FlowControl, set by its connection_made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._coalescing = _CoalescingTransport(transport)
        super().connection_made(self._coalescing)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        token = connection.current.set(self)
        try:
            super().data_received(data)
        finally:
            connection.current.reset(token)

    def on_response_complete(self) -> None:
        self._coalescing.flush()
        token = connection.current.set(self)
        try:
            super().on_response_complete()  # type: ignore[misc]
        finally:
            connection.current.reset(token)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._lost = True
        on_lost, self._on_lost = self._on_lost, None
        if on_lost is not None:
            on_lost()

    def watch(self, on_lost: Callable[[], None] | None) -> bool:
        if self._lost:
            self._on_lost = None
            return False
        self._on_lost = on_lost
        if on_lost is not None and self.flow is not None:
            # What waiting on `receive` did: a connection paused (a pipelined request queued
            # behind this one, a large body) is read again, so a client that leaves is noticed.
            self.flow.resume_reading()
        return True


def protocol(*, prefer_httptools: bool = True) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol (a compiled parser: a third of the h11 server's CPU per
    request), or its pure-Python h11 one where httptools cannot load; either writes a response's
    head and body apart, hence `_Coalescing`."""
    if prefer_httptools:
        try:
            from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
        except ImportError:  # a platform without httptools' wheel: slower, same behaviour
            _log.warning("httptools unavailable: the gateway uses uvicorn's h11 server")
        else:

            class _HttpTools(_Coalescing, HttpToolsProtocol):
                pass

            return _HttpTools
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class _H11(_Coalescing, H11Protocol):
        pass

    return _H11


class _DateOnDemand(ServerState):
    """uvicorn's shared server state, whose default headers (read as each request starts) carry a
    `date` made at most once a second, when a request asks for it."""

    def __init__(self, extra: list[tuple[bytes, bytes]]) -> None:
        self._extra = extra
        self._second = -1
        self._headers: list[tuple[bytes, bytes]] = []
        super().__init__()

    @property
    def default_headers(self) -> list[tuple[bytes, bytes]]:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._headers = [(b"date", formatdate(second, usegmt=True).encode()), *self._extra]
        return self._headers

    @default_headers.setter
    def default_headers(self, value: list[tuple[bytes, bytes]]) -> None:
        pass  # uvicorn's own renewal, at start-up: the property makes them


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        self._exit = asyncio.Event()
        super().__init__(config)
        self.server_state = _DateOnDemand(config.encoded_headers)

    @property
    def should_exit(self) -> bool:
        return self._exit.is_set()

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value:
            self._exit.set()

    async def main_loop(self) -> None:
        await self._exit.wait()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the sidecar handles SIGTERM/SIGINT itself


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, port: int) -> list[str]:
    """Host header values accepted (DNS-rebinding protection): the bound name, and for loopback
    its usual spellings. Starlette compares the header without its port."""
    del port
    if is_loopback(host):
        return ["127.0.0.1", "localhost", "::1", "[::1]"]
    if host in ("0.0.0.0", "::"):
        return ["*"]  # bound everywhere on purpose: no single name to check against
    return [host, f"[{host}]"] if ":" in host else [host]


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY on accepted connections only when the
    # socket says it is TCP; without it Nagle's algorithm and delayed ACKs add ~40 ms to answers
    # written in two parts (headers, then body).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


class Running:
    """One started gateway: its socket, its uvicorn server and when it started."""

    def __init__(self, app: Any, host: str, sock: socket.socket, *, prefer_httptools: bool = True) -> None:
        self.host = host
        self.sock = sock
        self.port = int(sock.getsockname()[1])
        self.started = time.monotonic()
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(SHUTDOWN_GRACE_S),
            server_header=False,
            http=protocol(prefer_httptools=prefer_httptools),
            # No X-Forwarded-* rewriting: nothing in the gateway reads the client's address, and
            # the middleware is a layer every request would pass through.
            proxy_headers=False,
        )
        self.server = _Server(config)
        self.done = anyio.Event()

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}"

    async def serve(self) -> None:
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            self.done.set()

    async def stop(self) -> None:
        self.server.should_exit = True
        with anyio.move_on_after(SHUTDOWN_GRACE_S + 1):
            await self.done.wait()
        if not self.done.is_set():
            self.server.force_exit = True
            await self.done.wait()
