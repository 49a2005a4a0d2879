"""Storage of the gateway's client keys: who may call the local gateway, with what permissions.

Only a key's SHA-256 hash and its first characters (for recognising it in a list) are kept, never
the key. `ClientKeyStore` is the seam: `SqliteClientKeyStore` keeps them in the state database
(component `client_keys`, an append-only list of migrations); a later engine (PostgreSQL) goes
behind the same protocol.

Must not know: HTTP, the protocol, how keys are made or checked (services.client_keys).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol

import msgspec

from sidecar.infra.db import Database

COMPONENT: Final = "client_keys"
# Append-only: never edit an entry, add a new one.
MIGRATIONS: Final = (
    """
    CREATE TABLE client_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        allow TEXT NOT NULL,
        router TEXT,
        daily_usd REAL,
        monthly_usd REAL,
        limits TEXT,
        enabled INTEGER NOT NULL DEFAULT 1,
        created TEXT NOT NULL,
        last_used TEXT
    );
    """,
)

_COLUMNS: Final = (
    "id, name, hash, prefix, allow, router, daily_usd, monthly_usd, limits, enabled, created, last_used"
)


@dataclass(frozen=True, slots=True)
class ClientKeyRecord:
    id: str
    name: str
    hash: str
    prefix: str
    allow: tuple[str, ...]
    router: str | None
    daily_usd: float | None
    monthly_usd: float | None
    limits: dict[str, Any] | None
    enabled: bool
    created: str
    last_used: str | None = None

    def changed(self, **fields: Any) -> ClientKeyRecord:
        return replace(self, **fields)


class ClientKeyStore(Protocol):
    async def all(self) -> list[ClientKeyRecord]: ...

    async def insert(self, record: ClientKeyRecord) -> None:
        """Raises `NameTaken` when another key has the same name."""

    async def update(self, record: ClientKeyRecord) -> None:
        """Replaces the record with the same id (raises `NameTaken` on a name clash)."""

    async def delete(self, key_id: str) -> bool: ...

    async def touch(self, uses: dict[str, str]) -> None:
        """Sets `last_used` (id → ISO time) of several keys at once."""


class NameTaken(Exception):
    pass


def _row(r: tuple[Any, ...]) -> ClientKeyRecord:
    return ClientKeyRecord(
        id=r[0],
        name=r[1],
        hash=r[2],
        prefix=r[3],
        allow=tuple(msgspec.json.decode(r[4])),
        router=r[5],
        daily_usd=r[6],
        monthly_usd=r[7],
        limits=msgspec.json.decode(r[8]) if r[8] else None,
        enabled=bool(r[9]),
        created=r[10],
        last_used=r[11],
    )


def _values(rec: ClientKeyRecord) -> tuple[Any, ...]:
    return (
        rec.id,
        rec.name,
        rec.hash,
        rec.prefix,
        msgspec.json.encode(list(rec.allow)).decode(),
        rec.router,
        rec.daily_usd,
        rec.monthly_usd,
        msgspec.json.encode(rec.limits).decode() if rec.limits else None,
        int(rec.enabled),
        rec.created,
        rec.last_used,
    )


class SqliteClientKeyStore:
    """`ClientKeyStore` on the state database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.register(COMPONENT, MIGRATIONS)

    async def all(self) -> list[ClientKeyRecord]:
        def select(conn: sqlite3.Connection) -> list[ClientKeyRecord]:
            return [_row(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM client_keys ORDER BY created, id")]

        return await self.db.run(select)

    async def insert(self, record: ClientKeyRecord) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    f"INSERT INTO client_keys ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", _values(record)
                )
            except sqlite3.IntegrityError as exc:
                raise NameTaken(record.name) from exc

        await self.db.run(insert)

    async def update(self, record: ClientKeyRecord) -> None:
        values = _values(record)

        def update(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "UPDATE client_keys SET name=?, hash=?, prefix=?, allow=?, router=?, daily_usd=?, "
                    "monthly_usd=?, limits=?, enabled=?, created=?, last_used=? WHERE id=?",
                    (*values[1:], values[0]),
                )
            except sqlite3.IntegrityError as exc:
                raise NameTaken(record.name) from exc

        await self.db.run(update)

    async def delete(self, key_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM client_keys WHERE id = ?", (key_id,)).rowcount > 0

        return await self.db.run(delete)

    async def touch(self, uses: dict[str, str]) -> None:
        def touch(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE client_keys SET last_used = ? WHERE id = ?", [(ts, i) for i, ts in uses.items()]
            )

        await self.db.run(touch)


class MemoryClientKeyStore:
    """`ClientKeyStore` in a dict, for tests."""

    def __init__(self) -> None:
        self.records: dict[str, ClientKeyRecord] = {}

    async def all(self) -> list[ClientKeyRecord]:
        return sorted(self.records.values(), key=lambda r: (r.created, r.id))

    async def insert(self, record: ClientKeyRecord) -> None:
        if any(r.name == record.name for r in self.records.values()):
            raise NameTaken(record.name)
        self.records[record.id] = record

    async def update(self, record: ClientKeyRecord) -> None:
        if any(r.name == record.name and r.id != record.id for r in self.records.values()):
            raise NameTaken(record.name)
        self.records[record.id] = record

    async def delete(self, key_id: str) -> bool:
        return self.records.pop(key_id, None) is not None

    async def touch(self, uses: dict[str, str]) -> None:
        for key_id, ts in uses.items():
            if key_id in self.records:
                self.records[key_id] = self.records[key_id].changed(last_used=ts)
