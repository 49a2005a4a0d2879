"""What each provider says it serves right now, from its own model-listing route:
OpenAI-compatible `GET /models` (OpenAI, xAI, custom endpoints), OpenRouter's public catalog with
prices, Anthropic's `GET /v1/models` (paged by `after_id`), Gemini's `models.list` (paged by
`pageToken`, only models that can `generateContent`), and Ollama's installed models (`/api/tags`).

Must not know: caching, the price book, stdin/stdout.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

import msgspec

from sidecar.core import stub_answers
from sidecar.core.catalog import ModelInfo
from sidecar.errors import SidecarError
from sidecar.providers.base import Provider
from sidecar.providers.http import Timeouts

LIST_TIMEOUTS: Final = Timeouts(connect_s=5.0, read_s=20.0, write_s=10.0)
MAX_PAGES: Final = 20  # a provider that pages forever is cut off, not followed


class LiveModel(msgspec.Struct, frozen=True):
    """One model as the provider lists it; `priced` carries the prices when the listing has them
    (OpenRouter), else the caller looks them up."""

    id: str
    display_name: str | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    priced: ModelInfo | None = None


_decode = msgspec.json.Decoder(dict[str, Any]).decode


async def fetch(provider: Provider, timeouts: Timeouts = LIST_TIMEOUTS) -> list[LiveModel]:
    kind, pid = provider.spec.kind, provider.id
    if kind == "stub":
        return [LiveModel(m, f"Stub {m} (offline)") for m in stub_answers.MODELS]
    if kind == "ollama":
        from sidecar.providers.ollama import OllamaClient

        installed = await OllamaClient(provider.http, provider.spec.base_url, pid).installed(timeouts)
        return [LiveModel(m.name, m.name) for m in installed]
    if kind == "anthropic":
        return await _anthropic(provider, timeouts)
    if kind == "gemini":
        return await _gemini(provider, timeouts)
    if pid == "openrouter":
        return await _openrouter(provider, timeouts)
    return await _openai(provider, timeouts)


async def _get(provider: Provider, url: str, headers: dict[str, str], timeouts: Timeouts) -> dict[str, Any]:
    body, _ = await provider.http.request_json(provider.id, "GET", url, headers=headers, timeouts=timeouts)
    try:
        return _decode(body)
    except msgspec.DecodeError:
        raise SidecarError(
            "provider_error",
            f"{provider.id} answered its model list with something that is not JSON.",
            provider=provider.id,
        ) from None


# OpenAI lists every model of the account; these families cannot chat.
_NOT_CHAT: Final = (
    "text-embedding-",
    "tts-",
    "whisper-",
    "dall-e-",
    "omni-moderation-",
    "text-moderation-",
    "davinci-",
    "babbage-",
    "gpt-image-",
    "sora-",
)


async def _openai(provider: Any, timeouts: Timeouts) -> list[LiveModel]:
    data = await _get(provider, provider._url("/models"), provider._headers(await provider.key()), timeouts)
    ids = [str(m["id"]) for m in data.get("data") or [] if isinstance(m, dict) and m.get("id")]
    if provider.id == "openai":
        ids = [i for i in ids if not i.startswith(_NOT_CHAT)]
    return [LiveModel(i) for i in ids]


async def _openrouter(provider: Any, timeouts: Timeouts) -> list[LiveModel]:
    from sidecar.providers.openrouter_models import parse_models

    # Public on OpenRouter: no key is needed (or sent) to read the catalog and its prices.
    body, _ = await provider.http.request_json(
        provider.id, "GET", provider._url("/models"), headers=provider._headers(None), timeouts=timeouts
    )
    try:
        entries, _skipped = parse_models(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise SidecarError(
            "provider_error", "OpenRouter's model list could not be read.", provider=provider.id
        ) from None
    return [
        LiveModel(e.model, e.display_name, e.context_window or None, e.max_output_tokens or None, e)
        for e in entries
    ]


async def _anthropic(provider: Any, timeouts: Timeouts) -> list[LiveModel]:
    headers = provider._headers(await provider.key())
    out: list[LiveModel] = []
    after: str | None = None
    for _ in range(MAX_PAGES):
        query = "limit=1000" + (f"&after_id={quote(after)}" if after else "")
        page = await _get(provider, provider._url(f"/v1/models?{query}"), headers, timeouts)
        for m in page.get("data") or []:
            if isinstance(m, dict) and m.get("id"):
                out.append(
                    LiveModel(m["id"], m.get("display_name"), m.get("max_input_tokens"), m.get("max_tokens"))
                )
        after = page.get("last_id")
        if not page.get("has_more") or not after:
            break
    return out


async def _gemini(provider: Any, timeouts: Timeouts) -> list[LiveModel]:
    headers = provider._headers(await provider.key())
    out: list[LiveModel] = []
    token: str | None = None
    for _ in range(MAX_PAGES):
        query = "pageSize=1000" + (f"&pageToken={quote(token)}" if token else "")
        page = await _get(provider, f"{provider._api_root()}/models?{query}", headers, timeouts)
        for m in page.get("models") or []:
            if not isinstance(m, dict) or "generateContent" not in (
                m.get("supportedGenerationMethods") or []
            ):
                continue  # embedding and other models cannot chat
            name = str(m.get("name") or "").removeprefix("models/")
            if name:
                out.append(
                    LiveModel(name, m.get("displayName"), m.get("inputTokenLimit"), m.get("outputTokenLimit"))
                )
        token = page.get("nextPageToken")
        if not token:
            break
    return out
