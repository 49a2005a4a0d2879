"""The one shared HTTP client (httpx2, pooled) and the plumbing every provider uses around it.

httpx2 costs ~75 ms to import and its first client ~110 ms to build, so both happen on the first
upstream call (or in the background after the first answer), never before the sidecar can answer.
Transport failures become `network_error` / `timeout` here; HTTP error statuses become contract
kinds in `providers.errors`. Observers see every response's headers (rate-limit tracking).

Timeouts: `connect_s` to connect (and to wait for a pooled connection), `read_s` for the first byte
of the answer, `idle_s` between two pieces of its body (a stalled stream becomes `timeout` within
it). httpcore reads the request's timeout dict afresh when the body starts, so switching the read
limit from first-byte to idle once the headers are in costs nothing per chunk. The total limit of
a request is kept by its caller (the chat service), around retries and all.

Must not know: the protocol, keys storage, any provider's JSON.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from sidecar.errors import ProviderError
from sidecar.providers.errors import display, provider_error

if TYPE_CHECKING:
    import httpx2

MAX_ERROR_BODY: Final = 64 * 1024
HeadersObserver = Callable[[str, int, Mapping[str, str]], None]


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float = 10.0
    read_s: float = 60.0  # the first byte of the answer (and the idle gap too, unless idle_s is set)
    write_s: float = 30.0
    idle_s: float | None = None  # the gap between two pieces of the body

    @property
    def body_s(self) -> float:
        return self.read_s if self.idle_s is None else self.idle_s


class HttpClient:
    def __init__(self, user_agent: str) -> None:
        self._client: httpx2.AsyncClient | None = None
        self._user_agent = user_agent
        # `warm` builds the client in a worker thread while a request may ask for it on the loop.
        self._lock = threading.Lock()
        self.observers: list[HeadersObserver] = []

    def get(self) -> httpx2.AsyncClient:
        if self._client is not None:
            return self._client
        with self._lock:
            if self._client is not None:
                return self._client
            import httpx2

            self._client = httpx2.AsyncClient(
                headers={"user-agent": self._user_agent},
                limits=httpx2.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=60),
                follow_redirects=False,
                trust_env=False,
            )
        return self._client

    def warm(self) -> None:
        """Build the client now (called off the critical path after the first answer)."""
        self.get()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

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
        client = self.get()
        limits: dict[str, float | None] = {
            "connect": t.connect_s,
            "read": t.read_s,
            "write": t.write_s,
            "pool": t.connect_s,
        }
        request = client.build_request(
            method,
            url,
            headers={
                **(headers or {}),
                **({"content-type": "application/json"} if json_body is not None else {}),
            },
            content=json_body,
            extensions={"timeout": limits},
        )
        try:
            response = await client.send(request, stream=True)
        except httpx2.TimeoutException as exc:
            raise transport_error(
                provider, exc, limit_s=t.read_s if isinstance(exc, httpx2.ReadTimeout) else None
            ) from None
        except httpx2.TransportError as exc:
            raise transport_error(provider, exc) from None
        limits["read"] = t.body_s  # from here on, the limit is the gap between pieces of the body
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


async def read_body(provider: str, response: Any) -> bytes:
    """Read a whole (2xx) body, mapping a connection lost midway to a contract error."""
    import httpx2

    try:
        return await response.aread()  # type: ignore[no-any-return]
    except httpx2.TimeoutException as exc:
        raise transport_error(provider, exc, midstream=True, limit_s=_read_limit(response)) from None
    except httpx2.TransportError as exc:
        raise transport_error(provider, exc) from None


async def iter_chunks(provider: str, response: Any) -> AsyncIterator[bytes]:
    """The raw body of a streaming answer, with transport failures mapped to contract errors."""
    import httpx2

    try:
        async for chunk in response.aiter_bytes():
            yield chunk
    except httpx2.TimeoutException as exc:
        raise transport_error(provider, exc, midstream=True, limit_s=_read_limit(response)) from None
    except httpx2.TransportError as exc:
        raise transport_error(provider, exc, midstream=True) from None


def _read_limit(response: Any) -> float | None:
    try:
        limit = response.request.extensions["timeout"]["read"]
    except (AttributeError, KeyError, TypeError, RuntimeError):
        return None
    return float(limit) if isinstance(limit, int | float) else None


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
