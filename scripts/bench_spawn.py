#!/usr/bin/env python3
"""Benchmark of start-up: spawn → the first answer to `info`, and spawn → the first answer that
needs the event loop, against two floors in the same run.

A host sends `info` at once, and the sidecar answers an `info` already waiting on stdin before it
imports its event loop (`sidecar/rpc/early.py`); the first row is that. Once the answer is in, the
bench sends `list_models` (the dated catalog: no network, no keychain), which only the event loop
answers: the second row is spawn → that answer, so the first row cannot pass for the whole sidecar
being ready.

- `python -c pass`: the interpreter alone (with the venv's `site`).
- msgspec alone (`MSGSPEC_SERVER`): a server that imports msgspec (which the sidecar decodes and
  encodes with, and reads its configuration with) and answers each request with blocking reads,
  no event loop: the floor of the early answer.
- the stack alone (`STACK_SERVER`): a stdio server that imports only what the sidecar cannot answer
  without (msgspec, anyio on asyncio), waits for stdin from the event loop as the sidecar does, and
  answers each request. What the sidecar takes beyond it is the sidecar's own.

Every round spawns each command once, in turn, so all see the same machine load; the medians are
reported. `bench_spawn(env, runs)` returns rows in scripts/bench.py's table shape (measure,
sidecar, floor, ratio); run alone it prints them, and `--sidecar CMD` (repeatable) measures other
builds in the same rounds (another checkout's `.venv/bin/llm-sidecar`, say, for a before/after).

    .venv/bin/python scripts/bench_spawn.py [--runs N] [--sidecar CMD ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIDECAR = str(Path(sys.executable).with_name("llm-sidecar"))
INFO = b'{"jsonrpc":"2.0","id":1,"method":"info","params":{}}\n'
# Answered by the event loop only: the dated catalog, no network, no keychain.
LOOP_REQUEST = b'{"jsonrpc":"2.0","id":2,"method":"list_models","params":{}}\n'
Table = list[tuple[str, str, str, str]]


# The stack alone: msgspec and anyio's asyncio loop, stdin awaited from the loop. Run with `-c`,
# so that it imports nothing else (this module imports subprocess, statistics, tempfile...).
STACK_SERVER = """
import asyncio, os
import anyio, msgspec

async def serve():
    loop = asyncio.get_running_loop()
    encode = msgspec.json.Encoder().encode
    rest = b""
    while True:
        readable = anyio.Event()
        loop.add_reader(0, readable.set)
        await readable.wait()
        loop.remove_reader(0)
        chunk = os.read(0, 64 * 1024)
        if not chunk:
            return
        *lines, rest = (rest + chunk).split(b"\\n")
        for line in lines:
            answer = {"jsonrpc": "2.0", "id": msgspec.json.decode(line)["id"], "result": {"version": "stack"}}
            os.write(1, encode(answer) + b"\\n")

anyio.run(serve)
"""


# msgspec alone, no event loop: blocking reads, one answer per request line.
MSGSPEC_SERVER = """
import os, msgspec

encode = msgspec.json.Encoder().encode
rest = b""
while chunk := os.read(0, 64 * 1024):
    *lines, rest = (rest + chunk).split(b"\\n")
    for line in lines:
        answer = {"jsonrpc": "2.0", "id": msgspec.json.decode(line)["id"], "result": {"version": "msgspec"}}
        os.write(1, encode(answer) + b"\\n")
"""


def first_answers_ms(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Spawn `argv`, send `info` at once (as a host does) and time its answer; then send a
    request only the event loop answers, and time that answer (both from the spawn)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    assert proc.stdin is not None and proc.stdout is not None
    lines = []
    times = []
    for request in (INFO, LOOP_REQUEST):
        proc.stdin.write(request)
        proc.stdin.flush()
        lines.append(proc.stdout.readline())
        times.append((time.perf_counter() - started) * 1000)
    proc.stdin.close()
    proc.wait(10)
    for rid, line in enumerate(lines, 1):
        if b'"result"' not in line or b'"id":%d' % rid not in line.replace(b" ", b""):
            raise RuntimeError(f"{argv[0]} answered {line[:200]!r}")
    return times[0], times[1]


def pass_ms(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, env=env)
    return (time.perf_counter() - started) * 1000


def built_binary() -> Path | None:
    """The newest build of scripts/build-binary in dist/, if any."""
    found = [p / p.name for p in (ROOT / "dist").glob("llm-sidecar-*") if (p / p.name).is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def measure(
    env: dict[str, str], runs: int, sidecars: list[str], binary: Path | None
) -> dict[str, list[float]]:
    """Interleaved rounds: each command once per round, the floors included, each round starting
    one command further on (the first spawn of a round runs measurably slower on this VM, so a
    fixed order would favour whichever command comes later, a before/after pair included)."""
    stack = [sys.executable, "-c", STACK_SERVER]
    times: dict[str, list[float]] = {}

    def spawn(name: str, argv: list[str]) -> Callable[[], None]:
        def run() -> None:
            first, loop = first_answers_ms(argv, env)
            times.setdefault(name, []).append(first)
            times.setdefault(f"{name} loop", []).append(loop)

        return run

    def bare() -> None:
        times.setdefault("pass", []).append(pass_ms(env))

    commands = [spawn(command, [command]) for command in sidecars]
    commands += [bare, spawn("msgspec", [sys.executable, "-c", MSGSPEC_SERVER]), spawn("stack", stack)]
    if binary is not None:
        commands.append(spawn("binary", [str(binary)]))
    for round_ in range(runs):
        start = round_ % len(commands)
        for command in commands[start:] + commands[:start]:
            command()
    return times


def rows_for(times: dict[str, list[float]], sidecars: list[str]) -> Table:
    med = {name: statistics.median(values) for name, values in times.items()}
    floor, bare, stack, stack_loop = med["pass"], med["msgspec"], med["stack"], med["stack loop"]
    rows: Table = []
    for command in sidecars:
        label = "" if command == SIDECAR else f" [{command}]"
        s, loop = med[command], med[f"{command} loop"]
        rows.append(
            (
                f"spawn → first answer, info (median){label}",
                f"{s:.1f} ms",
                f"{floor:.1f} ms (python -c pass); {bare:.1f} ms (msgspec stdio server, no event loop);"
                f" {stack:.1f} ms (msgspec + anyio stdio server)",
                f"{s / floor:.2f}x, +{s - floor:.1f} ms; {s - bare:+.1f} ms against msgspec alone;"
                f" {s - stack:+.1f} ms against the stack alone",
            )
        )
        rows.append(
            (
                f"spawn → first event-loop answer, list_models after info (median){label}",
                f"{loop:.1f} ms",
                f"{stack_loop:.1f} ms (the stack alone's second answer)",
                f"{loop / stack_loop:.2f}x, {loop - stack_loop:+.1f} ms",
            )
        )
    if "binary" in med:
        frozen, installed = med["binary"], med[sidecars[0]]
        rows.append(
            (
                "spawn → first answer, binary (median)",
                f"{frozen:.1f} ms",
                f"{installed:.1f} ms (installed package)",
                f"{frozen / installed:.2f}x, +{frozen - installed:.1f} ms",
            )
        )
    else:
        rows.append(("spawn → first answer, binary", "not built", "run scripts/build-binary", "-"))
    return rows


def bench_spawn(env: dict[str, str], runs: int, sidecars: list[str] | None = None) -> Table:
    sidecars = sidecars or [SIDECAR]
    return rows_for(measure(env, runs, sidecars, built_binary()), sidecars)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10, help="rounds (default 10)")
    parser.add_argument(
        "--sidecar", action="append", default=[], help="another command to measure in the same rounds"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from scripts.bench_common import print_table

    with tempfile.TemporaryDirectory() as home:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "SIDECAR_HOME": home,
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        }
        print_table(bench_spawn(env, args.runs, [SIDECAR, *args.sidecar]))
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
