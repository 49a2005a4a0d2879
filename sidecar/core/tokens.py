"""An offline estimate of how many input tokens a request's prompt will count.

No tokenizer is bundled (none can be downloaded here, and each provider's differs), so this is
a documented heuristic, deterministic and fast enough to run on every `estimate_cost` and
budget check. See `estimate_input_tokens` for the rules and their expected error.

Must not know: I/O of any kind, wire types (messages and tools are read duck-typed, as mappings
or as objects with the same attribute names), providers (a caller that knows the provider may
pass its image cost).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Final

import msgspec

ESTIMATE_METHOD: Final = "heuristic-v1"
"""Names the rules below, for `estimate_cost`'s `estimate_method`; bump it when they change."""

CHARS_PER_TOKEN: Final = 4
"""ASCII characters per token (English prose and code)."""
NON_ASCII_CHARS_PER_TOKEN: Final = 2
"""Other non-CJK characters per token (accented Latin, Cyrillic, Greek, Arabic, emoji...)."""
MESSAGE_OVERHEAD: Final = 4
"""Per message: OpenAI's documented 3 framing tokens plus 1 for the role."""
NAME_OVERHEAD: Final = 1
"""Extra for a message that carries a `name` (OpenAI's `tokens_per_name`)."""
REPLY_PRIMING: Final = 3
"""Once per request: OpenAI's documented priming of the assistant's reply."""
TOOL_CALL_OVERHEAD: Final = 4
"""Per tool call an assistant message carries, on top of its id, name and arguments."""
TOOLS_OVERHEAD: Final = 12
"""Once, when any tools are declared: the preamble the provider wraps tool definitions in."""
TOOL_OVERHEAD: Final = 8
"""Per declared tool, on top of its name, description and JSON-Schema parameters."""
IMAGE_TOKENS: Final = 1_000
"""Per image. Images cost what their size makes them cost, and the size is not known here: a
1024x1024 image is 765 tokens on OpenAI (high detail: 85 + 4 tiles x 170; low detail is 85),
1,032 on Gemini (4 tiles x 258) and about 1,400 on Anthropic (width x height / 750). 1,000 sits
in that range; pass `image_tokens` when the provider and image size are known."""

# Han (incl. extension A and compatibility), kana, Hangul syllables and jamo, CJK punctuation and
# full-width forms, and the supplementary ideographic planes: about one token per character.
# Compiled on first use (about 2 ms), not at import.
_CJK_PATTERN: Final = (
    "[\u1100-\u11ff\u3000-\u303f\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\U00020000-\U0003ffff]+"
)


@cache
def _cjk_runs() -> re.Pattern[str]:
    return re.compile(_CJK_PATTERN)


def estimate_input_tokens(
    messages: Iterable[object],
    tools: Iterable[object] | None = None,
    *,
    image_tokens: int = IMAGE_TOKENS,
) -> int:
    """Estimate the input tokens of a request from its messages and declared tools.

    `messages` are the contract's messages, as mappings or objects with the same attributes:
    `role`, `content` (a string, or a list of `{"type": "text", "text"}` and `{"type": "image",
    ...}` parts), and optionally `name`, `tool_calls` (`id`, `name`, `arguments`) and
    `tool_call_id`. `tools` are `{name, description, parameters}`.

    Rules:
    - text: ceil((ASCII characters + 2 x other non-CJK characters) / 4), plus 1 per CJK
      character (Han, kana, Hangul): about 4 characters per token for English and code, 2 for
      other scripts, 1 per CJK character;
    - each message adds `MESSAGE_OVERHEAD` (4), plus 1 with a `name`; the request adds
      `REPLY_PRIMING` (3), as in OpenAI's documented counting;
    - each image adds `image_tokens` (default 1,000), whatever its source; its URL or base64
      data is not counted as text;
    - a tool call counts its id, name and JSON arguments as text, plus 4; a declared tool its
      name, description and JSON-Schema parameters (serialised as compact JSON) as text, plus 8,
      and declaring any tools adds 12;
    - any other part or value is counted as its compact JSON text.

    The result is deterministic, never negative, and never decreases when text, parts,
    messages or tools are added.

    Expected error against the providers' own counts: English prose within about +-15% (o200k
    and cl100k average a little over 4 characters per token, so this leans high); source code
    and JSON up to about 25% low (they run nearer 3 characters per token); CJK text up to about
    30% high on OpenAI's o200k, closer on other tokenizers; Claude's and Gemini's tokenizers
    count the same text differently from OpenAI's by 10-30%. Images are the largest error:
    a fixed cost against real costs from 85 to a few thousand tokens. Tool preambles differ
    most by provider: Anthropic adds a tool-use system prompt of a few hundred tokens that is
    not counted here.
    """
    total = REPLY_PRIMING
    for message in messages:
        total += _message_tokens(message, image_tokens)
    if tools is not None:
        declared = False
        for tool in tools:
            declared = True
            total += (
                TOOL_OVERHEAD
                + text_tokens(_str(_field(tool, "name")))
                + text_tokens(_str(_field(tool, "description")))
                + _json_tokens(_field(tool, "parameters"))
            )
        if declared:
            total += TOOLS_OVERHEAD
    return total


def text_tokens(text: str) -> int:
    """The token estimate of one piece of text (the rule `estimate_input_tokens` uses)."""
    if not text:
        return 0
    length = len(text)
    if text.isascii():
        return -(-length // CHARS_PER_TOKEN)
    ascii_chars = len(text.encode("ascii", "ignore"))
    cjk_chars = sum(len(run) for run in _cjk_runs().findall(text))
    other_chars = length - ascii_chars - cjk_chars
    # ascii / 4 + other / 2, rounded up once, in integers
    weighted = ascii_chars * NON_ASCII_CHARS_PER_TOKEN + other_chars * CHARS_PER_TOKEN
    return cjk_chars + -(-weighted // (CHARS_PER_TOKEN * NON_ASCII_CHARS_PER_TOKEN))


def _message_tokens(message: object, image_tokens: int) -> int:
    total = MESSAGE_OVERHEAD
    name = _field(message, "name")
    if isinstance(name, str) and name:
        total += NAME_OVERHEAD + text_tokens(name)
    total += _content_tokens(_field(message, "content"), image_tokens)
    tool_calls = _field(message, "tool_calls")
    if isinstance(tool_calls, list | tuple):
        for call in tool_calls:
            total += TOOL_CALL_OVERHEAD + text_tokens(_str(_field(call, "id")))
            total += text_tokens(_str(_field(call, "name")))
            arguments = _field(call, "arguments")
            total += text_tokens(arguments) if isinstance(arguments, str) else _json_tokens(arguments)
    tool_call_id = _field(message, "tool_call_id")
    if isinstance(tool_call_id, str):
        total += text_tokens(tool_call_id)
    return total


def _content_tokens(content: object, image_tokens: int) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return text_tokens(content)
    if isinstance(content, list | tuple):
        return sum(_part_tokens(part, image_tokens) for part in content)
    return _json_tokens(content)


def _part_tokens(part: object, image_tokens: int) -> int:
    if isinstance(part, str):
        return text_tokens(part)
    kind = _field(part, "type")
    text = _field(part, "text")
    if kind == "text" or (kind is None and isinstance(text, str)):
        return text_tokens(_str(text))
    if kind in ("image", "image_url") or (
        kind is None and (_field(part, "url") is not None or _field(part, "data") is not None)
    ):
        return max(image_tokens, 0)
    return _json_tokens(part)


def _field(obj: object, name: str) -> object:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _json_tokens(value: object) -> int:
    if value is None:
        return 0
    try:
        encoded = msgspec.json.encode(value, enc_hook=str).decode()
    except (msgspec.EncodeError, TypeError, ValueError, OverflowError):
        encoded = str(value)
    return text_tokens(encoded)
