"""The one HTTP client seam (aiohttp, a connection pool per provider) and the plumbing every
provider uses around it.

Providers send through `HttpClient.open` and read the answer it yields (`providers.pool.Answer`: a
status code, case-insensitive headers, the body in pieces, the request's `Timeouts`) with
`read_body` / `iter_chunks`. The I/O, HTTP/1.1 parsing and keep-alive pool are aiohttp's
(`providers.pool`), called directly: its compiled parser relays streams ~4x faster than httpx2's
own stack, and no request or response object of another client is built per call. aiohttp costs
~0.1 s to import (it builds its TLS contexts at import), so it loads on the first upstream call
(or in the background after the first answer, `warm`), never before the sidecar can answer; every
provider's pool shares one TLS trust. Transport failures become `network_error` / `timeout` here;
HTTP error statuses become contract kinds in `providers.errors`. Observers see every response's
headers (rate-limit tracking). Redirects are not followed. An HTTP proxy is used where
`core.proxy` says (`[http] proxy`, else the environment's `HTTPS_PROXY` and friends).

Pools: each provider has its own (`[http] max_connections`, per provider overridable; at most
`max_keepalive` idle connections kept, all by default, so a warm pool opens none), so a flood of
streams to one provider never delays another. A request that finds its pool full waits for a free
connection at most `pool_wait_s` and then fails as `overloaded`: that wait is the sidecar's own
bottleneck, neither a connect timeout nor a failure of the provider.

Timeouts: `connect_s` to connect (TLS included), `read_s` until the first byte of the answer's
body (a stall after the headers is bounded by it too), `idle_s` between two pieces of the body
after that (a stalled stream becomes `timeout` within it). The pool keeps both with aiohttp's own
read timer, re-armed on every packet, so nothing is paid per chunk here. `write_s` has no limit of
its own under aiohttp: a request body over 64 KiB must be sent and answered within connect +
write + read limits; a smaller one the socket takes at once. The total limit of a request is kept
by its caller (the chat service), around retries and all.

Size: `max_body_bytes` caps a body read whole (and, in the stream decoders, one event or line);
an error body is read to at most 64 KiB.

Must not know: the protocol, keys storage, any provider's JSON, aiohttp's own types (the pool's).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from sidecar.config import Config
from sidecar.errors import ProviderError
from sidecar.providers.errors import display, provider_error

if TYPE_CHECKING:
    import ssl

    from sidecar.core.proxy import Proxies
    from sidecar.providers.pool import Answer, Pool

MAX_ERROR_BODY: Final = 64 * 1024
DEFAULT_MAX_BODY_BYTES: Final = 64 * 1024 * 1024
HeadersObserver = Callable[[str, int, Mapping[str, str]], None]
# What can fail beneath the seam: no free pooled connection, connecting, the server's certificate,
# the answer not starting (or stalling) in time, a large upload, the connection lost midway; or
# the proxy in between.
Failure = Literal[
    "pool",
    "connect_timeout",
    "connect",
    "certificate",
    "proxy",
    "read_timeout",
    "write_timeout",
    "lost",
    "other",
]


class Timeouts(msgspec.Struct, frozen=True):
    """The limits of one upstream request (time, and how much of the answer may be held)."""

    connect_s: float = 10.0
    read_s: float = 60.0  # the first byte of the body (and the idle gap too, unless idle_s is set)
    write_s: float = 30.0
    idle_s: float | None = None  # the gap between two pieces of the body
    pool_s: float | None = None  # the wait for a free pooled connection (None: the client's default)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @property
    def body_s(self) -> float:
        return self.read_s if self.idle_s is None else self.idle_s


class PoolSettings(msgspec.Struct, frozen=True):
    max_connections: int = 100
    max_keepalive: int | None = None  # None: the pool's size (no reconnects once warm)
    pool_wait_s: float = 30.0
    per_provider: Mapping[str, int] | None = None  # max_connections overrides by provider id

    def connections(self, provider: str) -> int:
        return (self.per_provider or {}).get(provider, self.max_connections)

    @classmethod
    def from_config(cls, config: Config) -> PoolSettings:
        """`[http]`, with each provider's and endpoint's own `max_connections` where set."""
        overrides: dict[str, int] = {}
        for name, settings in config.providers.items():
            if settings.max_connections is not None:
                overrides[name] = settings.max_connections
        for name, endpoint in config.endpoints.items():
            if endpoint.max_connections is not None:
                overrides[name] = endpoint.max_connections
        h = config.http
        return cls(h.max_connections, h.max_keepalive, h.pool_wait_s, overrides)


class TransportFailure(Exception):
    """A failure of the I/O beneath the seam (raised by `providers.pool`), named by what failed so
    `transport_error` can say it in the contract's words."""

    def __init__(self, what: Failure, detail: str, cause: str = "", *, final: bool = False) -> None:
        super().__init__(detail)
        self.what: Failure = what
        self.cause = cause or what
        self.final = final  # trying again cannot help (a proxy that refuses, or cannot be used)


def _tls_trust() -> ssl.SSLContext | bool:
    """What every pool verifies servers against: `True` is aiohttp's own verified context.

    On Windows and macOS httpx2's context trusts the OS store (truststore). Elsewhere both are
    OpenSSL's default paths (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured), and aiohttp builds its
    context anyway when it loads, so reusing it spares a second copy of the CA store (~3.4 MB).
    """
    import platform

    if platform.system() in ("Windows", "Darwin"):
        import httpx2

        return httpx2.create_ssl_context()
    return True


class HttpClient:
    def __init__(
        self, user_agent: str, pools: PoolSettings | None = None, proxies: Proxies | None = None
    ) -> None:
        self._proxies = proxies
        self._pools: dict[str, Pool] = {}
        self._tls: ssl.SSLContext | bool | None = None
        self._user_agent = user_agent
        self.pools = pools or PoolSettings()
        # `warm` builds a pool in a worker thread while a request may ask for one on the loop.
        self._lock = threading.Lock()
        self.observers: list[HeadersObserver] = []

    def _pool(self, provider: str) -> Pool:
        """The connection pool of `provider`; "" is the one for other calls."""
        pool = self._pools.get(provider)
        if pool is not None:
            return pool
        with self._lock:
            pool = self._pools.get(provider)
            if pool is not None:
                return pool
            from sidecar.providers.pool import Pool

            if self._tls is None:
                self._tls = _tls_trust()
            size = self.pools.connections(provider)
            keep = size if self.pools.max_keepalive is None else min(size, self.pools.max_keepalive)
            pool = Pool(size, keep, self._tls, self._user_agent, self._proxies)
            self._pools[provider] = pool
        return pool

    def warm(self) -> None:
        """Import aiohttp and settle the TLS trust now (called off the critical path after the
        first answer)."""
        self._pool("")

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()

    def _observe(self, provider: str, status: int, headers: Mapping[str, str]) -> None:
        for observer in self.observers:
            try:
                observer(provider, status, headers)
            except Exception:  # bookkeeping must never fail a request
                continue

    def open(
        self,
        provider: str,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json_body: bytes | None = None,
        timeouts: Timeouts | None = None,
        chat: bool = True,
        check: bool = True,
    ) -> contextlib.AbstractAsyncContextManager[Answer]:
        """Send a request and yield the streaming answer once its status is 2xx (any status
        without `check`).

        A non-2xx answer is read (bounded) and raised as a `ProviderError`. Leaving the block
        early — cancellation included — closes the answer, and with it the upstream connection.
        """
        return _Opened(self, provider, method, url, headers, json_body, timeouts, chat, check)

    async def _send(
        self,
        provider: str,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        json_body: bytes | None,
        timeouts: Timeouts | None,
        chat: bool,
        check: bool,
    ) -> Answer:
        t = timeouts or _DEFAULT_TIMEOUTS
        pool = self._pools.get(provider) or self._pool(provider)
        if json_body is not None:
            headers = {**headers, "content-type": "application/json"} if headers else _JSON
        pool_wait_s = t.pool_s if t.pool_s is not None else self.pools.pool_wait_s
        try:
            response = await pool.send(method, url, headers or _NO_HEADERS, json_body, t, pool_wait_s)
        except TransportFailure as exc:
            if exc.what == "pool":
                raise overloaded(provider, pool_wait_s, self.pools.connections(provider)) from None
            raise transport_error(
                provider, exc, limit_s=t.read_s if exc.what == "read_timeout" else None
            ) from None
        try:
            if self.observers:
                self._observe(provider, response.status_code, response.headers)
            if check and response.status_code >= 300:
                body = await _read_bounded(response)
                raise provider_error(provider, response.status_code, body, response.headers, chat=chat)
        except BaseException:
            await response.aclose()
            raise
        return response

    async def request_json(
        self,
        provider: str,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json_body: bytes | None = None,
        timeouts: Timeouts | None = None,
        chat: bool = False,
    ) -> tuple[bytes, Mapping[str, str]]:
        """A small non-streaming call; returns the body bytes and headers of a 2xx answer."""
        async with self.open(
            provider, method, url, headers=headers, json_body=json_body, timeouts=timeouts, chat=chat
        ) as response:
            body = await read_body(provider, response)
            return body, response.headers


class _Opened:
    """`HttpClient.open`'s context manager: a class rather than an `asynccontextmanager`, which
    would cost a generator and contextlib's frames on every upstream call."""

    __slots__ = ("_args", "_client", "_response")

    def __init__(self, client: HttpClient, *args: Any) -> None:
        self._client = client
        self._args = args
        self._response: Answer | None = None

    async def __aenter__(self) -> Answer:
        self._response = await self._client._send(*self._args)
        return self._response

    async def __aexit__(self, *exc: object) -> None:
        response, self._response = self._response, None
        if response is not None:
            await response.aclose()


_DEFAULT_TIMEOUTS: Final = Timeouts()
_JSON: Final[Mapping[str, str]] = {"content-type": "application/json"}
_NO_HEADERS: Final[Mapping[str, str]] = {}


async def _read_bounded(response: Any) -> bytes:
    """At most `MAX_ERROR_BODY` of an (error) body; a failure midway ends it, never raises."""
    chunks: list[bytes] = []
    size = 0
    with contextlib.suppress(Exception):
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_ERROR_BODY:
                break
    return b"".join(chunks)[:MAX_ERROR_BODY]


def limits_of(response: Any) -> Timeouts:
    """The `Timeouts` an answer's request was sent with (defaults for a foreign response)."""
    t = getattr(response, "timeouts", None)
    return t if isinstance(t, Timeouts) else _DEFAULT_TIMEOUTS


async def read_body(provider: str, response: Any) -> bytes:
    """Read a whole (2xx) body, at most `max_body_bytes`, mapping a connection lost midway to a
    contract error and a body past the cap to `too_large`."""
    limit = limits_of(response).max_body_bytes
    chunks: list[bytes] = []
    size = 0
    async for chunk in iter_chunks(provider, response):
        size += len(chunk)
        if size > limit:
            raise too_large(provider, f"a body over {_mib(limit)}")
        chunks.append(chunk)
    return b"".join(chunks)


async def iter_chunks(provider: str, response: Any) -> AsyncIterator[bytes]:
    """The raw body of a streaming answer, with transport failures mapped to contract errors. The
    pool keeps the limits: the first piece within `read_s`, every later one within `idle_s`."""
    first = True
    try:
        async for chunk in response.aiter_bytes():
            first = False
            yield chunk
    except TransportFailure as exc:
        t = limits_of(response)
        raise transport_error(
            provider, exc, midstream=not first, limit_s=t.read_s if first else t.body_s
        ) from None


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):g} MiB"


def too_large(provider: str, what: str) -> ProviderError:
    """An answer past the sidecar's size caps: reported, never retried (it would be as large again)."""
    return ProviderError(
        "provider_error",
        f"The answer from {display(provider)} was too large: {what} ([http] max_body_mb and "
        "max_answer_chars in config.toml). Ask for a shorter answer (max_tokens), or raise the limit.",
        provider=provider,
        final=True,
    )


def overloaded(provider: str, waited_s: float, size: int) -> ProviderError:
    return ProviderError(
        "overloaded",
        f"All {size} connections to {display(provider)} were busy for {waited_s:g}s: the sidecar has "
        "too many requests in flight to this provider. Retry later, send fewer at once, or raise "
        "max_connections / pool_wait_s under [http] in config.toml.",
        provider=provider,
    )


def transport_error(
    provider: str, exc: TransportFailure, *, midstream: bool = False, limit_s: float | None = None
) -> ProviderError:
    name = display(provider)
    what = exc.what
    if what in ("connect_timeout", "pool"):
        return ProviderError(
            "timeout",
            f"Connecting to {name} timed out. Check the network or the base URL.",
            provider=provider,
        )
    if what in ("read_timeout", "write_timeout"):
        if midstream:
            said = (
                f"stopped sending: nothing arrived for {limit_s:g}s (the idle limit)"
                if limit_s
                else "stopped sending: nothing arrived within the idle limit"
            )
        else:
            said = (
                f"did not start answering within {limit_s:g}s (the first-byte limit)"
                if limit_s
                else "did not start answering within the first-byte limit"
            )
        return ProviderError("timeout", f"{name} {said}. Retry, or raise timeout_s.", provider=provider)
    if what == "certificate":
        return ProviderError(
            "network_error",
            f"The TLS certificate of {name}'s server could not be verified, so nothing was sent."
            " Behind a proxy that inspects TLS, add its authority with SSL_CERT_FILE.",
            provider=provider,
        )
    if what == "proxy":
        return ProviderError(
            "network_error",
            f"Could not reach {name} through the proxy: {exc}. Check [http] proxy in config.toml, or"
            " HTTPS_PROXY and NO_PROXY in the sidecar's environment.",
            provider=provider,
            final=exc.final,
        )
    if what == "connect":
        return ProviderError(
            "network_error",
            f"Could not connect to {name}. Check the network connection and the provider's base URL.",
            provider=provider,
        )
    if midstream or what == "lost":
        return ProviderError(
            "network_error",
            f"The connection to {name} was lost before the answer was complete.",
            provider=provider,
        )
    return ProviderError(
        "network_error",
        f"A network error occurred talking to {name} ({exc.cause}).",
        provider=provider,
    )
