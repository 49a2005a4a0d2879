"""Refreshed prices in storage, on SQLite and PostgreSQL alike: stored entries come back whole
(tiers, capabilities, cache prices), a later refresh replaces the same models' entries and keeps
the others, and what is stored feeds a PriceBook exactly as the refresh itself would."""

from __future__ import annotations

from collections.abc import Callable

import anyio

from sidecar.core.catalog import ModelInfo, PriceBook, PriceTier
from sidecar.infra.prices import SqlPriceStore
from sidecar.infra.sql import SqlEngine


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
