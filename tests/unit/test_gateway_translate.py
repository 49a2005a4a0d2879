"""The gateway's pure translations: OpenAI Chat Completions and Anthropic Messages to the
sidecar's CompleteParams and back (responses, stream chunks, event sequences), error shapes,
client-key matching and limits. No I/O."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from sidecar.core.client_access import MinuteWindow, allowed
from sidecar.errors import KIND_CODES, SidecarError
from sidecar.gateway import anthropic_api, openai_api, openai_stream, openai_types
from sidecar.gateway.errors import STATUS_BY_KIND, InvalidRequest, body, from_sidecar, headers
from sidecar.wire.base import Usage
from sidecar.wire.chat import (
    AttemptEvent,
    ChatResult,
    CompleteParams,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallInput,
    UsageEvent,
)

USAGE = Usage(
    input_tokens=30, output_tokens=12, cache_read_tokens=10, cache_write_tokens=5, reasoning_tokens=4
)


def result(**over: Any) -> ChatResult:
    base: dict[str, Any] = {
        "text": "Hi!",
        "tool_calls": [],
        "finish_reason": "stop",
        "usage": USAGE,
        "cost_usd": 0.001,
        "provider": "openai",
        "model": "gpt-4o-mini",
    }
    return ChatResult(**{**base, **over})


def oa_params(body: dict[str, Any]) -> CompleteParams:
    req = msgspec.convert(body, openai_types.ChatCompletionRequest)
    return msgspec.convert(openai_api.to_params(req, "openai:gpt-4o-mini"), CompleteParams)


def sse_data(raw: bytes) -> list[Any]:
    out = []
    for event in raw.decode().split("\n\n"):
        for line in event.splitlines():
            if line.startswith("data: "):
                payload = line[6:]
                out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


# --- OpenAI request -----------------------------------------------------------------------------


def test_openai_request_maps_roles_parts_tools_and_limits() -> None:
    params = oa_params(
        {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
                        {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{broken"}},
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "one"}]},
            ],
            "max_completion_tokens": 50,
            "max_tokens": 999,
            "temperature": 0.5,
            "stop": ["x"],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "reasoning_effort": "low",
        }
    )
    system, user, assistant, tool = params.messages
    assert (system.role, system.content) == ("system", "be brief")
    assert isinstance(user.content, list) and user.content[1].url == "data:image/png;base64,AAAA"  # type: ignore[union-attr]
    assert assistant.tool_calls == [
        ToolCallInput(id="c1", name="f", arguments={"a": 1}),
        ToolCallInput(id="c2", name="g", arguments={}, raw_arguments="{broken"),
    ]
    assert (tool.role, tool.tool_call_id, tool.content) == ("tool", "c1", "one")
    assert params.max_tokens == 50  # max_completion_tokens wins
    assert params.tools is not None and params.tools[0].name == "f"
    assert params.tool_choice is not None and params.tool_choice.name == "f"  # type: ignore[union-attr]
    assert params.reasoning is not None and params.reasoning.effort == "low"


def test_openai_request_refuses_n_above_one_and_unknown_parts() -> None:
    with pytest.raises(InvalidRequest) as exc:
        oa_params({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2})
    assert exc.value.param == "n"
    with pytest.raises(InvalidRequest) as exc:
        oa_params({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]})
    assert exc.value.param == "messages[0].content[0]"


# --- OpenAI response and stream -----------------------------------------------------------------


def test_openai_response_carries_tool_calls_as_json_strings_and_usage() -> None:
    res = result(
        text="", finish_reason="tool_calls", tool_calls=[ToolCall(id="c", name="f", arguments={"q": "x"})]
    )
    out = msgspec.to_builtins(openai_api.response(res, response_id="chatcmpl-1", created=5))
    msg = out["choices"][0]["message"]
    assert msg["content"] is None
    assert msg["tool_calls"] == [
        {"id": "c", "function": {"name": "f", "arguments": '{"q":"x"}'}, "type": "function"}
    ]
    assert out["usage"]["prompt_tokens"] == 30 and out["usage"]["total_tokens"] == 42
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 10}
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": 4}
    assert out["object"] == "chat.completion" and out["model"] == "openai:gpt-4o-mini"


def test_openai_chunks_follow_the_sdk_order_with_usage_last() -> None:
    enc = openai_stream.ChunkEncoder("gpt-4o-mini", include_usage=True)
    raw = b"".join(
        enc.event(e)
        for e in (
            TextDelta(text="Hel"),
            TextDelta(text="lo"),
            ToolCallDelta(index=3, id="c", name="f", arguments_delta=""),
            ToolCallDelta(index=3, arguments_delta='{"a":'),
            ToolCallDelta(index=3, arguments_delta="1}"),
            UsageEvent(
                input_tokens=1, output_tokens=2, cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0
            ),
        )
    )
    raw += enc.finish(result(finish_reason="tool_calls"))
    chunks = sse_data(raw)
    assert chunks[-1] == "[DONE]"
    body_chunks = chunks[:-1]
    assert len({c["id"] for c in body_chunks}) == 1
    assert body_chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"].get("content") for c in body_chunks[1:3]] == ["Hel", "lo"]
    first_call = body_chunks[3]["choices"][0]["delta"]["tool_calls"][0]
    assert first_call == {
        "index": 0,
        "id": "c",
        "type": "function",
        "function": {"name": "f", "arguments": ""},
    }
    args = "".join(
        c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in body_chunks[3:6]
    )
    assert json.loads(args) == {"a": 1}
    assert body_chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert all(c["usage"] is None for c in body_chunks[:-1])
    assert body_chunks[-1]["choices"] == [] and body_chunks[-1]["usage"]["total_tokens"] == 42


def test_openai_chunks_without_include_usage_have_no_usage_key_and_legacy_form() -> None:
    enc = openai_stream.ChunkEncoder("m", include_usage=False)
    chunks = sse_data(enc.event(TextDelta(text="a")) + enc.finish(result()))
    assert all("usage" not in c for c in chunks[:-1])
    legacy = openai_stream.ChunkEncoder("m", include_usage=False, legacy=True)
    chunks = sse_data(
        legacy.event(TextDelta(text="a")) + legacy.event(ThinkingDelta(text="no")) + legacy.finish(result())
    )
    assert [c["choices"][0]["text"] for c in chunks[:-1]] == ["a", ""]
    assert chunks[0]["object"] == "text_completion"


# --- Anthropic ----------------------------------------------------------------------------------


def an_params(body: dict[str, Any]) -> CompleteParams:
    req = msgspec.convert(body, anthropic_api.MessagesRequest)
    return msgspec.convert(anthropic_api.to_params(req, "anthropic:claude-sonnet-4-5"), CompleteParams)


def test_anthropic_request_maps_system_tool_results_thinking_and_images() -> None:
    params = an_params(
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
            "thinking": {"type": "enabled", "budget_tokens": 2000},
            "tool_choice": {"type": "any"},
            "tools": [{"name": "t", "input_schema": {"type": "object"}}],
            "stop_sequences": ["END"],
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "see"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAA"},
                        },
                    ],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                        {"type": "tool_use", "id": "tu1", "name": "t", "input": {"k": 1}},
                    ],
                },
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu1", "content": "ok"}]},
            ],
        }
    )
    system, user, assistant, tool = params.messages
    assert (system.role, system.content, system.cache) == ("system", "sys", True)
    assert isinstance(user.content, list) and user.content[1].media_type == "image/jpeg"  # type: ignore[union-attr]
    assert assistant.tool_calls == [ToolCallInput(id="tu1", name="t", arguments={"k": 1})]
    assert assistant.continuation == {
        "provider": "anthropic",
        "blocks": [{"type": "thinking", "thinking": "hmm", "signature": "sig"}],
    }
    assert (tool.role, tool.tool_call_id, tool.content) == ("tool", "tu1", "ok")
    assert params.reasoning is not None and params.reasoning.budget_tokens == 2000
    assert params.tool_choice == "required" and params.stop == ["END"] and params.max_tokens == 4096


def test_anthropic_response_counts_cache_apart_and_returns_thinking_with_signature() -> None:
    res = result(
        text="done",
        thinking="hmm",
        continuation={
            "provider": "anthropic",
            "blocks": [{"type": "thinking", "thinking": "hmm", "signature": "S"}],
        },
        tool_calls=[ToolCall(id="t", name="f", arguments={})],
        finish_reason="tool_calls",
    )
    out = msgspec.to_builtins(anthropic_api.response(res, response_id="msg_1"))
    assert [b["type"] for b in out["content"]] == ["thinking", "text", "tool_use"]
    assert out["content"][0]["signature"] == "S"
    assert out["stop_reason"] == "tool_use"
    assert out["usage"] == {
        "input_tokens": 15,
        "output_tokens": 12,
        "cache_creation_input_tokens": 5,
        "cache_read_input_tokens": 10,
    }


def events_of(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        name_line, data_line = block.split("\n")
        out.append((name_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))))
    return out


def test_anthropic_stream_is_the_exact_event_sequence() -> None:
    enc = anthropic_api.EventEncoder("claude")
    raw = b"".join(
        enc.event(e)
        for e in (
            ThinkingDelta(text="let me"),
            ThinkingDelta(text=" think"),
            TextDelta(text="Sure"),
            ToolCallDelta(index=0, id="tu", name="f"),
            ToolCallDelta(index=0, arguments_delta='{"a"'),
            ToolCallDelta(index=0, arguments_delta=":1}"),
            UsageEvent(
                input_tokens=1, output_tokens=2, cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0
            ),
        )
    )
    raw += enc.finish(result(finish_reason="tool_calls"))
    events = events_of(raw)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(name == data["type"] for name, data in events)
    starts = [d for n, d in events if n == "content_block_start"]
    assert [(s["index"], s["content_block"]["type"]) for s in starts] == [
        (0, "thinking"),
        (1, "text"),
        (2, "tool_use"),
    ]
    assert starts[2]["content_block"] == {"type": "tool_use", "id": "tu", "name": "f", "input": {}}
    partial = "".join(
        d["delta"]["partial_json"] for n, d in events if d.get("delta", {}).get("type") == "input_json_delta"
    )
    assert json.loads(partial) == {"a": 1}
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "tool_use" and delta["usage"]["output_tokens"] == 12


def test_anthropic_empty_answer_still_opens_and_closes_the_message() -> None:
    enc = anthropic_api.EventEncoder("claude")
    assert [n for n, _ in events_of(enc.finish(result(text="")))] == [
        "message_start",
        "message_delta",
        "message_stop",
    ]


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("invalid_request", 400),
        ("model_not_found", 404),
        ("rate_limited", 429),
        ("budget_exceeded", 429),
        ("auth_failed", 502),
        ("provider_error", 502),
        ("missing_key", 503),
        ("network_error", 503),
        ("timeout", 504),
        ("overloaded", 503),
        ("provider_disabled", 503),
    ],
)
def test_error_kinds_map_to_statuses_in_both_shapes(kind: Any, status: int) -> None:
    err = from_sidecar(SidecarError(kind, "nope", retry_after_s=2.5 if kind == "rate_limited" else None))
    assert err.status == status
    oa = body(err, "openai", "gw-1")["error"]
    assert set(oa) == {"message", "type", "param", "code"} and oa["code"] == kind
    an = body(err, "anthropic", "gw-1")
    assert an["type"] == "error" and set(an["error"]) == {"type", "message"}
    retry = dict(headers(err)).get(b"retry-after")
    assert (retry is not None) == (status == 429 or kind == "overloaded")
    if kind == "rate_limited":
        assert retry == b"3"


def test_every_error_kind_of_the_contract_has_its_own_status() -> None:
    assert set(STATUS_BY_KIND) == set(KIND_CODES)


def test_a_model_that_cannot_be_placed_is_a_404() -> None:
    assert from_sidecar(SidecarError("invalid_request", "?", field="model")).status == 404


# --- client access ------------------------------------------------------------------------------


def test_allow_patterns() -> None:
    assert allowed([], "anything:x")
    assert allowed(["openai:*"], "openai:gpt-4o") and not allowed(["openai:*"], "anthropic:claude")
    assert allowed(["router:cheapest", "anthropic:claude-*"], "router:cheapest")


def test_minute_window_counts_requests_and_tokens() -> None:
    w = MinuteWindow(requests_per_minute=2)
    assert w.admit(0.0) is None and w.admit(1.0) is None
    assert w.admit(2.0) == pytest.approx(58.0)
    assert w.admit(60.5) is None  # the first request left the window
    t = MinuteWindow(tokens_per_minute=100)
    assert t.admit(0.0) is None
    t.spend(0.0, 150)
    assert t.admit(10.0) == pytest.approx(50.0)
    assert t.admit(61.0) is None


def test_anthropic_stream_signs_thinking_blocks_at_the_end_for_anthropic_models() -> None:
    enc = anthropic_api.EventEncoder("claude", sign_thinking=True)
    raw = enc.event(ThinkingDelta(text="hmm")) + enc.event(TextDelta(text="ok"))
    blocks = [{"type": "thinking", "thinking": "hmm", "signature": "SIG"}]
    raw += enc.finish(result(continuation={"provider": "anthropic", "blocks": blocks}))
    events = events_of(raw)
    assert [(n, d.get("index")) for n, d in events] == [
        ("message_start", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert events[6][1]["delta"] == {"type": "signature_delta", "signature": "SIG"}


def test_anthropic_stream_signing_follows_where_the_answer_may_come_from() -> None:
    # A router's candidate is known only once it runs: its thinking blocks wait for signatures.
    assert anthropic_api.signs_thinking("router:coding") is True
    assert anthropic_api.signs_thinking("anthropic:claude-sonnet-4-5") is True
    assert anthropic_api.signs_thinking("openai:o3") is False
    # A fallback to Anthropic announces itself before any token: signing starts then.
    enc = anthropic_api.EventEncoder("openai:o3", sign_thinking=False)
    raw = enc.event(AttemptEvent(provider="anthropic", model="claude", attempt=2))
    raw += enc.event(ThinkingDelta(text="hmm")) + enc.event(TextDelta(text="ok"))
    blocks = [{"type": "thinking", "thinking": "hmm", "signature": "SIG"}]
    raw += enc.finish(result(continuation={"provider": "anthropic", "blocks": blocks}))
    deltas = [d["delta"] for n, d in events_of(raw) if n == "content_block_delta"]
    assert {"type": "signature_delta", "signature": "SIG"} in deltas
    # A router whose next try goes elsewhere closes thinking blocks as they end.
    enc = anthropic_api.EventEncoder("router:any", sign_thinking=True)
    raw = enc.event(AttemptEvent(provider="openai", model="o3", attempt=2))
    raw += enc.event(ThinkingDelta(text="hmm")) + enc.event(TextDelta(text="ok"))
    order = [(n, d.get("index")) for n, d in events_of(raw)]
    assert order.index(("content_block_stop", 0)) < order.index(("content_block_start", 1))
