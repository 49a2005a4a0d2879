"""Wire types of the discovery methods: `info`, `list_providers`, `list_models`, `estimate_cost`.

Must not know: where the catalog's figures come from, the protocol layer.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from sidecar.wire.base import ErrorData, Params, Wire
from sidecar.wire.chat import Message, Tool


class InfoResult(Wire):
    version: str
    methods: list[str]
    notifications: list[str] = msgspec.field(default_factory=list)
    protocol: str = "jsonrpc-2.0/ndjson"
    pricing_date: str | None = None
    config_path: str | None = None
    """The config.toml this process read (or would read: a missing file means defaults)."""
    state_dir: str | None = None
    """The state directory in use (`SIDECAR_HOME`, else the OS's per-user data directory)."""
    log_level: str | None = None
    """The log threshold in use (`debug`, `info`, `warning`, `error`)."""


class ProviderInfo(Wire):
    """One provider. `enabled` false means its requests are refused and fallback skips it;
    `key_configured` says whether a key is in the environment or the keychain (always true for a
    provider that needs none); `default_model` is what `<id>:` alone means; `health` is the last
    probe's status (`healthy`, `degraded`, `unhealthy`), null before any probe."""

    id: str
    kind: str
    base_url: str
    key_env: str | None = None
    needs_key: bool = True
    custom: bool = False
    models: list[str] = msgspec.field(default_factory=list)
    circuit: str | None = None
    display_name: str | None = None
    enabled: bool = True
    key_configured: bool | None = None
    default_model: str | None = None
    capabilities: list[str] = msgspec.field(default_factory=list)
    health: str | None = None


class ListProvidersResult(Wire):
    providers: list[ProviderInfo]


class ListModelsParams(Params):
    """`live` asks the provider (or each provider) for the models it serves now (cached 10 minutes);
    otherwise the answer comes from the built-in catalog and config.toml, with no network call."""

    provider: str | None = None
    live: bool = False


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
    # Where the prices come from: "catalog" (built in), "refreshed" (refresh_pricing), "live" (the
    # provider's own listing), "config" (an endpoint's declared prices), "local" (Ollama, free),
    # "stub" (free); and the date they were current.
    price_source: str | None = None
    price_date: str | None = None


class LiveSource(Wire):
    """One provider asked by a `live` listing: when its list was fetched, whether it came from the
    cache, or why it could not be read."""

    provider: str
    fetched_at: str | None = None
    cached: bool = False
    count: int = 0
    error: ErrorData | None = None


class ListModelsResult(Wire):
    models: list[ModelEntry]
    pricing_date: str
    live: list[LiveSource] = msgspec.field(default_factory=list)


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
