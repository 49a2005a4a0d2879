"""The OpenAI Chat Completions wire format, as spoken by OpenAI, xAI, OpenRouter and custom endpoints.

Pure: `build_body` turns contract params into a request body for a dialect, `ChunkDecoder` turns
stream chunks into provider events, `decode_completion` does the same for a whole answer;
`count_body` is OpenAI's token-count request for the same params. Dialect
differences (which max-tokens field, how reasoning is asked for and returned, cache hints) are
data in `Dialect`, not branches spread through the code.

Must not know: HTTP, keys, the protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec

from sidecar.core.assemble import Finish, ProviderEvent, ResponseMeta
from sidecar.errors import SidecarError
from sidecar.providers.content import text_of
from sidecar.providers.errors import provider_error
from sidecar.wire.chat import (
    CompleteParams,
    FinishReason,
    ImagePart,
    JsonSchemaFormat,
    Message,
    ResponseFormat,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ToolCallDelta,
    ToolChoiceName,
    UsageEvent,
)


@dataclass(frozen=True, slots=True)
class Dialect:
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_completion_tokens"
    reasoning: Literal["effort", "openrouter"] = "effort"
    stream_usage: bool = True
    cache_control: bool = False  # OpenRouter passes cache_control breakpoints to Anthropic/Gemini


OPENAI: Final = Dialect()
XAI: Final = Dialect(max_tokens_field="max_completion_tokens")
OPENROUTER: Final = Dialect(max_tokens_field="max_tokens", reasoning="openrouter", cache_control=True)

_FINISH: Final[dict[str, FinishReason]] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
_EPHEMERAL: Final = {"type": "ephemeral"}


def effort_for_budget(budget: int) -> str:
    return "low" if budget < 2048 else "medium" if budget < 8192 else "high"


def _image_url(part: ImagePart) -> str:
    if part.url:
        return part.url
    if part.data:
        return f"data:{part.media_type or 'image/png'};base64,{part.data}"
    raise SidecarError(
        "invalid_request", "An image part needs `url`, or `data` with `media_type`.", field="messages"
    )


def _parts(content: str | list[TextPart | ImagePart] | None, cache: bool, dialect: Dialect) -> Any:
    if content is None:
        return None
    if isinstance(content, str):
        if cache and dialect.cache_control:
            return [{"type": "text", "text": content, "cache_control": _EPHEMERAL}]
        return content
    out: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, TextPart):
            item: dict[str, Any] = {"type": "text", "text": part.text}
        else:
            item = {"type": "image_url", "image_url": {"url": _image_url(part)}}
        if part.cache and dialect.cache_control:
            item["cache_control"] = _EPHEMERAL
        out.append(item)
    if cache and dialect.cache_control and out:
        out[-1]["cache_control"] = _EPHEMERAL
    return out


def _message(msg: Message, dialect: Dialect) -> dict[str, Any]:
    if msg.role == "tool":
        if not msg.tool_call_id:
            raise SidecarError("invalid_request", "A tool message needs `tool_call_id`.", field="messages")
        return {"role": "tool", "tool_call_id": msg.tool_call_id, "content": text_of(msg.content)}
    out: dict[str, Any] = {"role": msg.role}
    if msg.role == "assistant":
        text = text_of(msg.content)
        # A turn of tool calls alone goes out without `content`: `null` is refused by strict
        # servers (llama.cpp: "Input should be a valid string"), and every server takes it absent.
        if text or not msg.tool_calls:
            out["content"] = text
        if msg.tool_calls:
            out["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": msgspec.json.encode(call.arguments).decode(),
                    },
                }
                for call in msg.tool_calls
            ]
    else:
        out["content"] = _parts(msg.content, msg.cache, dialect)
        if msg.name:
            out["name"] = msg.name
    return out


def _input_part(part: dict[str, Any]) -> dict[str, Any]:
    if part["type"] == "text":
        return {"type": "input_text", "text": part["text"]}
    return {"type": "input_image", "image_url": part["image_url"]["url"]}


def count_body(model: str, params: CompleteParams) -> dict[str, Any]:
    """OpenAI's `POST /v1/responses/input_tokens` body for the request (OpenAI counts tokens only
    through the Responses API): its chat messages as input items, an assistant turn's tool calls as
    `function_call` items and tool results as their outputs, its tools, tool choice and effort."""
    chat = build_body(model, params, OPENAI, stream=False)
    items: list[dict[str, Any]] = []
    for message in chat["messages"]:
        role = message["role"]
        if role == "tool":
            items.append({"type": "function_call_output", "call_id": message["tool_call_id"],
                          "output": message["content"]})  # fmt: skip
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = [_input_part(part) for part in content]
        if content or role != "assistant":
            items.append({"role": role, "content": content or ""})
        for call in message.get("tool_calls") or []:
            function = call["function"]
            items.append({"type": "function_call", "call_id": call["id"], "name": function["name"],
                          "arguments": function["arguments"]})  # fmt: skip
    body: dict[str, Any] = {"model": model, "input": items}
    if "tools" in chat:
        body["tools"] = [{"type": "function", **tool["function"]} for tool in chat["tools"]]
    choice = chat.get("tool_choice")
    if isinstance(choice, dict):
        body["tool_choice"] = {"type": "function", "name": choice["function"]["name"]}
    elif choice is not None:
        body["tool_choice"] = choice
    if "reasoning_effort" in chat:
        body["reasoning"] = {"effort": chat["reasoning_effort"]}
    return body


def _response_format(fmt: ResponseFormat) -> dict[str, Any]:
    if not isinstance(fmt, JsonSchemaFormat):
        return {"type": "json_object"}
    schema: dict[str, Any] = {"name": fmt.name or "answer", "schema": fmt.schema}
    if fmt.strict is not None:
        schema["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": schema}


def build_body(model: str, params: CompleteParams, dialect: Dialect, *, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [_message(m, dialect) for m in params.messages]}
    if params.max_tokens is not None:
        body[dialect.max_tokens_field] = params.max_tokens
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.stop is not None:
        body["stop"] = params.stop
    if params.tools:
        tools = []
        for tool in params.tools:
            entry: dict[str, Any] = {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.parameters,
                },
            }
            if tool.cache and dialect.cache_control:
                entry["cache_control"] = _EPHEMERAL
            tools.append(entry)
        body["tools"] = tools
    if params.response_format is not None:
        body["response_format"] = _response_format(params.response_format)
    if params.tool_choice is not None:
        if isinstance(params.tool_choice, ToolChoiceName):
            body["tool_choice"] = {"type": "function", "function": {"name": params.tool_choice.name}}
        else:
            body["tool_choice"] = params.tool_choice
    reasoning = params.reasoning
    if reasoning is not None and (reasoning.effort or reasoning.budget_tokens is not None):
        if dialect.reasoning == "openrouter":
            if reasoning.effort:
                body["reasoning"] = {"effort": reasoning.effort}
            else:
                body["reasoning"] = {"max_tokens": reasoning.budget_tokens}
        else:
            budget = reasoning.budget_tokens or 0
            body["reasoning_effort"] = reasoning.effort or effort_for_budget(budget)
    if stream:
        body["stream"] = True
        if dialect.stream_usage:
            body["stream_options"] = {"include_usage": True}
    return body


# --- decoding -----------------------------------------------------------------------------------


class _Fn(msgspec.Struct):
    name: str | None = None
    arguments: str | Any | None = None


class _ToolCallDelta(msgspec.Struct):
    index: int | None = None
    id: str | None = None
    function: _Fn | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[_ToolCallDelta] | None = None
    refusal: str | None = None


class _PromptDetails(msgspec.Struct):
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None


class _CompletionDetails(msgspec.Struct):
    reasoning_tokens: int | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None


class _Choice(msgspec.Struct):
    index: int = 0
    delta: _Delta | None = None
    message: _Delta | None = None
    finish_reason: str | None = None


class _Chunk(msgspec.Struct):
    id: str | None = None
    model: str | None = None
    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    error: Any = None


_chunk_decoder: Final = msgspec.json.Decoder(_Chunk)


def usage_event(usage: _Usage) -> UsageEvent:
    prompt = usage.prompt_tokens or 0
    completion = usage.completion_tokens or 0
    details = usage.prompt_tokens_details
    reasoning = (
        (usage.completion_tokens_details.reasoning_tokens or 0) if usage.completion_tokens_details else 0
    )
    # OpenAI counts reasoning inside completion_tokens; xAI does not (its total adds them on top).
    # The total tells which, so no per-provider rule is needed.
    output = completion
    if reasoning and usage.total_tokens == prompt + completion + reasoning:
        output = completion + reasoning
    return UsageEvent(
        input_tokens=prompt,
        output_tokens=output,
        cache_read_tokens=(details.cached_tokens or 0) if details else 0,
        cache_write_tokens=(details.cache_write_tokens or 0) if details else 0,
        reasoning_tokens=reasoning,
    )


class ChunkDecoder:
    """Turns `data:` payloads of a chat-completions stream into provider events, in order."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._tool_index: dict[int, int] = {}
        self.usage: UsageEvent | None = None
        self.done = False
        self.finished = False
        self._meta_sent = False

    def feed(self, data: str | bytes) -> list[ProviderEvent]:
        if data == "[DONE]" or data == b"[DONE]":
            self.done = True
            return []
        try:
            chunk = _chunk_decoder.decode(data)
        except msgspec.DecodeError:
            raise provider_error(
                self.provider, 0, {"error": {"message": "sent a stream chunk that is not valid JSON"}}
            ) from None
        out: list[ProviderEvent] = []
        if not self._meta_sent and (chunk.id or chunk.model):
            out.append(ResponseMeta(chunk.id, chunk.model))
            self._meta_sent = True
        if chunk.usage is not None:
            self.usage = usage_event(chunk.usage)
        if chunk.error:
            # A mid-stream failure (OpenAI `{"error": ...}`, OpenRouter's error chunk): relay what
            # usage it carried, then fail.
            raise provider_error(self.provider, 0, {"error": chunk.error})
        for choice in chunk.choices or ():
            if choice.index != 0:
                continue
            delta = choice.delta or choice.message
            if delta is not None:
                self._delta(delta, out)
            if choice.finish_reason:
                if choice.finish_reason == "error":
                    raise provider_error(
                        self.provider, 0, {"error": {"message": "the upstream model failed mid-answer"}}
                    )
                out.append(Finish(_FINISH.get(choice.finish_reason, "stop"), choice.finish_reason))
                self.finished = True
        return out

    def _delta(self, delta: _Delta, out: list[ProviderEvent]) -> None:
        thinking = delta.reasoning_content or delta.reasoning
        if thinking:
            out.append(ThinkingDelta(text=thinking))
        if delta.content:
            out.append(TextDelta(text=delta.content))
        for call in delta.tool_calls or ():
            upstream_index = call.index if call.index is not None else len(self._tool_index)
            index = self._tool_index.setdefault(upstream_index, len(self._tool_index))
            fn = call.function
            args = fn.arguments if fn is not None else None
            if args is not None and not isinstance(args, str):
                args = msgspec.json.encode(args).decode()
            out.append(
                ToolCallDelta(
                    index=index,
                    id=call.id or None,
                    name=(fn.name or None) if fn is not None else None,
                    arguments_delta=args or None,
                )
            )

    def final_usage(self) -> list[ProviderEvent]:
        """The usage the upstream reported, if it did (else the chat service estimates it)."""
        return [self.usage] if self.usage is not None else []

    # The `relay_sse` side: chat-completions streams end with `data: [DONE]`.
    terminator = "[DONE]"

    @property
    def terminated(self) -> bool:
        return self.done

    @property
    def complete(self) -> bool:
        return self.done

    def on_event(self, event: str, data: str) -> list[ProviderEvent]:
        return self.feed(data)

    def end(self) -> list[ProviderEvent]:
        # `[DONE]` without any finish reason is a cut answer (llama.cpp ends the first of two
        # concurrent streams so), not a clean stop.
        truncated: list[ProviderEvent] = [] if self.finished else [Finish("incomplete", None)]
        return [*truncated, *self.final_usage()]


def decode_completion(provider: str, body: bytes) -> list[ProviderEvent]:
    """A whole (non-streamed) chat completion as the same events a stream would give."""
    decoder = ChunkDecoder(provider)
    events = decoder.feed(body)
    events.extend(decoder.final_usage())
    return events
