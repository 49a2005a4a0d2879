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
from sidecar.infra.db import Database
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
    """`Audit` on the state database."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock
        db.register(COMPONENT, MIGRATIONS)

    async def record(
        self, event: Event, provider: str | None, outcome: str, detail: str | None = None
    ) -> None:
        row = (_iso(self._clock()), event, _clean(provider), _clean(outcome) or "", _clean(detail))

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO audit (ts, event, provider, outcome, detail) VALUES (?, ?, ?, ?, ?)", row
            )

        try:
            await self.db.run(insert)
        except (sqlite3.Error, OSError) as exc:
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
        sql = f"SELECT id, ts, event, provider, outcome, detail FROM audit {clause}ORDER BY id DESC LIMIT ?"

        def select(conn: sqlite3.Connection) -> list[AuditRow]:
            return [AuditRow(*r) for r in conn.execute(sql, (*args, limit)).fetchall()]

        return await self.db.run(select)

    async def rows(self, limit: int = 100) -> list[AuditRow]:
        """The latest rows, newest first."""

        def select(conn: sqlite3.Connection) -> list[AuditRow]:
            cur = conn.execute(
                "SELECT id, ts, event, provider, outcome, detail FROM audit ORDER BY id DESC LIMIT ?",
                (limit,),
            )
            return [AuditRow(*r) for r in cur.fetchall()]

        return await self.db.run(select)


class MemoryAudit:
    """`Audit` in a list, for tests."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str | None, str, str | None]] = []

    async def record(
        self, event: Event, provider: str | None, outcome: str, detail: str | None = None
    ) -> None:
        self.rows.append((event, provider, outcome, _clean(detail)))
