"""The table of every host method and notification: the single source of `schemas/`, the MCP tools
list and the dispatcher's decoders.

A new method is one row here, its structs, its handler and a regenerated schema.

Rows name their structs as `"<module>.<Struct>"` in `sidecar.wire`, loaded on first use: building
every method's structs costs a start-up several times what the first answer needs (`info` loads
`base`, `catalog` and `chat`). `params` and `result` give the classes themselves.

The specs are frozen msgspec Structs rather than dataclasses, which would generate and compile
their methods at every start.

Must not know: handlers, the protocol layer, providers.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from sidecar.wire.base import Wire


@cache
def wire_type(at: str) -> type[Wire]:
    """The struct `at` names (`"chat.CompleteParams"` is `sidecar.wire.chat.CompleteParams`)."""
    module, _, name = at.rpartition(".")
    found: type[Wire] = getattr(importlib.import_module(f"sidecar.wire.{module}"), name)
    return found


class MethodSpec(msgspec.Struct, frozen=True):
    """One method: its name, its structs, what `schemas/` and the MCP tools list say of it."""

    name: str
    params_at: str  # `"<module>.<Struct>"` in sidecar.wire: see `params`
    result_at: str
    summary: str
    description: str
    notifications: tuple[str, ...] = ()
    # True for methods whose notifications are progress a UI may draw (MCP progress, too).
    streaming: bool = False
    # True when the handler never suspends (no I/O, no lock, no sleep) and enters no cancel scope:
    # the stdio face answers it on the read, with no task and no cancel scope, as nothing could
    # cancel it midway anyway.
    inline: bool = False
    # True when the handler returns the very same result object for as long as its answer stays
    # the same, and never changes an object it has returned: the stdio face encodes that object
    # once and reuses the bytes, with each request's own id.
    same_result: bool = False

    @property
    def params(self) -> type[Wire]:
        return wire_type(self.params_at)

    @property
    def result(self) -> type[Wire]:
        return wire_type(self.result_at)


class ToolHints(msgspec.Struct, frozen=True):
    """What an MCP client may assume about a method offered as a tool (MCP `ToolAnnotations`).

    - `read_only`: changes nothing (no key, model, budget or setting is added, changed or removed).
    - `destructive`: may remove something that cannot be brought back from the call's result.
    - `open_world`: talks to a provider or another service outside this machine.
    """

    read_only: bool = False
    destructive: bool = False
    open_world: bool = False


class NotificationSpec(msgspec.Struct, frozen=True):
    """One notification the sidecar sends: its name, its params struct, one line for `schemas/`."""

    name: str
    params_at: str  # `"<module>.<Struct>"` in sidecar.wire: see `params`
    summary: str

    @property
    def params(self) -> type[Wire]:
        return wire_type(self.params_at)


_CHAT_PARAMS_HELP = (
    "`model` is '<provider>:<model>' (openai:gpt-4o-mini, anthropic:claude-sonnet-4-5, "
    "gemini:gemini-2.5-flash, xai:grok-4, openrouter:<vendor>/<model>, ollama:<name>) or a bare name "
    "the sidecar can place (gpt-*, claude-*, gemini-*, grok-*, vendor/model); '<provider>:' alone means "
    "that provider's default model, and without `model` the configured default is used; 'stub:echo', "
    "'stub:lorem' and 'stub:tools' answer offline at no cost. `messages` are "
    "{role, content} turns; tools are {name, description, parameters (JSON Schema)}."
)

_METHOD_LIST: tuple[MethodSpec, ...] = (
    MethodSpec(
        "complete",
        "chat.CompleteParams",
        "chat.ChatResult",
        "Run a chat completion and return the whole answer.",
        "Ask a large language model (any configured provider) for one answer to a conversation, and "
        "get back its text, any tool calls, token usage and cost in USD. " + _CHAT_PARAMS_HELP,
    ),
    MethodSpec(
        "stream",
        "chat.CompleteParams",
        "chat.ChatResult",
        "Run a chat completion, sending each delta as a `stream/event` notification.",
        "Like `complete`, but the answer is streamed as it is generated (text, thinking and tool-call "
        "deltas, then usage); the final result is the same as `complete`'s. " + _CHAT_PARAMS_HELP,
        notifications=("stream/event",),
        streaming=True,
    ),
    MethodSpec(
        "count_tokens",
        "chat.CompleteParams",
        "chat.CountTokensResult",
        "Count a chat request's input tokens without running it.",
        "How many input tokens a `complete` request would cost (messages, system prompt and tools), "
        "for the model it names, without running it or spending anything: counted by the provider "
        "where it can (OpenAI, Anthropic, Gemini: `exact` true), else estimated. Takes the same params as "
        "`complete`, so a host can check a conversation fits the model's context window first.",
    ),
    MethodSpec(
        "embed",
        "embed.EmbedParams",
        "embed.EmbedResult",
        "Embedding vectors for one or more texts, with usage and cost.",
        "Turn texts into embedding vectors with an embeddings model: openai:text-embedding-3-small, "
        "gemini:gemini-embedding-001, ollama:<model>, openrouter:<vendor>/<model> or a custom endpoint. "
        "Answers one vector per input, in order, with input tokens and cost in USD.",
    ),
    MethodSpec(
        "info",
        "base.Empty",
        "catalog.InfoResult",
        "The sidecar's version and the methods it serves.",
        "Report the sidecar's version, its methods and notifications, and the date of its price catalog.",
        inline=True,
        same_result=True,
    ),
    MethodSpec(
        "list_providers",
        "base.Empty",
        "catalog.ListProvidersResult",
        "The providers the sidecar can reach, built-in and custom.",
        "List the LLM providers available (OpenAI, Anthropic, Gemini, xAI, OpenRouter, Ollama and any "
        "custom OpenAI-compatible endpoint), with their base URL and whether they need a key.",
    ),
    MethodSpec(
        "list_models",
        "catalog.ListModelsParams",
        "catalog.ListModelsResult",
        "Known models with context window, output limit, prices and capabilities.",
        "List known models (optionally of one provider) with context window, maximum output, price per "
        "million input/output/cached tokens, where each price came from and its date, and capabilities "
        "(tools, vision, reasoning, prompt cache). `live: true` asks the provider itself for the models "
        "it serves now (cached for 10 minutes).",
    ),
    MethodSpec(
        "estimate_cost",
        "catalog.EstimateCostParams",
        "catalog.EstimateCostResult",
        "Estimate the tokens and cost of a request before running it.",
        "Before running a request, estimate its input tokens and its cost range in USD (input only, up "
        "to max_tokens of output), counting declared `tools` too; `compare` prices the same request on "
        "other models.",
    ),
    MethodSpec(
        "rate_limits",
        "limits.RateLimitsParams",
        "limits.RateLimitsResult",
        "Each provider's rate limits as last reported, its circuit breaker and client-side limits.",
        "Show, per provider, the rate limits learned from its latest responses (requests and tokens "
        "remaining, when they reset, any Retry-After still running), whether the sidecar is skipping it "
        "after repeated failures (circuit breaker), and the client-side limits from config.toml in use.",
    ),
    MethodSpec(
        "validate_key",
        "keys.ValidateKeyParams",
        "keys.ValidateKeyResult",
        "Check an API key (given or configured) with a cheap authenticated call.",
        "Check whether a provider's API key works, with a cheap authenticated call upstream. Without "
        "`api_key` it checks the configured key. A wrong key gives valid=false, not an error.",
    ),
    MethodSpec(
        "set_key",
        "keys.SetKeyParams",
        "keys.SetKeyResult",
        "Store a provider's API key in the OS keychain (validated first by default).",
        "Store an API key for a provider in the operating system's keychain. The key is validated "
        "first unless validate=false; a key that fails validation is not stored.",
    ),
    MethodSpec(
        "delete_key",
        "keys.ProviderParams",
        "keys.DeleteKeyResult",
        "Remove a provider's API key from the OS keychain.",
        "Remove a provider's stored API key from the operating system's keychain.",
    ),
    MethodSpec(
        "list_keys",
        "base.Empty",
        "keys.ListKeysResult",
        "Which providers have a key, where it comes from, masked.",
        "List each provider's key status: configured or not, from the environment or the keychain, "
        "shown masked (never whole).",
    ),
    MethodSpec(
        "openrouter_auth_start",
        "keys.AuthStartParams",
        "keys.AuthStartResult",
        "Begin an OpenRouter login (OAuth PKCE); returns the URL to open.",
        "Start logging in to OpenRouter in the browser (OAuth PKCE). Returns the authorization URL to "
        "open. Without `callback_url` the sidecar listens on 127.0.0.1 and finishes the login itself.",
        notifications=("openrouter_auth/completed",),
    ),
    MethodSpec(
        "openrouter_auth_complete",
        "keys.AuthCompleteParams",
        "keys.AuthCompleteResult",
        "Finish an OpenRouter login with the code from the callback.",
        "Finish an OpenRouter login: exchange the `code` the browser returned (with its `state`) for an "
        "API key, which is stored in the keychain.",
    ),
    MethodSpec(
        "ollama_status",
        "base.Empty",
        "local.OllamaStatusResult",
        "Whether Ollama is running, its version and loaded models.",
        "Check whether the local Ollama server is running, its version, and which models are loaded "
        "in memory.",
    ),
    MethodSpec(
        "ollama_list",
        "base.Empty",
        "local.OllamaListResult",
        "Models installed in Ollama.",
        "List the models installed in the local Ollama server, with size, family, parameter size, "
        "quantization and modification time.",
    ),
    MethodSpec(
        "ollama_pull",
        "local.ModelParams",
        "local.OllamaPullResult",
        "Download a model into Ollama, with progress notifications.",
        "Download (pull) a model into the local Ollama server, reporting download progress. Use a name "
        "from recommend_models or the Ollama library, e.g. llama3.2:3b.",
        notifications=("ollama_pull/progress",),
        streaming=True,
    ),
    MethodSpec(
        "ollama_delete",
        "local.ModelParams",
        "local.OllamaDeleteResult",
        "Delete a model from Ollama.",
        "Delete an installed model from the local Ollama server to free disk space.",
    ),
    MethodSpec(
        "recommend_models",
        "local.RecommendParams",
        "local.RecommendResult",
        "Local models that fit this machine's hardware, ranked.",
        "Recommend local (Ollama) models that fit this computer's memory, GPU and free disk, with why "
        "each fits, whether it is installed and what it costs to download. Needs no network.",
    ),
    MethodSpec(
        "usage_summary",
        "usage.UsageSummaryParams",
        "usage.UsageSummaryResult",
        "Requests, tokens, cost, error rate and latency from the usage ledger, grouped.",
        "Summarise what was spent: requests, tokens, cost in USD, error rate and latency p50/p95 between "
        "`since` and `until` (ISO dates; default this month), optionally grouped by provider, model, day or "
        "tag, plus this month's projected spend.",
    ),
    MethodSpec(
        "set_budget",
        "usage.SetBudgetParams",
        "usage.SetBudgetResult",
        "Set daily/monthly USD limits, an alert threshold and per-run token caps.",
        "Set a spending budget for one provider, or overall without `provider`: daily and monthly limits in "
        "USD (a request that would cross one is refused before it is sent), the share of a limit that "
        "triggers a budget/alert notification (default 0.8), and soft/hard token caps per `run_id`. "
        "Omitted fields keep their value; null clears one.",
    ),
    MethodSpec(
        "get_budgets",
        "base.Empty",
        "usage.GetBudgetsResult",
        "The budgets, with what has been spent today and this month.",
        "List every budget (overall and per provider) with its limits and what has been spent in the "
        "current UTC day and month, and what remains.",
    ),
    MethodSpec(
        "refresh_pricing",
        "base.Empty",
        "usage.RefreshPricingResult",
        "Fetch OpenRouter's current model prices and use them.",
        "Download OpenRouter's public model list and use its prices for openrouter: models from now on; "
        "they are kept in the state database, so a restart keeps using them (list_models shows them "
        "with price_source 'refreshed' and their date). Needs network access; no key.",
    ),
)

_METHOD_LIST += (
    MethodSpec(
        "set_provider_enabled",
        "admin.SetProviderEnabledParams",
        "admin.SetProviderEnabledResult",
        "Switch a provider (or custom endpoint) on or off; kept across restarts.",
        "Switch a provider or custom endpoint off (its requests are refused with provider_disabled and "
        "fallback skips it) or back on. The choice is kept in the state directory and beats "
        "`enabled` in config.toml.",
    ),
    MethodSpec(
        "endpoint_set",
        "admin.EndpointSetParams",
        "admin.EndpointSetResult",
        "Add or replace a custom OpenAI-compatible endpoint at run time; kept across restarts.",
        "Add (or replace) a custom OpenAI-compatible endpoint (LM Studio, vLLM, llama.cpp, Groq...) with "
        "the fields of [endpoints.<name>] in config.toml. It is usable at once as '<name>:<model>' and "
        "kept in the state directory; the base URL is checked (https, or http to this machine).",
    ),
    MethodSpec(
        "endpoint_delete",
        "admin.EndpointDeleteParams",
        "admin.EndpointDeleteResult",
        "Remove a custom endpoint that was set at run time.",
        "Remove a custom endpoint added with endpoint_set. An endpoint declared in config.toml stays "
        "until it is removed from the file (`still_in_config` says so).",
    ),
)

_METHOD_LIST += (
    MethodSpec(
        "provider_health",
        "health.ProviderHealthParams",
        "health.ProviderHealthResult",
        "Probe providers now: healthy, degraded or unhealthy, with latency and the error.",
        "Check one provider (or every provider switched on that has a key) with a cheap authenticated "
        "call, and report its status (healthy, degraded when slow or rate limited, unhealthy when it "
        "fails), the probe's latency, when it was checked and the error.",
    ),
)

_METHOD_LIST += (
    MethodSpec(
        "audit_log",
        "audit.AuditLogParams",
        "audit.AuditLogResult",
        "The audit trail: keys set and deleted, logins, budget changes, fallbacks, provider switches.",
        "Read the audit trail, newest first: keys set, deleted or validated, OpenRouter logins, budget "
        "changes, fallbacks and retries, providers switched on or off, endpoints set or removed, config "
        "reloads; optionally since an ISO time and of one kind. It never contains a secret.",
    ),
    MethodSpec(
        "gateway_start",
        "gateway.GatewayStartParams",
        "gateway.GatewayStartResult",
        "Start the local OpenAI- and Anthropic-compatible HTTP gateway.",
        "Start the HTTP gateway inside this sidecar (same keys, limits, budgets and ledger), so other "
        "programs can use /v1/chat/completions, /v1/messages and /v1/models with a client key. Binds "
        "127.0.0.1:3625 by default; port 0 picks a free port. Answers the URL and port.",
    ),
    MethodSpec(
        "gateway_stop",
        "base.Empty",
        "gateway.GatewayStopResult",
        "Stop the local HTTP gateway.",
        "Stop the HTTP gateway; `stopped` is false when it was not running.",
    ),
    MethodSpec(
        "gateway_status",
        "base.Empty",
        "gateway.GatewayStatusResult",
        "Whether the gateway runs, its URL, uptime, requests served and open streams.",
        "Report whether the HTTP gateway is running, its URL and port, how long it has run, how many "
        "requests it has served and how many streams are open now.",
    ),
    MethodSpec(
        "router_list",
        "base.Empty",
        "routers.RouterListResult",
        "The routers: built-in (cheapest, best), from config.toml, and made with router_set.",
        "List every router (a named model selection used as the model `router:<name>`) with its settings "
        "and where it comes from.",
    ),
    MethodSpec(
        "router_set",
        "routers.RouterSetParams",
        "routers.RouterSetResult",
        "Create or replace a router: a manual model list or automatic selection with a strategy.",
        "Define a router by name: `models`, an ordered list of provider:model, or automatic selection "
        "over the known models (include/exclude patterns, needs tools/vision/reasoning, min_context) "
        "ordered by strategy lowest_cost, highest_performance, local_first, remote_first or lowest_latency.",
    ),
    MethodSpec(
        "router_delete",
        "routers.RouterDeleteParams",
        "routers.RouterDeleteResult",
        "Delete a router made with router_set.",
        "Delete a router made with router_set (built-in and config.toml routers cannot be deleted here).",
    ),
    MethodSpec(
        "router_preview",
        "routers.RouterPreviewParams",
        "routers.RouterPreviewResult",
        "A router's ordered candidates, why each is where it is, and which are available now.",
        "Show the models a router would try, in order, with why each is in its place and whether it can "
        "take a request now (circuit breaker, client-side limits, key present); `request` (tools, "
        "messages with images, reasoning) narrows them to models that can serve it.",
    ),
    MethodSpec(
        "metrics",
        "gateway.MetricsParams",
        "gateway.MetricsResult",
        "Series to plot: tokens, cost, requests, success rate or latency over 1h/24h/7d/30d.",
        "Answer one metric (tokens, cost, requests, success_rate, latency_p50, latency_p95) over the last "
        "hour or day (one-minute steps) or 7/30 days (hourly/daily steps, from the usage ledger), in all "
        "or one series per provider or per gateway client key.",
    ),
    MethodSpec(
        "client_key_create",
        "gateway.ClientKeyCreateParams",
        "gateway.ClientKeyCreateResult",
        "Create a client key for the gateway; the key is shown once.",
        "Create a key another program presents to the HTTP gateway (Authorization: Bearer lsk-...), "
        "with the models or routers it may use (`allow` patterns), a default router, daily/monthly USD "
        "budgets and per-minute limits. The key is returned once; only its hash is kept.",
    ),
    MethodSpec(
        "client_key_list",
        "base.Empty",
        "gateway.ClientKeyListResult",
        "The gateway's client keys (never the keys themselves) with their usage.",
        "List the gateway's client keys: name, the start of the key, allowed models, limits, when it was "
        "created and last used, whether it is enabled, and requests and cost so far.",
    ),
    MethodSpec(
        "client_key_update",
        "gateway.ClientKeyUpdateParams",
        "gateway.ClientKeyUpdateResult",
        "Rename, enable/disable, or change a client key's permissions and limits.",
        "Change a gateway client key named by `id` or `name`: `rename`, `enabled`, `allow`, `router`, "
        "budgets and limits. Omitted fields keep their value. A renamed key keeps its usage so far "
        "and what its budgets have counted.",
    ),
    MethodSpec(
        "client_key_rotate",
        "gateway.ClientKeyRef",
        "gateway.ClientKeyCreateResult",
        "Give a client key a new secret, keeping its name, permissions and usage.",
        "Replace a gateway client key's secret (the old one stops working at once); the new key is "
        "returned once.",
    ),
    MethodSpec(
        "client_key_delete",
        "gateway.ClientKeyRef",
        "gateway.ClientKeyDeleteResult",
        "Delete a gateway client key.",
        "Delete a gateway client key named by `id` or `name`; requests presenting it are refused. Its "
        "usage stays in the ledger as `<name> (deleted, <id>)`, so a key made later with the same name "
        "starts from nothing.",
    ),
)

METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in _METHOD_LIST}

_READ = ToolHints(read_only=True)
_READ_UPSTREAM = ToolHints(read_only=True, open_world=True)
_WRITE = ToolHints()
_WRITE_UPSTREAM = ToolHints(open_world=True)
_DELETE = ToolHints(destructive=True)

# Tool hints by method name. Keyed by name rather than a MethodSpec field so that a row may name a
# method another branch adds (`client_key_delete`); names the table does not (yet) hold are ignored,
# and a method without a row gets no hints (MCP's defaults: a possibly destructive open-world tool).
TOOL_HINTS: dict[str, ToolHints] = {
    "complete": _WRITE_UPSTREAM,  # spends money and adds a ledger row
    "stream": _WRITE_UPSTREAM,
    "info": _READ,
    "list_providers": _READ,
    "list_models": _READ,
    "estimate_cost": _READ,
    "count_tokens": _READ_UPSTREAM,
    "rate_limits": _READ,
    "validate_key": _READ_UPSTREAM,
    "set_key": _WRITE_UPSTREAM,  # validated upstream first
    "delete_key": _DELETE,
    "list_keys": _READ,
    "openrouter_auth_start": _WRITE,
    "openrouter_auth_complete": _WRITE_UPSTREAM,
    "ollama_status": _READ,
    "ollama_list": _READ,
    "ollama_pull": _WRITE_UPSTREAM,  # Ollama downloads from its registry
    "ollama_delete": _DELETE,
    "recommend_models": _READ,
    "usage_summary": _READ,
    "set_budget": _WRITE,
    "get_budgets": _READ,
    "refresh_pricing": _WRITE_UPSTREAM,
    "client_key_delete": _DELETE,
}

NOTIFICATIONS: dict[str, NotificationSpec] = {
    spec.name: spec
    for spec in (
        NotificationSpec(
            "stream/event",
            "chat.StreamEventParams",
            "A delta of a `stream` request (text, thinking, tool call, usage, attempt).",
        ),
        NotificationSpec(
            "ollama_pull/progress",
            "local.PullProgressParams",
            "Download progress of an `ollama_pull` request.",
        ),
        NotificationSpec(
            "openrouter_auth/completed",
            "keys.AuthCompletedParams",
            "A login started without `callback_url` finished (or failed).",
        ),
        NotificationSpec(
            "config/error",
            "admin.ConfigErrorParams",
            "config.toml changed on disk but could not be used; the previous configuration stays.",
        ),
        NotificationSpec(
            "budget/alert",
            "usage.BudgetAlertParams",
            "A budget reached its alert threshold or its limit, or a run passed its soft token cap.",
        ),
    )
}
