"""Discovery methods: `list_providers`, `list_models`, `estimate_cost`.

Everything here answers from memory (the curated catalog, config), with no network call, except
`list_models {live: true}`, which asks the providers (services.live_models, cached).

Must not know: stdin/stdout, providers' wire formats.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec

from sidecar.core import catalog, cost, stub_answers, tokens
from sidecar.core.catalog import ModelInfo
from sidecar.core.models import ModelRef, parse_model
from sidecar.errors import SidecarError
from sidecar.providers.base import ProviderSpec
from sidecar.providers.errors import DISPLAY_NAMES
from sidecar.providers.model_lists import LiveModel
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.context import CallContext, Handler
from sidecar.services.live_models import LiveModels
from sidecar.services.pricing import Pricing
from sidecar.wire.base import Empty
from sidecar.wire.catalog import (
    CostEstimate,
    EstimateCostParams,
    EstimateCostResult,
    ListModelsParams,
    ListModelsResult,
    ListProvidersResult,
    LiveSource,
    ModelEntry,
    ProviderInfo,
)

ESTIMATE_METHOD = (
    "offline estimate: about 4 characters per token for Latin text and code, 1 per CJK character, "
    "a fixed cost per image and per message (see sidecar/core/tokens.py); typically within 15% of "
    "the provider's tokenizer"
)


def _entry(info: ModelInfo, source: str | None = None, date: str | None = None) -> ModelEntry:
    return ModelEntry(
        model=info.ref,
        provider=info.provider,
        id=info.model,
        display_name=info.display_name,
        context_window=info.context_window,
        max_output_tokens=info.max_output_tokens,
        input_per_mtok=info.input_per_mtok,
        output_per_mtok=info.output_per_mtok,
        cache_read_per_mtok=info.cache_read_per_mtok,
        cache_write_per_mtok=info.cache_write_per_mtok,
        capabilities=sorted(info.capabilities),
        price_source=source,
        price_date=date,
    )


class CatalogService:
    def __init__(
        self,
        providers: ProviderRegistry,
        pricing: Pricing,
        circuit_state: Callable[[str], str | None] | None = None,
        key_configured: Callable[[ProviderSpec], Awaitable[bool | None]] | None = None,
        health_state: Callable[[str], str | None] | None = None,
        live: LiveModels | None = None,
    ) -> None:
        self.providers = providers
        self.pricing = pricing
        self.prices = pricing.book
        self.circuit_state = circuit_state
        self.key_configured = key_configured
        self.health_state = health_state
        self.live = live

    def handlers(self) -> dict[str, Handler]:
        return {
            "list_providers": self.list_providers,
            "list_models": self.list_models,
            "estimate_cost": self.estimate_cost,
        }

    async def list_providers(self, params: Empty, ctx: CallContext) -> ListProvidersResult:
        infos = []
        for spec in self.providers.specs.values():
            configured: bool | None = True
            if spec.needs_key:
                configured = await self.key_configured(spec) if self.key_configured else None
            infos.append(
                ProviderInfo(
                    id=spec.id,
                    kind=spec.kind,
                    base_url=spec.base_url,
                    key_env=spec.key_env,
                    needs_key=spec.needs_key,
                    custom=spec.custom,
                    models=list(spec.models),
                    circuit=self.circuit_state(spec.id) if self.circuit_state else None,
                    display_name=_display_name(spec),
                    enabled=self.providers.enabled(spec.id),
                    key_configured=configured,
                    default_model=spec.default_model,
                    capabilities=self._capabilities(spec),
                    health=self.health_state(spec.id) if self.health_state else None,
                )
            )
        return ListProvidersResult(providers=infos)

    def _capabilities(self, spec: ProviderSpec) -> list[str]:
        """What some model of the provider can do (the catalog's figures; custom and local
        endpoints are assumed to stream and call tools, as OpenAI-compatible servers do)."""
        if spec.custom or spec.kind in ("ollama", "stub"):
            return ["streaming", "tools"]
        found: set[str] = set()
        for info, _ in self.prices.models_for(spec.id):
            found |= info.capabilities
        return sorted(found)

    async def list_models(self, params: ListModelsParams, ctx: CallContext) -> ListModelsResult:
        wanted = [params.provider] if params.provider else self.providers.ids
        if params.provider:
            self.providers.spec(params.provider)  # unknown provider -> unsupported_provider
        entries: list[ModelEntry] = []
        sources: list[LiveSource] = []
        for pid in wanted:
            if params.live and self.live is not None:
                if params.provider is None and not await self._worth_asking(pid):
                    continue
                try:
                    listing = await self.live.listing(pid)
                except SidecarError as exc:
                    if params.provider is not None:
                        raise
                    sources.append(LiveSource(provider=pid, error=exc.data()))
                    continue
                day = listing.fetched_at[:10]
                entries.extend(self._live_entry(pid, m, day) for m in listing.models)
                sources.append(
                    LiveSource(
                        provider=pid,
                        fetched_at=listing.fetched_at,
                        cached=listing.cached,
                        count=len(listing.models),
                    )
                )
                continue
            entries.extend(self._known(pid))
        return ListModelsResult(models=entries, pricing_date=self.prices.catalog_date, live=sources)

    async def _worth_asking(self, pid: str) -> bool:
        """Listing every provider live asks only those switched on that have a key (or need none)."""
        spec = self.providers.specs[pid]
        if not self.providers.enabled(pid):
            return False
        if not spec.needs_key:
            return True
        return bool(await self.key_configured(spec)) if self.key_configured else False

    def _known(self, pid: str) -> list[ModelEntry]:
        spec = self.providers.specs[pid]
        if spec.custom:
            out = []
            for m in spec.models:
                info, _ = self.pricing.info_for(ModelRef(pid, m))
                if info is None:
                    out.append(
                        ModelEntry(
                            model=f"{pid}:{m}", provider=pid, id=m, capabilities=["streaming", "tools"]
                        )
                    )
                else:
                    entry = _entry(info, "config", None)
                    out.append(msgspec.structs.replace(entry, capabilities=["streaming", "tools"]))
            return out
        if pid == "stub":
            return [_entry(stub_answers.model_info(m), "stub", None) for m in spec.models]
        return [
            _entry(info, "refreshed" if self.prices.overridden(pid, info.model) else "catalog", date)
            for info, date in self.prices.models_for(pid)
        ]

    def _live_entry(self, pid: str, live: LiveModel, day: str) -> ModelEntry:
        if live.priced is not None:
            return _entry(live.priced, "live", day)
        spec = self.providers.specs[pid]
        if spec.kind == "ollama":
            info: ModelInfo | None = catalog.local_model_info(live.id, context_window=live.context_window)
            source, date = "local", None
        elif spec.kind == "stub":
            info, source, date = stub_answers.model_info(live.id), "stub", None
        else:
            info, date = self.pricing.info_for(ModelRef(pid, live.id))
            if spec.custom:
                source = "config"
            elif info is not None and self.prices.overridden(info.provider, info.model):
                source = "refreshed"
            else:
                source = "catalog"
        if info is None:
            return ModelEntry(
                model=f"{pid}:{live.id}",
                provider=pid,
                id=live.id,
                display_name=live.display_name,
                context_window=live.context_window,
                max_output_tokens=live.max_output_tokens,
            )
        entry = _entry(info, source, date)
        return msgspec.structs.replace(
            entry,
            model=f"{pid}:{live.id}",
            id=live.id,
            display_name=live.display_name or entry.display_name,
            context_window=live.context_window or entry.context_window,
            max_output_tokens=live.max_output_tokens or entry.max_output_tokens,
        )

    async def estimate_cost(self, params: EstimateCostParams, ctx: CallContext) -> EstimateCostResult:
        input_tokens = tokens.estimate_input_tokens(params.messages or [], params.tools)
        first = self._estimate(params.model, input_tokens, params.max_tokens)
        comparisons = [self._estimate(m, input_tokens, params.max_tokens) for m in params.compare or []]
        return EstimateCostResult(
            model=first.model,
            input_tokens=input_tokens,
            max_output_tokens=first.max_output_tokens,
            cost_usd=first.cost_usd,
            cost_usd_max=first.cost_usd_max,
            pricing_date=first.pricing_date,
            estimate_method=ESTIMATE_METHOD,
            comparisons=comparisons,
        )

    def _estimate(self, model: str, input_tokens: int, max_tokens: int | None) -> CostEstimate:
        ref = parse_model(model, self.providers.specs)
        info, date = self.pricing.info_for(ref)
        if info is None:
            return CostEstimate(
                model=str(ref),
                input_tokens=input_tokens,
                max_output_tokens=max_tokens or 0,
                cost_usd=None,
                cost_usd_max=None,
                known_price=False,
            )
        out = max_tokens if max_tokens is not None else info.max_output_tokens
        span = cost.estimate(info, input_tokens, out)
        return CostEstimate(
            model=str(ref),
            input_tokens=input_tokens,
            max_output_tokens=out,
            cost_usd=span.input_cost,
            cost_usd_max=span.max_total,
            pricing_date=date,
        )


def _display_name(spec: ProviderSpec) -> str:
    if spec.id == "stub":
        return "Stub (offline)"
    return DISPLAY_NAMES.get(spec.id, spec.id)
