"""Ollama's native format, both ways: request bodies field by field, and answers (recorded-shape
fixtures decoded whole and split at every byte offset)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sidecar.core.assemble import Assembler, Finish, ProviderEvent, ResponseMeta
from sidecar.core.pull_progress import Progress
from sidecar.errors import ProviderError, SidecarError
from sidecar.providers import ollama_format as fmt
from sidecar.providers.decoders import NDJSONDecoder
from sidecar.providers.errors import provider_error
from sidecar.wire.chat import (
    CompleteParams,
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
from sidecar.wire.local import OllamaLoaded, OllamaModel

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WEATHER = Tool(
    name="get_weather",
    description="Weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
CLOCK = Tool(name="get_time", description="The time", parameters={"type": "object", "properties": {}})


def params(messages: list[Message], **kw: Any) -> CompleteParams:
    return CompleteParams(model="ollama:llama3.2", messages=messages, **kw)


def user(text: str) -> Message:
    return Message(role="user", content=text)


def ids() -> Any:
    counter = itertools.count(1)
    return lambda: f"call_gen{next(counter)}"


# --- request ----------------------------------------------------------------------------------------


def test_minimal_body_is_explicit_about_streaming() -> None:
    for stream in (True, False):
        body = fmt.build_body("llama3.2", params([user("hi")]), stream=stream)
        assert body == {
            "model": "llama3.2",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": stream,
        }


def test_roles_text_and_system() -> None:
    body = fmt.build_body(
        "m",
        params(
            [
                Message(role="system", content="Be brief."),
                Message(role="user", content=[TextPart(text="Hello "), TextPart(text="there")]),
                Message(role="assistant", content="Hi."),
            ]
        ),
        stream=True,
    )
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "Hi."},
    ]


def test_images_inline_as_base64() -> None:
    msg = Message(
        role="user",
        content=[
            TextPart(text="What is this?"),
            ImagePart(data="iVBORw0KGgo=", media_type="image/png"),
            ImagePart(url="data:image/jpeg;base64,/9j/4AAQ"),
        ],
    )
    body = fmt.build_body("llava", params([msg]), stream=True)
    assert body["messages"] == [
        {"role": "user", "content": "What is this?", "images": ["iVBORw0KGgo=", "/9j/4AAQ"]}
    ]


@pytest.mark.parametrize("url", ["https://example.com/cat.png", "data:image/png,notbase64"])
def test_image_urls_are_refused_with_a_reason(url: str) -> None:
    msg = Message(role="user", content=[ImagePart(url=url)])
    with pytest.raises(SidecarError) as err:
        fmt.build_body("llava", params([msg]), stream=True)
    assert err.value.kind == "invalid_request"
    assert err.value.field == "messages"
    assert "base64" in err.value.message


def test_tool_loop_messages() -> None:
    call = ToolCall(id="call_1", name="get_weather", arguments={"city": "Tokyo", "days": 2})
    body = fmt.build_body(
        "m",
        params(
            [
                user("Weather in Tokyo?"),
                Message(role="assistant", content="", tool_calls=[call]),
                Message(role="tool", tool_call_id="call_1", content="Sunny"),
                Message(role="tool", name="explicit_name", content="also"),
            ],
            tools=[WEATHER],
        ),
        stream=True,
    )
    assert body["messages"][1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Tokyo", "days": 2}}}
        ],
    }
    assert body["messages"][2] == {
        "role": "tool",
        "content": "Sunny",
        "tool_name": "get_weather",
        "tool_call_id": "call_1",
    }
    assert body["messages"][3] == {"role": "tool", "content": "also", "tool_name": "explicit_name"}
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]


def test_tool_choice_has_no_ollama_field_so_it_shapes_the_tool_list() -> None:
    tools = [WEATHER, CLOCK]
    assert "tools" not in fmt.build_body(
        "m", params([user("x")], tools=tools, tool_choice="none"), stream=True
    )
    only = fmt.build_body(
        "m", params([user("x")], tools=tools, tool_choice=ToolChoiceName(name="get_time")), stream=True
    )
    assert [t["function"]["name"] for t in only["tools"]] == ["get_time"]
    for choice in ("auto", "required"):
        body = fmt.build_body("m", params([user("x")], tools=tools, tool_choice=choice), stream=True)
        assert [t["function"]["name"] for t in body["tools"]] == ["get_weather", "get_time"]
        assert "tool_choice" not in body
    with pytest.raises(SidecarError) as err:
        fmt.build_body(
            "m", params([user("x")], tools=tools, tool_choice=ToolChoiceName(name="nope")), stream=True
        )
    assert err.value.field == "tool_choice"


@pytest.mark.parametrize(
    ("reasoning", "think"),
    [
        (Reasoning(effort="none"), False),
        (Reasoning(effort="minimal"), "low"),
        (Reasoning(effort="low"), "low"),
        (Reasoning(effort="medium"), "medium"),
        (Reasoning(effort="high"), "high"),
        (Reasoning(effort="xhigh"), "high"),
        (Reasoning(effort="max"), "high"),
        (Reasoning(budget_tokens=2048), True),
        (Reasoning(budget_tokens=0), False),
        (Reasoning(effort="low", budget_tokens=9999), "low"),
    ],
)
def test_think_from_reasoning(reasoning: Reasoning, think: bool | str) -> None:
    body = fmt.build_body("m", params([user("x")], reasoning=reasoning), stream=True)
    assert body["think"] == think


def test_no_reasoning_leaves_think_to_the_model() -> None:
    assert "think" not in fmt.build_body("m", params([user("x")]), stream=True)
    assert "think" not in fmt.build_body("m", params([user("x")], reasoning=Reasoning()), stream=True)


def test_options() -> None:
    body = fmt.build_body(
        "m", params([user("x")], max_tokens=64, temperature=0.2, top_p=0.9, stop="END"), stream=False
    )
    assert body["options"] == {"num_predict": 64, "temperature": 0.2, "top_p": 0.9, "stop": ["END"]}
    body = fmt.build_body("m", params([user("x")], stop=["a", "b"]), stream=False)
    assert body["options"] == {"stop": ["a", "b"]}
    assert "options" not in fmt.build_body("m", params([user("x")]), stream=False)


def test_body_round_trips_through_json() -> None:
    body = fmt.build_body(
        "m", params([user("x")], tools=[WEATHER], reasoning=Reasoning(effort="high")), stream=True
    )
    assert json.loads(msgspec.json.encode(body)) == body


# --- chat answers -----------------------------------------------------------------------------------


def decode_stream(raw: bytes, cuts: list[int] | None = None, new_id: Any = None) -> list[ProviderEvent]:
    """Feed `raw` split at `cuts` through the NDJSON splitter and the chat decoder."""
    lines = NDJSONDecoder()
    decoder = fmt.ChatDecoder("ollama", new_id or ids())
    events: list[ProviderEvent] = []
    bounds = [0, *(cuts or []), len(raw)]
    for start, end in itertools.pairwise(bounds):
        for line in lines.feed(raw[start:end]):
            events += decoder.feed(line)
    for line in lines.finish():
        events += decoder.feed(line)
    assert decoder.done
    return events


def test_text_stream_fixture() -> None:
    raw = (FIXTURES / "ollama-constructed-api-chat-stream.ndjson").read_bytes()
    events = decode_stream(raw)
    assert events == [
        ResponseMeta(None, "llama3.2"),
        TextDelta(text="The"),
        TextDelta(text=" sky"),
        Finish("stop", "stop"),
        UsageEvent(
            input_tokens=26, output_tokens=282, cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0
        ),
    ]


def test_tool_call_fixture_gets_an_id_and_object_arguments() -> None:
    raw = (FIXTURES / "ollama-constructed-api-chat-stream-toolcall.ndjson").read_bytes()
    events = decode_stream(raw)
    assert events[1] == ToolCallDelta(
        index=0, id="call_gen1", name="get_weather", arguments_delta='{"city":"Tokyo"}'
    )
    assert events[2] == Finish("tool_calls", "stop")  # Ollama says "stop"; a call was made
    assert events[3] == UsageEvent(
        input_tokens=169, output_tokens=15, cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0
    )
    assembler = Assembler()
    for event in events:
        assembler.add(event)
    result = assembler.result(provider="ollama", model="llama3.2")
    assert result.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [
        ("call_gen1", "get_weather", {"city": "Tokyo"})
    ]


@pytest.mark.parametrize(
    "name",
    ["ollama-constructed-api-chat-stream.ndjson", "ollama-constructed-api-chat-stream-toolcall.ndjson"],
)
def test_fixtures_split_at_every_offset_give_the_same_events(name: str) -> None:
    raw = (FIXTURES / name).read_bytes()
    whole = decode_stream(raw)
    for cut in range(1, len(raw)):
        assert decode_stream(raw, [cut]) == whole, cut
    # And byte by byte.
    assert decode_stream(raw, list(range(1, len(raw)))) == whole


def line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def test_thinking_then_text_then_usage_and_kept_ids() -> None:
    decoder = fmt.ChatDecoder("ollama", ids())
    events: list[ProviderEvent] = []
    events += decoder.feed(
        line(
            {
                "model": "qwen3",
                "message": {"role": "assistant", "content": "", "thinking": "Hmm"},
                "done": False,
            }
        )
    )
    events += decoder.feed(
        line({"model": "qwen3", "message": {"role": "assistant", "content": "Yes"}, "done": False})
    )
    events += decoder.feed(
        line(
            {
                "model": "qwen3",
                "message": {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"id": "call_up1", "function": {"index": 0, "name": "a", "arguments": {}}},
                        {"function": {"index": 1, "name": "b", "arguments": {"x": [1, 2]}}},
                    ],
                },
                "done": False,
            }
        )
    )
    assert not decoder.done
    events += decoder.feed(
        line(
            {
                "model": "qwen3",
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 7,
                "eval_count": 30,
            }
        )
    )
    assert decoder.done
    assert events == [
        ResponseMeta(None, "qwen3"),
        ThinkingDelta(text="Hmm"),
        TextDelta(text="Yes"),
        ToolCallDelta(index=0, id="call_up1", name="a", arguments_delta="{}"),
        ToolCallDelta(index=1, id="call_gen1", name="b", arguments_delta='{"x":[1,2]}'),
        Finish("tool_calls", "stop"),
        UsageEvent(
            input_tokens=7, output_tokens=30, cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0
        ),
    ]


@pytest.mark.parametrize(
    ("done_reason", "reason"), [("stop", "stop"), ("length", "length"), ("load", "stop"), (None, "stop")]
)
def test_done_reason(done_reason: str | None, reason: str) -> None:
    obj: dict[str, Any] = {"message": {"role": "assistant", "content": "x"}, "done": True}
    if done_reason:
        obj["done_reason"] = done_reason
    events = fmt.ChatDecoder("ollama").feed(line(obj))
    assert Finish(reason, done_reason) in events  # type: ignore[arg-type]
    assert isinstance(events[-1], UsageEvent)


def test_error_line_inside_a_200_stream() -> None:
    decoder = fmt.ChatDecoder("ollama")
    decoder.feed(line({"model": "m", "message": {"role": "assistant", "content": "Hi"}, "done": False}))
    with pytest.raises(ProviderError) as err:
        decoder.feed(line({"error": "an error was encountered while running the model"}))
    assert err.value.kind == "provider_error"
    assert err.value.provider == "ollama"
    assert "an error was encountered while running the model" in err.value.message
    with pytest.raises(ProviderError) as err:
        fmt.ChatDecoder("ollama").feed(line({"error": "model 'nope' not found"}))
    assert err.value.kind == "model_not_found"
    assert "ollama_pull" in err.value.message


def test_a_line_that_is_not_json_is_a_provider_error() -> None:
    with pytest.raises(ProviderError) as err:
        fmt.ChatDecoder("ollama").feed(b"{not json")
    assert err.value.kind == "provider_error"


def test_non_stream_answer() -> None:
    body = line(
        {
            "model": "llama3.2",
            "message": {"role": "assistant", "content": "Hello!", "thinking": "greet"},
            "done": True,
            "done_reason": "length",
            "prompt_eval_count": 5,
            "eval_count": 9,
        }
    )
    events = fmt.decode_completion("ollama", body)
    assert events == [
        ResponseMeta(None, "llama3.2"),
        ThinkingDelta(text="greet"),
        TextDelta(text="Hello!"),
        Finish("length", "length"),
        UsageEvent(
            input_tokens=5, output_tokens=9, cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0
        ),
    ]
    with pytest.raises(ProviderError):
        fmt.decode_completion(
            "ollama", line({"message": {"role": "assistant", "content": "x"}, "done": False})
        )


def test_http_404_from_ollama_points_at_ollama_pull() -> None:
    err = provider_error("ollama", 404, b'{"error":"model \'qwen9:1b\' not found"}')
    assert err.kind == "model_not_found"
    assert "qwen9:1b" in err.message
    assert "ollama_pull" in err.message


# --- management routes ------------------------------------------------------------------------------


def test_tags_fixture() -> None:
    models = fmt.decode_tags("ollama", (FIXTURES / "ollama-constructed-api-tags.json").read_bytes())
    assert models == [
        OllamaModel(
            name="llama3.2:latest",
            model="llama3.2:latest",
            size=2019393189,
            modified_at="2025-05-04T17:37:44.706015396-07:00",
            digest="a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
            family="llama",
            parameter_size="3.2B",
            quantization="Q4_K_M",
        )
    ]
    assert fmt.decode_tags("ollama", b'{"models":[]}') == []
    assert fmt.decode_tags("ollama", b"{}") == []


def test_ps_and_version() -> None:
    body = line(
        {
            "models": [
                {
                    "name": "mistral:latest",
                    "model": "mistral:latest",
                    "size": 5137025024,
                    "digest": "2ae6f6dd7a3dd734790bbbf58b8909a606e0e7e97e94b7604e0aa7ae4490e6d8",
                    "details": {"family": "llama"},
                    "expires_at": "2024-06-04T14:38:31.83753-07:00",
                    "size_vram": 5137025024,
                    "context_length": 4096,
                }
            ]
        }
    )
    assert fmt.decode_ps("ollama", body) == [
        OllamaLoaded(
            name="mistral:latest",
            size=5137025024,
            size_vram=5137025024,
            expires_at="2024-06-04T14:38:31.83753-07:00",
        )
    ]
    assert fmt.decode_version("ollama", b'{"version":"0.5.1"}') == "0.5.1"
    with pytest.raises(ProviderError):
        fmt.decode_version("ollama", b"<html>")


def decode_pull(raw: bytes, cuts: list[int]) -> tuple[list[Progress], bool]:
    lines = NDJSONDecoder()
    decoder = fmt.PullDecoder("ollama")
    out: list[Progress] = []
    for start, end in itertools.pairwise([0, *cuts, len(raw)]):
        for item in lines.feed(raw[start:end]):
            progress = decoder.feed(item)
            if progress is not None:
                out.append(progress)
    for item in lines.finish():
        progress = decoder.feed(item)
        if progress is not None:
            out.append(progress)
    return out, decoder.succeeded


def test_pull_fixture_split_at_every_offset() -> None:
    raw = (FIXTURES / "ollama-constructed-api-pull-stream.ndjson").read_bytes()
    whole, ok = decode_pull(raw, [])
    assert ok
    digest = "sha256:dde5aa3fc5ffc17176b5e8bdc82f587b24b2678c6c66101bf7da77af9f7ccdff"
    assert whole[:4] == [
        Progress("pulling manifest"),
        Progress("pulling dde5aa3fc5ff", digest, 2019377376, None),
        Progress("pulling dde5aa3fc5ff", digest, 2019377376, 241970),
        Progress("pulling dde5aa3fc5ff", digest, 2019377376, 2019377376),
    ]
    assert [p.status for p in whole[4:]] == [
        "pulling 966de95ca8a6",
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    assert whole[3].final and not whole[2].final
    for cut in range(1, len(raw)):
        assert decode_pull(raw, [cut]) == (whole, True), cut


def test_pull_error_line_is_model_not_found() -> None:
    raw = (FIXTURES / "ollama-constructed-api-pull-midstream-error.ndjson").read_bytes()
    with pytest.raises(ProviderError) as err:
        decode_pull(raw, [])
    assert err.value.kind == "model_not_found"
    decoder = fmt.PullDecoder("ollama")
    with pytest.raises(ProviderError) as err:
        decoder.feed(line({"error": "max retries exceeded: connection reset"}))
    assert err.value.kind == "provider_error"
