"""Routers made with `router_set`, kept in the state database (component `routers`): a name and
its settings as JSON. `RouterStore` is the seam a later engine (PostgreSQL) goes behind.

Must not know: how routers rank candidates, the protocol.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Final, Protocol

import msgspec

from sidecar.infra.db import Database

COMPONENT: Final = "routers"
# Append-only: never edit an entry, add a new one.
MIGRATIONS: Final = (
    "CREATE TABLE routers (name TEXT PRIMARY KEY, settings TEXT NOT NULL, updated_ts REAL NOT NULL);",
)


class RouterStore(Protocol):
    async def all(self) -> dict[str, dict[str, Any]]: ...

    async def put(self, name: str, settings: dict[str, Any], ts: float) -> None: ...

    async def delete(self, name: str) -> bool: ...


class SqliteRouterStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.register(COMPONENT, MIGRATIONS)

    async def all(self) -> dict[str, dict[str, Any]]:
        def select(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
            rows = conn.execute("SELECT name, settings FROM routers ORDER BY name").fetchall()
            return {name: msgspec.json.decode(raw) for name, raw in rows}

        return await self.db.run(select)

    async def put(self, name: str, settings: dict[str, Any], ts: float) -> None:
        raw = msgspec.json.encode(settings).decode()

        def put(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO routers (name, settings, updated_ts) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET settings = excluded.settings, "
                "updated_ts = excluded.updated_ts",
                (name, raw, ts),
            )

        await self.db.run(put)

    async def delete(self, name: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM routers WHERE name = ?", (name,)).rowcount > 0

        return await self.db.run(delete)
