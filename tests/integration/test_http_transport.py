"""The HTTP seam's pool (aiohttp, `providers.pool`) against real sockets on 127.0.0.1: the
limits it keeps itself (a stalled upload, the idle limit when the body came with the headers),
and one `HttpClient` used from several event loops, as tests and the CLI do."""

from __future__ import annotations

import gzip
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from sidecar.errors import ProviderError
from sidecar.providers.http import HttpClient, Timeouts, iter_chunks, read_body
from tests.fakes.http import Reply, Stall
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
        assert time.monotonic() - started < 10  # the write limit (0.5 s), not a hang
        await http.aclose()

    anyio.run(body)


def test_the_idle_limit_holds_when_the_body_came_with_the_headers(openai: FakeOpenAICompat) -> None:
    # Two events arrive with the headers, then nothing: the idle limit (0.3 s), not the first-byte
    # limit (30 s), ends the wait. The stall outlasts that limit, so only the idle one ends it early.
    openai.edit_stream = lambda events: [*events[:2], Stall()]

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
        assert time.monotonic() - started < 8
        await http.aclose()

    anyio.run(body)
    assert openai.wait_for_disconnect(timeout=5)


def test_each_request_keeps_its_own_limits_on_one_pool(openai: FakeOpenAICompat) -> None:
    # The pool reuses what it built for the last request's `Timeouts` (and the URL it parsed): a
    # request with other limits must still get its own.
    async def stream(http: HttpClient, timeouts: Timeouts) -> None:
        async with http.open(
            "openai",
            "POST",
            openai.api_base + "/chat/completions",
            headers=AUTH,
            json_body=STREAM_BODY,
            timeouts=timeouts,
        ) as response:
            async for _ in iter_chunks("openai", response):
                pass

    async def body() -> None:
        http = HttpClient("test")
        patient = Timeouts(read_s=30, idle_s=30)
        await stream(http, patient)
        await stream(http, patient)
        openai.edit_stream = lambda events: [Stall()]  # outlasts the patient limits (30 s)
        started = time.monotonic()
        with pytest.raises(ProviderError) as info:
            await stream(http, Timeouts(read_s=0.3))
        assert info.value.kind == "timeout" and "within 0.3s (the first-byte limit)" in info.value.message
        assert time.monotonic() - started < 8
        await http.aclose()

    anyio.run(body)


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


def _get(http: HttpClient, url: str, **kw: Any) -> Any:
    async def one() -> tuple[int, bytes, Any]:
        async with http.open("openai", "GET", url, chat=False, **kw) as response:
            return response.status_code, await read_body("openai", response), response.headers

    return anyio.run(one)


def test_a_redirect_is_an_error_not_followed(openai: FakeOpenAICompat) -> None:
    # Following one would send the key to wherever the Location points.
    openai.enqueue(Reply(status=307, headers={"location": openai.url + "/elsewhere"}, body=b"moved"))
    http = HttpClient("test")
    with pytest.raises(ProviderError) as info:
        _get(http, openai.url + "/v1/models", headers=AUTH)
    assert info.value.status == 307
    assert [r.path for r in openai.requests] == ["/v1/models"]
    anyio.run(http.aclose)


def test_proxies_from_the_environment_are_not_used(
    openai: FakeOpenAICompat, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = socket.create_server(("127.0.0.1", 0))  # a "proxy" that never answers
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{dead.getsockname()[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    http = HttpClient("test")
    try:
        status, _, _ = _get(http, openai.api_base + "/models", headers=AUTH, timeouts=Timeouts(read_s=5))
        assert status == 200 and len(openai.requests) == 1
    finally:
        anyio.run(http.aclose)
        dead.close()


def test_headers_sent_and_received(openai: FakeOpenAICompat) -> None:
    # A gzip-encoded answer is decoded; the answer's headers are read case-insensitively; the
    # request carries the sidecar's user agent and the caller's headers as given.
    payload = b'{"data":[' + b'{"id":"m"},' * 2000 + b'{"id":"last"}]}'
    openai.enqueue(
        Reply(
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip", "X-Request-ID": "r1"},
            body=gzip.compress(payload),
        )
    )
    http = HttpClient("llm-sidecar/test")
    status, body, headers = _get(http, openai.api_base + "/models", headers={**AUTH, "x-extra": "1"})
    assert status == 200 and body == payload
    assert headers["x-request-id"] == headers.get("X-Request-Id") == "r1"
    sent = openai.requests[0].headers
    assert sent["user-agent"] == "llm-sidecar/test"
    assert sent["x-extra"] == "1" and sent["authorization"] == AUTH["authorization"]
    assert "gzip" in sent["accept-encoding"]
    anyio.run(http.aclose)


def test_a_small_post_goes_out_with_the_same_head_as_a_large_one(openai: FakeOpenAICompat) -> None:
    # A small POST (a chat call) is written on the pooled connection directly, a large one goes
    # through aiohttp's session: the upstream sees the same head from both, on one connection.
    payload = b'{"id":"chatcmpl-1","choices":[]}' * 100
    small = b'{"model":"m","messages":[]}'
    large = b'{"model":"m","pad":"' + b"x" * (100 * 1024) + b'"}'
    for _ in range(2):
        openai.enqueue(
            Reply(
                headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
                body=gzip.compress(payload),
            )
        )
    http = HttpClient("llm-sidecar/test")
    url = openai.api_base + "/chat/completions"

    async def post(body: bytes) -> bytes:
        async with http.open("openai", "POST", url, headers={**AUTH, "x-extra": "1"}, json_body=body) as r:
            assert r.status_code == 200
            return await read_body("openai", r)

    async def both() -> list[bytes]:
        return [await post(small), await post(large)]

    assert anyio.run(both) == [payload, payload]
    first, second = openai.requests[:2]
    assert first.body == small and second.body == large
    assert openai.connections_accepted == 1
    for name in ("host", "user-agent", "accept", "accept-encoding", "content-type", "x-extra"):
        assert first.headers[name] == second.headers[name], name
    assert first.headers["user-agent"] == "llm-sidecar/test"
    assert first.headers["content-type"] == "application/json"
    assert first.headers["authorization"] == AUTH["authorization"]
    assert first.headers["content-length"] == str(len(small))

    async def injected() -> None:
        async with http.open("openai", "POST", url, headers={"x-bad": "a\r\nx-evil: 1"}, json_body=small):
            pass

    with pytest.raises(ValueError, match="control character"):
        anyio.run(injected)
    assert len(openai.requests) == 2  # nothing was sent
    anyio.run(http.aclose)


@pytest.mark.parametrize("url", ["localhost:1/v1/chat/completions", "ftp://127.0.0.1:1/x", "http:///v1"])
def test_a_post_to_a_url_that_is_not_http_is_a_network_error(url: str) -> None:
    # Not sent directly: aiohttp's session refuses it, and the seam says so in the contract's words.
    http = HttpClient("test")

    async def post() -> None:
        async with http.open("openai", "POST", url, json_body=b"{}"):
            pass

    with pytest.raises(ProviderError) as info:
        anyio.run(post)
    assert info.value.kind == "network_error"
    anyio.run(http.aclose)


SEAM_ONLY = """
import sys, anyio
from sidecar.providers.http import HttpClient, read_body

http = HttpClient("test")
http.warm()
assert "aiohttp" in sys.modules

async def main() -> None:
    async with http.open("openai", "GET", sys.argv[1], headers={"authorization": sys.argv[2]}) as r:
        assert r.status_code == 200 and await read_body("openai", r)
    await http.aclose()

anyio.run(main)
print(",".join(m for m in ("httpx2", "httpcore2", "h11") if m in sys.modules))
"""


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="there the TLS trust is httpx2's")
def test_warm_and_a_request_load_aiohttp_and_not_httpx2(openai: FakeOpenAICompat) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SEAM_ONLY, openai.api_base + "/models", AUTH["authorization"]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == ""
