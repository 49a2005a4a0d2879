"""Provider-neutral events and the assembler that turns a stream of them into one result.

Providers emit the contract's wire events (text, thinking, tool-call deltas, usage) plus three
internal ones defined here (finish, continuation, response metadata). The same assembler serves
`complete` and `stream`, so both give the same result for the same upstream answer.

Must not know: providers' wire formats, I/O, the protocol.
"""

from __future__ import annotations

from typing import Any

import msgspec

from sidecar.wire.base import ZERO_USAGE, Usage
from sidecar.wire.chat import (
    ChatResult,
    FinishReason,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    UsageEvent,
)


class Finish(msgspec.Struct, frozen=True):
    reason: FinishReason
    raw: str | None = None
    stop_sequence: str | None = None  # the one that ended the answer, when that is known


class Continuation(msgspec.Struct, frozen=True):
    """Provider state the host must send back on the next turn (see `Message.continuation`)."""

    data: dict[str, Any]


class ResponseMeta(msgspec.Struct, frozen=True):
    response_id: str | None = None
    model: str | None = None


ProviderEvent = TextDelta | ThinkingDelta | ToolCallDelta | UsageEvent | Finish | Continuation | ResponseMeta

# What is relayed to the host as `stream/event`; the rest stays inside the sidecar.
RELAYED = (TextDelta, ThinkingDelta, ToolCallDelta, UsageEvent)

_json_decode = msgspec.json.Decoder(dict[str, Any]).decode


class _PendingCall:
    __slots__ = ("args", "id", "name")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.args: list[str] = []


def usage_from_event(ev: UsageEvent) -> Usage:
    return Usage(
        input_tokens=ev.input_tokens,
        output_tokens=ev.output_tokens,
        cache_read_tokens=ev.cache_read_tokens,
        cache_write_tokens=ev.cache_write_tokens,
        reasoning_tokens=ev.reasoning_tokens,
    )


class AnswerTooLarge(Exception):
    """The answer's text, thinking and tool arguments together passed the assembler's cap."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"over {limit} characters")
        self.limit = limit


class Assembler:
    """Collects events; `started` turns true at the first content delta (no retry after that).

    `max_chars` caps what it holds (text, thinking, tool arguments): an endless answer fails with
    `AnswerTooLarge` instead of growing the heap."""

    def __init__(self, max_chars: int | None = None) -> None:
        self.max_chars = max_chars
        self.chars = 0
        self._text: list[str] = []
        self._thinking: list[str] = []
        self._calls: dict[int, _PendingCall] = {}
        self.usage: Usage | None = None
        self.finish: Finish | None = None
        self.continuation: dict[str, Any] | None = None
        self.meta = ResponseMeta()
        self.started = False

    def _grow(self, n: int) -> None:
        self.chars += n
        if self.max_chars is not None and self.chars > self.max_chars:
            raise AnswerTooLarge(self.max_chars)

    def add(self, ev: ProviderEvent) -> None:
        if isinstance(ev, TextDelta):
            self._grow(len(ev.text))
            self._text.append(ev.text)
            self.started = True
        elif isinstance(ev, ThinkingDelta):
            self._grow(len(ev.text))
            self._thinking.append(ev.text)
            self.started = True
        elif isinstance(ev, ToolCallDelta):
            call = self._calls.get(ev.index)
            if call is None:
                call = self._calls[ev.index] = _PendingCall()
            if ev.id:
                call.id = ev.id
            if ev.name:
                call.name = ev.name
            if ev.arguments_delta:
                self._grow(len(ev.arguments_delta))
                call.args.append(ev.arguments_delta)
            self.started = True
        elif isinstance(ev, UsageEvent):
            self.usage = usage_from_event(ev)
        elif isinstance(ev, Finish):
            self.finish = ev
        elif isinstance(ev, Continuation):
            self.continuation = ev.data
        elif isinstance(ev, ResponseMeta):
            self.meta = ResponseMeta(ev.response_id or self.meta.response_id, ev.model or self.meta.model)

    @property
    def text(self) -> str:
        return "".join(self._text)

    @property
    def thinking(self) -> str | None:
        return "".join(self._thinking) or None

    @property
    def tool_arguments(self) -> str:
        return "".join(piece for call in self._calls.values() for piece in call.args)

    def tool_calls(self) -> list[ToolCall]:
        calls = []
        for index in sorted(self._calls):
            pending = self._calls[index]
            raw = "".join(pending.args).strip()
            raw_kept: str | None = None
            try:
                arguments = _json_decode(raw) if raw else {}
            except msgspec.DecodeError:
                arguments, raw_kept = {}, raw
            calls.append(
                ToolCall(
                    id=pending.id or _call_id(),
                    name=pending.name or "",
                    arguments=arguments,
                    raw_arguments=raw_kept,
                )
            )
        return calls

    def result(self, *, provider: str, model: str) -> ChatResult:
        calls = self.tool_calls()
        reason: FinishReason = self.finish.reason if self.finish is not None else "stop"
        if calls and reason == "stop":
            reason = "tool_calls"
        thinking = self.thinking
        return ChatResult(
            text=self.text,
            tool_calls=calls,
            finish_reason=reason,
            usage=self.usage or ZERO_USAGE,
            cost_usd=None,
            provider=provider,
            model=model,
            thinking=thinking,
            continuation=self.continuation,
            response_id=self.meta.response_id,
            stop_sequence=self.finish.stop_sequence if self.finish is not None else None,
        )


def _call_id() -> str:
    """An id for a tool call the provider sent without one."""
    import secrets  # with random and hmac: not at start, where the first answers need neither

    return f"call_{secrets.token_hex(8)}"
