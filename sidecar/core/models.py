"""Model strings: `<provider>:<model>` split at the first colon, or a bare name placed by its shape.

Must not know: which providers are configured beyond the names it is given, I/O.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

import msgspec

from sidecar.errors import SidecarError

_BARE_PREFIXES: Final = (
    (("gpt-", "o1", "o3", "o4", "chatgpt-"), "openai"),
    (("claude-",), "anthropic"),
    (("gemini-",), "gemini"),
    (("grok-",), "xai"),
)

HOW_TO_WRITE: Final = (
    "Write the model as '<provider>:<model>', for example 'openai:gpt-4o-mini', "
    "'anthropic:claude-sonnet-4-5', 'gemini:gemini-2.5-flash', 'xai:grok-4', "
    "'openrouter:anthropic/claude-sonnet-4.5' or 'ollama:llama3.2:3b'."
)


class ModelRef(msgspec.Struct, frozen=True):
    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}"


def bare_provider(name: str) -> str | None:
    """The provider a bare model name belongs to, per the contract's rules; None if it has none."""
    for prefixes, provider in _BARE_PREFIXES:
        if name.startswith(prefixes):
            return provider
    if "/" in name:
        return "openrouter"
    return None


def parse_model(text: str, providers: Collection[str]) -> ModelRef:
    """Split a model string; `providers` are the ids that exist (built-in and custom endpoints)."""
    text = text.strip()
    head, sep, rest = text.partition(":")
    if sep and head in providers:
        if not rest:
            raise SidecarError(
                "invalid_request", f"The model name after '{head}:' is empty. {HOW_TO_WRITE}", field="model"
            )
        return ModelRef(head, rest)
    provider = bare_provider(text)
    if provider is not None and provider in providers:
        return ModelRef(provider, text)
    if sep and "/" not in head and not head.startswith(tuple(p for ps, _ in _BARE_PREFIXES for p in ps)):
        # "llama3.2:3b" looks like an Ollama name; "foo:bar" names a provider that does not exist.
        hint = f" Did you mean 'ollama:{text}'?" if "ollama" in providers else ""
        raise SidecarError(
            "unsupported_provider",
            f"'{head}' is not a known provider (known: {', '.join(sorted(providers))}).{hint} {HOW_TO_WRITE}",
            field="model",
        )
    raise SidecarError(
        "invalid_request", f"Can't tell which provider serves '{text}'. {HOW_TO_WRITE}", field="model"
    )
