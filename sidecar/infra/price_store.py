"""Prices fetched at run time (`refresh_pricing`), kept in the state database (table `prices`) so
they survive a restart: one row per (provider, model) with the prices, where they came from and the
date they were current. A refresh replaces every row of the provider it read.

Must not know: where prices are fetched from, the protocol.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

import msgspec

from sidecar.core.catalog import ModelInfo
from sidecar.infra.db import Database

COMPONENT: Final = "prices"
# Append-only: never edit an entry, add a new one.
MIGRATIONS: Final = (
    """
    CREATE TABLE prices (
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        display_name TEXT NOT NULL,
        context_window INTEGER NOT NULL,
        max_output_tokens INTEGER NOT NULL,
        input_per_mtok REAL NOT NULL,
        output_per_mtok REAL NOT NULL,
        cache_read_per_mtok REAL,
        cache_write_per_mtok REAL,
        capabilities TEXT NOT NULL,
        source TEXT NOT NULL,
        price_date TEXT NOT NULL,
        PRIMARY KEY (provider, model)
    );
    """,
)


class StoredPrice(msgspec.Struct, frozen=True):
    info: ModelInfo
    source: str
    price_date: str


class PriceStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.register(COMPONENT, MIGRATIONS)

    async def replace(
        self, provider: str, entries: Sequence[ModelInfo], source: str, price_date: str
    ) -> None:
        import json  # only once prices are stored or read, not at start

        rows = [
            (
                e.provider,
                e.model,
                e.display_name,
                e.context_window,
                e.max_output_tokens,
                e.input_per_mtok,
                e.output_per_mtok,
                e.cache_read_per_mtok,
                e.cache_write_per_mtok,
                json.dumps(sorted(e.capabilities)),
                source,
                price_date,
            )
            for e in entries
        ]

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM prices WHERE provider = ?", (provider,))
                conn.executemany("INSERT OR REPLACE INTO prices VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self.db.run(write)

    def load_sync(self) -> list[StoredPrice]:
        """Every stored price (read once, when prices are first needed)."""

        def read(conn: sqlite3.Connection) -> list[StoredPrice]:
            import json

            out = []
            for r in conn.execute("SELECT * FROM prices ORDER BY provider, model"):
                info = ModelInfo(
                    provider=r[0],
                    model=r[1],
                    display_name=r[2],
                    context_window=r[3],
                    max_output_tokens=r[4],
                    input_per_mtok=r[5],
                    output_per_mtok=r[6],
                    cache_read_per_mtok=r[7],
                    cache_write_per_mtok=r[8],
                    capabilities=frozenset(json.loads(r[9])),
                )
                out.append(StoredPrice(info, r[10], r[11]))
            return out

        return self.db.run_sync(read)
