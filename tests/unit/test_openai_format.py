"""The OpenAI chat-completions format: recorded streams decoded to contract events, request bodies
built field by field per dialect."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sidecar.core.assemble import Assembler, Finish, ProviderEvent
from sidecar.errors import ProviderError
from sidecar.providers import openai_format
from sidecar.providers.decoders import SSEDecoder
from sidecar.wire.chat import (
    CompleteParams,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    UsageEvent,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def sse_payloads(name: str) -> list[str]:
    d = SSEDecoder()
    data = (FIXTURES / name).read_bytes()
    return [e.data for e in d.feed(data) + d.finish()]


def jsonl_payloads(name: str) -> list[str]:
    return [line for line in (FIXTURES / name).read_text().splitlines() if line.strip()] + ["[DONE]"]


def run(provider: str, payloads: list[str]) -> tuple[list[ProviderEvent], Assembler]:
    decoder = openai_format.ChunkDecoder(provider)
    events: list[ProviderEvent] = []
    for data in payloads:
        events += decoder.feed(data)
    events += decoder.final_usage()
    asm = Assembler()
    for ev in events:
        asm.add(ev)
    return events, asm


def test_openai_tool_call_fragments_assemble_into_an_object() -> None:
    events, asm = run("openai", sse_payloads("openai-chat-stream-toolcall-then-text.0.response.sse"))
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas[0].id == "call_ZR5UUuTt3pf61kjwAJIYdVMj" and deltas[0].name == "get_capital"
    assert "".join(d.arguments_delta or "" for d in deltas) == '{"country":"UK"}'
    result = asm.result(provider="openai", model="gpt-4o-mini")
    assert result.tool_calls[0].arguments == {"country": "UK"}
    assert result.finish_reason == "tool_calls"
    assert result.usage.input_tokens == 53 and result.usage.output_tokens == 15
    assert asm.meta.response_id == "chatcmpl-Dx0XpqH8w09uBXwq1zFGYdETjtnEl"


def test_openai_text_stream_with_usage_chunk_and_obfuscation() -> None:
    events, asm = run("openai", jsonl_payloads("openai-chat-stream-text-usage.chunks.jsonl"))
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(texts) > 10
    result = asm.result(provider="openai", model="gpt-4o")
    assert result.text == "".join(texts)
    assert result.finish_reason == "stop"
    assert isinstance(events[-1], UsageEvent) and events[-1].input_tokens > 0


def test_xai_reasoning_and_whole_tool_call_in_one_delta() -> None:
    events, asm = run("xai", jsonl_payloads("xai-chat-stream-toolcall.chunks.jsonl"))
    assert any(isinstance(e, ThinkingDelta) for e in events)
    result = asm.result(provider="xai", model="grok-3-mini")
    assert result.tool_calls[0].name == "weather"
    assert result.tool_calls[0].arguments == {"location": "San Francisco"}
    # xAI leaves reasoning out of completion_tokens: 291 + 26 + 196 = 513 total.
    assert result.usage.output_tokens == 26 + 196
    assert result.usage.reasoning_tokens == 196
    assert result.usage.cache_read_tokens == 290
    assert result.thinking


def test_openrouter_midstream_error_becomes_an_error_after_reasoning() -> None:
    decoder = openai_format.ChunkDecoder("openrouter")
    seen: list[ProviderEvent] = []
    with pytest.raises(ProviderError) as info:
        for data in sse_payloads("openrouter-stream-comments-midstream-error.response.sse"):
            seen += decoder.feed(data)
    assert any(isinstance(e, ThinkingDelta) for e in seen)
    assert info.value.kind == "invalid_request"  # the recorded error chunk says code 400
    assert "Token limit reached" in info.value.message
    assert decoder.usage is not None and decoder.usage.input_tokens == 43


def test_anthropic_compat_tool_indexes_start_at_zero() -> None:
    events, asm = run("custom", sse_payloads("anthropic-openai-compat-stream-toolcall.sse"))
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert {d.index for d in deltas} == {0}
    assert asm.result(provider="custom", model="m").tool_calls[0].arguments


def test_openrouter_nonstream_tool_call() -> None:
    body = (FIXTURES / "openrouter-chat-toolcall-nonstream.response.json").read_bytes()
    asm = Assembler()
    for ev in openai_format.decode_completion("openrouter", body):
        asm.add(ev)
    result = asm.result(provider="openrouter", model="m")
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls and result.tool_calls[0].id == "3sniiMddS"


def test_midstream_openai_error_chunk() -> None:
    decoder = openai_format.ChunkDecoder("openai")
    decoder.feed('{"id":"c","choices":[{"index":0,"delta":{"content":"hi"}}]}')
    with pytest.raises(ProviderError) as info:
        decoder.feed(
            '{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}'
        )
    assert info.value.kind == "provider_error"


def test_finish_reasons_map_to_the_contract() -> None:
    for raw, want in [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("content_filter", "content_filter"),
    ]:
        events = openai_format.ChunkDecoder("openai").feed(
            json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": raw}]})
        )
        assert events[-1] == Finish(want, raw)


def params(**kw: Any) -> CompleteParams:
    base: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    return msgspec.convert({**base, **kw}, CompleteParams)


def test_body_for_openai_asks_for_usage_and_uses_max_completion_tokens() -> None:
    body = openai_format.build_body(
        "gpt-4o-mini",
        params(max_tokens=50, reasoning={"budget_tokens": 10000}),
        openai_format.OPENAI,
        stream=True,
    )
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body
    assert body["reasoning_effort"] == "high"


def test_body_for_openrouter_reasoning_and_cache_control() -> None:
    p = params(
        messages=[
            {"role": "system", "content": "long system prompt", "cache": True},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "a"},
                    {"type": "image", "data": "AAAA", "media_type": "image/png"},
                ],
            },
        ],
        reasoning={"effort": "low"},
        max_tokens=10,
    )
    body = openai_format.build_body("anthropic/claude-sonnet-4.5", p, openai_format.OPENROUTER, stream=False)
    assert body["reasoning"] == {"effort": "low"} and body["max_tokens"] == 10
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "long system prompt", "cache_control": {"type": "ephemeral"}}
    ]
    assert body["messages"][1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA"},
    }
    assert "stream" not in body


def test_body_tool_turns_round_trip() -> None:
    p = params(
        messages=[
            {"role": "user", "content": "capital of UK?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "call_1", "name": "get_capital", "arguments": {"country": "UK"}}],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "London"},
        ],
        tools=[{"name": "get_capital", "description": "d", "parameters": {"type": "object"}}],
        tool_choice={"name": "get_capital"},
    )
    body = openai_format.build_body("gpt-4o-mini", p, openai_format.OPENAI, stream=True)
    assistant = body["messages"][1]
    assert "content" not in assistant
    assert assistant["tool_calls"][0] == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_capital", "arguments": '{"country":"UK"}'},
    }
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "London"}
    assert body["tools"][0]["type"] == "function"
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_capital"}}


def test_count_body_is_the_conversation_as_responses_input_items() -> None:
    p = params(
        messages=[
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "look"}, {"type": "image", "url": "https://x/y.png"}],
            },
            {
                "role": "assistant",
                "content": "Let me.",
                "tool_calls": [{"id": "c1", "name": "find", "arguments": {"q": 1}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "found"},
        ],
        tools=[{"name": "find", "description": "d", "parameters": {"type": "object", "properties": {}}}],
        tool_choice={"name": "find"},
        reasoning={"effort": "low"},
        max_tokens=99,
        temperature=0.5,
    )
    assert openai_format.count_body("gpt-5", p) == {
        "model": "gpt-5",
        "input": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "input_text", "text": "look"},
                                         {"type": "input_image", "image_url": "https://x/y.png"}]},
            {"role": "assistant", "content": "Let me."},
            {"type": "function_call", "call_id": "c1", "name": "find", "arguments": '{"q":1}'},
            {"type": "function_call_output", "call_id": "c1", "output": "found"},
        ],
        "tools": [{"type": "function", "name": "find", "description": "d", "parameters": {"type": "object", "properties": {}}}],
        "tool_choice": {"type": "function", "name": "find"},
        "reasoning": {"effort": "low"},
    }  # fmt: skip
