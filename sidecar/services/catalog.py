"""Discovery methods: `list_providers`, `list_models`, `estimate_cost`.

Everything here answers from memory (the curated catalog, config), with no network call.

Must not know: stdin/stdout, providers' wire formats.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sidecar.core import cost, stub_answers, tokens
from sidecar.core.catalog import ModelInfo
from sidecar.core.models import parse_model
from sidecar.providers.base import ProviderSpec
from sidecar.providers.errors import DISPLAY_NAMES
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.context import CallContext, Handler
from sidecar.services.pricing import Pricing
from sidecar.wire.base import Empty
from sidecar.wire.catalog import (
    CostEstimate,
    EstimateCostParams,
    EstimateCostResult,
    ListModelsParams,
    ListModelsResult,
    ListProvidersResult,
    ModelEntry,
    ProviderInfo,
)

ESTIMATE_METHOD = (
    "offline estimate: about 4 characters per token for Latin text and code, 1 per CJK character, "
    "a fixed cost per image and per message (see sidecar/core/tokens.py); typically within 15% of "
    "the provider's tokenizer"
)


def _entry(info: ModelInfo) -> ModelEntry:
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
    )


class CatalogService:
    def __init__(
        self,
        providers: ProviderRegistry,
        pricing: Pricing,
        circuit_state: Callable[[str], str | None] | None = None,
        key_configured: Callable[[ProviderSpec], Awaitable[bool | None]] | None = None,
        health_state: Callable[[str], str | None] | None = None,
    ) -> None:
        self.providers = providers
        self.pricing = pricing
        self.prices = pricing.book
        self.circuit_state = circuit_state
        self.key_configured = key_configured
        self.health_state = health_state

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
        for pid in wanted:
            spec = self.providers.specs[pid]
            if spec.custom:
                entries.extend(
                    ModelEntry(model=f"{pid}:{m}", provider=pid, id=m, capabilities=["streaming", "tools"])
                    for m in spec.models
                )
                continue
            if pid == "stub":
                entries.extend(_entry(stub_answers.model_info(m)) for m in spec.models)
                continue
            entries.extend(_entry(info) for info, _ in self.prices.models_for(pid))
        return ListModelsResult(models=entries, pricing_date=self.prices.catalog_date)

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
