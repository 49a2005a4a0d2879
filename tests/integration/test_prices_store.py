"""Refreshed prices in storage, on SQLite and PostgreSQL alike: stored entries come back whole
(tiers, capabilities, cache prices), a later refresh replaces the same models' entries and keeps
the others, and what is stored feeds a PriceBook exactly as the refresh itself would; another
replica takes up what one stored at its next sync."""

from __future__ import annotations

from collections.abc import Callable

import anyio

from sidecar.core.catalog import ModelInfo, PriceBook, PriceTier
from sidecar.infra.prices import SqlPriceStore
from sidecar.infra.sql import SqlEngine
from sidecar.services.price_sync import SharedPrices


def entry(model: str, input_price: float, **extra: object) -> ModelInfo:
    return ModelInfo(
        provider="openrouter", model=model, display_name=model.title(), context_window=128_000,
        max_output_tokens=8192, input_per_mtok=input_price, output_per_mtok=input_price * 4, **extra,  # type: ignore[arg-type]
    )  # fmt: skip


def test_refreshed_prices_are_kept_and_replaced_per_model(sql_engine: Callable[[], SqlEngine]) -> None:
    rich = entry(
        "vendor/rich", 3.0, cache_read_per_mtok=0.3, capabilities=frozenset({"tools", "vision"}),
        long_context=PriceTier(above_input_tokens=200_000, input_per_mtok=6.0, output_per_mtok=22.5),
    )  # fmt: skip

    async def main() -> None:
        engine = sql_engine()
        try:
            store = SqlPriceStore(engine)
            assert await store.overrides() == []
            await store.put_overrides([rich, entry("vendor/plain", 1.0)], "2026-11-30")
            await store.put_overrides([entry("vendor/plain", 0.5)], "2026-12-01")
            stored = await store.overrides()
            assert stored == [(entry("vendor/plain", 0.5), "2026-12-01"), (rich, "2026-11-30")]

            # Another replica (a fresh store on the same database) applies them as the refresh did.
            book = PriceBook()
            for info, date in await SqlPriceStore(engine).overrides():
                book.apply_overrides([info], date)
            assert book.price_for("openrouter", "vendor/plain") == (entry("vendor/plain", 0.5), "2026-12-01")
        finally:
            await engine.aclose()

    anyio.run(main)


def test_a_replica_takes_up_prices_another_refreshed(sql_engine: Callable[[], SqlEngine]) -> None:
    """Two replicas' `SharedPrices` on one database: what one stores, the other applies at its
    next sync (nothing when nothing changed; a database that can't be read changes nothing)."""

    async def main() -> None:
        engine = sql_engine()
        try:
            mine = PriceBook()
            here = SharedPrices(SqlPriceStore(engine), mine)
            there = SqlPriceStore(engine)  # the replica that refreshes
            assert await here.sync() is True and await here.sync() is False  # empty, then unchanged
            before = mine.price_for("openrouter", "openai/gpt-4o-mini")
            await there.put_overrides([entry("openai/gpt-4o-mini", 9.0)], "2026-12-01")
            assert mine.price_for("openrouter", "openai/gpt-4o-mini") == before
            assert await here.sync() is True
            assert mine.price_for("openrouter", "openai/gpt-4o-mini") == (
                entry("openai/gpt-4o-mini", 9.0),
                "2026-12-01",
            )
            assert await here.sync() is False
        finally:
            await engine.aclose()

    anyio.run(main)
