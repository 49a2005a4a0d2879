"""Embedding models' list prices, and the cost of an embedding request.

Prices are USD per million input tokens (embeddings have no output tokens), from the providers'
pricing pages as known on `PRICES_DATE` (not re-read live: no network). Local models (Ollama) cost
nothing; a model not listed here has an unknown cost (`None`).

Must not know: I/O, wire formats.
"""

from __future__ import annotations

from typing import Final

PRICES_DATE: Final = "2025-11-24"
PER_MTOK: Final[dict[tuple[str, str], float]] = {
    ("openai", "text-embedding-3-small"): 0.02,
    ("openai", "text-embedding-3-large"): 0.13,
    ("openai", "text-embedding-ada-002"): 0.10,
    ("gemini", "gemini-embedding-001"): 0.15,
    ("gemini", "text-embedding-004"): 0.0,
    ("openrouter", "openai/text-embedding-3-small"): 0.02,
    ("openrouter", "openai/text-embedding-3-large"): 0.13,
}
FREE_PROVIDERS: Final = frozenset({"ollama"})


def cost_usd(provider: str, model: str, input_tokens: int) -> tuple[float | None, str | None]:
    """The cost and the date of the price used; (None, None) when no price is known."""
    if provider in FREE_PROVIDERS:
        return 0.0, PRICES_DATE
    price = PER_MTOK.get((provider, model.removeprefix("models/")))
    if price is None:
        return None, None
    return round(input_tokens * price / 1_000_000, 12), PRICES_DATE
