"""A gateway request's bookkeeping (the chat hooks' `after`: ledger row, metrics, budget and limit
accounting) runs once its answer is sent, and nothing is lost for it: every request still has its
ledger row, access-log line and metrics sample, a client that leaves as soon as it has its answer
and a gateway stopped right after answering included; the next request is admitted only once the
previous one's bookkeeping is done; with Redis the hooks run before the answer, as before."""

from __future__ import annotations

import gc
import json
import socket
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio.abc import TaskGroup

from sidecar.app import Services, build_services
from sidecar.config import Config, Coordination
from sidecar.core.models import ModelRef
from sidecar.infra.keystore import MemoryStore
from sidecar.services.context import AfterReply
from sidecar.services.outcome import Outcome
from sidecar.wire.chat import CompleteParams
from sidecar.wire.gateway import ClientKeyCreateParams, GatewayStartParams, MetricsParams
from tests.fakes.openai_compat import FakeOpenAICompat

pytestmark = pytest.mark.anyio

BODY = {"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}


class Ctx:
    request_id = "test"

    async def notify(self, method: str, params: Any) -> None:
        return None


class Recorder:
    """A chat hook that notes when each request is checked and recorded; its `after` can be held
    (awaiting `release`), so a test sees what happens while a request's bookkeeping runs."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.release: anyio.Event | None = None
        self.holding = anyio.Event()

    async def before(self, ref: ModelRef, params: CompleteParams) -> None:
        self.events.append(f"before {params.messages[-1].content}")

    async def after(self, outcome: Outcome) -> None:
        self.events.append("after")
        if self.release is not None:
            self.holding.set()
            await self.release.wait()
        self.events.append("recorded")


@dataclass
class Stack:
    services: Services
    url: str
    key: str
    home: Path
    recorder: Recorder


@pytest.fixture
def fake() -> Iterator[FakeOpenAICompat]:
    with FakeOpenAICompat("openai") as oa:
        yield oa


async def start(home: Path, fake: FakeOpenAICompat, tg: TaskGroup) -> Stack:
    env = {"SIDECAR_HOME": str(home), "OPENAI_BASE_URL": fake.api_base}
    services = build_services(Config(), store=MemoryStore({"openai": "sk-test-valid"}), env=env)
    recorder = Recorder()
    services.chat.hooks.append(recorder)
    await services.start_background(tg)
    started = await services.handlers["gateway_start"](GatewayStartParams(port=0), Ctx())
    created = await services.handlers["client_key_create"](ClientKeyCreateParams(name="app"), Ctx())
    return Stack(services, started.url, created.key, home, recorder)


@pytest.fixture
async def stack(tmp_path: Path, fake: FakeOpenAICompat) -> AsyncIterator[Stack]:
    async with anyio.create_task_group() as tg:
        s = await start(tmp_path, fake, tg)
        yield s
        await s.services.stop_gateway()
        tg.cancel_scope.cancel()
    await s.services.aclose()


def ledger(home: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(home / "sidecar.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM ledger ORDER BY id")]


def access_lines(home: Path) -> list[dict[str, Any]]:
    (log_file,) = (home / "logs").iterdir()
    return [json.loads(line) for line in log_file.read_text().splitlines()]


def chat(content: str) -> dict[str, Any]:
    return {**BODY, "messages": [{"role": "user", "content": content}]}


def post_and_leave(url: str, key: str) -> bytes:
    """One request on a raw socket, read until its whole answer is in, then the socket closed at
    once: a client that goes away right after its answer."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps(BODY).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        header, _, rest = answer.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in header.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(rest) < length:
            rest += sock.recv(65536)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
    return header.split(b"\r\n", 1)[0]


async def test_the_answer_is_sent_before_the_bookkeeping_and_the_next_request_waits_for_it(
    stack: Stack,
) -> None:
    rec = stack.recorder
    rec.release = anyio.Event()
    headers = {"authorization": f"Bearer {stack.key}"}
    async with httpx2.AsyncClient(timeout=10) as http:
        first = await http.post(stack.url + "/v1/chat/completions", json=chat("one"), headers=headers)
        # The client has its answer while the request's bookkeeping is still held.
        assert first.status_code == 200 and rec.holding.is_set()
        assert rec.events == ["before one", "after"]
        status: list[int] = []

        async def second() -> None:
            r = await http.post(stack.url + "/v1/chat/completions", json=chat("two"), headers=headers)
            status.append(r.status_code)

        async with anyio.create_task_group() as tg:
            tg.start_soon(second)
            gateway = stack.services.gateway._gateway
            assert gateway is not None
            for _ in range(1000):  # until the second request has reached the gateway
                if gateway.counters.requests == 2:
                    break
                await anyio.sleep(0.01)
            for _ in range(20):
                await anyio.sleep(0.005)
            assert rec.events == ["before one", "after"]  # not checked while the first records
            rec.release.set()
    assert status == [200]
    assert rec.events == ["before one", "after", "recorded", "before two", "after", "recorded"]


async def test_every_request_keeps_its_row_line_and_sample_when_the_client_leaves_at_once(
    stack: Stack,
) -> None:
    lines = [await anyio.to_thread.run_sync(post_and_leave, stack.url, stack.key) for _ in range(5)]
    assert lines == [b"HTTP/1.1 200 OK"] * 5
    async with httpx2.AsyncClient(timeout=10) as http:
        for i in range(3):
            r = await http.post(
                stack.url + "/v1/chat/completions",
                json=chat(f"n{i}"),
                headers={"authorization": f"Bearer {stack.key}"},
            )
            assert r.status_code == 200
    await anyio.to_thread.run_sync(stack.services.usage.ledger.flush)
    await anyio.to_thread.run_sync(stack.services.access_log.flush)
    rows = ledger(stack.home)
    assert [(r["outcome"], r["client"]) for r in rows] == [("ok", "app")] * 8
    assert all(r["output_tokens"] > 0 for r in rows)
    assert [(a["status"], a["client"]) for a in access_lines(stack.home)] == [(200, "app")] * 8
    sent = await stack.services.handlers["metrics"](MetricsParams(range="1h", metric="requests"), Ctx())
    assert sum(v or 0 for _, v in sent.series[0].points) == 8
    assert stack.recorder.events.count("recorded") == 8


async def test_a_gateway_stopped_right_after_answering_still_records_the_request(
    tmp_path: Path, fake: FakeOpenAICompat
) -> None:
    async with anyio.create_task_group() as tg:
        s = await start(tmp_path, fake, tg)
        rec = s.recorder
        rec.release = anyio.Event()
        assert await anyio.to_thread.run_sync(post_and_leave, s.url, s.key) == b"HTTP/1.1 200 OK"
        assert rec.events == ["before hello there", "after"]

        async def release_soon() -> None:
            await anyio.sleep(0.2)
            assert rec.release is not None
            rec.release.set()

        tg.start_soon(release_soon)
        await s.services.stop_gateway()  # waits for the request's bookkeeping
        assert rec.events == ["before hello there", "after", "recorded"]
        tg.cancel_scope.cancel()
    await s.services.aclose()  # commits the queued row
    (row,) = ledger(tmp_path)
    assert (row["outcome"], row["client"]) == ("ok", "app")
    (line,) = access_lines(tmp_path)
    assert (line["status"], line["client"], line["request_id"]) == (200, "app", "gw-1")


def test_with_redis_the_hooks_settle_before_the_answer(tmp_path: Path) -> None:
    # Another replica may check a budget as soon as the client has its answer: what the hooks
    # settle in Redis must be there first. (Built, never connected: nothing here reaches Redis.)
    config = Config(coordination=Coordination(url="redis://127.0.0.1:1/0"))
    services = build_services(config, store=MemoryStore({}), env={"SIDECAR_HOME": str(tmp_path)})
    assert services.chat.after_reply is False
    alone = build_services(Config(), store=MemoryStore({}), env={"SIDECAR_HOME": str(tmp_path / "alone")})
    assert alone.chat.after_reply is True


async def test_hooks_that_must_settle_first_hold_the_answer(stack: Stack) -> None:
    stack.services.chat.after_reply = False  # what a Redis-coordinated gateway does
    rec = stack.recorder
    rec.release = anyio.Event()
    status: list[int] = []

    async def request() -> None:
        async with httpx2.AsyncClient(timeout=10) as http:
            r = await http.post(
                stack.url + "/v1/chat/completions",
                json=chat("one"),
                headers={"authorization": f"Bearer {stack.key}"},
            )
            status.append(r.status_code)

    async with anyio.create_task_group() as tg:
        tg.start_soon(request)
        await rec.holding.wait()
        for _ in range(20):
            await anyio.sleep(0.005)
        assert status == []  # no answer while the hooks run
        rec.release.set()
    assert status == [200] and rec.events == ["before one", "after", "recorded"]


async def test_a_request_leaves_no_cycle_for_the_garbage_collector(stack: Stack) -> None:
    # The deferred work holds a copy of the context, which holds the list it sits in: emptied
    # once run, or every request would leave a cycle only the collector can free (its passes cost
    # more than the rest of the bookkeeping).
    async with httpx2.AsyncClient(timeout=10) as http:
        headers = {"authorization": f"Bearer {stack.key}"}
        for i in range(3):
            r = await http.post(stack.url + "/v1/chat/completions", json=chat(f"c{i}"), headers=headers)
            assert r.status_code == 200
    lists = [o for o in gc.get_objects() if isinstance(o, AfterReply)]
    assert [len(later) for later in lists if not later.open] == [0] * len(lists)
    assert stack.recorder.events.count("recorded") == 3
