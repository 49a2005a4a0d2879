"""Masking of secrets in any text that leaves the process (logs, error messages, stored rows).

Two nets: every secret the process has handled recently is remembered and replaced wherever it appears,
and anything shaped like a provider key or a bearer token is masked even if it was never seen.

Must not know: where secrets come from, logging, the protocol.
"""

from __future__ import annotations

import _thread
import re
from collections import OrderedDict
from functools import cache
from typing import Final

_MIN_REMEMBERED_LEN: Final = 8

# Prefixes of the keys the sidecar's providers issue, plus generic bearer/`key=` shapes. Compiled on
# first use (`_key_shapes`): every start imports this module, few starts redact anything early.
_KEY_SHAPES: Final = (
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


@cache
def _key_shapes() -> re.Pattern[str]:
    return re.compile(_KEY_SHAPES)


# Every match of `_KEY_SHAPES` begins with one of these, or follows one (the lookbehinds): a text
# holding none cannot match, and a plain substring search is a small part of the regex's cost,
# which tries every alternative at every position (an access-log line: ~0.2M instructions).
_KEY_MARKERS: Final = ("sk-", "xai-", "AIza", "gsk_", "earer ", "key=")


# The secrets seen most recently, newest last. Bounded: a process that validates thousands of
# distinct keys keeps only the latest, while the keys in use stay fresh because every read of a key
# (keychain, environment, OAuth) remembers it again. Keys that must never be forgotten (the
# environment's, read once at start) are pinned.
MAX_REMEMBERED: Final = 512
_lock = _thread.allocate_lock()  # threading.Lock itself, without importing threading at every start
_recent: OrderedDict[str, None] = OrderedDict()
_pinned: set[str] = set()
# A snapshot for `redact`, rebuilt (O(n), no regex compile) only when the set changes, longest first so
# that a secret containing another is masked whole.
_snapshot: tuple[str, ...] = ()


def mask(secret: str) -> str:
    """Show at most the first 3 and last 4 characters, and only when the key is long enough that
    what is shown is a small part of it."""
    if len(secret) >= 20:
        return f"{secret[:3]}…{secret[-4:]}"
    if len(secret) >= 12:
        return f"…{secret[-2:]}"
    return "…"


def remember(secret: str, *, pin: bool = False) -> None:
    """Register a secret so that `redact` masks it wherever it turns up, whatever its shape.

    Only the `MAX_REMEMBERED` most recently remembered secrets are kept, plus the pinned ones;
    remembering a known secret again only marks it recent (no rebuild)."""
    global _snapshot
    if len(secret) < _MIN_REMEMBERED_LEN:
        return
    with _lock:
        if pin:
            if secret in _pinned:
                return
            _pinned.add(secret)
            _recent.pop(secret, None)
        elif secret in _pinned:
            return
        elif secret in _recent:
            _recent.move_to_end(secret)
            return
        else:
            _recent[secret] = None
            while len(_recent) > MAX_REMEMBERED:
                _recent.popitem(last=False)
        _snapshot = tuple(sorted({*_recent, *_pinned}, key=len, reverse=True))


def remembered_count() -> int:
    """How many secrets are held (for the resource-bound tests)."""
    return len(_snapshot)


def redact(text: str) -> str:
    """Return `text` with every remembered secret and key-shaped token masked.

    Each remembered secret is looked for with a substring search (C speed, no regex built from the
    secrets), so a call costs at most `MAX_REMEMBERED` scans of `text`, whatever was ever seen."""
    if len(text) >= _MIN_REMEMBERED_LEN:
        for secret in _snapshot:
            if secret in text:
                text = text.replace(secret, mask(secret))
    for marker in _KEY_MARKERS:
        if marker in text:
            break
    else:
        return text
    return _key_shapes().sub(lambda m: mask(m.group(0)), text)
