"""The response cache's entries, in the state database (table `response_cache`): one row per
request key with the answer (a `ChatResult` as JSON), what it cost, when it expires and when it
was last used. Past `max_bytes` in total, the least recently used entries are dropped; expired
ones go first.

Must not know: how keys are made, the protocol, providers.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Final

from sidecar.infra.db import Database

COMPONENT: Final = "response_cache"
# Append-only: never edit an entry, add a new one.
MIGRATIONS: Final = (
    """
    CREATE TABLE response_cache (
        key TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        created REAL NOT NULL,
        expires REAL NOT NULL,
        last_used REAL NOT NULL,
        size INTEGER NOT NULL,
        cost_usd REAL,
        result BLOB NOT NULL
    );
    CREATE INDEX response_cache_last_used ON response_cache (last_used);
    """,
)


@dataclass(frozen=True, slots=True)
class Entry:
    result: bytes
    cost_usd: float | None


class ResponseStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.register(COMPONENT, MIGRATIONS)

    async def get(self, key: str, now: float) -> Entry | None:
        """The live entry of `key` (marked used now), or None."""

        def read(conn: sqlite3.Connection) -> Entry | None:
            row = conn.execute(
                "SELECT result, cost_usd FROM response_cache WHERE key = ? AND expires > ?", (key, now)
            ).fetchone()
            if row is None:
                return None
            conn.execute("UPDATE response_cache SET last_used = ? WHERE key = ?", (now, key))
            return Entry(bytes(row[0]), row[1])

        return await self.db.run(read)

    async def put(
        self,
        key: str,
        provider: str,
        model: str,
        result: bytes,
        cost_usd: float | None,
        now: float,
        ttl_s: float,
        max_bytes: int,
    ) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT OR REPLACE INTO response_cache VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (key, provider, model, now, now + ttl_s, now, len(result), cost_usd, result),
                )
                conn.execute("DELETE FROM response_cache WHERE expires <= ?", (now,))
                total = conn.execute("SELECT coalesce(sum(size), 0) FROM response_cache").fetchone()[0]
                if total > max_bytes:
                    # Least recently used first, until the rest fits.
                    cur = conn.execute("SELECT key, size FROM response_cache ORDER BY last_used, created")
                    drop = []
                    for k, size in cur.fetchall():
                        if total <= max_bytes:
                            break
                        drop.append((k,))
                        total -= size
                    conn.executemany("DELETE FROM response_cache WHERE key = ?", drop)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self.db.run(write)

    async def stats(self) -> tuple[int, int]:
        """(entries, bytes) held now."""

        def read(conn: sqlite3.Connection) -> tuple[int, int]:
            row = conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM response_cache").fetchone()
            return int(row[0]), int(row[1])

        return await self.db.run(read)
