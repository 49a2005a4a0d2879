"""Wire types of `embed`: text in, vectors out, with usage and cost.

Must not know: providers' formats, the protocol layer.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from sidecar.wire.base import Params, Wire


class EmbedParams(Params):
    """`model`: `provider:model` (openai, gemini, ollama, openrouter or a custom endpoint), e.g.
    `openai:text-embedding-3-small`, `gemini:gemini-embedding-001`, `ollama:nomic-embed-text`.
    `input`: one text or several (one vector each, in order). `dimensions` shortens the vectors
    where the model supports it."""

    model: Annotated[str, msgspec.Meta(min_length=1)]
    input: str | Annotated[list[str], msgspec.Meta(min_length=1, max_length=2048)]
    dimensions: Annotated[int, msgspec.Meta(ge=1)] | None = None
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] | None = None
    tag: str | None = None


class EmbedUsage(Wire):
    """`estimated` is true when the provider reported no token count (Gemini): it is then counted
    from the text."""

    input_tokens: int
    estimated: bool = False


class EmbedResult(Wire):
    embeddings: list[list[float]]
    provider: str
    model: str
    usage: EmbedUsage
    cost_usd: float | None
    pricing_date: str | None = None
    latency_ms: float | None = None
