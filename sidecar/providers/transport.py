"""httpx2's API over aiohttp: the transport under `providers.http.HttpClient`.

httpx2 keeps its API (requests, responses, headers, content decoding, exceptions), so providers and
the OAuth exchange are unchanged; aiohttp does the I/O, parses HTTP/1.1 with its compiled parser
and keeps the keep-alive pool. On one long SSE stream that is ~4x httpx2's own stack (httpcore2,
h11) at a quarter of its CPU per event (scripts/bench_http.py).

What this module guarantees, in httpx2's terms so `providers.http` maps them as before:
- A pool of `size` connections: a request that finds all busy waits at most the request's `pool`
  limit, then raises `httpx2.PoolTimeout`. A connection is held from the request until its body is
  closed; at most `keepalive` idle ones are kept (aiohttp itself keeps every one).
- `connect` bounds connecting (TLS included: `ConnectTimeout`); the first byte of the body must
  come within the read limit and, for the sidecar's own requests (`Timeouts` in the `sidecar`
  extension), every later gap within `idle_s` (`ReadTimeout`). aiohttp's own read timer does both
  (it is re-armed on every packet), so nothing is paid per chunk for it. aiohttp has no write
  limit and starts its read timer once the body is out: a body over 64 KiB (an image, say) must
  be sent and answered within connect + write + read limits, or `WriteTimeout`.
- Closing a body that was not read to its end closes its connection (so cancelling a stream
  hangs up on the upstream); a body read whole returns its connection to the pool.
- Failures are httpx2's: `ConnectError` (`CertificateRejected` when TLS verification fails),
  `ReadError`, `RemoteProtocolError`, the timeouts.

Sessions are bound to the event loop that made them; a client used from a new loop (tests run
several) gets a new session there.

Must not know: the providers, the protocol, error kinds of the contract (`providers.http` maps).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any, Final

import aiohttp
import httpx2

_SIDECAR: Final = "sidecar"  # the request extension that carries the sidecar's `Timeouts`
_SMALL_BODY: Final = 64 * 1024  # a request body the socket's buffers take at once
# The most read ahead of the reader (aiohttp pauses the socket past twice this) and handed over at
# once: a relay that waits for its host holds one decoded piece per stream, so small pieces keep
# memory flat (tests/e2e/test_backpressure_e2e.py) at no measurable cost in throughput.
_PIECE: Final = 16 * 1024


class _Connector(aiohttp.TCPConnector):
    """aiohttp keeps every released connection; this one keeps at most `keepalive` idle ones."""

    def __init__(self, keepalive: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._keepalive = keepalive

    def _release(self, key: Any, protocol: Any, *, should_close: bool = False) -> None:
        if len(self._conns.get(key, ())) >= self._keepalive:
            should_close = True
        super()._release(key, protocol, should_close=should_close)


class _Body(httpx2.AsyncByteStream):
    __slots__ = ("_done", "_response", "_slots")

    def __init__(self, response: aiohttp.ClientResponse, slots: asyncio.Semaphore) -> None:
        self._response = response
        self._slots = slots
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while True:
                chunk = await content.read(_PIECE)
                if not chunk:
                    return
                yield chunk
        except aiohttp.ClientError as exc:
            raise _mapped(exc) from exc
        except TimeoutError as exc:
            raise httpx2.ReadTimeout(str(exc) or "read") from exc

    async def aclose(self) -> None:
        if self._done:
            return
        self._done = True
        response = self._response
        # Read to its end, the connection goes back to the pool; cut short, it is closed.
        if response.content.at_eof():
            response.release()
        else:
            response.close()
        self._slots.release()


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """One provider's pool: `size` connections, `keepalive` of them kept idle, one TLS trust
    (a context, or `True` for aiohttp's own verified one)."""

    def __init__(self, size: int, keepalive: int, ssl_context: ssl.SSLContext | bool) -> None:
        self._size = size
        self._keepalive = keepalive
        self._ssl = ssl_context
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(size)

    def _session_here(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop:
            _abandon(self._session)
            kwargs: dict[str, Any] = {
                "limit": self._size,
                "limit_per_host": 0,
                "ssl": self._ssl,
                "keepalive_timeout": 60,
            }
            connector = (
                _Connector(self._keepalive, **kwargs)
                if self._keepalive < self._size
                else aiohttp.TCPConnector(**kwargs)
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,  # httpx2 decodes, as it would over its own transport
                trust_env=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
                read_bufsize=_PIECE,
            )
            self._slots = asyncio.Semaphore(self._size)
            self._loop = loop
        return self._session

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        session = self._session_here()
        limits = request.extensions.get("timeout") or {}
        own = request.extensions.get(_SIDECAR)
        first_s = limits.get("read")
        idle_s = getattr(own, "body_s", first_s)
        slots = self._slots
        if slots.locked():
            try:
                async with asyncio.timeout(limits.get("pool")):
                    await slots.acquire()
            except TimeoutError:
                raise httpx2.PoolTimeout("no free connection in the pool") from None
        else:
            await slots.acquire()
        body = request.content or None
        send = session.request(
            request.method,
            str(request.url),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            data=body,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(
                total=None, connect=None, sock_connect=limits.get("connect"), sock_read=first_s
            ),
        )
        try:
            if body is None or len(body) <= _SMALL_BODY:
                response = await send
            else:
                # aiohttp starts its read timer once the body is out; a large body the upstream
                # stops reading is bounded here by connect + write + first byte.
                async with asyncio.timeout(_total(limits, "connect", "write", "read")):
                    response = await send
        except BaseException as exc:
            slots.release()
            if isinstance(exc, aiohttp.ClientError):
                raise _mapped(exc) from exc
            if isinstance(exc, TimeoutError):
                raise httpx2.WriteTimeout(str(exc) or "write") from exc
            raise
        # The timer armed by the headers runs with the first-byte limit; every packet after the
        # first piece of the body re-arms it with the idle limit (at once if that came with them).
        connection = response.connection
        if connection is not None and connection.protocol is not None and idle_s != first_s:
            connection.protocol.read_timeout = idle_s
            if response.content.total_bytes:
                connection.protocol.start_timeout()
        return httpx2.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(response, slots),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and self._loop is asyncio.get_running_loop():
            await session.close()
        else:
            _abandon(session)


def _abandon(session: aiohttp.ClientSession | None) -> None:
    """Drop a session of another (likely finished) event loop: close its sockets, await nothing."""
    if session is not None and session.connector is not None:
        with contextlib.suppress(Exception):
            session.connector._close()


def _total(limits: dict[str, float | None], *names: str) -> float | None:
    parts = [limits.get(name) for name in names]
    return None if any(p is None for p in parts) else sum(p for p in parts if p is not None)


class CertificateRejected(httpx2.ConnectError):
    """The server's TLS certificate did not verify against the trusted authorities."""


def _mapped(exc: aiohttp.ClientError) -> httpx2.TransportError:
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return CertificateRejected(message)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx2.ConnectTimeout(message)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return httpx2.ReadTimeout(message)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx2.ConnectError(message)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx2.RemoteProtocolError(message)
    if isinstance(exc, aiohttp.ClientResponseError):  # a malformed answer
        return httpx2.RemoteProtocolError(message)
    if isinstance(exc, aiohttp.ClientOSError | aiohttp.ClientConnectionError):
        return httpx2.ReadError(message)
    return httpx2.NetworkError(message)
