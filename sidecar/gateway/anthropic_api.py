"""Anthropic's Messages API shapes and their translation to and from the sidecar's chat types.

Pure: no I/O. `to_params` turns a Messages request into `CompleteParams` builtins; `response`
turns a `ChatResult` into a `message`; `EventEncoder` turns stream events into the exact event
sequence the official SDK expects: `message_start`, then per content block `content_block_start`,
deltas, `content_block_stop`, then `message_delta` (stop reason, cumulative usage) and
`message_stop`.

Thinking blocks with their signatures travel in a result's `continuation` (provider
`anthropic`); they come back to the client as `thinking` blocks, and a client's `thinking` blocks
go back into the assistant message's continuation, so a tool-use turn with thinking continues.

Must not know: HTTP, how a request is run, providers other than through the continuation's shape.
"""

from __future__ import annotations

import itertools
import os
from typing import Any, Literal

import msgspec

from sidecar.gateway.errors import InvalidRequest
from sidecar.wire.chat import (
    AttemptEvent,
    ChatResult,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    UsageEvent,
)

CONTINUATION_PROVIDER = "anthropic"

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


class CacheControl(msgspec.Struct, omit_defaults=True):
    type: str = "ephemeral"
    ttl: str | None = None


class ImageSource(msgspec.Struct, omit_defaults=True):
    type: str
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class ContentBlock(msgspec.Struct, omit_defaults=True):
    """Any block a request may carry: text, image, tool_use, tool_result, thinking, redacted_thinking."""

    type: str
    text: str | None = None
    source: ImageSource | None = None
    id: str | None = None
    name: str | None = None
    input: dict[str, Any] | None = None
    tool_use_id: str | None = None
    content: str | list[ContentBlock] | None = None
    is_error: bool | None = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None
    cache_control: CacheControl | None = None


class MessageParam(msgspec.Struct, omit_defaults=True):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class ToolParam(msgspec.Struct, omit_defaults=True):
    name: str
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    cache_control: CacheControl | None = None
    type: str | None = None


class ToolChoiceParam(msgspec.Struct, omit_defaults=True):
    type: Literal["auto", "any", "none", "tool"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class ThinkingParam(msgspec.Struct, omit_defaults=True):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None


class OutputFormat(msgspec.Struct):
    type: Literal["json_schema"]
    schema: dict[str, Any]


class OutputConfig(msgspec.Struct, omit_defaults=True):
    """Structured outputs: `format` asks for JSON that follows a schema (`effort` is ignored)."""

    format: OutputFormat | None = None


class MessagesRequest(msgspec.Struct, omit_defaults=True):
    """Fields the gateway uses; others (`metadata`, `service_tier`…) are accepted and ignored."""

    model: str
    max_tokens: int
    messages: list[MessageParam]
    system: str | list[ContentBlock] | None = None
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoiceParam | None = None
    thinking: ThinkingParam | None = None
    output_config: OutputConfig | None = None


class CountTokensRequest(msgspec.Struct, omit_defaults=True):
    """`POST /v1/messages/count_tokens`: what shapes the prompt of a Messages request."""

    model: str
    messages: list[MessageParam]
    system: str | list[ContentBlock] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoiceParam | None = None
    thinking: ThinkingParam | None = None


class AnthropicUsage(msgspec.Struct):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class ResponseMessage(msgspec.Struct):
    id: str
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: AnthropicUsage
    stop_sequence: str | None = None
    type: str = "message"
    role: str = "assistant"


# --- request → CompleteParams -----------------------------------------------------------------------


def _block_text(content: str | list[ContentBlock] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(b.text or "" for b in content if b.type == "text")


def _image(block: ContentBlock, where: str) -> dict[str, Any]:
    src = block.source
    if src is not None and src.type == "base64" and src.data:
        return {"type": "image", "data": src.data, "media_type": src.media_type or "image/png"}
    if src is not None and src.type == "url" and src.url:
        return {"type": "image", "url": src.url}
    raise InvalidRequest("An image block needs a base64 or url source.", where)


def _user_turns(msg: MessageParam, where: str) -> list[dict[str, Any]]:
    """A user message: its tool results become `tool` turns, the rest one user turn."""
    if isinstance(msg.content, str):
        return [{"role": "user", "content": msg.content}]
    turns: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(msg.content):
        here = f"{where}.content[{i}]"
        if block.type == "tool_result":
            turns.append(
                {"role": "tool", "tool_call_id": block.tool_use_id, "content": _block_text(block.content)}
            )
        elif block.type == "text":
            parts.append({"type": "text", "text": block.text or "", "cache": block.cache_control is not None})
        elif block.type == "image":
            parts.append(_image(block, here))
        else:
            raise InvalidRequest(f"A user message cannot hold a {block.type!r} block.", here)
    if parts:
        turns.append({"role": "user", "content": parts})
    return turns


def _assistant_turn(msg: MessageParam, where: str) -> dict[str, Any]:
    if isinstance(msg.content, str):
        return {"role": "assistant", "content": msg.content}
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    for i, block in enumerate(msg.content):
        if block.type == "text":
            text.append(block.text or "")
        elif block.type == "tool_use":
            calls.append({"id": block.id or "", "name": block.name or "", "arguments": block.input or {}})
        elif block.type == "thinking":
            kept.append(
                {"type": "thinking", "thinking": block.thinking or "", "signature": block.signature or ""}
            )
        elif block.type == "redacted_thinking":
            kept.append({"type": "redacted_thinking", "data": block.data or ""})
        else:
            raise InvalidRequest(
                f"An assistant message cannot hold a {block.type!r} block.", f"{where}.content[{i}]"
            )
    turn: dict[str, Any] = {"role": "assistant", "content": "".join(text)}
    if calls:
        turn["tool_calls"] = calls
    if kept:
        turn["continuation"] = {"provider": CONTINUATION_PROVIDER, "blocks": kept}
    return turn


def to_params(req: MessagesRequest, model: str) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if req.system:
        if isinstance(req.system, str):
            messages.append({"role": "system", "content": req.system})
        else:
            cached = any(b.cache_control is not None for b in req.system)
            messages.append({"role": "system", "content": _block_text(req.system), "cache": cached})
    for i, msg in enumerate(req.messages):
        where = f"messages[{i}]"
        if msg.role == "user":
            messages.extend(_user_turns(msg, where))
        else:
            messages.append(_assistant_turn(msg, where))
    if not any(m["role"] != "system" for m in messages):
        raise InvalidRequest("`messages` must not be empty.", "messages")
    params: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": req.max_tokens}
    for name, value in (("temperature", req.temperature), ("top_p", req.top_p), ("stop", req.stop_sequences)):
        if value is not None:
            params[name] = value
    if req.tools:
        params["tools"] = [
            {
                "name": t.name,
                "description": t.description or "",
                "parameters": t.input_schema or {"type": "object", "properties": {}},
                "cache": t.cache_control is not None,
            }
            for t in req.tools
        ]
    if req.tool_choice is not None:
        choice = req.tool_choice
        params["tool_choice"] = (
            {"name": choice.name or ""}
            if choice.type == "tool"
            else {"auto": "auto", "any": "required", "none": "none"}[choice.type]
        )
    if req.thinking is not None and req.thinking.type == "enabled":
        params["reasoning"] = {"budget_tokens": req.thinking.budget_tokens or 1024}
    elif req.thinking is not None and req.thinking.type == "adaptive":
        params["reasoning"] = {"effort": "medium"}
    if req.output_config is not None and req.output_config.format is not None:
        params["response_format"] = {"type": "json_schema", "schema": req.output_config.format.schema}
    return params


def count_params(req: CountTokensRequest, model: str) -> dict[str, Any]:
    """The `count_tokens` params of a count request: its Messages request's, without a
    `max_tokens` (a count has none)."""
    fields = {f: getattr(req, f) for f in req.__struct_fields__}
    params = to_params(MessagesRequest(max_tokens=1, **fields), model)
    params.pop("max_tokens", None)
    return params


# --- ChatResult → message ---------------------------------------------------------------------------


_ID_PREFIX = os.urandom(6).hex()
_ids = itertools.count(1)


def new_id() -> str:
    return f"msg_{_ID_PREFIX}{next(_ids):012x}"


def usage(u: UsageEvent | Any) -> AnthropicUsage:
    """Anthropic counts cache reads and writes apart from `input_tokens`; the sidecar includes them."""
    fresh = max(u.input_tokens - u.cache_read_tokens - u.cache_write_tokens, 0)
    return AnthropicUsage(
        input_tokens=fresh,
        output_tokens=u.output_tokens,
        cache_creation_input_tokens=u.cache_write_tokens,
        cache_read_input_tokens=u.cache_read_tokens,
    )


def _thinking_blocks(result: ChatResult) -> list[dict[str, Any]]:
    data = result.continuation or {}
    if data.get("provider") == CONTINUATION_PROVIDER and isinstance(data.get("blocks"), list):
        return [dict(b) for b in data["blocks"] if isinstance(b, dict)]
    if result.thinking:
        return [{"type": "thinking", "thinking": result.thinking, "signature": ""}]
    return []


def response(result: ChatResult, *, response_id: str) -> ResponseMessage:
    content = _thinking_blocks(result)
    if result.text:
        content.append({"type": "text", "text": result.text})
    for call in result.tool_calls:
        content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments})
    return ResponseMessage(
        id=response_id,
        model=f"{result.provider}:{result.model}",
        content=content,
        stop_reason=stop_reason(result),
        stop_sequence=result.stop_sequence,
        usage=usage(result.usage),
    )


def stop_reason(result: ChatResult) -> str:
    """Anthropic's `stop_reason` for a result: `stop_sequence` when one ended it."""
    if result.stop_sequence is not None:
        return "stop_sequence"
    return STOP_REASONS.get(result.finish_reason, "end_turn")


# --- stream events → SSE events ---------------------------------------------------------------------

_encode = msgspec.json.Encoder().encode


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + _encode(data) + b"\n\n"


def _stop(index: int) -> bytes:
    return _sse("content_block_stop", {"type": "content_block_stop", "index": index})


def signs_thinking(model: str) -> bool:
    """Whether the answer to `model` may carry thinking signatures: an Anthropic model, or a router
    (which candidate answers is known only once it runs; a retry or fallback says so in the stream)."""
    return model.startswith((CONTINUATION_PROVIDER + ":", "router:"))


class EventEncoder:
    """The Messages stream of one request. Blocks open as their first delta arrives and close when
    another kind of block begins (or the answer ends); indexes follow the final `content`.

    While the answer may come from Anthropic (`signs_thinking`), thinking blocks stay open until
    the answer ends: their signatures arrive only with the result, and a client must send them
    back to continue a tool-use turn with thinking. Each then gets its `signature_delta` and its
    `content_block_stop` (the SDKs accumulate deltas by block index). A retry or fallback
    announces its provider before any token is relayed, so the choice follows it."""

    __slots__ = ("_blocks", "_id", "_model", "_open", "_sign", "_started", "_tools", "_unsigned")

    def __init__(
        self, model: str, response_id: str | None = None, *, sign_thinking: bool | None = None
    ) -> None:
        self._id = response_id or new_id()
        self._model = model
        self._started = False
        self._blocks = 0  # how many blocks were opened
        self._open: tuple[str, int] | None = None  # (kind, sidecar tool index or -1)
        self._tools: dict[int, int] = {}
        self._sign = signs_thinking(model) if sign_thinking is None else sign_thinking
        self._unsigned: list[int] = []  # thinking blocks left open for their signatures

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return _sse("message_start", {"type": "message_start", "message": message})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        kind = self._open[0]
        self._open = None
        if kind == "thinking" and self._sign:
            self._unsigned.append(self._blocks - 1)
            return b""
        return _stop(self._blocks - 1)

    def _open_block(self, kind: str, tool: int, block: dict[str, Any]) -> bytes:
        out = self._close()
        self._open = (kind, tool)
        self._blocks += 1
        return out + _sse(
            "content_block_start",
            {"type": "content_block_start", "index": self._blocks - 1, "content_block": block},
        )

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return _sse(
            "content_block_delta", {"type": "content_block_delta", "index": self._blocks - 1, "delta": delta}
        )

    def event(self, event: StreamEvent) -> bytes:
        if isinstance(event, TextDelta):
            if not event.text:
                return b""
            out = self._start()
            if self._open is None or self._open[0] != "text":
                out += self._open_block("text", -1, {"type": "text", "text": ""})
            return out + self._delta({"type": "text_delta", "text": event.text})
        if isinstance(event, ThinkingDelta):
            if not event.text:
                return b""
            out = self._start()
            if self._open is None or self._open[0] != "thinking":
                out += self._open_block("thinking", -1, {"type": "thinking", "thinking": "", "signature": ""})
            return out + self._delta({"type": "thinking_delta", "thinking": event.text})
        if isinstance(event, ToolCallDelta):
            out = self._start()
            if self._open != ("tool_use", event.index):
                if event.index in self._tools:
                    return out  # a late fragment of a closed block cannot be sent in this format
                block = {"type": "tool_use", "id": event.id or "", "name": event.name or "", "input": {}}
                out += self._open_block("tool_use", event.index, block)
                self._tools[event.index] = self._blocks - 1
            if event.arguments_delta:
                out += self._delta({"type": "input_json_delta", "partial_json": event.arguments_delta})
            return out
        if isinstance(event, AttemptEvent):
            self._sign = event.provider == CONTINUATION_PROVIDER
        return b""

    def finish(self, result: ChatResult) -> bytes:
        out = self._start() + self._close()
        signatures = [
            b.get("signature") or "" for b in _thinking_blocks(result) if b.get("type") == "thinking"
        ]
        for i, index in enumerate(self._unsigned):
            if i < len(signatures) and signatures[i]:
                delta = {"type": "signature_delta", "signature": signatures[i]}
                out += _sse(
                    "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
                )
            out += _stop(index)
        u = usage(result.usage)
        delta = {
            "type": "message_delta",
            "delta": {
                "stop_reason": stop_reason(result),
                "stop_sequence": result.stop_sequence,
            },
            "usage": msgspec.to_builtins(u),
        }
        return out + _sse("message_delta", delta) + _sse("message_stop", {"type": "message_stop"})

    @staticmethod
    def error(body: dict[str, Any]) -> bytes:
        return _sse("error", {"type": "error", "error": body["error"]})
