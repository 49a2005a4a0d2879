"""Which price applies to a model: the curated catalog (with overrides), zero for local Ollama
models, and the prices a custom endpoint declares in `config.toml`.

Must not know: stdin/stdout, providers' wire formats.
"""

from __future__ import annotations

from sidecar.core import catalog, cost, stub_answers
from sidecar.core.catalog import ModelInfo, PriceBook
from sidecar.core.models import ModelRef
from sidecar.providers.registry import ProviderRegistry
from sidecar.wire.base import Usage


class Pricing:
    def __init__(self, providers: ProviderRegistry, book: PriceBook) -> None:
        self.providers = providers
        self.book = book

    def info_for(self, ref: ModelRef) -> tuple[ModelInfo | None, str | None]:
        """The price entry and its date; `(None, None)` when no price is known."""
        if ref.provider == "ollama":
            return catalog.local_model_info(ref.model), self.book.catalog_date
        if ref.provider == "stub":
            return stub_answers.model_info(ref.model), self.book.catalog_date
        spec = self.providers.specs.get(ref.provider)
        if spec is not None and spec.custom:
            ep = self.providers.config.endpoints[spec.id]
            if ep.input_per_mtok is None and ep.output_per_mtok is None:
                return None, None
            declared = ModelInfo(
                provider=spec.id,
                model=ref.model,
                display_name=ref.model,
                context_window=0,
                max_output_tokens=0,
                input_per_mtok=ep.input_per_mtok or 0.0,
                output_per_mtok=ep.output_per_mtok or 0.0,
            )
            return declared, None
        return self.book.price_for(ref.provider, ref.model)

    def cost(self, ref: ModelRef, usage: Usage) -> tuple[float | None, str | None]:
        info, date = self.info_for(ref)
        if info is None:
            return None, None
        return cost.cost_usd(usage, info), date
