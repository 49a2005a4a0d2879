"""The HTTP seam's transport (httpx2's API over aiohttp) against real sockets on 127.0.0.1: the
limits it keeps itself (a stalled upload, the idle limit when the body came with the headers),
and one `HttpClient` used from several event loops, as tests and the CLI do."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import anyio
import pytest

from sidecar.errors import ProviderError
from sidecar.providers.http import HttpClient, Timeouts, iter_chunks, read_body
from tests.fakes.http import Stall
from tests.fakes.openai_compat import FakeOpenAICompat

STREAM_BODY = b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'
AUTH = {"authorization": "Bearer sk-test-valid"}


@pytest.fixture
def deaf() -> Iterator[str]:
    """A server that accepts connections and never reads from them."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    server.close()


def test_an_upload_the_upstream_stops_reading_is_a_timeout(deaf: str) -> None:
    limits = Timeouts(connect_s=0.5, write_s=0.5, read_s=0.5)

    async def body() -> None:
        http = HttpClient("test")
        started = time.monotonic()
        with pytest.raises(ProviderError) as info:
            async with http.open(
                "openai", "POST", deaf + "/v1/chat/completions", json_body=b"x" * (32 << 20), timeouts=limits
            ):
                pass
        assert info.value.kind == "timeout"
        assert time.monotonic() - started < 5
        await http.aclose()

    anyio.run(body)


def test_the_idle_limit_holds_when_the_body_came_with_the_headers(openai: FakeOpenAICompat) -> None:
    # Two events arrive with the headers, then nothing: the idle limit (0.3 s), not the first-byte
    # limit (30 s), ends the wait.
    openai.edit_stream = lambda events: [*events[:2], Stall(10)]

    async def body() -> None:
        http = HttpClient("test")
        started = time.monotonic()
        with pytest.raises(ProviderError) as info:
            async with http.open(
                "openai",
                "POST",
                openai.api_base + "/chat/completions",
                headers=AUTH,
                json_body=STREAM_BODY,
                timeouts=Timeouts(read_s=30, idle_s=0.3),
            ) as response:
                async for _ in iter_chunks("openai", response):
                    pass
        assert info.value.kind == "timeout" and "idle limit" in info.value.message
        assert time.monotonic() - started < 5
        await http.aclose()

    anyio.run(body)
    assert openai.wait_for_disconnect(timeout=2)


def test_one_client_serves_one_event_loop_after_another(openai: FakeOpenAICompat) -> None:
    http = HttpClient("test")

    async def one() -> bytes:
        async with http.open(
            "openai", "POST", openai.api_base + "/chat/completions", headers=AUTH, json_body=STREAM_BODY
        ) as response:
            return await read_body("openai", response)

    for _ in range(3):
        assert b"[DONE]" in anyio.run(one)
    anyio.run(http.aclose)
