"""The ledger's and the audit trail's tables on PostgreSQL behave as they do on SQLite: the same
rows (across a UTC midnight, with unknown costs and token counts, a retried batch) give the same
per-day spend and per-run token rollups, the same groupings by day, the same budget upserts and
once-only alerts. Each engine runs its side of infra.ledger's migrations; the rows and their
rollups are written by the statements the ledger's writer runs, one batch per transaction."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import anyio

from sidecar.infra import audit, ledger, ledger_schema, pg_schema
from sidecar.infra.db import Database
from sidecar.infra.ledger import AuditNote, Row
from sidecar.infra.ledger_rows import ADD_RUN_TOKENS, ADD_SCOPED_SPEND, ADD_SPEND, rollups
from sidecar.infra.pg import PgEngine
from sidecar.infra.sql import Dialects, SqlEngine, SqliteEngine, Stmt

# The ledger's statements, in the subset both engines share.
INSERT_ROW = ledger._INSERT_ROW
MARK_ALERT = (
    "INSERT INTO budget_alerts (scope, kind, period_key, sent_ts) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
BY_DAY = Dialects(
    sqlite="SELECT date(ts, 'unixepoch') AS d, count(*), sum(coalesce(output_tokens, 0)) FROM ledger GROUP BY d ORDER BY d",
    postgres=f"SELECT {pg_schema.UTC_DAY.format(ts='ts')} AS d, count(*), sum(coalesce(output_tokens, 0)) FROM ledger GROUP BY d ORDER BY d",
)


def ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


ROWS = [
    Row(ts=ts("2026-11-30T23:59:59.500+00:00"), method="stream", provider="openai", model="gpt-4o-mini",
        outcome="ok", latency_ms=10.0, input_tokens=100, output_tokens=50, cost_usd=0.25, run_id="run-a",
        client="alice", router="cheap"),
    Row(ts=ts("2026-12-01T00:00:00.250+00:00"), method="complete", provider="openai", model="gpt-4o-mini",
        outcome="ok", latency_ms=11.0, input_tokens=10, output_tokens=5, cost_usd=0.125, run_id="run-a",
        client="alice"),
    Row(ts=ts("2026-12-01T12:00:00+00:00"), method="stream", provider="anthropic", model="claude",
        outcome="cancelled", latency_ms=12.0, run_id="run-a"),  # nothing known: NULL counts and cost
    Row(ts=ts("2026-12-01T13:00:00+00:00"), method="stream", provider="ollama", model="llama3.2",
        outcome="error", latency_ms=1.5, error_kind="network_error", input_tokens=7),
]  # fmt: skip


def batch(rows: list[Row], inserted: list[Row]) -> list[Stmt]:
    """The writer's transaction for `rows`, of which `inserted` are new (the others already there)."""
    spend, scoped, runs = rollups(inserted)
    return [
        Stmt(INSERT_ROW, many=[row.params(4242) for row in rows]),
        Stmt(ADD_SPEND, many=spend),
        Stmt(ADD_SCOPED_SPEND, many=scoped),
        Stmt(ADD_RUN_TOKENS, many=runs),
    ]


async def scenario(engine: SqlEngine) -> dict[str, object]:
    engine.register(ledger_schema.COMPONENT, ledger_schema.ENGINE_MIGRATIONS)
    engine.register(audit.COMPONENT, pg_schema.paired(audit.MIGRATIONS, pg_schema.AUDIT))
    note = AuditNote(ROWS[0].ts, "fallback", "openai", "rate_limited", '{"to": "anthropic:claude"}')
    await engine.write([*batch(ROWS[:2], ROWS[:2]), Stmt(ledger._INSERT_AUDIT, note.params())])
    counts = await engine.write(batch(ROWS, ROWS[2:]))  # the first two again: a retried batch
    assert counts[0] == 2  # what tells the writer that two were there already
    budget = ("*", 5.0, None, 0.8, None, 1000, ROWS[0].ts)
    await engine.write([Stmt(ledger._UPSERT_BUDGET, budget)])
    await engine.write([Stmt(ledger._UPSERT_BUDGET, (*budget[:2], 50.0, *budget[3:]))])
    alerts = [
        (await engine.write([Stmt(MARK_ALERT, ("*", "threshold", "2026-12-01", 1.0))]))[0] for _ in range(2)
    ]
    return {
        "rows": await engine.fetchone("SELECT count(*), sum(cost_usd) FROM ledger"),
        "spend_daily": await engine.fetchall("SELECT day, provider, requests, cost_usd FROM spend_daily ORDER BY day, provider"),
        "spend_daily_scoped": await engine.fetchall("SELECT day, scope, requests, cost_usd FROM spend_daily_scoped ORDER BY day, scope"),
        "run_tokens": await engine.fetchall("SELECT run_id, provider, tokens, cost_usd FROM run_tokens ORDER BY provider"),
        "december": await engine.fetchone(
            "SELECT coalesce(sum(cost_usd), 0) FROM spend_daily WHERE day >= ? AND day < ?", ("2026-12-01", "2027-01-01")
        ),
        "by_day": await engine.fetchall(BY_DAY),
        "budgets": await engine.fetchall("SELECT scope, daily_usd, monthly_usd, run_token_limit_hard FROM budgets"),
        "alerts": alerts,
        "audit": await engine.fetchall("SELECT ts, event, provider, outcome, detail FROM audit"),
    }  # fmt: skip


def test_the_same_rows_give_the_same_figures_on_both_engines(tmp_path: Path, postgres_url: str) -> None:
    async def main() -> tuple[dict[str, object], dict[str, object]]:
        lite = SqliteEngine(Database(tmp_path / "sidecar.db"))
        pg = PgEngine(postgres_url)
        try:
            return await scenario(lite), await scenario(pg)
        finally:
            await lite.aclose()
            await pg.aclose()

    on_sqlite, on_postgres = anyio.run(main)
    assert on_postgres == on_sqlite
    assert on_sqlite["spend_daily"] == [
        ("2026-11-30", "openai", 1, 0.25),
        ("2026-12-01", "anthropic", 1, 0.0),
        ("2026-12-01", "ollama", 1, 0.0),
        ("2026-12-01", "openai", 1, 0.125),
    ]
    assert on_sqlite["spend_daily_scoped"] == [
        ("2026-11-30", "client:alice", 1, 0.25),
        ("2026-11-30", "router:cheap", 1, 0.25),
        ("2026-12-01", "client:alice", 1, 0.125),
    ]
    assert on_sqlite["run_tokens"] == [("run-a", "anthropic", 0, 0.0), ("run-a", "openai", 165, 0.375)]
    assert on_sqlite["rows"] == (4, 0.375) and on_sqlite["december"] == (0.125,)
    assert on_sqlite["by_day"] == [("2026-11-30", 1, 50), ("2026-12-01", 3, 5)]
    assert on_sqlite["budgets"] == [("*", 5.0, 50.0, 1000)]
    assert on_sqlite["alerts"] == [1, 0]
