"""The native Google Gemini provider (Generative Language API, AI Studio keys).

`POST {base}/v1beta/models/{model}:generateContent` for `complete`,
`:streamGenerateContent?alt=sse` for `stream` (CRLF-framed SSE that simply ends: no terminator,
so only a `finishReason` tells a whole answer from a cut one), `GET /v1beta/models?pageSize=1` to
prove a key. The key travels in the `x-goog-api-key` header, never in a `?key=` query, where it
would end up in proxies' and servers' logs. The wire format itself lives in `gemini_format`
(requests) and `gemini_decode` (answers).

Must not know: stdin/stdout, the keychain, retry policy, the ledger.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Final
from urllib.parse import quote

import msgspec

from sidecar.core.assemble import ProviderEvent
from sidecar.errors import SidecarError
from sidecar.providers import gemini_decode, gemini_format
from sidecar.providers.base import KeyCheck, Provider, count_from
from sidecar.providers.http import Timeouts, read_body
from sidecar.providers.streaming import relay_sse
from sidecar.wire.chat import CompleteParams

_VALIDATE_TIMEOUTS: Final = Timeouts(connect_s=5.0, read_s=5.0, write_s=5.0)
_API_VERSIONS: Final = ("/v1beta", "/v1", "/v1alpha")


class GeminiProvider(Provider):
    def _api_root(self) -> str:
        """The base URL with its API version: `GEMINI_BASE_URL` may name one (`…/v1beta`) or not."""
        base = self.spec.base_url.rstrip("/")
        return base if base.endswith(_API_VERSIONS) else base + "/v1beta"

    @staticmethod
    def _resource(model: str) -> str:
        # `tunedModels/x` is a resource name of its own; a bare name lives under `models/`.
        return model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"

    def _model_url(self, model: str, method: str) -> str:
        return f"{self._api_root()}/{quote(self._resource(model), safe='/-._~')}:{method}"

    def _headers(self, key: str | None) -> dict[str, str]:
        headers = dict(self.spec.extra_headers)
        if key:
            headers["x-goog-api-key"] = key
        return headers

    async def stream(
        self, model: str, params: CompleteParams, timeouts: Timeouts
    ) -> AsyncGenerator[ProviderEvent, None]:
        body = msgspec.json.encode(gemini_format.build_body(model, params))
        headers = self._headers(await self.key())
        headers["accept"] = "text/event-stream"
        url = self._model_url(model, "streamGenerateContent") + "?alt=sse"
        async with self.http.open(
            self.id, "POST", url, headers=headers, json_body=body, timeouts=timeouts
        ) as response:
            async for event in relay_sse(
                self.id, response, gemini_decode.ResponseDecoder(self.id), gemini_decode.decode_response
            ):
                yield event

    async def complete(
        self, model: str, params: CompleteParams, timeouts: Timeouts
    ) -> AsyncGenerator[ProviderEvent, None]:
        body = msgspec.json.encode(gemini_format.build_body(model, params))
        url = self._model_url(model, "generateContent")
        async with self.http.open(
            self.id, "POST", url, headers=self._headers(await self.key()), json_body=body, timeouts=timeouts
        ) as response:
            raw = await read_body(self.id, response)
        for event in gemini_decode.decode_response(self.id, raw):
            yield event

    async def count_tokens(self, model: str, params: CompleteParams, timeouts: Timeouts) -> int:
        """`:countTokens` of the whole `generateContent` request (system instruction and tools
        count too)."""
        request = {"model": self._resource(model), **gemini_format.build_body(model, params)}
        body = {"generateContentRequest": request}
        raw, _ = await self.http.request_json(
            self.id,
            "POST",
            self._model_url(model, "countTokens"),
            headers=self._headers(await self.key()),
            json_body=msgspec.json.encode(body),
            timeouts=timeouts,
        )
        return count_from(self.id, raw, "totalTokens")

    async def validate_key(self, api_key: str, timeouts: Timeouts | None = None) -> KeyCheck:
        url = f"{self._api_root()}/models?pageSize=1"
        try:
            await self.http.request_json(
                self.id, "GET", url, headers=self._headers(api_key), timeouts=timeouts or _VALIDATE_TIMEOUTS
            )
        except SidecarError as exc:
            if exc.kind in ("auth_failed", "quota_exceeded"):
                return KeyCheck(valid=False, error=exc)
            raise
        return KeyCheck(valid=True)
