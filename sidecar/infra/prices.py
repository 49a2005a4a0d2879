"""Prices refreshed on request (`refresh_pricing`), kept in storage so every replica of a team
gateway, and the next start of a desktop sidecar, prices with the same figures.

Today the refreshed prices live only in the process's `PriceBook` and are gone at restart; this
store is the storage seam's home for them (docs/storage-seam.md): one row per (provider, model)
with the entry as JSON and the date it was priced at, written in one transaction per refresh.
Written once against `infra.sql.SqlEngine`, so the same code runs on SQLite and PostgreSQL.

Must not know: where the prices came from (OpenRouter), how a price is applied (core.catalog),
which engine it runs on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

import msgspec

from sidecar.core.catalog import ModelInfo
from sidecar.infra.sql import SqlEngine, Stmt

COMPONENT: Final = "prices"
# Append-only: never edit an entry, add a new one.
MIGRATIONS: Final = (
    "CREATE TABLE price_overrides (provider TEXT NOT NULL, model TEXT NOT NULL, info TEXT NOT NULL, "
    "pricing_date TEXT NOT NULL, PRIMARY KEY (provider, model))",
)
_UPSERT: Final = (
    "INSERT INTO price_overrides (provider, model, info, pricing_date) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (provider, model) DO UPDATE SET info = excluded.info, pricing_date = excluded.pricing_date"
)

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(ModelInfo).decode


class PriceStore(Protocol):
    async def overrides(self) -> list[tuple[ModelInfo, str]]:
        """Every stored entry with its pricing date (`YYYY-MM-DD`)."""
        ...

    async def put_overrides(self, entries: Sequence[ModelInfo], date: str) -> None:
        """Store `entries` priced as of `date`, replacing earlier ones of the same models."""
        ...


class SqlPriceStore:
    """`PriceStore` on either engine."""

    def __init__(self, engine: SqlEngine) -> None:
        self.engine = engine
        engine.register(COMPONENT, MIGRATIONS)

    async def overrides(self) -> list[tuple[ModelInfo, str]]:
        rows = await self.engine.fetchall(
            "SELECT info, pricing_date FROM price_overrides ORDER BY provider, model"
        )
        return [(_decode(str(info)), str(date)) for info, date in rows]

    async def replace(self, provider: str, entries: Sequence[ModelInfo], source: str, date: str) -> None:
        """`infra.price_store.PriceStore.replace`'s signature (what `refresh_pricing` calls)."""
        await self.put_overrides(entries, date)

    async def put_overrides(self, entries: Sequence[ModelInfo], date: str) -> None:
        if not entries:
            return
        rows = [(e.provider, e.model, _encode(e).decode(), date) for e in entries]
        await self.engine.write([Stmt(_UPSERT, many=rows)])
