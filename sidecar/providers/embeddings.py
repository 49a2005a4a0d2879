"""Embeddings upstream: OpenAI-compatible `POST /embeddings` (OpenAI, OpenRouter, custom
endpoints), Gemini `:batchEmbedContents`, Ollama `POST /api/embed`. One function per format,
through the shared HTTP client (errors mapped at its boundary) and the provider's own key.

Gemini sends no usage for embeddings; its input tokens are estimated (`estimated` is true).

Must not know: stdin/stdout, the ledger, the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import msgspec

from sidecar.core import tokens
from sidecar.errors import ProviderError, SidecarError
from sidecar.providers.base import Provider
from sidecar.providers.errors import display
from sidecar.providers.http import Timeouts

_GEMINI_VERSIONS: Final = ("/v1beta", "/v1", "/v1alpha")


@dataclass(frozen=True, slots=True)
class Embedded:
    vectors: list[list[float]]
    input_tokens: int
    estimated: bool = False
    model: str | None = None


def _bad_answer(provider: str, what: str) -> ProviderError:
    return ProviderError(
        "provider_error",
        f"{display(provider)} answered embeddings in an unexpected shape ({what}).",
        provider=provider,
    )


async def embed(
    provider: Provider, model: str, inputs: list[str], timeouts: Timeouts, dimensions: int | None = None
) -> Embedded:
    kind = provider.spec.kind
    if kind == "openai_compatible" and provider.id != "xai":
        return await _openai(provider, model, inputs, timeouts, dimensions)
    if kind == "gemini":
        return await _gemini(provider, model, inputs, timeouts, dimensions)
    if kind == "ollama":
        return await _ollama(provider, model, inputs, timeouts, dimensions)
    raise SidecarError(
        "unsupported_provider",
        f"{display(provider.id)} has no embeddings API; use openai, gemini, ollama, openrouter "
        "or a custom endpoint.",
        provider=provider.id,
        field="model",
    )


async def _call(provider: Provider, url: str, headers: dict[str, str], body: Any, timeouts: Timeouts) -> Any:
    raw, _ = await provider.http.request_json(
        provider.id, "POST", url, headers=headers, json_body=msgspec.json.encode(body), timeouts=timeouts
    )
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise _bad_answer(provider.id, "not JSON") from None


async def _openai(
    provider: Provider, model: str, inputs: list[str], timeouts: Timeouts, dimensions: int | None
) -> Embedded:
    headers = dict(provider.spec.extra_headers)
    key = await provider.key()
    if key:
        headers["authorization"] = f"Bearer {key}"
    body: dict[str, Any] = {"model": model, "input": inputs, "encoding_format": "float"}
    if dimensions is not None:
        body["dimensions"] = dimensions
    answer = await _call(
        provider, provider.spec.base_url.rstrip("/") + "/embeddings", headers, body, timeouts
    )
    try:
        data = sorted(answer["data"], key=lambda d: d["index"])
        vectors = [[float(v) for v in d["embedding"]] for d in data]
        usage = answer.get("usage") or {}
        used = usage.get("prompt_tokens")
    except (KeyError, TypeError, ValueError):
        raise _bad_answer(provider.id, "no data[].embedding") from None
    if used is None:
        return Embedded(vectors, sum(tokens.text_tokens(t) for t in inputs), True, answer.get("model"))
    return Embedded(vectors, int(used), False, answer.get("model"))


async def _gemini(
    provider: Provider, model: str, inputs: list[str], timeouts: Timeouts, dimensions: int | None
) -> Embedded:
    base = provider.spec.base_url.rstrip("/")
    root = base if base.endswith(_GEMINI_VERSIONS) else base + "/v1beta"
    name = model if model.startswith("models/") else f"models/{model}"
    headers = dict(provider.spec.extra_headers)
    key = await provider.key()
    if key:
        headers["x-goog-api-key"] = key
    requests = []
    for text in inputs:
        item: dict[str, Any] = {"model": name, "content": {"parts": [{"text": text}]}}
        if dimensions is not None:
            item["outputDimensionality"] = dimensions
        requests.append(item)
    url = f"{root}/{quote(name, safe='/-._~')}:batchEmbedContents"
    answer = await _call(provider, url, headers, {"requests": requests}, timeouts)
    try:
        vectors = [[float(v) for v in e["values"]] for e in answer["embeddings"]]
    except (KeyError, TypeError, ValueError):
        raise _bad_answer(provider.id, "no embeddings[].values") from None
    return Embedded(vectors, sum(tokens.text_tokens(t) for t in inputs), True)


async def _ollama(
    provider: Provider, model: str, inputs: list[str], timeouts: Timeouts, dimensions: int | None
) -> Embedded:
    body: dict[str, Any] = {"model": model, "input": inputs}
    if dimensions is not None:
        body["dimensions"] = dimensions
    headers = dict(provider.spec.extra_headers)
    try:
        answer = await _call(
            provider, provider.spec.base_url.rstrip("/") + "/api/embed", headers, body, timeouts
        )
    except ProviderError as exc:
        if exc.status == 404:  # Ollama's "model 'x' not found"
            raise ProviderError(
                "model_not_found",
                f"Ollama has no model {model!r}: pull it first (ollama_pull).",
                provider=provider.id,
                status=404,
            ) from None
        raise
    try:
        vectors = [[float(v) for v in e] for e in answer["embeddings"]]
    except (KeyError, TypeError, ValueError):
        raise _bad_answer(provider.id, "no embeddings") from None
    used = answer.get("prompt_eval_count")
    if isinstance(used, int):
        return Embedded(vectors, used, False)
    return Embedded(vectors, sum(tokens.text_tokens(t) for t in inputs), True)
