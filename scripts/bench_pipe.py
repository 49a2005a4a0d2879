#!/usr/bin/env python3
"""Benchmarks of the stdio pipe: `info` round trips per second, 64 in flight and one at a time.

The floor is a plain msgspec stdio echo server (`--echo`): it reads stdin in chunks, decodes each
line, encodes an answer carrying the request's id and writes the answers of one read in one call.
The host side is the same for both: one thread, raw file descriptors, pre-encoded requests, and
answers counted by their newlines, so what is measured is the server and the pipe.

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

import psutil

ROOT = Path(__file__).resolve().parent.parent
SIDECAR = str(Path(sys.executable).with_name("llm-sidecar"))
Table = list[tuple[str, str, str, str]]


def echo_server() -> None:
    """The floor: a minimal msgspec JSON-RPC server on stdin/stdout."""
    import msgspec

    class Req(msgspec.Struct):
        id: int
        method: str

    class Ans(msgspec.Struct):
        id: int
        result: dict[str, str]
        jsonrpc: str = "2.0"

    decode = msgspec.json.Decoder(Req).decode
    encode = msgspec.json.Encoder().encode
    result = {"name": "echo"}
    rest = b""
    while True:
        chunk = os.read(0, 256 * 1024)
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

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

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
            chunk = os.read(self.rout, 1 << 20)
            if not chunk:
                raise RuntimeError("the server closed its stdout")
            got += chunk.count(b"\n")
        return n / (time.perf_counter() - started)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


def _measure(argv: list[str], env: dict[str, str], n: int, window: int) -> tuple[float, float]:
    """(round trips/s, µs of server CPU per round trip), best of three rounds after a warm-up."""
    proc = _Proc(argv, env)
    try:
        proc.round_trips(_lines(200), window)
        best, cpu_us = 0.0, 0.0
        for _ in range(3):
            before = proc.cpu()
            rate = proc.round_trips(_lines(n), window)
            if rate > best:
                best, cpu_us = rate, (proc.cpu() - before) / n * 1e6
        return best, cpu_us
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
        echo = [sys.executable, str(Path(__file__).resolve()), "--echo"]
        for window, n in ((64, 20_000 if quick else 100_000), (1, 2_000 if quick else 10_000)):
            rate, cpu = _measure([SIDECAR], env, n, window)
            floor, floor_cpu = _measure(echo, env, n, window)
            label = f"{window} in flight" if window > 1 else "sequential"
            rows.append(
                (
                    f"pipe: info round trips/s, {label}",
                    f"{rate:,.0f}/s ({cpu:.1f} µs CPU)",
                    f"{floor:,.0f}/s ({floor_cpu:.1f} µs) msgspec echo",
                    f"{rate / floor:.2f}x",
                )
            )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--echo", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo:
        echo_server()
        return 0
    sys.path.insert(0, str(ROOT))
    from scripts.bench_common import print_table  # only when run alone

    print_table(bench_pipe(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
