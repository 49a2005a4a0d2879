"""The Gemini wire format: recorded answers decode right, request bodies say what the API documents.

Pure tests of `sidecar.providers.gemini_format` and `gemini_decode` (no I/O) against the
recordings in tests/fixtures/gemini-* (their provenance: tests/fixtures/SOURCES.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sidecar.core.assemble import Assembler, Continuation, Finish, ProviderEvent, ResponseMeta
from sidecar.errors import ProviderError, SidecarError
from sidecar.providers.decoders import SSEDecoder
from sidecar.providers.errors import provider_error
from sidecar.providers.gemini_decode import ResponseDecoder, decode_response, finish_reason
from sidecar.providers.gemini_format import build_body, thinking_config
from sidecar.providers.gemini_schema import to_gemini_schema
from sidecar.wire.chat import (
    ChatResult,
    CompleteParams,
    Reasoning,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    UsageEvent,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def params(**fields: Any) -> CompleteParams:
    fields.setdefault("model", "gemini:gemini-2.5-flash")
    fields.setdefault("messages", [{"role": "user", "content": "hi"}])
    return msgspec.convert(fields, CompleteParams)


def body(model: str = "gemini-2.5-flash", **fields: Any) -> dict[str, Any]:
    return build_body(model, params(**fields))


def stream_bytes(name: str) -> bytes:
    """A recorded stream as bytes on the wire: `.sse` as recorded, `.chunks.jsonl` framed with CRLF."""
    raw = (FIXTURES / name).read_bytes()
    if name.endswith(".chunks.jsonl"):
        return b"".join(b"data: " + line + b"\r\n\r\n" for line in raw.splitlines() if line.strip())
    return raw


def decode_stream(pieces: list[bytes]) -> list[ProviderEvent]:
    sse = SSEDecoder()
    decoder = ResponseDecoder("gemini")
    events: list[ProviderEvent] = []
    for piece in pieces:
        for event in sse.feed(piece):
            events += decoder.feed(event.data)
    for event in sse.finish():
        events += decoder.feed(event.data)
    assert decoder.finished
    return events + decoder.end()


def assemble(events: list[ProviderEvent]) -> ChatResult:
    assembler = Assembler()
    for event in events:
        assembler.add(event)
    return assembler.result(provider="gemini", model="m")


def usage(input_tokens: int, output: int, *, cache_read: int = 0, reasoning: int = 0) -> UsageEvent:
    return UsageEvent(
        input_tokens=input_tokens,
        output_tokens=output,
        cache_read_tokens=cache_read,
        cache_write_tokens=0,
        reasoning_tokens=reasoning,
    )


def signature_in(name: str, index: int = 0) -> str:
    """The thoughtSignature of the first signed part of a recorded stream's chunks."""
    raw = stream_bytes(name)
    datas = [line[6:] for line in raw.split(b"\r\n") if line.startswith(b"data: ")]
    signed = [
        part["thoughtSignature"]
        for data in datas
        for part in json.loads(data)["candidates"][0]["content"]["parts"]
        if "thoughtSignature" in part
    ]
    return str(signed[index])


# --- recorded answers ---------------------------------------------------------------------------

STREAMS: dict[str, dict[str, Any]] = {
    "gemini-stream-text.response.sse": {
        "text": "The capital of France is Paris.\n",
        "calls": [],
        "usage": usage(13, 8),  # the last chunk's counts, not the earlier 15
        "signatures": [],
        "meta": ("w1peaMz6INOvnvgPgYfPiQY", "gemini-2.0-flash-exp"),
    },
    "gemini-stream-functioncall-then-text.0.response.sse": {
        "text": "",
        "calls": [("get_country", {})],
        "usage": usage(29, 212, reasoning=202),
        "signatures": ["function_call"],
        "meta": ("QUVVadTSNJ6_qtsPvN7J8Q0", "gemini-3-pro-preview"),
    },
    "gemini-stream-functioncall-then-text.1.response.sse": {
        "text": "The capital of Mexico is Mexico City.",
        "calls": [],
        "usage": usage(257, 8),
        "signatures": [],
        "meta": ("REVVabaiCdq4qtsPnZu96Qo", "gemini-3-pro-preview"),
    },
    "gemini-stream-text-gemini3.chunks.jsonl": {
        "text": 'There are **3** "r"s in strawberry.\n\nst**r**awbe**rr**y',
        "calls": [],
        "usage": usage(9, 23 + 185, reasoning=185),
        "signatures": ["text"],
        "meta": ("bH6LaZW8Fp_3nsEPqtaSwQ4", "gemini-3-pro-preview"),
    },
    "gemini-stream-functioncall-gemini3.chunks.jsonl": {
        "text": "",
        "calls": [("weather", {"location": "San Francisco"})],
        "usage": usage(29, 15 + 45, reasoning=45),
        "signatures": ["function_call"],
        "meta": ("b36LacjwM668nsEP2tbsgQQ", "gemini-3-pro-preview"),
    },
}


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_recorded_stream_decodes(name: str) -> None:
    want = STREAMS[name]
    events = decode_stream([stream_bytes(name)])
    result = assemble(events)
    assert result.text == want["text"]
    assert [(c.name, c.arguments) for c in result.tool_calls] == want["calls"]
    assert result.finish_reason == ("tool_calls" if want["calls"] else "stop")
    assert events[-1] == want["usage"]
    assert events[0] == ResponseMeta(*want["meta"])
    continuation = result.continuation
    if want["signatures"]:
        assert continuation is not None and continuation["provider"] == "gemini"
        assert [s["part"] for s in continuation["signatures"]] == want["signatures"]
        assert continuation["signatures"][0]["signature"] == signature_in(name)
    if want["calls"]:
        # Gemini sent no ids: the ids are made up, stable, and marked as made up.
        first = assemble(decode_stream([stream_bytes(name)]))
        assert [c.id for c in first.tool_calls] == [c.id for c in result.tool_calls]
        assert continuation is not None
        assert continuation["generated_ids"] == [c.id for c in result.tool_calls]
        assert all(c.id.startswith("call_0_") for c in result.tool_calls)
        assert continuation["signatures"][0]["id"] == result.tool_calls[0].id
        assert continuation["signatures"][0]["name"] == result.tool_calls[0].name
    if not want["signatures"] and not want["calls"]:
        assert continuation is None


def test_text_signature_on_trailing_empty_part_belongs_to_the_text() -> None:
    result = assemble(decode_stream([stream_bytes("gemini-stream-text-gemini3.chunks.jsonl")]))
    assert result.continuation is not None
    assert result.continuation["signatures"] == [
        {"part": "text", "index": 0, "signature": signature_in("gemini-stream-text-gemini3.chunks.jsonl")}
    ]


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_byte_split_at_every_offset_gives_the_same_events(name: str) -> None:
    raw = stream_bytes(name)
    whole = decode_stream([raw])
    for offset in range(1, len(raw)):
        assert decode_stream([raw[:offset], raw[offset:]]) == whole, offset


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_byte_by_byte_gives_the_same_events(name: str) -> None:
    raw = stream_bytes(name)
    assert decode_stream([raw[i : i + 1] for i in range(len(raw))]) == decode_stream([raw])


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_event_grammar(name: str) -> None:
    events = decode_stream([stream_bytes(name)])
    assert isinstance(events[0], ResponseMeta)
    assert sum(isinstance(e, ResponseMeta) for e in events) == 1
    kinds = [type(e) for e in events[1:]]
    finish_at = kinds.index(Finish)
    assert all(k in (TextDelta, ThinkingDelta, ToolCallDelta) for k in kinds[:finish_at])
    assert kinds[finish_at + 1 :] in ([UsageEvent], [Continuation, UsageEvent])


@pytest.mark.parametrize(
    ("name", "call", "usage_want"),
    [
        (
            "gemini-generatecontent-functioncall-roundtrip.0.response.json",
            ("get_user_country", {}),
            usage(33, 5),
        ),
        (
            "gemini-generatecontent-functioncall-roundtrip.1.response.json",
            ("final_result", {"city": "Mexico City", "country": "Mexico"}),
            usage(47, 8),
        ),
    ],
)
def test_recorded_generate_content_decodes(name: str, call: tuple[str, Any], usage_want: UsageEvent) -> None:
    events = decode_response("gemini", (FIXTURES / name).read_bytes())
    result = assemble(events)
    assert [(c.name, c.arguments) for c in result.tool_calls] == [call]
    assert result.finish_reason == "tool_calls"
    assert events[-1] == usage_want
    assert result.continuation == {
        "provider": "gemini",
        "signatures": [],
        "generated_ids": [result.tool_calls[0].id],
    }
    (delta,) = [e for e in events if isinstance(e, ToolCallDelta)]
    assert json.loads(delta.arguments_delta or "") == call[1]  # one delta with the whole JSON


# --- decoding details ---------------------------------------------------------------------------


def chunk(parts: list[dict[str, Any]], **extra: Any) -> bytes:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if "finish" in extra:
        candidate["finishReason"] = extra.pop("finish")
    return json.dumps({"candidates": [candidate], "responseId": "r1", **extra}).encode()


def test_thought_parts_are_thinking_and_usage_counts_thoughts_cache_and_tool_prompts() -> None:
    decoder = ResponseDecoder("gemini")
    events = decoder.feed(chunk([{"text": "Let me think", "thought": True}, {"text": "Answer"}]))
    events += decoder.feed(
        chunk(
            [{"text": "."}],
            finish="STOP",
            usageMetadata={
                "promptTokenCount": 100,
                "cachedContentTokenCount": 60,
                "toolUsePromptTokenCount": 7,
                "candidatesTokenCount": 5,
                "thoughtsTokenCount": 40,
                "totalTokenCount": 152,
            },
        )
    )
    events += decoder.end()
    assert [e for e in events if isinstance(e, ThinkingDelta | TextDelta)] == [
        ThinkingDelta(text="Let me think"),
        TextDelta(text="Answer"),
        TextDelta(text="."),
    ]
    assert events[-1] == usage(107, 45, cache_read=60, reasoning=40)


def test_signed_thought_summary_is_kept_with_its_text() -> None:
    decoder = ResponseDecoder("gemini")
    decoder.feed(
        chunk(
            [{"text": "Plan: ", "thought": True}, {"text": "look", "thought": True, "thoughtSignature": "S1"}]
        )
    )
    decoder.feed(chunk([{"text": "Done"}], finish="STOP"))
    assert decoder.continuation() == {
        "provider": "gemini",
        "signatures": [{"part": "thought", "text": "Plan: look", "signature": "S1"}],
    }


def test_gemini_call_ids_are_used_and_not_marked_generated() -> None:
    decoder = ResponseDecoder("gemini")
    events = decoder.feed(
        chunk(
            [
                {"functionCall": {"id": "fc-1", "name": "a", "args": {"x": 1}}, "thoughtSignature": "S"},
                {"functionCall": {"id": "fc-2", "name": "b"}},
            ],
            finish="STOP",
        )
    )
    assert [e for e in events if isinstance(e, ToolCallDelta)] == [
        ToolCallDelta(index=0, id="fc-1", name="a", arguments_delta='{"x":1}'),
        ToolCallDelta(index=1, id="fc-2", name="b", arguments_delta="{}"),
    ]
    assert decoder.continuation() == {
        "provider": "gemini",
        "signatures": [{"part": "function_call", "id": "fc-1", "name": "a", "signature": "S"}],
    }


def test_text_runs_are_counted_across_other_parts() -> None:
    decoder = ResponseDecoder("gemini")
    decoder.feed(chunk([{"text": "a"}, {"text": "b"}, {"functionCall": {"name": "f", "args": {}}}]))
    decoder.feed(chunk([{"text": "c", "thoughtSignature": "S"}], finish="STOP"))
    assert decoder.continuation() is not None
    assert decoder.continuation()["signatures"] == [{"part": "text", "index": 1, "signature": "S"}]  # type: ignore[index]


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("IMAGE_PROHIBITED_CONTENT", "content_filter"),
        ("LANGUAGE", "stop"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("FINISH_REASON_UNSPECIFIED", "stop"),
    ],
)
def test_finish_reasons(raw: str, want: str) -> None:
    assert finish_reason(raw) == want
    events = decode_response("gemini", chunk([{"text": "x"}], finish=raw))
    assert Finish(want, raw) in events


def test_blocked_prompt_is_a_content_filter_finish() -> None:
    raw = json.dumps(
        {
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
        }
    ).encode()
    events = decode_response("gemini", raw)
    result = assemble(events)
    assert result.finish_reason == "content_filter"
    assert result.text == ""
    assert events[-1] == usage(8, 0)


def test_other_candidates_are_ignored() -> None:
    raw = json.dumps(
        {
            "candidates": [
                {"content": {"parts": [{"text": "one"}]}, "index": 0, "finishReason": "STOP"},
                {"content": {"parts": [{"text": "two"}]}, "index": 1, "finishReason": "STOP"},
            ]
        }
    ).encode()
    assert assemble(decode_response("gemini", raw)).text == "one"


@pytest.mark.parametrize(
    ("code", "kind"), [(500, "provider_error"), (503, "provider_error"), (429, "rate_limited")]
)
def test_error_chunk_in_a_stream_raises_after_keeping_usage(code: int, kind: str) -> None:
    decoder = ResponseDecoder("gemini")
    decoder.feed(chunk([{"text": "Part"}], usageMetadata={"promptTokenCount": 4, "candidatesTokenCount": 1}))
    with pytest.raises(ProviderError) as caught:
        decoder.feed(json.dumps({"error": {"code": code, "message": "Boom", "status": "INTERNAL"}}).encode())
    assert caught.value.kind == kind
    assert caught.value.provider == "gemini"
    assert "Boom" in caught.value.message
    assert decoder.usage == usage(4, 1)


def test_invalid_json_is_a_provider_error() -> None:
    with pytest.raises(ProviderError) as caught:
        ResponseDecoder("gemini").feed(b"{not json")
    assert caught.value.kind == "provider_error"


def test_answer_without_finish_reason_ends_as_stop_in_complete() -> None:
    events = decode_response(
        "gemini", json.dumps({"candidates": [{"content": {"parts": [{"text": "x"}]}}]}).encode()
    )
    assert Finish("stop") in events


# --- errors (providers/errors.py reading Google bodies) -----------------------------------------


def test_bad_key_400_is_auth_failed() -> None:
    raw = json.dumps(
        {
            "error": {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                    }
                ],
            }
        }
    ).encode()
    assert provider_error("gemini", 400, raw).kind == "auth_failed"


def test_recorded_429_is_rate_limited_with_retry_info() -> None:
    err = provider_error("gemini", 429, (FIXTURES / "gemini-429-error.json").read_bytes())
    assert err.kind == "rate_limited"
    assert err.retry_after_s == 34.4


@pytest.mark.parametrize(
    ("status", "status_text", "kind"),
    [
        (403, "PERMISSION_DENIED", "auth_failed"),
        (404, "NOT_FOUND", "model_not_found"),
        (500, "INTERNAL", "provider_error"),
        (503, "UNAVAILABLE", "provider_error"),
        (400, "INVALID_ARGUMENT", "invalid_request"),
    ],
)
def test_google_statuses(status: int, status_text: str, kind: str) -> None:
    raw = json.dumps({"error": {"code": status, "message": "x", "status": status_text}}).encode()
    assert provider_error("gemini", status, raw).kind == kind


# --- request bodies -----------------------------------------------------------------------------


def recorded_request(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / name).read_text())["request_body"])


def test_system_instruction_text_and_generation_config_match_the_recording() -> None:
    recorded = recorded_request("gemini-stream-text.exchange.json")
    got = body(
        "gemini-2.0-flash-exp",
        messages=[
            {"role": "system", "content": "You are a helpful chatbot."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        temperature=0.0,
    )
    assert got["contents"] == recorded["contents"]
    assert got["systemInstruction"]["parts"] == recorded["systemInstruction"]["parts"]
    assert got["generationConfig"] == recorded["generationConfig"]
    assert set(got) == {"contents", "systemInstruction", "generationConfig"}


def test_function_call_round_trip_matches_the_recording() -> None:
    recorded = recorded_request("gemini-generatecontent-functioncall-roundtrip.1.exchange.json")
    call_id = "pyd_ai_3fa5644dae1d4aad997ae39c70006fbd"
    got = body(
        "gemini-2.0-flash",
        messages=[
            {"role": "user", "content": "What is the largest city in the user country?"},
            {
                "role": "assistant",
                "tool_calls": [{"id": call_id, "name": "get_user_country", "arguments": {}}],
            },
            {"role": "tool", "tool_call_id": call_id, "content": "Mexico"},
        ],
        tools=[
            {"name": "get_user_country", "parameters": {"type": "object", "properties": {}}},
            {
                "name": "final_result",
                "description": "The final response which ends this conversation",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
                    "required": ["city", "country"],
                    "additionalProperties": False,
                    "$schema": "http://json-schema.org/draft-07/schema#",
                },
            },
        ],
        tool_choice="required",
    )
    assert got["contents"][:2] == recorded["contents"][:2]
    assert got["contents"][2] == {
        "role": "user",
        "parts": [
            {
                "functionResponse": {
                    "id": call_id,
                    "name": "get_user_country",
                    "response": {"result": "Mexico"},
                }
            }
        ],
    }
    assert got["tools"] == recorded["tools"]
    assert got["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


def test_thought_signature_goes_back_on_the_function_call_part() -> None:
    first = assemble(decode_stream([stream_bytes("gemini-stream-functioncall-then-text.0.response.sse")]))
    (call,) = first.tool_calls
    got = body(
        "gemini-3-pro-preview",
        messages=[
            {"role": "user", "content": "What is the capital of the user country? Call the tool"},
            {
                "role": "assistant",
                "content": first.text,
                "tool_calls": [msgspec.to_builtins(call)],
                "continuation": first.continuation,
            },
            {"role": "tool", "tool_call_id": call.id, "content": "Mexico"},
        ],
        tools=[
            {
                "name": "get_country",
                "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
            }
        ],
    )
    recorded = recorded_request("gemini-stream-functioncall-then-text.1.exchange.json")
    model_turn = got["contents"][1]
    assert model_turn == {
        "role": "model",
        "parts": [
            {
                "functionCall": {"name": "get_country", "args": {}},  # made-up id not sent back
                "thoughtSignature": signature_in("gemini-stream-functioncall-then-text.0.response.sse"),
            }
        ],
    }
    assert (
        model_turn["parts"][0]["functionCall"]["name"]
        == recorded["contents"][1]["parts"][0]["functionCall"]["name"]
    )
    assert got["contents"][2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_country", "response": {"result": "Mexico"}}}],
    }
    assert got["tools"] == [
        {
            "functionDeclarations": [
                {"name": "get_country", "description": "", "parameters": {"type": "OBJECT", "properties": {}}}
            ]
        }
    ]


def test_text_signature_goes_back_on_the_text_part() -> None:
    first = assemble(decode_stream([stream_bytes("gemini-stream-text-gemini3.chunks.jsonl")]))
    got = body(
        "gemini-3-pro-preview",
        messages=[
            {"role": "user", "content": "How many r in strawberry?"},
            {"role": "assistant", "content": first.text, "continuation": first.continuation},
            {"role": "user", "content": "Sure?"},
        ],
    )
    assert got["contents"][1] == {
        "role": "model",
        "parts": [
            {"text": first.text, "thoughtSignature": signature_in("gemini-stream-text-gemini3.chunks.jsonl")}
        ],
    }


def assistant_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    got = body(messages=[{"role": "user", "content": "q"}, {"role": "assistant", **message}])
    return list(got["contents"][1]["parts"])


def test_text_signature_index_clamps_to_the_last_text_part() -> None:
    continuation = {"provider": "gemini", "signatures": [{"part": "text", "index": 3, "signature": "T"}]}
    parts = assistant_parts(
        {
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            "continuation": continuation,
        }
    )
    assert parts == [{"text": "a"}, {"text": "b", "thoughtSignature": "T"}]
    # Nothing to carry it: dropped (Gemini validates only function-call signatures).
    assert assistant_parts(
        {"content": "", "tool_calls": [{"id": "x", "name": "f"}], "continuation": continuation}
    ) == [{"functionCall": {"id": "x", "name": "f", "args": {}}}]


def test_signed_thought_comes_back_as_a_thought_part_first() -> None:
    continuation = {
        "provider": "gemini",
        "signatures": [{"part": "thought", "text": "Plan", "signature": "S"}],
    }
    assert assistant_parts({"content": "Hi", "continuation": continuation}) == [
        {"text": "Plan", "thought": True, "thoughtSignature": "S"},
        {"text": "Hi"},
    ]


def test_signature_follows_the_call_name_when_the_host_rekeyed_ids() -> None:
    continuation = {
        "provider": "gemini",
        "signatures": [{"part": "function_call", "id": "call_0_aaaa", "name": "f", "signature": "S"}],
        "generated_ids": ["call_0_aaaa"],
    }
    parts = assistant_parts(
        {
            "tool_calls": [
                {"id": "host-1", "name": "f", "arguments": {"a": 1}},
                {"id": "host-2", "name": "f"},
            ],
            "continuation": continuation,
        }
    )
    assert parts == [
        {"functionCall": {"id": "host-1", "name": "f", "args": {"a": 1}}, "thoughtSignature": "S"},
        {"functionCall": {"id": "host-2", "name": "f", "args": {}}},
    ]


def test_parallel_calls_keep_the_signature_on_the_first_only() -> None:
    continuation = {
        "provider": "gemini",
        "signatures": [{"part": "function_call", "id": "a", "name": "f", "signature": "S"}],
    }
    parts = assistant_parts(
        {"tool_calls": [{"id": "a", "name": "f"}, {"id": "b", "name": "f"}], "continuation": continuation}
    )
    assert [p.get("thoughtSignature") for p in parts] == ["S", None]


def test_continuation_of_another_provider_is_ignored() -> None:
    continuation = {"provider": "anthropic", "signatures": [{"part": "text", "index": 0, "signature": "X"}]}
    assert assistant_parts({"content": "Hi", "continuation": continuation}) == [{"text": "Hi"}]


def test_roles_are_mapped_and_consecutive_turns_merged() -> None:
    got = body(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "one"},
            {"role": "user", "content": [{"type": "text", "text": "two"}]},
            {
                "role": "assistant",
                "content": "calling",
                "tool_calls": [{"id": "c1", "name": "a", "arguments": {"q": 1}}, {"id": "c2", "name": "b"}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": '{"ok": true}'},
            {"role": "tool", "tool_call_id": "c2", "name": "b", "content": "plain text"},
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "three"},
        ]
    )
    assert got["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Answer in French."}]}
    assert got["contents"] == [
        {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
        {
            "role": "model",
            "parts": [
                {"text": "calling"},
                {"functionCall": {"id": "c1", "name": "a", "args": {"q": 1}}},
                {"functionCall": {"id": "c2", "name": "b", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"id": "c1", "name": "a", "response": {"result": {"ok": True}}}},
                {"functionResponse": {"id": "c2", "name": "b", "response": {"result": "plain text"}}},
                {"text": "three"},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("content", "result"), [("42", 42), ("[1, 2]", [1, 2]), ("null", None), ("", ""), ("a: b", "a: b")]
)
def test_tool_result_is_parsed_when_it_is_json(content: str, result: Any) -> None:
    got = body(
        messages=[
            {"role": "user", "content": "q"},
            {"role": "assistant", "tool_calls": [{"id": "c", "name": "f"}]},
            {"role": "tool", "tool_call_id": "c", "content": content},
        ]
    )
    assert got["contents"][2]["parts"][0]["functionResponse"]["response"] == {"result": result}


def test_generated_ids_are_not_sent_back() -> None:
    continuation = {"provider": "gemini", "signatures": [], "generated_ids": ["call_0_abcd1234"]}
    got = body(
        messages=[
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "call_0_abcd1234", "name": "f"}],
                "continuation": continuation,
            },
            {"role": "tool", "tool_call_id": "call_0_abcd1234", "content": "r"},
        ]
    )
    assert got["contents"][1]["parts"] == [{"functionCall": {"name": "f", "args": {}}}]
    assert got["contents"][2]["parts"] == [{"functionResponse": {"name": "f", "response": {"result": "r"}}}]


def test_tool_result_without_a_known_name_is_invalid() -> None:
    with pytest.raises(SidecarError) as caught:
        body(
            messages=[
                {"role": "user", "content": "q"},
                {"role": "tool", "tool_call_id": "zz", "content": "r"},
            ]
        )
    assert caught.value.kind == "invalid_request"
    assert "name" in caught.value.message


def test_only_a_system_prompt_is_invalid() -> None:
    with pytest.raises(SidecarError) as caught:
        body(messages=[{"role": "system", "content": "x"}])
    assert caught.value.kind == "invalid_request"


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/x8AAwMCAO+ip1sAAAAASUVORK5CYII="


@pytest.mark.parametrize(
    ("image", "part"),
    [
        ({"data": PNG, "media_type": "image/png"}, {"inlineData": {"mimeType": "image/png", "data": PNG}}),
        ({"data": PNG}, {"inlineData": {"mimeType": "image/png", "data": PNG}}),
        ({"data": "/9j/4AAQ"}, {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}}),
        ({"url": f"data:image/webp;base64,{PNG}"}, {"inlineData": {"mimeType": "image/webp", "data": PNG}}),
        (
            {"url": "https://x.test/cat.jpg?s=1"},
            {"fileData": {"fileUri": "https://x.test/cat.jpg?s=1", "mimeType": "image/jpeg"}},
        ),
        (
            {"url": "gs://bucket/cat.png"},
            {"fileData": {"fileUri": "gs://bucket/cat.png", "mimeType": "image/png"}},
        ),
        (
            {"url": "https://x.test/img", "media_type": "image/gif"},
            {"fileData": {"fileUri": "https://x.test/img", "mimeType": "image/gif"}},
        ),
        ({"url": "https://x.test/img"}, {"fileData": {"fileUri": "https://x.test/img"}}),
    ],
)
def test_images(image: dict[str, Any], part: dict[str, Any]) -> None:
    got = body(
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "what?"}, {"type": "image", **image}]}
        ]
    )
    assert got["contents"][0]["parts"] == [{"text": "what?"}, part]


@pytest.mark.parametrize(
    "image",
    [
        {"url": "http://x.test/cat.png"},
        {"url": "ftp://x.test/cat.png"},
        {"data": "AAAAbbbb"},
        {"url": "data:image/png,abc"},
        {},
    ],
)
def test_images_gemini_cannot_take_are_invalid_requests(image: dict[str, Any]) -> None:
    with pytest.raises(SidecarError) as caught:
        body(messages=[{"role": "user", "content": [{"type": "image", **image}]}])
    assert caught.value.kind == "invalid_request"
    assert caught.value.field == "messages"


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        ("none", {"mode": "NONE"}),
        ({"name": "f"}, {"mode": "ANY", "allowedFunctionNames": ["f"]}),
    ],
)
def test_tool_config(choice: Any, config: dict[str, Any]) -> None:
    got = body(tools=[{"name": "f"}], tool_choice=choice)
    assert got["toolConfig"] == {"functionCallingConfig": config}


def test_generation_config() -> None:
    got = body(max_tokens=100, temperature=0.5, top_p=0.9, stop="END")
    assert got["generationConfig"] == {
        "maxOutputTokens": 100,
        "temperature": 0.5,
        "topP": 0.9,
        "stopSequences": ["END"],
    }
    assert body(stop=["a", "b"])["generationConfig"] == {"stopSequences": ["a", "b"]}
    assert "generationConfig" not in body()
    assert "toolConfig" not in body(tools=[{"name": "f"}])


@pytest.mark.parametrize(
    ("model", "reasoning", "config"),
    [
        ("gemini-2.5-flash", {"budget_tokens": 1024}, {"thinkingBudget": 1024, "includeThoughts": True}),
        ("gemini-2.5-flash", {"budget_tokens": 0}, {"thinkingBudget": 0, "includeThoughts": False}),
        (
            "gemini-3-pro-preview",
            {"budget_tokens": 2000, "effort": "low"},
            {"thinkingBudget": 2000, "includeThoughts": True},
        ),
        ("gemini-3-pro-preview", {"effort": "high"}, {"thinkingLevel": "high", "includeThoughts": True}),
        ("gemini-3-pro-preview", {"effort": "low"}, {"thinkingLevel": "low", "includeThoughts": True}),
        ("gemini-3-pro-preview", {"effort": "medium"}, {"thinkingLevel": "high", "includeThoughts": True}),
        (
            "gemini-3-flash-preview",
            {"effort": "medium"},
            {"thinkingLevel": "medium", "includeThoughts": True},
        ),
        (
            "gemini-3-flash-preview",
            {"effort": "none"},
            {"thinkingLevel": "minimal", "includeThoughts": False},
        ),
        ("gemini-2.5-flash", {"effort": "low"}, {"thinkingBudget": 2048, "includeThoughts": True}),
        ("gemini-2.5-flash", {"effort": "max"}, {"thinkingBudget": 24576, "includeThoughts": True}),
        ("gemini-2.5-pro", {"effort": "max"}, {"thinkingBudget": 32768, "includeThoughts": True}),
        ("gemini-2.5-pro", {"effort": "none"}, {"thinkingBudget": 128, "includeThoughts": False}),
        ("gemini-2.5-flash", {"effort": "none"}, {"thinkingBudget": 0, "includeThoughts": False}),
    ],
)
def test_thinking_config(model: str, reasoning: dict[str, Any], config: dict[str, Any]) -> None:
    assert thinking_config(model, msgspec.convert(reasoning, Reasoning)) == config
    assert body(model, reasoning=reasoning)["generationConfig"] == {"thinkingConfig": config}


def test_no_reasoning_asks_for_no_thinking_config() -> None:
    assert thinking_config("gemini-2.5-flash", None) is None
    assert thinking_config("gemini-2.5-flash", Reasoning()) is None


# --- JSON Schema -> Gemini Schema ---------------------------------------------------------------


def test_schema_drops_what_gemini_rejects_and_upper_cases_types() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "x",
        "type": "object",
        "title": "Args",
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 9, "pattern": "^a", "format": "email"},
            "when": {"type": "string", "format": "date-time", "examples": ["2024"]},
            "n": {"type": "integer", "minimum": 0, "exclusiveMaximum": 9, "multipleOf": 2, "format": "int64"},
            "x": {"type": "number", "format": "double", "default": 1.5},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": True},
            "flag": {"type": "boolean", "description": "On?"},
            "meta": {
                "type": "object",
                "patternProperties": {"^x": {}},
                "additionalProperties": {"type": "string"},
            },
        },
        "required": ["name", "ghost"],
    }
    assert to_gemini_schema(schema) == {
        "type": "OBJECT",
        "title": "Args",
        "properties": {
            "name": {"type": "STRING", "minLength": 1, "maxLength": 9, "pattern": "^a"},
            "when": {"type": "STRING", "format": "date-time"},
            "n": {"type": "INTEGER", "minimum": 0, "format": "int64"},
            "x": {"type": "NUMBER", "default": 1.5, "format": "double"},
            "tags": {"type": "ARRAY", "minItems": 1, "items": {"type": "STRING"}},
            "flag": {"type": "BOOLEAN", "description": "On?"},
            "meta": {"type": "OBJECT"},
        },
        "required": ["name"],
    }


def test_schema_nullable_enums_refs_and_combinators() -> None:
    schema = {
        "type": "object",
        "$defs": {
            "Color": {"type": "string", "enum": ["red", "blue"]},
            "Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}},
        },
        "properties": {
            "color": {"$ref": "#/$defs/Color", "description": "Pick one"},
            "maybe": {"type": ["string", "null"]},
            "either": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "union": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "multi": {"type": ["string", "integer"]},
            "level": {"type": "integer", "enum": [1, 2, 3], "description": "Level."},
            "fixed": {"const": "yes"},
            "both": {
                "allOf": [
                    {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                    {"properties": {"b": {"type": "integer"}}, "required": ["b"]},
                ]
            },
            "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}]},
            "node": {"$ref": "#/$defs/Node"},
            "missing": {"$ref": "#/$defs/Nope"},
        },
    }
    got = to_gemini_schema(schema)["properties"]
    assert got["color"] == {"type": "STRING", "enum": ["red", "blue"], "description": "Pick one"}
    assert got["maybe"] == {"type": "STRING", "nullable": True}
    assert got["either"] == {"type": "INTEGER", "nullable": True}
    assert got["union"] == {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]}
    assert got["multi"] == {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]}
    assert got["level"] == {"type": "INTEGER", "description": "Level. Allowed values: 1, 2, 3."}
    assert got["fixed"] == {"type": "STRING", "enum": ["yes"]}
    assert got["both"] == {
        "type": "OBJECT",
        "properties": {"a": {"type": "STRING"}, "b": {"type": "INTEGER"}},
        "required": ["a", "b"],
    }
    assert got["pair"] == {"type": "ARRAY", "items": {"anyOf": [{"type": "STRING"}, {"type": "NUMBER"}]}}
    assert got["node"] == {"type": "OBJECT", "properties": {"next": {"type": "OBJECT"}}}  # recursion cut
    assert got["missing"] == {}


def test_schema_of_nothing() -> None:
    assert to_gemini_schema({}) == {}
    assert to_gemini_schema(True) == {}
    got = body(tools=[{"name": "f", "parameters": {}}])
    assert got["tools"] == [{"functionDeclarations": [{"name": "f", "description": ""}]}]
