"""Routers made with `router_set`, kept in the state database (component `routers`): a name and
its settings as JSON. `SqlRouterStore` keeps them on the storage engine (the state database, or
PostgreSQL shared by a team's replicas), written once for both.

Must not know: how routers rank candidates, the protocol.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

import msgspec

from sidecar.infra.db import Database
from sidecar.infra.sql import Dialects, SqlEngine, SqliteEngine, Stmt

COMPONENT: Final = "routers"
# Append-only: never edit an entry, add a new one.
MIGRATIONS: Final = (
    "CREATE TABLE routers (name TEXT PRIMARY KEY, settings TEXT NOT NULL, updated_ts REAL NOT NULL);",
)
ENGINE_MIGRATIONS: Final = (
    Dialects(sqlite=MIGRATIONS[0], postgres=MIGRATIONS[0].replace("REAL", "DOUBLE PRECISION")),
)


class RouterStore(Protocol):
    async def all(self) -> dict[str, dict[str, Any]]: ...

    async def put(self, name: str, settings: dict[str, Any], ts: float) -> None: ...

    async def delete(self, name: str) -> bool: ...


class SqlRouterStore:
    """`RouterStore` on the storage engine (either one)."""

    def __init__(self, engine: SqlEngine | Database) -> None:
        self.engine: SqlEngine = SqliteEngine(engine) if isinstance(engine, Database) else engine
        self.engine.register(COMPONENT, ENGINE_MIGRATIONS)

    async def all(self) -> dict[str, dict[str, Any]]:
        rows = await self.engine.fetchall("SELECT name, settings FROM routers ORDER BY name")
        return {str(name): msgspec.json.decode(str(raw)) for name, raw in rows}

    async def put(self, name: str, settings: dict[str, Any], ts: float) -> None:
        raw = msgspec.json.encode(settings).decode()
        sql = (
            "INSERT INTO routers (name, settings, updated_ts) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET settings = excluded.settings, updated_ts = excluded.updated_ts"
        )
        await self.engine.write([Stmt(sql, (name, raw, ts))])

    async def delete(self, name: str) -> bool:
        (count,) = await self.engine.write([Stmt("DELETE FROM routers WHERE name = ?", (name,))])
        return count > 0


SqliteRouterStore = SqlRouterStore  # the name the gateway branch gave it
