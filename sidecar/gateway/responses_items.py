"""The input items of a stored response (`GET /v1/responses/{id}/input_items`): the conversation
that went into it, as the sidecar kept it (its messages, those of the responses it continued
included), turned back into Responses API items, and one page of them.

An item's id is derived from the response's id and the item's place in the conversation, so it is
the same on every read and a page can start `after` it. What a provider needs to continue a turn
comes back as a reasoning item's `encrypted_content`, as it was given out.

Pure: no I/O.

Must not know: HTTP, how responses are stored, how a request is run.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

import msgspec

from sidecar.gateway.errors import InvalidRequest
from sidecar.gateway.openai_api import arguments_text
from sidecar.gateway.responses_api import encode_continuation
from sidecar.wire.chat import ToolCall

DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 100
_PREFIXES: Final = {
    "message": "msg_",
    "function_call": "fc_",
    "function_call_output": "fco_",
    "reasoning": "rs_",
}


def _input_content(content: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return [{"type": "input_text", "text": content or ""}]
    parts: list[dict[str, Any]] = []
    for part in content:
        if part.get("type") == "image":
            parts.append({"type": "input_image", "image_url": part.get("url"), "detail": "auto"})
        else:
            parts.append({"type": "input_text", "text": part.get("text") or ""})
    return parts


def _items_of(turn: dict[str, Any]) -> list[dict[str, Any]]:
    role = turn["role"]
    if role == "tool":
        output = turn.get("content")
        return [{"type": "function_call_output", "call_id": turn.get("tool_call_id"),
                 "output": output if isinstance(output, str) else "", "status": "completed"}]  # fmt: skip
    if role != "assistant":
        return [{"type": "message", "role": role, "status": "completed",
                 "content": _input_content(turn.get("content"))}]  # fmt: skip
    items: list[dict[str, Any]] = []
    if turn.get("continuation"):
        items.append({"type": "reasoning", "summary": [],
                      "encrypted_content": encode_continuation(turn["continuation"])})  # fmt: skip
    if turn.get("content"):
        text = {"type": "output_text", "text": turn["content"], "annotations": [], "logprobs": []}
        items.append({"type": "message", "role": "assistant", "status": "completed", "content": [text]})
    for raw in turn.get("tool_calls") or ():
        call = msgspec.convert(raw, ToolCall)
        items.append({"type": "function_call", "call_id": call.id, "name": call.name,
                      "arguments": arguments_text(call), "status": "completed"})  # fmt: skip
    return items


def input_items(response_id: str, conversation: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation's items, oldest first, each with its id."""
    items = [item for turn in conversation for item in _items_of(turn)]
    for place, item in enumerate(items):
        digest = hashlib.sha256(f"{response_id}\0{place}".encode()).hexdigest()[:40]
        item["id"] = _PREFIXES[item["type"]] + digest
    return items


def page(items: list[dict[str, Any]], query: dict[str, list[str]]) -> dict[str, Any]:
    """One page of `items` as OpenAI lists them: `limit` (1-100, 20 by default), `order` (`desc`,
    the newest first, by default; or `asc`), starting `after` an item's id."""
    limit_text = query.get("limit", [str(DEFAULT_LIMIT)])[-1]
    try:
        limit = int(limit_text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(
            f"`limit` must be an integer from 1 to {MAX_LIMIT}, not {limit_text!r}.", "limit"
        )
    order = query.get("order", ["desc"])[-1]
    if order not in ("asc", "desc"):
        raise InvalidRequest(f"`order` must be 'asc' or 'desc', not {order!r}.", "order")
    ordered = items if order == "asc" else items[::-1]
    start = 0
    after = query.get("after", [None])[-1]
    if after is not None:
        ids = [item["id"] for item in ordered]
        if after not in ids:
            raise InvalidRequest(f"No input item {after!r} in this response.", "after")
        start = ids.index(after) + 1
    data = ordered[start : start + limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": start + limit < len(ordered),
    }
