#!/usr/bin/env python3
"""Benchmarks of the HTTP gateway against the floor, in one run: a spawned `llm-sidecar` starts its
gateway over stdio (`gateway_start`, a client key from `client_key_create`), and the same requests
go once through the gateway and once straight to the fake upstream with httpx2.

- added latency p50: sequential non-streamed chat completions, gateway minus direct; beside it,
  measured request by request with it, three costs that are not the gateway's code: one more process
  on the path (`scripts/byte_relay.py` in front of the fake, copying bytes and parsing nothing: the
  hop any proxy adds), the same stack doing nothing else (`scripts/bare_gateway.py`: uvicorn and
  aiohttp forwarding the request, its answer whole as the gateway asks for it, or streamed: what
  the sidecar's own work costs is the gateway's latency over the first) and the same answer
  streamed (what every call costs with `[gateway] upstream_streaming = "always"`, which
  `BENCH_GATEWAY_CONFIG` can set: the config.toml of the benched sidecar);
- the same, each request after a pause longer than what requests read from storage is kept for
  (client keys, budgets), the gateway and the direct call taking turns at going first;
- the sidecar's CPU per such request (user + system, every thread; psutil around that run);
- throughput at 32 concurrent requests (requests/s), gateway and direct;
- stream relay: a pre-rendered OpenAI stream of many deltas, chunks/s received by the client;
  the same stream relayed as Responses API events (`/v1/responses`), and the latency row through
  that route too;
- RSS of the sidecar process with the gateway running, after the load; its CPU while it serves
  nothing, before any request (an idle daemon should not wake the machine);
- the same three measures through LiteLLM's proxy (`scripts/bench_litellm.py`: a throwaway venv
  under the cache directory, the proxy on 127.0.0.1 in front of the same fake), and the gateway's
  throughput over LiteLLM's. Where LiteLLM cannot be installed or started its rows say why and are
  not run; `--quick` uses it only when its venv is already installed (`BENCH_LITELLM=0`: never).

`bench_gateway(quick)` returns rows in scripts/bench.py's table shape; run alone it prints them.

    .venv/bin/python scripts/bench_gateway.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import anyio
import httpx2
import msgspec
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts import bench_litellm  # noqa: E402
from scripts.bench_common import BENCH_REQUESTS_PER_MINUTE, enqueue_stream, print_table  # noqa: E402
from sidecar.services.budget_book import BUDGETS_TTL_S  # noqa: E402
from sidecar.services.client_keys import TABLE_TTL_S  # noqa: E402
from tests.fakes.openai_compat import FakeOpenAICompat  # noqa: E402

SIDECAR = str(Path(sys.executable).with_name("llm-sidecar"))
KEY = "sk-test-valid"
Table = list[tuple[str, str, str, str]]
BODY = {"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}
LITELLM_PIECES = 5_000
DIRECT_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}
STREAMED_BODY = {**DIRECT_BODY, "stream": True, "stream_options": {"include_usage": True}}
RESPONSES_BODY = {"model": "openai:gpt-4o-mini", "input": "hello there", "store": False}
# Longer than what a request reads from storage is kept for (client keys, budgets): a request after
# such a pause would wait for the database if it were not read again in the background.
PAUSE_S = max(TABLE_TTL_S, BUDGETS_TTL_S) + 0.5
IDLE_S = 5.0


class Sidecar:
    """A spawned sidecar spoken to over stdio, just enough to start its gateway."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [SIDECAR], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
        )
        self._answers: dict[int, Any] = {}
        self.per_request: list[float] = []  # CPU seconds per request, from `latencies`
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            msg = msgspec.json.decode(line)
            if "id" in msg and "method" not in msg:
                with self._cond:
                    self._answers[msg["id"]] = msg
                    self._cond.notify_all()

    def call(self, rid: int, method: str, params: dict[str, Any]) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(
            msgspec.json.encode({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        )
        self.proc.stdin.write(b"\n")
        self.proc.stdin.flush()
        with self._cond:
            if not self._cond.wait_for(lambda: rid in self._answers, 30):
                raise TimeoutError(method)
            msg = self._answers.pop(rid)
        if "error" in msg:
            raise RuntimeError(msg["error"])
        return msg["result"]

    def cpu_seconds(self) -> float:
        """User and system CPU of the sidecar process so far (every thread)."""
        times = psutil.Process(self.proc.pid).cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


class Helper:
    """A script of `scripts/` in a process of its own, listening on the port it prints first."""

    def __init__(self, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / script), *args], stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def byte_relay(api_base: str) -> tuple[Helper, str]:
    """`scripts/byte_relay.py` in front of `api_base`, and the API base through it."""
    upstream = urlsplit(api_base)
    relay = Helper("byte_relay.py", str(upstream.hostname), str(upstream.port))
    return relay, relay.url + upstream.path


class Target(NamedTuple):
    """Where one sequence of latencies goes, and with what."""

    url: str
    headers: dict[str, str]
    body: dict[str, Any]


async def latencies(
    targets: Sequence[Target], runs: int, cpu: Sidecar | None = None, pause_s: float = 0.0
) -> list[list[float]]:
    """Milliseconds per request to each target, after a warm-up: one request to each target in turn,
    each target on a kept-alive connection of its own, so all of them see the VM in the same state
    (its speed changes within seconds). With `cpu`, its process's CPU seconds per request over the
    same runs are appended to `cpu.per_request` (the others cost it nothing). With `pause_s`, each
    turn comes after that long idle, and the targets take turns at going first (the first request
    after a pause meets a VM that has slowed down)."""
    out: list[list[float]] = [[] for _ in targets]
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(httpx2.AsyncClient(timeout=30)) for _ in targets]
        for i in range(runs + 5):
            if i == 5 and cpu is not None:
                cpu_before = cpu.cpu_seconds()
            turn = list(zip(clients, targets, out, strict=True))
            if pause_s and i >= 5:
                await anyio.sleep(pause_s)
                turn = turn[i % len(turn) :] + turn[: i % len(turn)]
            for client, target, times in turn:
                t = time.perf_counter()
                r = await client.post(target.url, json=target.body, headers=target.headers)
                elapsed = (time.perf_counter() - t) * 1000
                assert r.status_code == 200, r.text
                if i >= 5:  # warm-up
                    times.append(elapsed)
    if cpu is not None:
        cpu.per_request.append((cpu.cpu_seconds() - cpu_before) / runs)
    return out


async def throughput(
    url: str, headers: dict[str, str], body: dict[str, Any], total: int, workers: int
) -> float:
    limits = httpx2.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx2.AsyncClient(timeout=60, limits=limits) as client:
        left = total

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                r = await client.post(url, json=body, headers=headers)
                assert r.status_code == 200, r.text

        await client.post(url, json=body, headers=headers)
        t = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(worker)
        return total / (time.perf_counter() - t)


async def relay_rate(url: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, float]:
    async with httpx2.AsyncClient(timeout=120) as client:
        t = time.perf_counter()
        count = 0
        async with client.stream("POST", url, json={**body, "stream": True}, headers=headers) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    count += 1
        return count, count / (time.perf_counter() - t)


def stream_body(pieces: int) -> bytes:
    """A pre-rendered OpenAI stream of `pieces` deltas that differ from one another: LiteLLM ends a
    stream that repeats one chunk 100 times (its loop guard), so bench_common's body of identical
    deltas would measure 100 chunks through it."""
    head = (
        b'data: {"id":"chatcmpl-b","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
        b'"choices":[{"index":0,"delta":{"content":"tok%d "},"logprobs":null,"finish_reason":null}],'
        b'"usage":null}\n\n'
    )
    tail = (
        b'data: {"id":"chatcmpl-b","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
        b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}\n\n'
        b'data: {"id":"chatcmpl-b","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
        b'"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":%d,"total_tokens":9}}\n\n'
        b"data: [DONE]\n\n"
    )
    return b"".join(head % i for i in range(pieces)) + tail % pieces


def bench_gateway(quick: bool = False) -> Table:
    runs, total, pieces = (50, 300, 5_000) if quick else (500, 3_000, 50_000)
    paused_runs = 4 if quick else 16
    config = os.environ.get("BENCH_GATEWAY_CONFIG", "")
    with (
        tempfile.TemporaryDirectory() as home,
        FakeOpenAICompat("openai", requests_per_minute=BENCH_REQUESTS_PER_MINUTE) as fake,
    ):
        env = {
            "PATH": os.environ.get("PATH", ""),
            "SIDECAR_HOME": home,
            "OPENAI_BASE_URL": fake.api_base,
            "OPENAI_API_KEY": KEY,
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
            "SIDECAR_LOG_LEVEL": "warning",
        }
        if config:
            Path(home, "config.toml").write_text(config)
        litellm, litellm_note = _start_litellm(fake.api_base, quick)
        sidecar = Sidecar(env)
        relay, relayed_base = byte_relay(fake.api_base)
        bare_streamed = Helper("bare_gateway.py", fake.api_base, "streamed")
        bare_whole = Helper("bare_gateway.py", fake.api_base, "whole")
        try:
            started = sidecar.call(2, "gateway_start", {"port": 0})
            # What a gateway that serves nobody costs the machine (before anything is kept warm),
            # once the start's own work (~0.2 s of CPU in the first second) is done.
            time.sleep(3.0)
            idle_before = sidecar.cpu_seconds()
            time.sleep(IDLE_S)
            idle_cpu = (sidecar.cpu_seconds() - idle_before) / IDLE_S
            key = sidecar.call(1, "client_key_create", {"name": "bench"})["key"]
            gw = started["url"] + "/v1/chat/completions"
            direct = fake.api_base + "/chat/completions"
            gw_headers = {"authorization": f"Bearer {key}"}
            direct_headers = {"authorization": f"Bearer {KEY}"}
            lite = litellm.url + "/v1/chat/completions" if litellm else ""
            lite_headers = {"authorization": f"Bearer {litellm.key}"} if litellm else {}
            # Each measure runs gateway, direct, LiteLLM back to back; latencies request by request.
            responses = started["url"] + "/v1/responses"
            via, floor, streamed, relayed, bare, bare_w = anyio.run(
                latencies,
                [
                    Target(gw, gw_headers, BODY),
                    Target(direct, direct_headers, DIRECT_BODY),
                    Target(direct, direct_headers, STREAMED_BODY),
                    Target(relayed_base + "/chat/completions", direct_headers, DIRECT_BODY),
                    Target(bare_streamed.url + "/v1/chat/completions", direct_headers, BODY),
                    Target(bare_whole.url + "/v1/chat/completions", direct_headers, BODY),
                ],
                runs,
                sidecar,
            )
            # Apart from the run above, which counts the sidecar's CPU per chat request.
            via_responses, floor_responses = anyio.run(
                latencies,
                [Target(responses, gw_headers, RESPONSES_BODY), Target(direct, direct_headers, DIRECT_BODY)],
                runs,
            )
            paused_via, paused_floor = anyio.run(
                latencies,
                [Target(gw, gw_headers, BODY), Target(direct, direct_headers, DIRECT_BODY)],
                paused_runs,
                None,
                PAUSE_S,
            )
            lite_lat = (
                anyio.run(latencies, [Target(lite, lite_headers, DIRECT_BODY)], runs)[0] if litellm else []
            )
            gw_rps = anyio.run(throughput, gw, gw_headers, BODY, total, 32)
            floor_rps = anyio.run(throughput, direct, direct_headers, DIRECT_BODY, total, 32)
            # LiteLLM answers a few tens of requests/s here: a fifth of the requests measure its rate.
            lite_total = max(total // 5, 64)
            lite_rps = (
                anyio.run(throughput, lite, lite_headers, DIRECT_BODY, lite_total, 32) if litellm else 0.0
            )
            enqueue_stream(fake, stream_body(pieces))
            gw_chunks, gw_rate = anyio.run(relay_rate, gw, gw_headers, BODY)
            enqueue_stream(fake, stream_body(pieces))
            _, floor_rate = anyio.run(relay_rate, direct, direct_headers, DIRECT_BODY)
            enqueue_stream(fake, stream_body(pieces))
            responses_events, responses_rate = anyio.run(relay_rate, responses, gw_headers, RESPONSES_BODY)
            lite_rate = gw_small = 0.0
            lite_chunks = 0
            if litellm:
                # LiteLLM relays a few thousand chunks/s: both get the same shorter stream here.
                enqueue_stream(fake, stream_body(200))  # its first stream is slow: warm it up
                anyio.run(relay_rate, lite, lite_headers, DIRECT_BODY)
                enqueue_stream(fake, stream_body(LITELLM_PIECES))
                lite_chunks, lite_rate = anyio.run(relay_rate, lite, lite_headers, DIRECT_BODY)
                enqueue_stream(fake, stream_body(LITELLM_PIECES))
                _, gw_small = anyio.run(relay_rate, gw, gw_headers, BODY)
            rss = sidecar.rss()
            lite_rss = litellm.rss() if litellm else 0
        finally:
            sidecar.close()
            for helper in (relay, bare_streamed, bare_whole):
                helper.close()
            if litellm:
                litellm.close()
    p50, f50 = statistics.median(via), statistics.median(floor)
    s50, r50 = statistics.median(streamed), statistics.median(relayed)
    b50, w50 = statistics.median(bare), statistics.median(bare_w)
    rows: Table = [
        (
            "gateway chat latency p50",
            f"{p50:.2f} ms",
            f"{f50:.2f} ms (httpx2 direct)",
            f"+{p50 - f50:.2f} ms",
        ),
        (
            "  one more process: a byte relay in between",
            f"{r50:.2f} ms",
            f"{f50:.2f} ms (httpx2 direct)",
            f"+{r50 - f50:.2f} ms",
        ),
        (
            "  the same stack doing nothing else, whole",
            f"{w50:.2f} ms",
            f"{f50:.2f} ms (httpx2 direct)",
            f"+{w50 - f50:.2f} ms",
        ),
        (
            "  the same stack doing nothing else, streamed",
            f"{b50:.2f} ms",
            f"{f50:.2f} ms (httpx2 direct)",
            f"+{b50 - f50:.2f} ms",
        ),
        (
            "  the same answer streamed, direct",
            f"{s50:.2f} ms",
            f"{f50:.2f} ms (httpx2 direct)",
            f"+{s50 - f50:.2f} ms",
        ),
        (
            "  the same through the Responses API (/v1/responses)",
            f"{statistics.median(via_responses):.2f} ms",
            f"{statistics.median(floor_responses):.2f} ms (httpx2 direct)",
            f"+{statistics.median(via_responses) - statistics.median(floor_responses):.2f} ms",
        ),
        (
            f"  after {PAUSE_S:.1f} s idle ({paused_runs} requests)",
            f"{statistics.median(paused_via):.2f} ms",
            f"{statistics.median(paused_floor):.2f} ms (httpx2 direct)",
            f"+{statistics.median(paused_via) - statistics.median(paused_floor):.2f} ms",
        ),
        (
            "gateway CPU per chat request (sidecar)",
            f"{sidecar.per_request[0] * 1e6:,.0f} µs",
            "-",
            "-",
        ),
        (
            "gateway throughput, 32 concurrent",
            f"{gw_rps:,.0f} req/s",
            f"{floor_rps:,.0f} req/s (httpx2 direct)",
            f"{gw_rps / floor_rps:.2f}x",
        ),
        (
            f"gateway stream relay ({gw_chunks:,} chunks)",
            f"{gw_rate:,.0f} chunks/s",
            f"{floor_rate:,.0f} chunks/s (httpx2 direct)",
            f"{gw_rate / floor_rate:.2f}x",
        ),
        (
            f"  the same stream as Responses API events ({responses_events:,})",
            f"{responses_rate:,.0f} events/s",
            f"{floor_rate:,.0f} chunks/s (httpx2 direct)",
            f"{responses_rate / floor_rate:.2f}x",
        ),
        ("RSS with the gateway running, after load", f"{rss / 2**20:.1f} MB", "-", "-"),
        (f"CPU of an idle gateway ({IDLE_S:g} s, no traffic yet)", f"{idle_cpu * 1e3:.2f} ms/s", "-", "-"),
    ]
    if not litellm:
        return [*rows, ("LiteLLM proxy comparison", "not run", litellm_note, "-")]
    l50 = statistics.median(lite_lat)
    return [
        *rows,
        (
            "LiteLLM proxy chat latency p50",
            f"{l50:.2f} ms",
            f"{f50:.2f} ms (httpx2 direct)",
            f"+{l50 - f50:.2f} ms (gateway +{p50 - f50:.2f})",
        ),
        (
            "throughput at 32: gateway over LiteLLM",
            f"{gw_rps:,.0f} req/s",
            f"{lite_rps:,.0f} req/s (LiteLLM proxy)",
            f"{gw_rps / lite_rps:.2f}x",
        ),
        (
            f"stream relay ({LITELLM_PIECES:,} deltas): gateway over LiteLLM",
            f"{gw_small:,.0f} chunks/s",
            f"{lite_rate:,.0f} chunks/s ({lite_chunks:,} chunks, LiteLLM proxy)",
            f"{gw_small / lite_rate:.2f}x" if lite_rate else "-",
        ),
        ("RSS of LiteLLM's proxy, after load", f"{lite_rss / 2**20:.1f} MB", litellm_note, "-"),
    ]


def _start_litellm(api_base: str, quick: bool) -> tuple[bench_litellm.Proxy | None, str]:
    """LiteLLM's proxy in front of `api_base`, ready; or None and why it is not."""
    if os.environ.get("BENCH_LITELLM") == "0":
        return None, "BENCH_LITELLM=0"
    if quick and not (bench_litellm.cache_dir() / ".ready").exists():
        return None, "--quick does not install litellm"
    try:
        note = bench_litellm.install()
        proxy = bench_litellm.Proxy(api_base, KEY)
    except bench_litellm.Unavailable as exc:
        return None, f"litellm unavailable: {exc}"
    try:
        proxy.wait_ready()
    except bench_litellm.Unavailable as exc:
        proxy.close()
        return None, f"litellm unavailable: {exc}"
    return proxy, note


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke check)")
    args = parser.parse_args()
    print_table(bench_gateway(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
