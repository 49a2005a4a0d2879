"""Router ordering and choice (core.router), without I/O."""

from __future__ import annotations

from sidecar.core.router import Availability, Candidate, RouterSpec, chain, plan, rank, router_name

CANDIDATES = [
    Candidate("openai:big", "openai", 5.0, 15.0, 128_000, frozenset({"tools", "vision"})),
    Candidate("openai:small", "openai", 0.15, 0.6, 128_000, frozenset({"tools"}), latency_ms=300.0),
    Candidate(
        "anthropic:mid",
        "anthropic",
        1.0,
        5.0,
        200_000,
        frozenset({"tools", "vision", "reasoning"}),
        latency_ms=90.0,
    ),
    Candidate("ollama:llama", "ollama", 0.0, 0.0, 8_000, frozenset(), local=True),
    Candidate("mystery:x", "mystery"),
]


def models(spec: RouterSpec) -> list[str]:
    return [r.candidate.model for r in rank(spec, CANDIDATES)]


def test_strategies_order_the_candidates() -> None:
    assert models(RouterSpec("c", strategy="lowest_cost", max_candidates=9)) == [
        "ollama:llama", "openai:small", "anthropic:mid", "openai:big", "mystery:x"]  # fmt: skip
    assert models(RouterSpec("b", strategy="highest_performance", max_candidates=3)) == [
        "openai:big", "anthropic:mid", "openai:small"]  # fmt: skip
    assert models(RouterSpec("l", strategy="local_first", max_candidates=2)) == [
        "ollama:llama",
        "openai:small",
    ]
    assert models(RouterSpec("r", strategy="remote_first", max_candidates=9))[-1] == "ollama:llama"
    assert models(RouterSpec("t", strategy="lowest_latency", max_candidates=3)) == [
        "anthropic:mid", "openai:small", "ollama:llama"]  # fmt: skip


def test_filters_and_needs() -> None:
    assert models(RouterSpec("f", include=("openai:*",))) == ["openai:small", "openai:big"]
    assert models(RouterSpec("f", exclude=("openai:*", "mystery:*"))) == ["ollama:llama", "anthropic:mid"]
    assert models(RouterSpec("v", needs=("vision",))) == ["anthropic:mid", "openai:big"]
    assert models(RouterSpec("m", min_context=150_000)) == ["anthropic:mid"]


def test_manual_list_keeps_its_order_and_says_why() -> None:
    ranked = rank(RouterSpec("m", models=("openai:big", "nowhere:y")), CANDIDATES)
    assert [(r.candidate.model, r.why) for r in ranked] == [
        ("openai:big", "position 1 in the router's list"),
        ("nowhere:y", "position 2 in the router's list"),
    ]


def test_plan_skips_unavailable_providers_but_lists_them() -> None:
    ranked = rank(RouterSpec("c", strategy="lowest_cost", max_candidates=9), CANDIDATES)
    planned = plan(ranked, Availability({"openai": "circuit breaker open", "mystery": "no API key"}))
    assert [(p.candidate.model, p.available) for p in planned][:2] == [
        ("ollama:llama", True),
        ("openai:small", False),
    ]
    assert planned[1].unavailable_because == "circuit breaker open"
    assert chain(planned) == ["ollama:llama", "anthropic:mid"]


def test_router_name() -> None:
    assert router_name("router:cheapest") == "cheapest"
    assert router_name("openai:gpt-4o") is None
