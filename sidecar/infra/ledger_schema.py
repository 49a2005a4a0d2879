"""The usage ledger's tables and their migrations, on both engines.

Tables (component `ledger`, an append-only list of migrations):

- `ledger`: one row per chat request, whatever its outcome (ok, error, cancelled, refused before
  sending by a budget or a client-side limit, with its `reason`): provider,
  model, the five token counts, `cost_usd`, the pricing date, latency, error kind, attempts,
  `run_id`, `tag`, method and time (`ts`, Unix seconds UTC), the gateway client key (`client`) and
  the router (`router`) it came through, each NULL when there was none. A count is NULL when the
  provider never reported usage (a stream cancelled before its final usage event): the row keeps
  what was known, the chat service estimates it from the text received (`usage_estimated` is 1).
  `uid` is unique, so a batch retried after an error is never counted twice.
- `spend_daily` (day UTC, provider), `spend_daily_scoped` (day UTC, scope: `client:<name>` for a
  gateway client key, `router:<name>` for a router; since migration 7) and `run_tokens` (run id,
  provider): rollups summed per batch (`infra.ledger_rows.rollups`) and written in the same
  transaction as the batch's rows (one upsert per key; per-row triggers did this until migration
  5), so budget checks read a few rows, not a month of requests, and see the other processes'
  spending too.
- `budgets` (one row per scope: `*` overall or a provider id) and `budget_alerts` (which alert
  was sent for which period: the once-per-period rule holds across processes).

Must not know: the statements that write and read rows (`infra.ledger`, `infra.ledger_rows`),
the protocol, providers.
"""

from __future__ import annotations

from typing import Final

from sidecar.infra import pg_schema
from sidecar.infra.sql import Dialects

COMPONENT: Final = "ledger"
# Append-only: never edit an entry, add a new one.
MIGRATIONS: Final = (
    """
    CREATE TABLE ledger (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        ts REAL NOT NULL,
        method TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        outcome TEXT NOT NULL,
        error_kind TEXT,
        input_tokens INTEGER,
        output_tokens INTEGER,
        cache_read_tokens INTEGER,
        cache_write_tokens INTEGER,
        reasoning_tokens INTEGER,
        usage_estimated INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL,
        pricing_date TEXT,
        latency_ms REAL NOT NULL,
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
        requests INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        PRIMARY KEY (day, provider)
    ) WITHOUT ROWID;
    CREATE TABLE run_tokens (
        run_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        PRIMARY KEY (run_id, provider)
    ) WITHOUT ROWID;
    CREATE TRIGGER ledger_spend_rollup AFTER INSERT ON ledger BEGIN
        INSERT INTO spend_daily (day, provider, requests, cost_usd)
        VALUES (date(NEW.ts, 'unixepoch'), NEW.provider, 1, coalesce(NEW.cost_usd, 0))
        ON CONFLICT (day, provider) DO UPDATE SET
            requests = requests + 1, cost_usd = cost_usd + excluded.cost_usd;
    END;
    CREATE TRIGGER ledger_run_rollup AFTER INSERT ON ledger WHEN NEW.run_id IS NOT NULL BEGIN
        INSERT INTO run_tokens (run_id, provider, tokens, cost_usd)
        VALUES (NEW.run_id, NEW.provider,
                coalesce(NEW.input_tokens, 0) + coalesce(NEW.output_tokens, 0), coalesce(NEW.cost_usd, 0))
        ON CONFLICT (run_id, provider) DO UPDATE SET
            tokens = tokens + excluded.tokens, cost_usd = cost_usd + excluded.cost_usd;
    END;
    CREATE TABLE budgets (
        scope TEXT PRIMARY KEY,
        daily_usd REAL,
        monthly_usd REAL,
        alert_threshold REAL NOT NULL,
        run_token_limit_soft INTEGER,
        run_token_limit_hard INTEGER,
        updated_ts REAL NOT NULL
    );
    CREATE TABLE budget_alerts (
        scope TEXT NOT NULL,
        kind TEXT NOT NULL,
        period_key TEXT NOT NULL,
        sent_ts REAL NOT NULL,
        PRIMARY KEY (scope, kind, period_key)
    ) WITHOUT ROWID;
    """,
    # The gateway's client key (its name) that made the request; NULL for the host's own requests.
    """
    ALTER TABLE ledger ADD COLUMN client TEXT;
    CREATE INDEX ledger_client_ts ON ledger (client, ts) WHERE client IS NOT NULL;
    """,
    # A request refused before it was sent (a budget, a client-side limit) is a row with outcome
    # `refused`, zero tokens and cost, and why in `reason`.
    """
    ALTER TABLE ledger ADD COLUMN reason TEXT;
    """,
    # A request answered from the response cache: no tokens, no cost, and what it saved.
    """
    ALTER TABLE ledger ADD COLUMN cache_hit INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE ledger ADD COLUMN saved_usd REAL;
    """,
    # The rollups are summed per batch by the writer, in the batch's transaction (`_write`): the
    # per-row triggers cost most of a commit. The rollup tables keep what they hold.
    """
    DROP TRIGGER IF EXISTS ledger_spend_rollup;
    DROP TRIGGER IF EXISTS ledger_run_rollup;
    """,
    # The router (its name) a `router:<name>` request was expanded from; NULL for the others. The
    # index serves a router's spend today (`router_spends`, which seeds its `usd_per_day` counter);
    # partial, so rows made without a router cost it nothing.
    """
    ALTER TABLE ledger ADD COLUMN router TEXT;
    CREATE INDEX ledger_router_ts ON ledger (router, ts) WHERE router IS NOT NULL;
    """,
    # The spend of each client key and router per UTC day, summed per batch like `spend_daily`:
    # their budgets summed the ledger's rows of the month on every request, a query that grew
    # with the month (56 ms at 133,000 rows). Filled from the rows already there.
    """
    CREATE TABLE spend_daily_scoped (
        day TEXT NOT NULL,
        scope TEXT NOT NULL,
        requests INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        PRIMARY KEY (day, scope)
    ) WITHOUT ROWID;
    INSERT INTO spend_daily_scoped (day, scope, requests, cost_usd)
        SELECT date(ts, 'unixepoch'), 'client:' || client, count(*), coalesce(sum(cost_usd), 0)
        FROM ledger WHERE client IS NOT NULL GROUP BY 1, 2;
    INSERT INTO spend_daily_scoped (day, scope, requests, cost_usd)
        SELECT date(ts, 'unixepoch'), 'router:' || router, count(*), coalesce(sum(cost_usd), 0)
        FROM ledger WHERE router IS NOT NULL GROUP BY 1, 2;
    """,
)
# Both engines' texts: the SQLite ones above byte for byte, PostgreSQL's from `infra.pg_schema`
# (and 8-byte floats where SQLite says REAL).
ENGINE_MIGRATIONS: Final = (
    *pg_schema.paired(MIGRATIONS[:3], pg_schema.LEDGER),
    Dialects(sqlite=MIGRATIONS[3], postgres=MIGRATIONS[3].replace("REAL", "DOUBLE PRECISION")),
    Dialects(sqlite=MIGRATIONS[4], postgres=pg_schema.LEDGER_ROLLUPS_PER_BATCH),
    MIGRATIONS[5],
    Dialects(sqlite=MIGRATIONS[6], postgres=pg_schema.LEDGER_SCOPED_SPEND),
)
