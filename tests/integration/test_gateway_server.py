"""The gateway's HTTP server over a real socket: uvicorn's httptools protocol by default, its h11
one as the fallback, each sending a response's head and body in one write, keeping the connection
alive, and passing the request's headers on untouched (no X-Forwarded-* rewriting)."""

from __future__ import annotations

import socket
import threading
from typing import Any

import anyio
import pytest

from sidecar.gateway import connection
from sidecar.gateway.server import Running, bind, protocol

pytestmark = pytest.mark.anyio


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    msg = await receive()
    client = scope["client"][0] if scope.get("client") else ""
    body = b"%s|%s|%s" % (scope["path"].encode(), msg.get("body", b""), client.encode())
    head = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": head})
    await send({"type": "http.response.body", "body": body})


def exchange(port: int) -> list[bytes]:
    """Two requests on one connection, the first `recv` of each answer kept."""
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        for path in (b"/one", b"/two"):
            conn.sendall(
                b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-For: 10.9.8.7\r\n"
                b"Content-Length: 2\r\n\r\nhi"
            )
            answers.append(conn.recv(65536))
    return answers


def test_httptools_is_the_protocol_and_h11_the_fallback() -> None:
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert issubclass(protocol(), HttpToolsProtocol)
    assert issubclass(protocol(prefer_httptools=False), H11Protocol)


@pytest.mark.parametrize("prefer_httptools", [True, False], ids=["httptools", "h11"])
async def test_head_and_body_leave_in_one_write_on_a_kept_alive_connection(prefer_httptools: bool) -> None:
    running = Running(echo_app, "127.0.0.1", bind("127.0.0.1", 0), prefer_httptools=prefer_httptools)
    async with anyio.create_task_group() as tg:
        tg.start_soon(running.serve)
        answers = await anyio.to_thread.run_sync(exchange, running.port)
        await running.stop()
    for path, answer in zip((b"/one", b"/two"), answers, strict=True):
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        # The whole answer came in the first read: the client saw one segment, not head then body.
        # The peer address is the socket's: X-Forwarded-For is not taken for it.
        assert body == path + b"|hi|127.0.0.1"


@pytest.mark.parametrize("prefer_httptools", [True, False], ids=["httptools", "h11"])
async def test_a_complete_answer_leaves_before_the_loop_turns(prefer_httptools: bool) -> None:
    answered = threading.Event()
    seen: list[bool] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        # Still in this step of the loop (a blocking wait): the client must have its answer already.
        seen.append(answered.wait(5))

    def ask(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            while not data.endswith(b"ok"):
                data += conn.recv(65536)
            answered.set()
            return data

    running = Running(app, "127.0.0.1", bind("127.0.0.1", 0), prefer_httptools=prefer_httptools)
    async with anyio.create_task_group() as tg:
        tg.start_soon(running.serve)
        answer = await anyio.to_thread.run_sync(ask, running.port)
        await running.stop()
    assert answer.startswith(b"HTTP/1.1 200 ") and seen == [True]


@pytest.mark.parametrize("prefer_httptools", [True, False], ids=["httptools", "h11"])
async def test_a_request_task_knows_its_connection_which_calls_it_back_when_the_client_leaves(
    prefer_httptools: bool,
) -> None:
    watching = threading.Event()
    lost = anyio.Event()
    seen: list[object] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        conn = connection.current.get()
        seen.append(conn)
        assert conn is not None and conn.watch(lost.set)
        watching.set()
        with anyio.fail_after(5):
            await lost.wait()
        seen.append(conn.watch(lambda: None))  # lost already: nothing is kept

    def ask_and_leave(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert watching.wait(5)

    running = Running(app, "127.0.0.1", bind("127.0.0.1", 0), prefer_httptools=prefer_httptools)
    async with anyio.create_task_group() as tg:
        tg.start_soon(running.serve)
        await anyio.to_thread.run_sync(ask_and_leave, running.port)
        with anyio.fail_after(5):
            await lost.wait()
        await running.stop()
    assert seen[0] is not None and seen[1] is False
    assert connection.current.get() is None  # set only around uvicorn's own calls


@pytest.mark.parametrize("prefer_httptools", [True, False], ids=["httptools", "h11"])
async def test_each_request_on_a_kept_alive_connection_watches_only_while_it_runs(
    prefer_httptools: bool,
) -> None:
    conns: list[object] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        conn = connection.current.get()
        assert conn is not None
        conns.append(conn)
        assert conn.watch(lambda: conns.append("called back after its request ended"))
        conn.watch(None)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    running = Running(app, "127.0.0.1", bind("127.0.0.1", 0), prefer_httptools=prefer_httptools)
    async with anyio.create_task_group() as tg:
        tg.start_soon(running.serve)
        answers = await anyio.to_thread.run_sync(exchange, running.port)
        await running.stop()
    assert all(a.startswith(b"HTTP/1.1 200 ") for a in answers)
    assert len(conns) == 2 and conns[0] is conns[1]  # one connection, no callback left behind
