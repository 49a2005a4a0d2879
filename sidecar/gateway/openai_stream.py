"""Stream events of one Chat Completions (or legacy Completions) request as OpenAI's SSE lines: one
`chat.completion.chunk` per delta, in the order the official SDK accumulates them, then the finish
chunk, the usage chunk when asked for, and `[DONE]`.

Pure: no I/O. Every chunk of a request begins with the same bytes, rendered once.

Must not know: HTTP, providers' wire formats, how a request is run.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from sidecar.gateway.openai_api import new_id, usage
from sidecar.wire.chat import ChatResult, StreamEvent, TextDelta, ThinkingDelta, ToolCallDelta, UsageEvent

_encode = msgspec.json.Encoder().encode


class ChunkEncoder:
    """Stream events of one request as `chat.completion.chunk` (or legacy `text_completion`) SSE lines."""

    __slots__ = ("_head", "_include_usage", "_legacy", "_model", "_started", "_tool_index", "usage")

    def __init__(
        self, model: str, *, include_usage: bool, legacy: bool = False, response_id: str | None = None
    ) -> None:
        rid = response_id or new_id("cmpl-" if legacy else "chatcmpl-")
        kind = "text_completion" if legacy else "chat.completion.chunk"
        self._model = model
        # Every chunk begins the same way; only `choices` (and `usage`) change.
        self._head = b'{"id":' + _encode(rid) + b',"object":"' + kind.encode() + b'","created":'
        self._head += str(int(time.time())).encode() + b',"model":' + _encode(model) + b',"choices":'
        self._include_usage = include_usage
        self._legacy = legacy
        self._started = False
        self._tool_index: dict[int, int] = {}
        self.usage: UsageEvent | None = None

    def _chunk(self, choices: bytes) -> bytes:
        tail = b',"usage":null}' if self._include_usage else b"}"
        return b"data: " + self._head + choices + tail + b"\n\n"

    def _delta(self, delta: dict[str, Any]) -> bytes:
        if self._legacy:
            choice = {"index": 0, "text": delta.get("content", ""), "logprobs": None, "finish_reason": None}
        else:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        return self._chunk(b"[" + _encode(choice) + b"]")

    def event(self, event: StreamEvent) -> bytes:
        """The SSE bytes of one event (empty for events a client is not shown)."""
        if isinstance(event, TextDelta):
            if not event.text:
                return b""
            return self._first() + self._delta({"content": event.text})
        if isinstance(event, ThinkingDelta):
            if self._legacy or not event.text:
                return b""
            return self._first() + self._delta({"reasoning_content": event.text})
        if isinstance(event, ToolCallDelta):
            if self._legacy:
                return b""
            index = self._tool_index.setdefault(event.index, len(self._tool_index))
            call: dict[str, Any] = {"index": index}
            if event.id is not None:
                call["id"] = event.id
                call["type"] = "function"
            fn: dict[str, Any] = {}
            if event.name is not None:
                fn["name"] = event.name
            if event.arguments_delta is not None or event.id is not None:
                fn["arguments"] = event.arguments_delta or ""
            if fn:
                call["function"] = fn
            return self._first() + self._delta({"tool_calls": [call]})
        if isinstance(event, UsageEvent):
            self.usage = event
        return b""

    def _first(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        if self._legacy:
            return b""
        return self._delta({"role": "assistant", "content": ""})

    def finish(self, result: ChatResult) -> bytes:
        """The finish chunk, the usage chunk when asked for, and `[DONE]`."""
        out = self._first()
        if self._legacy:
            choice: dict[str, Any] = {
                "index": 0,
                "text": "",
                "logprobs": None,
                "finish_reason": result.finish_reason,
            }
        else:
            choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": result.finish_reason}
        out += self._chunk(b"[" + _encode(choice) + b"]")
        if self._include_usage:
            out += b"data: " + self._head + b'[],"usage":' + _encode(usage(result.usage)) + b"}\n\n"
        return out + b"data: [DONE]\n\n"

    @staticmethod
    def error(body: dict[str, Any]) -> bytes:
        """A failure after the stream began: the SDK raises on an `error` object in the stream."""
        return b"data: " + _encode(body) + b"\n\n"
