"""A deterministic "model" shared by every provider fake.

What it is for: each provider fake translates its wire request into a provider-neutral
``Conversation``, asks ``plan()`` what the model "says", and renders the resulting ``Plan`` in its
own wire format. So the same conversation gives the same answer (and the same token counts) from
every provider, and tests of the sidecar's normalisation can compare providers directly.

Rules of ``plan(conversation)``:

1. If ``tools`` is non-empty and no turn is a tool result yet: call the first tool with
   arguments ``{"input": <last user text>}``; its id is ``"call_"`` + the first 12 hex digits of a
   sha256 over the tool name and that text. ``finish = "tool_calls"``, no text.
2. Else, if a tool result exists: answer ``"The tool said: <last tool result text>"``.
3. Else: answer ``"Echo: <last user text>"``.
4. The answer is split into pieces of 4 characters (the last may be shorter); a provider fake
   streams one piece per content delta. If ``max_tokens`` is set and smaller than the number of
   pieces, only the first ``max_tokens`` pieces are kept and ``finish = "length"``; otherwise
   ``finish = "stop"``. (Tool calls and thinking are never truncated.)
5. If ``want_reasoning``: ``thinking = "Thinking about: <last user text>"`` (for tool calls too).
6. If JSON is asked for (``json_schema``, or ``json_mode``) and there is no tool call, the answer
   (rule 2 or 3) is a compact JSON object instead: with a schema, each property the schema
   declares at its top level, in order: a ``string`` is the answer's text, an ``integer`` or
   ``number`` its word count, a ``boolean`` true, an ``array`` [] and an ``object`` {}; in JSON
   mode, ``{"answer": <the answer's text>}``. It is cut into pieces and by ``max_tokens`` as text is.
7. Token counts: ``input_tokens`` = whitespace-separated words across the system prompt, every
   turn's text and every tool result, plus 3 per message (the system prompt counts as one message
   when present). ``reasoning_tokens`` = words in ``thinking``. ``output_tokens`` = kept pieces
   + 5 if there is a tool call + ``reasoning_tokens``.

"Last user text" is the text of the last ``user`` turn ("" if there is none).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

__all__ = [
    "PIECE_CHARS",
    "TOOL_CALL_TOKENS",
    "Conversation",
    "Finish",
    "Plan",
    "Role",
    "ToolCall",
    "Turn",
    "arguments_json",
    "pieces",
    "plan",
    "stable_hex",
    "word_count",
]

Role = Literal["user", "assistant", "tool"]
Finish = Literal["stop", "length", "tool_calls"]

PIECE_CHARS = 4
TOOL_CALL_TOKENS = 5
TOKENS_PER_MESSAGE = 3


class ToolCall(NamedTuple):
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Turn:
    """One message. ``tool_result`` is set on ``tool`` turns (the result's text)."""

    role: Role
    text: str = ""
    tool_calls: Sequence[ToolCall] = ()
    tool_result: str | None = None
    tool_call_id: str | None = None


@dataclass(frozen=True)
class Conversation:
    """A provider-neutral view of a chat request."""

    system: str | None = None
    turns: Sequence[Turn] = ()
    tools: Sequence[str] = ()
    want_reasoning: bool = False
    max_tokens: int | None = None
    json_schema: Mapping[str, Any] | None = None
    json_mode: bool = False


@dataclass(frozen=True)
class Plan:
    """What the fake model answers; provider fakes render this in their wire format."""

    thinking: str | None
    text_pieces: list[str]
    tool_call: ToolCall | None
    finish: Finish
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    thinking_pieces: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.text_pieces)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def word_count(text: str | None) -> int:
    return len(text.split()) if text else 0


def pieces(text: str, size: int = PIECE_CHARS) -> list[str]:
    """``text`` cut into ``size``-character pieces (``[]`` for an empty string)."""
    return [text[i : i + size] for i in range(0, len(text), size)]


def stable_hex(*parts: str, length: int = 12) -> str:
    """A short deterministic hex digest of ``parts`` (for ids that must not change between runs)."""
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return digest[:length]


def _last_user_text(turns: Sequence[Turn]) -> str:
    return next((t.text for t in reversed(turns) if t.role == "user"), "")


def _last_tool_result(turns: Sequence[Turn]) -> str | None:
    return next((t.tool_result for t in reversed(turns) if t.tool_result is not None), None)


def _input_tokens(conv: Conversation) -> int:
    messages = len(conv.turns) + (1 if conv.system is not None else 0)
    words = word_count(conv.system) + sum(word_count(t.text) + word_count(t.tool_result) for t in conv.turns)
    return words + TOKENS_PER_MESSAGE * messages


_JSON_VALUES: dict[str, Any] = {"boolean": True, "array": [], "object": {}}


def _as_json(answer: str, schema: Mapping[str, Any] | None) -> str:
    """The answer as the JSON object rule 6 describes."""
    if schema is None:
        value: dict[str, Any] = {"answer": answer}
    else:
        value = {}
        for name, prop in (schema.get("properties") or {}).items():
            kind = prop.get("type") if isinstance(prop, dict) else None
            if kind == "string":
                value[name] = answer
            elif kind in ("integer", "number"):
                value[name] = word_count(answer)
            else:
                value[name] = _JSON_VALUES.get(str(kind))
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def plan(conv: Conversation) -> Plan:
    """Decide the fake model's answer to ``conv`` (rules in the module docstring)."""
    user_text = _last_user_text(conv.turns)
    tool_result = _last_tool_result(conv.turns)
    thinking = f"Thinking about: {user_text}" if conv.want_reasoning else None
    reasoning_tokens = word_count(thinking)

    tool_call: ToolCall | None = None
    text_pieces: list[str] = []
    finish: Finish = "stop"
    if conv.tools and tool_result is None:
        name = conv.tools[0]
        tool_call = ToolCall("call_" + stable_hex(name, user_text), name, {"input": user_text})
        finish = "tool_calls"
    else:
        answer = f"The tool said: {tool_result}" if tool_result is not None else f"Echo: {user_text}"
        if conv.json_schema is not None or conv.json_mode:
            answer = _as_json(answer, conv.json_schema)
        text_pieces = pieces(answer)
        if conv.max_tokens is not None and conv.max_tokens < len(text_pieces):
            text_pieces = text_pieces[: max(conv.max_tokens, 0)]
            finish = "length"

    output_tokens = len(text_pieces) + (TOOL_CALL_TOKENS if tool_call else 0) + reasoning_tokens
    return Plan(
        thinking=thinking,
        text_pieces=text_pieces,
        tool_call=tool_call,
        finish=finish,
        input_tokens=_input_tokens(conv),
        output_tokens=output_tokens,
        reasoning_tokens=reasoning_tokens,
        thinking_pieces=pieces(thinking) if thinking else [],
    )


def arguments_json(call: ToolCall) -> str:
    """The tool call's arguments as the compact JSON string OpenAI-style APIs send."""
    return json.dumps(call.arguments, separators=(",", ":"), ensure_ascii=False)
