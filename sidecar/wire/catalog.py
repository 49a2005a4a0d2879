"""Wire types of the discovery methods: `info`, `list_providers`, `list_models`, `estimate_cost`.

Must not know: where the catalog's figures come from, the protocol layer.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from sidecar.wire.base import Params, Wire
from sidecar.wire.chat import Message, Tool


class InfoResult(Wire):
    version: str
    methods: list[str]
    notifications: list[str] = msgspec.field(default_factory=list)
    protocol: str = "jsonrpc-2.0/ndjson"
    pricing_date: str | None = None


class ProviderInfo(Wire):
    id: str
    kind: str
    base_url: str
    key_env: str | None = None
    needs_key: bool = True
    custom: bool = False
    models: list[str] = msgspec.field(default_factory=list)
    circuit: str | None = None


class ListProvidersResult(Wire):
    providers: list[ProviderInfo]


class ListModelsParams(Params):
    provider: str | None = None


class ModelEntry(Wire):
    model: str
    provider: str
    id: str
    display_name: str | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    cache_read_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None
    capabilities: list[str] = msgspec.field(default_factory=list)


class ListModelsResult(Wire):
    models: list[ModelEntry]
    pricing_date: str


class EstimateCostParams(Params):
    model: Annotated[str, msgspec.Meta(min_length=1)]
    messages: list[Message] | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=0)] | None = None
    compare: list[str] | None = None
    tools: list[Tool] | None = None


class CostEstimate(Wire):
    model: str
    input_tokens: int
    max_output_tokens: int
    cost_usd: float | None
    cost_usd_max: float | None
    pricing_date: str | None = None
    known_price: bool = True


class EstimateCostResult(Wire):
    model: str
    input_tokens: int
    max_output_tokens: int
    cost_usd: float | None
    cost_usd_max: float | None
    pricing_date: str | None
    estimate_method: str
    comparisons: list[CostEstimate] = msgspec.field(default_factory=list)
