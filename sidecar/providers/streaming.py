"""The one loop that relays an upstream SSE body through a provider's stream decoder.

Every SSE provider does the same things around its own decoder: split the body into events,
stop reading at the upstream's terminator, report the partial usage of a stream that fails,
call a stream that ends early a `network_error` (a last event cut in the middle included), and
read what follows the terminator so the connection goes back to the pool (a body closed before
its end closes the connection, and the next request pays for a new TCP and TLS handshake).

An upstream that answers a stream request with a whole JSON body (LiteLLM's proxy does for
`/v1/messages`) gave the complete answer: it is decoded as one (`whole`), not taken for a cut-off
stream. No event may exceed the request's `max_body_bytes`.

Must not know: any provider's JSON, the protocol, keys.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from typing import Any, Final, Protocol

import anyio
import msgspec

from sidecar.core.assemble import ProviderEvent
from sidecar.errors import ProviderError, SidecarError
from sidecar.providers.decoders import SSEDecoder, StreamTooLarge
from sidecar.providers.errors import display
from sidecar.providers.http import iter_chunks, limits_of, read_body, too_large
from sidecar.wire.chat import UsageEvent

_DRAIN_S: Final = 0.5


class EventDecoder(Protocol):
    """A provider's decoder of SSE events, as `relay_sse` drives it."""

    @property
    def usage(self) -> UsageEvent | None:
        """The usage reported so far, if any."""

    @property
    def terminated(self) -> bool:
        """The upstream's terminator was seen: stop reading."""

    @property
    def complete(self) -> bool:
        """The answer is whole (a stream that ends without this was cut short)."""

    @property
    def terminator(self) -> str:
        """What a whole stream ends with, for the error message of one that doesn't."""

    def on_event(self, event: str, data: str) -> list[ProviderEvent]: ...

    def end(self) -> list[ProviderEvent]:
        """What closes a complete answer (finish, continuation, the one final usage)."""


async def drain(chunks: AsyncIterator[bytes], *, arrived: bool = False) -> None:
    """Read (bounded) what follows the terminator, normally only the end of the chunked body.
    `arrived`: the whole body is in already (the usual case: the end of the chunked body came in
    the terminator's packet), so reading the rest cannot wait and needs no time limit."""
    limit = contextlib.nullcontext() if arrived else anyio.move_on_after(_DRAIN_S)
    with limit, contextlib.suppress(SidecarError):
        async for _ in chunks:
            pass


def _arrived(response: Any) -> bool:
    """The answer's whole body has been received (`Answer.arrived`; False for another object)."""
    arrived = getattr(response, "arrived", None)
    return arrived is not None and bool(arrived())


WholeDecoder = Callable[[str, bytes], Iterable[ProviderEvent]]


def is_json_body(response: Any) -> bool:
    """The answer is one JSON document, not the event stream that was asked for."""
    try:
        kind = str(response.headers.get("content-type", "")).split(";", 1)[0].strip().lower()
    except AttributeError:
        return False
    return kind == "application/json" or kind.endswith("+json")


def _whole_json(data: str) -> bool:
    if data == "[DONE]":
        return True
    try:
        msgspec.json.decode(data)
    except msgspec.DecodeError:
        return False
    return True


def cut_off(provider: str, terminator: str) -> ProviderError:
    return ProviderError(
        "network_error",
        f"The stream from {display(provider)} ended before the answer was complete "
        f"(no {terminator}). Retry the request.",
        provider=provider,
    )


async def relay_sse(
    provider: str, response: Any, decoder: EventDecoder, whole: WholeDecoder | None = None
) -> AsyncGenerator[ProviderEvent, None]:
    if whole is not None and is_json_body(response):
        for out in whole(provider, await read_body(provider, response)):
            yield out
        return
    sse = SSEDecoder(limits_of(response).max_body_bytes)
    chunks = iter_chunks(provider, response)
    try:
        try:
            async for chunk in chunks:
                for event in sse.feed(chunk):
                    for out in decoder.on_event(event.event, event.data):
                        yield out
                if decoder.terminated:
                    break
            else:
                for event in sse.finish():
                    if not _whole_json(event.data):
                        # The body ended inside its last event: cut off, not a malformed answer.
                        raise cut_off(provider, decoder.terminator)
                    for out in decoder.on_event(event.event, event.data):
                        yield out
        except StreamTooLarge:
            raise too_large(
                provider, f"one event over {limits_of(response).max_body_bytes:,} bytes"
            ) from None
        if not decoder.complete:
            raise cut_off(provider, decoder.terminator)
    except SidecarError:
        if decoder.usage is not None:
            yield decoder.usage  # the partial usage a failing stream reported
        raise
    if decoder.terminated:
        await drain(chunks, arrived=_arrived(response))
    for out in decoder.end():
        yield out
