"""A fake Anthropic Messages API (``POST /v1/messages``, ``POST /v1/messages/count_tokens``,
``GET /v1/models``) on 127.0.0.1.

What it is for: integration tests point the sidecar's Anthropic provider at ``FakeAnthropic.url``.
Answers come from the shared deterministic model in ``behaviour.py``, rendered the way the real API
renders them (the recordings ``tests/fixtures/anthropic-*``, described in ``tests/fixtures/SOURCES.md``):

* Streams are SSE with an ``event:`` line naming each event, data JSON padded with random spaces
  before its final ``}``, ``ping`` events (``data: {"type": "ping"}``, with spaces, as recorded),
  a thinking block (``thinking_delta`` pieces, an empty ``thinking_delta``, then ``signature_delta``)
  when thinking was requested, a text block, a ``tool_use`` block whose input streams as
  ``input_json_delta`` fragments (the first one ``""``), ``message_delta`` with cumulative usage, and
  ``message_stop``. Every event ends with a blank line.
* The non-streamed answer is a Message object with the same content blocks.
* ``count_tokens`` takes only the fields that shape the prompt (any other is refused, as the API
  refuses ``max_tokens`` there) and answers the input tokens the same Messages request reports.
* Headers: ``request-id``, ``anthropic-organization-id``, ``anthropic-ratelimit-*`` (reset values
  are RFC 3339 timestamps), ``retry-after`` and ``x-should-retry`` on 429/5xx.
* Requests are checked the way the API checks them (auth, ``anthropic-version``, required fields,
  role alternation, ``tool_use``/``tool_result`` pairing, empty text blocks, thinking budget and
  its incompatibilities, at most 4 cache breakpoints, and: with thinking on, a final assistant turn
  that called tools must start with its thinking block, whose signature must be one this fake
  issued for that text; ``output_config.format`` must be a ``json_schema`` with a ``schema``).
* Sampling: Opus 4.1 and the 4.5 models and later refuse ``temperature`` and ``top_p`` together.
* Stop sequences: text that reaches one of ``stop_sequences`` ends before it (no tool call
  after it), with ``stop_reason: "stop_sequence"`` and ``stop_sequence`` naming it.
* Prompt caching: when a request carries ``cache_control`` breakpoints, the prompt up to the last
  one is "written" the first time it is seen and "read" after that (``cache_creation_input_tokens``
  / ``cache_read_input_tokens``); ``input_tokens`` is what remains, so the three add up to the
  behaviour's input count.

Scripted replies to ``enqueue``: ``error_reply`` (401/400/429/529/500...), ``midstream_error_reply``
(an ``event: error`` after some text), ``fixture_reply`` (the recordings). To break a generated
stream, set ``fake.edit_stream`` (e.g. ``lambda ev: [*ev[:3], Stall()]``).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import random
import string
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from tests.fakes.behaviour import Conversation, Plan, ToolCall, Turn, pieces, plan, stable_hex
from tests.fakes.http import (
    FakeUpstream,
    Part,
    RecordedRequest,
    Reply,
    json_reply,
    paced_whole,
    split_sse_events,
    sse_reply,
)
from tests.fakes.request_limit import RequestLimit

__all__ = [
    "API_VERSION",
    "DEFAULT_MODELS",
    "FIXTURES_DIR",
    "PING",
    "VALID_KEY",
    "FakeAnthropic",
    "conversation_from_messages",
    "error_body",
    "error_reply",
    "event",
    "fixture_reply",
    "fixture_sse",
    "invalid_request",
    "midstream_error_reply",
    "padded",
    "sign_thinking",
]

Json = dict[str, Any]

API_VERSION = "2023-06-01"
VALID_KEY = "sk-ant-api03-test-valid-key-0000"
FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures"
STREAM_CONTENT_TYPE = "text/event-stream; charset=utf-8"
PING = b'event: ping\ndata: {"type": "ping"}\n\n'
ALNUM = string.ascii_letters + string.digits
MIN_BUDGET = 1024
MAX_CACHE_BREAKPOINTS = 4

# id, display name, created, max input tokens, max output tokens
DEFAULT_MODELS: tuple[tuple[str, str, str, int, int], ...] = (
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z", 200_000, 64_000),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-15T00:00:00Z", 200_000, 64_000),
    ("claude-opus-4-1-20250805", "Claude Opus 4.1", "2025-08-05T00:00:00Z", 200_000, 32_000),
    ("claude-sonnet-4-20250514", "Claude Sonnet 4", "2025-05-22T00:00:00Z", 200_000, 64_000),
)

_STOP_REASON = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}

# Default error type and message per HTTP status (docs.claude.com/en/api/errors).
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "Not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}


# -------------------- small helpers


def _alnum(seed: str, length: int) -> str:
    digest = hashlib.sha256(seed.encode()).digest() * (length // 32 + 1)
    return "".join(ALNUM[b % len(ALNUM)] for b in digest[:length])


def _request_id(seed: str) -> str:
    return "req_011C" + _alnum("req" + seed, 20)


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def padded(obj: Json, rng: random.Random | None = None) -> str:
    """Compact JSON with random spaces before the final ``}`` (Anthropic's side-channel padding)."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    spaces = (rng or random).randint(0, 16)
    return text[:-1] + " " * spaces + "}"


def event(name: str, obj: Json, rng: random.Random | None = None) -> bytes:
    """One framed Anthropic SSE event: ``event:`` line, padded ``data:`` line, blank line."""
    return f"event: {name}\ndata: {padded(obj, rng)}\n\n".encode()


def sign_thinking(thinking: str) -> str:
    """The signature this fake gives a thinking text (and checks when a block comes back)."""
    digest = hashlib.sha256(b"fake-anthropic-thinking\x00" + thinking.encode()).digest()
    return base64.b64encode(b"\x12\x30" + digest + digest[:16]).decode()


def error_body(error_type: str, message: str, request_id: str | None = None) -> Json:
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id or _request_id(error_type + message),
    }


def error_reply(
    status: int,
    *,
    error_type: str | None = None,
    message: str | None = None,
    retry_after: float | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """An Anthropic error answer: ``{"type":"error","error":{type,message},"request_id"}``.

    429 carries ``retry-after`` (default 7 s) and exhausted rate-limit headers; 429 and 5xx carry
    ``x-should-retry: true`` as the real API does.
    """
    default_type, default_message = _ERRORS.get(status, ("api_error", "Internal server error"))
    body = error_body(error_type or default_type, message or default_message)
    all_headers = {"request-id": body["request_id"], "x-should-retry": "false"}
    if status == 429 or status >= 500:
        all_headers["x-should-retry"] = "true"
    if status == 429:
        retry_after = 7 if retry_after is None else retry_after
        reset = _rfc3339(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=retry_after))
        all_headers.update(
            {
                "anthropic-ratelimit-requests-limit": "50",
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": reset,
            }
        )
    if retry_after is not None:
        all_headers["retry-after"] = f"{retry_after:g}"
    all_headers.update(headers or {})
    return json_reply(status, body, all_headers)


def midstream_error_reply(
    text_pieces: Sequence[str] = ("Partial", " answer"),
    *,
    model: str = DEFAULT_MODELS[0][0],
    error_type: str = "overloaded_error",
    message: str = "Overloaded",
    input_tokens: int = 12,
) -> Reply:
    """A 200 stream that sends some text, then ``event: error`` (overloaded by default) and ends.

    The error event is written the way Anthropic's streaming docs show it (with spaces).
    """
    rng = random.Random(1)
    seed = f"midstream-{model}-{'|'.join(text_pieces)}"
    events = [
        event("message_start", _message_start(model, "msg_01" + _alnum(seed, 22), input_tokens, 0, 0), rng),
        event("content_block_start", _block_start(0, {"type": "text", "text": ""}), rng),
        PING,
    ]
    events += [event("content_block_delta", _text_delta(0, piece), rng) for piece in text_pieces]
    failure = {"type": "error", "error": {"type": error_type, "message": message}}
    events.append(b"event: error\ndata: " + json.dumps(failure).encode() + b"\n\n")
    return sse_reply(events, headers={"request-id": _request_id(seed), "cache-control": "no-cache"})


def _fixture_path(name: str | Path) -> Path:
    candidate = Path(name)
    return candidate if candidate.is_absolute() or candidate.exists() else FIXTURES_DIR / candidate


def fixture_sse(name: str | Path) -> bytes:
    """A recorded stream as the bytes a faithful server sends.

    ``*.chunks.jsonl`` (data payloads only) is framed with ``event: <type>`` lines; ``*.sse`` is
    sent as recorded, with the blank line the SDK fixtures lack appended to the last event.
    """
    path = _fixture_path(name)
    raw = path.read_bytes()
    if path.name.endswith(".chunks.jsonl"):
        out = []
        for line in raw.splitlines():
            if line.strip():
                kind = json.loads(line)["type"]
                out.append(b"event: " + kind.encode() + b"\ndata: " + line + b"\n\n")
        return b"".join(out)
    if not raw.endswith((b"\n\n", b"\r\n\r\n")):
        raw += b"\n" if raw.endswith(b"\n") else b"\n\n"
    return raw


def fixture_reply(name: str | Path, *, delay_s: float = 0.0) -> Reply:
    """Replay a recording (a name under ``tests/fixtures`` or a path); one HTTP chunk per event.

    ``*.json`` bodies are sent as stored, with the status of a sibling ``*.exchange.json``.
    """
    path = _fixture_path(name)
    stem = path.name.split(".response.")[0]
    exchange_path = path.with_name(f"{stem}.exchange.json")
    exchange = json.loads(exchange_path.read_text()) if exchange_path.exists() else {}
    status = int(exchange.get("status", {}).get("code", 200))
    headers = {"request-id": _request_id(path.name)}
    if path.suffix == ".json":
        return Reply(
            status=status,
            headers={"content-type": "application/json", **headers},
            body=path.read_bytes(),
            delay_s=delay_s,
        )
    events = split_sse_events(fixture_sse(path))
    return sse_reply(events, status=status, headers={**headers, "cache-control": "no-cache"}, delay_s=delay_s)


# -------------------- request mapping


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def _system_text(system: Any) -> str | None:
    if system is None:
        return None
    return _text_of(system)


def _wants_thinking(body: Json) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def conversation_from_messages(body: Json) -> Conversation:
    """Map a Messages request body onto the neutral ``Conversation``.

    Each ``tool_result`` block becomes a tool turn and the text blocks of a user message one user
    turn after them (so a merged Anthropic turn counts like the separate messages it came from);
    an assistant turn keeps its text and ``tool_use`` blocks (thinking blocks are not text).
    """
    turns: list[Turn] = []
    for message in body.get("messages") or []:
        role, content = message.get("role"), message.get("content")
        blocks = content if isinstance(content, list) else []
        if role == "assistant":
            calls = tuple(
                ToolCall(str(b.get("id")), str(b.get("name")), dict(b.get("input") or {}))
                for b in blocks
                if b.get("type") == "tool_use"
            )
            turns.append(Turn("assistant", _text_of(content), tool_calls=calls))
            continue
        results = [b for b in blocks if b.get("type") == "tool_result"]
        for block in results:
            turns.append(
                Turn(
                    "tool", tool_result=_text_of(block.get("content")), tool_call_id=block.get("tool_use_id")
                )
            )
        text = _text_of(content)
        if text or not results:
            turns.append(Turn("user", text))
    tools = [str(t["name"]) for t in body.get("tools") or [] if isinstance(t, dict) and "input_schema" in t]
    max_tokens = body.get("max_tokens")
    fmt = (body.get("output_config") or {}).get("format") or {}
    return Conversation(
        system=_system_text(body.get("system")),
        turns=turns,
        tools=tools,
        want_reasoning=_wants_thinking(body),
        max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        json_schema=fmt.get("schema"),
    )


def _cache_breakpoints(body: Json) -> tuple[int, int | None]:
    """(number of cache_control breakpoints, index of the last message holding one or None)."""
    count = 0
    last: int | None = None
    system = body.get("system")
    for block in system if isinstance(system, list) else []:
        count += "cache_control" in block
    for tool in body.get("tools") or []:
        count += "cache_control" in tool
    for i, message in enumerate(body.get("messages") or []):
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and "cache_control" in block:
                count += 1
                last = i
    return count, last


# -------------------- request checks (what the real API rejects with 400)

_ALLOWED_MEDIA = ("image/jpeg", "image/png", "image/gif", "image/webp")


def _check_block(i: int, j: int, block: Any, role: str) -> str | None:
    where = f"messages.{i}.content.{j}"
    if not isinstance(block, dict):
        return f"{where}: Input should be a valid dictionary"
    kind = block.get("type")
    if kind == "text":
        if not isinstance(block.get("text"), str) or not block["text"]:
            return "messages: text content blocks must be non-empty"
    elif kind == "image":
        if role != "user":
            return f"{where}.type: Image blocks are only allowed in user messages"
        source = block.get("source") or {}
        if source.get("type") == "base64":
            if source.get("media_type") not in _ALLOWED_MEDIA:
                return f"{where}.source.base64.media_type: Input should be {', '.join(_ALLOWED_MEDIA)}"
            if not source.get("data"):
                return f"{where}.source.base64.data: Field required"
        elif source.get("type") == "url":
            if not str(source.get("url", "")).startswith(("http://", "https://")):
                return f"{where}.source.url.url: Input should be a valid URL"
        else:
            return (
                f"{where}.source: Input tag '{source.get('type')}' found using 'type' does not match any of "
                "the expected tags: 'base64', 'url'"
            )
    elif kind == "thinking":
        if role != "assistant":
            return f"{where}.type: thinking blocks are only allowed in assistant messages"
        if block.get("signature") != sign_thinking(str(block.get("thinking", ""))):
            return f"{where}: Invalid `signature` in `thinking` block"
    elif kind == "redacted_thinking":
        if role != "assistant" or not block.get("data"):
            return f"{where}.data: Field required"
    elif kind == "tool_use":
        if role != "assistant":
            return f"{where}.type: tool_use blocks are only allowed in assistant messages"
        if not isinstance(block.get("input"), dict):
            return f"{where}.tool_use.input: Input should be a valid dictionary"
    elif kind == "tool_result":
        if role != "user":
            return f"{where}.type: tool_result blocks are only allowed in user messages"
    else:
        return f"{where}.type: Input tag '{kind}' found using 'type' does not match any of the expected tags"
    return None


def _check_messages(messages: list[Any], thinking: bool) -> str | None:
    previous_role = None
    open_calls: list[str] = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if role == previous_role:
            return (
                f'messages: roles must alternate between "user" and "assistant", but found multiple "{role}" '
                "roles in a row"
            )
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list):
            return f"messages.{i}.content: Input should be a valid list"
        if not blocks and not (role == "assistant" and i == len(messages) - 1):
            return (
                f"messages.{i}: all messages must have non-empty content except for the optional final "
                "assistant message"
            )
        for j, block in enumerate(blocks):
            problem = _check_block(i, j, block, role)
            if problem:
                return problem
        if role == "user":
            results = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
            kinds = [b.get("type") for b in blocks]
            if results and kinds[: len(results)] != ["tool_result"] * len(results):
                return f"messages.{i}: `tool_result` blocks must come first in the content"
            unexpected = [r for r in results if r not in open_calls]
            if unexpected:
                return (
                    f"messages.{i}.content.0: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{unexpected[0]}. Each `tool_result` block must have a corresponding `tool_use` block "
                    "in the previous message."
                )
            missing = [c for c in open_calls if c not in results]
            if missing:
                return (
                    f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks immediately "
                    f"after: {missing[0]}. Each `tool_use` block must have a corresponding `tool_result` "
                    "block in the next message."
                )
            open_calls = []
        else:
            open_calls = [str(b.get("id")) for b in blocks if b.get("type") == "tool_use"]
        previous_role = role
    return _check_thinking_turn(messages) if thinking else None


def _check_thinking_turn(messages: list[Any]) -> str | None:
    """With thinking on, the assistant turn of an open tool loop must start with its thinking."""
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if message.get("role") != "assistant":
            continue
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        if not any(b.get("type") == "tool_use" for b in blocks):
            return None
        first = blocks[0].get("type") if blocks else None
        if first in ("thinking", "redacted_thinking"):
            return None
        return (
            f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{first}`. "
            "When `thinking` is enabled, a final `assistant` message must start with a thinking block "
            "(preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include "
            "thinking blocks from previous turns. To avoid this requirement, disable `thinking`. Please "
            "consult our documentation at "
            "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
        )
    return None


# Claude Opus 4.1 and the 4.5 models and later take `temperature` or `top_p`, not both (as users
# have reported it: otoroshi-llm-extension#140, litellm#15097); older models take both.
ONE_SAMPLING_KNOB: Final = ("claude-opus-4-1", "claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-5",
                            "claude-sonnet-4-6", "claude-opus-4-6")  # fmt: skip
BOTH_KNOBS_REFUSED: Final = (
    "`temperature` and `top_p` cannot both be specified for this model. Please use only one."
)


_COUNTED = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers"})
"""The fields `POST /v1/messages/count_tokens` takes."""
MAX_COUNT_TOKENS = 1_000_000


def invalid_request(body: Any) -> str | None:
    """Why the real API would answer this body with 400 (None if it would not)."""
    if not isinstance(body, dict):
        return "There was an issue with your request. Please check the body is valid JSON."
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return f"{name}: Field required"
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or max_tokens < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    thinking = body.get("thinking")
    enabled = isinstance(thinking, dict) and thinking.get("type") == "enabled"
    if isinstance(thinking, dict) and enabled:
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < MIN_BUDGET:
            return f"thinking.enabled.budget_tokens: Input should be greater than or equal to {MIN_BUDGET}"
        if budget >= max_tokens:
            return (
                "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our "
                "documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
                "#max-tokens-and-context-window-size"
            )
        if "temperature" in body and body["temperature"] != 1:
            return (
                "`temperature` may only be set to 1 when thinking is enabled. Please consult our "
                "documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
                "#feature-compatibility"
            )
        if "top_p" in body and body["top_p"] < 0.95:
            return "`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled."
        choice = body.get("tool_choice") or {}
        if choice.get("type") in ("any", "tool"):
            return "Thinking may not be enabled when tool_choice forces tool use."
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        return "temperature: Input should be less than or equal to 1"
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        for k, block in enumerate(system):
            if block.get("type") != "text" or not block.get("text"):
                return f"system.{k}: text content blocks must be non-empty"
    for k, tool in enumerate(body.get("tools") or []):
        if "input_schema" in tool and not tool.get("name"):
            return f"tools.{k}.custom.name: Field required"
    count, _ = _cache_breakpoints(body)
    if count > MAX_CACHE_BREAKPOINTS:
        return (
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. Found {count}."
        )
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        return "stop_sequences: Input should be a valid list"
    fmt = (body.get("output_config") or {}).get("format")
    if fmt is not None:
        if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
            return "output_config.format.type: Input should be 'json_schema'"
        if not isinstance(fmt.get("schema"), dict):
            return "output_config.format.schema: Field required"
    return _check_messages(messages, enabled)


# -------------------- rendering


def _message_start(model: str, message_id: str, input_tokens: int, cache_write: int, cache_read: int) -> Json:
    return {
        "type": "message_start",
        "message": {
            "model": model,
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens,
                "cache_creation_input_tokens": cache_write,
                "cache_read_input_tokens": cache_read,
                "cache_creation": {"ephemeral_5m_input_tokens": cache_write, "ephemeral_1h_input_tokens": 0},
                "output_tokens": 1,
                "service_tier": "standard",
            },
        },
    }


def _block_start(index: int, block: Json) -> Json:
    return {"type": "content_block_start", "index": index, "content_block": block}


def _text_delta(index: int, text: str) -> Json:
    return {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}


def _delta(index: int, delta: Json) -> Json:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def _json_fragments(arguments: Json) -> list[str]:
    # The API's input JSON uses ", " and ": " and arrives in fragments of a few characters.
    text = json.dumps(arguments, ensure_ascii=False)
    return [text[i : i + 7] for i in range(0, len(text), 7)]


def _stopped(answer: Plan, stop_sequences: Sequence[str]) -> tuple[Plan, str | None]:
    """The answer ended before the first stop sequence its text reaches, and which one that was."""
    text = answer.text
    found = [(i, s) for s in stop_sequences if s and (i := text.find(s)) >= 0]
    if not found:
        return answer, None
    at, matched = min(found, key=lambda f: f[0])
    kept = pieces(text[:at])
    output = len(kept) + answer.reasoning_tokens  # as `behaviour.plan` counts, with no tool call
    cut = dataclasses.replace(answer, text_pieces=kept, tool_call=None, finish="stop", output_tokens=output)
    return cut, matched


class _Render:
    def __init__(
        self,
        model: str,
        answer: Plan,
        seed: str,
        *,
        cache_write: int,
        cache_read: int,
        thinking_tokens: bool,
        ping_every: int,
        stop_sequences: Sequence[str] = (),
    ) -> None:
        self.model = model
        self.plan, self.stop_sequence = _stopped(answer, stop_sequences)
        self.message_id = "msg_01" + _alnum(seed, 22)
        self.cache_write = cache_write
        self.cache_read = cache_read
        self.input_tokens = max(0, answer.input_tokens - cache_write - cache_read)
        self.thinking_tokens = thinking_tokens
        self.ping_every = ping_every
        self.rng = random.Random(seed)
        call = answer.tool_call
        self.tool_id = "toolu_01" + _alnum(call.id, 22) if call else None

    def _stop_reason(self) -> str:
        return "stop_sequence" if self.stop_sequence is not None else _STOP_REASON[self.plan.finish]

    def _usage(self, *, final: bool) -> Json:
        usage: Json = {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_write,
            "cache_read_input_tokens": self.cache_read,
        }
        if not final:
            usage["cache_creation"] = {
                "ephemeral_5m_input_tokens": self.cache_write,
                "ephemeral_1h_input_tokens": 0,
            }
        usage["output_tokens"] = self.plan.output_tokens
        if self.thinking_tokens and self.plan.thinking:
            usage["output_tokens_details"] = {"thinking_tokens": self.plan.reasoning_tokens}
        if not final:
            usage["service_tier"] = "standard"
        return usage

    def content(self) -> list[Json]:
        p = self.plan
        blocks: list[Json] = []
        if p.thinking:
            blocks.append(
                {"type": "thinking", "thinking": p.thinking, "signature": sign_thinking(p.thinking)}
            )
        if p.text_pieces or not p.tool_call:
            blocks.append({"type": "text", "text": p.text})
        if p.tool_call:
            blocks.append(
                {
                    "type": "tool_use",
                    "id": self.tool_id,
                    "name": p.tool_call.name,
                    "input": p.tool_call.arguments,
                }
            )
        return blocks

    def message(self) -> Json:
        return {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": self.content(),
            "stop_reason": self._stop_reason(),
            "stop_sequence": self.stop_sequence,
            "usage": self._usage(final=False),
        }

    def events(self) -> list[bytes]:
        p, rng = self.plan, self.rng
        out = [
            event(
                "message_start",
                _message_start(
                    self.model, self.message_id, self.input_tokens, self.cache_write, self.cache_read
                ),
                rng,
            )
        ]
        body: list[bytes] = []
        for index, block in enumerate(self.content()):
            kind = block["type"]
            if kind == "thinking":
                body.append(
                    event(
                        "content_block_start",
                        _block_start(index, {"type": "thinking", "thinking": "", "signature": ""}),
                        rng,
                    )
                )
                body += [
                    event(
                        "content_block_delta", _delta(index, {"type": "thinking_delta", "thinking": t}), rng
                    )
                    for t in p.thinking_pieces
                ]
                body.append(
                    event(
                        "content_block_delta", _delta(index, {"type": "thinking_delta", "thinking": ""}), rng
                    )
                )
                body.append(
                    event(
                        "content_block_delta",
                        _delta(index, {"type": "signature_delta", "signature": block["signature"]}),
                        rng,
                    )
                )
            elif kind == "text":
                body.append(
                    event("content_block_start", _block_start(index, {"type": "text", "text": ""}), rng)
                )
                body += [
                    event("content_block_delta", _text_delta(index, piece), rng) for piece in p.text_pieces
                ]
            else:
                start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                body.append(event("content_block_start", _block_start(index, start), rng))
                fragments = ["", *_json_fragments(block["input"])]
                body += [
                    event(
                        "content_block_delta",
                        _delta(index, {"type": "input_json_delta", "partial_json": f}),
                        rng,
                    )
                    for f in fragments
                ]
            body.append(event("content_block_stop", {"type": "content_block_stop", "index": index}, rng))
        # A ping right after the first block starts (as recorded), then every `ping_every` events.
        if body:
            body.insert(1, PING)
        if self.ping_every > 0:
            paced: list[bytes] = []
            for n, item in enumerate(body, 1):
                paced.append(item)
                if n % self.ping_every == 0:
                    paced.append(PING)
            body = paced
        out += body
        final = {
            "type": "message_delta",
            "delta": {"stop_reason": self._stop_reason(), "stop_sequence": self.stop_sequence},
            "usage": self._usage(final=True),
        }
        out.append(event("message_delta", final, rng))
        out.append(event("message_stop", {"type": "message_stop"}, rng))
        return out


# -------------------- the fake


class FakeAnthropic(FakeUpstream):
    """The Anthropic API on 127.0.0.1 (see the module docstring).

    ``valid_keys`` are the accepted ``x-api-key`` values (default ``VALID_KEY``). ``models`` are
    listed by ``GET /v1/models``; with ``strict_models`` a message request for another model is a
    404 ``not_found_error``. ``thinking_tokens`` adds ``output_tokens_details.thinking_tokens`` to
    usage when the answer thought. ``ping_every`` adds a ping after every N content events.
    """

    server_header = "cloudflare"

    def __init__(
        self,
        *,
        valid_keys: Iterable[str] | None = None,
        models: Sequence[tuple[str, str, str, int, int]] = DEFAULT_MODELS,
        strict_models: bool = False,
        behaviour: Callable[[Conversation], Plan] = plan,
        chunk_delay_s: float = 0.0,
        thinking_tokens: bool = True,
        ping_every: int = 0,
        requests_per_minute: int = 4000,
    ) -> None:
        super().__init__()
        self.valid_keys: set[str] = set(valid_keys if valid_keys is not None else {VALID_KEY})
        self.models = list(models)
        self.strict_models = strict_models
        self.behaviour = behaviour
        self.chunk_delay_s = chunk_delay_s
        self.thinking_tokens = thinking_tokens
        self.ping_every = ping_every
        self.edit_stream: Callable[[list[bytes]], list[Part]] | None = None
        self.organization_id = "5b0c1f1e-7a7e-4c4a-9d4e-" + stable_hex("org", length=12)
        self._cached_prefixes: set[str] = set()
        self._seq = 0
        self._lock = threading.Lock()
        self._request_limit = RequestLimit(requests_per_minute)
        self.route("POST", "/v1/messages", self._messages)
        self.route("POST", "/v1/messages/count_tokens", self._count_tokens)
        self.route("GET", "/v1/models", self._list_models)
        self.route("GET", "/v1/models/{model}", self._get_model)

    @property
    def valid_key(self) -> str:
        return min(self.valid_keys)

    def not_found(self, req: RecordedRequest) -> Reply:
        return error_reply(404, message="Not Found")

    # -- helpers

    def _next_seed(self, req: RecordedRequest) -> str:
        with self._lock:
            self._seq += 1
            return f"anthropic-{self._seq}-{hashlib.sha256(req.body).hexdigest()}"

    def _auth_failure(self, req: RecordedRequest) -> Reply | None:
        key = req.headers.get("x-api-key")
        if key is None:
            return error_reply(401, message="x-api-key header is required")
        if key not in self.valid_keys:
            return error_reply(401)
        return None

    def _headers(self, seed: str, input_tokens: int, *, streaming: bool) -> dict[str, str]:
        now = dt.datetime.now(dt.UTC)
        remaining_requests, full_in_s = self._request_limit.take()
        headers = {
            "content-type": STREAM_CONTENT_TYPE if streaming else "application/json",
            "request-id": _request_id(seed),
            "anthropic-organization-id": self.organization_id,
            "anthropic-ratelimit-requests-limit": str(self._request_limit.per_minute),
            "anthropic-ratelimit-requests-remaining": str(remaining_requests),
            "anthropic-ratelimit-requests-reset": _rfc3339(now + dt.timedelta(seconds=full_in_s)),
            "anthropic-ratelimit-tokens-limit": "2000000",
            "anthropic-ratelimit-tokens-remaining": str(
                max(0, 2_000_000 - 1000 * (input_tokens // 1000 + 1))
            ),
            "anthropic-ratelimit-tokens-reset": _rfc3339(now + dt.timedelta(seconds=1)),
            "anthropic-ratelimit-input-tokens-limit": "1600000",
            "anthropic-ratelimit-input-tokens-remaining": "1600000",
            "anthropic-ratelimit-input-tokens-reset": _rfc3339(now + dt.timedelta(seconds=1)),
            "anthropic-ratelimit-output-tokens-limit": "400000",
            "anthropic-ratelimit-output-tokens-remaining": "400000",
            "anthropic-ratelimit-output-tokens-reset": _rfc3339(now + dt.timedelta(seconds=2)),
        }
        if streaming:
            headers["cache-control"] = "no-cache"
        return headers

    def _cache_usage(self, body: Json) -> tuple[int, int]:
        """(cache_write, cache_read) tokens for the prompt prefix up to the last breakpoint."""
        count, last = _cache_breakpoints(body)
        if count == 0:
            return 0, 0
        messages = (body.get("messages") or [])[: (last + 1) if last is not None else 0]
        prefix = {"system": body.get("system"), "tools": body.get("tools"), "messages": messages}
        tokens = (
            plan(conversation_from_messages(prefix)).input_tokens if (messages or prefix["system"]) else 0
        )
        if tokens == 0:
            return 0, 0
        key = hashlib.sha256(json.dumps([body.get("model"), prefix], sort_keys=True).encode()).hexdigest()
        with self._lock:
            seen = key in self._cached_prefixes
            self._cached_prefixes.add(key)
        return (0, tokens) if seen else (tokens, 0)

    # -- routes

    def _messages(self, req: RecordedRequest) -> Reply:
        failure = self._auth_failure(req)
        if failure is not None:
            return failure
        if "anthropic-version" not in req.headers:
            return error_reply(400, message="anthropic-version: header is required")
        try:
            body = req.json()
        except ValueError:
            body = None
        problem = invalid_request(body)
        if problem is not None:
            return error_reply(400, message=problem)
        model = str(body["model"])
        if self.strict_models and model not in {m[0] for m in self.models}:
            return error_reply(404, message=f"model: {model}")
        if "temperature" in body and "top_p" in body and model.startswith(ONE_SAMPLING_KNOB):
            return error_reply(400, message=BOTH_KNOBS_REFUSED)
        seed = self._next_seed(req)
        answer = self.behaviour(conversation_from_messages(body))
        cache_write, cache_read = self._cache_usage(body)
        render = _Render(
            model,
            answer,
            seed,
            cache_write=cache_write,
            cache_read=cache_read,
            thinking_tokens=self.thinking_tokens,
            ping_every=self.ping_every,
            stop_sequences=body.get("stop_sequences") or (),
        )
        streaming = body.get("stream") is True
        headers = self._headers(seed, answer.input_tokens, streaming=streaming)
        if not streaming:
            return paced_whole(json_reply(200, render.message(), headers), render.events, self.chunk_delay_s)
        events = render.events()
        parts: list[Part] = self.edit_stream(events) if self.edit_stream else list(events)
        return sse_reply(parts, headers=headers, content_type=STREAM_CONTENT_TYPE, delay_s=self.chunk_delay_s)

    def _count_tokens(self, req: RecordedRequest) -> Reply:
        """What a Messages request of the same body would report as its input tokens (cache
        reads and writes included); only the fields that shape the prompt are taken."""
        failure = self._auth_failure(req)
        if failure is not None:
            return failure
        try:
            body = req.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            extra = sorted(set(body) - _COUNTED)
            if extra:
                return error_reply(400, message=f"{extra[0]}: Extra inputs are not permitted")
            # The Messages checks, with the max_tokens a count does not take.
            problem = invalid_request({**body, "max_tokens": MAX_COUNT_TOKENS})
        else:
            problem = invalid_request(body)
        if problem is not None:
            return error_reply(400, message=problem)
        answer = self.behaviour(conversation_from_messages(body))
        return json_reply(200, {"input_tokens": answer.input_tokens})

    def _model_info(self, entry: tuple[str, str, str, int, int]) -> Json:
        model_id, name, created, max_input, max_output = entry
        return {
            "type": "model",
            "id": model_id,
            "display_name": name,
            "created_at": created,
            "max_input_tokens": max_input,
            "max_tokens": max_output,
        }

    def _list_models(self, req: RecordedRequest) -> Reply:
        failure = self._auth_failure(req)
        if failure is not None:
            return failure
        try:
            limit = int(req.query.get("limit", "20"))
        except ValueError:
            return error_reply(400, message="limit: Input should be a valid integer")
        if not 1 <= limit <= 1000:
            return error_reply(400, message="limit: Input should be between 1 and 1000")
        ids = [m[0] for m in self.models]
        start = ids.index(req.query["after_id"]) + 1 if req.query.get("after_id") in ids else 0
        page = self.models[start : start + limit]
        body = {
            "data": [self._model_info(m) for m in page],
            "has_more": start + limit < len(self.models),
            "first_id": page[0][0] if page else None,
            "last_id": page[-1][0] if page else None,
        }
        return json_reply(200, body, {"request-id": _request_id(self._next_seed(req))})

    def _get_model(self, req: RecordedRequest) -> Reply:
        failure = self._auth_failure(req)
        if failure is not None:
            return failure
        for entry in self.models:
            if entry[0] == req.path_params["model"]:
                return json_reply(200, self._model_info(entry))
        return error_reply(404, message=f"model: {req.path_params['model']}")
