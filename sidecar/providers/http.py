"""The one HTTP client seam (httpx2's API over an aiohttp transport, a connection pool per
provider) and the plumbing every provider uses around it.

Providers see httpx2 requests and responses; the I/O, HTTP/1.1 parsing and keep-alive pool are
aiohttp's (`providers.transport`), whose compiled parser relays streams ~4x faster than httpx2's
own stack at a quarter of the CPU per event. httpx2 and aiohttp cost ~0.2 s to import together
(aiohttp builds TLS contexts of its own at import) and the first client's TLS context ~0.1 s more,
so all of it happens on the first upstream call (or in the background after the first answer),
never before the sidecar can answer; later providers' clients share that TLS context. Transport
failures become `network_error` / `timeout` here; HTTP error statuses become contract kinds in
`providers.errors`. Observers see every response's headers (rate-limit tracking). Proxies from the
environment are not used (`trust_env` off, as before the transport changed).

Pools: each provider has its own (`[http] max_connections`, per provider overridable; at most
`max_keepalive` idle connections kept, all by default, so a warm pool opens none), so a flood of
streams to one provider never delays another. A request that finds its pool full waits for a free
connection at most `pool_wait_s` and then fails as `overloaded`: that wait is the sidecar's own
bottleneck, neither a connect timeout nor a failure of the provider.

Timeouts: `connect_s` to connect (TLS included), `read_s` until the first byte of the answer's
body (a stall after the headers is bounded by it too), `idle_s` between two pieces of the body
after that (a stalled stream becomes `timeout` within it). The transport keeps both with aiohttp's
own read timer, re-armed on every packet, so nothing is paid per chunk here. `write_s` has no
limit of its own under aiohttp: a request body the upstream stops reading is bounded by `read_s`.
The total limit of a request is kept by its caller (the chat service), around retries and all.

Size: `max_body_bytes` caps a body read whole (and, in the stream decoders, one event or line).

Must not know: the protocol, keys storage, any provider's JSON.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from sidecar.config import Config
from sidecar.errors import ProviderError
from sidecar.providers.errors import display, provider_error

if TYPE_CHECKING:
    import ssl

    import httpx2

MAX_ERROR_BODY: Final = 64 * 1024
DEFAULT_MAX_BODY_BYTES: Final = 64 * 1024 * 1024
_EXTENSION: Final = "sidecar"  # the request extension that carries its `Timeouts` to the readers
HeadersObserver = Callable[[str, int, Mapping[str, str]], None]


@dataclass(frozen=True, slots=True)
class Timeouts:
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


@dataclass(frozen=True, slots=True)
class PoolSettings:
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
    def __init__(self, user_agent: str, pools: PoolSettings | None = None) -> None:
        self._clients: dict[str, httpx2.AsyncClient] = {}
        self._tls: ssl.SSLContext | bool | None = None
        self._user_agent = user_agent
        self.pools = pools or PoolSettings()
        # `warm` builds a client in a worker thread while a request may ask for one on the loop.
        self._lock = threading.Lock()
        self.observers: list[HeadersObserver] = []

    def get(self, provider: str = "") -> httpx2.AsyncClient:
        """The client (and so the connection pool) of `provider`; "" is the one for other calls."""
        client = self._clients.get(provider)
        if client is not None:
            return client
        with self._lock:
            client = self._clients.get(provider)
            if client is not None:
                return client
            import httpx2

            from sidecar.providers.transport import AiohttpTransport

            if self._tls is None:
                self._tls = _tls_trust()
            size = self.pools.connections(provider)
            keep = size if self.pools.max_keepalive is None else min(size, self.pools.max_keepalive)
            client = httpx2.AsyncClient(
                headers={"user-agent": self._user_agent},
                transport=AiohttpTransport(size, keep, self._tls),
                follow_redirects=False,
                trust_env=False,
            )
            self._clients[provider] = client
        return client

    def warm(self) -> None:
        """Build the TLS context and a client now (called off the critical path after the first answer)."""
        self.get()

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    def _observe(self, provider: str, status: int, headers: Mapping[str, str]) -> None:
        for observer in self.observers:
            try:
                observer(provider, status, headers)
            except Exception:  # bookkeeping must never fail a request
                continue

    @contextlib.asynccontextmanager
    async def open(
        self,
        provider: str,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json_body: bytes | None = None,
        timeouts: Timeouts | None = None,
        chat: bool = True,
    ) -> AsyncIterator[httpx2.Response]:
        """Send a request and yield the streaming response once its status is 2xx.

        A non-2xx answer is read (bounded) and raised as a `ProviderError`. Leaving the block
        early — cancellation included — closes the response, and with it the upstream connection.
        """
        import httpx2

        t = timeouts or Timeouts()
        client = self.get(provider)
        limits: dict[str, float | None] = {
            "connect": t.connect_s,
            "read": t.read_s,
            "write": t.write_s,
            "pool": t.pool_s if t.pool_s is not None else self.pools.pool_wait_s,
        }
        request = client.build_request(
            method,
            url,
            headers={
                **(headers or {}),
                **({"content-type": "application/json"} if json_body is not None else {}),
            },
            content=json_body,
            extensions={"timeout": limits, _EXTENSION: t},
        )
        try:
            response = await client.send(request, stream=True)
        except httpx2.PoolTimeout:
            raise overloaded(provider, limits["pool"] or 0.0, self.pools.connections(provider)) from None
        except httpx2.TimeoutException as exc:
            raise transport_error(
                provider, exc, limit_s=t.read_s if isinstance(exc, httpx2.ReadTimeout) else None
            ) from None
        except httpx2.TransportError as exc:
            raise transport_error(provider, exc) from None
        try:
            self._observe(provider, response.status_code, response.headers)
            if response.status_code >= 300:
                body = await _read_bounded(response)
                raise provider_error(provider, response.status_code, body, response.headers, chat=chat)
            yield response
        finally:
            await response.aclose()

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


async def _read_bounded(response: Any) -> bytes:
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
    """The `Timeouts` a response's request was sent with (defaults for a foreign response)."""
    try:
        t = response.request.extensions.get(_EXTENSION)
    except (AttributeError, RuntimeError):
        t = None
    return t if isinstance(t, Timeouts) else Timeouts()


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
    transport keeps the limits: the first piece within `read_s`, every later one within `idle_s`."""
    import httpx2

    first = True
    try:
        async for chunk in response.aiter_bytes():
            first = False
            yield chunk
    except httpx2.TimeoutException as exc:
        t = limits_of(response)
        raise transport_error(
            provider, exc, midstream=not first, limit_s=t.read_s if first else t.body_s
        ) from None
    except httpx2.TransportError as exc:
        raise transport_error(provider, exc, midstream=True) from None


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
    provider: str, exc: Exception, *, midstream: bool = False, limit_s: float | None = None
) -> ProviderError:
    import httpx2

    name = display(provider)
    if isinstance(exc, httpx2.ConnectTimeout | httpx2.PoolTimeout):
        return ProviderError(
            "timeout",
            f"Connecting to {name} timed out. Check the network or the base URL.",
            provider=provider,
        )
    if isinstance(exc, httpx2.TimeoutException):
        if midstream:
            what = (
                f"stopped sending: nothing arrived for {limit_s:g}s (the idle limit)"
                if limit_s
                else ("stopped sending: nothing arrived within the idle limit")
            )
        else:
            what = (
                f"did not start answering within {limit_s:g}s (the first-byte limit)"
                if limit_s
                else ("did not start answering within the first-byte limit")
            )
        return ProviderError("timeout", f"{name} {what}. Retry, or raise timeout_s.", provider=provider)
    if isinstance(exc, httpx2.ConnectError):
        from sidecar.providers.transport import CertificateRejected

        if isinstance(exc, CertificateRejected):
            return ProviderError(
                "network_error",
                f"The TLS certificate of {name}'s server could not be verified, so nothing was sent."
                " Behind a proxy that inspects TLS, add its authority with SSL_CERT_FILE.",
                provider=provider,
            )
        return ProviderError(
            "network_error",
            f"Could not connect to {name}. Check the network connection and the provider's base URL.",
            provider=provider,
        )
    if midstream or isinstance(exc, httpx2.RemoteProtocolError | httpx2.ReadError):
        return ProviderError(
            "network_error",
            f"The connection to {name} was lost before the answer was complete.",
            provider=provider,
        )
    return ProviderError(
        "network_error",
        f"A network error occurred talking to {name} ({type(exc).__name__}).",
        provider=provider,
    )
