"""`response_format` (JSON answers), without I/O: what the contract accepts, how each provider is
asked in its own words, that it is part of the response cache's key only when asked for, and the
stub's JSON answers."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec
import pytest

from sidecar.core import response_cache, stub_answers
from sidecar.core.models import ModelRef
from sidecar.errors import SidecarError
from sidecar.providers import anthropic_format, gemini_format, ollama_format, openai_format
from sidecar.wire.chat import CompleteParams

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
    "additionalProperties": False,
}
BY_SCHEMA = {"type": "json_schema", "name": "forecast", "schema": SCHEMA, "strict": True}


def params(fmt: dict[str, Any] | None = None) -> CompleteParams:
    raw: dict[str, Any] = {"messages": [{"role": "user", "content": "Oslo in JSON"}]}
    if fmt is not None:
        raw["response_format"] = fmt
    return msgspec.convert(raw, CompleteParams)


@pytest.mark.parametrize(
    ("fmt", "error"),
    [
        ({"type": "json_schema"}, "missing required field `schema`"),
        ({"type": "json_schema", "schema": SCHEMA, "name": "no spaces"}, "matching regex"),
        ({"type": "yaml"}, r"Invalid value 'yaml' - at `\$.response_format.type`"),
    ],
)
def test_the_contract_refuses_a_format_it_cannot_ask_for(fmt: dict[str, Any], error: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=error):
        params(fmt)


def test_openai_style_providers_get_response_format() -> None:
    for dialect in (openai_format.OPENAI, openai_format.XAI, openai_format.OPENROUTER):
        body = openai_format.build_body("m", params(BY_SCHEMA), dialect, stream=True)
        assert body["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "forecast", "schema": SCHEMA, "strict": True},
        }
    unnamed = openai_format.build_body("m", params({"type": "json_schema", "schema": SCHEMA}), openai_format.OPENAI, stream=False)  # fmt: skip
    assert unnamed["response_format"]["json_schema"] == {"name": "answer", "schema": SCHEMA}
    mode = openai_format.build_body("m", params({"type": "json_object"}), openai_format.OPENAI, stream=False)
    assert mode["response_format"] == {"type": "json_object"}
    assert "response_format" not in openai_format.build_body(
        "m", params(), openai_format.OPENAI, stream=False
    )


def test_claude_gets_output_config_and_json_mode_is_refused() -> None:
    body = anthropic_format.build_body("claude-sonnet-4-5", params(BY_SCHEMA), stream=False)
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    with pytest.raises(SidecarError) as exc:
        anthropic_format.build_body("claude-sonnet-4-5", params({"type": "json_object"}), stream=False)
    assert (exc.value.kind, exc.value.field) == ("invalid_request", "response_format")
    assert "output_config" not in anthropic_format.build_body("claude-sonnet-4-5", params(), stream=False)


def test_gemini_gets_a_json_mime_type_and_the_schema() -> None:
    generation = gemini_format.build_body("gemini-2.5-flash", params(BY_SCHEMA))["generationConfig"]
    assert generation == {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA}
    mode = gemini_format.build_body("gemini-2.5-flash", params({"type": "json_object"}))["generationConfig"]
    assert mode == {"responseMimeType": "application/json"}


def test_ollama_gets_format() -> None:
    assert ollama_format.build_body("llama3.2", params(BY_SCHEMA), stream=True)["format"] == SCHEMA
    assert (
        ollama_format.build_body("llama3.2", params({"type": "json_object"}), stream=True)["format"] == "json"
    )
    assert "format" not in ollama_format.build_body("llama3.2", params(), stream=True)


def test_the_cache_key_holds_the_format_only_when_asked() -> None:
    ref = ModelRef("openai", "gpt-4o-mini")
    plain = response_cache.key(ref, params())
    fields = {"provider": "openai", "model": "gpt-4o-mini", "messages": msgspec.to_builtins(params().messages),
              "tools": None, "tool_choice": None, "max_tokens": None, "temperature": None, "top_p": None,
              "stop": None, "reasoning": None}  # fmt: skip
    assert plain == hashlib.sha256(msgspec.json.encode(fields, order="sorted")).hexdigest()  # as before
    keys = {
        plain,
        response_cache.key(ref, params(BY_SCHEMA)),
        response_cache.key(ref, params({"type": "json_object"})),
    }
    assert len(keys) == 3


def test_the_stub_answers_json_built_from_the_schema() -> None:
    shaped = stub_answers.answer("echo", params(BY_SCHEMA))
    assert json.loads(shaped.text) == {"city": "Oslo in JSON", "days": 1}
    assert json.loads(stub_answers.answer("echo", params({"type": "json_object"})).text) == {
        "text": "Oslo in JSON"
    }
