"""Stream events of one `POST /v1/responses` request as OpenAI's typed Responses SSE events:
`response.created` and `response.in_progress`, then each output item in turn (a reasoning item,
the message, each function call: `response.output_item.added`, its content part, its deltas, the
`.done` events), and `response.completed` (or `response.incomplete`) with the whole response and
its usage; a failure after the stream began ends it with `response.failed`. Every event carries a
`sequence_number`, from 0.

The thinking streams as the reasoning item's summary (`response.reasoning_summary_part.added`,
`response.reasoning_summary_text.delta`…) when the request asks for one, else as its
`reasoning_text` content. What a next turn needs (the result's `continuation`) is known at the
end: it goes out as a reasoning item of its own, whose `encrypted_content` the client gives back.

Pure: no I/O.

Must not know: HTTP, providers' wire formats, how a request is run.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from sidecar.gateway.openai_api import arguments_text, new_id
from sidecar.gateway.responses_api import (
    encode_continuation,
    failed,
    finished,
    reasoning_item,
    skeleton,
    summarized,
)
from sidecar.gateway.responses_types import (
    FunctionCallItem,
    OutputItem,
    OutputMessage,
    OutputText,
    ReasoningItem,
    ReasoningText,
    Response,
    ResponsesRequest,
    SummaryText,
)
from sidecar.wire.chat import ChatResult, StreamEvent, TextDelta, ThinkingDelta, ToolCallDelta

_encode = msgspec.json.Encoder().encode


class _Open:
    """The output item being streamed."""

    __slots__ = ("call_id", "id", "index", "kind", "name", "parts")

    def __init__(self, kind: str, item_id: str, index: int, call_id: str = "", name: str = "") -> None:
        self.kind = kind
        self.id = item_id
        self.index = index
        self.call_id = call_id
        self.name = name
        self.parts: list[str] = []  # text, reasoning text or arguments, as streamed


class ResponseEncoder:
    """Stream events of one request as Responses API SSE events."""

    def __init__(self, req: ResponsesRequest) -> None:
        self._base = skeleton(req, response_id=new_id("resp_"), created_at=int(time.time()), model=req.model)
        self._summary = summarized(req)  # the thinking as the reasoning item's summary
        self._seq = 0
        self._started = False
        self._done: list[OutputItem] = []
        self._open: _Open | None = None
        self._calls: dict[int, _Open] = {}  # the stream's tool call index → its item
        self.final: Response | None = None  # the response as it ended, once it has

    def _event(self, kind: str, fields: dict[str, Any]) -> bytes:
        data = _encode({"type": kind, **fields, "sequence_number": self._seq})
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return self._event("response.created", {"response": self._base}) + self._event(
            "response.in_progress", {"response": self._base}
        )

    # --- items ----------------------------------------------------------------------------------

    def _begin(self, kind: str, prefix: str, call_id: str = "", name: str = "") -> bytes:
        out = self._close()
        item = _Open(kind, new_id(prefix), len(self._done), call_id, name)
        self._open = item
        where: dict[str, Any] = {"item_id": item.id, "output_index": item.index, "content_index": 0}
        part_added = "response.content_part.added"
        if kind == "message":
            added: dict[str, Any] = {"id": item.id, "type": "message", "status": "in_progress",
                                     "role": "assistant", "content": []}  # fmt: skip
            part: Any = OutputText(text="")
        elif kind == "reasoning":
            added = {
                "id": item.id,
                "type": "reasoning",
                "status": "in_progress",
                "summary": [],
                "content": [],
            }
            part = ReasoningText(text="")
            if self._summary:
                where = {"item_id": item.id, "output_index": item.index, "summary_index": 0}
                part_added, part = "response.reasoning_summary_part.added", SummaryText(text="")
        else:
            added = {"id": item.id, "type": "function_call", "status": "in_progress", "call_id": call_id,
                     "name": name, "arguments": ""}  # fmt: skip
            part = None
        out += self._event("response.output_item.added", {"output_index": item.index, "item": added})
        if part is not None:
            out += self._event(part_added, {**where, "part": part})
        return out

    def _close(self) -> bytes:
        item, self._open = self._open, None
        if item is None:
            return b""
        text = "".join(item.parts)
        where = {"item_id": item.id, "output_index": item.index}
        done: OutputItem
        if item.kind == "message":
            part = OutputText(text=text)
            out = self._event("response.output_text.done", {**where, "content_index": 0, "text": text,
                                                            "logprobs": []})  # fmt: skip
            out += self._event("response.content_part.done", {**where, "content_index": 0, "part": part})
            done = OutputMessage(id=item.id, content=[part])
        elif item.kind == "reasoning" and self._summary:
            summary = {**where, "summary_index": 0}
            out = self._event("response.reasoning_summary_text.done", {**summary, "text": text})
            out += self._event(
                "response.reasoning_summary_part.done", {**summary, "part": SummaryText(text=text)}
            )
            done = reasoning_item(item.id, text, summary=True)
        elif item.kind == "reasoning":
            reasoning = ReasoningText(text=text)
            out = self._event("response.reasoning_text.done", {**where, "content_index": 0, "text": text})
            out += self._event("response.content_part.done", {**where, "content_index": 0, "part": reasoning})
            done = reasoning_item(item.id, text, summary=False)
        else:
            out = self._event("response.function_call_arguments.done", {**where, "arguments": text,
                                                                         "name": item.name})  # fmt: skip
            done = FunctionCallItem(id=item.id, call_id=item.call_id, name=item.name, arguments=text)
        self._done.append(done)
        return out + self._event("response.output_item.done", {"output_index": item.index, "item": done})

    def _whole(self, kind: str, prefix: str, text: str, call_id: str = "", name: str = "") -> bytes:
        """An item the stream did not carry, added and done at once."""
        out = self._begin(kind, prefix, call_id, name)
        assert self._open is not None
        self._open.parts.append(text)
        return out + self._close()

    # --- the relay's three callbacks ------------------------------------------------------------

    def event(self, event: StreamEvent) -> bytes:
        """The SSE bytes of one event (empty for events a client is not shown)."""
        if isinstance(event, TextDelta | ThinkingDelta):
            if not event.text:
                return b""
            kind, prefix = ("message", "msg_") if isinstance(event, TextDelta) else ("reasoning", "rs_")
            out = self._start()
            if self._open is None or self._open.kind != kind:
                out += self._begin(kind, prefix)
            item = self._open
            assert item is not None
            item.parts.append(event.text)
            fields: dict[str, Any] = {"item_id": item.id, "output_index": item.index, "content_index": 0,
                                      "delta": event.text}  # fmt: skip
            if kind == "message":
                fields["logprobs"] = []
                delta = "response.output_text.delta"
            elif self._summary:
                del fields["content_index"]
                fields["summary_index"] = 0
                delta = "response.reasoning_summary_text.delta"
            else:
                delta = "response.reasoning_text.delta"
            return out + self._event(delta, fields)
        if isinstance(event, ToolCallDelta):
            out = self._start()
            call = self._calls.get(event.index)
            if call is None:
                out += self._begin("function_call", "fc_", event.id or new_id("call_"), event.name or "")
                assert self._open is not None
                call = self._calls[event.index] = self._open
            if event.arguments_delta:
                call.parts.append(event.arguments_delta)
                if call is self._open:
                    fields = {"item_id": call.id, "output_index": call.index, "delta": event.arguments_delta}
                    out += self._event("response.function_call_arguments.delta", fields)
            return out
        return b""

    def finish(self, result: ChatResult) -> bytes:
        """The open item's `.done` events, anything the stream did not carry, and the response."""
        out = self._start() + self._close()
        if not any(isinstance(i, OutputMessage) for i in self._done) and (
            result.text or not result.tool_calls
        ):
            out += self._whole("message", "msg_", result.text)
        if not self._calls:
            for call in result.tool_calls:
                out += self._whole("function_call", "fc_", arguments_text(call), call.id, call.name)
        if result.continuation:
            item = ReasoningItem(
                id=new_id("rs_"), content=[], encrypted_content=encode_continuation(result.continuation)
            )
            index = len(self._done)
            self._done.append(item)
            out += self._event("response.output_item.added", {"output_index": index, "item": item})
            out += self._event("response.output_item.done", {"output_index": index, "item": item})
        response = self.final = finished(self._base, result, self._done)
        kind = "response.completed" if response.status == "completed" else "response.incomplete"
        return out + self._event(kind, {"response": response})

    def error(self, body: dict[str, Any]) -> bytes:
        """A failure after the stream began: the open item ends, then `response.failed`."""
        out = self._start() + self._close()
        return out + self._event("response.failed", {"response": failed(self._base, body, self._done)})
