"""Storage of the gateway's client keys: who may call the local gateway, with what permissions.

Only a key's SHA-256 hash and its first characters (for recognising it in a list) are kept, never
the key. `ClientKeyStore` is the seam: `SqliteClientKeyStore` keeps them in the state database
(component `client_keys`, an append-only list of migrations); `SqlClientKeyStore` keeps them on
the storage engine (the state database, or PostgreSQL shared by a team's replicas), written once
for both.

Must not know: HTTP, the protocol, how keys are made or checked (services.client_keys).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Final, Protocol

import msgspec

from sidecar.infra.db import Database
from sidecar.infra.sql import Conflict, Dialects, SqlEngine, SqliteEngine, Stmt

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
# Both engines' texts (the SQLite one above, byte for byte; money as 8-byte floats on PostgreSQL).
ENGINE_MIGRATIONS: Final = (
    Dialects(
        sqlite=MIGRATIONS[0],
        postgres=MIGRATIONS[0].replace("REAL", "DOUBLE PRECISION"),
    ),
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


class SqlClientKeyStore:
    """`ClientKeyStore` on the storage engine (either one)."""

    def __init__(self, engine: SqlEngine | Database) -> None:
        self.engine: SqlEngine = SqliteEngine(engine) if isinstance(engine, Database) else engine
        self.engine.register(COMPONENT, ENGINE_MIGRATIONS)

    async def all(self) -> list[ClientKeyRecord]:
        rows = await self.engine.fetchall(f"SELECT {_COLUMNS} FROM client_keys ORDER BY created, id")
        return [_row(r) for r in rows]

    async def insert(self, record: ClientKeyRecord) -> None:
        sql = f"INSERT INTO client_keys ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
        try:
            await self.engine.write([Stmt(sql, _values(record))])
        except Conflict as exc:
            raise NameTaken(record.name) from exc

    async def update(self, record: ClientKeyRecord) -> None:
        values = _values(record)
        sql = (
            "UPDATE client_keys SET name=?, hash=?, prefix=?, allow=?, router=?, daily_usd=?, "
            "monthly_usd=?, limits=?, enabled=?, created=?, last_used=? WHERE id=?"
        )
        try:
            await self.engine.write([Stmt(sql, (*values[1:], values[0]))])
        except Conflict as exc:
            raise NameTaken(record.name) from exc

    async def delete(self, key_id: str) -> bool:
        (count,) = await self.engine.write([Stmt("DELETE FROM client_keys WHERE id = ?", (key_id,))])
        return count > 0

    async def touch(self, uses: dict[str, str]) -> None:
        if uses:
            rows = [(ts, key_id) for key_id, ts in uses.items()]
            await self.engine.write([Stmt("UPDATE client_keys SET last_used = ? WHERE id = ?", many=rows)])


SqliteClientKeyStore = SqlClientKeyStore  # the name the gateway branch gave it


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
