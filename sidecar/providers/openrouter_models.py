"""OpenRouter's public model list (`GET {base}/models`) turned into catalog price entries.

The list is `{"data": [{id, name, context_length, pricing: {prompt, completion, input_cache_read,
input_cache_write, ...}, top_provider: {max_completion_tokens}, architecture: {input_modalities},
supported_parameters}]}` with prices as strings in USD per token; the
catalog keeps USD per million tokens, converted exactly with `Decimal`. An entry that can't be
read (no id, no prompt or completion price, a price that is not a number) is skipped, not
fatal; OpenRouter's `"-1"` (variable price) is passed on and dropped by
`PriceBook.apply_overrides`.

Must not know: I/O, the clock, where the entries go.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Final

import msgspec

from sidecar.core.catalog import REASONING, STREAMING, TOOLS, VISION, ModelInfo

PROVIDER: Final = "openrouter"
_PER_MTOK: Final = Decimal(1_000_000)
_DIGITS: Final = 10


class _Pricing(msgspec.Struct):
    prompt: str | float | None = None
    completion: str | float | None = None
    input_cache_read: str | float | None = None
    input_cache_write: str | float | None = None


class _TopProvider(msgspec.Struct):
    context_length: int | None = None
    max_completion_tokens: int | None = None


class _Architecture(msgspec.Struct):
    input_modalities: list[str] = msgspec.field(default_factory=list)


class _Model(msgspec.Struct):
    id: str
    name: str | None = None
    context_length: int | None = None
    pricing: _Pricing | None = None
    top_provider: _TopProvider | None = None
    architecture: _Architecture | None = None
    supported_parameters: list[str] | None = None


class _List(msgspec.Struct):
    data: list[Any]


def per_mtok(value: str | float | None) -> float | None:
    """A USD-per-token price as USD per million tokens; None when absent or not a number."""
    if value is None or value == "":
        return None
    try:
        price = Decimal(str(value)) * _PER_MTOK
    except InvalidOperation:
        return None
    if not price.is_finite():
        return None
    return round(float(price), _DIGITS)


def _entry(model: _Model) -> ModelInfo | None:
    pricing = model.pricing
    if pricing is None or not model.id:
        return None
    prompt = per_mtok(pricing.prompt)
    completion = per_mtok(pricing.completion)
    if prompt is None or completion is None:
        return None
    top = model.top_provider or _TopProvider()
    context = model.context_length or top.context_length or 0
    params = set(model.supported_parameters or ())
    capabilities = {STREAMING}
    if "tools" in params:
        capabilities.add(TOOLS)
    if "reasoning" in params or "include_reasoning" in params:
        capabilities.add(REASONING)
    if model.architecture is not None and "image" in model.architecture.input_modalities:
        capabilities.add(VISION)
    return ModelInfo(
        provider=PROVIDER,
        model=model.id,
        display_name=model.name or model.id,
        context_window=context,
        max_output_tokens=top.max_completion_tokens or context,
        input_per_mtok=prompt,
        output_per_mtok=completion,
        cache_read_per_mtok=per_mtok(pricing.input_cache_read),
        cache_write_per_mtok=per_mtok(pricing.input_cache_write),
        capabilities=frozenset(capabilities),
    )


def parse_models(body: bytes) -> tuple[list[ModelInfo], int]:
    """The price entries of a `/models` body, and how many entries were skipped.

    Raises `msgspec.DecodeError` / `msgspec.ValidationError` when the body is not a model list.
    """
    listing = msgspec.json.decode(body, type=_List)
    entries: list[ModelInfo] = []
    skipped = 0
    for raw in listing.data:
        try:
            info = _entry(msgspec.convert(raw, type=_Model))
        except msgspec.ValidationError:
            info = None
        if info is None:
            skipped += 1
        else:
            entries.append(info)
    return entries, skipped
