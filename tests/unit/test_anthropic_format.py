"""The Anthropic Messages format: recorded streams decoded (whole and split at every byte), the
event grammar, and request bodies checked field by field against the Messages API."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sidecar.core.assemble import Assembler, Continuation, Finish, ProviderEvent, ResponseMeta
from sidecar.errors import ProviderError, SidecarError
from sidecar.providers import anthropic_decode as ad
from sidecar.providers import anthropic_format as af
from sidecar.providers.decoders import SSEDecoder
from sidecar.wire.chat import (
    ChatResult,
    CompleteParams,
    FinishReason,
    ImagePart,
    Message,
    Reasoning,
    TextDelta,
    TextPart,
    ThinkingDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoiceName,
    UsageEvent,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


# --- helpers ------------------------------------------------------------------------------------


def framed(name: str) -> bytes:
    """A fixture as stream bytes: `.sse` exactly as recorded (the SDK ones lack the final blank
    line, which the SSE decoder's `finish` must cope with); `.chunks.jsonl` framed with event lines."""
    raw = (FIXTURES / name).read_bytes()
    if not name.endswith(".chunks.jsonl"):
        return raw
    out = b""
    for line in raw.splitlines():
        if line.strip():
            out += b"event: " + json.loads(line)["type"].encode() + b"\ndata: " + line + b"\n\n"
    return out


def decode(raw: bytes, cuts: tuple[int, ...] = ()) -> list[ProviderEvent]:
    """Feed `raw`, cut at `cuts`, through SSEDecoder + StreamDecoder, as the provider does."""
    sse = SSEDecoder()
    decoder = ad.StreamDecoder("anthropic")
    out: list[ProviderEvent] = []
    bounds = [0, *cuts, len(raw)]
    for start, end in itertools.pairwise(bounds):
        for ev in sse.feed(raw[start:end]):
            out += decoder.feed(ev.event, ev.data)
    for ev in sse.finish():
        out += decoder.feed(ev.event, ev.data)
    assert decoder.done, "the stream ended without message_stop"
    out.append(decoder.final_usage())
    return out


def assemble(events: list[ProviderEvent]) -> ChatResult:
    asm = Assembler()
    for ev in events:
        asm.add(ev)
    return asm.result(provider="anthropic", model="m")


def assert_grammar(events: list[ProviderEvent]) -> None:
    """ResponseMeta first; content deltas; one Finish; optional Continuation; one UsageEvent last."""
    assert isinstance(events[0], ResponseMeta)
    assert isinstance(events[-1], UsageEvent)
    assert sum(isinstance(e, UsageEvent) for e in events) == 1
    finishes = [i for i, e in enumerate(events) if isinstance(e, Finish)]
    assert len(finishes) == 1
    tail = events[finishes[0] + 1 : -1]
    assert all(isinstance(e, Continuation) for e in tail) and len(tail) <= 1
    body = events[1 : finishes[0]]
    assert all(isinstance(e, TextDelta | ThinkingDelta | ToolCallDelta) for e in body)
    for e in body:  # empty pieces are dropped
        if isinstance(e, TextDelta | ThinkingDelta):
            assert e.text
        if isinstance(e, ToolCallDelta):
            assert e.arguments_delta is None or e.arguments_delta


def payloads(name: str) -> list[dict[str, Any]]:
    """The recorded data payloads, parsed independently of the code under test."""
    text = (FIXTURES / name).read_text()
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def joined(name: str, delta_type: str, key: str) -> str:
    return "".join(
        p["delta"][key]
        for p in payloads(name)
        if p["type"] == "content_block_delta" and p["delta"]["type"] == delta_type
    )


@dataclass
class Expected:
    response_id: str
    model: str
    text: str
    finish: str
    raw_finish: str
    input_tokens: int
    output_tokens: int
    tool_calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    thinking: str | None = None
    signature_prefix: str | None = None


EXPECTED: dict[str, Expected] = {
    "anthropic-sdk-stream-basic.sse": Expected(
        "msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK",
        "claude-3-opus-latest",
        "Hello there!",
        "stop",
        "end_turn",
        11,
        6,
    ),
    "anthropic-sdk-stream-tool-use.sse": Expected(
        "msg_019Q1hrJbZG26Fb9BQhrkHEr",
        "claude-sonnet-4-20250514",
        "I'll check the current weather in Paris for you.",
        "tool_calls",
        "tool_use",
        377,
        65,
        [("toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather", {"location": "Paris"})],
    ),
    "anthropic-stream-minimal.chunks.jsonl": Expected(
        # message_delta's usage is cumulative: its input_tokens (61) replaces message_start's (43).
        "msg_3196a1cc08de4d76b85b8f5777c0d42b",
        "claude-opus-4-5-20251101",
        "pong",
        "stop",
        "end_turn",
        61,
        2,
    ),
    "anthropic-stream-text.chunks.jsonl": Expected(
        "msg_01QC4g3HwBThD4BaNtBckFDJ",
        "claude-sonnet-4-5-20250929",
        "Hello! I'm doing well, thank you for asking. How are you doing today?"
        " Is there anything I can help you with?",
        "stop",
        "end_turn",
        12,
        30,
    ),
    "anthropic-stream-tool-use.chunks.jsonl": Expected(
        "msg_01K2JbSUMYhez5RHoK9ZCj9U",
        "claude-haiku-4-5-20251001",
        "I'll invoke the JSON response tool.",
        "tool_calls",
        "tool_use",
        849,
        47,
        [
            (
                "toolu_01KFbKqPYSuAKujiL6mTfzYA",
                "json",
                {"elements": [{"location": "San Francisco", "temperature": 58, "condition": "sunny"}]},
            )
        ],
    ),
    "anthropic-stream-thinking-signature.chunks.jsonl": Expected(
        "msg_01Y6V41gqPaKWEw7iPouH7iW",
        "claude-sonnet-4-5-20250929",
        "925 ÷ 5 = 185",
        "stop",
        "end_turn",
        69,
        53,
        thinking="The previous result was 925. Now I need to divide that by 5.\n\n925 ÷ 5 = 185",
        signature_prefix="EvQBCkYICxgCKkAxhD4NUKFzudtZ6NzbZdEi",
    ),
    "anthropic-stream-thinking.response.sse": Expected(
        "msg_01ALwQ87pTS7hH1PjSdC9wJD",
        "claude-sonnet-4-20250514",
        joined("anthropic-stream-thinking.response.sse", "text_delta", "text"),
        "stop",
        "end_turn",
        43,
        282,
        thinking=joined("anthropic-stream-thinking.response.sse", "thinking_delta", "thinking"),
        signature_prefix="EvMCCkYICxgCKkCHP2cSuEdcJK/0rFwqES/ecn+",
    ),
}


def check(result: ChatResult, expected: Expected, signature: str | None) -> None:
    assert result.response_id == expected.response_id
    assert result.text == expected.text
    assert result.finish_reason == expected.finish
    assert result.usage.input_tokens == expected.input_tokens
    assert result.usage.output_tokens == expected.output_tokens
    assert (
        result.usage.cache_read_tokens,
        result.usage.cache_write_tokens,
        result.usage.reasoning_tokens,
    ) == (0, 0, 0)
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == expected.tool_calls
    assert all(c.raw_arguments is None for c in result.tool_calls)
    assert result.thinking == expected.thinking
    if expected.thinking is None:
        assert result.continuation is None
    else:
        assert expected.signature_prefix and signature and signature.startswith(expected.signature_prefix)
        assert result.continuation == {
            "provider": "anthropic",
            "blocks": [{"type": "thinking", "thinking": expected.thinking, "signature": signature}],
        }


# --- recorded streams ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_stream_decodes_to_the_expected_result(name: str) -> None:
    events = decode(framed(name))
    assert_grammar(events)
    meta = events[0]
    assert isinstance(meta, ResponseMeta)
    assert (meta.response_id, meta.model) == (EXPECTED[name].response_id, EXPECTED[name].model)
    finish = next(e for e in events if isinstance(e, Finish))
    assert finish.raw == EXPECTED[name].raw_finish
    signature = next(
        (
            p["delta"]["signature"]
            for p in payloads(name)
            if p.get("delta", {}).get("type") == "signature_delta"
        ),
        None,
    )
    check(assemble(events), EXPECTED[name], signature)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_stream_split_at_every_byte_gives_the_same_events(name: str) -> None:
    raw = framed(name)
    whole = decode(raw)
    for cut in range(1, len(raw)):
        assert decode(raw, (cut,)) == whole, f"split at byte {cut}"


def test_recorded_stream_fed_one_byte_at_a_time() -> None:
    raw = framed("anthropic-sdk-stream-tool-use.sse")
    assert decode(raw, tuple(range(1, len(raw)))) == decode(raw)


def test_tool_call_deltas_of_a_recorded_stream() -> None:
    events = decode(framed("anthropic-sdk-stream-tool-use.sse"))
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    # The first delta names the call; the recorded first partial_json "" is dropped.
    assert calls[0] == ToolCallDelta(index=0, id="toolu_01NRLabsLyVHZPKxbKvkfSMn", name="get_weather")
    assert [c.arguments_delta for c in calls[1:]] == ['{"locati', 'on": "P', "ar", 'is"}']
    assert all(c.index == 0 and c.id is None and c.name is None for c in calls[1:])


def test_whitespace_padded_json_and_spaced_ping_decode() -> None:
    raw = framed("anthropic-stream-thinking.response.sse")
    assert b'"index":1               }' in raw  # the padding really is in the recording
    assert b'data: {"type": "ping"}' in raw
    thinking = [e for e in decode(raw) if isinstance(e, ThinkingDelta)]
    assert thinking[0].text == "This"


def test_recorded_non_stream_message() -> None:
    raw = (FIXTURES / "anthropic-messages-nonstream-thinking-tooluse.response.json").read_bytes()
    events = ad.decode_message("anthropic", raw)
    assert_grammar(events)
    result = assemble(events)
    body = json.loads(raw)
    thinking, text, tool = body["content"]
    assert result.response_id == "msg_01WvueFjZVbHcj4H4zUzeGv2"
    assert result.text == text["text"]
    assert result.thinking == thinking["thinking"]
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [
        ("toolu_01YGzqpRE16Vricda3Aqcejo", "get_user_country", {})
    ]
    assert result.finish_reason == "tool_calls"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (398, 155)
    assert result.continuation == {
        "provider": "anthropic",
        "blocks": [
            {"type": "thinking", "thinking": thinking["thinking"], "signature": thinking["signature"]}
        ],
    }
    assert tool["input"] == {}


# --- decoder behaviour --------------------------------------------------------------------------


def sse(*events: tuple[str, Any]) -> bytes:
    out = b""
    for name, data in events:
        text = data if isinstance(data, str) else json.dumps(data)
        out += f"event: {name}\ndata: {text}\n\n".encode()
    return out


def start(usage: dict[str, Any] | None = None) -> tuple[str, Any]:
    message = {
        "id": "msg_1",
        "model": "claude-x",
        "content": [],
        "usage": usage or {"input_tokens": 5, "output_tokens": 1},
    }
    return "message_start", {"type": "message_start", "message": message}


def block(index: int, content: dict[str, Any]) -> tuple[str, Any]:
    return "content_block_start", {"type": "content_block_start", "index": index, "content_block": content}


def delta(index: int, d: dict[str, Any]) -> tuple[str, Any]:
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}


def stop(index: int) -> tuple[str, Any]:
    return "content_block_stop", {"type": "content_block_stop", "index": index}


def end(reason: str = "end_turn", usage: dict[str, Any] | None = None) -> list[tuple[str, Any]]:
    return [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason},
                "usage": usage or {"output_tokens": 9},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def test_tool_calls_are_numbered_from_zero_whatever_their_block_index() -> None:
    raw = sse(
        start(),
        block(0, {"type": "thinking", "thinking": "", "signature": ""}),
        delta(0, {"type": "thinking_delta", "thinking": "hmm"}),
        delta(0, {"type": "signature_delta", "signature": "sig-1"}),
        stop(0),
        block(1, {"type": "tool_use", "id": "toolu_a", "name": "one", "input": {}}),
        delta(1, {"type": "input_json_delta", "partial_json": ""}),
        delta(1, {"type": "input_json_delta", "partial_json": '{"a": 1}'}),
        stop(1),
        block(2, {"type": "text", "text": ""}),
        delta(2, {"type": "text_delta", "text": ""}),
        delta(2, {"type": "text_delta", "text": "and"}),
        stop(2),
        block(3, {"type": "tool_use", "id": "toolu_b", "name": "two", "input": {}}),
        delta(3, {"type": "input_json_delta", "partial_json": "  {}  "}),
        stop(3),
        *end("tool_use"),
    )
    events = decode(raw)
    assert_grammar(events)
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [(c.index, c.id, c.name) for c in calls if c.id] == [(0, "toolu_a", "one"), (1, "toolu_b", "two")]
    result = assemble(events)
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [
        ("toolu_a", "one", {"a": 1}),
        ("toolu_b", "two", {}),
    ]
    assert result.text == "and"
    assert result.finish_reason == "tool_calls"


def test_thinking_and_redacted_thinking_are_kept_in_order_for_the_next_turn() -> None:
    raw = sse(
        start(),
        block(0, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"}),
        stop(0),
        block(1, {"type": "thinking", "thinking": "", "signature": ""}),
        ("ping", {"type": "ping"}),
        delta(1, {"type": "thinking_delta", "thinking": "Let me "}),
        delta(1, {"type": "thinking_delta", "thinking": "see."}),
        delta(1, {"type": "thinking_delta", "thinking": ""}),
        delta(1, {"type": "signature_delta", "signature": "EqQB"}),
        delta(1, {"type": "signature_delta", "signature": "Cj9x"}),
        stop(1),
        block(2, {"type": "text", "text": ""}),
        delta(2, {"type": "text_delta", "text": "Done."}),
        stop(2),
        *end(),
    )
    events = decode(raw)
    assert_grammar(events)
    assert [e.text for e in events if isinstance(e, ThinkingDelta)] == ["Let me ", "see."]
    assert assemble(events).continuation == {
        "provider": "anthropic",
        "blocks": [
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"},
            {"type": "thinking", "thinking": "Let me see.", "signature": "EqQBCj9x"},
        ],
    }


def test_pings_unknown_events_and_citations_are_ignored() -> None:
    raw = sse(
        ("ping", {"type": "ping"}),
        start(),
        ("ping", '{"type": "ping"}'),
        ("some_future_event", {"type": "some_future_event", "x": 1}),
        block(0, {"type": "text", "text": ""}),
        delta(0, {"type": "citations_delta", "citation": {"type": "char_location", "cited_text": "x"}}),
        delta(0, {"type": "some_future_delta", "x": 1}),
        delta(0, {"type": "text_delta", "text": "ok"}),
        stop(0),
        block(1, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}),
        delta(1, {"type": "input_json_delta", "partial_json": '{"query": "x"}'}),
        stop(1),
        *end(),
    )
    events = decode(raw)
    assert_grammar(events)
    assert [e for e in events if isinstance(e, TextDelta | ThinkingDelta | ToolCallDelta)] == [
        TextDelta(text="ok")
    ]


def test_a_tool_input_sent_whole_at_block_start_is_one_arguments_delta() -> None:
    raw = sse(
        start(),
        block(0, {"type": "tool_use", "id": "t1", "name": "f", "input": {"city": "Oslo"}}),
        stop(0),
        *end("tool_use"),
    )
    calls = [e for e in decode(raw) if isinstance(e, ToolCallDelta)]
    assert calls == [
        ToolCallDelta(index=0, id="t1", name="f"),
        ToolCallDelta(index=0, arguments_delta='{"city":"Oslo"}'),
    ]


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
    ],
)
def test_stop_reasons(reason: str, finish: FinishReason) -> None:
    events = decode(sse(start(), *end(reason)))
    assert Finish(finish, reason) in events


def test_usage_counts_cache_reads_and_writes_as_input_and_reads_thinking_tokens() -> None:
    raw = sse(
        start(
            {
                "input_tokens": 10,
                "cache_creation_input_tokens": 200,
                "cache_read_input_tokens": 3000,
                "output_tokens": 1,
            }
        ),
        block(0, {"type": "text", "text": ""}),
        delta(0, {"type": "text_delta", "text": "hi"}),
        stop(0),
        *end(usage={"output_tokens": 120, "output_tokens_details": {"thinking_tokens": 80}}),
    )
    assert decode(raw)[-1] == UsageEvent(
        input_tokens=3210,
        output_tokens=120,
        cache_read_tokens=3000,
        cache_write_tokens=200,
        reasoning_tokens=80,
    )


def test_reasoning_tokens_are_zero_when_anthropic_does_not_report_them() -> None:
    raw = sse(start(), *end(usage={"output_tokens": 300}))
    assert decode(raw)[-1] == UsageEvent(
        input_tokens=5, output_tokens=300, cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0
    )


@pytest.mark.parametrize(
    ("error_type", "kind"),
    [
        ("overloaded_error", "provider_error"),
        ("rate_limit_error", "rate_limited"),
        ("api_error", "provider_error"),
    ],
)
def test_error_event_raises_the_mapped_provider_error(error_type: str, kind: str) -> None:
    decoder = ad.StreamDecoder("anthropic")
    decoder.feed("message_start", json.dumps(start()[1]))
    assert decoder.usage is not None and decoder.usage.input_tokens == 5  # partial usage to relay
    body = json.dumps({"type": "error", "error": {"type": error_type, "message": "Overloaded"}})
    with pytest.raises(ProviderError) as info:
        decoder.feed("error", body)
    assert info.value.kind == kind
    assert info.value.provider == "anthropic"
    assert "Overloaded" in info.value.message
    assert info.value.details == {"upstream_type": error_type}


def test_invalid_json_is_a_provider_error() -> None:
    with pytest.raises(ProviderError) as info:
        ad.StreamDecoder("anthropic").feed("message_start", '{"type": "message_start", ')
    assert info.value.kind == "provider_error"


def test_not_done_without_message_stop() -> None:
    decoder = ad.StreamDecoder("anthropic")
    for ev in SSEDecoder().feed(sse(start(), end()[0])):
        decoder.feed(ev.event, ev.data)
    assert not decoder.done


# --- request bodies -----------------------------------------------------------------------------


def body(
    messages: list[Message], model: str = "claude-sonnet-4-5", stream: bool = False, **kw: Any
) -> dict[str, Any]:
    params = CompleteParams(model=model, messages=messages, **kw)
    out = af.build_body(model, params, stream=stream)
    assert msgspec.json.decode(msgspec.json.encode(out)) == out  # plain JSON
    return out


def user(content: Any = "hi", **kw: Any) -> Message:
    return Message(role="user", content=content, **kw)


def test_minimal_body() -> None:
    assert body([user()], stream=True) == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64_000,  # the catalog's max output for the model
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "stream": True,
    }


def test_max_tokens_defaults() -> None:
    assert body([user()], model="claude-sonnet-4-5-20250929")["max_tokens"] == 64_000
    assert body([user()], model="claude-3-5-haiku")["max_tokens"] == 8_192
    assert body([user()], model="claude-unknown-9")["max_tokens"] == af.DEFAULT_MAX_TOKENS == 4096
    assert body([user()], max_tokens=123)["max_tokens"] == 123


def test_system_messages_become_top_level_blocks_with_cache_control() -> None:
    out = body(
        [
            Message(role="system", content="You are careful.", cache=True),
            user("q1"),
            Message(role="system", content=[TextPart(text="Be brief."), TextPart(text="Cite.", cache=True)]),
            user("q2"),
        ]
    )
    assert out["system"] == [
        {"type": "text", "text": "You are careful.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Cite.", "cache_control": {"type": "ephemeral"}},
    ]
    # The system messages are gone from the turns, and the two user turns around one are merged.
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "q1"}, {"type": "text", "text": "q2"}]}
    ]


def test_images() -> None:
    png = "iVBORw0KGgoAAAANSUhEUgAAAAE="
    jpeg = "/9j/4AAQSkZJRgABAQ=="
    out = body(
        [
            user(
                [
                    TextPart(text="What is this?"),
                    ImagePart(data=png, media_type="image/png"),
                    ImagePart(data=jpeg),  # media type read from the data
                    ImagePart(url="https://example.com/cat.webp"),
                    ImagePart(url=f"data:image/gif;base64,{png}"),
                ]
            )
        ]
    )
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": jpeg}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.webp"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": png}},
    ]


@pytest.mark.parametrize("part", [ImagePart(), ImagePart(url="data:image/png,abc")])
def test_unusable_images_are_invalid_requests(part: ImagePart) -> None:
    with pytest.raises(SidecarError) as info:
        body([user([part])])
    assert info.value.kind == "invalid_request"


def loop_messages(continuation: dict[str, Any] | None = None, **tool_kw: Any) -> list[Message]:
    return [
        user("Weather in Paris and Oslo?"),
        Message(
            role="assistant",
            content="Checking.",
            tool_calls=[
                ToolCall(id="toolu_1", name="weather", arguments={"city": "Paris"}),
                ToolCall(id="toolu_2", name="weather", arguments={"city": "Oslo", "units": ["C"]}),
            ],
            continuation=continuation,
        ),
        Message(role="tool", tool_call_id="toolu_1", content="18C"),
        user("Also, be brief."),
        Message(role="tool", tool_call_id="toolu_2", content="9C", **tool_kw),
    ]


def test_tool_use_and_tool_results() -> None:
    out = body(loop_messages())
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Oslo?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "weather",
                    "input": {"city": "Oslo", "units": ["C"]},
                },
            ],
        },
        {
            # One user turn: both results first (the API requires it), then the user's text.
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "9C"},
                {"type": "text", "text": "Also, be brief."},
            ],
        },
    ]


def test_assistant_with_only_tool_calls_sends_no_empty_text_block() -> None:
    msgs = [
        user(),
        Message(role="assistant", content="", tool_calls=[ToolCall(id="t", name="f", arguments={})]),
        Message(role="tool", tool_call_id="t", content="ok"),
    ]
    assert body(msgs)["messages"][1]["content"] == [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]


def test_tool_result_with_an_image() -> None:
    msgs = [
        user(),
        Message(role="assistant", tool_calls=[ToolCall(id="t", name="shot", arguments={})]),
        Message(
            role="tool", tool_call_id="t", content=[TextPart(text="here"), ImagePart(url="https://x/y.png")]
        ),
    ]
    assert body(msgs)["messages"][2]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "t",
            "content": [
                {"type": "text", "text": "here"},
                {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
            ],
        }
    ]


def test_tool_message_without_id_is_an_invalid_request() -> None:
    with pytest.raises(SidecarError) as info:
        body([user(), Message(role="tool", content="x")])
    assert info.value.kind == "invalid_request"


def test_cache_hints_on_messages_and_tools() -> None:
    out = body(
        [
            user([TextPart(text="doc"), TextPart(text="question")], cache=True),
            Message(role="assistant", tool_calls=[ToolCall(id="t", name="f", arguments={})], cache=True),
            Message(role="tool", tool_call_id="t", content="r", cache=True),
        ],
        tools=[Tool(name="f", description="F.", cache=True), Tool(name="g")],
    )
    eph = {"type": "ephemeral"}
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "doc"},
        {"type": "text", "text": "question", "cache_control": eph},
    ]
    assert out["messages"][1]["content"] == [
        {"type": "tool_use", "id": "t", "name": "f", "input": {}, "cache_control": eph}
    ]
    assert out["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "t", "content": "r", "cache_control": eph}
    ]
    schema = {"type": "object", "properties": {}}
    assert out["tools"] == [
        {"name": "f", "description": "F.", "input_schema": schema, "cache_control": eph},
        {"name": "g", "description": "", "input_schema": schema},
    ]


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        (ToolChoiceName(name="f"), {"type": "tool", "name": "f"}),
    ],
)
def test_tool_choice(choice: Any, wire: dict[str, Any]) -> None:
    params = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    out = body([user()], tools=[Tool(name="f", description="Find.", parameters=params)], tool_choice=choice)
    assert out["tools"] == [{"name": "f", "description": "Find.", "input_schema": params}]
    assert out["tool_choice"] == wire


def test_sampling_and_stop() -> None:
    out = body([user()], temperature=0.3, top_p=0.8, stop="END")
    assert (out["temperature"], out["top_p"], out["stop_sequences"]) == (0.3, 0.8, ["END"])
    assert body([user()], stop=["a", "b"])["stop_sequences"] == ["a", "b"]


@pytest.mark.parametrize(
    ("reasoning", "budget"),
    [
        (Reasoning(budget_tokens=3000), 3000),
        (Reasoning(budget_tokens=10), 1024),  # Anthropic's minimum
        (Reasoning(effort="minimal"), 1024),
        (Reasoning(effort="low"), 2048),
        (Reasoning(effort="medium"), 8192),
        (Reasoning(effort="high"), 16384),
        (Reasoning(effort="high", budget_tokens=5000), 5000),  # an explicit budget wins
        (Reasoning(effort="none"), None),
        (Reasoning(budget_tokens=0), None),
        (Reasoning(), None),
    ],
)
def test_thinking_budget(reasoning: Reasoning, budget: int | None) -> None:
    out = body([user()], reasoning=reasoning)
    if budget is None:
        assert "thinking" not in out
    else:
        assert out["thinking"] == {"type": "enabled", "budget_tokens": budget}
        assert out["max_tokens"] == 64_000


def test_thinking_raises_max_tokens_to_leave_the_answer_its_room() -> None:
    out = body([user()], max_tokens=500, reasoning=Reasoning(budget_tokens=2000))
    assert (out["max_tokens"], out["thinking"]["budget_tokens"]) == (2500, 2000)
    unknown = body([user()], model="claude-unknown", reasoning=Reasoning(effort="medium"))
    assert (unknown["max_tokens"], unknown["thinking"]["budget_tokens"]) == (8192 + 4096, 8192)


def test_thinking_never_asks_for_more_than_the_model_can_write() -> None:
    out = body([user()], model="claude-opus-4-1", reasoning=Reasoning(effort="max"))
    assert (out["max_tokens"], out["thinking"]["budget_tokens"]) == (32_000, 32_000 - 4096)
    out = body(
        [user()], model="claude-opus-4-1", max_tokens=30_000, reasoning=Reasoning(budget_tokens=40_000)
    )
    assert (out["max_tokens"], out["thinking"]["budget_tokens"]) == (32_000, 16_000)


def test_thinking_drops_temperature_and_a_low_top_p() -> None:
    out = body([user()], temperature=0.2, top_p=0.5, reasoning=Reasoning(effort="low"))
    assert "temperature" not in out and "top_p" not in out
    out = body([user()], top_p=0.97, reasoning=Reasoning(effort="low"))
    assert out["top_p"] == 0.97


THINKING = {"type": "thinking", "thinking": "Two cities: call twice.", "signature": "EqQBCkgIBxABGAIiQ=="}
REDACTED = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}


def test_continuation_blocks_go_first_in_their_assistant_turn_unmodified() -> None:
    cont = {"provider": "anthropic", "blocks": [dict(THINKING), dict(REDACTED)]}
    out = body(loop_messages(cont), reasoning=Reasoning(budget_tokens=2048))
    content = out["messages"][1]["content"]
    assert content[0] == THINKING and content[1] == REDACTED
    assert [b["type"] for b in content] == ["thinking", "redacted_thinking", "text", "tool_use", "tool_use"]
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 2048}


def test_continuation_of_another_provider_is_ignored() -> None:
    cont = {"provider": "gemini", "blocks": [dict(THINKING)]}
    content = body(loop_messages(cont))["messages"][1]["content"]
    assert [b["type"] for b in content] == ["text", "tool_use", "tool_use"]


def test_cache_hint_skips_thinking_blocks() -> None:
    msgs = [
        user(),
        Message(
            role="assistant", continuation={"provider": "anthropic", "blocks": [dict(THINKING)]}, cache=True
        ),
    ]
    assert body(msgs)["messages"][1]["content"] == [THINKING]


def test_thinking_is_off_for_an_open_tool_loop_whose_thinking_was_not_sent_back() -> None:
    # Anthropic would reject it: with thinking on, that assistant turn must start with its thinking.
    assert "thinking" not in body(loop_messages(), reasoning=Reasoning(effort="high"))
    assert "thinking" not in body(
        loop_messages({"provider": "gemini", "x": 1}), reasoning=Reasoning(effort="high")
    )
    closed = [*loop_messages(), Message(role="assistant", content="Paris 18C, Oslo 9C."), user("Thanks!")]
    assert body(closed, reasoning=Reasoning(effort="high"))["thinking"]["budget_tokens"] == 16384


@pytest.mark.parametrize("choice", ["required", ToolChoiceName(name="f")])
def test_thinking_is_off_when_a_tool_is_forced(choice: Any) -> None:
    out = body([user()], tools=[Tool(name="f")], tool_choice=choice, reasoning=Reasoning(effort="high"))
    assert "thinking" not in out
    out = body([user()], tools=[Tool(name="f")], tool_choice="auto", reasoning=Reasoning(effort="high"))
    assert out["thinking"]["budget_tokens"] == 16384


def test_replayed_blocks_are_copies() -> None:
    cont = {"provider": "anthropic", "blocks": [dict(THINKING)]}
    msgs = [user(), Message(role="assistant", content="x", continuation=cont, cache=True)]
    sent = body(msgs)["messages"][1]["content"][0]
    assert sent == THINKING and sent is not cont["blocks"][0]


@pytest.mark.parametrize(
    ("model", "max_tokens", "reasoning", "sent", "whole"),
    [
        ("claude-sonnet-4-5", 21_333, None, 21_333, True),
        ("claude-sonnet-4-5", 21_334, None, 21_334, False),
        ("claude-sonnet-4-5", None, None, 64_000, False),  # the model's maximum output
        ("claude-opus-4-1", 8_192, None, 8_192, True),
        ("claude-opus-4-1", 8_193, None, 8_193, False),
        ("claude-unknown-model", None, None, af.DEFAULT_MAX_TOKENS, True),
        # Thinking raises max_tokens above the budget, leaving the answer its room.
        ("claude-sonnet-4-5", 8_000, Reasoning(budget_tokens=16_000), 24_000, False),
        ("claude-sonnet-4-5", 4_000, Reasoning(budget_tokens=12_000), 16_000, True),
    ],
)
def test_only_an_answer_that_fits_ten_minutes_is_asked_without_a_stream(
    model: str, max_tokens: int | None, reasoning: Reasoning | None, sent: int, whole: bool
) -> None:
    params = CompleteParams(
        messages=[Message(role="user", content="hi")], max_tokens=max_tokens, reasoning=reasoning
    )
    assert af.build_body(model, params, stream=False)["max_tokens"] == sent
    assert af.fits_whole_call(model, params) is whole
