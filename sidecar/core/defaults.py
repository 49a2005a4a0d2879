"""Defaults of a chat request: which model when none is named, which model a provider named alone
(`openrouter:`) stands for, and the sampling settings a request leaves out.

Precedence, highest first: the request's own value; `[defaults]` in config.toml (model,
temperature, max_tokens); for a provider named alone, `[providers.<id>] default_model` (or an
endpoint's `default_model`, else its first model), else the built-in choice below.

Must not know: I/O, the protocol, providers' wire formats.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from sidecar.errors import SidecarError
from sidecar.wire.chat import CompleteParams

BUILTIN_DEFAULT_MODELS: Final[Mapping[str, str]] = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-5",
    "gemini": "gemini-2.5-flash",
    "xai": "grok-4",
    "openrouter": "openai/gpt-4o",
    "stub": "echo",
    # ollama: none; what is installed differs per machine, so only config.toml can name one.
}


def provider_alone(text: str, providers: Mapping[str, object]) -> str | None:
    """The provider id when `text` names a provider and no model (`"openai:"` or `"openai"`)."""
    text = text.strip()
    head = text[:-1] if text.endswith(":") else text
    return head if head in providers and ":" not in head else None


def default_model_for(provider: str, configured: str | None) -> str:
    """The model `provider:` stands for, or an `invalid_request` saying how to name one."""
    model = configured or BUILTIN_DEFAULT_MODELS.get(provider)
    if not model:
        raise SidecarError(
            "invalid_request",
            f"'{provider}:' names no model and {provider} has no default model: name one "
            f"('{provider}:<model>'), or set default_model under [providers.{provider}] in config.toml.",
            provider=provider,
            field="model",
        )
    return f"{provider}:{model}"


def apply(
    params: CompleteParams,
    *,
    model: str | None,
    temperature: float | None,
    max_tokens: int | None,
) -> CompleteParams:
    """`params` with the configured defaults filled where the request left a field out."""
    changes: dict[str, object] = {}
    if not (params.model or "").strip():
        if not model:
            raise SidecarError(
                "invalid_request",
                "No model given and no default model configured: pass `model` "
                "('<provider>:<model>', or '<provider>:' for that provider's default), "
                "or set `model` under [defaults] in config.toml.",
                field="model",
            )
        changes["model"] = model
    if params.temperature is None and temperature is not None:
        changes["temperature"] = temperature
    if params.max_tokens is None and max_tokens is not None:
        changes["max_tokens"] = max_tokens
    return msgspec.structs.replace(params, **changes) if changes else params
