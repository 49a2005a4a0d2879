"""The native Anthropic provider: the Messages API (`POST /v1/messages`) with `x-api-key`.

The wire format lives in `anthropic_format` (requests) and `anthropic_decode` (answers); this
class sends requests through the shared `HttpClient`, feeds the SSE stream to the decoder, counts
input tokens with `POST /v1/messages/count_tokens`, and proves keys with `GET /v1/models?limit=1`.

Must not know: stdin/stdout, the keychain, retry policy, the ledger.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Final

import msgspec

from sidecar.core.assemble import ProviderEvent
from sidecar.errors import SidecarError
from sidecar.providers import anthropic_decode, anthropic_format
from sidecar.providers.base import KeyCheck, Provider, count_from
from sidecar.providers.http import Timeouts, read_body
from sidecar.providers.streaming import relay_sse
from sidecar.wire.chat import CompleteParams

_VALIDATE_TIMEOUTS: Final = Timeouts(connect_s=5.0, read_s=5.0, write_s=5.0)


class AnthropicProvider(Provider):
    def _url(self, path: str) -> str:
        return self.spec.base_url.rstrip("/") + path

    def _headers(self, key: str | None) -> dict[str, str]:
        headers = {**self.spec.extra_headers, "anthropic-version": anthropic_format.API_VERSION}
        if key:
            headers["x-api-key"] = key
        return headers

    async def stream(
        self, model: str, params: CompleteParams, timeouts: Timeouts
    ) -> AsyncGenerator[ProviderEvent, None]:
        body = msgspec.json.encode(anthropic_format.build_body(model, params, stream=True))
        headers = self._headers(await self.key())
        headers["accept"] = "text/event-stream"
        async with self.http.open(
            self.id, "POST", self._url("/v1/messages"), headers=headers, json_body=body, timeouts=timeouts
        ) as response:
            async for event in relay_sse(
                self.id, response, anthropic_decode.StreamDecoder(self.id), anthropic_decode.decode_message
            ):
                yield event

    def takes_whole_call(self, model: str, params: CompleteParams) -> bool:
        return anthropic_format.fits_whole_call(model, params)

    async def complete(
        self, model: str, params: CompleteParams, timeouts: Timeouts
    ) -> AsyncGenerator[ProviderEvent, None]:
        body = msgspec.json.encode(anthropic_format.build_body(model, params, stream=False))
        async with self.http.open(
            self.id,
            "POST",
            self._url("/v1/messages"),
            headers=self._headers(await self.key()),
            json_body=body,
            timeouts=timeouts,
        ) as response:
            raw = await read_body(self.id, response)
        for event in anthropic_decode.decode_message(self.id, raw):
            yield event

    async def count_tokens(self, model: str, params: CompleteParams, timeouts: Timeouts) -> int:
        """`POST /v1/messages/count_tokens`: the Messages body without what only sampling uses."""
        built = anthropic_format.build_body(model, params, stream=False)
        body = {k: v for k, v in built.items() if k in anthropic_format.COUNTED}
        raw, _ = await self.http.request_json(
            self.id,
            "POST",
            self._url("/v1/messages/count_tokens"),
            headers=self._headers(await self.key()),
            json_body=msgspec.json.encode(body),
            timeouts=timeouts,
        )
        return count_from(self.id, raw, "input_tokens")

    async def validate_key(self, api_key: str, timeouts: Timeouts | None = None) -> KeyCheck:
        try:
            await self.http.request_json(
                self.id,
                "GET",
                self._url("/v1/models?limit=1"),
                headers=self._headers(api_key),
                timeouts=timeouts or _VALIDATE_TIMEOUTS,
            )
        except SidecarError as exc:
            if exc.kind in ("auth_failed", "quota_exceeded"):
                return KeyCheck(valid=False, error=exc)
            raise
        return KeyCheck(valid=True)
