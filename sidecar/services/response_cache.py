"""The response cache around `complete` and `stream` (see core.response_cache for what is cached
and how requests are keyed; infra.response_store for where).

`lookup` finds a live answer for a request; `store` keeps a fresh one. A database problem never
fails a request: the cache is skipped and the problem logged.

Must not know: stdin/stdout, providers' wire formats, SQL.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from sidecar import logs
from sidecar.config import Config
from sidecar.core import response_cache as policy
from sidecar.core.models import ModelRef
from sidecar.infra.response_store import ResponseStore
from sidecar.wire.chat import ChatResult, CompleteParams

_log = logs.get_logger("response_cache")
_decode = msgspec.json.Decoder(ChatResult).decode


@dataclass(frozen=True, slots=True)
class Hit:
    result: ChatResult
    cost_usd: float | None  # what the original answer cost: what this hit saved


class ResponseCache:
    def __init__(
        self, store: ResponseStore, config: Callable[[], Config], clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self._config = config
        self.clock = clock

    def ttl_for(self, ref: ModelRef, params: CompleteParams) -> float | None:
        config = self._config()
        configured: float | None = None
        if ref.provider in config.endpoints:
            configured = config.endpoints[ref.provider].response_cache_ttl_s
        elif ref.provider in config.providers:
            configured = config.providers[ref.provider].response_cache_ttl_s
        return policy.ttl_for(params, configured)

    async def lookup(self, ref: ModelRef, params: CompleteParams) -> Hit | None:
        if self.ttl_for(ref, params) is None:
            return None
        try:
            entry = await self.store.get(policy.key(ref, params), self.clock())
        except (sqlite3.Error, OSError) as exc:
            _log.warning("response cache unreadable, skipped", error=type(exc).__name__)
            return None
        if entry is None:
            return None
        try:
            return Hit(_decode(entry.result), entry.cost_usd)
        except msgspec.DecodeError:
            return None

    async def store_result(self, ref: ModelRef, params: CompleteParams, result: ChatResult) -> None:
        ttl = self.ttl_for(ref, params)
        if ttl is None or result.finish_reason not in ("stop", "tool_calls"):
            return  # an answer cut short (length, filter) is not worth replaying
        kept = msgspec.structs.replace(result, attempts=[], latency_ms=None)
        try:
            await self.store.put(
                policy.key(ref, params),
                ref.provider,
                ref.model,
                msgspec.json.encode(kept),
                result.cost_usd,
                self.clock(),
                ttl,
                self._config().response_cache.max_bytes,
            )
        except (sqlite3.Error, OSError) as exc:
            _log.warning("response not cached", error=type(exc).__name__)
