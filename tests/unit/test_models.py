"""Model strings per the contract: `<provider>:<model>` split at the first colon, bare names placed
by shape, anything else a clear error."""

from __future__ import annotations

import pytest

from sidecar.core.models import ModelRef, parse_model
from sidecar.errors import SidecarError

PROVIDERS = {"openai", "anthropic", "gemini", "xai", "openrouter", "ollama", "lmstudio"}


@pytest.mark.parametrize(
    ("text", "provider", "model"),
    [
        ("openai:gpt-4o-mini", "openai", "gpt-4o-mini"),
        ("anthropic:claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5"),
        ("openrouter:anthropic/claude-sonnet-4.5", "openrouter", "anthropic/claude-sonnet-4.5"),
        ("ollama:llama3.2:3b", "ollama", "llama3.2:3b"),
        ("lmstudio:qwen2.5-7b", "lmstudio", "qwen2.5-7b"),
        ("gpt-4o", "openai", "gpt-4o"),
        ("o1-mini", "openai", "o1-mini"),
        ("o3", "openai", "o3"),
        ("o4-mini", "openai", "o4-mini"),
        ("chatgpt-4o-latest", "openai", "chatgpt-4o-latest"),
        ("claude-haiku-4-5", "anthropic", "claude-haiku-4-5"),
        ("gemini-2.5-flash", "gemini", "gemini-2.5-flash"),
        ("grok-4", "xai", "grok-4"),
        ("meta-llama/llama-3.3-70b-instruct", "openrouter", "meta-llama/llama-3.3-70b-instruct"),
    ],
)
def test_parses(text: str, provider: str, model: str) -> None:
    assert parse_model(text, PROVIDERS) == ModelRef(provider, model)


def test_unknown_bare_name_says_how_to_write_it() -> None:
    with pytest.raises(SidecarError) as info:
        parse_model("mistral-large", PROVIDERS)
    assert info.value.kind == "invalid_request" and "'<provider>:<model>'" in info.value.message
    assert info.value.field == "model"


def test_ollama_looking_name_gets_a_hint() -> None:
    with pytest.raises(SidecarError) as info:
        parse_model("llama3.2:3b", PROVIDERS)
    assert info.value.kind == "unsupported_provider"
    assert "ollama:llama3.2:3b" in info.value.message


def test_empty_model_after_prefix() -> None:
    with pytest.raises(SidecarError):
        parse_model("openai:", PROVIDERS)
