#!/usr/bin/env python3
"""Benchmarks of the usage ledger: how many rows per second the writer commits, and what the chat
hooks cost a request on its path (the `after` hook only queues the row; the commit happens on the
writer thread, off the stream's hot path).

`bench_ledger(quick)` returns rows in scripts/bench.py's table shape (measure, sidecar, floor,
ratio), to be folded into it; run alone it prints them.

    .venv/bin/python scripts/bench_ledger.py [--quick]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sidecar.app import build_services  # noqa: E402
from sidecar.config import Config  # noqa: E402
from sidecar.core.models import ModelRef  # noqa: E402
from sidecar.infra.db import Database  # noqa: E402
from sidecar.infra.keystore import MemoryStore  # noqa: E402
from sidecar.infra.ledger import Ledger, Row  # noqa: E402
from sidecar.services.context import current_client  # noqa: E402
from sidecar.services.outcome import Outcome  # noqa: E402
from sidecar.services.usage import UsageService  # noqa: E402
from sidecar.wire.base import Usage  # noqa: E402
from sidecar.wire.chat import CompleteParams, Message  # noqa: E402
from sidecar.wire.gateway import ClientKeyCreateParams  # noqa: E402
from sidecar.wire.usage import SetBudgetParams  # noqa: E402

_NOTHING = Outcome(
    method="stream", provider="openai", model="gpt-4o-mini", status="cancelled", latency_ms=1.0
)

Table = list[tuple[str, str, str, str]]
USAGE = Usage(
    input_tokens=1200, output_tokens=300, cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0
)


def _row(i: int) -> Row:
    return Row(
        ts=1_800_000_000.0 + i, method="stream", provider="openai", model="gpt-4o-mini", outcome="ok",
        latency_ms=123.4, input_tokens=1200, output_tokens=300, cache_read_tokens=0, cache_write_tokens=0,
        reasoning_tokens=0, cost_usd=0.00036, pricing_date="2025-11-24", run_id="run-1", tag="bench",
    )  # fmt: skip


def commit_rate(n: int) -> tuple[float, float]:
    """Rows/s committed by the ledger's writer for `n` rows queued at once, and the floor: the same
    rows inserted with bare sqlite3 (WAL, synchronous=NORMAL) in one transaction."""
    with tempfile.TemporaryDirectory() as home:
        ledger = Ledger(Database(Path(home) / "sidecar.db"))
        ledger.flush()  # open and migrate outside the measurement
        rows = [_row(i) for i in range(n)]
        started = time.perf_counter()
        for row in rows:
            ledger.record(row)
        ledger.flush(timeout=120)
        elapsed = time.perf_counter() - started
        ledger.close()
    with tempfile.TemporaryDirectory() as home:
        conn = sqlite3.connect(Path(home) / "floor.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(
            "CREATE TABLE t (uid TEXT, ts REAL, provider TEXT, model TEXT, i INTEGER, o INTEGER, c REAL)"
        )
        values = [
            (r.uid, r.ts, r.provider, r.model, r.input_tokens, r.output_tokens, r.cost_usd) for r in rows
        ]
        started = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)", values)
        conn.execute("COMMIT")
        floor = time.perf_counter() - started
        conn.close()
    return n / elapsed, n / floor


def single_row_commit_ms(n: int) -> float:
    """Median time from `record` to committed for a row queued alone (an idle sidecar)."""
    with tempfile.TemporaryDirectory() as home:
        ledger = Ledger(Database(Path(home) / "sidecar.db"))
        ledger.flush()
        times = []
        for i in range(n):
            started = time.perf_counter()
            ledger.record(_row(i))
            ledger.flush()
            times.append((time.perf_counter() - started) * 1000)
        ledger.close()
    return sorted(times)[len(times) // 2]


def cpu_per_request_us(n: int, pace_s: float = 0.0005) -> tuple[float, float, int]:
    """The ledger's CPU per row when rows arrive one every `pace_s`, as requests finish under load:
    (µs in `record` on the caller's thread, µs on the writer thread, transactions committed). Each
    thread's own CPU clock is read, so neither waiting nor the other processes of a loaded machine
    count."""
    with tempfile.TemporaryDirectory() as home:
        ledger = Ledger(Database(Path(home) / "sidecar.db"))
        ledger.record(_row(-1))
        ledger.flush()  # open, migrate and start the writer outside the measurement
        commits = 0

        def counted(rows: list[Row]) -> None:
            nonlocal commits
            commits += 1

        ledger.on_commit = counted
        writer = ledger._thread
        assert writer is not None and writer.ident is not None
        writer_clock = time.pthread_getcpuclockid(writer.ident)
        rows = [_row(i) for i in range(n)]
        recording = 0.0
        writer_started = time.clock_gettime(writer_clock)
        next_at = time.perf_counter()
        for row in rows:
            started = time.thread_time()
            ledger.record(row)
            recording += time.thread_time() - started
            next_at += pace_s
            pause = next_at - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        ledger.flush(timeout=120)
        writing = time.clock_gettime(writer_clock) - writer_started
        ledger.close()
    return recording / n * 1e6, writing / n * 1e6, commits


def timer_floor_us(n: int, pace_s: float = 0.0005) -> float:
    """What `cpu_per_request_us` reads for an empty call paced alike: the cost of reading the
    thread's CPU clock twice (a system call each) on a thread just back from sleep."""

    def nothing() -> None:
        return None

    spent = 0.0
    next_at = time.perf_counter()
    for _ in range(n):
        started = time.thread_time()
        nothing()
        spent += time.thread_time() - started
        next_at += pace_s
        pause = next_at - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    return spent / n * 1e6


async def hook_costs(n: int) -> tuple[float, float, float, float, float]:
    """Mean µs of CPU (the event loop's thread, so a loaded machine's waits are not counted) per
    request of: the `after` hook (row queued), the `before` hook without budgets, the `before` hook
    with a daily and a monthly budget (the spend check and the reservation; each reservation is
    settled by an untimed `after`, as a request's would be), both hooks of one request with that
    budget, and an empty await."""
    with tempfile.TemporaryDirectory() as home:
        services = build_services(Config(), store=MemoryStore(), env={"SIDECAR_HOME": home})
        (usage,) = [h for h in services.chat.hooks if isinstance(h, UsageService)]
        ref = ModelRef("openai", "gpt-4o-mini")
        params = CompleteParams(
            model="openai:gpt-4o-mini", messages=[Message(role="user", content="hello " * 50)]
        )
        outcome = Outcome(method="stream", provider="openai", model="gpt-4o-mini", status="ok", usage=USAGE,
                          cost_usd=0.00036, pricing_date="2025-11-24", latency_ms=120.0, tag="bench")  # fmt: skip

        async def nothing() -> None:
            return None

        async def mean_us(call: Callable[[], Awaitable[None]]) -> float:
            started = time.thread_time()
            for _ in range(n):
                await call()
            return (time.thread_time() - started) / n * 1e6

        async def before_only() -> float:
            spent = 0.0
            for _ in range(n):
                started = time.thread_time()
                await usage.before(ref, params)
                spent += time.thread_time() - started
                await usage.after(outcome)  # settles the reservation, as the request would
            return spent / n * 1e6

        async def both() -> None:
            await usage.before(ref, params)
            await usage.after(outcome)

        await usage.before(ref, params)  # load (no) budgets
        after = await mean_us(lambda: usage.after(outcome))
        await anyio.to_thread.run_sync(usage.ledger.flush)
        before_none = await mean_us(lambda: usage.before(ref, params))
        await usage.set_budget(SetBudgetParams(daily_usd=1e9, monthly_usd=1e9), _Ctx())
        before_budgets = await before_only()
        pair = await mean_us(both)
        floor = await mean_us(nothing)
        await services.aclose()
    return after, before_none, before_budgets, pair, floor


async def client_budget_check_us(n_rows: int, n: int) -> tuple[float, float]:
    """p50 µs (wall) of the `before` hook for a gateway client key with its own daily and monthly
    budget, `n_rows` of its requests already in the ledger this month, and the floor: the same hook
    for the host's own request (no client key) under a day+month budget."""
    with tempfile.TemporaryDirectory() as home:
        services = build_services(Config(), store=MemoryStore(), env={"SIDECAR_HOME": home})
        (usage,) = [h for h in services.chat.hooks if isinstance(h, UsageService)]
        await services.client_keys.create(
            ClientKeyCreateParams(name="app", daily_usd=1e9, monthly_usd=1e9), _Ctx()
        )
        await usage.set_budget(SetBudgetParams(daily_usd=1e9, monthly_usd=1e9), _Ctx())
        now = time.time()
        for i in range(n_rows):  # today's, a hundredth of a second apart
            usage.ledger.record(msgspec.structs.replace(_row(i), ts=now - i * 0.01, client="app"))
        await anyio.to_thread.run_sync(usage.ledger.flush)
        ref = ModelRef("openai", "gpt-4o-mini")
        params = CompleteParams(
            model="openai:gpt-4o-mini", messages=[Message(role="user", content="hello " * 50)], max_tokens=1
        )

        async def p50_us(client: str | None) -> float:
            token = current_client.set(client)
            try:
                took = []
                for _ in range(n):
                    started = time.perf_counter()
                    await usage.before(ref, params)
                    took.append(time.perf_counter() - started)
                    await usage.gate.settle(_NOTHING)  # release the hold, as the request's end would
                return statistics.median(took) * 1e6
            finally:
                current_client.reset(token)

        await p50_us("app")  # the first reads (keys, budgets, spend) are not what is measured
        client, host = await p50_us("app"), await p50_us(None)
        await services.aclose()
    return client, host


class _Ctx:
    request_id = 0

    async def notify(self, method: str, params: object) -> None:
        return None


def bench_ledger(quick: bool = False) -> Table:
    rows_n, single_n, hook_n = (2_000, 50, 2_000) if quick else (50_000, 300, 20_000)
    rate, floor_rate = commit_rate(rows_n)
    single = single_row_commit_ms(single_n)
    after, before_none, before_budgets, pair, floor = anyio.run(hook_costs, hook_n)
    paced_n = 1_000 if quick else 4_000
    recording, writing, commits = cpu_per_request_us(paced_n)
    timer = timer_floor_us(paced_n)
    client_rows = 13_000 if quick else 133_000
    client_check, host_check = anyio.run(client_budget_check_us, client_rows, 200 if quick else 1_000)
    return [
        (
            f"ledger CPU per request ({paced_n:,} rows, one per 0.5 ms)",
            f"{recording + writing:.1f} µs, {commits} transactions",
            f"{timer:.1f} µs (CPU clock read around an empty call)",
            f"record {recording:.1f} + writer {writing:.1f} µs",
        ),
        (
            f"ledger commit rate ({rows_n:,} rows queued)",
            f"{rate:,.0f} rows/s",
            f"{floor_rate:,.0f} rows/s (bare sqlite3, 1 txn)",
            f"{rate / floor_rate:.2f}x",
        ),
        ("ledger row queued → committed (idle, p50)", f"{single:.2f} ms", "-", "off the request path"),
        (
            "after hook CPU per request (queue the row)",
            f"{after:.1f} µs",
            f"{floor:.2f} µs (empty await)",
            f"+{after - floor:.1f} µs",
        ),
        (
            "before hook CPU per request, no budget",
            f"{before_none:.1f} µs",
            f"{floor:.2f} µs",
            f"+{before_none - floor:.1f} µs",
        ),
        (
            "before hook CPU per request, day+month budget",
            f"{before_budgets:.1f} µs",
            f"{floor:.2f} µs",
            f"+{before_budgets - floor:.1f} µs",
        ),
        (
            "both hooks CPU per request, day+month budget",
            f"{pair:.1f} µs",
            f"{floor:.2f} µs",
            f"+{pair - floor:.1f} µs",
        ),
        (
            f"before hook, client key's day+month budget ({client_rows:,} of its rows this month), p50",
            f"{client_check:.0f} µs",
            f"{host_check:.0f} µs (host request, day+month budget)",
            f"{client_check / host_check:.2f}x",
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rows (a smoke check)")
    args = parser.parse_args()
    from scripts.bench_common import print_table  # only when run alone

    print_table(bench_ledger(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
