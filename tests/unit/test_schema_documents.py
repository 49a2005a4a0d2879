"""The checked-in per-method and per-notification documents are real JSON Schemas: a validator
(python-jsonschema, draft 2020-12) run on the file as it is accepts the params a method accepts
and rejects what it rejects; `$defs.result` validates a method's result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import msgspec
import pytest
from referencing import Registry, Resource

from sidecar.wire.methods import METHODS, NOTIFICATIONS

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
Validator = jsonschema.Draft202012Validator


def method_doc(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SCHEMAS / "methods" / f"{name}.json").read_text())
    return doc


def notification_doc(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        (SCHEMAS / "notifications" / f"{name.replace('/', '.')}.json").read_text()
    )
    return doc


def valid(schema: dict[str, Any], instance: Any) -> bool:
    return not list(Validator(schema).iter_errors(instance))


def result_validator(name: str) -> Any:
    doc = method_doc(name)
    registry = Registry().with_resource(doc["$id"], Resource.from_contents(doc))
    return Validator({"$ref": f"{doc['$id']}#/$defs/result"}, registry=registry)


@pytest.mark.parametrize("name", list(METHODS))
def test_each_method_document_is_a_schema_that_refuses_non_objects(name: str) -> None:
    doc = method_doc(name)
    Validator.check_schema(doc)
    assert doc["type"] == "object" and doc["title"] == name
    for wrong in (42, "params", [], None, True):
        assert not valid(doc, wrong), f"{name} accepted {wrong!r}"


@pytest.mark.parametrize("name", list(METHODS))
def test_schema_and_decoder_agree_on_empty_params(name: str) -> None:
    try:
        msgspec.json.decode(b"{}", type=METHODS[name].params)
        decodes = True
    except msgspec.ValidationError:
        decodes = False
    assert valid(method_doc(name), {}) is decodes


GOOD_AND_BAD: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "complete",
        {"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5},
        {"model": "openai:gpt-4o-mini", "messages": [{"role": "robot", "content": "Hi"}]},
    ),
    (
        "stream",
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]},
        {"model": "m", "messages": []},
    ),
    ("list_models", {"provider": "openai"}, {"provider": 7}),
    ("set_key", {"provider": "openai", "api_key": "sk-x", "validate": False}, {"provider": "openai"}),
    ("ollama_pull", {"model": "llama3.2:3b"}, {"model": ["llama3.2:3b"]}),
    ("estimate_cost", {"model": "openai:gpt-4o", "max_tokens": 100}, {"max_tokens": 100}),
]


@pytest.mark.parametrize(("name", "good", "bad"), GOOD_AND_BAD, ids=[g[0] for g in GOOD_AND_BAD])
def test_good_params_pass_and_bad_params_fail_like_the_decoder(
    name: str, good: dict[str, Any], bad: dict[str, Any]
) -> None:
    doc = method_doc(name)
    decoder = msgspec.json.Decoder(METHODS[name].params)
    assert valid(doc, good)
    decoder.decode(json.dumps(good))
    assert not valid(doc, bad)
    with pytest.raises(msgspec.ValidationError):
        decoder.decode(json.dumps(bad))


def test_result_definition_validates_a_result() -> None:
    result = {
        "text": "Hello",
        "tool_calls": [],
        "finish_reason": "stop",
        "usage": {
            "input_tokens": 3,
            "output_tokens": 1,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "reasoning_tokens": 0,
        },
        "cost_usd": None,
        "provider": "openai",
        "model": "gpt-4o-mini",
    }
    check = result_validator("complete")
    assert not list(check.iter_errors(result))
    assert list(check.iter_errors({**result, "finish_reason": "bored"}))
    assert list(check.iter_errors({"text": "no usage"}))
    assert method_doc("stream")["x-notifications"] == ["stream/event"]


@pytest.mark.parametrize("name", list(NOTIFICATIONS))
def test_each_notification_document_validates_its_params(name: str) -> None:
    doc = notification_doc(name)
    Validator.check_schema(doc)
    assert doc["type"] == "object" and not valid(doc, 42)


def test_stream_event_document_tells_good_events_from_bad() -> None:
    doc = notification_doc("stream/event")
    assert valid(doc, {"request_id": 1, "event": {"type": "text_delta", "text": "Hel"}})
    assert not valid(doc, {"request_id": 1, "event": {"type": "text_delta"}})
    assert not valid(doc, {"event": {"type": "text_delta", "text": "x"}})


def test_the_contract_index_names_every_method_notification_and_error_kind() -> None:
    from sidecar.errors import KIND_CODES

    readme = (SCHEMAS / "README.md").read_text()
    index = readme[readme.index("generated:index:begin") : readme.index("generated:index:end")]
    for name in [*METHODS, *NOTIFICATIONS, *KIND_CODES]:
        assert f"| `{name}`" in index, name
