"""Masking of secrets in any text that leaves the process (logs, error messages, stored rows).

Two nets: every secret the process has handled is remembered and replaced wherever it appears,
and anything shaped like a provider key or a bearer token is masked even if it was never seen.

Must not know: where secrets come from, logging, the protocol.
"""

from __future__ import annotations

import re
import threading
from typing import Final

_MIN_REMEMBERED_LEN: Final = 8

# Prefixes of the keys the sidecar's providers issue, plus generic bearer/`key=` shapes.
_KEY_SHAPES: Final = re.compile(
    r"(?:"
    r"sk-(?:ant-|or-v1-|proj-)?[A-Za-z0-9_\-]{12,}"  # OpenAI, Anthropic, OpenRouter
    r"|xai-[A-Za-z0-9_\-]{12,}"  # xAI
    r"|AIza[0-9A-Za-z_\-]{20,}"  # Google API keys
    r"|gsk_[A-Za-z0-9]{12,}"  # Groq
    r"|(?:sk-|xai-|AIza)[A-Za-z0-9_\-]*\*{3,}[A-Za-z0-9_\-]*"  # a key an upstream half-masked itself
    r"|(?<=[Bb]earer )[A-Za-z0-9._\-]{12,}"
    r"|(?<=[?&]key=)[A-Za-z0-9._\-]{12,}"
    r")"
)

_lock = threading.Lock()
_remembered: set[str] = set()
_remembered_pattern: re.Pattern[str] | None = None


def mask(secret: str) -> str:
    """Show at most the first 3 and last 4 characters, and only when the key is long enough that
    what is shown is a small part of it."""
    if len(secret) >= 20:
        return f"{secret[:3]}…{secret[-4:]}"
    if len(secret) >= 12:
        return f"…{secret[-2:]}"
    return "…"


def remember(secret: str) -> None:
    """Register a secret so that `redact` masks it wherever it turns up, whatever its shape."""
    global _remembered_pattern
    if len(secret) < _MIN_REMEMBERED_LEN:
        return
    with _lock:
        if secret in _remembered:
            return
        _remembered.add(secret)
        # Longest first so that a secret containing another is masked whole.
        alternatives = sorted(_remembered, key=len, reverse=True)
        _remembered_pattern = re.compile("|".join(re.escape(s) for s in alternatives))


def redact(text: str) -> str:
    """Return `text` with every remembered secret and key-shaped token masked."""
    pattern = _remembered_pattern
    if pattern is not None:
        text = pattern.sub(lambda m: mask(m.group(0)), text)
    return _KEY_SHAPES.sub(lambda m: mask(m.group(0)), text)
