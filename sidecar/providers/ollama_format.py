"""Ollama's native HTTP API (`/api/chat`, `/api/tags`, `/api/ps`, `/api/pull`), both ways.

Pure: `build_body` turns contract params into an `/api/chat` body; `ChatDecoder` turns the NDJSON
lines of a chat answer into provider events (`decode_completion` does a whole non-streamed
answer); `decode_tags`, `decode_ps`, `PullDecoder` read the management routes.

Mapping notes:

* Images travel inline as base64 in the message's `images` list; a `data:` URL is unpacked, an
  http(s) URL is refused (Ollama does not fetch images).
* Tool calls carry their `arguments` as JSON objects both ways. A tool result is
  `{"role": "tool", "content", "tool_name"}`: the name is the message's `name`, else the name of
  the call its `tool_call_id` answers. Ids are sent back when known; Ollama versions that send no
  call ids get generated ones.
* Ollama has no `tool_choice`: `"none"` sends no tools, `{"name": ...}` sends only that tool,
  `"auto"`/`"required"` send them all.
* `reasoning` becomes `think`: an effort of none -> false, minimal/low -> "low", medium -> "medium",
  high and above -> "high"; a budget alone -> true (false for 0).
* `response_format` becomes `format`: `"json"`, or the JSON Schema itself.
* `max_tokens`, `temperature`, `top_p`, `stop` go into `options` (`num_predict`, ..., `stop` a list).
* Usage comes once, on the `done: true` line: `prompt_eval_count` in, `eval_count` out (thinking
  included; Ollama does not break it down).

Must not know: HTTP, keys, the protocol.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any, Final

import msgspec

from sidecar.core.assemble import Finish, ProviderEvent, ResponseMeta
from sidecar.core.pull_progress import Progress
from sidecar.errors import ProviderError, SidecarError
from sidecar.providers.content import stop_list
from sidecar.providers.errors import provider_error
from sidecar.wire.chat import (
    CompleteParams,
    FinishReason,
    ImagePart,
    JsonSchemaFormat,
    Message,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ToolCallDelta,
    ToolChoiceName,
    UsageEvent,
)
from sidecar.wire.local import OllamaLoaded, OllamaModel

_FINISH: Final[dict[str, FinishReason]] = {"stop": "stop", "length": "length"}
_THINK: Final[dict[str, bool | str]] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


# --- request ------------------------------------------------------------------------------------


def _image(part: ImagePart) -> str:
    if part.data:
        return part.data
    url = part.url or ""
    if url.startswith("data:"):
        header, sep, payload = url.partition(",")
        if sep and header.endswith(";base64") and payload:
            return payload
        raise SidecarError(
            "invalid_request", "An image `data:` URL for Ollama must be base64-encoded.", field="messages"
        )
    raise SidecarError(
        "invalid_request",
        "Ollama needs images inline: send the image as base64 `data` (with `media_type`) instead of a URL; "
        "Ollama does not download images.",
        field="messages",
    )


def _text_and_images(content: str | list[TextPart | ImagePart] | None) -> tuple[str, list[str]]:
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    images: list[str] = []
    for part in content:
        if isinstance(part, TextPart):
            texts.append(part.text)
        else:
            images.append(_image(part))
    return "".join(texts), images


def _message(msg: Message, call_names: dict[str, str]) -> dict[str, Any]:
    text, images = _text_and_images(msg.content)
    out: dict[str, Any] = {"role": msg.role, "content": text}
    if images:
        out["images"] = images
    if msg.role == "assistant" and msg.tool_calls:
        calls = []
        for call in msg.tool_calls:
            call_names[call.id] = call.name
            calls.append({"id": call.id, "function": {"name": call.name, "arguments": call.arguments}})
        out["tool_calls"] = calls
    elif msg.role == "tool":
        name = msg.name or (call_names.get(msg.tool_call_id) if msg.tool_call_id else None)
        if name:
            out["tool_name"] = name
        if msg.tool_call_id:
            out["tool_call_id"] = msg.tool_call_id
    return out


def think_value(params: CompleteParams) -> bool | str | None:
    """The `think` field for the request's `reasoning` (None: leave it to the model)."""
    reasoning = params.reasoning
    if reasoning is None:
        return None
    if reasoning.effort is not None:
        return _THINK[reasoning.effort]
    if reasoning.budget_tokens is not None:
        return reasoning.budget_tokens > 0
    return None


def _tools(params: CompleteParams) -> list[dict[str, Any]]:
    if not params.tools or params.tool_choice == "none":
        return []
    tools = params.tools
    if isinstance(params.tool_choice, ToolChoiceName):
        wanted = params.tool_choice.name
        tools = [t for t in tools if t.name == wanted]
        if not tools:
            raise SidecarError(
                "invalid_request",
                f"tool_choice names '{wanted}', which is not in `tools`.",
                field="tool_choice",
            )
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in tools
    ]


def build_body(model: str, params: CompleteParams, *, stream: bool) -> dict[str, Any]:
    """The `/api/chat` body. `stream` is always explicit: Ollama streams when it is absent."""
    call_names: dict[str, str] = {}
    body: dict[str, Any] = {
        "model": model,
        "messages": [_message(m, call_names) for m in params.messages],
        "stream": stream,
    }
    tools = _tools(params)
    if tools:
        body["tools"] = tools
    think = think_value(params)
    if think is not None:
        body["think"] = think
    fmt = params.response_format
    if fmt is not None:
        body["format"] = fmt.schema if isinstance(fmt, JsonSchemaFormat) else "json"
    options: dict[str, Any] = {}
    if params.max_tokens is not None:
        options["num_predict"] = params.max_tokens
    if params.temperature is not None:
        options["temperature"] = params.temperature
    if params.top_p is not None:
        options["top_p"] = params.top_p
    if params.stop is not None:
        options["stop"] = stop_list(params.stop)
    if options:
        body["options"] = options
    return body


# --- chat answers -------------------------------------------------------------------------------


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: Any = None


class _ToolCall(msgspec.Struct):
    id: str | None = None
    function: _Function | None = None


class _Message(msgspec.Struct):
    role: str | None = None
    content: str | None = None
    thinking: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _ChatLine(msgspec.Struct):
    model: str | None = None
    message: _Message | None = None
    done: bool = False
    done_reason: str | None = None
    prompt_eval_count: int | None = None
    eval_count: int | None = None
    error: Any = None


_chat_line: Final = msgspec.json.Decoder(_ChatLine)


def not_json(provider: str, what: str) -> ProviderError:
    return provider_error(provider, 0, {"error": f"sent {what} that is not valid JSON"})


class ChatDecoder:
    """Turns the lines of an `/api/chat` answer into provider events; `done` once the last came."""

    def __init__(self, provider: str, new_id: Callable[[], str] = new_call_id) -> None:
        self.provider = provider
        self._new_id = new_id
        self._calls = 0
        self._meta_sent = False
        self.done = False

    def feed(self, line: bytes) -> list[ProviderEvent]:
        try:
            chunk = _chat_line.decode(line)
        except msgspec.DecodeError:
            raise not_json(self.provider, "a stream line") from None
        if chunk.error:
            raise provider_error(self.provider, 0, {"error": chunk.error})
        out: list[ProviderEvent] = []
        if not self._meta_sent and chunk.model:
            out.append(ResponseMeta(None, chunk.model))
            self._meta_sent = True
        message = chunk.message
        if message is not None:
            if message.thinking:
                out.append(ThinkingDelta(text=message.thinking))
            if message.content:
                out.append(TextDelta(text=message.content))
            for call in message.tool_calls or ():
                out.append(self._tool_call(call))
        if chunk.done:
            self.done = True
            reason: FinishReason = (
                "tool_calls" if self._calls else _FINISH.get(chunk.done_reason or "stop", "stop")
            )
            out.append(Finish(reason, chunk.done_reason))
            out.append(
                UsageEvent(
                    input_tokens=chunk.prompt_eval_count or 0,
                    output_tokens=chunk.eval_count or 0,
                    cache_read_tokens=0,
                    cache_write_tokens=0,
                    reasoning_tokens=0,
                )
            )
        return out

    def _tool_call(self, call: _ToolCall) -> ToolCallDelta:
        fn = call.function or _Function()
        args = fn.arguments if fn.arguments is not None else {}
        # Some models' templates hand back a JSON string: keep it as the argument text.
        text = args if isinstance(args, str) else msgspec.json.encode(args).decode()
        index = self._calls
        self._calls += 1
        return ToolCallDelta(
            index=index, id=call.id or self._new_id(), name=fn.name or None, arguments_delta=text
        )


def decode_completion(
    provider: str, body: bytes, new_id: Callable[[], str] = new_call_id
) -> list[ProviderEvent]:
    """A whole (`"stream": false`) answer as the events a stream would give."""
    decoder = ChatDecoder(provider, new_id)
    events = decoder.feed(body)
    if not decoder.done:
        raise provider_error(provider, 0, {"error": "answered without `done: true`"})
    return events


# --- management routes --------------------------------------------------------------------------


class _Details(msgspec.Struct):
    family: str | None = None
    parameter_size: str | None = None
    quantization_level: str | None = None


class _Tag(msgspec.Struct):
    name: str | None = None
    model: str | None = None
    size: int | None = None
    modified_at: str | None = None
    digest: str | None = None
    details: _Details | None = None


class _Tags(msgspec.Struct):
    models: list[_Tag] | None = None


class _Running(msgspec.Struct):
    name: str | None = None
    model: str | None = None
    size: int | None = None
    size_vram: int | None = None
    expires_at: str | None = None


class _Ps(msgspec.Struct):
    models: list[_Running] | None = None


class _Version(msgspec.Struct):
    version: str | None = None


_tags: Final = msgspec.json.Decoder(_Tags)
_ps: Final = msgspec.json.Decoder(_Ps)
_version: Final = msgspec.json.Decoder(_Version)


def decode_tags(provider: str, body: bytes) -> list[OllamaModel]:
    """`GET /api/tags` -> the installed models."""
    try:
        tags = _tags.decode(body)
    except msgspec.DecodeError:
        raise not_json(provider, "a model list") from None
    out = []
    for tag in tags.models or ():
        name = tag.name or tag.model
        if not name:
            continue
        details = tag.details or _Details()
        out.append(
            OllamaModel(
                name=name,
                model=tag.model or name,
                size=tag.size or 0,
                modified_at=tag.modified_at,
                digest=tag.digest,
                family=details.family or None,
                parameter_size=details.parameter_size or None,
                quantization=details.quantization_level or None,
            )
        )
    return out


def decode_ps(provider: str, body: bytes) -> list[OllamaLoaded]:
    """`GET /api/ps` -> the models loaded in memory."""
    try:
        ps = _ps.decode(body)
    except msgspec.DecodeError:
        raise not_json(provider, "a list of loaded models") from None
    return [
        OllamaLoaded(
            name=m.name or m.model or "", size=m.size, size_vram=m.size_vram, expires_at=m.expires_at
        )
        for m in ps.models or ()
        if m.name or m.model
    ]


def decode_version(provider: str, body: bytes) -> str | None:
    """`GET /api/version` -> `"0.5.1"`."""
    try:
        return _version.decode(body).version
    except msgspec.DecodeError:
        raise not_json(provider, "its version") from None


# --- pull ---------------------------------------------------------------------------------------


class _PullLine(msgspec.Struct):
    status: str | None = None
    digest: str | None = None
    total: int | None = None
    completed: int | None = None
    error: Any = None


_pull_line: Final = msgspec.json.Decoder(_PullLine)


class PullDecoder:
    """Turns the lines of an `/api/pull` stream into `Progress`; `succeeded` once `success` came.

    An `{"error": ...}` line (Ollama's way of failing after the stream began) is raised.
    """

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.succeeded = False

    def feed(self, line: bytes) -> Progress | None:
        try:
            item = _pull_line.decode(line)
        except msgspec.DecodeError:
            raise not_json(self.provider, "a progress line") from None
        if item.error:
            raise provider_error(self.provider, 0, {"error": item.error})
        if not item.status:
            return None
        if item.status == "success":
            self.succeeded = True
        return Progress(item.status, item.digest or None, item.total, item.completed)
