"""The audit trail of credential and configuration events (a key set, deleted or validated, an
OAuth login finished or failed, a provider switched on or off, an endpoint set or removed, config.toml
reloaded, a budget changed), kept in the state directory's database, table `audit`.

A row is `(id, ts, event, provider, outcome, detail)`: `ts` an ISO 8601 UTC time, `event` one of
`EVENTS`, `outcome` a short word (`ok`, `valid`, `invalid`, `error`, `absent`), `detail` an error
kind or a short note. No key material ever goes in: callers pass no key, and every text field
passes through `redact.redact` as a second net.

Recording never fails the operation it describes: a database problem is logged and dropped.

Must not know: keys, providers' wire formats, the protocol.
"""

from __future__ import annotations

import datetime
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, Protocol, get_args

from sidecar import logs
from sidecar.errors import SidecarError
from sidecar.infra import pg_schema
from sidecar.infra.db import Database
from sidecar.infra.sql import SqlEngine, SqliteEngine, Stmt
from sidecar.redact import redact

COMPONENT: Final = "audit"
# Append-only: never edit an entry, add a new one.
MIGRATIONS: Final = (
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        event TEXT NOT NULL,
        provider TEXT,
        outcome TEXT NOT NULL,
        detail TEXT
    );
    CREATE INDEX audit_ts ON audit (ts);
    """,
)
# Both engines' texts (the SQLite ones above, byte for byte).
ENGINE_MIGRATIONS: Final = pg_schema.paired(MIGRATIONS, pg_schema.AUDIT)
_INSERT: Final = "INSERT INTO audit (ts, event, provider, outcome, detail) VALUES (?, ?, ?, ?, ?)"
_COLUMNS: Final = "id, ts, event, provider, outcome, detail"

Event = Literal[
    "key_set",
    "key_deleted",
    "key_validated",
    "oauth_completed",
    "oauth_failed",
    "client_key_created",
    "client_key_updated",
    "client_key_rotated",
    "client_key_deleted",
    "provider_enabled",
    "provider_disabled",
    "endpoint_set",
    "endpoint_deleted",
    "config_reloaded",
    "budget_set",
]
EVENTS: Final = get_args(Event)
_MAX_DETAIL: Final = 300

_log = logs.get_logger("audit")


class Audit(Protocol):
    async def record(
        self, event: Event, provider: str | None, outcome: str, detail: str | None = None
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    ts: str
    event: str
    provider: str | None
    outcome: str
    detail: str | None


def _iso(ts: float) -> str:
    return (
        datetime.datetime.fromtimestamp(ts, datetime.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _clean(text: str | None) -> str | None:
    if text is None:
        return None
    text = redact(text)
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL] + "…"


class AuditTrail:
    """`Audit` on the storage engine (the state database, or PostgreSQL for a team)."""

    def __init__(self, engine: SqlEngine | Database, clock: Callable[[], float] = time.time) -> None:
        self.engine: SqlEngine = SqliteEngine(engine) if isinstance(engine, Database) else engine
        self._clock = clock
        self.engine.register(COMPONENT, ENGINE_MIGRATIONS)

    async def record(
        self, event: Event, provider: str | None, outcome: str, detail: str | None = None
    ) -> None:
        row = (_iso(self._clock()), event, _clean(provider), _clean(outcome) or "", _clean(detail))
        try:
            await self.engine.write([Stmt(_INSERT, row)])
        except (sqlite3.Error, OSError, SidecarError) as exc:
            _log.warning("audit row not written", audit_event=event, error=type(exc).__name__)

    async def query(
        self, *, since: str | None = None, event: str | None = None, limit: int = 100
    ) -> list[AuditRow]:
        """The latest rows (newest first) at or after the ISO time `since`, of one `event`."""
        where, args = [], []
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if event is not None:
            where.append("event = ?")
            args.append(event)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        sql = f"SELECT {_COLUMNS} FROM audit {clause}ORDER BY id DESC LIMIT ?"
        return [AuditRow(*r) for r in await self.engine.fetchall(sql, (*args, limit))]  # type: ignore[arg-type]

    async def rows(self, limit: int = 100) -> list[AuditRow]:
        """The latest rows, newest first."""
        return await self.query(limit=limit)


class MemoryAudit:
    """`Audit` in a list, for tests."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str | None, str, str | None]] = []

    async def record(
        self, event: Event, provider: str | None, outcome: str, detail: str | None = None
    ) -> None:
        self.rows.append((event, provider, outcome, _clean(detail)))
