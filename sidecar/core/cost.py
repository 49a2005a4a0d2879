"""Cost of a finished request, and the range of a request not yet run, from catalog prices.

Token counts follow the contract's one meaning for every provider: `input_tokens` counts every
prompt token (cache reads and writes included) and `output_tokens` every generated token
(reasoning included); the cache and reasoning counts break those totals down and are never added
again. So:

    uncached input = input - cache_read - cache_write   billed at the input price
    cache reads                                          at the cache-read price (input if None)
    cache writes                                         at the cache-write price (input if None)
    output, reasoning included                           at the output price

When the prompt is longer than a model's long-context threshold (`ModelInfo.long_context`), the
whole request is billed at that tier's rates. Results are USD rounded to 10 decimal places.

Not modelled: batch and priority tiers, Anthropic's 1-hour cache writes (2x input), Gemini's
hourly cache storage and audio input prices, server-side tool fees (web search and the like).

Must not know: I/O of any kind, wire types (usage arrives as any object with the five counts),
providers and their usage formats (adapters normalise usage before it gets here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sidecar.core.catalog import ModelInfo

_PER_MTOK = 1_000_000
_DIGITS = 10


class UsageCounts(Protocol):
    """What cost needs from a usage record; the wire `Usage` struct satisfies it as it is."""

    @property
    def input_tokens(self) -> int | None: ...
    @property
    def output_tokens(self) -> int | None: ...
    @property
    def cache_read_tokens(self) -> int | None: ...
    @property
    def cache_write_tokens(self) -> int | None: ...
    @property
    def reasoning_tokens(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """A plain `UsageCounts` for callers (and tests) that have no wire struct at hand."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class CostRange:
    """A pre-run estimate: `min_total` if the model writes nothing, `max_total` if it writes
    `max_output_tokens`; both include `input_cost`."""

    input_cost: float
    min_total: float
    max_total: float


def cost_usd(usage: UsageCounts, info: ModelInfo | None) -> float | None:
    """USD cost of a request that used `usage` tokens of the model `info`; None when `info` is.

    Counts that are None are taken as 0; cache counts larger than the input (a provider that
    reported inconsistent totals) leave no uncached input rather than a negative one.
    """
    if info is None:
        return None
    input_tokens = _count(usage.input_tokens)
    output_tokens = _count(usage.output_tokens)
    cache_read = _count(usage.cache_read_tokens)
    cache_write = _count(usage.cache_write_tokens)
    uncached = max(input_tokens - cache_read - cache_write, 0)
    input_rate, output_rate, read_rate, write_rate = _rates(info, input_tokens)
    total = (
        uncached * input_rate
        + cache_read * read_rate
        + cache_write * write_rate
        + output_tokens * output_rate  # reasoning tokens are part of output_tokens
    ) / _PER_MTOK
    return round(total, _DIGITS)


def estimate(info: ModelInfo, input_tokens: int, max_output_tokens: int | None = None) -> CostRange:
    """The cost range of a request of `input_tokens` prompt tokens, none of them cached.

    `max_output_tokens` is the request's `max_tokens`; None means the model's own cap
    (`info.max_output_tokens`). It is used as given, not clamped to the model's cap or context.
    """
    prompt = max(input_tokens, 0)
    out_tokens = info.max_output_tokens if max_output_tokens is None else max(max_output_tokens, 0)
    input_rate, output_rate, _, _ = _rates(info, prompt)
    input_cost = round(prompt * input_rate / _PER_MTOK, _DIGITS)
    max_total = round((prompt * input_rate + out_tokens * output_rate) / _PER_MTOK, _DIGITS)
    return CostRange(input_cost=input_cost, min_total=input_cost, max_total=max_total)


def _rates(info: ModelInfo, prompt_tokens: int) -> tuple[float, float, float, float]:
    """(input, output, cache read, cache write) USD per million tokens for a prompt this long."""
    tier = info.long_context
    if tier is not None and prompt_tokens > tier.above_input_tokens:
        inp, out = tier.input_per_mtok, tier.output_per_mtok
        read, write = tier.cache_read_per_mtok, tier.cache_write_per_mtok
    else:
        inp, out = info.input_per_mtok, info.output_per_mtok
        read, write = info.cache_read_per_mtok, info.cache_write_per_mtok
    return inp, out, inp if read is None else read, inp if write is None else write


def _count(value: int | None) -> int:
    return value if value is not None and value > 0 else 0
