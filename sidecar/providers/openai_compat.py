"""One provider implementation for every OpenAI-compatible API: OpenAI, xAI, OpenRouter, and any
custom endpoint declared in `config.toml` (LM Studio, vLLM, llama.cpp, Groq...).

What differs between them is data: the `Dialect` of the request, the headers, and which route
proves a key works.

Must not know: stdin/stdout, the keychain, retry policy, the ledger.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Final

import msgspec

from sidecar.core.assemble import ProviderEvent
from sidecar.errors import SidecarError
from sidecar.providers import openai_format
from sidecar.providers.base import KeyCheck, KeyGetter, Provider, ProviderSpec, count_from
from sidecar.providers.http import HttpClient, Timeouts, read_body
from sidecar.providers.streaming import relay_sse
from sidecar.wire.chat import CompleteParams

_DIALECTS: Final = {
    "openai": openai_format.OPENAI,
    "xai": openai_format.XAI,
    "openrouter": openai_format.OPENROUTER,
}
_VALIDATE_TIMEOUTS: Final = Timeouts(connect_s=5.0, read_s=5.0, write_s=5.0)


class OpenAICompatProvider(Provider):
    def __init__(
        self,
        spec: ProviderSpec,
        http: HttpClient,
        get_key: KeyGetter,
        *,
        dialect: openai_format.Dialect | None = None,
    ) -> None:
        super().__init__(spec, http, get_key)
        self.dialect = dialect or _DIALECTS.get(spec.id, openai_format.Dialect(max_tokens_field="max_tokens"))
        self._chat_url = self._url("/chat/completions")
        # The headers of a streamed chat call depend only on the key: built again when it changes.
        self._stream_headers: tuple[str | None, dict[str, str]] | None = None

    def _url(self, path: str) -> str:
        return self.spec.base_url.rstrip("/") + path

    def _headers(self, key: str | None) -> dict[str, str]:
        headers = dict(self.spec.extra_headers)
        if key:
            headers["authorization"] = f"Bearer {key}"
        return headers

    async def count_tokens(self, model: str, params: CompleteParams, timeouts: Timeouts) -> int | None:
        """OpenAI's `POST /v1/responses/input_tokens`; the others have no count."""
        if self.spec.id != "openai":
            return None
        raw, _ = await self.http.request_json(
            self.id,
            "POST",
            self._url("/responses/input_tokens"),
            headers=self._headers(await self.key()),
            json_body=msgspec.json.encode(openai_format.count_body(model, params)),
            timeouts=timeouts,
        )
        return count_from(self.id, raw, "input_tokens")

    async def stream(
        self, model: str, params: CompleteParams, timeouts: Timeouts
    ) -> AsyncGenerator[ProviderEvent, None]:
        body = msgspec.json.encode(openai_format.build_body(model, params, self.dialect, stream=True))
        key = await self.key()
        cached = self._stream_headers
        if cached is not None and cached[0] == key:
            headers = cached[1]
        else:
            headers = self._headers(key)
            headers["accept"] = "text/event-stream"
            self._stream_headers = (key, headers)
        async with self.http.open(
            self.id, "POST", self._chat_url, headers=headers, json_body=body, timeouts=timeouts
        ) as response:
            async for event in relay_sse(
                self.id, response, openai_format.ChunkDecoder(self.id), openai_format.decode_completion
            ):
                yield event

    async def complete(
        self, model: str, params: CompleteParams, timeouts: Timeouts
    ) -> AsyncGenerator[ProviderEvent, None]:
        body = msgspec.json.encode(openai_format.build_body(model, params, self.dialect, stream=False))
        async with self.http.open(
            self.id,
            "POST",
            self._chat_url,
            headers=self._headers(await self.key()),
            json_body=body,
            timeouts=timeouts,
        ) as response:
            raw = await read_body(self.id, response)
        for event in openai_format.decode_completion(self.id, raw):
            yield event

    async def validate_key(self, api_key: str, timeouts: Timeouts | None = None) -> KeyCheck:
        t = timeouts or _VALIDATE_TIMEOUTS
        path = {"xai": "/api-key", "openrouter": "/key"}.get(self.id, "/models")
        try:
            body, _ = await self.http.request_json(
                self.id, "GET", self._url(path), headers=self._headers(api_key), timeouts=t
            )
        except SidecarError as exc:
            if exc.kind in ("auth_failed", "quota_exceeded"):
                return KeyCheck(valid=False, error=exc)
            raise
        details = _key_details(self.id, body)
        if (
            self.id == "xai"
            and details
            and any(details.get(f) for f in ("api_key_blocked", "api_key_disabled", "team_blocked"))
        ):
            return KeyCheck(
                valid=False,
                error=SidecarError(
                    "auth_failed", "xAI says this key is blocked or disabled.", provider=self.id
                ),
                details=details,
            )
        return KeyCheck(valid=True, details=details)


_KEEP: Final = {
    "xai": ("name", "acls", "api_key_blocked", "api_key_disabled", "team_blocked"),
    "openrouter": (
        "label",
        "limit",
        "limit_remaining",
        "limit_reset",
        "usage",
        "usage_daily",
        "usage_monthly",
        "is_free_tier",
        "expires_at",
        "rate_limit",
    ),
}


def _key_details(provider: str, body: bytes) -> dict[str, Any] | None:
    keep = _KEEP.get(provider)
    if keep is None:
        return None
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    if provider == "openrouter" and isinstance(data, dict):
        data = data.get("data")
    if not isinstance(data, dict):
        return None
    return {k: data[k] for k in keep if k in data}
