"""Providers' own model lists, asked for by `list_models {live: true}` and kept for a while.

Each provider's answer is cached for `ttl_s` (10 minutes) per base URL, so a UI that lists models
on every open asks the provider at most that often; a configuration change that moves a provider
to another URL asks again.

Must not know: stdin/stdout, providers' wire formats (providers.model_lists has them).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Final

import msgspec

from sidecar.providers.model_lists import LiveModel, fetch
from sidecar.providers.registry import ProviderRegistry

TTL_S: Final = 600.0


class Listing(msgspec.Struct, frozen=True):
    models: list[LiveModel]
    fetched_at: str  # ISO 8601 UTC
    cached: bool


class LiveModels:
    def __init__(
        self,
        providers: ProviderRegistry,
        *,
        ttl_s: float = TTL_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.providers = providers
        self.ttl_s = ttl_s
        self._clock = clock
        self._wall = wall_clock
        self._cache: dict[tuple[str, str], tuple[float, Listing]] = {}

    async def listing(self, provider_id: str) -> Listing:
        spec = self.providers.spec(provider_id)
        key = (provider_id, spec.base_url)
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            return Listing(hit[1].models, hit[1].fetched_at, cached=True)
        models = await fetch(self.providers.get(provider_id))
        when = dt.datetime.fromtimestamp(self._wall(), dt.UTC).isoformat(timespec="seconds")
        listing = Listing(models, when.replace("+00:00", "Z"), cached=False)
        self._cache[key] = (now, listing)
        return listing
