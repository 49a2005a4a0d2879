#!/usr/bin/env python3
"""The HTTP stack on the relay benchmark: candidate clients reading one long SSE stream, plain and
over TLS, against the limit (a raw asyncio HTTP/1.1 client reading the same bytes).

The upstream is a separate process (so it takes no GIL from the client measured): an asyncio server
that answers every POST with a pre-rendered OpenAI-shaped SSE stream, one HTTP chunk per event,
sent as fast as the socket allows. With `tls`, it serves a self-signed certificate made at run time
with `cryptography`, and every client trusts exactly that certificate.

Every client does the same work per event: SSE framing (`sidecar.providers.decoders.SSEDecoder`)
and a msgspec decode of the JSON. Figures: events/s (best of the rounds) and µs of client CPU per
event. Candidates:

- `raw asyncio` (the limit): `asyncio.open_connection`, chunked decoding by hand.
- `httpx2` over its own stack (httpcore2, h11): the sidecar's client until issue 13, and the floor.
- `sidecar HttpClient`: the seam as the providers use it (`HttpClient.open`, `iter_chunks`), i.e.
  aiohttp behind `sidecar/providers/pool.py`, with its pool, limits and error mapping.
- `aiohttp` directly, and `httpx2 API over aiohttp` (the ~30-line adapter that was measured before
  aiohttp was adopted; the sidecar used a fuller one until its seam took httpx2's objects off).

`bench_http(quick)` returns rows in scripts/bench.py's table shape; run alone it prints them.

    .venv/bin/python scripts/bench_http.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sidecar.providers.decoders import SSEDecoder  # noqa: E402
from tests.tls import make_certificate  # noqa: E402

Table = list[tuple[str, str, str, str]]
EVENT = (
    b'data: {"id":"chatcmpl-b","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"delta":{"content":"tok "},"logprobs":null,"finish_reason":null}],'
    b'"usage":null,"obfuscation":"abcd"}\n\n'
)
REQUEST_BODY = b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"long"}]}'


# -- the upstream -----------------------------------------------------------------------------------


def serve(port_file: str, events: int, cert: str | None, key: str | None) -> None:
    chunk = b"%x\r\n%s\r\n" % (len(EVENT), EVENT)
    done = b"data: [DONE]\n\n"
    body = chunk * events + b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done)
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
        b"connection: keep-alive\r\n\r\n"
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                headers = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in headers.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                writer.write(head + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        context = None
        if cert and key:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
        await asyncio.to_thread(Path(port_file).write_text, str(server.sockets[0].getsockname()[1]))
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# -- the clients ------------------------------------------------------------------------------------

Reader = Callable[[str, ssl.SSLContext | None], Awaitable[int]]
_decode = msgspec.json.decode


def _count(decoder: SSEDecoder, chunk: bytes) -> int:
    n = 0
    for ev in decoder.feed(chunk):
        if ev.data != "[DONE]":
            _decode(ev.data)
            n += 1
    return n


async def read_raw(url: str, context: ssl.SSLContext | None, state: dict[str, Any]) -> int:
    """The limit: one kept-alive asyncio connection, chunked transfer decoded by hand."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    if "conn" not in state:
        state["conn"] = await asyncio.open_connection(host, int(port), ssl=context)
    reader, writer = state["conn"]
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (host.encode(), len(REQUEST_BODY), REQUEST_BODY)
    )
    await reader.readuntil(b"\r\n\r\n")
    decoder, n = SSEDecoder(), 0
    buf = b""
    while True:
        data = await reader.read(65536)
        buf += data
        pieces: list[bytes] = []
        pos = 0
        while True:
            nl = buf.find(b"\r\n", pos)
            if nl < 0:
                break
            size = int(buf[pos:nl], 16)
            if size == 0:
                if len(buf) < nl + 4:
                    break
                n += _count(decoder, b"".join(pieces))
                return n
            end = nl + 2 + size
            if len(buf) < end + 2:
                break
            pieces.append(buf[nl + 2 : end])
            pos = end + 2
        buf = buf[pos:]
        n += _count(decoder, b"".join(pieces))


async def read_httpx2(url: str, context: ssl.SSLContext | None, state: dict[str, Any]) -> int:
    import httpx2

    if "client" not in state:
        state["client"] = httpx2.AsyncClient(verify=context or True, timeout=60)
    decoder, n = SSEDecoder(), 0
    async with state["client"].stream("POST", url, content=REQUEST_BODY) as r:
        async for chunk in r.aiter_bytes():
            n += _count(decoder, chunk)
    return n


async def read_aiohttp(url: str, context: ssl.SSLContext | None, state: dict[str, Any]) -> int:
    import aiohttp

    if "session" not in state:
        state["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context or True))
    decoder, n = SSEDecoder(), 0
    async with state["session"].post(url, data=REQUEST_BODY) as r:
        async for chunk in r.content.iter_any():
            n += _count(decoder, chunk)
    return n


def _aiohttp_transport(session: Any) -> Any:
    """The httpx2 API over aiohttp: a transport the `HttpClient` seam could host unchanged."""
    import httpx2

    class _Body(httpx2.AsyncByteStream):
        def __init__(self, response: Any) -> None:
            self._response = response

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for chunk in self._response.content.iter_any():
                yield chunk

        async def aclose(self) -> None:
            self._response.release()

    class AiohttpTransport(httpx2.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            response = await session.request(
                request.method,
                str(request.url),
                headers=[(k.decode(), v.decode()) for k, v in request.headers.raw],
                data=request.content,
                allow_redirects=False,
                auto_decompress=False,
            )
            return httpx2.Response(
                response.status, headers=list(response.raw_headers), stream=_Body(response), request=request
            )

        async def aclose(self) -> None:
            await session.close()

    return AiohttpTransport()


async def read_httpx2_aiohttp(url: str, context: ssl.SSLContext | None, state: dict[str, Any]) -> int:
    import aiohttp
    import httpx2

    if "client" not in state:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context or True))
        state["client"] = httpx2.AsyncClient(transport=_aiohttp_transport(session), timeout=60)
    decoder, n = SSEDecoder(), 0
    async with state["client"].stream("POST", url, content=REQUEST_BODY) as r:
        async for chunk in r.aiter_bytes():
            n += _count(decoder, chunk)
    return n


async def read_sidecar(url: str, context: ssl.SSLContext | None, state: dict[str, Any]) -> int:
    """The sidecar's own seam as providers use it: `HttpClient.open` and `iter_chunks`."""
    from sidecar.providers.http import HttpClient, iter_chunks

    if "client" not in state:
        state["client"] = HttpClient("bench")
        if context is not None:
            state["client"]._tls = context  # trust the run's self-signed certificate
    decoder, n = SSEDecoder(), 0
    async with state["client"].open("bench", "POST", url, json_body=REQUEST_BODY) as r:
        async for chunk in iter_chunks("bench", r):
            n += _count(decoder, chunk)
    return n


CANDIDATES: list[tuple[str, Callable[..., Awaitable[int]]]] = [
    ("raw asyncio (limit)", read_raw),
    ("httpx2", read_httpx2),
    ("sidecar HttpClient (aiohttp)", read_sidecar),
    ("aiohttp", read_aiohttp),
    ("httpx2 API over aiohttp", read_httpx2_aiohttp),
]


async def _measure(
    read: Callable[..., Awaitable[int]], url: str, context: ssl.SSLContext | None, events: int, rounds: int
) -> tuple[float, float]:
    state: dict[str, Any] = {}
    await read(url, context, state)  # connect (and handshake) outside the measurement
    best, cpu_us = 0.0, 0.0
    for _ in range(rounds):
        cpu0, t0 = time.process_time(), time.perf_counter()
        n = await read(url, context, state)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        assert n == events, (n, events)
        if n / wall > best:
            best, cpu_us = n / wall, cpu / n * 1e6
    for closable in state.values():
        if hasattr(closable, "aclose"):
            await closable.aclose()
        elif hasattr(closable, "close") and asyncio.iscoroutinefunction(closable.close):
            await closable.close()
        elif isinstance(closable, tuple):
            closable[1].close()
    return best, cpu_us


def bench_http(quick: bool = False) -> Table:
    events, rounds = (5_000, 3) if quick else (50_000, 5)
    rows: Table = []
    with tempfile.TemporaryDirectory() as folder:
        cert, key = make_certificate(Path(folder))
        for tls in (False, True):
            port_file = Path(folder) / f"port-{tls}"
            argv = [sys.executable, __file__, "--serve", str(port_file), "--events", str(events)]
            if tls:
                argv += ["--cert", cert, "--key", key]
            server = subprocess.Popen(argv)
            try:
                deadline = time.monotonic() + 10
                while not port_file.exists() or not port_file.read_text():
                    if time.monotonic() > deadline:
                        raise RuntimeError("the upstream did not start")
                    time.sleep(0.02)
                scheme = "https" if tls else "http"
                url = f"{scheme}://127.0.0.1:{port_file.read_text()}/v1/chat/completions"
                context = ssl.create_default_context(cafile=cert) if tls else None
                results: dict[str, tuple[float, float]] = {}
                for label, read in CANDIDATES:
                    results[label] = asyncio.run(_measure(read, url, context, events, rounds))
                limit, limit_cpu = results["raw asyncio (limit)"]
                floor = results["httpx2"][0]
                for label, (rate, cpu) in results.items():
                    rows.append(
                        (
                            f"http stack: {label}, {'TLS' if tls else 'plain'} ({events:,} SSE events)",
                            f"{rate:,.0f} ev/s ({cpu:.1f} µs CPU/ev)",
                            f"{limit:,.0f} ev/s ({limit_cpu:.1f} µs) raw asyncio",
                            f"{rate / limit:.2f}x limit, {rate / floor:.2f}x httpx2",
                        )
                    )
            finally:
                server.terminate()
                server.wait(5)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--cert", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.events, args.cert, args.key)
        return 0
    from scripts.bench_common import print_table  # only when run alone

    print_table(bench_http(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
