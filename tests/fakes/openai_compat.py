"""Fake OpenAI-compatible upstreams: OpenAI, xAI and OpenRouter Chat Completions.

What it is for: integration tests run ``FakeOpenAICompat(flavor)`` as a real HTTP server and point
the sidecar (or the official ``openai`` SDK) at ``fake.api_base``. Answers come from the shared
deterministic model in ``behaviour.py``; the wire format follows the recordings in
``tests/fixtures/`` (provenance in ``tests/fixtures/SOURCES.md``) and the providers' API references:

* ``openai`` (prefix ``/v1``): chunks carry ``service_tier``, ``system_fingerprint``, ``logprobs``,
  ``finish_reason: null`` until the finish chunk, an ``obfuscation`` string (unless
  ``stream_options.include_obfuscation`` is false) and ``usage: null`` when
  ``stream_options.include_usage`` is true (then a final ``choices: []`` usage chunk follows).
  The first delta is ``{"role":"assistant","content":"","refusal":null}``; a tool call streams as
  a first fragment with id/type/name and ``arguments: ""`` followed by argument fragments.
  Reasoning text is never returned, only ``completion_tokens_details.reasoning_tokens``.
* ``xai`` (prefix ``/v1``): no ``finish_reason`` key on intermediate chunks, reasoning as
  ``delta.reasoning_content``, the whole tool call in one delta, usage with ``text_tokens``,
  ``num_sources_used``, ``cost_in_usd_ticks``; ``completion_tokens`` excludes reasoning tokens and
  ``total_tokens`` adds them (as recorded). Errors are flat ``{"code": str, "error": str}``, an
  invalid key is HTTP 400. Non-stream shape from vercel/ai
  ``packages/xai/src/__fixtures__/xai-tool-call.json``.
* ``openrouter`` (prefix ``/api/v1``): ``: OPENROUTER PROCESSING`` comments before the first
  chunk, ``provider`` and ``native_finish_reason`` fields, reasoning as ``reasoning`` +
  ``reasoning_details``, usage (with ``cost``) always sent, errors ``{"error":{"code": int, ...}}``.

Routes: ``POST {prefix}/chat/completions``, ``GET {prefix}/models`` (OpenAI list shape; OpenRouter's
own shape with string pricing, public as on the real service), ``GET /v1/models/{model}``
(openai/xai), ``GET /v1/api-key`` (xai), ``GET /api/v1/key`` (openrouter) and ``POST
/api/v1/auth/keys`` (OpenRouter OAuth PKCE exchange; see ``register_oauth_code``).

Scripted failures to ``enqueue``: ``error_reply``, ``midstream_error_reply``, ``fixture_reply``.
To break a generated stream, set ``fake.edit_stream`` (e.g. ``lambda ev: [*ev[:3], Stall()]``).

Shapes marked "assumed" below were not seen in recordings or docs: they are plausible guesses
kept consistent with the provider's known error style.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import string
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, cast

from tests.fakes import embeddings
from tests.fakes.behaviour import (
    Conversation,
    Finish,
    Plan,
    ToolCall,
    Turn,
    arguments_json,
    pieces,
    plan,
    stable_hex,
)
from tests.fakes.http import (
    FakeUpstream,
    Handler,
    Part,
    RecordedRequest,
    Reply,
    json_reply,
    paced_whole,
    split_sse_events,
    sse_comment,
    sse_event,
    sse_reply,
)
from tests.fakes.request_limit import RequestLimit, go_duration

__all__ = [
    "FIXTURES_DIR",
    "OPENAI_STREAM_REFUSED",
    "ErrorKind",
    "FakeOpenAICompat",
    "Flavor",
    "conversation_from_chat",
    "error_body",
    "error_reply",
    "fixture_reply",
    "midstream_error_reply",
    "openrouter_model",
    "pkce_challenge",
]

Flavor = Literal["openai", "xai", "openrouter"]
ErrorKind = Literal[
    "bad_request",
    "auth",
    "missing_key",
    "quota",
    "forbidden",
    "not_found",
    "rate_limit",
    "server",
    "overloaded",
]
Json = dict[str, Any]

FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures"
DONE = b"data: [DONE]\n\n"
OPENROUTER_COMMENT = "OPENROUTER PROCESSING"
FINGERPRINT = "fp_fake0a1b2c3"
ALNUM = string.ascii_letters + string.digits


@dataclass(frozen=True)
class _Profile:
    prefix: str
    default_keys: frozenset[str]
    default_models: tuple[str, ...]
    stream_content_type: str
    owned_by: str


PROFILES: dict[Flavor, _Profile] = {
    "openai": _Profile(
        "/v1",
        frozenset({"sk-test-valid"}),
        ("gpt-4o-mini", "gpt-4.1-nano", "o4-mini"),
        "text/event-stream; charset=utf-8",
        "openai",
    ),
    "xai": _Profile(
        "/v1",
        frozenset({"xai-test-valid"}),
        ("grok-3-mini", "grok-4"),
        "text/event-stream; charset=utf-8",
        "xai",
    ),
    # The recorded OpenRouter stream had `content-type: text/event-stream` (no charset).
    "openrouter": _Profile(
        "/api/v1",
        frozenset({"sk-or-v1-test-valid"}),
        ("openai/gpt-4o-mini", "minimax/minimax-m2:free", "anthropic/claude-sonnet-4"),
        "text/event-stream",
        "openrouter",
    ),
}


# -------------------- small helpers


def _alnum(seed: str, length: int) -> str:
    digest = hashlib.sha256(seed.encode()).digest() * (length // 32 + 1)
    return "".join(ALNUM[b % len(ALNUM)] for b in digest[:length])


def _uuid_like(seed: str) -> str:
    h = stable_hex(seed, length=32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _mask_key(key: str) -> str:
    return f"{key[:6]}{'*' * 8}{key[-4:]}" if len(key) > 10 else "*" * len(key)


def pkce_challenge(code_verifier: str) -> str:
    """S256 PKCE challenge: ``base64url(sha256(code_verifier))`` without padding."""
    digest = hashlib.sha256(code_verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def openrouter_model(
    model_id: str, name: str, prompt_price: str, completion_price: str, context_length: int = 128_000
) -> Json:
    """One ``GET /api/v1/models`` entry, as OpenRouter lists it; prices are USD-per-token strings."""
    return {
        "id": model_id,
        "canonical_slug": model_id,
        "name": name,
        "created": 1_692_901_234,
        "description": f"{name} (fake).",
        "context_length": context_length,
        "architecture": {
            "modality": "text->text",
            "input_modalities": ["text"],
            "output_modalities": ["text"],
            "tokenizer": "Other",
            "instruct_type": None,
        },
        "pricing": {"prompt": prompt_price, "completion": completion_price, "request": "0", "image": "0"},
        "top_provider": {
            "context_length": context_length,
            "max_completion_tokens": 16_384,
            "is_moderated": False,
        },
        "per_request_limits": None,
        "supported_parameters": [
            "max_tokens",
            "temperature",
            "tools",
            "tool_choice",
            "reasoning",
            "stream_options",
        ],
        "default_parameters": None,
        "knowledge_cutoff": None,
        "expiration_date": None,
        "supported_voices": None,
        "links": {"details": f"/api/v1/models/{model_id}/endpoints"},
    }


DEFAULT_OPENROUTER_MODELS: tuple[Json, ...] = (
    openrouter_model("openai/gpt-4o-mini", "OpenAI: GPT-4o-mini", "0.00000015", "0.0000006"),
    openrouter_model("minimax/minimax-m2:free", "MiniMax: MiniMax M2 (free)", "0", "0", 204_800),
    openrouter_model(
        "anthropic/claude-sonnet-4", "Anthropic: Claude Sonnet 4", "0.000003", "0.000015", 200_000
    ),
)


# -------------------- errors

_DEFAULT_KIND: dict[int, ErrorKind] = {
    400: "bad_request",
    401: "auth",
    402: "quota",
    403: "forbidden",
    404: "not_found",
    429: "rate_limit",
    500: "server",
}


def _kind_for(status: int) -> ErrorKind:
    return _DEFAULT_KIND.get(status, "overloaded" if status >= 500 else "bad_request")


_OPENAI_MISSING_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if "
    "you're accessing the API from your browser and are prompted for a username and password. You can "
    "obtain an API key from https://platform.openai.com/account/api-keys."
)
_OPENAI_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more information on "
    "this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors."
)
# OpenAI's answer when an organization that has not been verified streams a model that needs it
# (o3, gpt-5...), as users have reported it (charmbracelet/crush#422, pal-mcp-server#134); the same
# request without streaming is answered. OpenRouter passes it on inside its own envelope.
OPENAI_STREAM_REFUSED: Final[Json] = {
    "error": {
        "message": "Your organization must be verified to stream this model. Please go to: "
        "https://platform.openai.com/settings/organization/general and click on Verify Organization. "
        "If you just verified, it can take up to 15 minutes for access to propagate.",
        "type": "invalid_request_error",
        "param": "stream",
        "code": "unsupported_value",
    }
}
# OpenAI's reasoning models take only their default sampling and no stop sequences: a
# `temperature` other than 1 is refused as an unsupported value, a `top_p` or a `stop` as an
# unsupported parameter, each with its `param` (as users have reported them: langchaingo#1355,
# LunaTranslator#1842, smolagents#1671). Which models do changes
# with each release; these do here.
FIXED_SAMPLING: Final = frozenset({"o1", "o3", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano"})


# xAI's grok-4 models refuse stop sequences, naming the parameter only in the message (as users
# have reported it: litellm#12635); grok-3 takes them.
XAI_STOP_REFUSED: Final[Json] = {
    "code": "Client specified an invalid argument",
    "error": "Argument not supported on this model: stop",
}


def sampling_refused(body: Json) -> Json | None:
    """OpenAI's 400 for a reasoning model's request with a sampling parameter, or None."""
    temperature = body.get("temperature")
    if temperature is not None and temperature != 1:
        message = (
            f"Unsupported value: 'temperature' does not support {temperature:g} with this model. "
            "Only the default (1) value is supported."
        )
        return {"error": {"message": message, "type": "invalid_request_error", "param": "temperature",
                          "code": "unsupported_value"}}  # fmt: skip
    for param in ("top_p", "stop"):
        if body.get(param) is not None:
            message = f"Unsupported parameter: '{param}' is not supported with this model."
            return {"error": {"message": message, "type": "invalid_request_error", "param": param,
                              "code": "unsupported_parameter"}}  # fmt: skip
    return None


_OPENROUTER_RAW_429 = (
    "google/gemini-2.0-flash-exp:free is temporarily rate-limited upstream. Please retry shortly, or add "
    "your own key to accumulate your rate limits: https://openrouter.ai/settings/integrations"
)


def _openai_error(kind: ErrorKind, message: str | None, key: str | None) -> Json:
    # (message, type, code); param is always null here.
    table: dict[ErrorKind, tuple[str, str, str | None]] = {
        "bad_request": ("Invalid request.", "invalid_request_error", None),
        "auth": (
            f"Incorrect API key provided: {_mask_key(key or 'sk-unknown-key')}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        ),
        "missing_key": (_OPENAI_MISSING_KEY, "invalid_request_error", None),
        "quota": (_OPENAI_QUOTA, "insufficient_quota", "insufficient_quota"),
        "forbidden": (
            "Country, region, or territory not supported",
            "request_forbidden",
            "unsupported_country_region_territory",
        ),
        "not_found": (
            "The model does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        ),
        "rate_limit": ("Rate limit reached for requests", "requests", "rate_limit_exceeded"),
        "server": (
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        ),
        "overloaded": ("The engine is currently overloaded, please try again later.", "server_error", None),
    }
    default_message, err_type, code = table[kind]
    return {"error": {"message": message or default_message, "type": err_type, "param": None, "code": code}}


def _xai_error(kind: ErrorKind, message: str | None) -> Json:
    # Flat {"code","error"}. Only the invalid-key body is documented; the other codes are assumed.
    table: dict[ErrorKind, tuple[str, str]] = {
        "bad_request": ("invalid-argument", "Invalid request."),
        "auth": (
            "invalid-argument",
            "Incorrect API key provided. You can obtain an API key from https://console.x.ai.",
        ),
        "missing_key": (
            "invalid-argument",
            "No API key provided. You can obtain an API key from https://console.x.ai.",
        ),
        "quota": (
            "permission-denied",
            "Your team has either used all available credits or reached its monthly spending limit.",
        ),
        "forbidden": (
            "permission-denied",
            "The caller does not have permission to execute the specified operation.",
        ),
        "not_found": (
            "not-found",
            "The requested model does not exist or your team does not have access to it.",
        ),
        "rate_limit": ("resource-exhausted", "Too many requests. Please slow down."),
        "server": ("internal", "Internal server error."),
        "overloaded": ("unavailable", "Service temporarily unavailable. Please try again later."),
    }
    code, default_message = table[kind]
    return {"code": code, "error": message or default_message}


def _openrouter_error(status: int, kind: ErrorKind, message: str | None) -> Json:
    if kind == "rate_limit" and message is None:  # the recorded 429 body
        return {
            "error": {
                "code": status,
                "message": "Provider returned error",
                "metadata": {"provider_name": "Google", "raw": _OPENROUTER_RAW_429},
            },
            "user_id": "user_fake",
        }
    table: dict[ErrorKind, str] = {
        "bad_request": "Invalid request.",
        "auth": "User not found.",
        "missing_key": "No auth credentials found",
        "quota": "Insufficient credits. Add more using https://openrouter.ai/settings/credits",
        "forbidden": "Your input was flagged by moderation.",
        "not_found": "Not Found",
        "rate_limit": "Rate limit exceeded",
        "server": "Internal Server Error",
        "overloaded": "No allowed providers are available for the selected model."
        if status == 503
        else "Provider returned error",
    }
    return {"error": {"code": status, "message": message or table[kind]}}


def error_body(
    status: int,
    flavor: Flavor = "openai",
    kind: ErrorKind | None = None,
    *,
    message: str | None = None,
    key: str | None = None,
) -> Json:
    """The JSON error body ``flavor`` sends with ``status`` (``kind`` defaults from the status)."""
    kind = kind or _kind_for(status)
    if flavor == "openai":
        return _openai_error(kind, message, key)
    if flavor == "xai":
        return _xai_error(kind, message)
    return _openrouter_error(status, kind, message)


def _retry_headers(
    flavor: Flavor, status: int, kind: ErrorKind, retry_after_s: float | None
) -> dict[str, str]:
    if retry_after_s is None:
        realistic = (flavor == "openai" and kind == "rate_limit") or (
            flavor == "openrouter" and status in (429, 503)
        )
        if not realistic:
            return {}
        retry_after_s = 1.0
    headers = {"retry-after": str(max(1, round(retry_after_s)))}
    if flavor == "openai":
        headers["retry-after-ms"] = str(int(retry_after_s * 1000))
    return headers


def error_reply(
    status: int,
    flavor: Flavor = "openai",
    kind: ErrorKind | None = None,
    *,
    message: str | None = None,
    key: str | None = None,
    retry_after_s: float | None = None,
) -> Reply:
    """A complete error response as ``flavor`` sends it (body, request id, retry headers).

    OpenAI 429 ``rate_limit`` and OpenRouter 429/503 get ``retry-after`` (OpenAI also
    ``retry-after-ms`` and exhausted ``x-ratelimit-*``) unless ``retry_after_s`` says otherwise.
    Note the realistic invalid-key statuses: OpenAI and OpenRouter 401, xAI 400.
    """
    kind = kind or _kind_for(status)
    headers = _retry_headers(flavor, status, kind, retry_after_s)
    if flavor == "openai":
        headers["x-request-id"] = "req_" + stable_hex(
            "error", str(status), kind, str(time.time_ns()), length=32
        )
        if kind == "rate_limit":
            headers.update({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"})
    elif flavor == "openrouter":
        headers["access-control-allow-origin"] = "*"
    return json_reply(status, error_body(status, flavor, kind, message=message, key=key), headers)


# -------------------- request mapping


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "input_text")
        )
    return ""


def _parse_arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw) if isinstance(raw, str) and raw else {}
    except json.JSONDecodeError:
        return {"_raw": raw}
    return parsed if isinstance(parsed, dict) else {"_value": parsed}


def _tool_calls(message: Json) -> tuple[ToolCall, ...]:
    calls = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        calls.append(
            ToolCall(
                str(call.get("id", "")),
                str(function.get("name", "")),
                _parse_arguments(function.get("arguments")),
            )
        )
    return tuple(calls)


def _wants_reasoning(body: Json, flavor: Flavor) -> bool:
    reasoning = body.get("reasoning")
    if flavor == "openrouter" and isinstance(reasoning, dict):
        excluded = reasoning.get("exclude") or reasoning.get("enabled") is False
        return not excluded and reasoning.get("effort") != "none"
    effort = body.get("reasoning_effort")
    return effort is not None and effort != "none"


def conversation_from_chat(body: Json, flavor: Flavor = "openai") -> Conversation:
    """Map a Chat Completions request body onto the neutral ``Conversation``.

    ``system``/``developer`` messages become the system prompt (joined by newlines); ``tool`` and
    legacy ``function`` messages become tool results; ``max_completion_tokens`` wins over
    ``max_tokens``; reasoning is wanted for ``reasoning_effort`` other than ``"none"`` or (OpenRouter)
    a ``reasoning`` object that is not ``exclude``d/disabled.
    """
    system: list[str] = []
    turns: list[Turn] = []
    for message in body.get("messages") or []:
        role = message.get("role")
        text = _content_text(message.get("content"))
        if role in ("system", "developer"):
            system.append(text)
        elif role == "user":
            turns.append(Turn("user", text))
        elif role == "assistant":
            turns.append(Turn("assistant", text, tool_calls=_tool_calls(message)))
        elif role in ("tool", "function"):
            turns.append(Turn("tool", tool_result=text, tool_call_id=message.get("tool_call_id")))
    tools = [
        str(tool["function"]["name"])
        for tool in body.get("tools") or []
        if tool.get("type") == "function" and isinstance(tool.get("function"), dict)
    ]
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    fmt = body.get("response_format") or {}
    return Conversation(
        system="\n".join(system) if system else None,
        turns=turns,
        tools=tools,
        want_reasoning=_wants_reasoning(body, flavor),
        max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        json_schema=(fmt.get("json_schema") or {}).get("schema")
        if fmt.get("type") == "json_schema"
        else None,
        json_mode=fmt.get("type") == "json_object",
    )


def conversation_from_responses(body: Json) -> Conversation:
    """Map a Responses API body (`input` items, `instructions`, `tools`) onto the neutral
    ``Conversation``, as ``conversation_from_chat`` maps the same conversation sent as chat: a
    `function_call` item belongs to the assistant turn before it (or opens one)."""
    system = [str(body["instructions"])] if body.get("instructions") else []
    turns: list[Turn] = []
    items = body.get("input")
    for item in [{"role": "user", "content": items}] if isinstance(items, str) else items or []:
        kind = item.get("type", "message")
        if kind == "function_call":
            call = ToolCall(
                str(item.get("call_id")), str(item.get("name")), _parse_arguments(item.get("arguments"))
            )
            if turns and turns[-1].role == "assistant":
                last = turns[-1]
                turns[-1] = Turn("assistant", last.text, tool_calls=(*last.tool_calls, call))
            else:
                turns.append(Turn("assistant", tool_calls=(call,)))
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else _content_text(output)
            turns.append(Turn("tool", tool_result=text, tool_call_id=item.get("call_id")))
        elif kind == "message":
            role, text = item.get("role"), _content_text(item.get("content"))
            if role in ("system", "developer"):
                system.append(text)
            elif role in ("user", "assistant"):
                turns.append(Turn(role, text))
    tools = [str(t["name"]) for t in body.get("tools") or [] if t.get("type") == "function"]
    return Conversation(system="\n".join(system) if system else None, turns=turns, tools=tools)


_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


_SCHEMA_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _response_format_problem(fmt: Any, messages: list[Any], flavor: Flavor) -> str | None:
    """Why `response_format` is refused, in the API's words (None if fine or absent). Only OpenAI
    documents that JSON mode needs the word in the messages."""
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        return (
            f"Invalid value: '{kind}'. Supported values are: 'text', 'json_object', and 'json_schema'. "
            "(response_format.type)"
        )
    if kind == "json_object" and flavor == "openai" and "json" not in json.dumps(messages).lower():
        return (
            "'messages' must contain the word 'json' in some form, to use 'response_format' of type "
            "'json_object'."
        )
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            return "Missing required parameter: 'response_format.json_schema.name'."
        if not _SCHEMA_NAME.match(spec["name"]):
            return "Invalid 'response_format.json_schema.name': string does not match pattern."
        if not isinstance(spec.get("schema"), dict):
            return "Invalid type for 'response_format.json_schema.schema': expected an object."
    return None


def _invalid_request(body: Any, flavor: Flavor = "openai") -> str | None:
    """The reason a chat body is rejected with 400, like the real API would (None if fine)."""
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request."
    if not body.get("model"):
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "Invalid 'messages': empty array. Expected an array with minimum length 1."
    fmt_problem = _response_format_problem(body.get("response_format"), messages, flavor)
    if fmt_problem is not None:
        return fmt_problem
    open_calls: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in _ROLES:
            return f"Invalid value: '{role}'. Supported values are: {', '.join(_ROLES)} (messages[{i}].role)."
        if role == "assistant":
            open_calls = {str(c.get("id")) for c in message.get("tool_calls") or []}
        elif role == "tool" and message.get("tool_call_id") not in open_calls:
            return (
                "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                "message with 'tool_calls'."
            )
    return None


# -------------------- rendering


@dataclass(frozen=True)
class _Render:
    """Renders a ``Plan`` as a chat completion (non-stream) or chunk list (stream).

    The OpenAI rendering; ``_XaiRender`` and ``_OpenRouterRender`` override what their provider
    does differently.
    """

    model: str
    plan: Plan
    completion_id: str
    created: int
    include_usage: bool = False
    obfuscate: bool = True
    provider_name: str = "OpenAI"
    prices: tuple[float, float] = (0.0, 0.0)

    def usage(self) -> Json:
        p = self.plan
        return {
            "prompt_tokens": p.input_tokens,
            "completion_tokens": p.output_tokens,
            "total_tokens": p.input_tokens + p.output_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": _openai_completion_details(p.reasoning_tokens),
        }

    def completion(self) -> Json:
        p, call = self.plan, self.plan.tool_call
        message: Json = {"role": "assistant", "content": None if call else p.text, "refusal": None}
        message["annotations"] = []
        if call:
            message["tool_calls"] = [_full_call(call)]
        choice: Json = {"index": 0, "message": message, "logprobs": None, "finish_reason": p.finish}
        return self._envelope("chat.completion", [choice], usage=self.usage())

    def chunks(self) -> list[Json]:
        """Every data chunk of the stream, in order (without framing or ``[DONE]``)."""
        chunks = [*self.content_chunks(), self.finish_chunk()]
        if self.include_usage:
            chunks.append(self._chunk(None, usage=self.usage()))
        return chunks

    def content_chunks(self) -> list[Json]:
        return [self._chunk(delta) for delta in self._deltas()]

    def finish_chunk(self) -> Json:
        return self._chunk({}, finish=self.plan.finish)

    def _deltas(self) -> list[Json]:
        call = self.plan.tool_call
        if call is None:
            first: Json = {"role": "assistant", "content": "", "refusal": None}
            return [first, *({"content": piece} for piece in self.plan.text_pieces)]
        first = {"role": "assistant", "content": None, "tool_calls": [_call_head(call)], "refusal": None}
        return [first, *_argument_deltas(call)]

    def _chunk(self, delta: Json | None, *, finish: Finish | None = None, usage: Json | None = None) -> Json:
        """One ``chat.completion.chunk``; ``delta=None`` makes the ``choices: []`` usage chunk."""
        choices = [] if delta is None else [self._choice(delta, finish)]
        chunk = self._envelope("chat.completion.chunk", choices)
        if self.include_usage:
            chunk["usage"] = usage
        if self.obfuscate:
            chunk["obfuscation"] = _alnum(json.dumps(chunk, sort_keys=True), 2 + len(chunk["choices"]) * 7)
        return chunk

    def _choice(self, delta: Json, finish: Finish | None) -> Json:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    def _envelope(self, obj: str, choices: list[Json], *, usage: Json | None = None) -> Json:
        env: Json = {"id": self.completion_id, "object": obj, "created": self.created, "model": self.model}
        env.update({"service_tier": "default", "system_fingerprint": FINGERPRINT, "choices": choices})
        if usage is not None:
            env["usage"] = usage
        return env


@dataclass(frozen=True)
class _XaiRender(_Render):
    """xAI: reasoning_content, whole tool call in one delta, no finish_reason key until the end."""

    def usage(self) -> Json:
        # completion_tokens excludes reasoning tokens and total_tokens adds them (recorded)
        p = self.plan
        prompt, reasoning = p.input_tokens, p.reasoning_tokens
        completion = p.output_tokens - reasoning
        details = {"text_tokens": prompt, "audio_tokens": 0, "image_tokens": 0, "cached_tokens": 0}
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion + reasoning,
            "prompt_tokens_details": details,
            "completion_tokens_details": _openai_completion_details(reasoning),
            "num_sources_used": 0,
            "cost_in_usd_ticks": prompt * 3000 + (completion + reasoning) * 5000,
        }

    def completion(self) -> Json:
        p, call = self.plan, self.plan.tool_call
        message: Json = {"role": "assistant", "content": p.text}
        if p.thinking:
            message["reasoning_content"] = p.thinking
        if call:
            message["tool_calls"] = [{"id": call.id, "function": _function(call), "type": "function"}]
        message["refusal"] = None
        choice = {"index": 0, "message": message, "finish_reason": p.finish}
        return self._envelope("chat.completion", [choice], usage=self.usage())

    def _deltas(self) -> list[Json]:
        p = self.plan
        deltas: list[Json] = [{"reasoning_content": piece} for piece in p.thinking_pieces]
        deltas += [{"content": piece} for piece in p.text_pieces]
        if p.tool_call:
            call = {"id": p.tool_call.id, "function": _function(p.tool_call), "index": 0, "type": "function"}
            deltas.append({"tool_calls": [call]})
        if not deltas:
            deltas.append({"content": ""})
        deltas[0]["role"] = "assistant"  # on the first delta only, after its payload (recorded)
        return deltas

    def _chunk(self, delta: Json | None, *, finish: Finish | None = None, usage: Json | None = None) -> Json:
        choices = [] if delta is None else [self._choice(delta, finish)]
        return self._envelope("chat.completion.chunk", choices, usage=usage)

    def _choice(self, delta: Json, finish: Finish | None) -> Json:
        return {"index": 0, "delta": delta, **({"finish_reason": finish} if finish else {})}

    def _envelope(self, obj: str, choices: list[Json], *, usage: Json | None = None) -> Json:
        env: Json = {"id": self.completion_id, "object": obj, "created": self.created, "model": self.model}
        env["choices"] = choices
        if usage is not None:
            env["usage"] = usage
        env["system_fingerprint"] = FINGERPRINT
        return env


@dataclass(frozen=True)
class _OpenRouterRender(_Render):
    """OpenRouter: provider/native_finish_reason, reasoning + reasoning_details, usage with cost, always."""

    def usage(self) -> Json:
        p = self.plan
        prompt_cost, completion_cost = p.input_tokens * self.prices[0], p.output_tokens * self.prices[1]
        return {
            "prompt_tokens": p.input_tokens,
            "completion_tokens": p.output_tokens,
            "total_tokens": p.input_tokens + p.output_tokens,
            "cost": round(prompt_cost + completion_cost, 12),
            "is_byok": False,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "cost_details": {
                "upstream_inference_cost": None,
                "upstream_inference_prompt_cost": round(prompt_cost, 12),
                "upstream_inference_completions_cost": round(completion_cost, 12),
            },
            "completion_tokens_details": {"reasoning_tokens": p.reasoning_tokens, "image_tokens": 0},
        }

    def completion(self) -> Json:
        p, call = self.plan, self.plan.tool_call
        message: Json = {"role": "assistant", "content": p.text, "refusal": None, "reasoning": p.thinking}
        if p.thinking:
            message["reasoning_details"] = [_reasoning_detail(p.thinking)]
        if call:
            message["tool_calls"] = [{**_full_call(call), "index": 0}]
        choice: Json = {"logprobs": None, "finish_reason": p.finish, "native_finish_reason": p.finish}
        choice.update({"index": 0, "message": message})
        return self._envelope("chat.completion", [choice], usage=self.usage())

    def chunks(self) -> list[Json]:
        return [*self.content_chunks(), self.finish_chunk(), self._chunk(None, usage=self.usage())]

    def finish_chunk(self) -> Json:
        return self._chunk({"role": "assistant", "content": ""}, finish=self.plan.finish)

    def error_chunk(self, error: Json) -> Json:
        """The mid-stream failure: top-level ``error`` and ``finish_reason: "error"``."""
        chunk = self._chunk({"role": "assistant", "content": ""})
        chunk["choices"][0]["finish_reason"] = "error"
        return {"id": chunk.pop("id"), "provider": chunk.pop("provider"), "error": error, **chunk}

    def _deltas(self) -> list[Json]:
        p = self.plan
        deltas: list[Json] = [
            {"content": "", "reasoning": piece, "reasoning_details": [_reasoning_detail(piece)]}
            for piece in p.thinking_pieces
        ]
        deltas += [{"content": piece} for piece in p.text_pieces]
        if p.tool_call:
            deltas.append({"content": "", "tool_calls": [_call_head(p.tool_call)]})
            deltas += [{"content": "", **delta} for delta in _argument_deltas(p.tool_call)]
        # every recorded OpenRouter delta carries the role
        return [{"role": "assistant", **delta} for delta in deltas] or [{"role": "assistant", "content": ""}]

    def _chunk(self, delta: Json | None, *, finish: Finish | None = None, usage: Json | None = None) -> Json:
        choices = [] if delta is None else [self._choice(delta, finish)]
        return self._envelope("chat.completion.chunk", choices, usage=usage)

    def _choice(self, delta: Json, finish: Finish | None) -> Json:
        return {
            "index": 0,
            "delta": delta,
            "finish_reason": finish,
            "native_finish_reason": finish,
            "logprobs": None,
        }

    def _envelope(self, obj: str, choices: list[Json], *, usage: Json | None = None) -> Json:
        env: Json = {"id": self.completion_id, "provider": self.provider_name, "model": self.model}
        env.update({"object": obj, "created": self.created, "choices": choices})
        if usage is not None:
            env["usage"] = usage
        return env


RENDERERS: dict[Flavor, type[_Render]] = {
    "openai": _Render,
    "xai": _XaiRender,
    "openrouter": _OpenRouterRender,
}


def _openai_completion_details(reasoning_tokens: int) -> Json:
    return {
        "reasoning_tokens": reasoning_tokens,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    }


def _function(call: ToolCall) -> Json:
    return {"name": call.name, "arguments": arguments_json(call)}


def _full_call(call: ToolCall) -> Json:
    return {"id": call.id, "type": "function", "function": _function(call)}


def _call_head(call: ToolCall) -> Json:
    """The first streamed fragment of a tool call: id, type, name and empty arguments."""
    return {"index": 0, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}


def _argument_deltas(call: ToolCall) -> list[Json]:
    """The following fragments: the arguments JSON string in 4-character pieces."""
    return [
        {"tool_calls": [{"index": 0, "function": {"arguments": f}}]} for f in pieces(arguments_json(call))
    ]


def _reasoning_detail(text: str) -> Json:
    return {"type": "reasoning.text", "text": text, "index": 0, "format": None}


def _completion_id(flavor: Flavor, seed: str, created: int) -> str:
    if flavor == "openai":
        return "chatcmpl-" + _alnum(seed, 29)
    if flavor == "xai":
        return _uuid_like(seed)
    return f"gen-{created}-{_alnum(seed, 20)}"


def _frame(flavor: Flavor, chunks: Iterable[Json], *, done: bool = True, comments: int = 0) -> list[bytes]:
    events = [sse_comment(OPENROUTER_COMMENT) for _ in range(comments if flavor == "openrouter" else 0)]
    events += [sse_event(chunk) for chunk in chunks]
    if done:
        events.append(DONE)
    return events


# -------------------- scripted replies


def midstream_error_reply(
    flavor: Flavor = "openai",
    *,
    text_pieces: Sequence[str] = ("Partial", " answer"),
    model: str | None = None,
    error: Json | None = None,
    comments: int = 2,
) -> Reply:
    """A 200 stream that sends some text, then fails inside the stream.

    openai: a ``data: {"error": {...}}`` chunk, then the stream ends without ``[DONE]`` (the
    official SDK raises ``APIError``). xai: the same with a flat ``{"code","error"}`` object
    (assumed). openrouter: a chunk with top-level ``error`` and ``finish_reason: "error"``, then
    ``[DONE]`` (documented shape; the recording also ends with ``[DONE]``).
    """
    model = model or PROFILES[flavor].default_models[0]
    created = int(time.time())
    seed = f"midstream-{flavor}-{time.time_ns()}"
    text_plan = Plan(None, list(text_pieces), None, "stop", 0, len(text_pieces), 0)
    render = RENDERERS[flavor](model, text_plan, _completion_id(flavor, seed, created), created)
    chunks = render.content_chunks()
    if isinstance(render, _OpenRouterRender):
        documented = {
            "code": 429,
            "message": "Rate limit exceeded",
            "metadata": {"error_type": "rate_limit_exceeded"},
        }
        chunks.append(render.error_chunk(error or documented))
    elif flavor == "xai":
        chunks.append(error or _xai_error("server", None))
    else:
        chunks.append({"error": error or _openai_error("server", None, None)["error"]})
    events = _frame(flavor, chunks, done=flavor == "openrouter", comments=comments)
    return sse_reply(events, content_type=PROFILES[flavor].stream_content_type)


def _fixture_path(path: str | Path) -> Path:
    candidate = Path(path)
    if candidate.exists() or candidate.is_absolute():
        return candidate
    return FIXTURES_DIR / candidate


def _recorded_exchange(path: Path) -> Json:
    """The sibling ``*.exchange.json`` of a ``*.response.*`` fixture, or {}."""
    stem = path.name.split(".response.")[0]
    exchange = path.with_name(f"{stem}.exchange.json")
    return cast(Json, json.loads(exchange.read_text())) if exchange.exists() else {}


def fixture_reply(path: str | Path, *, delay_s: float = 0.0) -> Reply:
    """Replay a recorded fixture (a name under ``tests/fixtures`` or a path).

    * ``*.sse``: the recorded bytes exactly, one HTTP chunk per SSE event.
    * ``*.chunks.jsonl``: each line framed as ``data: <line>\\n\\n``, then ``data: [DONE]\\n\\n``.
    * ``*.json``: the body as stored, ``application/json``.

    Status and content type come from the sibling ``*.exchange.json`` when there is one.
    """
    fixture = _fixture_path(path)
    raw = fixture.read_bytes()
    exchange = _recorded_exchange(fixture)
    status = int(exchange.get("status", {}).get("code", 200))
    recorded_type = (exchange.get("response_headers", {}).get("content-type") or [None])[0]
    if fixture.name.endswith(".chunks.jsonl"):
        events = [b"data: " + line + b"\n\n" for line in raw.splitlines() if line.strip()] + [DONE]
        return sse_reply(events, status=status, delay_s=delay_s)
    if fixture.suffix == ".sse":
        content_type = recorded_type or "text/event-stream; charset=utf-8"
        return sse_reply(split_sse_events(raw), status=status, content_type=content_type, delay_s=delay_s)
    return Reply(
        status=status,
        headers={"content-type": recorded_type or "application/json"},
        body=raw,
        delay_s=delay_s,
    )


# -------------------- the fake


@dataclass
class _PendingAuthorization:
    challenge: str | None
    method: str
    key: str
    user_id: str | None


class FakeOpenAICompat(FakeUpstream):
    """An OpenAI-compatible provider (``flavor``: openai, xai or openrouter) on 127.0.0.1.

    ``valid_keys`` are the accepted bearer tokens (default: ``sk-test-valid``,
    ``xai-test-valid`` or ``sk-or-v1-test-valid``). ``models`` lists the model ids that
    ``/models`` reports; with ``strict_models`` a chat request for any other model fails the way
    the provider fails. ``behaviour`` maps a ``Conversation`` to a ``Plan`` (default: the shared
    deterministic model). ``chunk_delay_s`` paces generated streams; ``edit_stream`` may rewrite
    the framed events of every generated stream (to insert ``Pause``/``Stall``/``Abort``).
    A streamed chat request for a model in ``stream_refused_models`` is refused as OpenAI refuses
    an organization that is not verified (``OPENAI_STREAM_REFUSED``); without streaming it is
    answered. On the openai flavor a reasoning model (``FIXED_SAMPLING``) refuses a ``temperature``
    other than 1, any ``top_p`` and any ``stop``, as OpenAI does (``sampling_refused``).
    """

    def __init__(
        self,
        flavor: Flavor = "openai",
        *,
        valid_keys: Iterable[str] | None = None,
        models: Sequence[str] | None = None,
        strict_models: bool = False,
        behaviour: Callable[[Conversation], Plan] = plan,
        chunk_delay_s: float = 0.0,
        processing_comments: int = 2,
        provider_name: str = "OpenAI",
        requests_per_minute: int = 5000,
    ) -> None:
        super().__init__()
        if flavor not in PROFILES:
            raise ValueError(f"unknown flavor {flavor!r}")
        self.flavor: Flavor = flavor
        self.profile = PROFILES[flavor]
        self.valid_keys: set[str] = set(valid_keys if valid_keys is not None else self.profile.default_keys)
        self.openrouter_models: list[Json] = [dict(m) for m in DEFAULT_OPENROUTER_MODELS]
        default_ids = (
            [m["id"] for m in self.openrouter_models]
            if flavor == "openrouter"
            else self.profile.default_models
        )
        self.models: list[str] = list(models if models is not None else default_ids)
        self.strict_models = strict_models
        self.behaviour = behaviour
        self.chunk_delay_s = chunk_delay_s
        self.processing_comments = processing_comments
        self.provider_name = provider_name
        self.edit_stream: Callable[[list[bytes]], list[Part]] | None = None
        self.key_info_overrides: dict[str, Json] = {}
        # Models whose streamed chat requests are refused as an unverified organization's are.
        self.stream_refused_models: set[str] = set()
        self._pending: dict[str, _PendingAuthorization] = {}
        self._seq = 0
        self._seq_lock = threading.Lock()
        self._request_limit = RequestLimit(requests_per_minute)
        self._register_routes()

    @property
    def api_prefix(self) -> str:
        return self.profile.prefix

    @property
    def api_base(self) -> str:
        """The base URL an OpenAI client is configured with (``…/v1`` or ``…/api/v1``)."""
        return self.url + self.profile.prefix

    def _register_routes(self) -> None:
        prefix, authed = self.profile.prefix, self._authed
        self.route("POST", f"{prefix}/chat/completions", authed(self._chat))
        if self.flavor == "openai":
            self.route("POST", f"{prefix}/responses/input_tokens", authed(self._input_tokens))
        if self.flavor in ("openai", "openrouter"):
            self.route("POST", f"{prefix}/embeddings", authed(self._embeddings))
        if self.flavor == "openrouter":
            self.route("GET", f"{prefix}/models", self._openrouter_models)  # public, as on the real service
            self.route("GET", f"{prefix}/key", authed(self._openrouter_key))
            self.route("GET", f"{prefix}/auth/key", authed(self._openrouter_key))  # older alias, same body
            self.route("POST", f"{prefix}/auth/keys", self._oauth_exchange)  # the user has no key yet
        else:
            self.route("GET", f"{prefix}/models", authed(self._list_models))
            self.route("GET", f"{prefix}/models/{{model}}", authed(self._get_model))
        if self.flavor == "xai":
            self.route("GET", f"{prefix}/api-key", authed(self._xai_api_key))

    def _embeddings(self, req: RecordedRequest) -> Reply:
        """``POST /embeddings``: ``input`` a string or a list of strings; ``encoding_format`` float
        (default) or base64 (little-endian float32, what the official SDK asks for); ``dimensions``
        shortens the vectors. Usage counts ``prompt_tokens`` = ``total_tokens``."""
        body = req.json()
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
            message = "'input' must be a string or an array of strings"
            return json_reply(400, {"error": {"message": message, "type": "invalid_request_error", "param": "input",
                                              "code": None}})  # fmt: skip
        dims = int(body.get("dimensions") or embeddings.DIMENSIONS)
        b64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(inputs):
            values = embeddings.vector(text, dims)
            data.append(
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": embeddings.as_base64(values) if b64 else values,
                }
            )
        used = sum(embeddings.tokens(t) for t in inputs)
        return json_reply(200, {"object": "list", "data": data, "model": body.get("model"),
                                "usage": {"prompt_tokens": used, "total_tokens": used}})  # fmt: skip

    def not_found(self, req: RecordedRequest) -> Reply:
        if self.flavor == "openai":
            message = f"Invalid URL ({req.method} {req.path})"
            return json_reply(
                404,
                {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}},
            )
        return super().not_found(req)

    # -- helpers

    def _next_seed(self, req: RecordedRequest) -> str:
        with self._seq_lock:
            self._seq += 1
            return f"{self.flavor}-{self._seq}-{hashlib.sha256(req.body).hexdigest()}"

    def _authed(self, handler: Handler) -> Handler:
        """``handler`` behind the provider's bearer-key check (and its way of failing)."""

        def check_key(req: RecordedRequest) -> Reply:
            token = req.bearer
            if token is not None and token in self.valid_keys:
                return handler(req)
            status = 400 if self.flavor == "xai" else 401
            return error_reply(status, self.flavor, "missing_key" if token is None else "auth", key=token)

        return check_key

    def _price(self, model: str) -> tuple[float, float]:
        for entry in self.openrouter_models:
            if entry["id"] == model:
                return float(entry["pricing"]["prompt"]), float(entry["pricing"]["completion"])
        return 0.0, 0.0

    def _response_headers(self, plan_: Plan, streaming: bool, seed: str) -> dict[str, str]:
        content_type = self.profile.stream_content_type if streaming else "application/json"
        if self.flavor == "openrouter":
            headers = {
                "content-type": content_type,
                "access-control-allow-origin": "*",
                "vary": "Accept-Encoding",
            }
            return {**headers, "cache-control": "no-cache"} if streaming else headers
        headers = {"content-type": content_type, "x-request-id": "req_" + stable_hex(seed, length=32)}
        if self.flavor == "openai":
            headers.update(self._openai_rate_headers(plan_.input_tokens))
        return headers

    def _openai_rate_headers(self, input_tokens: int) -> dict[str, str]:
        limit_requests, limit_tokens = self._request_limit.per_minute, 4_000_000
        remaining_requests, full_in_s = self._request_limit.take()
        return {
            "openai-version": "2020-10-01",
            "openai-processing-ms": "42",
            "x-ratelimit-limit-requests": str(limit_requests),
            "x-ratelimit-limit-tokens": str(limit_tokens),
            "x-ratelimit-remaining-requests": str(remaining_requests),
            "x-ratelimit-remaining-tokens": str(max(0, limit_tokens - input_tokens)),
            "x-ratelimit-reset-requests": go_duration(full_in_s),
            "x-ratelimit-reset-tokens": "6m0s",
        }

    # -- token counts (OpenAI counts only through the Responses API)

    def _input_tokens(self, req: RecordedRequest) -> Reply:
        """What a chat completion of the same conversation reports as `prompt_tokens`."""
        try:
            body = req.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not body.get("model"):
            return error_reply(
                400, self.flavor, "bad_request", message="Missing required parameter: 'model'."
            )
        counted = self.behaviour(conversation_from_responses(body)).input_tokens
        return json_reply(200, {"object": "response.input_tokens", "input_tokens": counted})

    # -- chat

    def _chat(self, req: RecordedRequest) -> Reply:
        try:
            body = req.json()
        except ValueError:
            body = None
        problem = _invalid_request(body, self.flavor)
        if problem is not None:
            return error_reply(400, self.flavor, "bad_request", message=problem)
        model = str(body["model"])
        if self.strict_models and model not in self.models:
            return self._unknown_model(model)
        if body.get("stream") is True and model in self.stream_refused_models:
            return self._stream_refused()
        if self.flavor == "xai" and model.startswith("grok-4") and body.get("stop") is not None:
            return json_reply(400, XAI_STOP_REFUSED)
        if self.flavor == "openai" and model in FIXED_SAMPLING:
            refused = sampling_refused(body)
            if refused is not None:
                return json_reply(
                    400, refused, {"x-request-id": "req_" + stable_hex(json.dumps(refused), length=32)}
                )
        return self._render_chat(req, body, model)

    def _stream_refused(self) -> Reply:
        if self.flavor != "openrouter":
            return json_reply(
                400, OPENAI_STREAM_REFUSED, {"x-request-id": "req_" + stable_hex("refused", length=32)}
            )
        raw = json.dumps(OPENAI_STREAM_REFUSED, indent=2)
        envelope = {
            "code": 400,
            "message": "Provider returned error",
            "metadata": {"raw": raw, "provider_name": "OpenAI"},
        }
        return json_reply(
            400, {"error": envelope, "user_id": "user_fake"}, {"access-control-allow-origin": "*"}
        )

    def _unknown_model(self, model: str) -> Reply:
        if self.flavor == "openrouter":
            return error_reply(400, "openrouter", "bad_request", message=f"{model} is not a valid model ID")
        if self.flavor == "xai":
            message = f"The model {model} does not exist or your team does not have access to it."
            return error_reply(404, "xai", "not_found", message=message)
        message = f"The model `{model}` does not exist or you do not have access to it."
        return error_reply(404, "openai", "not_found", message=message)

    def _render_chat(self, req: RecordedRequest, body: Json, model: str) -> Reply:
        seed = self._next_seed(req)
        created = int(time.time())
        answer = self.behaviour(conversation_from_chat(body, self.flavor))
        stream_options = body.get("stream_options") or {}
        render = RENDERERS[self.flavor](
            model=model,
            plan=answer,
            completion_id=_completion_id(self.flavor, seed, created),
            created=created,
            include_usage=bool(stream_options.get("include_usage")),
            obfuscate=stream_options.get("include_obfuscation", True) is not False,
            provider_name=self.provider_name,
            prices=self._price(model),
        )
        streaming = body.get("stream") is True
        headers = self._response_headers(answer, streaming, seed)
        if not streaming:
            return paced_whole(
                json_reply(200, render.completion(), headers), render.chunks, self.chunk_delay_s
            )
        events = _frame(self.flavor, render.chunks(), comments=self.processing_comments)
        parts: list[Part] = self.edit_stream(events) if self.edit_stream else list(events)
        return sse_reply(
            parts, headers=headers, content_type=headers["content-type"], delay_s=self.chunk_delay_s
        )

    # -- models and keys

    def _list_models(self, req: RecordedRequest) -> Reply:
        return json_reply(200, {"object": "list", "data": [self._model_object(m) for m in self.models]})

    def _get_model(self, req: RecordedRequest) -> Reply:
        model = req.path_params["model"]
        if model not in self.models:
            return self._unknown_model(model)
        return json_reply(200, self._model_object(model))

    def _model_object(self, model: str) -> Json:
        entry: Json = {
            "id": model,
            "object": "model",
            "created": 1_686_935_002,
            "owned_by": self.profile.owned_by,
        }
        if self.flavor == "openai":
            entry["shutdown_date"] = None
        return entry

    def _openrouter_models(self, req: RecordedRequest) -> Reply:
        # Public on the real service, so it cannot validate a key: /key does that.
        listed = [m for m in self.openrouter_models if m["id"] in self.models]
        return json_reply(200, {"data": listed})

    def _openrouter_key(self, req: RecordedRequest) -> Reply:
        key = req.bearer or ""
        info: Json = {
            "label": f"{key[:12]}...{key[-3:]}",
            "limit": 100,
            "limit_remaining": 74.5,
            "limit_reset": "monthly",
            "include_byok_in_limit": False,
            "usage": 25.5,
            "usage_daily": 25.5,
            "usage_weekly": 25.5,
            "usage_monthly": 25.5,
            "byok_usage": 0,
            "byok_usage_daily": 0,
            "byok_usage_weekly": 0,
            "byok_usage_monthly": 0,
            "is_free_tier": False,
            "is_management_key": False,
            "is_provisioning_key": False,
            "creator_user_id": "user_fake",
            "expires_at": None,
            "rate_limit": {
                "interval": "1h",
                "requests": 1000,
                "note": "This field is deprecated and safe to ignore.",
            },
        }
        return json_reply(200, {"data": {**info, **self.key_info_overrides.get(key, {})}})

    def _xai_api_key(self, req: RecordedRequest) -> Reply:
        key = req.bearer or ""
        info: Json = {
            "redacted_api_key": f"xai-...{key[-4:]}",
            "user_id": _uuid_like("user" + key),
            "name": "Fake API Key",
            "create_time": "2024-01-01T12:55:18.139305Z",
            "modify_time": "2024-08-28T17:20:12.343321Z",
            "modified_by": _uuid_like("modifier" + key),
            "team_id": _uuid_like("team" + key),
            "acls": ["api-key:model:*", "api-key:endpoint:*"],
            "api_key_id": _uuid_like("id" + key),
            "team_blocked": False,
            "api_key_blocked": False,
            "api_key_disabled": False,
        }
        return json_reply(200, {**info, **self.key_info_overrides.get(key, {})})

    # -- OpenRouter OAuth PKCE

    def register_oauth_code(
        self,
        code: str,
        code_challenge: str | None = None,
        *,
        method: Literal["S256", "plain"] = "S256",
        key: str | None = None,
        user_id: str | None = "user_fake",
    ) -> str:
        """Pretend the user approved the app: ``code`` may be exchanged once. Returns the key it yields.

        The issued key becomes valid for the other routes once the exchange succeeds.
        """
        issued = key or "sk-or-v1-" + stable_hex("oauth", code, length=64)
        with self._cond:
            self._pending[code] = _PendingAuthorization(code_challenge, method, issued, user_id)
        return issued

    def _oauth_exchange(self, req: RecordedRequest) -> Reply:
        # Errors: 400 for malformed input, 403 for an unknown/used code or a wrong verifier
        # (status meanings from the OpenRouter API reference; the messages are assumed).
        try:
            body = req.json()
        except ValueError:
            body = None
        code = body.get("code") if isinstance(body, dict) else None
        if not isinstance(code, str) or not code:
            return error_reply(
                400, "openrouter", "bad_request", message="Invalid request: 'code' is required"
            )
        with self._cond:
            pending = self._pending.get(code)
            if pending is None:
                return error_reply(
                    403, "openrouter", "forbidden", message="Invalid or expired authorization code"
                )
            problem = _pkce_problem(pending, body.get("code_verifier"), body.get("code_challenge_method"))
            if problem is not None:
                return error_reply(problem[0], "openrouter", message=problem[1])
            del self._pending[code]
            self.valid_keys.add(pending.key)
        return json_reply(200, {"key": pending.key, "user_id": pending.user_id})


def _pkce_problem(pending: _PendingAuthorization, verifier: Any, method: Any) -> tuple[int, str] | None:
    """Why the exchange fails, as (status, message), or None if the verifier proves the challenge."""
    if pending.challenge is None:
        return None
    if not isinstance(verifier, str) or not verifier:
        return 400, "Invalid request: 'code_verifier' is required for this code"
    if method is not None and method != pending.method:
        return 400, "Invalid request: 'code_challenge_method' does not match the authorization request"
    expected = pkce_challenge(verifier) if pending.method == "S256" else verifier
    return None if expected == pending.challenge else (403, "Invalid code_verifier")
