"""The usage ledger on both engines: the same rows give the same spends, run tokens, groupings,
budgets and once-only alerts on SQLite and on a real PostgreSQL; two writers (two replicas) on one
PostgreSQL lose no row and count none twice, nor does a batch retried after its commit; a database
from before batched rollups keeps its figures, one from before the router column its rows; and rows
recorded while PostgreSQL is down wait in memory and are committed once it is back (nothing
recorded is lost)."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.core.budget import AlertKey, Budget
from sidecar.infra import audit, ledger_schema
from sidecar.infra.db import Database
from sidecar.infra.ledger import AuditNote, Ledger, Row
from sidecar.infra.ledger_rows import INSERT_ROW
from sidecar.infra.pg import PgBlocking
from sidecar.infra.sql import text_for
from tests.conftest import ServerFactory

Make = Callable[[], "Database | PgBlocking"]


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Make]:
    """Makes a connection to one fresh database per test (a new one per call, as replicas have)."""
    made: list[Database | PgBlocking] = []
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None

    def make() -> Database | PgBlocking:
        db = Database(tmp_path / "sidecar.db") if url is None else PgBlocking(url)
        made.append(db)
        return db

    yield make
    for db in made:
        db.close()


DAY1, DAY2 = 1_796_083_199.5, 1_796_083_200.25  # 2026-11-30T23:59:59.5Z, 2026-12-01T00:00:00.25Z


_INSERT_BEFORE_ROUTER = (  # a row as the writer wrote it up to migration 5: 24 columns, no router
    "INSERT INTO ledger (uid, ts, method, provider, model, outcome, error_kind, input_tokens, "
    "output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, usage_estimated, cost_usd, "
    "pricing_date, latency_ms, attempts, run_id, tag, pid, client, reason, cache_hit, saved_usd) VALUES "
    f"({', '.join('?' * 24)})"
)


def _row(ts: float, provider: str, cost: float | None, **extra: object) -> Row:
    return Row(ts=ts, method="stream", provider=provider, model="m", outcome="ok", latency_ms=1.0,
               input_tokens=10, output_tokens=5, cost_usd=cost, **extra)  # type: ignore[arg-type]  # fmt: skip


def _scoped_rollup(ledger: Ledger) -> list[tuple[Any, ...]]:
    return ledger.db.run_sync(
        lambda conn: [tuple(r) for r in conn.execute("SELECT * FROM spend_daily_scoped ORDER BY day, scope")]
    )


def _committed_then_closed(*ledgers: Ledger) -> bool:
    """Every queued row committed, then each writer stopped.

    `close` alone gives up once half a second passes without a commit (its rule for a stuck writer
    at shutdown), which a loaded machine's first PostgreSQL commit (connect, migrate) can take;
    these tests are about what gets committed, so they wait for that first.
    """
    return all(ledger.flush(30) for ledger in ledgers) and all(ledger.close(5) for ledger in ledgers)


def test_same_figures_on_both_engines(ledger_db: Make) -> None:
    ledger = Ledger(ledger_db())
    ledger.record(_row(DAY1, "openai", 0.25, run_id="r", client="alice", tag="t"))
    ledger.record(_row(DAY2, "openai", 0.125, run_id="r", client="alice"))
    ledger.record(_row(DAY2, "anthropic", None, run_id="r"))
    ledger.note(AuditNote(DAY2, "fallback", "openai", "rate_limited", "{}"))
    # Counted while queued, then committed: the same figures either way.
    assert ledger.spends([("*", "2026-12-01", "2026-12-02")]) == [pytest.approx(0.125)]
    assert ledger.flush(10)
    other = Ledger(ledger_db())  # another replica on the same database
    assert other.spends([("*", "2026-11-01", "2026-12-02"), ("openai", "2026-11-30", "2026-12-01")]) == [
        pytest.approx(0.375),
        pytest.approx(0.25),
    ]
    assert other.run_tokens("r", ["*", "anthropic"]) == [45, 15]
    by_day = {s.key: s for s in other.samples(0, 2e9, "day")}
    assert sorted(by_day) == ["2026-11-30", "2026-12-01"]
    assert [s.key for s in other.samples(0, 2e9, "client", client="alice")] == ["alice", "alice"]
    alice = [("client:alice", "2026-11-01", "2027-01-01"), ("client:alice", "2026-12-01", "2026-12-02")]
    assert other.spends(alice) == [pytest.approx(0.375), pytest.approx(0.125)]
    budget = Budget("openai", daily_usd=1.5, monthly_usd=None, alert_threshold=0.8)
    other.put_budget(budget, DAY2, AuditNote(DAY2, "budget_set", "openai", "ok"))
    assert ledger.budgets() == [budget]
    key = AlertKey("openai", "threshold", "2026-12-01")
    assert ledger.mark_alert(key, DAY2) is True
    assert other.mark_alert(key, DAY2) is False
    assert ledger.close(5) and other.close(5)


def test_every_value_reads_back_as_written_nulls_included(ledger_db: Make) -> None:
    """A row with every optional value missing and one with every value set read back the same on
    both engines (SQLite gets a NaN for a NULL, a cheaper parameter; it must store NULL)."""
    db = ledger_db()
    ledger = Ledger(db)
    bare = Row(ts=DAY1, method="stream", provider="openai", model="m", outcome="cancelled", latency_ms=2.5)
    full = Row(ts=DAY2, method="complete", provider="xai", model="grok", outcome="error", latency_ms=7.25,
               error_kind="rate_limited", input_tokens=1, output_tokens=2, cache_read_tokens=3,
               cache_write_tokens=4, reasoning_tokens=5, usage_estimated=True, cost_usd=0.5,
               pricing_date="2026-11-24", attempts=2, run_id="r", tag="t", client="alice",
               reason="why", cache_hit=True, saved_usd=0.25)  # fmt: skip
    ledger.record(bare)
    ledger.record(full)
    assert _committed_then_closed(ledger)
    columns = [
        "uid", "ts", "method", "provider", "model", "outcome", "error_kind", "input_tokens",
        "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "usage_estimated",
        "cost_usd", "pricing_date", "latency_ms", "attempts", "run_id", "tag", "client", "reason",
        "cache_hit", "saved_usd",
    ]  # fmt: skip
    sql = f"SELECT {', '.join(columns)} FROM ledger ORDER BY ts"
    stored = db.run_sync(lambda conn: conn.execute(sql).fetchall())
    expected = [
        tuple(
            getattr(row, c) if c not in ("usage_estimated", "cache_hit") else int(getattr(row, c))
            for c in columns
        )
        for row in (bare, full)
    ]
    assert [tuple(r) for r in stored] == expected
    assert stored[0][6:12] == (None,) * 6  # NULL, not a NaN read back as a float


def test_two_writers_lose_no_row(ledger_db: Make) -> None:
    ledgers = [Ledger(ledger_db()), Ledger(ledger_db())]

    def write(ledger: Ledger) -> None:
        for i in range(300):
            ledger.record(_row(DAY1 if i % 2 else DAY2, ("openai", "xai")[i % 3 % 2], 0.01, run_id="shared"))

    threads = [threading.Thread(target=write, args=(ledger,)) for ledger in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _committed_then_closed(*ledgers)
    check = Ledger(ledger_db())
    samples = check.samples(0, 2e9)
    assert len(samples) == 600
    assert check.spends([("*", "2026-11-01", "2026-12-31")]) == [pytest.approx(6.0)]
    assert check.run_tokens("shared", ["*"]) == [600 * 15]
    check.close(5)


def test_rows_wait_while_postgresql_is_down(server_factory: ServerFactory) -> None:
    server = server_factory.postgres()
    db = PgBlocking(server.create_database("ledger"), connect_timeout_s=2)
    ledger = Ledger(db)
    try:
        ledger.record(_row(DAY1, "openai", 0.5))
        assert ledger.flush(10)
        server.stop()
        for _ in range(20):
            ledger.record(_row(DAY2, "openai", 0.25))
        time.sleep(1.0)  # the writer tries, fails, keeps them
        assert ledger.pending_count == 20
        assert ledger.dropped == 0
        server.start()
        assert ledger.flush(30)
        assert ledger.pending_count == 0 and ledger.dropped == 0
        assert ledger.spends([("*", "2026-11-01", "2026-12-31")]) == [pytest.approx(5.5)]
        assert len(ledger.samples(0, 2e9)) == 21
    finally:
        ledger.close(5)
        db.close()


def test_a_batch_retried_after_its_commit_counts_each_row_once(ledger_db: Make) -> None:
    """A commit whose answer was lost is retried: the rows already there are not inserted again and
    not added to the rollups again; the batch's new rows are."""
    rows = [_row(DAY2, "openai", 0.25, run_id="r"), _row(DAY2, "xai", 0.5, run_id="r")]
    first = Ledger(ledger_db())
    for row in rows:
        first.record(row)
    assert _committed_then_closed(first)
    again = Ledger(ledger_db())  # the same rows (same uids) in one batch with a new one
    for row in [*rows, _row(DAY2, "openai", 0.125, run_id="r")]:
        again.record(row)
    assert again.flush(10)
    assert again.committed == 3 and again.pending_count == 0
    assert len(again.samples(0, 2e9)) == 3
    assert again.spends([("*", "2026-12-01", "2026-12-02"), ("openai", "2026-12-01", "2026-12-02")]) == [
        pytest.approx(0.875),
        pytest.approx(0.375),
    ]
    assert again.run_tokens("r", ["*"]) == [45]
    assert again.close(5)


def test_a_database_from_before_batched_rollups_keeps_its_figures(ledger_db: Make) -> None:
    """A database at ledger migration 4 (rollups kept by triggers) migrates with its rollups intact;
    rows written after are counted once (by the writer, no trigger left)."""
    old = ledger_db()
    old.register(audit.COMPONENT, [text_for(m, old.engine) for m in audit.ENGINE_MIGRATIONS])
    old.register(
        ledger_schema.COMPONENT, [text_for(m, old.engine) for m in ledger_schema.ENGINE_MIGRATIONS[:4]]
    )
    before = [_row(DAY1, "openai", 0.25, run_id="r"), _row(DAY2, "anthropic", 0.5, run_id="r")]

    def insert(conn: Any) -> None:  # as the writer of migration 4 did: the triggers keep the rollups
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_INSERT_BEFORE_ROUTER, [row.params(1)[:24] for row in before])
        conn.execute("COMMIT")

    old.run_sync(insert)
    assert old.run_sync(lambda conn: conn.execute("SELECT count(*) FROM spend_daily").fetchone()) == (2,)
    old.close()
    new = Ledger(ledger_db())
    assert new.spends([("*", "2026-11-01", "2026-12-31")]) == [pytest.approx(0.75)]  # migrates first
    new.record(_row(DAY2, "anthropic", 0.125, run_id="r"))
    assert _committed_then_closed(new)
    check = Ledger(ledger_db())
    assert check.spends([("*", "2026-11-30", "2026-12-01"), ("anthropic", "2026-12-01", "2026-12-02")]) == [
        pytest.approx(0.25),
        pytest.approx(0.625),
    ]
    assert check.run_tokens("r", ["*", "anthropic"]) == [45, 30]
    requests = check.db.run_sync(
        lambda conn: conn.execute("SELECT sum(requests) FROM spend_daily").fetchone()
    )
    assert requests == (3,)
    check.close(5)


def test_a_database_from_before_the_router_column_keeps_its_rows(ledger_db: Make) -> None:
    """A database at ledger migration 5 (no `router` column) opens with the new code: its rows
    intact with no router, and rows written after name theirs (grouped, filtered, spent)."""
    old = ledger_db()
    old.register(audit.COMPONENT, [text_for(m, old.engine) for m in audit.ENGINE_MIGRATIONS])
    old.register(
        ledger_schema.COMPONENT, [text_for(m, old.engine) for m in ledger_schema.ENGINE_MIGRATIONS[:5]]
    )
    before = [_row(DAY1, "openai", 0.25, client="alice", tag="t"), _row(DAY2, "anthropic", 0.5)]

    def insert(conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_INSERT_BEFORE_ROUTER, [row.params(1)[:24] for row in before])
        conn.execute("COMMIT")

    old.run_sync(insert)
    columns = "uid, ts, provider, model, outcome, client, tag, cost_usd, input_tokens"
    as_written = old.run_sync(
        lambda conn: conn.execute(f"SELECT {columns} FROM ledger ORDER BY ts").fetchall()
    )
    old.close()
    new = Ledger(ledger_db())
    new.record(_row(DAY2, "openai", 0.125, router="cheap"))
    new.record(_row(DAY2, "openai", 0.0625, router="cheap", client="alice"))
    assert new.flush(10)

    def read(conn: Any) -> tuple[list[Any], list[Any]]:
        kept = conn.execute(f"SELECT {columns}, router FROM ledger WHERE uid IN (?, ?) ORDER BY ts",
                            (before[0].uid, before[1].uid)).fetchall()  # fmt: skip
        routers = conn.execute("SELECT router FROM ledger ORDER BY id").fetchall()
        return [tuple(r) for r in kept], [r[0] for r in routers]

    kept, routers = new.db.run_sync(read)
    assert [r[:-1] for r in kept] == [tuple(r) for r in as_written]  # old rows intact...
    assert [r[-1] for r in kept] == [None, None]  # ...with no router
    assert routers == [None, None, "cheap", "cheap"]
    assert collections.Counter(s.key for s in new.samples(0, 2e9, "router")) == {None: 2, "cheap": 2}
    assert len(new.samples(0, 2e9, router="cheap")) == 2
    december = [("router:cheap", "2026-12-01", "2027-01-01"), ("router:cheap", "2026-12-02", "2026-12-03")]
    assert new.spends(december) == [pytest.approx(0.1875), 0.0]
    new.record(_row(DAY2, "openai", 0.5, router="cheap"))  # queued, not yet committed: counted
    assert new.spends(december[:1]) == [pytest.approx(0.6875)]
    # Alice's November row was written before the scoped rollup existed: the migration added it.
    assert new.spends([("client:alice", "2026-11-01", "2027-01-01")]) == [pytest.approx(0.3125)]
    assert _committed_then_closed(new)


def test_a_database_from_before_the_scoped_rollup_gets_it_from_its_rows(ledger_db: Make) -> None:
    """A database at ledger migration 6 (client keys' and routers' spend summed from the rows)
    migrates to the per-day rollup filled from the rows already there, across a UTC midnight; rows
    written after are added to it once; the spend in memory reads it."""
    old = ledger_db()
    old.register(audit.COMPONENT, [text_for(m, old.engine) for m in audit.ENGINE_MIGRATIONS])
    old.register(
        ledger_schema.COMPONENT, [text_for(m, old.engine) for m in ledger_schema.ENGINE_MIGRATIONS[:6]]
    )
    before = [
        _row(DAY1, "openai", 0.25, client="alice", router="cheap"),
        _row(DAY2, "anthropic", 0.5, client="alice"),
        _row(DAY2, "anthropic", None, client="alice"),  # cost unknown: counted, $0
        _row(DAY2, "openai", 1.0),  # neither: in no named scope
    ]

    def insert(conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT_ROW, [row.params(1) for row in before])
        conn.execute("COMMIT")

    old.run_sync(insert)
    old.close()
    new = Ledger(ledger_db())
    new.record(_row(DAY2, "openai", 0.125, client="alice", router="cheap"))
    assert new.flush(10)
    assert _scoped_rollup(new) == [
        ("2026-11-30", "client:alice", 1, 0.25),
        ("2026-11-30", "router:cheap", 1, 0.25),
        ("2026-12-01", "client:alice", 3, 0.625),
        ("2026-12-01", "router:cheap", 1, 0.125),
    ]
    keys = [("client:alice", "2026-12-01"), ("client:alice", "2026-11"), ("router:cheap", "2026-12")]
    assert new.read_period_spends(keys) == [pytest.approx(0.625), pytest.approx(0.25), pytest.approx(0.125)]
    assert _committed_then_closed(new)


def test_spend_in_memory_counts_each_row_once_and_takes_in_other_processes(ledger_db: Make) -> None:
    keys = [("*", "2026-12-01"), ("openai", "2026-12"), ("*", "2026-11-30"), ("client:app", "2026-12")]
    mine, other = Ledger(ledger_db()), Ledger(ledger_db())
    other.record(_row(DAY2, "openai", 0.25, client="app"))
    assert other.flush(10)
    assert mine.period_spends(keys) is None  # never read: ask the database
    assert mine.read_period_spends(keys) == [
        pytest.approx(0.25),
        pytest.approx(0.25),
        0.0,
        pytest.approx(0.25),
    ]
    mine.record(_row(DAY2, "openai", 0.5, client="app"))  # counted as it is queued...
    mine.record(_row(DAY1, "openai", 1.0))  # (a month read from its first day on)
    both = [pytest.approx(0.75), pytest.approx(0.75), pytest.approx(1.0), pytest.approx(0.75)]
    assert mine.period_spends(keys) == both
    assert mine.flush(10)  # ...and once committed, not twice
    assert mine.period_spends(keys) == both
    other.record(_row(DAY2, "xai", 2.0, client="app"))
    assert other.flush(10)
    assert mine.period_spends(keys)[0] == pytest.approx(0.75)  # seen at the next read
    assert mine.read_period_spends(keys)[::3] == [pytest.approx(2.75), pytest.approx(2.75)]
    assert mine.period_spends([("*", "2026-10")]) is None  # before the month read: not known here
    assert mine.close(5) and other.close(5)


def test_a_renamed_client_key_keeps_its_rows_and_its_spend(ledger_db: Make) -> None:
    """Renaming a client key carries its rows (queued ones committed first) and its spend per day
    over to the new name, added to what a deleted key of that name left; the spend in memory
    follows at once; other keys' rows and a router's spend stay where they were."""
    ledger = Ledger(ledger_db())
    ledger.record(_row(DAY1, "openai", 0.25, client="alice", router="cheap"))
    ledger.record(_row(DAY2, "openai", 0.5, client="bob"))  # a deleted key's, named as alice will be
    ledger.record(_row(DAY2, "openai", 1.0, client="carol"))
    assert ledger.flush(10)
    keys = [("client:alice", "2026-11"), ("client:bob", "2026-12"), ("router:cheap", "2026-11")]
    assert ledger.read_period_spends(keys) == [pytest.approx(0.25), pytest.approx(0.5), pytest.approx(0.25)]
    ledger.record(_row(DAY2, "anthropic", 0.125, client="alice"))  # still queued when renamed

    assert ledger.rename_client("alice", "bob") == 2

    assert _scoped_rollup(ledger) == [
        ("2026-11-30", "client:bob", 1, 0.25),
        ("2026-11-30", "router:cheap", 1, 0.25),
        ("2026-12-01", "client:bob", 2, 0.625),
        ("2026-12-01", "client:carol", 1, 1.0),
    ]
    clients = ledger.db.run_sync(
        lambda conn: sorted(r[0] for r in conn.execute("SELECT client FROM ledger WHERE client IS NOT NULL"))
    )
    assert clients == ["bob", "bob", "bob", "carol"]
    assert ledger.period_spends(keys) is None  # what memory held names alice: read again
    assert ledger.read_period_spends([*keys, ("client:bob", "2026-11")]) == [
        0.0,
        pytest.approx(0.625),
        pytest.approx(0.25),
        pytest.approx(0.25),
    ]
    assert ledger.client_totals() == {"bob": (3, pytest.approx(0.875)), "carol": (1, pytest.approx(1.0))}
    assert ledger.rename_client("nobody", "someone") == 0
    assert _committed_then_closed(ledger)
