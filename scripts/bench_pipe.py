#!/usr/bin/env python3
"""Benchmarks of the stdio pipe: `info` round trips per second, 64 in flight and one at a time.

The floor is a plain msgspec stdio echo server (`--echo`): it reads stdin in chunks, decodes each
line, encodes an answer carrying the request's id and the sidecar's own `info` result (asked once
before the rounds, so both servers write the same bytes per answer) and writes the answers of one
read in one call.
The host side is the same for both: one thread, raw file descriptors, pre-encoded requests, and
answers counted by their newlines, so what is measured is the server and the pipe. The two servers
run in alternating rounds and each figure is the median of its rounds; the client's own CPU per
round trip is shown too (it is part of every round trip, the floor's included).

`bench_pipe(quick)` returns rows in scripts/bench.py's table shape (measure, sidecar, floor,
ratio); run alone it prints them.

    .venv/bin/python scripts/bench_pipe.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
SIDECAR = str(Path(sys.executable).with_name("llm-sidecar"))
Table = list[tuple[str, str, str, str]]
# 64 KiB, as the sidecar reads: glibc mmaps a larger `os.read` buffer and unmaps it on every read,
# three system calls the floor would pay and the sidecar does not.
_READ = 64 * 1024


def echo_server(result_json: str) -> None:
    """The floor: a minimal msgspec JSON-RPC server on stdin/stdout answering `result_json`."""
    import msgspec

    class Req(msgspec.Struct):
        id: int
        method: str

    class Ans(msgspec.Struct):
        id: int
        result: dict[str, Any]
        jsonrpc: str = "2.0"

    decode = msgspec.json.Decoder(Req).decode
    encode = msgspec.json.Encoder().encode
    result = msgspec.json.decode(result_json)
    rest = b""
    while True:
        chunk = os.read(0, _READ)
        if not chunk:
            return
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        out = [encode(Ans(decode(line).id, result)) + b"\n" for line in lines if line]
        view = memoryview(b"".join(out))
        while view:
            view = view[os.write(1, view) :]


def _lines(n: int) -> list[bytes]:
    return [b'{"jsonrpc":"2.0","id":%d,"method":"info"}\n' % i for i in range(n)]


class _Proc:
    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.win = self.proc.stdin.fileno()
        self.rout = self.proc.stdout.fileno()
        self.ps = psutil.Process(self.proc.pid)
        self.buf = bytearray(1 << 20)  # read into, not allocated per read

    def cpu(self) -> float:
        """Seconds of CPU the server has used: to the nanosecond from Linux's scheduler statistics
        (psutil counts clock ticks, 10 ms each), else from psutil."""
        tasks = Path(f"/proc/{self.proc.pid}/task")
        try:
            return sum(int((task / "schedstat").read_text().split()[0]) for task in tasks.iterdir()) / 1e9
        except (OSError, ValueError, IndexError):
            t = self.ps.cpu_times()
            return float(t.user + t.system)

    def wait_idle(self, window_s: float = 0.05, most_s: float = 10.0) -> None:
        """Wait until the server uses (almost) no CPU between requests (at most `most_s`)."""
        deadline = time.monotonic() + most_s
        while time.monotonic() < deadline:
            before = self.cpu()
            time.sleep(window_s)
            if self.cpu() - before < window_s * 0.05:
                return

    def round_trips(self, lines: list[bytes], window: int) -> float:
        """Round trips/s for `lines` with at most `window` requests in flight."""
        sent = got = 0
        n = len(lines)
        started = time.perf_counter()
        while got < n:
            room = min(n, got + window) - sent
            if room > 0:
                data = memoryview(b"".join(lines[sent : sent + room]))
                while data:
                    data = data[os.write(self.win, data) :]
                sent += room
            size = os.readv(self.rout, (self.buf,))
            if not size:
                raise RuntimeError("the server closed its stdout")
            got += self.buf.count(b"\n", 0, size)
        return n / (time.perf_counter() - started)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


class _Figures:
    """One server's rounds: round trips/s, µs of its CPU and of the client's per round trip."""

    def __init__(self) -> None:
        self.rates: list[float] = []
        self.server_us: list[float] = []
        self.client_us: list[float] = []

    def round(self, proc: _Proc, lines: list[bytes], window: int) -> None:
        cpu, client = proc.cpu(), time.thread_time()
        self.rates.append(proc.round_trips(lines, window))
        self.client_us.append((time.thread_time() - client) / len(lines) * 1e6)
        self.server_us.append((proc.cpu() - cpu) / len(lines) * 1e6)

    def summary(self) -> tuple[float, float, float]:
        return median(self.rates), median(self.server_us), median(self.client_us)


def _interleaved(
    argvs: tuple[list[str], list[str]], env: dict[str, str], n: int, window: int, rounds: int
) -> tuple[_Figures, _Figures]:
    """The sidecar and the floor measured in alternating rounds (A B A B ...), both spawned once and
    warmed first, so a noisy neighbour slows both rather than one."""
    procs = [_Proc(argv, env) for argv in argvs]
    figures = (_Figures(), _Figures())
    try:
        for proc in procs:
            proc.round_trips(_lines(200), window)
            proc.wait_idle()  # the sidecar imports its HTTP stack in a thread after its first answer
        lines = _lines(n)
        for _ in range(rounds):
            for proc, fig in zip(procs, figures, strict=True):
                fig.round(proc, lines, window)
        return figures
    finally:
        for proc in procs:
            proc.close()


def _info_result(env: dict[str, str]) -> str:
    """The sidecar's `info` result, as JSON."""
    import json

    proc = _Proc([SIDECAR], env)
    try:
        os.write(proc.win, _lines(1)[0])
        answer = b""
        while not answer.endswith(b"\n"):
            size = os.readv(proc.rout, (proc.buf,))
            if not size:
                raise RuntimeError("the sidecar closed its stdout")
            answer += bytes(proc.buf[:size])
        return json.dumps(json.loads(answer)["result"])
    finally:
        proc.close()


def bench_pipe(quick: bool = False, env: dict[str, str] | None = None) -> Table:
    import tempfile

    rows: Table = []
    with tempfile.TemporaryDirectory() as home:
        env = dict(env or {})
        env.setdefault("PATH", os.environ.get("PATH", ""))
        env.setdefault("SIDECAR_HOME", home)
        env.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
        echo = [sys.executable, str(Path(__file__).resolve()), "--echo", _info_result(env)]
        rounds = 3 if quick else 5
        for window, n in ((64, 20_000 if quick else 50_000), (1, 2_000 if quick else 5_000)):
            side, floor = _interleaved(([SIDECAR], echo), env, n, window, rounds)
            rate, cpu, client = side.summary()
            floor_rate, floor_cpu, floor_client = floor.summary()
            label = f"{window} in flight" if window > 1 else "sequential"
            rows.append(
                (
                    f"pipe: info round trips/s, {label} (median of {rounds}, load {os.getloadavg()[0]:.1f})",
                    f"{rate:,.0f}/s ({cpu:.1f} µs CPU; client {client:.1f} µs)",
                    f"{floor_rate:,.0f}/s ({floor_cpu:.1f} µs; client {floor_client:.1f} µs) msgspec echo",
                    f"{rate / floor_rate:.2f}x",
                )
            )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--echo", metavar="RESULT_JSON", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo is not None:
        echo_server(args.echo)
        return 0
    sys.path.insert(0, str(ROOT))
    from scripts.bench_common import print_table  # only when run alone

    print_table(bench_pipe(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
