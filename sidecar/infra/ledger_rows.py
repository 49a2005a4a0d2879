"""What the ledger writes: one request's row (`Row`), an audit-trail row (`AuditNote`), and what a
committed batch of rows adds to the rollup tables (`rollups`), with the statements that write them.

The rollups (`spend_daily` per UTC day and provider, `spend_daily_scoped` per UTC day and named
scope: a gateway client key's, a router's; `run_tokens` per run and provider) are summed here, per
batch, in Python: one upsert per key per transaction, in the same transaction as the rows (a kill
-9 never leaves rows and rollups disagreeing). They replaced per-row triggers, which cost
the writer most of its time. The UTC day of a row is `utc_day(ts)`, the same day SQLite's
`date(ts, 'unixepoch')` and PostgreSQL's `infra.pg_schema.UTC_DAY` give.

Must not know: how rows are queued or committed, budgets, the protocol.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Final, NamedTuple, TypeVar

import msgspec

from sidecar.infra.unique_ids import new_id
from sidecar.redact import redact

_MAX_AUDIT_DETAIL: Final = 300
_EPOCH: Final = dt.date(1970, 1, 1)
_ONE_DAY: Final = dt.timedelta(days=1)


def client_scope(name: str) -> str:
    """The spend scope of a gateway client key, by its name (`spend_daily_scoped.scope`)."""
    return f"client:{name}"


def router_scope(name: str) -> str:
    """The spend scope of a router, by its name (`spend_daily_scoped.scope`)."""
    return f"router:{name}"


@functools.lru_cache(maxsize=128)
def _day_number_iso(number: int) -> str:
    return (_EPOCH + number * _ONE_DAY).isoformat()


def utc_day(ts: float) -> str:
    """`YYYY-MM-DD`, the UTC day of Unix time `ts` (a day starts at its first instant)."""
    return _day_number_iso(int(ts // 86400))


class Row(msgspec.Struct, frozen=True, gc=False):
    """One request as the ledger keeps it (see `infra.ledger` for the columns' meaning)."""

    ts: float
    method: str
    provider: str
    model: str
    outcome: str
    latency_ms: float
    error_kind: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    usage_estimated: bool = False
    cost_usd: float | None = None
    pricing_date: str | None = None
    attempts: int = 1
    run_id: str | None = None
    tag: str | None = None
    client: str | None = None
    reason: str | None = None
    cache_hit: bool = False
    saved_usd: float | None = None
    router: str | None = None
    uid: str = msgspec.field(default_factory=new_id)  # unique across replicas too

    @property
    def day(self) -> str:
        return utc_day(self.ts)

    @property
    def tokens(self) -> int:
        return (self.input_tokens or 0) + (self.output_tokens or 0)

    @property
    def scopes(self) -> tuple[str, ...]:
        """The named scopes whose spend the row counts in: its client key's and its router's."""
        client, router = self.client, self.router
        if client is None:
            return () if router is None else (router_scope(router),)
        return (client_scope(client),) if router is None else (client_scope(client), router_scope(router))

    def params(self, pid: int) -> tuple[object, ...]:
        return (
            self.uid, self.ts, self.method, self.provider, self.model, self.outcome, self.error_kind,
            self.input_tokens, self.output_tokens, self.cache_read_tokens, self.cache_write_tokens,
            self.reasoning_tokens, int(self.usage_estimated), self.cost_usd, self.pricing_date,
            self.latency_ms, self.attempts, self.run_id, self.tag, pid, self.client, self.reason,
            int(self.cache_hit), self.saved_usd, self.router,
        )  # fmt: skip

    def sqlite_params(self, pid: int) -> tuple[object, ...]:
        """`params` as SQLite takes them fastest: NaN for every None (see `SQLITE_NULL`)."""
        n = SQLITE_NULL
        return (
            self.uid, self.ts, self.method, self.provider, self.model, self.outcome,
            n if (v := self.error_kind) is None else v,
            n if (i := self.input_tokens) is None else i,
            n if (i := self.output_tokens) is None else i,
            n if (i := self.cache_read_tokens) is None else i,
            n if (i := self.cache_write_tokens) is None else i,
            n if (i := self.reasoning_tokens) is None else i,
            int(self.usage_estimated),
            n if (f := self.cost_usd) is None else f,
            n if (v := self.pricing_date) is None else v,
            self.latency_ms, self.attempts,
            n if (v := self.run_id) is None else v,
            n if (v := self.tag) is None else v,
            pid,
            n if (v := self.client) is None else v,
            n if (v := self.reason) is None else v,
            int(self.cache_hit),
            n if (f := self.saved_usd) is None else f,
            n if (v := self.router) is None else v,
        )  # fmt: skip


SQLITE_NULL: Final = math.nan
"""A NULL as the ledger binds it on SQLite: SQLite stores a NaN as NULL, and Python's sqlite3 binds
a float at once, where it looks for an adapter for every None (it adapts whatever is not exactly
an int, float, str or bytes): ~0.75 µs for each None against ~0.1 for a float on the 2-core
machine, and a row has four or more. PostgreSQL keeps None (a NaN there is a number)."""

_INSERT_INTO: Final = (
    "INSERT INTO ledger (uid, ts, method, provider, model, outcome, error_kind, input_tokens, "
    "output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, usage_estimated, cost_usd, "
    "pricing_date, latency_ms, attempts, run_id, tag, pid, client, reason, cache_hit, saved_usd, router) "
    "VALUES "
)
_ROW_MARKS: Final = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_ROW: Final = f"{_INSERT_INTO}{_ROW_MARKS} ON CONFLICT (uid) DO NOTHING"
ROWS_PER_INSERT: Final = 32
"""Rows per INSERT statement of a batch: one statement for many rows spares the per-statement
work of `executemany` (~15% of a row's insert); both engines take 32 x 25 parameters."""


@functools.lru_cache(maxsize=ROWS_PER_INSERT)
def insert_rows(count: int) -> str:
    """One INSERT of `count` rows (each row's `params` in turn), skipping a `uid` already there."""
    return f"{_INSERT_INTO}{', '.join([_ROW_MARKS] * count)} ON CONFLICT (uid) DO NOTHING"


def insert_chunks(
    rows: Sequence[Row], pid: int, *, sqlite: bool = False
) -> Iterator[tuple[str, list[object]]]:
    """`rows` as INSERT statements of up to `ROWS_PER_INSERT` rows each, with their parameters
    (`Row.sqlite_params` for SQLite, `Row.params` for PostgreSQL)."""
    for start in range(0, len(rows), ROWS_PER_INSERT):
        chunk = rows[start : start + ROWS_PER_INSERT]
        params: list[object] = []
        if sqlite:
            for row in chunk:
                params += row.sqlite_params(pid)
        else:
            for row in chunk:
                params += row.params(pid)
        yield insert_rows(len(chunk)), params


# The target's own columns are qualified by the table's name, which both engines accept.
ADD_SPEND: Final = (
    "INSERT INTO spend_daily (day, provider, requests, cost_usd) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (day, provider) DO UPDATE SET requests = spend_daily.requests + excluded.requests, "
    "cost_usd = spend_daily.cost_usd + excluded.cost_usd"
)
_ADD_TO_SCOPED: Final = (
    "ON CONFLICT (day, scope) DO UPDATE SET requests = spend_daily_scoped.requests + excluded.requests, "
    "cost_usd = spend_daily_scoped.cost_usd + excluded.cost_usd"
)
ADD_SCOPED_SPEND: Final = (
    "INSERT INTO spend_daily_scoped (day, scope, requests, cost_usd) VALUES (?, ?, ?, ?) " + _ADD_TO_SCOPED
)
# Parameters: the new scope, the old one. The old scope's days are added to what the new one has
# (SQLite needs the SELECT's WHERE to read ON CONFLICT as the upsert's); then delete the old ones.
MOVE_SCOPED_SPEND: Final = (
    "INSERT INTO spend_daily_scoped (day, scope, requests, cost_usd) "
    "SELECT day, ?, requests, cost_usd FROM spend_daily_scoped WHERE scope = ? " + _ADD_TO_SCOPED
)
ADD_RUN_TOKENS: Final = (
    "INSERT INTO run_tokens (run_id, provider, tokens, cost_usd) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (run_id, provider) DO UPDATE SET tokens = run_tokens.tokens + excluded.tokens, "
    "cost_usd = run_tokens.cost_usd + excluded.cost_usd"
)
INSERT_AUDIT: Final = "INSERT INTO audit (ts, event, provider, outcome, detail) VALUES (?, ?, ?, ?, ?)"

RollupParams = list[tuple[str, str, int, float]]
_Key = TypeVar("_Key")


class Rollups(NamedTuple):
    """What a batch adds to each rollup table, one entry per key, sorted by key."""

    spend: RollupParams  # spend_daily: day, provider, requests, cost
    scoped: RollupParams  # spend_daily_scoped: day, scope, requests, cost
    runs: RollupParams  # run_tokens: run id, provider, tokens, cost


def rollups(rows: Iterable[Row]) -> Rollups:
    """What `rows` add to the rollup tables, one entry per key, sorted by key: every writer takes
    the rollup rows' locks in one order (two PostgreSQL replicas' batches would otherwise
    deadlock)."""
    spend: dict[tuple[int, str], list[float]] = {}  # by UTC day number, turned into days below
    scoped: dict[tuple[int, str], list[float]] = {}
    runs: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        cost = row.cost_usd or 0.0
        day = int(row.ts // 86400)
        _count(spend, (day, row.provider), 1, cost)
        for scope in row.scopes:
            _count(scoped, (day, scope), 1, cost)
        if row.run_id is not None:
            _count(runs, (row.run_id, row.provider), row.tokens, cost)
    return Rollups(
        sorted((_day_number_iso(d), p, int(n), c) for (d, p), (n, c) in spend.items()),
        sorted((_day_number_iso(d), s, int(n), c) for (d, s), (n, c) in scoped.items()),
        sorted((a, b, int(n), c) for (a, b), (n, c) in runs.items()),
    )


def _count(totals: dict[_Key, list[float]], key: _Key, n: int, cost: float) -> None:
    entry = totals.get(key)
    if entry is None:
        totals[key] = [n, cost]
    else:
        entry[0] += n
        entry[1] += cost


class AuditNote(msgspec.Struct, frozen=True, gc=False):
    """An audit-trail row (table `audit`, see `infra.audit`): `event` like `fallback`, `budget_set`."""

    ts: float
    event: str
    provider: str | None
    outcome: str
    detail: str | None = None

    def params(self) -> tuple[object, ...]:
        when = dt.datetime.fromtimestamp(self.ts, dt.UTC).isoformat(timespec="milliseconds")
        return (when.replace("+00:00", "Z"), self.event, _clean(self.provider), _clean(self.outcome) or "",
                _clean(self.detail))  # fmt: skip


def _clean(text: str | None) -> str | None:
    if text is None:
        return None
    text = redact(text)
    return text if len(text) <= _MAX_AUDIT_DETAIL else text[:_MAX_AUDIT_DETAIL] + "…"
