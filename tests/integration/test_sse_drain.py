"""After an SSE stream's terminator the rest of the body is read so the connection goes back to
the pool: at once when the whole body came with the terminator (no time limit to arm), and within
the drain limit when the end of the chunked body comes later."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from sidecar.providers import openai_format
from sidecar.providers.http import HttpClient, Timeouts
from sidecar.providers.streaming import relay_sse

pytestmark = pytest.mark.anyio

HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
    b"connection: keep-alive\r\n\r\n"
)
EVENTS = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"hi"},"finish_reason":null}]}\n\n'
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n'
    b"data: [DONE]\n\n"
)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@asynccontextmanager
async def upstream(end_delay_s: float) -> AsyncIterator[tuple[str, list[int]]]:
    """Answers every request on a connection with EVENTS; the end of the chunked body follows in
    the same write, or `end_delay_s` later. Yields the URL and the count of accepted connections."""
    accepted: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                await reader.readexactly(2)  # the body: b"{}"
                if end_delay_s:
                    writer.write(HEAD + chunk(EVENTS))
                    await writer.drain()
                    await asyncio.sleep(end_delay_s)
                    writer.write(b"0\r\n\r\n")
                else:
                    writer.write(HEAD + chunk(EVENTS) + b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/chat/completions", accepted
    finally:
        server.close()


async def relay(http: HttpClient, url: str) -> tuple[list[object], bool, bool]:
    """The events, whether the whole body was in at the first event, and at the end."""
    async with http.open("openai", "POST", url, json_body=b"{}", timeouts=Timeouts()) as response:
        events: list[object] = []
        early = False
        decoder = openai_format.ChunkDecoder("openai")
        async for event in relay_sse("openai", response, decoder, openai_format.decode_completion):
            if not events:
                early = response.arrived()
            events.append(event)
        return events, early, response.arrived()


@pytest.mark.parametrize("end_delay_s", [0.0, 0.2], ids=["with-the-terminator", "later"])
async def test_the_connection_goes_back_to_the_pool_after_the_terminator(end_delay_s: float) -> None:
    http = HttpClient("test")
    try:
        async with upstream(end_delay_s) as (url, accepted):
            for _ in range(2):
                events, early, arrived = await relay(http, url)
                assert events  # the answer, its finish and its usage
                assert early is (end_delay_s == 0)  # the end of the body came with the events, or not
                assert arrived  # read to its end before the answer was closed
            assert len(accepted) == 1  # the second request reused the first one's connection
    finally:
        await http.aclose()
