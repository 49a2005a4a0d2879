"""A host that stops reading stdout: 20 endless streams (and 4 more as MCP tool calls reporting
progress) must not grow the sidecar's memory without bound. The stdout writer's queue is bounded
(stdio.HIGH_WATER), so the streams wait instead of piling up events; once the host reads again,
every delta arrives, in order, none missing, and the process still answers (cancellation included)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import tempfile
import time
from typing import Any

import psutil

from tests.fakes.endless import endless_openai_stream
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.harness import SIDECAR

STREAMS = 20
MCP_STREAMS = 4
STALL_S = 8.0  # how long the host does not read
RSS_CEILING_MB = 100  # idle ~35 MB, ~50 MB measured here; without back-pressure it passed 180 MB in 8 s


def request(rid: Any, method: str, params: dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode() + b"\n"


class LineReader:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""

    def lines(self, timeout: float) -> list[bytes]:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return []
        chunk = os.read(self.fd, 1 << 20)
        if not chunk:
            raise EOFError
        self.buf += chunk
        *whole, self.buf = self.buf.split(b"\n")
        return whole


def test_a_host_that_stops_reading_holds_memory_bounded_then_gets_everything_in_order(
    openai: FakeOpenAICompat,
) -> None:
    for _ in range(STREAMS + MCP_STREAMS):
        openai.enqueue(endless_openai_stream(batch=200))
    home = tempfile.mkdtemp(prefix="sidecar-home-")
    env = {
        "PATH": os.environ["PATH"],
        "SIDECAR_HOME": home,
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        "OPENAI_BASE_URL": openai.api_base,
        "OPENAI_API_KEY": "sk-test-valid",
    }
    proc = subprocess.Popen(
        [SIDECAR], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    assert proc.stdin is not None and proc.stdout is not None
    reader = LineReader(proc.stdout.fileno())
    try:
        init = {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        }
        proc.stdin.write(request("init", "initialize", init))
        proc.stdin.flush()
        deadline = time.monotonic() + 30
        while not any(json.loads(line).get("id") == "init" for line in reader.lines(1.0)):
            assert time.monotonic() < deadline, "no answer to initialize"
        proc.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        for n in range(STREAMS):
            params = {"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": f"s{n}"}]}
            proc.stdin.write(request(n, "stream", params))
        for n in range(MCP_STREAMS):
            arguments = {"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": f"m{n}"}]}
            call = {"name": "stream", "arguments": arguments, "_meta": {"progressToken": f"p{n}"}}
            proc.stdin.write(request(f"m{n}", "tools/call", call))
        proc.stdin.flush()
        # the MCP SDK loads on the first MCP call, which a slow machine stretches to many seconds
        assert openai.wait_for_requests(STREAMS + MCP_STREAMS, timeout=30)

        # The host reads nothing for STALL_S while the streams pour in.
        rss = psutil.Process(proc.pid)
        peak = 0.0
        deadline = time.monotonic() + STALL_S
        while time.monotonic() < deadline:
            assert proc.poll() is None
            peak = max(peak, rss.memory_info().rss / 2**20)
            time.sleep(0.2)
        assert peak < RSS_CEILING_MB, f"RSS reached {peak:.0f} MB while the host was not reading"

        # Reading resumes: every stream's deltas continue 0, 1, 2, ... with nothing missing.
        expected: dict[Any, int] = {
            **dict.fromkeys(range(STREAMS), 0),
            **{f"p{n}": 0 for n in range(MCP_STREAMS)},
        }

        def check(msg: dict[str, Any]) -> None:
            if msg["method"] == "notifications/progress":  # MCP: the delta is the progress message
                token, text = msg["params"]["progressToken"], msg["params"]["message"]
            else:
                assert msg["method"] == "stream/event", msg
                event = msg["params"]["event"]
                if event["type"] != "text_delta" or not event["text"]:
                    return
                token, text = msg["params"]["request_id"], event["text"]
            assert text == f"{expected[token]} ", (token, text, expected[token])
            expected[token] += 1

        # MCP progress goes through the SDK's tasks and comes slower than the host's own events, so
        # it is asked for less; what matters is that it arrives in order with nothing missing.
        def enough() -> bool:
            return all(seen >= (2000 if isinstance(token, int) else 10) for token, seen in expected.items())

        deadline = time.monotonic() + 60
        while not enough() and time.monotonic() < deadline:
            for line in reader.lines(1.0):
                check(json.loads(line))
        assert enough(), expected

        # Still serving: cancel every stream; each host request is answered -32800 (a cancelled MCP
        # call gets no response, as MCP says).
        for n in range(STREAMS):
            note = {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": n}}
            proc.stdin.write(json.dumps(note).encode() + b"\n")
        for n in range(MCP_STREAMS):
            note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": f"m{n}"}}
            proc.stdin.write(json.dumps(note).encode() + b"\n")
        proc.stdin.flush()
        answered: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + 40
        while len(answered) < STREAMS and time.monotonic() < deadline:
            for line in reader.lines(1.0):
                msg = json.loads(line)
                if "id" in msg:
                    answered[msg["id"]] = msg
                else:
                    check(msg)
        assert sorted(answered) == list(range(STREAMS))
        assert {a["error"]["code"] for a in answered.values()} == {-32800}
        proc.stdin.close()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
