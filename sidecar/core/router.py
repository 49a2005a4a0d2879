"""Routers: a named model selection used as a model (`router:<name>`). Pure ordering and choice.

A router is either a manual ordered list of `provider:model`, or automatic: every known model
that passes its filters (include/exclude patterns, needed capabilities, a minimum context),
ordered by a strategy:

- `lowest_cost`: cheapest first (input + output list price per million tokens); unpriced last.
- `highest_performance`: most capable first. The catalog holds no benchmark scores, so list price
  stands in for capability (providers price their strongest models highest); then context size.
- `local_first` / `remote_first`: local models (Ollama, endpoints on this machine) before remote
  ones, or after; cost breaks ties.
- `lowest_latency`: the lowest measured median latency first; unmeasured models after, by cost.

`rank` gives each candidate its position and why; `plan` then marks which are available now
(breaker closed, key present, client-side limits not spent) and answers the ordered candidates to
try. Two routers are built in: `cheapest` (lowest_cost) and `best` (highest_performance).

Must not know: I/O, the catalog's storage, providers' wire formats.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

Strategy = Literal["lowest_cost", "highest_performance", "local_first", "remote_first", "lowest_latency"]
STRATEGIES: Final = ("lowest_cost", "highest_performance", "local_first", "remote_first", "lowest_latency")
PREFIX: Final = "router:"


@dataclass(frozen=True, slots=True)
class RouterSpec:
    name: str
    models: tuple[str, ...] = ()  # a manual ordered list; when set, the filters and strategy are unused
    strategy: Strategy = "lowest_cost"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()  # capabilities: tools, vision, reasoning
    min_context: int | None = None
    max_candidates: int = 5
    builtin: bool = False

    @property
    def manual(self) -> bool:
        return bool(self.models)


BUILTINS: Final = {
    "cheapest": RouterSpec("cheapest", strategy="lowest_cost", builtin=True),
    "best": RouterSpec("best", strategy="highest_performance", builtin=True),
}


@dataclass(frozen=True, slots=True)
class Candidate:
    model: str  # provider:model
    provider: str
    input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    context_window: int | None = None
    capabilities: frozenset[str] = frozenset()
    local: bool = False
    latency_ms: float | None = None

    @property
    def price(self) -> float | None:
        if self.input_per_mtok is None or self.output_per_mtok is None:
            return None
        return self.input_per_mtok + self.output_per_mtok


@dataclass(frozen=True, slots=True)
class Ranked:
    candidate: Candidate
    why: str


@dataclass(frozen=True, slots=True)
class Planned:
    candidate: Candidate
    why: str
    available: bool
    unavailable_because: str | None = None


@dataclass(slots=True)
class Availability:
    """Why a provider cannot take a request now (None where it can)."""

    reasons: dict[str, str] = field(default_factory=dict)

    def of(self, provider: str) -> str | None:
        return self.reasons.get(provider)


def router_name(model: str) -> str | None:
    """The router a model string names (`router:<name>`), else None."""
    return model[len(PREFIX) :].strip() if model.startswith(PREFIX) else None


def _matches(model: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(model, p) for p in patterns)


def _price_text(c: Candidate) -> str:
    return (
        "price unknown"
        if c.price is None
        else f"${c.input_per_mtok:g} in + ${c.output_per_mtok:g} out per Mtok"
    )


def rank(spec: RouterSpec, known: Iterable[Candidate]) -> list[Ranked]:
    """The router's candidates in order, each with why it is there."""
    known = list(known)
    if spec.manual:
        by_model = {c.model: c for c in known}
        out = []
        for i, model in enumerate(spec.models):
            provider = model.split(":", 1)[0]
            cand = by_model.get(model, Candidate(model=model, provider=provider))
            out.append(Ranked(cand, f"position {i + 1} in the router's list"))
        return out
    pool = [
        c
        for c in known
        if (not spec.include or _matches(c.model, spec.include))
        and not _matches(c.model, spec.exclude)
        and all(n in c.capabilities for n in spec.needs)
        and (spec.min_context is None or (c.context_window or 0) >= spec.min_context)
    ]
    unknown_price = float("inf")

    def cost(c: Candidate) -> float:
        return c.price if c.price is not None else unknown_price

    strategy = spec.strategy
    if strategy == "lowest_cost":
        pool.sort(key=lambda c: (cost(c), c.model))
        return [Ranked(c, f"lowest cost first: {_price_text(c)}") for c in pool][: spec.max_candidates]
    if strategy == "highest_performance":
        pool.sort(key=lambda c: (-(c.price or 0.0), -(c.context_window or 0), c.model))
        return [Ranked(c, f"most capable first (list price as the proxy): {_price_text(c)}") for c in pool][
            : spec.max_candidates
        ]
    if strategy in ("local_first", "remote_first"):
        local_rank = 0 if strategy == "local_first" else 1
        pool.sort(key=lambda c: (0 if c.local == (local_rank == 0) else 1, cost(c), c.model))
        where = {True: "local", False: "remote"}
        return [Ranked(c, f"{where[c.local]} ({strategy.replace('_', ' ')}), then by cost") for c in pool][
            : spec.max_candidates
        ]
    pool.sort(key=lambda c: (c.latency_ms is None, c.latency_ms or 0.0, cost(c), c.model))
    return [
        Ranked(
            c,
            f"measured median latency {c.latency_ms:.0f} ms"
            if c.latency_ms is not None
            else "no latency measured yet",
        )
        for c in pool
    ][: spec.max_candidates]


def plan(ranked: Iterable[Ranked], availability: Availability) -> list[Planned]:
    """Each ranked candidate marked available or not (and why not), order kept."""
    out = []
    for r in ranked:
        reason = availability.of(r.candidate.provider)
        out.append(Planned(r.candidate, r.why, reason is None, reason))
    return out


def chain(planned: Iterable[Planned]) -> list[str]:
    """The models to try, in order: the available ones."""
    return [p.candidate.model for p in planned if p.available]


def spec_from_mapping(name: str, raw: Mapping[str, object]) -> RouterSpec:
    """A RouterSpec from validated settings (config.toml or `router_set`)."""

    def strings(key: str) -> tuple[str, ...]:
        value = raw.get(key) or ()
        assert isinstance(value, list | tuple)
        return tuple(str(v) for v in value)

    strategy = raw.get("strategy") or "lowest_cost"
    assert strategy in STRATEGIES
    min_context = raw.get("min_context")
    max_candidates = raw.get("max_candidates") or 5
    assert isinstance(max_candidates, int)
    return RouterSpec(
        name=name,
        models=strings("models"),
        strategy=strategy,
        include=strings("include"),
        exclude=strings("exclude"),
        needs=strings("needs"),
        min_context=int(min_context) if isinstance(min_context, int) else None,
        max_candidates=max_candidates,
    )
