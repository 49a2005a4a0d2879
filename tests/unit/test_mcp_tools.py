"""The MCP face's pure parts: tools from the METHODS table, arguments, results, progress."""

from __future__ import annotations

import json
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import msgspec
import pytest

from sidecar.errors import field_path
from sidecar.mcp import tools as tools_mod
from sidecar.mcp.tools import (
    ProgressTracker,
    ProgressUpdate,
    decode_arguments,
    error_result,
    method_names,
    ok_result,
    self_contained,
    tool,
    tools,
)
from sidecar.wire.base import ErrorData, Usage
from sidecar.wire.catalog import ListModelsResult, ModelEntry
from sidecar.wire.chat import (
    ChatResult,
    CompleteParams,
    StreamEventParams,
    TextDelta,
    ThinkingDelta,
    ToolCall,
)
from sidecar.wire.local import PullProgressParams
from sidecar.wire.methods import METHODS

ALL = tuple(METHODS)
USAGE = Usage(input_tokens=3, output_tokens=5, cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0)


def _walk(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(_walk(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_walk(value))
    return found


def test_every_method_is_a_tool_of_the_same_name_with_its_description() -> None:
    listed = tools(ALL)
    assert [t["name"] for t in listed] == list(METHODS)
    for t in listed:
        assert t["description"] == METHODS[t["name"]].description
        assert len(t["description"]) > 40, f"{t['name']}: a model needs more than that to choose a tool"


@pytest.mark.parametrize("name", ALL)
def test_schemas_are_self_contained_2020_12_objects(name: str) -> None:
    t = tool(METHODS[name])
    for key in ("inputSchema", "outputSchema"):
        schema = t[key]
        assert schema["type"] == "object"
        jsonschema.Draft202012Validator.check_schema(schema)
        nodes = _walk(schema)
        assert not any("$ref" in n for n in nodes), f"{name} {key} still refers to $defs"
        assert not any("discriminator" in n for n in nodes)
        assert "$defs" not in schema
        assert all(n.get("required") != [] for n in nodes)


def test_input_schema_accepts_what_the_method_accepts_and_rejects_what_it_rejects() -> None:
    schema = tool(METHODS["stream"])["inputSchema"]
    good = {
        "model": "openai:gpt-4o-mini",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "tool_choice": {"name": "f"},
    }
    jsonschema.validate(good, schema, cls=jsonschema.Draft202012Validator)
    assert isinstance(decode_arguments("stream", good), CompleteParams)
    bad = {"model": "openai:gpt-4o-mini", "messages": [{"role": "robot", "content": "hi"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema, cls=jsonschema.Draft202012Validator)
    assert isinstance(decode_arguments("stream", bad), ErrorData)


def test_a_result_validates_against_its_output_schema() -> None:
    result = ChatResult(
        text="hello",
        tool_calls=[ToolCall(id="c1", name="f", arguments={"a": 1})],
        finish_reason="stop",
        usage=USAGE,
        cost_usd=None,
        provider="openai",
        model="gpt-4o-mini",
    )
    out = ok_result(result)
    jsonschema.validate(out["structuredContent"], tool(METHODS["complete"])["outputSchema"])
    models = ListModelsResult(
        models=[ModelEntry(model="openai:x", provider="openai", id="x")], pricing_date="d"
    )
    jsonschema.validate(ok_result(models)["structuredContent"], tool(METHODS["list_models"])["outputSchema"])


def test_ok_result_is_the_object_and_the_same_json_as_text() -> None:
    result = ChatResult(
        text="héllo\nworld",
        tool_calls=[],
        finish_reason="stop",
        usage=USAGE,
        cost_usd=0.5,
        provider="openai",
        model="m",
    )
    out = ok_result(result)
    assert out["isError"] is False
    assert out["structuredContent"]["text"] == "héllo\nworld"
    assert "thinking" not in out["structuredContent"]  # defaults omitted, as on the JSON-RPC face
    [block] = out["content"]
    assert block["type"] == "text"
    assert json.loads(block["text"]) == out["structuredContent"]


def test_error_result_carries_the_contract_kind_and_message() -> None:
    error = ErrorData(kind="rate_limited", message="Slow down.", provider="openai", retry_after_s=2.0)
    out = error_result(error)
    assert out["isError"] is True
    [block] = out["content"]
    assert block["type"] == "text"
    assert json.loads(block["text"]) == {
        "error": {"kind": "rate_limited", "message": "Slow down.", "provider": "openai", "retry_after_s": 2.0}
    }
    # Not the method's result, so no structuredContent (clients check it against outputSchema).
    assert "structuredContent" not in out


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"model": 5, "messages": [{"role": "user", "content": "hi"}]}, "$.model"),
        ({"model": "m", "messages": []}, "$.messages"),
        ({"model": "m", "messages": [{"role": "robot"}]}, "$.messages[0].role"),
        ({"model": "m", "messages": [{"role": "user"}], "temperature": 9}, "$.temperature"),
    ],
)
def test_bad_arguments_are_an_invalid_request_naming_the_field(arguments: dict[str, Any], field: str) -> None:
    error = decode_arguments("complete", arguments)
    assert isinstance(error, ErrorData)
    assert error.kind == "invalid_request"
    assert error.field == field
    assert error.message.startswith("Invalid arguments: ")


def test_arguments_decode_like_params_unknown_fields_refused_none_is_empty() -> None:
    assert msgspec.to_builtins(decode_arguments("list_models", {"provider": "openai"})) == {
        "provider": "openai"
    }
    error = decode_arguments("validate_key", {"provider": "openai", "key": "sk-bad"})
    assert isinstance(error, ErrorData) and error.kind == "invalid_request" and error.field == "$.key"
    assert "did you mean `api_key`?" in error.message
    assert msgspec.to_builtins(decode_arguments("info", None)) == {}
    assert isinstance(decode_arguments("info", {"x": 1}), ErrorData)


def test_field_path_without_a_location_is_the_root() -> None:
    assert field_path("Expected `object`, got `array`") == "$"
    assert field_path("Object missing required field `model`") == "$.model"


def test_text_deltas_become_increasing_progress_whose_messages_are_the_text() -> None:
    tracker = ProgressTracker()
    updates = [
        tracker.update("stream/event", StreamEventParams(request_id=1, event=TextDelta(text="Hel"))),
        tracker.update("stream/event", StreamEventParams(request_id=1, event=ThinkingDelta(text="hmm"))),
        tracker.update("stream/event", StreamEventParams(request_id=1, event=TextDelta(text=""))),
        tracker.update("stream/event", {"request_id": 1, "event": {"type": "text_delta", "text": "lo"}}),
        tracker.update("openrouter_auth/completed", {"ok": True}),
    ]
    assert updates == [ProgressUpdate(3, None, "Hel"), None, None, ProgressUpdate(5, None, "lo"), None]


def test_pull_progress_sums_layers_and_only_ever_increases() -> None:
    tracker = ProgressTracker()

    def pull(
        status: str, digest: str | None = None, total: int | None = None, completed: int | None = None
    ) -> Any:
        params = PullProgressParams(
            request_id=1, status=status, digest=digest, total=total, completed=completed
        )
        return tracker.update("ollama_pull/progress", params)

    assert pull("pulling manifest") == ProgressUpdate(0, None, "pulling manifest")
    assert pull("pulling a", "sha256:a", 100, 0) is None  # no increase
    assert pull("pulling a", "sha256:a", 100, 60) == ProgressUpdate(60, 100, "pulling a")
    assert pull("pulling a", "sha256:a", 100, 100) == ProgressUpdate(100, 100, "pulling a")
    assert pull("pulling b", "sha256:b", 50, 10) == ProgressUpdate(110, 150, "pulling b")
    assert pull("verifying sha256 digest") is None
    assert pull("pulling b", "sha256:b", 50, 50) == ProgressUpdate(150, 150, "pulling b")
    assert pull("success") is None


def test_self_contained_keeps_defs_of_a_recursive_type() -> None:
    doc = {
        "title": "Node",
        "type": "object",
        "properties": {"child": {"$ref": "#/$defs/Node"}},
        "$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}},
    }
    out = self_contained(doc)
    assert out["properties"]["child"]["properties"]["child"] == {"$ref": "#/$defs/Node"}
    assert out["$defs"]["Node"]["properties"]["child"] == {"$ref": "#/$defs/Node"}
    jsonschema.validate({"child": {"child": {"child": {}}}}, out)


def test_a_non_object_root_is_refused() -> None:
    with pytest.raises(TypeError):
        self_contained({"type": "array"})


def test_tools_offered_are_the_methods_with_handlers_in_table_order() -> None:
    assert method_names(["stream", "nope", "complete"]) == ("complete", "stream")


def test_annotations_spell_out_each_hint_from_the_table() -> None:
    assert tools_mod.tool_annotations("delete_key") == {
        "readOnlyHint": False,
        "destructiveHint": True,
        "openWorldHint": False,
    }
    assert tools_mod.tool_annotations("list_keys") == {"readOnlyHint": True, "openWorldHint": False}
    assert tools_mod.tool_annotations("validate_key") == {"readOnlyHint": True, "openWorldHint": True}
    assert tools_mod.tool_annotations("set_key") == {
        "readOnlyHint": False,
        "destructiveHint": False,
        "openWorldHint": True,
    }
    # A name the table holds for a method this build does not serve is harmless; no row, no hints.
    assert tools_mod.tool_annotations("client_key_delete") is not None
    assert tools_mod.tool_annotations("no_such_method") is None
