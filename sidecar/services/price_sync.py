"""Prices another replica refreshed, taken up by this one.

A team gateway's replicas keep refreshed prices in one table (`infra.prices`, in the shared
database). `SharedPrices.sync` reads it and, when it differs from what this replica last applied,
overlays every stored entry on the `PriceBook`; `run` does that every `PRICES_TTL_S` in the
background, off every request's path, so a `refresh_pricing` through one replica prices the
requests of every other within a few seconds. The table holds one row per model (a few hundred),
so reading it whole is cheaper than keeping a version stamp beside it. A database that cannot be
read leaves the prices as they are (logged once per outage) and is tried again at the next tick.

Must not know: SQL, which engine holds the table, where prices are fetched from, the protocol.
"""

from __future__ import annotations

from typing import Final, Protocol

import anyio

from sidecar import logs
from sidecar.core.catalog import ModelInfo, PriceBook
from sidecar.errors import SidecarError

PRICES_TTL_S: Final = 5.0
"""How often a replica re-reads the shared prices; another replica's refresh is used within this."""

_log = logs.get_logger("prices")


class StoredPrices(Protocol):
    async def overrides(self) -> list[tuple[ModelInfo, str]]: ...


class SharedPrices:
    def __init__(self, store: StoredPrices, book: PriceBook, interval_s: float = PRICES_TTL_S) -> None:
        self.store = store
        self.book = book
        self.interval_s = interval_s
        self._seen: list[tuple[ModelInfo, str]] | None = None
        self._failing = False

    async def sync(self) -> bool:
        """Apply the stored prices if they changed since the last call; True when they did."""
        stored = await self.store.overrides()
        if stored == self._seen:
            return False
        by_date: dict[str, list[ModelInfo]] = {}
        for info, date in stored:
            by_date.setdefault(date, []).append(info)
        for date, entries in sorted(by_date.items()):
            self.book.apply_overrides(entries, date)
        if self._seen is not None:
            _log.info("shared prices changed, applied", entries=len(stored))
        self._seen = stored
        return True

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            try:
                await self.sync()
                self._failing = False
            except SidecarError as exc:
                if not self._failing:
                    _log.warning("shared prices not read", error=exc.kind)
                self._failing = True
            await anyio.sleep(self.interval_s)
