"""OpenAI's public API shapes and their translation to and from the sidecar's chat types: Chat
Completions (request, response, stream chunks), legacy Completions, the model list.

Pure: no I/O. `to_params` turns a request into `CompleteParams`; `response` turns a `ChatResult`
into a `chat.completion`; `ChunkEncoder` turns stream events into `data:` lines, one chunk each,
in the order the official SDK accumulates them. The Structs are also what `/openapi.json` is
generated from.

Must not know: HTTP, providers' wire formats, how a request is run.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, Literal

import msgspec

from sidecar.wire.base import Usage
from sidecar.wire.chat import ChatResult, StreamEvent, TextDelta, ThinkingDelta, ToolCallDelta, UsageEvent

# --- request ----------------------------------------------------------------------------------------


class ImageUrl(msgspec.Struct, omit_defaults=True):
    url: str
    detail: str | None = None


class ContentPart(msgspec.Struct, omit_defaults=True):
    """`{"type": "text", "text"}` or `{"type": "image_url", "image_url": {"url"}}`."""

    type: str
    text: str | None = None
    image_url: ImageUrl | None = None


class FunctionCall(msgspec.Struct, omit_defaults=True):
    name: str
    arguments: str = ""


class MessageToolCall(msgspec.Struct, omit_defaults=True):
    id: str
    function: FunctionCall
    type: str | None = "function"


class ChatMessage(msgspec.Struct, omit_defaults=True):
    role: Literal["developer", "system", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[MessageToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDef(msgspec.Struct, omit_defaults=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(msgspec.Struct, omit_defaults=True):
    function: FunctionDef
    type: str | None = "function"


class NamedFunction(msgspec.Struct):
    name: str


class NamedToolChoice(msgspec.Struct, omit_defaults=True):
    function: NamedFunction
    type: str | None = "function"


class StreamOptions(msgspec.Struct, omit_defaults=True):
    include_usage: bool = False


class ChatCompletionRequest(msgspec.Struct, omit_defaults=True):
    """Fields the gateway uses; others (`seed`, `user`, `metadata`…) are accepted and ignored."""

    model: str
    messages: list[ChatMessage]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    tools: list[ToolDef] | None = None
    tool_choice: str | NamedToolChoice | None = None
    reasoning_effort: str | None = None
    n: int | None = None


class CompletionRequest(msgspec.Struct, omit_defaults=True):
    """The legacy `/v1/completions` form: a prompt, answered as one user turn."""

    model: str
    prompt: str | list[str]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    n: int | None = None


class EmbeddingRequest(msgspec.Struct, omit_defaults=True):
    """`input` as text (token arrays are not supported: the gateway does not know each model's
    tokenizer)."""

    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


class Embedding(msgspec.Struct):
    index: int
    embedding: list[float] | str
    object: str = "embedding"


class EmbeddingUsage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(msgspec.Struct):
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
    object: str = "list"


def embed_params(req: EmbeddingRequest, model: str) -> dict[str, Any]:
    params: dict[str, Any] = {"model": model, "input": req.input}
    if req.dimensions is not None:
        params["dimensions"] = req.dimensions
    return params


def embedding_list(
    vectors: list[list[float]], model: str, input_tokens: int, *, base64: bool
) -> EmbeddingList:
    import base64 as b64
    import struct

    def encode(v: list[float]) -> list[float] | str:
        return b64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() if base64 else v

    return EmbeddingList(
        data=[Embedding(index=i, embedding=encode(v)) for i, v in enumerate(vectors)],
        model=model,
        usage=EmbeddingUsage(prompt_tokens=input_tokens, total_tokens=input_tokens),
    )


# --- responses --------------------------------------------------------------------------------------


class PromptTokensDetails(msgspec.Struct):
    cached_tokens: int = 0


class CompletionTokensDetails(msgspec.Struct):
    reasoning_tokens: int = 0


class CompletionUsage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails


class ResponseToolCall(msgspec.Struct):
    id: str
    function: FunctionCall
    type: str = "function"


class AssistantMessage(msgspec.Struct):
    role: str
    content: str | None
    refusal: None = None
    tool_calls: list[ResponseToolCall] | msgspec.UnsetType = msgspec.UNSET
    reasoning_content: str | msgspec.UnsetType = msgspec.UNSET


class Choice(msgspec.Struct):
    index: int
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


class ChatCompletion(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    object: str = "chat.completion"
    cost_usd: float | msgspec.UnsetType | None = msgspec.UNSET


class TextChoice(msgspec.Struct):
    index: int
    text: str
    finish_reason: str | None
    logprobs: None = None


class TextCompletion(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[TextChoice]
    usage: CompletionUsage | None = None
    object: str = "text_completion"


class Model(msgspec.Struct):
    id: str
    created: int = 0
    owned_by: str = "llm-sidecar"
    object: str = "model"


class ModelList(msgspec.Struct):
    data: list[Model]
    object: str = "list"


class InvalidRequest(ValueError):
    """The request cannot be translated; the message says why, `param` which field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


# --- request → CompleteParams -----------------------------------------------------------------------


def _text_of(content: str | list[ContentPart] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(p.text or "" for p in content if p.type == "text")


def _parts(content: str | list[ContentPart] | None, where: str) -> str | list[dict[str, Any]] | None:
    if content is None or isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        if part.type == "text":
            parts.append({"type": "text", "text": part.text or ""})
        elif part.type == "image_url" and part.image_url is not None:
            parts.append({"type": "image", "url": part.image_url.url})
        else:
            raise InvalidRequest(
                f"Content part type {part.type!r} is not supported.", f"{where}.content[{i}]"
            )
    return parts


def _arguments(text: str) -> tuple[dict[str, Any], str | None]:
    try:
        value = msgspec.json.decode(text or "{}")
    except msgspec.DecodeError:
        return {}, text
    return (value, None) if isinstance(value, dict) else ({}, text)


def message(msg: ChatMessage, where: str) -> dict[str, Any]:
    role = "system" if msg.role == "developer" else msg.role
    out: dict[str, Any] = {"role": role}
    if role == "tool":
        out["content"] = _text_of(msg.content)
        out["tool_call_id"] = msg.tool_call_id
        return out
    if role == "system":
        out["content"] = _text_of(msg.content)
        return out
    out["content"] = _parts(msg.content, where)
    if msg.name:
        out["name"] = msg.name
    if msg.tool_calls:
        calls = []
        for call in msg.tool_calls:
            args, raw = _arguments(call.function.arguments)
            entry: dict[str, Any] = {"id": call.id, "name": call.function.name, "arguments": args}
            if raw is not None:
                entry["raw_arguments"] = raw
            calls.append(entry)
        out["tool_calls"] = calls
    return out


def _tool_choice(choice: str | NamedToolChoice | None) -> Any:
    if choice is None or isinstance(choice, str):
        return choice
    return {"name": choice.function.name}


def to_params(req: ChatCompletionRequest, model: str) -> dict[str, Any]:
    """The `complete`/`stream` params (as builtins, for validation by the caller) of a request."""
    if req.n not in (None, 1):
        raise InvalidRequest("Only n = 1 is supported.", "n")
    if not req.messages:
        raise InvalidRequest("`messages` must not be empty.", "messages")
    params: dict[str, Any] = {
        "model": model,
        "messages": [message(m, f"messages[{i}]") for i, m in enumerate(req.messages)],
    }
    max_tokens = req.max_completion_tokens or req.max_tokens
    for name, value in (
        ("max_tokens", max_tokens),
        ("temperature", req.temperature),
        ("top_p", req.top_p),
        ("stop", req.stop),
        ("tool_choice", _tool_choice(req.tool_choice)),
    ):
        if value is not None:
            params[name] = value
    if req.tools:
        params["tools"] = [
            {
                "name": t.function.name,
                "description": t.function.description or "",
                "parameters": t.function.parameters or {"type": "object", "properties": {}},
            }
            for t in req.tools
        ]
    if req.reasoning_effort:
        params["reasoning"] = {"effort": req.reasoning_effort}
    return params


def completion_to_params(req: CompletionRequest, model: str) -> dict[str, Any]:
    if req.n not in (None, 1):
        raise InvalidRequest("Only n = 1 is supported.", "n")
    prompt = req.prompt if isinstance(req.prompt, str) else "".join(req.prompt)
    params: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    for name, value in (
        ("max_tokens", req.max_tokens),
        ("temperature", req.temperature),
        ("top_p", req.top_p),
        ("stop", req.stop),
    ):
        if value is not None:
            params[name] = value
    return params


# --- ChatResult → response --------------------------------------------------------------------------


_ID_PREFIX = os.urandom(6).hex()
_ids = itertools.count(1)


def new_id(prefix: str = "chatcmpl-") -> str:
    """Unique in this process and across restarts (a random prefix), without a syscall per id."""
    return f"{prefix}{_ID_PREFIX}{next(_ids):012x}"


def usage(u: Usage) -> CompletionUsage:
    return CompletionUsage(
        prompt_tokens=u.input_tokens,
        completion_tokens=u.output_tokens,
        total_tokens=u.input_tokens + u.output_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=u.cache_read_tokens),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=u.reasoning_tokens),
    )


def _tool_calls(result: ChatResult) -> list[ResponseToolCall]:
    return [
        ResponseToolCall(
            id=c.id,
            function=FunctionCall(
                name=c.name,
                arguments=c.raw_arguments
                if c.raw_arguments is not None
                else msgspec.json.encode(c.arguments).decode(),
            ),
        )
        for c in result.tool_calls
    ]


def model_name(result: ChatResult) -> str:
    return f"{result.provider}:{result.model}"


def response(result: ChatResult, *, response_id: str, created: int) -> ChatCompletion:
    calls = _tool_calls(result)
    msg = AssistantMessage(
        role="assistant",
        content=result.text if (result.text or not calls) else None,
        tool_calls=calls if calls else msgspec.UNSET,
        reasoning_content=result.thinking if result.thinking else msgspec.UNSET,
    )
    return ChatCompletion(
        id=response_id,
        created=created,
        model=model_name(result),
        choices=[Choice(index=0, message=msg, finish_reason=result.finish_reason)],
        usage=usage(result.usage),
        cost_usd=result.cost_usd,
    )


def text_response(result: ChatResult, *, response_id: str, created: int) -> TextCompletion:
    return TextCompletion(
        id=response_id,
        created=created,
        model=model_name(result),
        choices=[TextChoice(index=0, text=result.text, finish_reason=result.finish_reason)],
        usage=usage(result.usage),
    )


# --- stream events → SSE chunks ---------------------------------------------------------------------

_encode = msgspec.json.Encoder().encode


class ChunkEncoder:
    """Stream events of one request as `chat.completion.chunk` (or legacy `text_completion`) SSE lines."""

    __slots__ = ("_head", "_include_usage", "_legacy", "_model", "_started", "_tool_index", "usage")

    def __init__(
        self, model: str, *, include_usage: bool, legacy: bool = False, response_id: str | None = None
    ) -> None:
        rid = response_id or new_id("cmpl-" if legacy else "chatcmpl-")
        kind = "text_completion" if legacy else "chat.completion.chunk"
        self._model = model
        # Every chunk begins the same way; only `choices` (and `usage`) change.
        self._head = b'{"id":' + _encode(rid) + b',"object":"' + kind.encode() + b'","created":'
        self._head += str(int(time.time())).encode() + b',"model":' + _encode(model) + b',"choices":'
        self._include_usage = include_usage
        self._legacy = legacy
        self._started = False
        self._tool_index: dict[int, int] = {}
        self.usage: UsageEvent | None = None

    def _chunk(self, choices: bytes) -> bytes:
        tail = b',"usage":null}' if self._include_usage else b"}"
        return b"data: " + self._head + choices + tail + b"\n\n"

    def _delta(self, delta: dict[str, Any]) -> bytes:
        if self._legacy:
            choice = {"index": 0, "text": delta.get("content", ""), "logprobs": None, "finish_reason": None}
        else:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        return self._chunk(b"[" + _encode(choice) + b"]")

    def event(self, event: StreamEvent) -> bytes:
        """The SSE bytes of one event (empty for events a client is not shown)."""
        if isinstance(event, TextDelta):
            if not event.text:
                return b""
            return self._first() + self._delta({"content": event.text})
        if isinstance(event, ThinkingDelta):
            if self._legacy or not event.text:
                return b""
            return self._first() + self._delta({"reasoning_content": event.text})
        if isinstance(event, ToolCallDelta):
            if self._legacy:
                return b""
            index = self._tool_index.setdefault(event.index, len(self._tool_index))
            call: dict[str, Any] = {"index": index}
            if event.id is not None:
                call["id"] = event.id
                call["type"] = "function"
            fn: dict[str, Any] = {}
            if event.name is not None:
                fn["name"] = event.name
            if event.arguments_delta is not None or event.id is not None:
                fn["arguments"] = event.arguments_delta or ""
            if fn:
                call["function"] = fn
            return self._first() + self._delta({"tool_calls": [call]})
        if isinstance(event, UsageEvent):
            self.usage = event
        return b""

    def _first(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        if self._legacy:
            return b""
        return self._delta({"role": "assistant", "content": ""})

    def finish(self, result: ChatResult) -> bytes:
        """The finish chunk, the usage chunk when asked for, and `[DONE]`."""
        out = self._first()
        if self._legacy:
            choice: dict[str, Any] = {
                "index": 0,
                "text": "",
                "logprobs": None,
                "finish_reason": result.finish_reason,
            }
        else:
            choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": result.finish_reason}
        out += self._chunk(b"[" + _encode(choice) + b"]")
        if self._include_usage:
            out += b"data: " + self._head + b'[],"usage":' + _encode(usage(result.usage)) + b"}\n\n"
        return out + b"data: [DONE]\n\n"

    @staticmethod
    def error(body: dict[str, Any]) -> bytes:
        """A failure after the stream began: the SDK raises on an `error` object in the stream."""
        return b"data: " + _encode(body) + b"\n\n"


def model_list(ids: list[str]) -> ModelList:
    return ModelList(data=[Model(id=i) for i in ids])
