"""Ollama over its native API: the chat provider (`ollama:<name>`) and a small client for the
management routes (`/api/version`, `/api/ps`, `/api/tags`, `/api/delete`, `/api/pull`).

Nothing listening at the base URL is `ollama_unavailable` from every call, with the URL tried and
how to start Ollama; every other failure is mapped by `providers.errors` like any provider's.
Ollama needs no key: `validate_key` only proves the server answers.

Must not know: stdin/stdout, the keychain, the ledger, how progress reaches a host.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Final

import msgspec

from sidecar.core.assemble import ProviderEvent
from sidecar.core.pull_progress import Progress
from sidecar.errors import ProviderError, SidecarError
from sidecar.providers import ollama_format
from sidecar.providers.base import KeyCheck, KeyGetter, Provider, ProviderSpec
from sidecar.providers.decoders import NDJSONDecoder, StreamTooLarge
from sidecar.providers.errors import provider_error
from sidecar.providers.http import HttpClient, Timeouts, iter_chunks, read_body, too_large
from sidecar.wire.chat import CompleteParams
from sidecar.wire.local import OllamaLoaded, OllamaModel

SHORT_TIMEOUTS: Final = Timeouts(connect_s=3.0, read_s=10.0, write_s=10.0)
# A pull can be silent for minutes while Ollama verifies a large blob; cancelling ends it sooner.
PULL_TIMEOUTS: Final = Timeouts(connect_s=5.0, read_s=600.0, write_s=10.0)


def ollama_unavailable(base_url: str, provider: str = "ollama") -> ProviderError:
    """Nothing answers at `base_url`: say where we looked and how to start Ollama."""
    return ProviderError(
        "ollama_unavailable",
        f"Ollama is not running at {base_url} (nothing answered there). Start it with `ollama serve` "
        "or by opening the Ollama app, or set OLLAMA_HOST to where it runs; "
        "to install it, see https://ollama.com/download.",
        provider=provider,
        details={"base_url": base_url},
    )


class OllamaClient:
    """Calls to one Ollama server. Connection failures become `ollama_unavailable`."""

    def __init__(self, http: HttpClient, base_url: str, provider: str = "ollama") -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.provider = provider

    @contextlib.asynccontextmanager
    async def open(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        timeouts: Timeouts = SHORT_TIMEOUTS,
        chat: bool = True,
    ) -> AsyncIterator[Any]:
        """A streaming response of a 2xx answer (see `HttpClient.open`)."""
        answered = False
        try:
            async with self.http.open(
                self.provider, method, self.base_url + path, json_body=body, timeouts=timeouts, chat=chat
            ) as response:
                answered = True
                yield response
        except ProviderError as exc:
            # Before an answer, a network error means nothing is listening (or it hung up at once).
            if not answered and exc.kind == "network_error":
                raise ollama_unavailable(self.base_url, self.provider) from None
            raise

    async def get(self, path: str, timeouts: Timeouts = SHORT_TIMEOUTS) -> bytes:
        async with self.open("GET", path, timeouts=timeouts, chat=False) as response:
            return await read_body(self.provider, response)

    async def version(self, timeouts: Timeouts = SHORT_TIMEOUTS) -> str | None:
        return ollama_format.decode_version(self.provider, await self.get("/api/version", timeouts))

    async def loaded(self, timeouts: Timeouts = SHORT_TIMEOUTS) -> list[OllamaLoaded]:
        return ollama_format.decode_ps(self.provider, await self.get("/api/ps", timeouts))

    async def installed(self, timeouts: Timeouts = SHORT_TIMEOUTS) -> list[OllamaModel]:
        return ollama_format.decode_tags(self.provider, await self.get("/api/tags", timeouts))

    async def delete(self, model: str, timeouts: Timeouts = SHORT_TIMEOUTS) -> None:
        """`DELETE /api/delete`; a model Ollama does not have is `model_not_found` (its 404)."""
        body = msgspec.json.encode({"model": model})
        async with self.open("DELETE", "/api/delete", body=body, timeouts=timeouts, chat=True) as response:
            await read_body(self.provider, response)

    async def pull(self, model: str, timeouts: Timeouts = PULL_TIMEOUTS) -> AsyncGenerator[Progress, None]:
        """Stream `POST /api/pull`, ending after `success`. Leaving early closes the download.

        An error line raises (`model_not_found` when Ollama has no such model); a stream that
        ends without `success` is a `provider_error`.
        """
        body = msgspec.json.encode({"model": model, "stream": True})
        decoder = ollama_format.PullDecoder(self.provider)
        lines = NDJSONDecoder()
        async with self.open("POST", "/api/pull", body=body, timeouts=timeouts, chat=True) as response:
            async for chunk in iter_chunks(self.provider, response):
                for line in lines.feed(chunk):
                    progress = decoder.feed(line)
                    if progress is not None:
                        yield progress
                    if decoder.succeeded:
                        return
            for line in lines.finish():
                progress = decoder.feed(line)
                if progress is not None:
                    yield progress
        if not decoder.succeeded:
            raise provider_error(
                self.provider, 0, {"error": f"the download of '{model}' ended before Ollama reported success"}
            )


class OllamaProvider(Provider):
    def __init__(self, spec: ProviderSpec, http: HttpClient, get_key: KeyGetter) -> None:
        super().__init__(spec, http, get_key)
        self.client = OllamaClient(http, spec.base_url, spec.id)

    def takes_whole_call(self, model: str, params: CompleteParams) -> bool:
        """Never: the model runs on this machine's own hardware, so a call whose client has gone
        must stop generating, and a stream's close is what every local server notices."""
        return False

    async def stream(
        self, model: str, params: CompleteParams, timeouts: Timeouts
    ) -> AsyncGenerator[ProviderEvent, None]:
        body = msgspec.json.encode(ollama_format.build_body(model, params, stream=True))
        decoder = ollama_format.ChatDecoder(self.id)
        lines = NDJSONDecoder(timeouts.max_body_bytes)
        cut_off = ProviderError(
            "network_error",
            "The stream from Ollama ended before it was complete (no line with `done: true`).",
            provider=self.id,
        )
        async with self.client.open("POST", "/api/chat", body=body, timeouts=timeouts) as response:
            try:
                async for chunk in iter_chunks(self.id, response):
                    for line in lines.feed(chunk):
                        for event in decoder.feed(line):
                            yield event
                        if decoder.done:
                            return
            except StreamTooLarge:
                raise too_large(self.id, f"one line over {timeouts.max_body_bytes:,} bytes") from None
            for line in lines.finish():
                try:
                    msgspec.json.decode(line)
                except msgspec.DecodeError:
                    raise cut_off from None  # the body ended inside its last line
                for event in decoder.feed(line):
                    yield event
        if not decoder.done:
            raise cut_off

    async def complete(
        self, model: str, params: CompleteParams, timeouts: Timeouts
    ) -> AsyncGenerator[ProviderEvent, None]:
        body = msgspec.json.encode(ollama_format.build_body(model, params, stream=False))
        async with self.client.open("POST", "/api/chat", body=body, timeouts=timeouts) as response:
            raw = await read_body(self.id, response)
        for event in ollama_format.decode_completion(self.id, raw):
            yield event

    async def validate_key(self, api_key: str, timeouts: Timeouts | None = None) -> KeyCheck:
        """Ollama has no keys: "valid" means the server answers."""
        try:
            version = await self.client.version(timeouts or SHORT_TIMEOUTS)
        except SidecarError as exc:
            return KeyCheck(valid=False, error=exc)
        return KeyCheck(valid=True, details={"version": version} if version else None)
