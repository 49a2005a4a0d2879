"""`refresh_pricing`: prices from OpenRouter's model list, applied to the price book at once and
kept (`PriceStore`), so a restart prices with them too.

Must not know: stdin/stdout, SQL, budgets, the ledger.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable
from typing import Final

import msgspec

from sidecar import logs
from sidecar.errors import SidecarError
from sidecar.infra.price_store import PriceStore
from sidecar.infra.prices import SqlPriceStore
from sidecar.providers.http import HttpClient, Timeouts
from sidecar.providers.openrouter_models import parse_models
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.context import CallContext
from sidecar.services.pricing import Pricing
from sidecar.wire.base import Empty
from sidecar.wire.usage import RefreshPricingResult

REFRESH_TIMEOUTS: Final = Timeouts(connect_s=10.0, read_s=30.0)

_log = logs.get_logger("usage")


class PricingRefresh:
    def __init__(
        self,
        pricing: Pricing,
        providers: ProviderRegistry,
        http: HttpClient,
        clock: Callable[[], dt.datetime],
        price_store: PriceStore | SqlPriceStore | None = None,
    ) -> None:
        self.pricing = pricing
        self.providers = providers
        self.http = http
        self.clock = clock
        self.price_store = price_store

    async def refresh_pricing(self, params: Empty, ctx: CallContext) -> RefreshPricingResult:
        spec = self.providers.spec("openrouter")
        url = f"{spec.base_url}/models"
        body, _ = await self.http.request_json("openrouter", "GET", url, timeouts=REFRESH_TIMEOUTS)
        try:
            entries, skipped = parse_models(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise SidecarError(
                "provider_error",
                "OpenRouter's model list could not be read (not the expected JSON); prices were not changed.",
                provider="openrouter",
            ) from None
        date = self.clock().date().isoformat()
        applied = self.pricing.book.apply_overrides(entries, date)
        if self.price_store is not None:  # kept, so a restart prices with them too
            try:
                await self.price_store.replace("openrouter", entries, url, date)
            except (sqlite3.Error, OSError, SidecarError) as exc:
                _log.warning("refreshed prices not saved", error=type(exc).__name__)
        _log.info("prices refreshed", applied=applied, models=len(entries), skipped=skipped)
        return RefreshPricingResult(
            applied=applied,
            models=len(entries),
            skipped=skipped + len(entries) - applied,
            pricing_date=date,
            source=url,
        )
