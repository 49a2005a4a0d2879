"""The offline `stub` provider through the spawned sidecar, with no fake upstream and no key:
deterministic streamed text, a tool call when tools are given, realistic usage, zero cost."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness import Sidecar

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1},
        },
        "required": ["city", "unit"],
    },
}


@pytest.fixture(scope="module")
def sc() -> Iterator[Sidecar]:
    # No environment beyond PATH/HOME: no key, no base URL, nothing listening anywhere.
    with Sidecar() as sidecar:
        yield sidecar
        assert sidecar.bad_lines == []


def ask(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def test_echo_streams_the_user_text_back_with_usage_and_zero_cost(sc: Sidecar) -> None:
    text = "Hello stub, please repeat this sentence back to me word for word."
    rid = sc.start("stream", ask("stub:echo", text))
    result = sc.wait(rid)["result"]
    events = sc.events(rid)
    deltas = [e["text"] for e in events if e["type"] == "text_delta"]
    assert len(deltas) > 3 and "".join(deltas) == text == result["text"]
    assert events[-1]["type"] == "usage"
    usage = result["usage"]
    assert usage["input_tokens"] >= len(text) // 4 and usage["output_tokens"] >= len(text) // 5
    assert result["cost_usd"] == 0 and result["provider"] == "stub" and result["finish_reason"] == "stop"


def test_a_stop_sequence_ends_the_text_as_a_models_would(sc: Sidecar) -> None:
    text = "Thought: look it up\nObservation: 42"
    rid = sc.start("stream", ask("stub:echo", text, stop=["Observation:", "zzz"]))
    result = sc.wait(rid)["result"]
    deltas = [e["text"] for e in sc.events(rid) if e["type"] == "text_delta"]
    assert "".join(deltas) == result["text"] == "Thought: look it up\n"
    assert (result["finish_reason"], result["stop_sequence"]) == ("stop", "Observation:")
    whole = sc.result("complete", ask("stub:echo", "no stop here", stop="zzz"))
    assert (whole["text"], whole.get("stop_sequence")) == ("no stop here", None)  # omitted when none


def test_lorem_is_deterministic_and_sized_by_max_tokens(sc: Sidecar) -> None:
    first = sc.result("complete", ask("stub:lorem", "write something", max_tokens=40))
    again = sc.result("complete", ask("stub:lorem", "write something", max_tokens=40))
    other = sc.result("complete", ask("stub:lorem", "write something else", max_tokens=40))
    longer = sc.result("complete", ask("stub:lorem", "write something", max_tokens=200))
    assert first["text"] == again["text"] and first["text"] != other["text"]
    assert 30 <= first["usage"]["output_tokens"] <= 40
    assert len(longer["text"]) > 3 * len(first["text"])


def test_tools_model_calls_a_tool_then_reads_its_answer(sc: Sidecar) -> None:
    rid = sc.start("stream", ask("stub:tools", "weather in Paris?", tools=[WEATHER]))
    result = sc.wait(rid)["result"]
    assert result["finish_reason"] == "tool_calls"
    [call] = result["tool_calls"]
    assert call["name"] == "get_weather"
    assert call["arguments"] == {"city": "weather in Paris?", "unit": "celsius"}
    deltas = [e for e in sc.events(rid) if e["type"] == "tool_call_delta"]
    assert len(deltas) >= 2 and deltas[0]["name"] == "get_weather"
    follow_up = {
        "model": "stub:tools",
        "tools": [WEATHER],
        "messages": [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "18C and sunny"},
        ],
    }
    answer = sc.result("complete", follow_up)
    assert answer["text"] == "The tool answered: 18C and sunny" and answer["tool_calls"] == []


def test_echo_calls_a_tool_only_when_the_request_requires_one(sc: Sidecar) -> None:
    plain = sc.result("complete", ask("stub:echo", "hi", tools=[WEATHER]))
    forced = sc.result("complete", ask("stub:echo", "hi", tools=[WEATHER], tool_choice="required"))
    assert plain["tool_calls"] == [] and plain["text"] == "hi"
    assert forced["tool_calls"][0]["name"] == "get_weather"


def test_listed_without_a_key_and_priced_at_zero(sc: Sidecar) -> None:
    providers = {p["id"]: p for p in sc.result("list_providers")["providers"]}
    assert providers["stub"]["needs_key"] is False
    assert providers["stub"]["models"] == ["echo", "lorem", "tools"]
    models = sc.result("list_models", {"provider": "stub"})["models"]
    assert [m["model"] for m in models] == ["stub:echo", "stub:lorem", "stub:tools"]
    assert all(m["input_per_mtok"] == 0 and m["output_per_mtok"] == 0 for m in models)
    estimate = sc.result("estimate_cost", ask("stub:lorem", "x" * 400, max_tokens=100))
    assert estimate["cost_usd_max"] == 0


def test_unknown_stub_model_is_model_not_found(sc: Sidecar) -> None:
    error = sc.call("complete", ask("stub:poetry", "hi"))["error"]
    assert error["data"]["kind"] == "model_not_found" and "stub:echo" in error["data"]["message"]


def test_never_used_as_a_fallback_unless_named(sc: Sidecar) -> None:
    # openai has no key here: without a fallback list the stub is not tried.
    error = sc.call("complete", ask("openai:gpt-4o-mini", "hi"))["error"]
    assert error["data"]["kind"] == "missing_key"
    named = sc.result("complete", ask("openai:gpt-4o-mini", "hi", fallback=["stub:echo"]))
    assert named["provider"] == "stub" and named["text"] == "hi"
