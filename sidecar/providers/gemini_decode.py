"""The Gemini API's answers (`GenerateContentResponse`s, camelCase) as provider events:
`ResponseDecoder` takes stream chunks or one whole answer, `decode_response` a whole
`generateContent` answer, so one assembler serves both.

What Gemini 3 signs (`thoughtSignature` on parts of its answer) and the function-call ids the
sidecar makes up when Gemini sends none come out as the result's `Continuation`, in the shape
`gemini_format` describes and reads back. A prompt blocked before any candidate
(`promptFeedback.blockReason`) is an answer with finish reason `content_filter`, not an error,
like a blocked candidate.

Must not know: HTTP, keys, the protocol, how requests are built.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

import msgspec

from sidecar.core.assemble import Continuation, Finish, ProviderEvent, ResponseMeta
from sidecar.providers.errors import provider_error
from sidecar.providers.gemini_format import PROVIDER_TAG
from sidecar.wire.chat import FinishReason, TextDelta, ThinkingDelta, ToolCallDelta, UsageEvent

_FILTERED: Final = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "IMAGE_OTHER",
    }
)


class _FunctionCall(msgspec.Struct):
    name: str | None = None
    args: Any = None
    id: str | None = None


class _Part(msgspec.Struct, rename="camel"):
    text: str | None = None
    thought: bool | None = None
    thought_signature: str | None = None
    function_call: _FunctionCall | None = None


class _Content(msgspec.Struct):
    parts: list[_Part] | None = None
    role: str | None = None


class _Candidate(msgspec.Struct, rename="camel"):
    content: _Content | None = None
    finish_reason: str | None = None
    index: int | None = None


class _UsageMetadata(msgspec.Struct, rename="camel"):
    prompt_token_count: int | None = None
    candidates_token_count: int | None = None
    total_token_count: int | None = None
    thoughts_token_count: int | None = None
    cached_content_token_count: int | None = None
    tool_use_prompt_token_count: int | None = None


class _PromptFeedback(msgspec.Struct, rename="camel"):
    block_reason: str | None = None


class _Response(msgspec.Struct, rename="camel"):
    candidates: list[_Candidate] | None = None
    usage_metadata: _UsageMetadata | None = None
    model_version: str | None = None
    response_id: str | None = None
    prompt_feedback: _PromptFeedback | None = None
    error: Any = None


_response_decoder: Final = msgspec.json.Decoder(_Response)


def finish_reason(raw: str) -> FinishReason:
    if raw == "MAX_TOKENS":
        return "length"
    if raw in _FILTERED or raw.startswith("IMAGE_"):
        return "content_filter"
    return "stop"


def usage_event(usage: _UsageMetadata) -> UsageEvent:
    thoughts = usage.thoughts_token_count or 0
    return UsageEvent(
        # cachedContentTokenCount is part of promptTokenCount; tool-use prompts are not.
        input_tokens=(usage.prompt_token_count or 0) + (usage.tool_use_prompt_token_count or 0),
        output_tokens=(usage.candidates_token_count or 0) + thoughts,
        cache_read_tokens=usage.cached_content_token_count or 0,
        cache_write_tokens=0,
        reasoning_tokens=thoughts,
    )


def generated_call_id(response_id: str | None, index: int, name: str, args_json: str) -> str:
    digest = hashlib.sha256(f"{response_id or ''}\x00{index}\x00{name}\x00{args_json}".encode()).hexdigest()
    return f"call_{index}_{digest[:8]}"


class ResponseDecoder:
    """Turns `GenerateContentResponse`s, in order, into provider events.

    `feed` takes one stream chunk (or the whole non-streamed answer) and returns its metadata and
    content deltas; `end` returns what closes the answer: `Finish`, the `Continuation` (when
    there are signatures or made-up call ids) and the one `UsageEvent`, taken from the last
    chunk's `usageMetadata` (earlier chunks carry partial counts).
    """

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.usage: UsageEvent | None = None
        self.finish: Finish | None = None
        self._meta_sent = False
        self._calls = 0
        self._text_runs = 0
        self._last: str | None = None  # kind of the previous part: "text", "thought", "call"
        self._thought_run: list[str] = []
        self._signatures: list[dict[str, Any]] = []
        self._generated: list[str] = []

    @property
    def finished(self) -> bool:
        return self.finish is not None

    # The `relay_sse` side: Gemini streams have no terminator (the connection just ends), so the
    # answer is whole once a finish reason came.
    terminator = "finish reason"
    terminated = False

    @property
    def complete(self) -> bool:
        return self.finished

    def on_event(self, event: str, data: str) -> list[ProviderEvent]:
        return self.feed(data)

    def feed(self, data: str | bytes) -> list[ProviderEvent]:
        try:
            chunk = _response_decoder.decode(data)
        except msgspec.DecodeError:
            bad = {"error": {"message": "sent a response that is not valid JSON"}}
            raise provider_error(self.provider, 0, bad) from None
        out: list[ProviderEvent] = []
        if not self._meta_sent and (chunk.response_id or chunk.model_version):
            out.append(ResponseMeta(chunk.response_id, chunk.model_version))
            self._meta_sent = True
        if chunk.usage_metadata is not None:
            self.usage = usage_event(chunk.usage_metadata)
        if chunk.error is not None:
            raise provider_error(self.provider, 0, {"error": chunk.error})
        for candidate in chunk.candidates or ():
            if candidate.index not in (None, 0):
                continue
            if candidate.content is not None:
                for part in candidate.content.parts or ():
                    self._part(part, chunk.response_id, out)
            if candidate.finish_reason:
                self.finish = Finish(finish_reason(candidate.finish_reason), candidate.finish_reason)
        blocked = chunk.prompt_feedback.block_reason if chunk.prompt_feedback is not None else None
        if blocked and not chunk.candidates:
            self.finish = Finish("content_filter", blocked)
        return out

    def _part(self, part: _Part, response_id: str | None, out: list[ProviderEvent]) -> None:
        sig = part.thought_signature
        if part.function_call is not None:
            self._function_call(part.function_call, sig, response_id, out)
            self._last = "call"
            self._thought_run = []
        elif part.thought:
            if part.text:
                out.append(ThinkingDelta(text=part.text))
                self._thought_run.append(part.text)
            if sig:
                run = "".join(self._thought_run)
                self._signatures.append({"part": "thought", "text": run, "signature": sig})
                self._thought_run = []
            self._last = "thought"
        elif part.text is not None or sig:
            if self._last != "text":
                self._text_runs += 1
            if part.text:
                out.append(TextDelta(text=part.text))
            if sig:
                self._signatures.append({"part": "text", "index": self._text_runs - 1, "signature": sig})
            self._last = "text"
            self._thought_run = []

    def _function_call(
        self, call: _FunctionCall, sig: str | None, response_id: str | None, out: list[ProviderEvent]
    ) -> None:
        index = self._calls
        self._calls += 1
        name = call.name or ""
        args = msgspec.json.encode(call.args if call.args is not None else {}).decode()
        call_id = call.id
        if not call_id:
            call_id = generated_call_id(response_id, index, name, args)
            self._generated.append(call_id)
        out.append(ToolCallDelta(index=index, id=call_id, name=name, arguments_delta=args))
        if sig:
            self._signatures.append({"part": "function_call", "id": call_id, "name": name, "signature": sig})

    def continuation(self) -> dict[str, Any] | None:
        if not self._signatures and not self._generated:
            return None
        data: dict[str, Any] = {"provider": PROVIDER_TAG, "signatures": list(self._signatures)}
        if self._generated:
            data["generated_ids"] = list(self._generated)
        return data

    def final_usage(self) -> UsageEvent:
        return self.usage or UsageEvent(
            input_tokens=0, output_tokens=0, cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0
        )

    def end(self) -> list[ProviderEvent]:
        """Finish (stop when none was sent), continuation, usage: the tail of every answer."""
        out: list[ProviderEvent] = [self.finish or Finish("stop")]
        continuation = self.continuation()
        if continuation is not None:
            out.append(Continuation(continuation))
        if self.usage is not None:  # else the chat service estimates it
            out.append(self.usage)
        return out


def decode_response(provider: str, body: bytes) -> list[ProviderEvent]:
    """A whole `generateContent` answer as the same events a stream gives."""
    decoder = ResponseDecoder(provider)
    events = decoder.feed(body)
    return events + decoder.end()
