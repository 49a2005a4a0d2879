"""A curated, dated catalog of models: context limits, capabilities and list prices.

Purpose: answer "what does this model cost and what can it do" for `list_models`, `estimate_cost`
and the `cost_usd` of every result, without any network access. The common path, a known model
id, is one dict lookup; dated snapshots (`gpt-4o-mini-2024-07-18`, `claude-sonnet-4-5-20250929`),
`-latest` aliases, Gemini's `models/` prefix and OpenRouter slugs of first-party models are
resolved on a slower, memoised path.

Prices are USD per million tokens at the providers' standard (pay-as-you-go, non-batch) tier.
`PriceBook` overlays prices learned later (an OpenRouter `/models` refresh) on the curated table
without mutating it, and says which date each answer's price comes from.

Must not know: I/O of any kind (the table is plain Python data; nothing is read or parsed at
import), wire types, provider adapters, the clock.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

# The catalog's date (and where its figures come from) lives apart, so `info` need not load this.
from sidecar.core.catalog_date import CATALOG_DATE as CATALOG_DATE

TOOLS: Final = "tools"
VISION: Final = "vision"
REASONING: Final = "reasoning"
PROMPT_CACHE: Final = "prompt_cache"
STREAMING: Final = "streaming"
CAPABILITIES: Final = frozenset({TOOLS, VISION, REASONING, PROMPT_CACHE, STREAMING})

OLLAMA_DEFAULT_CONTEXT: Final = 4096
"""The context assumed for a local model nobody told us about: Ollama's long-standing default
`num_ctx` (newer releases may size it from free memory; an adapter that knows passes it in)."""


@dataclass(frozen=True, slots=True)
class PriceTier:
    """Prices that replace the base ones for a whole request once its prompt is long.

    Applies when the request's prompt (every input token: uncached, cache reads and cache writes)
    is greater than `above_input_tokens`; then every token of that request, output included, is
    billed at these rates (Gemini's and Anthropic's ">200K" pricing, xAI's ">128K" pricing).
    A `None` cache price means the same as on `ModelInfo`: billed at this tier's input price.
    """

    above_input_tokens: int
    input_per_mtok: float
    output_per_mtok: float
    cache_read_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model of one provider.

    `cache_read_per_mtok` is None when the provider has no prompt caching for the model (cache
    reads are then billed as input); `cache_write_per_mtok` is None when writing the cache costs
    nothing beyond the input price (OpenAI, Gemini, xAI). Anthropic's figure is its 5-minute
    write price, 1.25x input.
    """

    provider: str
    model: str
    display_name: str
    context_window: int
    max_output_tokens: int
    input_per_mtok: float
    output_per_mtok: float
    cache_read_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None
    capabilities: frozenset[str] = frozenset()
    long_context: PriceTier | None = None

    @property
    def ref(self) -> str:
        """The contract's model reference, `"<provider>:<model>"`."""
        return f"{self.provider}:{self.model}"

    @property
    def is_free(self) -> bool:
        return self.input_per_mtok == 0 and self.output_per_mtok == 0


# --- the curated table ---------------------------------------------------------------------------

_CHAT: Final = frozenset({TOOLS, STREAMING})
_CACHED: Final = _CHAT | {PROMPT_CACHE}
_MULTIMODAL: Final = _CACHED | {VISION}
_THINKING: Final = _MULTIMODAL | {REASONING}

# Anthropic's 1M-token context (a beta on Sonnet 4 / 4.5) bills a whole request at these rates
# once its prompt passes 200K tokens; a prompt that long implies the beta was on.
_SONNET_LONG: Final = PriceTier(200_000, 6.00, 22.50, 0.60, 7.50)

# fmt: off
# Columns: provider, model, display name, context window, max output tokens, then USD per million
# tokens: input, output, cache read, cache write; capabilities; long-prompt price tier.
_ENTRIES: Final[tuple[ModelInfo, ...]] = (
    # OpenAI: cached input is billed at the "cached input" price, no separate write price.
    ModelInfo("openai", "gpt-4o", "GPT-4o", 128_000, 16_384, 2.50, 10.00, 1.25, None, _MULTIMODAL),
    # The first GPT-4o snapshot kept its launch price; without this row it would resolve to gpt-4o.
    ModelInfo("openai", "gpt-4o-2024-05-13", "GPT-4o (2024-05-13)", 128_000, 4_096, 5.00, 15.00,
              None, None, _CHAT | {VISION}),
    ModelInfo("openai", "gpt-4o-mini", "GPT-4o mini", 128_000, 16_384, 0.15, 0.60, 0.075, None,
              _MULTIMODAL),
    ModelInfo("openai", "gpt-4.1", "GPT-4.1", 1_047_576, 32_768, 2.00, 8.00, 0.50, None, _MULTIMODAL),
    ModelInfo("openai", "gpt-4.1-mini", "GPT-4.1 mini", 1_047_576, 32_768, 0.40, 1.60, 0.10, None,
              _MULTIMODAL),
    ModelInfo("openai", "gpt-4.1-nano", "GPT-4.1 nano", 1_047_576, 32_768, 0.10, 0.40, 0.025, None,
              _MULTIMODAL),
    ModelInfo("openai", "o1", "o1", 200_000, 100_000, 15.00, 60.00, 7.50, None, _THINKING),
    ModelInfo("openai", "o3", "o3", 200_000, 100_000, 2.00, 8.00, 0.50, None, _THINKING),
    ModelInfo("openai", "o3-mini", "o3-mini", 200_000, 100_000, 1.10, 4.40, 0.55, None,
              _CACHED | {REASONING}),
    ModelInfo("openai", "o3-pro", "o3-pro", 200_000, 100_000, 20.00, 80.00, None, None,
              _CHAT | {VISION, REASONING}),
    ModelInfo("openai", "o4-mini", "o4-mini", 200_000, 100_000, 1.10, 4.40, 0.275, None, _THINKING),
    ModelInfo("openai", "gpt-5", "GPT-5", 400_000, 128_000, 1.25, 10.00, 0.125, None, _THINKING),
    ModelInfo("openai", "gpt-5-mini", "GPT-5 mini", 400_000, 128_000, 0.25, 2.00, 0.025, None, _THINKING),
    ModelInfo("openai", "gpt-5-nano", "GPT-5 nano", 400_000, 128_000, 0.05, 0.40, 0.005, None, _THINKING),
    ModelInfo("openai", "gpt-5.1", "GPT-5.1", 400_000, 128_000, 1.25, 10.00, 0.125, None, _THINKING),
    # Anthropic: cache reads 0.1x input, 5-minute cache writes 1.25x input (1-hour writes, 2x, are
    # not modelled: usage does not say which TTL was written).
    ModelInfo("anthropic", "claude-opus-4", "Claude Opus 4", 200_000, 32_000, 15.00, 75.00, 1.50,
              18.75, _THINKING),
    ModelInfo("anthropic", "claude-opus-4-1", "Claude Opus 4.1", 200_000, 32_000, 15.00, 75.00, 1.50,
              18.75, _THINKING),
    ModelInfo("anthropic", "claude-opus-4-5", "Claude Opus 4.5", 200_000, 64_000, 5.00, 25.00, 0.50,
              6.25, _THINKING),
    ModelInfo("anthropic", "claude-sonnet-4-5", "Claude Sonnet 4.5", 200_000, 64_000, 3.00, 15.00, 0.30,
              3.75, _THINKING, _SONNET_LONG),
    ModelInfo("anthropic", "claude-sonnet-4", "Claude Sonnet 4", 200_000, 64_000, 3.00, 15.00, 0.30,
              3.75, _THINKING, _SONNET_LONG),
    ModelInfo("anthropic", "claude-haiku-4-5", "Claude Haiku 4.5", 200_000, 64_000, 1.00, 5.00, 0.10,
              1.25, _THINKING),
    ModelInfo("anthropic", "claude-3-5-haiku", "Claude Haiku 3.5", 200_000, 8_192, 0.80, 4.00, 0.08,
              1.00, _MULTIMODAL),
    # Gemini: text/image/video input prices (audio input costs more and is not modelled); the
    # context-caching price is per token read, and its hourly storage fee is not modelled.
    ModelInfo("gemini", "gemini-2.5-pro", "Gemini 2.5 Pro", 1_048_576, 65_536, 1.25, 10.00, 0.125, None,
              _THINKING, PriceTier(200_000, 2.50, 15.00, 0.25)),
    ModelInfo("gemini", "gemini-2.5-flash", "Gemini 2.5 Flash", 1_048_576, 65_536, 0.30, 2.50, 0.03, None,
              _THINKING),
    ModelInfo("gemini", "gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", 1_048_576, 65_536, 0.10, 0.40,
              0.01, None, _THINKING),
    ModelInfo("gemini", "gemini-2.0-flash", "Gemini 2.0 Flash", 1_048_576, 8_192, 0.10, 0.40, 0.025, None,
              _MULTIMODAL),
    ModelInfo("gemini", "gemini-3-pro-preview", "Gemini 3 Pro (preview)", 1_048_576, 65_536, 2.00, 12.00,
              0.20, None, _THINKING, PriceTier(200_000, 4.00, 18.00, 0.40)),
    # xAI: "cached input" price, no write price; requests over 128K prompt tokens cost more on the
    # Grok 4 family. xAI publishes no separate output cap for grok-4 / grok-3 / grok-3-mini:
    # 32,768 there is a planning value, not a provider limit.
    ModelInfo("xai", "grok-4", "Grok 4", 256_000, 32_768, 3.00, 15.00, 0.75, None, _THINKING,
              PriceTier(128_000, 6.00, 30.00, 0.75)),
    ModelInfo("xai", "grok-4-1-fast", "Grok 4.1 Fast", 2_000_000, 30_000, 0.20, 0.50, 0.05, None, _THINKING,
              PriceTier(128_000, 0.40, 1.00, 0.05)),
    ModelInfo("xai", "grok-4-fast", "Grok 4 Fast", 2_000_000, 30_000, 0.20, 0.50, 0.05, None, _THINKING,
              PriceTier(128_000, 0.40, 1.00, 0.05)),
    ModelInfo("xai", "grok-3", "Grok 3", 131_072, 32_768, 3.00, 15.00, 0.75, None, _CACHED),
    ModelInfo("xai", "grok-3-mini", "Grok 3 Mini", 131_072, 32_768, 0.30, 0.50, 0.075, None,
              _CACHED | {REASONING}),
    ModelInfo("xai", "grok-code-fast-1", "Grok Code Fast 1", 256_000, 10_000, 0.20, 1.50, 0.02, None,
              _CACHED | {REASONING}),
    # OpenRouter passes first-party prices through (its fee is taken on credit purchases), so these
    # mirror the upstream rows; open-weight models are priced per routed host and drift, hence
    # the overrides of PriceBook. Any other `openai/`, `anthropic/`, `google/` or `x-ai/` slug
    # resolves to its upstream row (see `lookup`).
    ModelInfo("openrouter", "openai/gpt-4o-mini", "OpenAI: GPT-4o mini", 128_000, 16_384, 0.15, 0.60, 0.075,
              None, _MULTIMODAL),
    ModelInfo("openrouter", "anthropic/claude-sonnet-4.5", "Anthropic: Claude Sonnet 4.5", 1_000_000,
              64_000, 3.00, 15.00, 0.30, 3.75, _THINKING, _SONNET_LONG),
    ModelInfo("openrouter", "google/gemini-2.5-flash", "Google: Gemini 2.5 Flash", 1_048_576, 65_536, 0.30,
              2.50, 0.03, None, _THINKING),
    ModelInfo("openrouter", "meta-llama/llama-3.3-70b-instruct", "Meta: Llama 3.3 70B Instruct", 131_072,
              16_384, 0.10, 0.32, None, None, _CHAT),
    ModelInfo("openrouter", "deepseek/deepseek-chat-v3.1", "DeepSeek: DeepSeek V3.1", 163_840, 65_536,
              0.20, 0.80, None, None, _CHAT | {REASONING}),
    ModelInfo("openrouter", "x-ai/grok-4-fast", "xAI: Grok 4 Fast", 2_000_000, 30_000, 0.20, 0.50, 0.05,
              None, _THINKING, PriceTier(128_000, 0.40, 1.00, 0.05)),
)
# fmt: on

_PROVIDERS: Final = ("openai", "anthropic", "gemini", "xai", "openrouter", "ollama")

_CATALOG: Final[dict[tuple[str, str], ModelInfo]] = {(m.provider, m.model): m for m in _ENTRIES}

# Names that are not a snapshot or `-latest` form of a catalog id but mean one (moving aliases
# as their providers documented them on CATALOG_DATE).
_ALIASES: Final[dict[tuple[str, str], str]] = {
    ("anthropic", "claude-sonnet-4-0"): "claude-sonnet-4",
    ("gemini", "gemini-flash-latest"): "gemini-2.5-flash",
    ("gemini", "gemini-flash-lite-latest"): "gemini-2.5-flash-lite",
    ("xai", "grok-4-fast-reasoning"): "grok-4-fast",
    ("xai", "grok-4-fast-non-reasoning"): "grok-4-fast",
    ("xai", "grok-4-1-fast-reasoning"): "grok-4-1-fast",
    ("xai", "grok-4-1-fast-non-reasoning"): "grok-4-1-fast",
    ("anthropic", "claude-opus-4-0"): "claude-opus-4",
    ("xai", "grok-code-fast"): "grok-code-fast-1",
}

# Snapshot suffixes, per provider, each tried on its own against the catalog (regexes, compiled
# on the first lookup that misses the table, not at import).
_SNAPSHOT_SUFFIXES: Final[dict[str, tuple[str, ...]]] = {
    "openai": (r"-\d{4}-\d{2}-\d{2}$", r"-\d{4}$"),  # -2024-07-18, -0613
    "anthropic": (r"[-@]\d{8}$",),  # -20250929, Vertex's @20250929
    "gemini": (
        r"-\d{3}$",  # gemini-2.0-flash-001
        r"-preview-\d{2}-\d{4}$",  # gemini-2.5-flash-preview-09-2025
        r"-\d{2}-\d{4}$",  # gemini-3-pro-preview-11-2025
    ),
    "xai": (r"-\d{4}$",),  # grok-4-0709
}


# OpenRouter vendor prefixes whose slugs mirror a first-party provider's prices.
_OPENROUTER_UPSTREAMS: Final = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "gemini",
    "x-ai": "xai",
}
# OpenRouter slug variants billed like the slug without them; any other variant (`:nitro`,
# `:floor`, `:online`, ...) has its own price and stays unknown unless overridden.
_OPENROUTER_SAME_PRICE_VARIANTS: Final = frozenset({"beta", "thinking"})


# --- lookups -------------------------------------------------------------------------------------


def lookup(provider: str, model: str) -> ModelInfo | None:
    """The catalog entry for `model` of `provider`, or None when its price is unknown.

    Exact ids are a dict hit. Otherwise, tried in turn: case and surrounding spaces; Gemini's
    `models/` prefix; a `-latest` suffix; dated snapshot suffixes (`-2024-07-18`, `-20250929`,
    `-0709`, `-001`, `-preview-09-2025`); documented aliases. On OpenRouter, `:free` variants are
    zero-priced, and `openai/`, `anthropic/`, `google/`, `x-ai/` slugs take their upstream price.
    Any `ollama` model is free (`local_model_info`).
    """
    info = _CATALOG.get((provider, model))
    if info is not None:
        return info
    return _resolve(provider, model)


def models_for(provider: str) -> list[ModelInfo]:
    """The curated entries of `provider`, in catalog order (empty for `ollama` and unknown ids)."""
    return [m for m in _ENTRIES if m.provider == provider]


def providers() -> list[str]:
    """Every provider id the catalog can price, in the contract's order."""
    return list(_PROVIDERS)


def local_model_info(
    name: str,
    *,
    context_window: int | None = None,
    capabilities: Iterable[str] = (STREAMING,),
) -> ModelInfo:
    """A zero-priced entry for a local Ollama model.

    `context_window` defaults to Ollama's default `num_ctx`; an adapter that read the model's
    real figures (`/api/show`) passes them in. Ollama generates until the context is full, so the
    output cap equals the context window.
    """
    ctx = OLLAMA_DEFAULT_CONTEXT if context_window is None or context_window <= 0 else context_window
    return ModelInfo(
        provider="ollama",
        model=name,
        display_name=name,
        context_window=ctx,
        max_output_tokens=ctx,
        input_per_mtok=0.0,
        output_per_mtok=0.0,
        capabilities=frozenset(capabilities) & CAPABILITIES,
    )


@lru_cache(maxsize=512)
def _resolve(provider: str, model: str) -> ModelInfo | None:
    p = provider.strip().lower()
    name = model.strip()
    if p == "ollama":
        return local_model_info(name) if name else None
    if p == "openrouter":
        return _resolve_openrouter(name.lower())
    return _resolve_in(_CATALOG, p, name.lower())


def _resolve_in(table: dict[tuple[str, str], ModelInfo], provider: str, model: str) -> ModelInfo | None:
    """Find `model` in `table` by its exact id, an alias, or a snapshot/`-latest` form of it."""
    for candidate in _candidates(provider, model):
        info = table.get((provider, candidate))
        if info is not None:
            return info
        target = _ALIASES.get((provider, candidate))
        if target is not None and (info := table.get((provider, target))) is not None:
            return info
    return None


def _candidates(provider: str, model: str) -> Iterable[str]:
    yield model
    if model.startswith("models/"):
        model = model.removeprefix("models/")
        yield model
    if model.endswith("-latest"):
        model = model.removesuffix("-latest")
        yield model
    for suffix in _SNAPSHOT_SUFFIXES.get(provider, ()):
        stripped = re.sub(suffix, "", model)
        if stripped != model:
            yield stripped


def _resolve_openrouter(slug: str) -> ModelInfo | None:
    base, colon, variant = slug.partition(":")
    if colon:
        info = lookup("openrouter", base)
        if info is None:
            return None
        if variant == "free":
            return dataclasses.replace(
                info,
                model=slug,
                display_name=f"{info.display_name} (free)",
                input_per_mtok=0.0,
                output_per_mtok=0.0,
                cache_read_per_mtok=None,
                cache_write_per_mtok=None,
                long_context=None,
            )
        if variant in _OPENROUTER_SAME_PRICE_VARIANTS:
            return dataclasses.replace(info, model=slug)
        return None
    info = _CATALOG.get(("openrouter", base))
    if info is not None:
        return info
    vendor, slash, name = base.partition("/")
    upstream = _OPENROUTER_UPSTREAMS.get(vendor)
    if not slash or upstream is None:
        return None
    if upstream == "anthropic":  # OpenRouter writes claude-sonnet-4.5, Anthropic claude-sonnet-4-5
        name = name.replace(".", "-")
    info = _resolve_in(_CATALOG, upstream, name)
    if info is None:
        return None
    return dataclasses.replace(info, provider="openrouter", model=base)


# --- prices learned later ------------------------------------------------------------------------


class PriceBook:
    """The curated catalog plus overrides learned at run time, each with its own pricing date.

    Overrides never mutate the curated table; `price_for` prefers an override over the catalog
    for the same model and returns the date the price it used was current. Updates build new
    tables and swap them in as one attribute, so a reader never sees half an update.
    """

    __slots__ = ("_catalog_date", "_state")

    def __init__(self, catalog_date: str = CATALOG_DATE) -> None:
        self._catalog_date = catalog_date
        # (override entries, their pricing dates), keyed by (provider, model); replaced, never mutated
        self._state: tuple[dict[tuple[str, str], ModelInfo], dict[tuple[str, str], str]] = ({}, {})

    @property
    def catalog_date(self) -> str:
        return self._catalog_date

    @property
    def override_count(self) -> int:
        return len(self._state[0])

    def price_for(self, provider: str, model: str) -> tuple[ModelInfo | None, str | None]:
        """`(info, pricing_date)`, or `(None, None)` when no price is known for the model."""
        entries, dates = self._state
        key = (provider, model)
        if entries:
            hit = entries.get(key)
            if hit is not None:
                return hit, dates[key]
        info = _CATALOG.get(key)
        if info is not None:
            return info, self._catalog_date
        if entries:  # a snapshot or `-latest` form of an overridden model
            hit = _resolve_in(entries, provider.strip().lower(), model.strip().lower())
            if hit is not None:
                return hit, dates[(hit.provider, hit.model)]
        info = _resolve(provider, model)
        if info is None:
            return None, None
        if entries:  # resolved to a catalog row (or an upstream row) overridden since
            hit = entries.get((info.provider, info.model))
            if hit is not None:
                return hit, dates[(hit.provider, hit.model)]
        return info, self._catalog_date

    def overridden(self, provider: str, model: str) -> bool:
        """Whether the price of this exact model comes from an override rather than the catalog."""
        return (provider, model) in self._state[0]

    def apply_overrides(self, entries: Iterable[ModelInfo], date: str) -> int:
        """Overlay `entries`, priced as of the ISO `date`, replacing earlier overrides of the same
        models. Entries with a negative price (OpenRouter's "-1" for variable pricing) are
        skipped. Returns how many were applied."""
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
            raise ValueError(f"pricing date must be YYYY-MM-DD, got {date!r}")
        current, current_dates = self._state
        merged, merged_dates = dict(current), dict(current_dates)
        applied = 0
        for entry in entries:
            if not _prices_valid(entry):
                continue
            key = (entry.provider, entry.model)
            merged[key] = entry
            merged_dates[key] = date
            applied += 1
        self._state = (merged, merged_dates)
        return applied

    def clear_overrides(self, provider: str | None = None) -> None:
        """Drop every override, or only those of `provider`."""
        if provider is None:
            self._state = ({}, {})
            return
        entries, dates = self._state
        keep = [k for k in entries if k[0] != provider]
        self._state = ({k: entries[k] for k in keep}, {k: dates[k] for k in keep})

    def models_for(self, provider: str) -> list[tuple[ModelInfo, str]]:
        """The curated entries of `provider` with overrides applied, then the models known only
        from overrides, each with its pricing date."""
        entries, dates = self._state
        out: list[tuple[ModelInfo, str]] = []
        for m in models_for(provider):
            key = (m.provider, m.model)
            out.append((entries[key], dates[key]) if key in entries else (m, self._catalog_date))
        out.extend((v, dates[k]) for k, v in entries.items() if k[0] == provider and k not in _CATALOG)
        return out


def _prices_valid(info: ModelInfo) -> bool:
    prices = (info.input_per_mtok, info.output_per_mtok, info.cache_read_per_mtok, info.cache_write_per_mtok)
    return all(p is None or p >= 0 for p in prices)
