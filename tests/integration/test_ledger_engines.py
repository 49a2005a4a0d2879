"""The usage ledger on both engines: the same rows give the same spends, run tokens, groupings,
budgets and once-only alerts on SQLite and on a real PostgreSQL; two writers (two replicas) on one
PostgreSQL lose no row and count none twice; and rows recorded while PostgreSQL is down wait in
memory and are committed once it is back (nothing recorded is lost)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sidecar.core.budget import AlertKey, Budget
from sidecar.infra.db import Database
from sidecar.infra.ledger import AuditNote, Ledger, Row
from sidecar.infra.pg import PgBlocking
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


def _row(ts: float, provider: str, cost: float | None, **extra: object) -> Row:
    return Row(ts=ts, method="stream", provider=provider, model="m", outcome="ok", latency_ms=1.0,
               input_tokens=10, output_tokens=5, cost_usd=cost, **extra)  # type: ignore[arg-type]  # fmt: skip


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
    assert other.client_spends("alice", [(0, 2e9)]) == [pytest.approx(0.375)]
    budget = Budget("openai", daily_usd=1.5, monthly_usd=None, alert_threshold=0.8)
    other.put_budget(budget, DAY2, AuditNote(DAY2, "budget_set", "openai", "ok"))
    assert ledger.budgets() == [budget]
    key = AlertKey("openai", "threshold", "2026-12-01")
    assert ledger.mark_alert(key, DAY2) is True
    assert other.mark_alert(key, DAY2) is False
    assert ledger.close(5) and other.close(5)


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
    assert all(ledger.close(20) for ledger in ledgers)
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
