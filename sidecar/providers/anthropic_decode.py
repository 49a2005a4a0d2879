"""The Anthropic Messages API's answers (API version 2023-06-01) as provider events: `StreamDecoder`
turns the events of a stream into them, `decode_message` a whole (non-streamed) Message, so one
assembler serves both.

* Usage: Anthropic's `input_tokens` counts only what was neither read from nor written to the
  cache, and `message_delta`'s counts are cumulative; the contract's `input_tokens` counts every
  prompt token.
* An assistant turn's thinking blocks (with their signatures) and redacted thinking come out as a
  `Continuation` (`anthropic_format.CONTINUATION_PROVIDER`), which `anthropic_format` puts back
  first in that turn when the host sends it back.
* Event and delta types added after this was written are ignored, as Anthropic asks.

Must not know: HTTP, keys, the protocol, how requests are built.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from sidecar.core.assemble import Continuation, Finish, ProviderEvent, ResponseMeta
from sidecar.providers.anthropic_format import CONTINUATION_PROVIDER
from sidecar.providers.errors import provider_error
from sidecar.wire.chat import FinishReason, TextDelta, ThinkingDelta, ToolCallDelta, UsageEvent

STOP_REASONS: Final[dict[str, FinishReason]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class _OutputDetails(msgspec.Struct):
    thinking_tokens: int | None = None


class _Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    output_tokens_details: _OutputDetails | None = None


class _Block(msgspec.Struct):
    type: str = ""
    text: str | None = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None


class _Delta(msgspec.Struct):
    """`content_block_delta.delta` and `message_delta.delta` in one shape."""

    type: str = ""
    text: str | None = None
    thinking: str | None = None
    signature: str | None = None
    partial_json: str | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None


class _Message(msgspec.Struct):
    id: str | None = None
    model: str | None = None
    content: list[_Block] = msgspec.field(default_factory=list)
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: _Usage | None = None


class _Event(msgspec.Struct):
    type: str = ""
    index: int | None = None
    message: _Message | None = None
    content_block: _Block | None = None
    delta: _Delta | None = None
    usage: _Usage | None = None
    error: Any = None


_event_decoder: Final = msgspec.json.Decoder(_Event)
_message_decoder: Final = msgspec.json.Decoder(_Message)
_json_encode: Final = msgspec.json.encode


class _UsageTotals:
    """Anthropic's counts, kept as the latest value of each (message_delta's are cumulative)."""

    def __init__(self) -> None:
        self.input = 0
        self.output = 0
        self.cache_write = 0
        self.cache_read = 0
        self.thinking = 0
        self.seen = False

    def update(self, usage: _Usage) -> None:
        self.seen = True
        if usage.input_tokens is not None:
            self.input = usage.input_tokens
        if usage.output_tokens is not None:
            self.output = usage.output_tokens
        if usage.cache_creation_input_tokens is not None:
            self.cache_write = usage.cache_creation_input_tokens
        if usage.cache_read_input_tokens is not None:
            self.cache_read = usage.cache_read_input_tokens
        details = usage.output_tokens_details
        if details is not None and details.thinking_tokens is not None:
            self.thinking = details.thinking_tokens

    def event(self) -> UsageEvent:
        # Anthropic's input_tokens counts only what was neither read from nor written to the cache.
        return UsageEvent(
            input_tokens=self.input + self.cache_write + self.cache_read,
            output_tokens=self.output,
            cache_read_tokens=self.cache_read,
            cache_write_tokens=self.cache_write,
            reasoning_tokens=self.thinking,
        )


def _finish(stop_reason: str | None, stop_sequence: str | None = None) -> Finish:
    matched = stop_sequence if stop_reason == "stop_sequence" else None
    return Finish(STOP_REASONS.get(stop_reason or "", "stop"), stop_reason, matched)


def _continuation(blocks: list[dict[str, Any]]) -> list[ProviderEvent]:
    if not blocks:
        return []
    return [Continuation({"provider": CONTINUATION_PROVIDER, "blocks": blocks})]


class _OpenBlock:
    __slots__ = ("args", "input", "kind", "signature", "thinking", "tool_index")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.tool_index = -1
        self.thinking: list[str] = []
        self.signature: list[str] = []
        self.args = False  # any input_json_delta piece seen
        self.input: Any = None


class StreamDecoder:
    """Turns the events of a Messages stream into provider events, in order.

    `feed(event_name, data)` takes one SSE event; `done` turns true at `message_stop`, which is when
    `Finish` and the `Continuation` come out; the caller then adds `final_usage()`.
    """

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.done = False
        self._usage = _UsageTotals()
        self._stop_reason: str | None = None
        self._stop_sequence: str | None = None
        self._open: dict[int, _OpenBlock] = {}
        self._kept: dict[int, dict[str, Any]] = {}  # thinking blocks for the continuation, by index
        self._tools = 0

    @property
    def usage(self) -> UsageEvent | None:
        """The usage reported so far (None before `message_start`)."""
        return self._usage.event() if self._usage.seen else None

    def final_usage(self) -> UsageEvent:
        return self._usage.event()

    # The `relay_sse` side: a Messages stream ends with `message_stop`.
    terminator = "message_stop"

    @property
    def terminated(self) -> bool:
        return self.done

    @property
    def complete(self) -> bool:
        return self.done

    def on_event(self, event: str, data: str) -> list[ProviderEvent]:
        return self.feed(event, data)

    def end(self) -> list[ProviderEvent]:
        return [self.final_usage()]

    def feed(self, event_name: str, data: str | bytes) -> list[ProviderEvent]:
        try:
            ev = _event_decoder.decode(data)
        except msgspec.DecodeError:
            raise provider_error(
                self.provider, 0, {"error": {"message": "sent a stream event that is not valid JSON"}}
            ) from None
        kind = ev.type or event_name
        out: list[ProviderEvent] = []
        if kind == "content_block_delta":
            self._delta(ev, out)
        elif kind == "content_block_start":
            self._start(ev, out)
        elif kind == "content_block_stop":
            self._stop(ev, out)
        elif kind == "message_start":
            if ev.message is not None:
                out.append(ResponseMeta(ev.message.id, ev.message.model))
                if ev.message.usage is not None:
                    self._usage.update(ev.message.usage)
        elif kind == "message_delta":
            if ev.delta is not None and ev.delta.stop_reason:
                self._stop_reason = ev.delta.stop_reason
                self._stop_sequence = ev.delta.stop_sequence
            if ev.usage is not None:
                self._usage.update(ev.usage)
        elif kind == "message_stop":
            self.done = True
            out.append(_finish(self._stop_reason, self._stop_sequence))
            out.extend(_continuation([self._kept[i] for i in sorted(self._kept)]))
        elif kind == "error":
            raise provider_error(self.provider, 0, data.encode() if isinstance(data, str) else data)
        # ping, and event types added after this was written, are ignored (as Anthropic asks).
        return out

    def _start(self, ev: _Event, out: list[ProviderEvent]) -> None:
        block = ev.content_block
        if block is None or ev.index is None:
            return
        state = self._open[ev.index] = _OpenBlock(block.type)
        if block.type == "text":
            if block.text:
                out.append(TextDelta(text=block.text))
        elif block.type == "thinking":
            if block.thinking:
                state.thinking.append(block.thinking)
                out.append(ThinkingDelta(text=block.thinking))
            if block.signature:
                state.signature.append(block.signature)
        elif block.type == "redacted_thinking":
            self._kept[ev.index] = {"type": "redacted_thinking", "data": block.data or ""}
        elif block.type == "tool_use":
            state.tool_index = self._tools
            self._tools += 1
            state.input = block.input
            out.append(ToolCallDelta(index=state.tool_index, id=block.id or None, name=block.name or None))

    def _delta(self, ev: _Event, out: list[ProviderEvent]) -> None:
        delta = ev.delta
        state = self._open.get(ev.index) if ev.index is not None else None
        if delta is None or state is None:
            return
        if delta.type == "text_delta":
            if delta.text:
                out.append(TextDelta(text=delta.text))
        elif delta.type == "thinking_delta":
            if delta.thinking:
                state.thinking.append(delta.thinking)
                out.append(ThinkingDelta(text=delta.thinking))
        elif delta.type == "signature_delta":
            if delta.signature:
                state.signature.append(delta.signature)
        elif delta.type == "input_json_delta" and delta.partial_json and state.kind == "tool_use":
            state.args = True
            out.append(ToolCallDelta(index=state.tool_index, arguments_delta=delta.partial_json))
        # citations_delta and later delta types carry nothing the contract has a place for.

    def _stop(self, ev: _Event, out: list[ProviderEvent]) -> None:
        if ev.index is None:
            return
        state = self._open.pop(ev.index, None)
        if state is None:
            return
        if state.kind == "thinking":
            self._kept[ev.index] = {
                "type": "thinking",
                "thinking": "".join(state.thinking),
                "signature": "".join(state.signature),
            }
        elif state.kind == "tool_use" and not state.args and isinstance(state.input, dict) and state.input:
            # Some Anthropic-compatible servers send the whole input at the start, with no deltas.
            out.append(
                ToolCallDelta(index=state.tool_index, arguments_delta=_json_encode(state.input).decode())
            )


def decode_message(provider: str, body: bytes) -> list[ProviderEvent]:
    """A whole (non-streamed) Message as the same events its stream would give."""
    try:
        msg = _message_decoder.decode(body)
    except msgspec.DecodeError:
        raise provider_error(
            provider, 0, {"error": {"message": "sent an answer that is not valid JSON"}}
        ) from None
    out: list[ProviderEvent] = [ResponseMeta(msg.id, msg.model)]
    kept: list[dict[str, Any]] = []
    tools = 0
    for block in msg.content:
        if block.type == "text" and block.text:
            out.append(TextDelta(text=block.text))
        elif block.type == "thinking":
            if block.thinking:
                out.append(ThinkingDelta(text=block.thinking))
            kept.append(
                {"type": "thinking", "thinking": block.thinking or "", "signature": block.signature or ""}
            )
        elif block.type == "redacted_thinking":
            kept.append({"type": "redacted_thinking", "data": block.data or ""})
        elif block.type == "tool_use":
            args = block.input if isinstance(block.input, dict) else {}
            out.append(
                ToolCallDelta(
                    index=tools,
                    id=block.id or None,
                    name=block.name or None,
                    arguments_delta=_json_encode(args).decode(),
                )
            )
            tools += 1
    out.append(_finish(msg.stop_reason, msg.stop_sequence))
    out.extend(_continuation(kept))
    usage = _UsageTotals()
    if msg.usage is not None:
        usage.update(msg.usage)
    out.append(usage.event())
    return out
