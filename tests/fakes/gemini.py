"""A fake Google Gemini API (Generative Language API, ``v1beta``) on 127.0.0.1.

What it is for: integration tests point the Gemini provider at ``FakeGemini().url`` (the provider
adds ``/v1beta``). Answers come from the shared deterministic model in ``behaviour.py``; the wire
format follows the recordings in ``tests/fixtures/gemini-*`` (provenance in
``tests/fixtures/SOURCES.md``) and Google's Gemini API reference:

* ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse``: ``text/event-stream``, one
  ``data: {json}\\r\\n\\r\\n`` event per chunk (CRLF framing), no ``[DONE]``: the stream just
  ends. JSON is serialised like the recordings (``", "``-less, ``": "`` after keys). Every chunk
  carries the new text only and a ``usageMetadata`` that is complete only on the last chunk,
  which also carries ``finishReason``. Thinking (``thinkingConfig.includeThoughts``) streams as
  ``{"text": ..., "thought": true}`` parts first. A function call arrives whole in one chunk.
  Gemini 3 models (``gemini-3*``) put a ``thoughtSignature`` on the function-call part (then a
  trailing ``{"text": ""}`` part with ``finishReason``, as recorded) or, for a text answer, on the
  trailing empty text part with ``finishReason`` (as recorded); earlier models send none and put
  ``finishReason`` on the last text chunk. Without ``alt=sse`` the stream route answers one JSON
  array of the chunks.
* ``POST /v1beta/models/{model}:generateContent``: one ``GenerateContentResponse`` (thought part,
  text part, function-call part), ``application/json; charset=UTF-8``.
* ``POST /v1beta/models/{model}:countTokens`` (``contents`` or a whole ``generateContentRequest``):
  ``totalTokens``, the prompt tokens a ``generateContent`` of it would report.
* ``GET /v1beta/models?pageSize=&pageToken=`` and ``GET /v1beta/models/{model}``.
* Auth: ``x-goog-api-key`` (the ``?key=`` query is accepted too, as the real API does; tests
  check the provider never uses it). A wrong key gets the real ``400 INVALID_ARGUMENT`` body with
  ``ErrorInfo.reason = API_KEY_INVALID``; no key gets ``403 PERMISSION_DENIED``.
* Requests are checked the way the real API rejects them (``400 INVALID_ARGUMENT``): unknown
  fields anywhere it parses (``additionalProperties`` in a schema is the classic), roles other than
  ``user``/``model``, empty ``contents``/``parts``, a function-call turn not after a user turn,
  a function-response count that differs from the calls', both ``thinkingBudget`` and
  ``thinkingLevel``, ``allowedFunctionNames`` without mode ``ANY``, lower-case schema types, and
  (Gemini 3) a function call of the current turn without the ``thoughtSignature`` this fake issued.

Scripted failures to ``enqueue``: ``error_reply`` (400/403/404/429 with the recorded ``RetryInfo``
body/500/503), ``midstream_error_reply`` (an ``{"error": ...}`` chunk inside a 200 stream),
``fixture_reply`` (replays ``.response.sse``, ``.chunks.jsonl`` framed with CRLF, ``.json``).
To break a generated stream, set ``fake.edit_stream`` (e.g. ``lambda ev: [*ev[:2], Stall()]``).

Shapes marked "assumed" were not seen in recordings or docs: they are plausible guesses kept
consistent with Google's error style.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from tests.fakes import embeddings
from tests.fakes.behaviour import Conversation, Plan, ToolCall, Turn, plan
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

__all__ = [
    "DEFAULT_MODELS",
    "FIXTURES_DIR",
    "VALID_KEY",
    "FakeGemini",
    "conversation_from_gemini",
    "dumps",
    "error_body",
    "error_reply",
    "fixture_reply",
    "frame",
    "midstream_error_reply",
]

Json = dict[str, Any]

FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures"
VALID_KEY = "AIzaSyFakeGeminiKey-valid-000000000000"
DEFAULT_MODELS = ("gemini-2.5-flash", "gemini-3-pro-preview", "gemini-2.0-flash")
EMBEDDING_MODELS = ("text-embedding-004", "gemini-embedding-001")
STREAM_CONTENT_TYPE = "text/event-stream"
JSON_CONTENT_TYPE = "application/json; charset=UTF-8"
# Google's documented escape hatch for histories that lost their signatures.
DUMMY_SIGNATURES = frozenset({"skip_thought_signature_validator", "context_engineering_is_the_way_to_go"})
EMBED_PATH = re.compile(r"/v1beta/models/(?P<model>[^/:]+):batchEmbedContents")
COUNT_PATH = re.compile(r"/v1beta/models/(?P<model>[^/:]+):countTokens")
CHAT_PATH = re.compile(r"/v1beta/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)")


def dumps(obj: Any) -> str:
    """JSON as the Gemini API writes it on the wire (``"key": value`` and ``,`` without a space)."""
    return json.dumps(obj, separators=(",", ": "), ensure_ascii=False)


def frame(chunk: Json | str) -> bytes:
    """One SSE event, CRLF-framed as Gemini does."""
    text = chunk if isinstance(chunk, str) else dumps(chunk)
    return f"data: {text}\r\n\r\n".encode()


# -------------------- errors


_ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),  # assumed wording
    404: ("NOT_FOUND", "Requested entity was not found."),
    429: ("RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan."),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
}
_BAD_KEY_MESSAGE = "API key not valid. Please pass a valid API key."
_NO_KEY_MESSAGE = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)


def error_body(status: int, message: str | None = None, *, details: list[Json] | None = None) -> Json:
    """A Google RPC error body ``{"error": {code, message, status, details?}}``."""
    status_text, default = _ERRORS.get(status, ("UNKNOWN", "Unknown error."))
    error: Json = {"code": status, "message": message or default, "status": status_text}
    if details:
        error["details"] = details
    return {"error": error}


def bad_key_body() -> Json:
    """The real answer to a wrong key (HTTP 400, as Gemini sends it)."""
    return error_body(
        400,
        _BAD_KEY_MESSAGE,
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": _BAD_KEY_MESSAGE,
            },
        ],
    )


def recorded_429_body() -> bytes:
    """The recorded 429 ``RESOURCE_EXHAUSTED`` body with ``RetryInfo.retryDelay = "34.4s"``."""
    return (FIXTURES_DIR / "gemini-429-error.json").read_bytes()


def error_reply(status: int, message: str | None = None, *, bad_key: bool = False) -> Reply:
    """A complete Gemini error response. 429 without a message is the recorded body (RetryInfo);
    ``bad_key`` gives the 400 ``API_KEY_INVALID`` body. Google sends no rate-limit headers."""
    headers = {"content-type": JSON_CONTENT_TYPE, "vary": "Origin, X-Origin, Referer"}
    if bad_key:
        return json_reply(400, bad_key_body(), headers)
    if status == 429 and message is None:
        return Reply(status=429, headers=headers, body=recorded_429_body())
    return json_reply(status, error_body(status, message), headers)


# -------------------- request checks (the real API's 400s)

_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")


def _names(*camel: str) -> frozenset[str]:
    """Proto JSON accepts both the camelCase and the original snake_case field names."""
    return frozenset({*camel, *(_SNAKE.sub("_", c).lower() for c in camel)})


_TOP = _names(
    "model",
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
    "cachedContent",
    "labels",
)
_CONTENT = _names("role", "parts")
_PART = _names(
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
    "thought",
    "thoughtSignature",
    "videoMetadata",
    "partMetadata",
)
_PART_DATA = _names(
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
)
_COUNT = _names("contents", "generateContentRequest")
_GENERATION = _names(
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "enableEnhancedCivicAnswers",
    "speechConfig",
    "thinkingConfig",
    "imageConfig",
    "mediaResolution",
)
_THINKING = _names("includeThoughts", "thinkingBudget", "thinkingLevel")
_TOOL = _names("functionDeclarations", "googleSearch", "googleSearchRetrieval", "codeExecution", "urlContext")
_DECLARATION = _names(
    "name", "description", "parameters", "parametersJsonSchema", "response", "responseJsonSchema", "behavior"
)
_SCHEMA = _names(
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
)
_SCHEMA_TYPES = frozenset(
    {"TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}
)
_MODES = frozenset({"MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"})
_LEVELS = frozenset({"THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH"})


class _Invalid(Exception):
    """A request the real API would answer with 400 INVALID_ARGUMENT."""


def _get(obj: Json, camel: str) -> Any:
    return obj.get(camel, obj.get(_SNAKE.sub("_", camel).lower()))


def _unknown(obj: Any, allowed: frozenset[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise _Invalid(f"Invalid JSON payload received. Expected an object at '{where}'.")
    for key in obj:
        if key not in allowed:
            at = f" at '{where}'" if where else ""
            raise _Invalid(f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.')


def _check_schema(schema: Any, where: str) -> None:
    _unknown(schema, _SCHEMA, where)
    kind = schema.get("type")
    if kind is not None and kind not in _SCHEMA_TYPES:
        raise _Invalid(
            f"Invalid value at '{where}.type' (type.googleapis.com/google.ai.generativelanguage.v1beta.Type), "
            f"{json.dumps(kind)}"
        )
    for name, sub in (schema.get("properties") or {}).items():
        _check_schema(sub, f"{where}.properties[{name}].value")
    if "items" in schema:
        _check_schema(schema["items"], f"{where}.items")
    for i, sub in enumerate(schema.get("anyOf") or schema.get("any_of") or []):
        _check_schema(sub, f"{where}.any_of[{i}]")
    properties = schema.get("properties") or {}
    for name in schema.get("required") or []:
        if name not in properties:
            raise _Invalid(
                f"* GenerateContentRequest.{where}.required[{name}]: property is not defined\n"  # assumed wording
            )


def _check_body(body: Any) -> None:
    _unknown(body, _TOP, "")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise _Invalid("* GenerateContentRequest.contents: contents is not specified\n")
    for i, content in enumerate(contents):
        _unknown(content, _CONTENT, f"contents[{i}]")
        if content.get("role", "user") not in ("user", "model"):
            raise _Invalid("Please use a valid role: user, model.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise _Invalid(
                f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"
            )
        for j, part in enumerate(parts):
            _unknown(part, _PART, f"contents[{i}].parts[{j}]")
            if sum(1 for key in part if key in _PART_DATA) != 1:
                raise _Invalid(
                    f"* GenerateContentRequest.contents[{i}].parts[{j}].data: required oneof field 'data' must "
                    "have one initialized field\n"
                )
    system = _get(body, "systemInstruction")
    if system is not None:
        _unknown(system, _CONTENT, "system_instruction")
    generation = _get(body, "generationConfig") or {}
    _unknown(generation, _GENERATION, "generation_config")
    thinking = _get(generation, "thinkingConfig") or {}
    _unknown(thinking, _THINKING, "generation_config.thinking_config")
    level = _get(thinking, "thinkingLevel")
    if level is not None and str(level).upper() not in _LEVELS:
        raise _Invalid(
            f"Invalid value at 'generation_config.thinking_config.thinking_level', {json.dumps(level)}"
        )
    if level is not None and _get(thinking, "thinkingBudget") is not None:
        raise _Invalid("You can only set only one of thinking budget and thinking level.")
    schema_field = (
        "responseJsonSchema" if _get(generation, "responseJsonSchema") is not None else "responseSchema"
    )
    if (
        _get(generation, schema_field) is not None
        and _get(generation, "responseMimeType") != "application/json"
    ):
        field = _SNAKE.sub("_", schema_field).lower()
        raise _Invalid(  # assumed wording
            f"* GenerateContentRequest.generation_config.{field}: response_mime_type must be application/json "
            f"when {field} is set\n"
        )
    for i, tool in enumerate(body.get("tools") or []):
        _unknown(tool, _TOOL, f"tools[{i}]")
        for j, declaration in enumerate(_get(tool, "functionDeclarations") or []):
            where = f"tools[{i}].function_declarations[{j}]"
            _unknown(declaration, _DECLARATION, where)
            if "parameters" in declaration:
                _check_schema(declaration["parameters"], f"{where}.parameters")
    calling = _get(_get(body, "toolConfig") or {}, "functionCallingConfig") or {}
    mode = calling.get("mode", "AUTO")
    if mode not in _MODES:
        raise _Invalid(f"Invalid value at 'tool_config.function_calling_config.mode', {json.dumps(mode)}")
    if _get(calling, "allowedFunctionNames") and mode != "ANY":
        raise _Invalid("allowed_function_names can be set only when function calling mode is ANY.")  # assumed
    _check_turns(contents)


def _calls(content: Json) -> list[Json]:
    return [part for part in content.get("parts", []) if _get(part, "functionCall") is not None]


def _responses(content: Json) -> list[Json]:
    return [part for part in content.get("parts", []) if _get(part, "functionResponse") is not None]


def _check_turns(contents: list[Json]) -> None:
    for i, content in enumerate(contents):
        calls = _calls(content)
        if not calls:
            continue
        previous = contents[i - 1] if i > 0 else None
        if previous is None or previous.get("role", "user") != "user":
            raise _Invalid(
                "Please ensure that function call turn comes immediately after a user turn or after a function "
                "response turn."
            )
        following = contents[i + 1] if i + 1 < len(contents) else None
        if following is not None and len(_responses(following)) != len(calls):
            raise _Invalid(
                "Please ensure that the number of function response parts is equal to the number of function "
                "call parts of the function call turn."
            )


def _current_turn(contents: list[Json]) -> list[Json]:
    """The contents since the last user turn that is not only function responses (Google's "turn")."""
    start = 0
    for i, content in enumerate(contents):
        if content.get("role", "user") == "user" and not _responses(content):
            start = i
    return contents[start:]


# -------------------- request -> Conversation


def _tool_result_text(response: Any) -> str:
    if isinstance(response, dict) and set(response) <= {"result", "output"} and response:
        value = next(iter(response.values()))
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return json.dumps(response, separators=(",", ":"))


def conversation_from_gemini(body: Json) -> Conversation:
    """Map a ``GenerateContentRequest`` onto the neutral ``Conversation``.

    ``systemInstruction`` texts form the system prompt; ``functionResponse`` parts become tool turns
    (``response.result`` as text); tools are the declared functions, narrowed by
    ``toolConfig`` (mode ``NONE``: none; ``allowedFunctionNames``: those); reasoning is wanted
    when ``thinkingConfig.includeThoughts`` is true; ``maxOutputTokens`` caps the pieces.
    """
    system_parts = (_get(body, "systemInstruction") or {}).get("parts") or []
    system = "\n".join(str(p.get("text", "")) for p in system_parts if "text" in p)
    turns: list[Turn] = []
    for content in body.get("contents") or []:
        parts = content.get("parts") or []
        if content.get("role", "user") == "model":
            text = "".join(str(p.get("text", "")) for p in parts if "text" in p and not p.get("thought"))
            calls = tuple(
                ToolCall(str(fc.get("id", "")), str(fc.get("name", "")), dict(fc.get("args") or {}))
                for fc in (_get(p, "functionCall") for p in parts)
                if fc is not None
            )
            turns.append(Turn("assistant", text, tool_calls=calls))
            continue
        for part in parts:
            response = _get(part, "functionResponse")
            if response is not None:
                result = _tool_result_text(response.get("response"))
                turns.append(Turn("tool", tool_result=result, tool_call_id=response.get("id")))
        text = "".join(str(p.get("text", "")) for p in parts if "text" in p)
        if text or not _responses(content):
            turns.append(Turn("user", text))
    tools = [
        str(d.get("name"))
        for tool in body.get("tools") or []
        for d in _get(tool, "functionDeclarations") or []
    ]
    calling = _get(_get(body, "toolConfig") or {}, "functionCallingConfig") or {}
    if calling.get("mode") == "NONE":
        tools = []
    allowed = _get(calling, "allowedFunctionNames")
    if allowed:
        tools = [t for t in allowed if t in tools]
    generation = _get(body, "generationConfig") or {}
    thinking = _get(generation, "thinkingConfig") or {}
    max_tokens = _get(generation, "maxOutputTokens")
    json_answer = _get(generation, "responseMimeType") == "application/json"
    schema = _get(generation, "responseJsonSchema")
    return Conversation(
        system=system or None,
        turns=turns,
        tools=tools,
        want_reasoning=_get(thinking, "includeThoughts") is True,
        max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        json_schema=schema if json_answer and isinstance(schema, dict) else None,
        json_mode=json_answer and schema is None,
    )


# -------------------- rendering


def _signature(seed: str) -> str:
    """An opaque base64 blob shaped like Gemini's (they start with ``E``)."""
    digest = hashlib.sha256(seed.encode()).digest() * 4
    return "Eq" + base64.b64encode(digest).decode()


def _response_id(seed: str) -> str:
    raw = base64.urlsafe_b64encode(hashlib.sha256(seed.encode()).digest()).decode()
    return raw[:23]


_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}


@dataclass(frozen=True)
class _Render:
    model: str
    plan: Plan
    response_id: str
    signature: str | None  # Gemini 3: the one signature of this answer
    call_id: str | None  # sent as functionCall.id when set

    def usage(self, candidates: int | None) -> Json:
        p = self.plan
        thoughts = p.reasoning_tokens
        usage: Json = {"promptTokenCount": p.input_tokens}
        if candidates:
            usage["candidatesTokenCount"] = candidates
        usage["totalTokenCount"] = p.input_tokens + (candidates or 0) + thoughts
        usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": p.input_tokens}]
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        return usage

    @property
    def final_candidates(self) -> int:
        return self.plan.output_tokens - self.plan.reasoning_tokens

    def _call_part(self) -> Json:
        call = self.plan.tool_call
        assert call is not None
        function_call: Json = {"name": call.name, "args": call.arguments}
        if self.call_id:
            function_call = {"id": self.call_id, **function_call}
        part: Json = {"functionCall": function_call}
        if self.signature:
            part["thoughtSignature"] = self.signature
        return part

    def _chunk(self, parts: list[Json], usage: Json, finish: str | None = None) -> Json:
        candidate: Json = {"content": {"parts": parts, "role": "model"}}
        if finish:
            candidate["finishReason"] = finish
        candidate["index"] = 0
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": self.model,
            "responseId": self.response_id,
        }

    def chunks(self) -> list[Json]:
        p = self.plan
        finish = _FINISH[p.finish]
        out = [
            self._chunk([{"text": piece, "thought": True}], self.usage(None)) for piece in p.thinking_pieces
        ]
        for emitted, piece in enumerate(p.text_pieces, start=1):
            last = emitted == len(p.text_pieces) and not self.signature and p.tool_call is None
            usage = self.usage(self.final_candidates if last else emitted)
            out.append(self._chunk([{"text": piece}], usage, finish if last else None))
        if p.tool_call is not None:
            out.append(self._chunk([self._call_part()], self.usage(self.final_candidates)))
        if self.signature or p.tool_call is not None or not p.text_pieces:
            trailing: Json = {"text": ""}
            if self.signature and p.tool_call is None:
                trailing["thoughtSignature"] = self.signature
            out.append(self._chunk([trailing], self.usage(self.final_candidates), finish))
        return out

    def response(self) -> Json:
        p = self.plan
        parts: list[Json] = []
        if p.thinking:
            parts.append({"text": p.thinking, "thought": True})
        if p.text_pieces or p.tool_call is None:
            text: Json = {"text": p.text}
            if self.signature and p.tool_call is None:
                text["thoughtSignature"] = self.signature
            parts.append(text)
        if p.tool_call is not None:
            parts.append(self._call_part())
        return self._chunk(parts, self.usage(self.final_candidates), _FINISH[p.finish])


# -------------------- scripted replies


def midstream_error_reply(
    text_pieces: Sequence[str] = ("Partial", " answer"),
    *,
    model: str = DEFAULT_MODELS[0],
    status: int = 500,
    message: str | None = None,
) -> Reply:
    """A 200 stream that sends some text, then an ``{"error": {...}}`` chunk, then ends (assumed:
    the shape Google's clients parse; no recording shows one)."""
    render = _Render(
        model, Plan(None, list(text_pieces), None, "stop", 7, len(text_pieces), 0), "midstream0", None, None
    )
    events = [
        frame(render._chunk([{"text": piece}], render.usage(i + 1))) for i, piece in enumerate(text_pieces)
    ]
    events.append(frame(error_body(status, message)))
    return sse_reply(events, content_type=STREAM_CONTENT_TYPE)


def _fixture_path(path: str | Path) -> Path:
    candidate = Path(path)
    if candidate.exists() or candidate.is_absolute():
        return candidate
    return FIXTURES_DIR / candidate


def fixture_reply(path: str | Path, *, status: int | None = None, delay_s: float = 0.0) -> Reply:
    """Replay a recorded fixture (a name under ``tests/fixtures`` or a path).

    * ``*.sse``: the recorded bytes exactly (CRLF), one HTTP chunk per SSE event.
    * ``*.chunks.jsonl``: each line framed as ``data: <line>\\r\\n\\r\\n`` (no terminator).
    * ``*.json``: the body as stored (``gemini-429-error.json`` needs ``status=429``).

    Status and content type come from the sibling ``*.exchange.json`` when there is one.
    """
    fixture = _fixture_path(path)
    raw = fixture.read_bytes()
    stem = fixture.name.split(".response.")[0]
    exchange_file = fixture.with_name(f"{stem}.exchange.json")
    exchange = cast(Json, json.loads(exchange_file.read_text())) if exchange_file.exists() else {}
    code = status if status is not None else int(exchange.get("status", {}).get("code", 200))
    recorded_type = (exchange.get("response_headers", {}).get("content-type") or [None])[0]
    if fixture.name.endswith(".chunks.jsonl"):
        events = [b"data: " + line + b"\r\n\r\n" for line in raw.splitlines() if line.strip()]
        return sse_reply(events, status=code, content_type=STREAM_CONTENT_TYPE, delay_s=delay_s)
    if fixture.suffix == ".sse":
        content_type = recorded_type or STREAM_CONTENT_TYPE
        return sse_reply(split_sse_events(raw), status=code, content_type=content_type, delay_s=delay_s)
    headers = {"content-type": recorded_type or JSON_CONTENT_TYPE}
    return Reply(status=code, headers=headers, body=raw, delay_s=delay_s)


# -------------------- the fake


def _model_entry(model: str) -> Json:
    if "embedding" in model:  # as Google lists them: embedContent only, no thinking
        return {
            "name": f"models/{model}",
            "version": "004",
            "displayName": model.replace("-", " ").title(),
            "description": f"{model} (fake).",
            "inputTokenLimit": 2048,
            "outputTokenLimit": 1,
            "supportedGenerationMethods": ["embedContent", "countTextTokens"],
        }
    thinking = not model.startswith("gemini-2.0")
    return {
        "name": f"models/{model}",
        "version": model.split("-")[1] if "-" in model else "001",
        "displayName": model.replace("-", " ").title(),
        "description": f"{model} (fake).",
        "inputTokenLimit": 1_048_576,
        "outputTokenLimit": 65_536 if thinking else 8_192,
        "supportedGenerationMethods": [
            "generateContent",
            "countTokens",
            "createCachedContent",
            "batchGenerateContent",
        ],
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2,
        "thinking": thinking,
    }


class FakeGemini(FakeUpstream):
    """The Gemini API on 127.0.0.1 (see the module docstring).

    ``valid_keys``: accepted ``x-goog-api-key`` values (default ``VALID_KEY``). ``models``: what
    ``GET /v1beta/models`` lists; with ``strict_models`` other models get the real 404.
    ``send_call_ids``: put an ``id`` on function calls (the Gemini API usually sends none).
    ``check_signatures``: reject Gemini 3 function-call turns without the issued signature.
    ``behaviour``, ``chunk_delay_s`` and ``edit_stream`` work as in ``FakeOpenAICompat``.
    ``issued_signatures`` holds every ``thoughtSignature`` sent.
    """

    server_header = "scaffolding on HTTPServer2"

    def __init__(
        self,
        *,
        valid_keys: Iterable[str] | None = None,
        models: Sequence[str] = DEFAULT_MODELS,
        strict_models: bool = False,
        send_call_ids: bool = False,
        check_signatures: bool = True,
        behaviour: Callable[[Conversation], Plan] = plan,
        chunk_delay_s: float = 0.0,
    ) -> None:
        super().__init__()
        self.valid_keys: set[str] = set(valid_keys if valid_keys is not None else {VALID_KEY})
        self.models = list(models)
        self.strict_models = strict_models
        self.send_call_ids = send_call_ids
        self.check_signatures = check_signatures
        self.behaviour = behaviour
        self.chunk_delay_s = chunk_delay_s
        self.edit_stream: Callable[[list[bytes]], list[Part]] | None = None
        self.issued_signatures: set[str] = set()
        self._seq = 0
        self._seq_lock = threading.Lock()
        self.route("POST", CHAT_PATH, self._generate)
        self.route("POST", EMBED_PATH, self._batch_embed)
        self.route("POST", COUNT_PATH, self._count_tokens)
        self.route("GET", "/v1beta/models", self._list_models)
        self.route("GET", re.compile(r"/v1beta/models/(?P<model>[^/:]+)"), self._get_model)

    def _batch_embed(self, req: RecordedRequest) -> Reply:
        """``:batchEmbedContents``: ``{"requests": [{"model": "models/<same>", "content": {"parts":
        [{"text"}]}, "outputDimensionality"?}]}`` answered ``{"embeddings": [{"values": [...]}]}``
        (no usage, as the API sends none)."""
        failure = self._auth_failure(req)
        if failure is not None:
            return failure
        model = req.path_params["model"]
        requests = req.json().get("requests")
        if not isinstance(requests, list) or not requests:
            return error_reply(400, "* BatchEmbedContentsRequest.requests: contents is not specified")
        out = []
        for i, item in enumerate(requests):
            if item.get("model") != f"models/{model}":
                return error_reply(
                    400, f"* BatchEmbedContentsRequest.model: unexpected model name format ({i})"
                )
            text = "".join(p.get("text", "") for p in item.get("content", {}).get("parts", []))
            dims = int(item.get("outputDimensionality") or embeddings.DIMENSIONS)
            out.append({"values": embeddings.vector(text, dims)})
        return json_reply(200, {"embeddings": out}, {"content-type": JSON_CONTENT_TYPE})

    # -- helpers

    def _auth_failure(self, req: RecordedRequest) -> Reply | None:
        key = req.headers.get("x-goog-api-key") or req.query.get("key")
        if key is None:
            return json_reply(403, error_body(403, _NO_KEY_MESSAGE), {"content-type": JSON_CONTENT_TYPE})
        if key not in self.valid_keys:
            return error_reply(400, bad_key=True)
        return None

    def _unknown_model(self, model: str, method: str = "generateContent") -> Reply:
        message = (
            f"models/{model} is not found for API version v1beta, or is not supported for {method}. "
            "Call ListModels to see the list of available models and their supported methods."
        )
        return error_reply(404, message)

    def _next_seed(self, req: RecordedRequest) -> str:
        with self._seq_lock:
            self._seq += 1
            return f"gemini-{self._seq}-{hashlib.sha256(req.body).hexdigest()}"

    def _check_signatures(self, contents: list[Json]) -> None:
        for content in _current_turn(contents):
            calls = _calls(content)
            if content.get("role") != "model" or not calls:
                continue
            first = calls[0]
            signature = _get(first, "thoughtSignature")
            name = str((_get(first, "functionCall") or {}).get("name", ""))
            if signature is None:
                position = content["parts"].index(first) + 1
                raise _Invalid(
                    "Function call is missing a thought_signature in functionCall parts. This is required for "
                    "tools to work correctly, and missing thought_signature may lead to degraded model "
                    f"performance. Additional data, function call `default_api:{name}` , position {position}. "
                    "Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
                )
            if signature not in self.issued_signatures and signature not in DUMMY_SIGNATURES:
                raise _Invalid("Corrupted thought signature.")  # assumed wording

    # -- routes

    def _count_tokens(self, req: RecordedRequest) -> Reply:
        """`:countTokens` of `contents` or of a whole `generateContentRequest`: the prompt tokens
        a `generateContent` of it would report."""
        failure = self._auth_failure(req)
        if failure is not None:
            return failure
        model = req.path_params["model"]
        if self.strict_models and model not in self.models:
            return self._unknown_model(model, "countTokens")
        try:
            body = req.json()
        except ValueError:
            return error_reply(400, "Invalid JSON payload received. Unexpected token.")
        try:
            _unknown(body, _COUNT, "")
            inner = _get(body, "generateContentRequest")
            if inner is not None:
                _unknown(inner, _TOP, "generate_content_request")
                request = {k: v for k, v in inner.items() if k != "model"}
            else:
                request = {"contents": body.get("contents")}
            _check_body(request)
        except _Invalid as exc:
            return error_reply(400, str(exc))
        tokens = self.behaviour(conversation_from_gemini(request)).input_tokens
        details = [{"modality": "TEXT", "tokenCount": tokens}]
        answer = {"totalTokens": tokens, "promptTokensDetails": details}
        return json_reply(200, answer, {"content-type": JSON_CONTENT_TYPE})

    def _generate(self, req: RecordedRequest) -> Reply:
        failure = self._auth_failure(req)
        if failure is not None:
            return failure
        model, method = req.path_params["model"], req.path_params["method"]
        if self.strict_models and model not in self.models:
            return self._unknown_model(model, method)
        try:
            body = req.json()
        except ValueError:
            return error_reply(400, "Invalid JSON payload received. Unexpected token.")
        try:
            _check_body(body)
            if self.check_signatures and model.startswith("gemini-3"):
                self._check_signatures(body["contents"])
        except _Invalid as exc:
            return error_reply(400, str(exc))
        seed = self._next_seed(req)
        answer = self.behaviour(conversation_from_gemini(body))
        signature = _signature(seed) if model.startswith("gemini-3") else None
        if signature:
            with self._cond:
                self.issued_signatures.add(signature)
        call_id = None
        if self.send_call_ids and answer.tool_call is not None:
            call_id = answer.tool_call.id
        render = _Render(model, answer, _response_id(seed), signature, call_id)
        headers = {"vary": "Origin, X-Origin, Referer", "server-timing": "gfet4t7; dur=42"}
        if method == "generateContent":
            whole = json_reply(200, render.response(), {**headers, "content-type": JSON_CONTENT_TYPE})
            return paced_whole(whole, render.chunks, self.chunk_delay_s)
        if req.query.get("alt") != "sse":
            body_text = "[" + ",\r\n".join(dumps(chunk) for chunk in render.chunks()) + "]"
            return Reply(200, {**headers, "content-type": JSON_CONTENT_TYPE}, body_text.encode())
        events = [frame(chunk) for chunk in render.chunks()]
        parts: list[Part] = self.edit_stream(events) if self.edit_stream else list(events)
        headers["content-disposition"] = "attachment"
        return sse_reply(parts, headers=headers, content_type=STREAM_CONTENT_TYPE, delay_s=self.chunk_delay_s)

    def _list_models(self, req: RecordedRequest) -> Reply:
        failure = self._auth_failure(req)
        if failure is not None:
            return failure
        try:
            size = max(1, min(1000, int(req.query.get("pageSize") or 50)))
            start = int(req.query.get("pageToken") or 0)
        except ValueError:
            return error_reply(400)
        # The real list also holds models that cannot chat (embeddings), after the chat models.
        listed = [*self.models, *(m for m in EMBEDDING_MODELS if m not in self.models)]
        page: Json = {"models": [_model_entry(m) for m in listed[start : start + size]]}
        if start + size < len(listed):
            page["nextPageToken"] = str(start + size)
        return json_reply(200, page, {"content-type": JSON_CONTENT_TYPE})

    def _get_model(self, req: RecordedRequest) -> Reply:
        failure = self._auth_failure(req)
        if failure is not None:
            return failure
        model = req.path_params["model"]
        if model not in self.models:
            return error_reply(404, f"models/{model} is not found for API version v1beta")
        return json_reply(200, _model_entry(model), {"content-type": JSON_CONTENT_TYPE})
