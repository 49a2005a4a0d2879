"""The Anthropic Messages API's requests (`POST /v1/messages`, API version 2023-06-01).

Pure: `build_body` turns contract params into a request body. Its answers are read by
`anthropic_decode`.

What the adapter owes Anthropic, and how it is done here:

* System messages become the top-level `system` list of text blocks; the turns must alternate
  user/assistant, so consecutive turns of one role are merged, and tool results (`role: tool`)
  become `tool_result` blocks of a user turn, placed before any other block of that turn (the API
  rejects a turn whose tool results do not come first).
* `max_tokens` is required upstream. When the host gives none, it is the model's maximum output
  from the catalog, or `DEFAULT_MAX_TOKENS` for a model the catalog does not know. Only a
  `max_tokens` the answer can reach within ten minutes may be asked without streaming
  (`fits_whole_call`).
* `reasoning` becomes `thinking: {"type": "enabled", "budget_tokens": N}` (see `_thinking`), left
  off where Anthropic would refuse it (a forced tool choice; an open tool loop whose thinking
  blocks were not sent back); with thinking on, `temperature` and a `top_p` below 0.95 are dropped.
* `response_format` `json_schema` becomes `output_config.format` (structured outputs); Claude has
  no schema-less JSON mode, so `json_object` is refused as an invalid request.
* Multi-turn continuity: an assistant turn's thinking blocks (with their signatures) come out of
  `anthropic_decode` as a `Continuation` `{"provider": "anthropic", "blocks": [...]}`; when the
  host sends it back on that assistant message, the blocks go first in that turn, unmodified.

Must not know: HTTP, keys, the protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sidecar.core import catalog
from sidecar.errors import SidecarError
from sidecar.providers.content import invalid_message, sniff_image_type, stop_list
from sidecar.wire.chat import (
    CompleteParams,
    ImagePart,
    JsonSchemaFormat,
    Message,
    Part,
    Reasoning,
    ResponseFormat,
    TextPart,
    ToolChoiceName,
)

API_VERSION: Final = "2023-06-01"
COUNTED: Final = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking"})
"""The fields of a Messages body that `count_tokens` takes."""
DEFAULT_MAX_TOKENS: Final = 4096
"""`max_tokens` for a model the catalog does not know, when the host gave none."""
WHOLE_CALL_DEFAULT_MAX_TOKENS: Final = 21_333
"""The most `max_tokens` a non-streamed call may ask for (`fits_whole_call`)."""
WHOLE_CALL_MAX_TOKENS: Final[Mapping[str, int]] = dict.fromkeys(
    (
        "claude-opus-4-0",
        "claude-opus-4-20250514",
        "claude-4-opus-20250514",
        "claude-opus-4-1",
        "claude-opus-4-1-20250805",
    ),
    8_192,
)
"""Models with a lower limit than `WHOLE_CALL_DEFAULT_MAX_TOKENS`, as Anthropic's SDKs list them."""
MIN_THINKING_BUDGET: Final = 1024
"""Anthropic rejects a smaller `budget_tokens`."""
CONTINUATION_PROVIDER: Final = "anthropic"

# Thinking budgets for the contract's effort levels (Anthropic takes a budget, not a level).
EFFORT_BUDGETS: Final[dict[str, int]] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 32768,
    "max": 65536,
}

_EPHEMERAL: Final = {"type": "ephemeral"}
_THINKING_TYPES: Final = frozenset({"thinking", "redacted_thinking"})


def _media_type(data: str) -> str:
    return sniff_image_type(data) or "image/png"


def _image_block(part: ImagePart) -> dict[str, Any]:
    if part.data:
        source = {
            "type": "base64",
            "media_type": part.media_type or _media_type(part.data),
            "data": part.data,
        }
    elif part.url and part.url.startswith("data:"):
        header, sep, payload = part.url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64":
            raise invalid_message("An image data URL must be base64 (`data:<media type>;base64,<data>`).")
        source = {"type": "base64", "media_type": media_type or _media_type(payload), "data": payload}
    elif part.url:
        source = {"type": "url", "url": part.url}
    else:
        raise invalid_message("An image part needs `url`, or `data` with `media_type`.")
    return {"type": "image", "source": source}


def _blocks(content: str | Sequence[Part] | None, *, images: bool = True) -> list[dict[str, Any]]:
    """Content as Anthropic blocks. Empty text is dropped: the API rejects empty text blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, TextPart):
            if not part.text:
                continue
            block: dict[str, Any] = {"type": "text", "text": part.text}
        elif images:
            block = _image_block(part)
        else:
            continue
        if part.cache:
            block["cache_control"] = dict(_EPHEMERAL)
        out.append(block)
    return out


def _mark_cache(blocks: list[dict[str, Any]]) -> None:
    """A message's `cache: true` is a breakpoint on its last block (thinking blocks cannot carry one)."""
    for block in reversed(blocks):
        if block.get("type") not in _THINKING_TYPES:
            block["cache_control"] = dict(_EPHEMERAL)
            return


def continuation_blocks(msg: Message) -> list[dict[str, Any]]:
    """The thinking blocks an assistant message carries back from an earlier Anthropic answer."""
    data = msg.continuation
    if not data or data.get("provider") != CONTINUATION_PROVIDER:
        return []  # another provider's state: meaningless here
    blocks = data.get("blocks")
    if not isinstance(blocks, list):
        return []
    return [dict(b) for b in blocks if isinstance(b, dict)]  # copies: the host's message stays as it was


def _tool_result(msg: Message) -> dict[str, Any]:
    if not msg.tool_call_id:
        raise invalid_message("A tool message needs `tool_call_id` (the id of the tool call it answers).")
    content: str | list[dict[str, Any]]
    if msg.content is None or isinstance(msg.content, str):
        content = msg.content or ""
    else:
        content = _blocks(msg.content)
    return {"type": "tool_result", "tool_use_id": msg.tool_call_id, "content": content}


def _assistant_blocks(msg: Message) -> list[dict[str, Any]]:
    # Thinking blocks first, unmodified: the API checks their signatures against the turn.
    blocks = [*continuation_blocks(msg), *_blocks(msg.content, images=False)]
    for call in msg.tool_calls or ():
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments})
    return blocks


@dataclass
class _Turn:
    role: str
    results: list[dict[str, Any]] = field(default_factory=list)  # tool_result blocks (user turns)
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def content(self) -> list[dict[str, Any]]:
        return [*self.results, *self.blocks]


def _system_and_turns(messages: Sequence[Message]) -> tuple[list[dict[str, Any]], list[_Turn]]:
    system: list[dict[str, Any]] = []
    turns: list[_Turn] = []
    for msg in messages:
        if msg.role == "system":
            blocks = _blocks(msg.content, images=False)
            if msg.cache:
                _mark_cache(blocks)
            system.extend(blocks)
            continue
        role = "assistant" if msg.role == "assistant" else "user"
        if not turns or turns[-1].role != role:
            turns.append(_Turn(role))
        turn = turns[-1]
        if msg.role == "tool":
            added = [_tool_result(msg)]
            turn.results.extend(added)
        else:
            added = _assistant_blocks(msg) if role == "assistant" else _blocks(msg.content)
            turn.blocks.extend(added)
        if msg.cache:
            _mark_cache(added)
    return system, turns


def _budget(reasoning: Reasoning | None) -> int | None:
    if reasoning is None:
        return None
    if reasoning.budget_tokens is not None:
        return reasoning.budget_tokens or None  # 0: do not think
    if reasoning.effort is None or reasoning.effort == "none":
        return None
    return EFFORT_BUDGETS.get(reasoning.effort, EFFORT_BUDGETS["medium"])


def _open_tool_loop_without_thinking(messages: Sequence[Message]) -> bool:
    """True when the last assistant turn called tools but carries no thinking blocks back.

    With thinking on, Anthropic requires that turn to start with its thinking block; a turn that
    lacks one (answered by another provider, or by a request without thinking) can only be
    continued with thinking off.
    """
    last = next((m for m in reversed(messages) if m.role == "assistant"), None)
    if last is None or not last.tool_calls:
        return False
    return not any(b.get("type") in _THINKING_TYPES for b in continuation_blocks(last))


def _forces_a_tool(params: CompleteParams) -> bool:
    # Anthropic refuses thinking with a forced tool choice; the host's choice of tool is the
    # firmer request, so thinking gives way (other providers allow both).
    return bool(params.tools) and (
        params.tool_choice == "required" or isinstance(params.tool_choice, ToolChoiceName)
    )


def _thinking(model: str, params: CompleteParams) -> tuple[int, int | None]:
    """`(max_tokens, thinking budget or None)` for the request."""
    info = catalog.lookup("anthropic", model)
    cap = info.max_output_tokens if info is not None else None
    max_tokens = params.max_tokens or cap or DEFAULT_MAX_TOKENS
    budget = _budget(params.reasoning)
    if budget is None or _open_tool_loop_without_thinking(params.messages) or _forces_a_tool(params):
        return max_tokens, None
    budget = max(MIN_THINKING_BUDGET, budget)
    if budget >= max_tokens:
        # Thinking counts inside max_tokens, and the budget must stay below it. Rather than starve
        # the answer, max_tokens is raised so that the host's max_tokens (or DEFAULT_MAX_TOKENS
        # when it gave none) is still left for the answer after the budget.
        room = params.max_tokens or DEFAULT_MAX_TOKENS
        max_tokens = budget + room
        if cap is not None and max_tokens > cap:
            # Never ask for more than the model can write: the budget gives way, leaving the
            # answer its room (at most half of the model's output).
            max_tokens = cap
            budget = max(MIN_THINKING_BUDGET, cap - min(room, cap // 2))
    if budget >= max_tokens:
        return max_tokens, None  # a model whose whole output is below the minimum budget
    return max_tokens, budget


def fits_whole_call(model: str, params: CompleteParams) -> bool:
    """Whether the answer fits the ten minutes a non-streamed Messages call is held open for:
    Anthropic's SDKs refuse a non-streamed call whose `max_tokens` could take longer (an hour per
    128,000 tokens), and for some models at a lower `max_tokens`. The `max_tokens` sent counts:
    when the host gives none it is the model's maximum output, which only a stream may take."""
    max_tokens, _ = _thinking(model, params)
    return max_tokens <= WHOLE_CALL_MAX_TOKENS.get(model, WHOLE_CALL_DEFAULT_MAX_TOKENS)


def build_body(model: str, params: CompleteParams, *, stream: bool) -> dict[str, Any]:
    system, turns = _system_and_turns(params.messages)
    max_tokens, budget = _thinking(model, params)
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": t.role, "content": t.content()} for t in turns],
    }
    if system:
        body["system"] = system
    if budget is not None:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    # Anthropic rejects temperature with thinking on, and a top_p below 0.95.
    if params.temperature is not None and budget is None:
        body["temperature"] = params.temperature
    if params.top_p is not None and (budget is None or params.top_p >= 0.95):
        body["top_p"] = params.top_p
    if params.stop is not None:
        body["stop_sequences"] = stop_list(params.stop)
    if params.tools:
        tools = []
        for tool in params.tools:
            entry: dict[str, Any] = {
                "name": tool.name,
                "description": tool.description,
                "input_schema": tool.parameters,
            }
            if tool.cache:
                entry["cache_control"] = dict(_EPHEMERAL)
            tools.append(entry)
        body["tools"] = tools
        choice = params.tool_choice
        if isinstance(choice, ToolChoiceName):
            body["tool_choice"] = {"type": "tool", "name": choice.name}
        elif choice is not None:
            body["tool_choice"] = {"type": {"auto": "auto", "required": "any", "none": "none"}[choice]}
    if params.response_format is not None:
        body["output_config"] = {"format": _output_format(params.response_format)}
    if stream:
        body["stream"] = True
    return body


def _output_format(fmt: ResponseFormat) -> dict[str, Any]:
    if not isinstance(fmt, JsonSchemaFormat):
        raise SidecarError(
            "invalid_request",
            "Claude has no JSON mode without a schema: ask for `json_schema` with a `schema`.",
            field="response_format",
        )
    return {"type": "json_schema", "schema": fmt.schema}
