"""One provider's connection pool over aiohttp, and the answer it yields: the I/O under
`providers.http.HttpClient`, loaded (with aiohttp) on the first upstream call or by `warm`, never at
start, since every service that names a `Timeouts` imports `providers.http`.

aiohttp does the I/O, parses HTTP/1.1 with its compiled parser, decodes gzip/deflate bodies and
keeps the keep-alive connections. Nothing else sits on the path: no second request or response
object is built per call, and nothing is paid per chunk beyond aiohttp's own read.

A small POST (every chat call: a body up to 64 KiB) does not go through `ClientSession.request`
either: the pool takes a connection from aiohttp's connector, writes the head it would have written
(`Host`, `Accept`, `Accept-Encoding`, the User-Agent, the same header-injection check) and the body
in one write, and reads the answer from the connection's own parser. That spares aiohttp's
request, response, timer and payload objects and its body-writer task (~220 k instructions per
call, ~40% of the seam's cost). It uses aiohttp's connector and protocol below its public API
(`connect`, `set_response_params`, `read`), which the lock pins; tests/integration covers both paths.
Anything else (a GET, a large upload) goes through the session.

What a pool guarantees, in the seam's terms (`Failure`, which `providers.http` maps to the contract):
- `size` connections: a request that finds all busy waits at most its pool wait, then fails as
  `pool`. A connection is held from the request until its answer is closed; at most `keepalive`
  idle ones are kept (aiohttp itself keeps every one).
- `connect_s` bounds connecting, TLS included (`connect_timeout`); the first byte of the body must
  come within `read_s` and every later gap within `idle_s` (`read_timeout`). aiohttp's own read
  timer does both (re-armed on every packet). aiohttp has no write limit and starts its read timer
  once the body is out: a body over 64 KiB (an image, say) must be sent and answered within
  connect + write + read limits, or `write_timeout`.
- Closing an answer not read to its end closes its connection (so cancelling a stream hangs up on
  the upstream); an answer read whole returns its connection to the pool.
- Redirects are not followed, cookies are not kept. A request that `core.proxy` sends through a
  proxy goes through the session (aiohttp opens the `CONNECT` tunnel); the direct path is for
  requests that connect straight to the upstream.

Sessions are bound to the event loop that made them; a pool used from a new loop (tests run
several) gets a new session there.

Must not know: the providers, the protocol, the contract's error kinds (`providers.http` maps).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_writer import _serialize_headers
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from sidecar.core.proxy import Proxies, Proxy, ProxyProblem
from sidecar.providers.http import Failure, Timeouts, TransportFailure

_SMALL_BODY: Final = 64 * 1024  # a request body the socket's buffers take at once
# The most read ahead of the reader (aiohttp pauses the socket past twice this) and handed over at
# once: a relay that waits for its host holds one decoded piece per stream, so small pieces keep
# memory flat (tests/e2e/test_backpressure_e2e.py) at no measurable cost in throughput.
_PIECE: Final = 16 * 1024
_URLS_MAX: Final = 64  # parsed URLs kept per pool (a provider's few routes; custom ones beyond)
_HEADS_MAX: Final = 64  # serialized heads kept per URL (one per set of caller headers: per API key)


class _Connector(aiohttp.TCPConnector):
    """aiohttp keeps every released connection; this one keeps at most `keepalive` idle ones."""

    def __init__(self, keepalive: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._keepalive = keepalive

    def _release(self, key: Any, protocol: Any, *, should_close: bool = False) -> None:
        if len(self._conns.get(key, ())) >= self._keepalive:
            should_close = True
        super()._release(key, protocol, should_close=should_close)


# A direct request's target: the connection's key, the request line, aiohttp's default head, and
# the heads serialized so far, by the caller's headers (all but the Content-Length line).
_Target = tuple[ClientRequest, str, CIMultiDict[str], dict[tuple[tuple[str, str], ...], bytes]]


class _Direct:
    """The answer of a request sent on a pooled connection directly (`Pool._send_direct`): what
    `Answer` reads of an `aiohttp.ClientResponse`, without building one. As there, the connection
    goes back to the pool as soon as the body has been received."""

    __slots__ = ("connection", "content", "headers", "status")

    def __init__(self, connection: Connection, status: int, headers: Any, content: Any) -> None:
        self.connection: Connection | None = connection
        self.status = status
        self.headers = headers
        self.content = content
        content.on_eof(self.release)  # at once if the whole body came with the headers

    def release(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.release()

    def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.close()


class Answer:
    """An upstream answer as providers see it: its status, its headers (case-insensitive,
    read-only), its body in pieces, and the `Timeouts` its request was sent with."""

    __slots__ = ("_done", "_response", "_slots", "headers", "status_code", "timeouts")

    def __init__(
        self, response: aiohttp.ClientResponse | _Direct, slots: asyncio.Semaphore, timeouts: Timeouts
    ) -> None:
        self._response = response
        self._slots = slots
        self._done = False
        self.status_code: int = response.status
        self.headers: CIMultiDictProxy[str] = response.headers
        self.timeouts = timeouts

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body, decoded, in pieces of at most 16 KiB; failures raise `TransportFailure`."""
        content = self._response.content
        try:
            while True:
                chunk = await content.read(_PIECE)
                if not chunk:
                    return
                yield chunk
        except aiohttp.ClientError as exc:
            raise _failure(exc) from exc
        except TimeoutError as exc:
            raise TransportFailure("read_timeout", str(exc) or "read") from exc

    def arrived(self) -> bool:
        """The whole body has been received: reading what is left of it cannot wait."""
        return self._response.content.is_eof()

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


class Pool:
    """One provider's pool: `size` connections, `keepalive` of them kept idle, one TLS trust (a
    context, or `True` for aiohttp's own verified one), `user_agent` on every request."""

    def __init__(
        self,
        size: int,
        keepalive: int,
        tls: ssl.SSLContext | bool,
        user_agent: str,
        proxies: Proxies | None = None,
    ) -> None:
        self._size = size
        self._proxies = proxies
        self._keepalive = keepalive
        self._tls = tls
        self._user_agent = user_agent
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(size)
        # What aiohttp would build again on every request from the same inputs: the URL parsed
        # (a provider sends to a few), and the timeout of the last `Timeouts` (callers reuse one).
        self._urls: dict[str, URL] = {}
        self._timeout: tuple[Timeouts, aiohttp.ClientTimeout] | None = None
        # Per URL, what a request sent directly reuses: the connection's key (an aiohttp request
        # built once, that the connector reads to find or open a connection) and its request line.
        self._targets: dict[str, _Target | None] = {}

    def _session_here(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop:
            _abandon(self._session)
            kwargs: dict[str, Any] = {
                "limit": self._size,
                "limit_per_host": 0,
                "ssl": self._tls,
                "keepalive_timeout": 60,
            }
            connector = (
                _Connector(self._keepalive, **kwargs)
                if self._keepalive < self._size
                else aiohttp.TCPConnector(**kwargs)
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self._user_agent},
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                read_bufsize=_PIECE,
            )
            self._slots = asyncio.Semaphore(self._size)
            self._loop = loop
            self._targets = {}
        return self._session

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeouts: Timeouts,
        pool_wait_s: float | None,
    ) -> Answer:
        """Send one request and answer once its headers are in (the body is read from the `Answer`)."""
        proxy = None
        if self._proxies is not None:
            try:
                proxy = self._proxies.for_url(url)
            except ProxyProblem as exc:
                raise TransportFailure("proxy", str(exc), final=True) from None
        session = self._session_here()
        slots = self._slots
        if slots.locked():
            try:
                async with asyncio.timeout(pool_wait_s):
                    await slots.acquire()
            except TimeoutError:
                raise TransportFailure("pool", "no free connection in the pool") from None
        else:
            await slots.acquire()
        first_s, idle_s = timeouts.read_s, timeouts.body_s
        response: aiohttp.ClientResponse | _Direct
        target = None
        if proxy is None and method == "POST" and body is not None and len(body) <= _SMALL_BODY:
            target = self._target(session, url)
        try:
            if target is not None and body is not None:
                response = await self._send_direct(session, target, headers, body, timeouts)
            else:
                response = await self._send_session(session, method, url, headers, body, timeouts, proxy)
        except BaseException:
            slots.release()  # no answer holds the place
            raise
        # The timer armed by the headers runs with the first-byte limit; every packet after the
        # first piece of the body re-arms it with the idle limit (at once if that came with them).
        # A body received whole has given its connection back already (no timer to re-arm).
        if idle_s != first_s:
            connection = response.connection
            if connection is not None and connection.protocol is not None:
                connection.protocol.read_timeout = idle_s
                if response.content.total_bytes:
                    connection.protocol.start_timeout()
        return Answer(response, slots, timeouts)

    async def _send_session(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeouts: Timeouts,
        proxy: Proxy | None = None,
    ) -> aiohttp.ClientResponse:
        """Any other request, through aiohttp's session (a large body, a GET, a proxied request)."""
        send = session.request(
            method,
            self._url(url),
            headers=headers,
            data=body,
            allow_redirects=False,
            timeout=self._client_timeout(timeouts),
            proxy=proxy.url if proxy is not None else None,
            proxy_headers={"Proxy-Authorization": proxy.authorization}
            if proxy is not None and proxy.authorization
            else None,
        )
        try:
            if body is None or len(body) <= _SMALL_BODY:
                response = await send
            else:
                # aiohttp starts its read timer once the body is out; a large body the upstream
                # stops reading is bounded here by connect + write + first byte.
                async with asyncio.timeout(timeouts.connect_s + timeouts.write_s + timeouts.read_s):
                    response = await send
        except aiohttp.ClientError as exc:
            raise _failure(exc) from exc
        except TimeoutError as exc:
            raise TransportFailure("write_timeout", str(exc) or "write") from exc
        return response

    def _target(self, session: aiohttp.ClientSession, url: str) -> _Target | None:
        """What a direct request to `url` reuses (built once per URL): the connection's key (an
        aiohttp request the connector reads to find or open a connection), the request line and
        aiohttp's default head. None for a URL that is not plain http(s) with a host: the session
        reports those as it always has."""
        if url in self._targets:
            return self._targets[url]
        target: _Target | None = None
        try:
            parsed = self._url(url)
        except ValueError:
            parsed = None
        if (
            parsed is not None
            and parsed.scheme in ("http", "https")
            and parsed.raw_host
            and parsed.raw_user is None
            and parsed.raw_password is None
        ):
            key = ClientRequest("POST", parsed, loop=asyncio.get_running_loop())
            defaults = CIMultiDict(key.headers)  # Host, Accept, Accept-Encoding, User-Agent
            defaults.update(session.headers)
            target = (key, f"POST {parsed.raw_path_qs} HTTP/1.1", defaults, {})
        if len(self._targets) < _URLS_MAX:
            self._targets[url] = target
        return target

    async def _send_direct(
        self,
        session: aiohttp.ClientSession,
        target: _Target,
        headers: Mapping[str, str],
        body: bytes,
        timeouts: Timeouts,
    ) -> _Direct:
        """A small POST (the chat calls) on a pooled connection without aiohttp's request and
        response objects: the connector finds or opens the connection (TLS, connect limit, the
        keep-alive pool), the head and body go out in one write, and the connection's own parser
        (compiled, decompressing) and read timer answer, as under `session.request`. Its head is
        aiohttp's: the session's User-Agent, `Accept`, `Accept-Encoding`, `Host`, checked the
        same way against header injection. A POST is not retried on a dropped keep-alive
        connection there either."""
        key, request_line, defaults, heads = target
        connector = session.connector
        assert connector is not None
        try:
            connection = await connector.connect(key, traces=[], timeout=self._client_timeout(timeouts))
        except TimeoutError as exc:
            raise TransportFailure("connect_timeout", str(exc) or "connect") from exc
        except aiohttp.ClientError as exc:
            raise _failure(exc) from exc
        try:
            protocol = connection.protocol
            transport = connection.transport
            assert protocol is not None and transport is not None
            protocol.set_response_params(
                read_until_eof=True,
                read_timeout=timeouts.read_s,
                read_bufsize=_PIECE,
                timeout_ceil_threshold=connector._timeout_ceil_threshold,
            )
            transport.write(_head(request_line, defaults, heads, headers, len(body)) + body)
            protocol.start_timeout()
            return await _read_head(connection, protocol)
        except BaseException as exc:
            connection.close()
            if isinstance(exc, aiohttp.ClientError):
                raise _failure(exc) from exc
            if isinstance(exc, HttpProcessingError):
                raise TransportFailure("lost", str(exc) or "malformed answer", type(exc).__name__) from exc
            raise

    def _url(self, url: str) -> URL:
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = URL(url)
            if len(self._urls) < _URLS_MAX:
                self._urls[url] = parsed
        return parsed

    def _client_timeout(self, timeouts: Timeouts) -> aiohttp.ClientTimeout:
        last = self._timeout
        if last is not None and last[0] is timeouts:
            return last[1]
        built = aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=timeouts.connect_s, sock_read=timeouts.read_s
        )
        self._timeout = (timeouts, built)
        return built

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and self._loop is asyncio.get_running_loop():
            await session.close()
        else:
            _abandon(session)


def _head(
    request_line: str,
    defaults: CIMultiDict[str],
    heads: dict[tuple[tuple[str, str], ...], bytes],
    headers: Mapping[str, str],
    length: int,
) -> bytes:
    """The request's head as aiohttp writes it: its defaults, the caller's headers over them, a
    Content-Type if none, the Content-Length last (checked against header injection by aiohttp's
    serializer). All but the Content-Length line is serialized once per set of caller headers: a
    provider sends the same few on every call."""
    items = tuple(headers.items())
    prefix = heads.get(items)
    if prefix is None:
        head = defaults.copy()
        head.update(headers)
        if "Content-Type" not in head:
            head["Content-Type"] = "application/octet-stream"
        if "Content-Length" in head:  # the caller's own: replaced where it stands, as aiohttp does
            head["Content-Length"] = str(length)
            return _serialize_headers(request_line, head)
        prefix = _serialize_headers(request_line, head)[:-2]  # the blank line comes after the length
        if len(heads) < _HEADS_MAX:
            heads[items] = prefix
    return prefix + b"Content-Length: %d\r\n\r\n" % length


async def _read_head(connection: Connection, protocol: ResponseHandler) -> _Direct:
    """The status and headers of the answer (past any interim 1xx), its body left to read."""
    while True:
        message, payload = await protocol.read()
        if not 100 <= message.code <= 199 or message.code == 101:
            return _Direct(connection, message.code, message.headers, payload)


def _abandon(session: aiohttp.ClientSession | None) -> None:
    """Drop a session of another (likely finished) event loop: close its sockets, await nothing."""
    if session is not None and session.connector is not None:
        with contextlib.suppress(Exception):
            session.connector._close()


def _failure(exc: aiohttp.ClientError) -> TransportFailure:
    what: Failure
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        # Said in the sidecar's own words: aiohttp's message may quote the proxy's URL.
        if exc.status == 407:
            said = "the proxy wants credentials it was not given, or refused them (HTTP 407)"
        else:
            said = f"the proxy refused the connection (HTTP {exc.status})"
        # Refused credentials or a refused destination stay refused; a proxy's 5xx may pass.
        return TransportFailure("proxy", said, type(exc).__name__, final=exc.status in (403, 407))
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return TransportFailure("proxy", "the proxy could not be reached", type(exc).__name__)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        what = "certificate"
    elif isinstance(exc, aiohttp.ConnectionTimeoutError):
        what = "connect_timeout"
    elif isinstance(exc, aiohttp.ServerTimeoutError):
        what = "read_timeout"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        what = "connect"
    elif isinstance(
        exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | aiohttp.ClientResponseError
    ):
        what = "lost"  # dropped, reset, or a malformed answer
    else:
        what = "other"
    return TransportFailure(what, str(exc) or type(exc).__name__, type(exc).__name__)
