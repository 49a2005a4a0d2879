"""providers.openrouter_models: OpenRouter's `/models` list to catalog entries."""

from __future__ import annotations

import json

import msgspec
import pytest

from sidecar.core.catalog import REASONING, STREAMING, TOOLS, VISION, PriceBook
from sidecar.providers.openrouter_models import parse_models, per_mtok

# The documented example entry (OpenRouter's OpenAPI `/models` 200 example), verbatim.
SPEC_EXAMPLE = {
    "id": "openai/gpt-4",
    "canonical_slug": "openai/gpt-4",
    "name": "GPT-4",
    "created": 1692901234,
    "description": "GPT-4 is a large multimodal model that can solve difficult problems with greater accuracy.",
    "context_length": 8192,
    "architecture": {
        "modality": "text->text",
        "input_modalities": ["text"],
        "output_modalities": ["text"],
        "tokenizer": "GPT",
        "instruct_type": "chatml",
    },
    "pricing": {"prompt": "0.00003", "completion": "0.00006", "request": "0", "image": "0"},
    "top_provider": {"context_length": 8192, "max_completion_tokens": 4096, "is_moderated": True},
    "per_request_limits": None,
    "supported_parameters": ["temperature", "top_p", "max_tokens"],
    "default_parameters": None,
    "knowledge_cutoff": None,
    "expiration_date": None,
    "supported_voices": None,
    "links": {"details": "/api/v1/models/openai/gpt-4/endpoints"},
}


def body(*entries: object) -> bytes:
    return json.dumps({"data": list(entries)}).encode()


def test_spec_example_becomes_a_catalog_entry_per_million_tokens() -> None:
    (info,), skipped = parse_models(body(SPEC_EXAMPLE))
    assert skipped == 0
    assert (info.provider, info.model, info.display_name) == ("openrouter", "openai/gpt-4", "GPT-4")
    assert (info.input_per_mtok, info.output_per_mtok) == (30.0, 60.0)
    assert (info.context_window, info.max_output_tokens) == (8192, 4096)
    assert info.cache_read_per_mtok is None and info.capabilities == frozenset({STREAMING})


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.00000015", 0.15), ("0.0000006", 0.6), ("0", 0.0), ("-1", -1_000_000.0), (2.5e-06, 2.5), ("x", None)],
)
def test_prices_convert_exactly(text: str | float, expected: float | None) -> None:
    assert per_mtok(text) == expected


def test_cache_prices_and_capabilities_are_read() -> None:
    entry = {
        **SPEC_EXAMPLE,
        "id": "anthropic/claude-x",
        "pricing": {
            "prompt": "0.000003",
            "completion": "0.000015",
            "input_cache_read": "0.0000003",
            "input_cache_write": "0.00000375",
        },
        "architecture": {"input_modalities": ["text", "image"]},
        "supported_parameters": ["tools", "reasoning"],
    }
    (info,), _ = parse_models(body(entry))
    assert (info.cache_read_per_mtok, info.cache_write_per_mtok) == (0.3, 3.75)
    assert info.capabilities == frozenset({STREAMING, TOOLS, REASONING, VISION})


def test_unreadable_entries_are_skipped_and_variable_prices_dropped_by_the_book() -> None:
    no_price = {**SPEC_EXAMPLE, "id": "a/no-price", "pricing": {"request": "0"}}
    not_an_object = "oops"
    no_id = {"name": "nameless", "pricing": {"prompt": "0", "completion": "0"}}
    variable = {**SPEC_EXAMPLE, "id": "openrouter/auto", "pricing": {"prompt": "-1", "completion": "-1"}}
    entries, skipped = parse_models(body(SPEC_EXAMPLE, no_price, not_an_object, no_id, variable))
    assert [e.model for e in entries] == ["openai/gpt-4", "openrouter/auto"] and skipped == 3
    book = PriceBook()
    assert book.apply_overrides(entries, "2026-11-22") == 1
    assert book.price_for("openrouter", "openrouter/auto") == (None, None)


def test_a_body_that_is_not_a_model_list_raises() -> None:
    with pytest.raises(msgspec.ValidationError):
        parse_models(b'{"error": {"code": 500}}')
    with pytest.raises(msgspec.DecodeError):
        parse_models(b"<html>")
