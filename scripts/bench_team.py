#!/usr/bin/env python3
"""Benchmarks of team mode's two seams against their embedded defaults, in the same run:

- storage: ledger-shaped rows (the ledger's columns and its per-day spend rollup trigger) written
  through `infra.sql.SqlEngine`, in batches as the ledger's writer commits them and one row at a
  time (an idle replica), on a real PostgreSQL (fsync on) versus the SQLite engine (WAL,
  synchronous=NORMAL, as the desktop runs it);
- coordination: a rate-window charge and a budget reserve + settle on a real Redis versus the
  in-process coordinator, one at a time (the latency a request pays) and 200 at once from two
  connection pools (two replicas).

The servers come from tests/servers.py (Debian's postgresql and redis-server, private, on
loopback). `bench_team(quick)` returns rows in scripts/bench.py's table shape.

    .venv/bin/python scripts/bench_team.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sidecar.core.counters import BudgetLine, Reservation, Window  # noqa: E402
from sidecar.infra.coordination import Coordinator, LocalCoordinator, open_coordinator  # noqa: E402
from sidecar.infra.db import Database  # noqa: E402
from sidecar.infra.ledger import Ledger, Row  # noqa: E402
from sidecar.infra.pg import PgBlocking, PgEngine  # noqa: E402
from sidecar.infra.sql import Dialects, SqlEngine, SqliteEngine, Stmt  # noqa: E402
from tests.servers import PostgresServer, RedisServer  # noqa: E402

Table = list[tuple[str, str, str, str]]

LEDGER_LIKE = (
    Dialects(
        sqlite="""
        CREATE TABLE ledger (id INTEGER PRIMARY KEY, uid TEXT NOT NULL UNIQUE, ts REAL NOT NULL,
            method TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL, outcome TEXT NOT NULL,
            input_tokens INTEGER, output_tokens INTEGER, cost_usd REAL, latency_ms REAL NOT NULL,
            run_id TEXT, tag TEXT);
        CREATE INDEX ledger_ts ON ledger (ts);
        CREATE TABLE spend_daily (day TEXT NOT NULL, provider TEXT NOT NULL, requests INTEGER NOT NULL,
            cost_usd REAL NOT NULL, PRIMARY KEY (day, provider)) WITHOUT ROWID;
        CREATE TRIGGER ledger_spend_rollup AFTER INSERT ON ledger BEGIN
            INSERT INTO spend_daily (day, provider, requests, cost_usd)
            VALUES (date(NEW.ts, 'unixepoch'), NEW.provider, 1, coalesce(NEW.cost_usd, 0))
            ON CONFLICT (day, provider) DO UPDATE SET
                requests = requests + 1, cost_usd = cost_usd + excluded.cost_usd;
        END;
        """,
        postgres="""
        CREATE TABLE ledger (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, uid TEXT NOT NULL UNIQUE,
            ts DOUBLE PRECISION NOT NULL, method TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL,
            outcome TEXT NOT NULL, input_tokens BIGINT, output_tokens BIGINT, cost_usd DOUBLE PRECISION,
            latency_ms DOUBLE PRECISION NOT NULL, run_id TEXT, tag TEXT);
        CREATE INDEX ledger_ts ON ledger (ts);
        CREATE TABLE spend_daily (day TEXT NOT NULL, provider TEXT NOT NULL, requests BIGINT NOT NULL,
            cost_usd DOUBLE PRECISION NOT NULL, PRIMARY KEY (day, provider));
        CREATE FUNCTION ledger_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO spend_daily AS s (day, provider, requests, cost_usd)
            VALUES (to_char(to_timestamp(NEW.ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD'), NEW.provider, 1,
                    coalesce(NEW.cost_usd, 0))
            ON CONFLICT (day, provider) DO UPDATE
                SET requests = s.requests + 1, cost_usd = s.cost_usd + excluded.cost_usd;
            RETURN NULL;
        END $$;
        CREATE TRIGGER ledger_rollup AFTER INSERT ON ledger FOR EACH ROW EXECUTE FUNCTION ledger_rollup();
        """,
    ),
)
INSERT = (
    "INSERT INTO ledger (uid, ts, method, provider, model, outcome, input_tokens, output_tokens, cost_usd, "
    "latency_ms, run_id, tag) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (uid) DO NOTHING"
)
BATCH = 256


def _rows(n: int) -> list[tuple[object, ...]]:
    return [
        (uuid.uuid4().hex, 1_800_000_000.0 + i, "stream", "openai", "gpt-4o-mini", "ok", 1200, 300, 0.00036,
         123.4, "run-1", "bench")
        for i in range(n)
    ]  # fmt: skip


async def _writes(engine: SqlEngine, n: int, singles: int) -> tuple[float, float]:
    """Rows/s in batches of BATCH, and the median ms of a one-row commit."""
    engine.register("bench_ledger", LEDGER_LIKE)
    await engine.fetchone("SELECT 1")  # connect and migrate outside the measurement
    rows = _rows(n)
    started = time.perf_counter()
    for i in range(0, n, BATCH):
        await engine.write([Stmt(INSERT, many=rows[i : i + BATCH])])
    rate = n / (time.perf_counter() - started)
    times = []
    for row in _rows(singles):
        started = time.perf_counter()
        await engine.write([Stmt(INSERT, row)])
        times.append((time.perf_counter() - started) * 1000)
    return rate, sorted(times)[len(times) // 2]


async def _median_us(call: Callable[[], Awaitable[object]], n: int) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1e6)
    return sorted(times)[len(times) // 2]


async def _coordination(one: Coordinator, two: Coordinator, n: int) -> tuple[float, float, float]:
    """Median µs of a window charge and of a reserve + settle, and ops/s of 200 concurrent
    reserve + settle split over `one` and `two`."""
    window = Window(f"bench:{uuid.uuid4().hex}", 1e12, 60)
    line = BudgetLine(f"budget:bench:{uuid.uuid4().hex}", 1e12, 0.0, time.time() + 86400)

    async def charge() -> None:
        await one.acquire([(window, 1)])

    async def reserve_settle(coord: Coordinator = one) -> None:
        got = await coord.reserve([line], 0.001, ttl_s=60)
        assert isinstance(got, Reservation)
        await coord.settle(got, 0.001)

    async def burst() -> float:
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(reserve_settle, one if i % 2 else two)
        return 200 / (time.perf_counter() - started)

    acquire_us = await _median_us(charge, n)
    reserve_us = await _median_us(reserve_settle, n)
    await burst()  # the pools open their connections
    rates = [await burst() for _ in range(5)]
    return acquire_us, reserve_us, sorted(rates)[2]


def _ledger(db: Database | PgBlocking, n: int, checks: int) -> tuple[float, float, float]:
    """The real `Ledger` as the chat hooks use it: rows/s from `record` to committed (its writer
    thread's batches), the µs `record` costs a request (it only queues), and the p50 of the budget
    check a request with a budget pays before sending (`spends`, day and month)."""
    ledger = Ledger(db)
    ledger.budgets()  # connect and migrate outside the timing
    now = time.time()
    rows = [Row(ts=now, method="stream", provider="openai", model="m", outcome="ok", latency_ms=1.0,
                input_tokens=10, output_tokens=5, cost_usd=0.0001, client="bench") for _ in range(n)]  # fmt: skip
    started = time.perf_counter()
    for row in rows:
        ledger.record(row)
    record_us = (time.perf_counter() - started) / n * 1e6
    assert ledger.flush(300)
    rate = n / (time.perf_counter() - started)
    times = []
    day = time.strftime("%Y-%m-%d", time.gmtime(now))
    for _ in range(checks):
        t = time.perf_counter()
        ledger.spends([("*", day, "9999-12-31"), ("openai", day, "9999-12-31")])
        times.append((time.perf_counter() - t) * 1000)
    ledger.close(5)
    db.close()
    return rate, record_us, sorted(times)[len(times) // 2]


def _gateway_rate(pg_url: str, redis_url: str, replicas: int, requests: int) -> float:
    """Chat completions per second through `replicas` gateway processes (team mode, one fake
    upstream), 50 at a time, spread round-robin; the client key has no limit or budget."""
    import httpx2

    from scripts.bench_common import BENCH_REQUESTS_PER_MINUTE
    from tests.fakes.openai_compat import FakeOpenAICompat
    from tests.harness import Sidecar

    config = f'[coordination]\nurl = "{redis_url}"\n\n[retry]\nmax_attempts = 1\n'
    with FakeOpenAICompat("openai", requests_per_minute=BENCH_REQUESTS_PER_MINUTE) as fake:
        env = {
            "SIDECAR_DATABASE_URL": pg_url,
            "OPENAI_BASE_URL": fake.api_base,
            "OPENAI_API_KEY": "sk-test-valid",
        }
        running = [Sidecar(env, config=config) for _ in range(replicas)]
        try:
            urls = [sc.result("gateway_start", {"port": 0}, timeout=60)["url"] for sc in running]
            key = running[0].result("client_key_create", {"name": f"bench{replicas}"})["key"]
            body = {"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}

            async def drive() -> float:
                limit = anyio.Semaphore(50)
                async with httpx2.AsyncClient(timeout=60, headers={"authorization": f"Bearer {key}"}) as http:

                    async def one(i: int) -> None:
                        async with limit:
                            reply = await http.post(urls[i % replicas] + "/v1/chat/completions", json=body)
                            reply.raise_for_status()

                    for i in range(replicas * 5):  # warm each replica (and its key table)
                        await one(i)
                    started = time.perf_counter()
                    async with anyio.create_task_group() as tg:
                        for i in range(requests):
                            tg.start_soon(one, i)
                    return requests / (time.perf_counter() - started)

            return anyio.run(drive)
        finally:
            for sc in running:
                sc.stop()


def bench_team(quick: bool = False) -> Table:
    n, singles, ops = (2_000, 50, 200) if quick else (20_000, 300, 2_000)
    pg = PostgresServer(durable=True).start()
    redis = RedisServer().start()
    try:

        async def run() -> Table:
            with tempfile.TemporaryDirectory() as home:
                sqlite = SqliteEngine(Database(Path(home) / "sidecar.db"))
                lite_rate, lite_ms = await _writes(sqlite, n, singles)
                await sqlite.aclose()
            pg.psql("CREATE DATABASE bench")
            engine = PgEngine(pg.url("bench"))
            pg_rate, pg_ms = await _writes(engine, n, singles)
            await engine.aclose()
            local = LocalCoordinator()
            l_acq, l_res, l_burst = await _coordination(local, local, ops)
            one, two = open_coordinator(redis.url()), open_coordinator(redis.url())
            r_acq, r_res, r_burst = await _coordination(one, two, ops)
            await one.aclose()
            await two.aclose()
            with tempfile.TemporaryDirectory() as home:
                lite_ledger = await anyio.to_thread.run_sync(
                    _ledger, Database(Path(home) / "sidecar.db"), n, ops
                )
            pg.psql("CREATE DATABASE ledger")
            pg_ledger = await anyio.to_thread.run_sync(_ledger, PgBlocking(pg.url("ledger")), n, ops)
            pg.psql("CREATE DATABASE gateway")
            one_rate = await anyio.to_thread.run_sync(_gateway_rate, pg.url("gateway"), redis.url(), 1, ops)
            two_rate = await anyio.to_thread.run_sync(_gateway_rate, pg.url("gateway"), redis.url(), 2, ops)
            return [
                ("team: gateway throughput, 2 replicas (PostgreSQL + Redis)", f"{two_rate:,.0f} req/s",
                 f"{one_rate:,.0f} req/s (1 replica)", f"{two_rate / one_rate:.2f}x"),
                ("team: Ledger writes/s, record to commit (PostgreSQL)", f"{pg_ledger[0]:,.0f} rows/s",
                 f"{lite_ledger[0]:,.0f} rows/s (SQLite)", f"{pg_ledger[0] / lite_ledger[0]:.2f}x"),
                ("team: Ledger.record per request (queues only)", f"{pg_ledger[1]:.1f} µs",
                 f"{lite_ledger[1]:.1f} µs (SQLite)", f"+{pg_ledger[1] - lite_ledger[1]:.1f} µs"),
                ("team: budget check before sending p50 (PostgreSQL)", f"{pg_ledger[2]:.2f} ms",
                 f"{lite_ledger[2]:.2f} ms (SQLite)", f"+{pg_ledger[2] - lite_ledger[2]:.2f} ms"),
                (f"team: ledger rows/s, batches of {BATCH} (PostgreSQL, fsync on)", f"{pg_rate:,.0f} rows/s",
                 f"{lite_rate:,.0f} rows/s (SQLite engine)", f"{pg_rate / lite_rate:.2f}x"),
                ("team: one-row commit p50 (PostgreSQL)", f"{pg_ms:.2f} ms", f"{lite_ms:.2f} ms (SQLite engine)",
                 f"+{pg_ms - lite_ms:.2f} ms"),
                ("team: rate-window charge p50 (Redis)", f"{r_acq:.0f} µs", f"{l_acq:.1f} µs (in process)",
                 f"+{r_acq - l_acq:.0f} µs"),
                ("team: budget reserve+settle p50 (Redis)", f"{r_res:.0f} µs", f"{l_res:.1f} µs (in process)",
                 f"+{r_res - l_res:.0f} µs"),
                ("team: 200 concurrent reserve+settle, 2 warm pools (Redis)", f"{r_burst:,.0f} ops/s",
                 f"{l_burst:,.0f} ops/s (in process)", f"{r_burst / l_burst:.2f}x"),
            ]  # fmt: skip

        return anyio.run(run)
    finally:
        pg.close()
        redis.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    args = parser.parse_args()
    from scripts.bench_common import print_table  # only when run alone

    print_table(bench_team(args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
