"""The PostgreSQL texts of the migrations the existing components keep for SQLite (the usage
ledger with its budgets, and the audit trail), entry for entry.

When a component moves onto the storage seam (docs/storage-seam.md), its migration list becomes
`Dialects(sqlite=<today's text, unchanged>, postgres=<the text here>)` pairs; until then these
texts live here, where a test applies them to a real PostgreSQL next to the SQLite ones and checks
that the same rows give the same rollups and groupings on both engines.

What each translation changes, and why:

- `INTEGER PRIMARY KEY` (SQLite's rowid alias) becomes an identity column;
- `REAL` becomes `DOUBLE PRECISION` (PostgreSQL's `REAL` has 4 bytes), token and request counts
  `BIGINT`;
- `WITHOUT ROWID` has no PostgreSQL meaning and is dropped;
- the rollup triggers (until ledger migration 5, which drops them) become one PL/pgSQL function
  and trigger, with the UTC day of a Unix time
  written `to_char(to_timestamp(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD')` for SQLite's
  `date(ts, 'unixepoch')`;
- everything else (partial indexes, `ON CONFLICT … DO UPDATE`, `coalesce`) is the same text.

Must not know: how the components use their tables; which engine is configured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from sidecar.infra.sql import Dialects, Sql

UTC_DAY: Final = "to_char(to_timestamp({ts}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
"""PostgreSQL for SQLite's `date({ts}, 'unixepoch')`: the UTC day of a Unix time, `YYYY-MM-DD`."""

# infra.ledger_schema.MIGRATIONS, entry for entry.
LEDGER: Final = (
    """
    CREATE TABLE ledger (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        ts DOUBLE PRECISION NOT NULL,
        method TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        outcome TEXT NOT NULL,
        error_kind TEXT,
        input_tokens BIGINT,
        output_tokens BIGINT,
        cache_read_tokens BIGINT,
        cache_write_tokens BIGINT,
        reasoning_tokens BIGINT,
        usage_estimated INTEGER NOT NULL DEFAULT 0,
        cost_usd DOUBLE PRECISION,
        pricing_date TEXT,
        latency_ms DOUBLE PRECISION NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 1,
        run_id TEXT,
        tag TEXT,
        pid INTEGER
    );
    CREATE INDEX ledger_ts ON ledger (ts);
    CREATE INDEX ledger_run_id ON ledger (run_id) WHERE run_id IS NOT NULL;
    CREATE TABLE spend_daily (
        day TEXT NOT NULL,
        provider TEXT NOT NULL,
        requests BIGINT NOT NULL,
        cost_usd DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (day, provider)
    );
    CREATE TABLE run_tokens (
        run_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        tokens BIGINT NOT NULL,
        cost_usd DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (run_id, provider)
    );
    CREATE FUNCTION ledger_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO spend_daily AS s (day, provider, requests, cost_usd)
        VALUES (to_char(to_timestamp(NEW.ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD'), NEW.provider, 1,
                coalesce(NEW.cost_usd, 0))
        ON CONFLICT (day, provider) DO UPDATE SET
            requests = s.requests + 1, cost_usd = s.cost_usd + excluded.cost_usd;
        IF NEW.run_id IS NOT NULL THEN
            INSERT INTO run_tokens AS r (run_id, provider, tokens, cost_usd)
            VALUES (NEW.run_id, NEW.provider,
                    coalesce(NEW.input_tokens, 0) + coalesce(NEW.output_tokens, 0), coalesce(NEW.cost_usd, 0))
            ON CONFLICT (run_id, provider) DO UPDATE SET
                tokens = r.tokens + excluded.tokens, cost_usd = r.cost_usd + excluded.cost_usd;
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER ledger_rollup AFTER INSERT ON ledger FOR EACH ROW EXECUTE FUNCTION ledger_rollup();
    CREATE TABLE budgets (
        scope TEXT PRIMARY KEY,
        daily_usd DOUBLE PRECISION,
        monthly_usd DOUBLE PRECISION,
        alert_threshold DOUBLE PRECISION NOT NULL,
        run_token_limit_soft BIGINT,
        run_token_limit_hard BIGINT,
        updated_ts DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE budget_alerts (
        scope TEXT NOT NULL,
        kind TEXT NOT NULL,
        period_key TEXT NOT NULL,
        sent_ts DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (scope, kind, period_key)
    );
    """,
)

# infra.ledger_schema.MIGRATIONS[4]: the writer sums the rollups per batch; the trigger and its function go.
LEDGER_ROLLUPS_PER_BATCH: Final = """
    DROP TRIGGER IF EXISTS ledger_rollup ON ledger;
    DROP FUNCTION IF EXISTS ledger_rollup();
    """

# infra.ledger_schema.MIGRATIONS[6]: the spend of each client key and router per UTC day.
LEDGER_SCOPED_SPEND: Final = """
    CREATE TABLE spend_daily_scoped (
        day TEXT NOT NULL,
        scope TEXT NOT NULL,
        requests BIGINT NOT NULL,
        cost_usd DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (day, scope)
    );
    INSERT INTO spend_daily_scoped (day, scope, requests, cost_usd)
        SELECT to_char(to_timestamp(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD'), 'client:' || client, count(*),
            coalesce(sum(cost_usd), 0)
        FROM ledger WHERE client IS NOT NULL GROUP BY 1, 2;
    INSERT INTO spend_daily_scoped (day, scope, requests, cost_usd)
        SELECT to_char(to_timestamp(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD'), 'router:' || router, count(*),
            coalesce(sum(cost_usd), 0)
        FROM ledger WHERE router IS NOT NULL GROUP BY 1, 2;
    """

# infra.audit.MIGRATIONS, entry for entry.
AUDIT: Final = (
    """
    CREATE TABLE audit (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        ts TEXT NOT NULL,
        event TEXT NOT NULL,
        provider TEXT,
        outcome TEXT NOT NULL,
        detail TEXT
    );
    CREATE INDEX audit_ts ON audit (ts);
    """,
)


def paired(sqlite: Sequence[str], postgres: Sequence[str]) -> tuple[Sql, ...]:
    """A component's migrations for both engines: each SQLite entry with its PostgreSQL text where
    this module has one, and as it is where it has none (a later entry written in the shared
    subset, such as `ALTER TABLE … ADD COLUMN`, needs no translation)."""
    return tuple(
        Dialects(sqlite=text, postgres=postgres[i]) if i < len(postgres) else text
        for i, text in enumerate(sqlite)
    )
