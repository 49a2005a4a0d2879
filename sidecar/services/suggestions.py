"""Adds a way on to the errors of `complete`/`stream`: `model_not_found` names close model ids
(`details.suggestions`); an exhausted budget, a disabled provider or an open circuit breaker names
an available alternative of about the same price on another provider (`details.alternative`),
one that is switched on, has a key (or needs none) and whose breaker is closed.

Must not know: stdin/stdout, providers' wire formats.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sidecar.core import stub_answers, suggest
from sidecar.core.catalog import ModelInfo
from sidecar.core.models import ModelRef
from sidecar.errors import SidecarError
from sidecar.providers.base import ProviderSpec
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.pricing import Pricing

# The stub answers without a model and Ollama only has what is installed: neither is proposed.
_NEVER_PROPOSED = frozenset({"stub", "ollama"})


class Suggestions:
    def __init__(
        self,
        providers: ProviderRegistry,
        pricing: Pricing,
        *,
        key_configured: Callable[[ProviderSpec], Awaitable[bool | None]],
        circuit_state: Callable[[str], str | None],
    ) -> None:
        self.providers = providers
        self.pricing = pricing
        self.key_configured = key_configured
        self.circuit_state = circuit_state

    async def __call__(self, error: SidecarError, ref: ModelRef) -> None:
        try:
            if error.kind == "model_not_found":
                self._close_models(error, ref)
            elif error.kind in ("budget_exceeded", "provider_disabled") or (
                error.kind == "provider_error" and "circuit breaker" in error.message
            ):
                await self._alternative(error, ref)
        except Exception:  # a suggestion must never replace the error it decorates
            return

    def _known_ids(self, provider: str) -> list[str]:
        spec = self.providers.specs.get(provider)
        if spec is None:
            return []
        if provider == "stub":
            return list(stub_answers.MODELS)
        ids = [info.model for info, _ in self.pricing.book.models_for(provider)]
        return [*ids, *spec.models]

    def _close_models(self, error: SidecarError, ref: ModelRef) -> None:
        close = suggest.close_ids(ref.model, self._known_ids(ref.provider))
        close = [c for c in close if c != ref.model]
        if not close:
            return
        named = ", ".join(f"{ref.provider}:{c}" for c in close)
        error.message = f"{error.message} Close model ids: {named}."
        error.details = {**error.details, "suggestions": [f"{ref.provider}:{c}" for c in close]}

    async def _alternative(self, error: SidecarError, ref: ModelRef) -> None:
        original, _ = self.pricing.info_for(ref)
        candidates: list[ModelInfo] = []
        for pid, spec in self.providers.specs.items():
            if pid == ref.provider or pid in _NEVER_PROPOSED or spec.custom:
                continue
            if not self.providers.enabled(pid) or self.circuit_state(pid) == "open":
                continue
            if spec.needs_key and not await self.key_configured(spec):
                continue
            candidates.extend(info for info, _ in self.pricing.book.models_for(pid))
        chosen = suggest.same_tier(original, candidates)
        if chosen is None:
            return
        error.message = f"{error.message} An available alternative of about the same price: {chosen.ref}."
        error.details = {**error.details, "alternative": chosen.ref}
