"""Translation between OpenAI's public API shapes (`openai_types`) and the sidecar's chat and
embed types: a Chat Completions or legacy Completions request into `CompleteParams` builtins, a
`ChatResult` into a `chat.completion` or `text_completion`, and embeddings (the model list is
`model_lists`').

Pure: no I/O. Stream chunks are `openai_stream`'s.

Must not know: HTTP, providers' wire formats, how a request is run.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import msgspec

from sidecar.gateway.errors import InvalidRequest
from sidecar.gateway.openai_types import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    CompletionRequest,
    CompletionTokensDetails,
    CompletionUsage,
    ContentPart,
    Embedding,
    EmbeddingList,
    EmbeddingRequest,
    EmbeddingUsage,
    FunctionCall,
    NamedToolChoice,
    PromptTokensDetails,
    ResponseToolCall,
    TextChoice,
    TextCompletion,
)
from sidecar.wire.base import Usage
from sidecar.wire.chat import ChatResult, ToolCall

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


def tool_call_input(call_id: str, name: str, arguments: str | None) -> dict[str, Any]:
    """A tool call a client gives back (its arguments as the JSON text it received) as the
    sidecar's `ToolCallInput` builtins; text that is not a JSON object travels as `raw_arguments`."""
    entry: dict[str, Any] = {"id": call_id, "name": name, "arguments": {}}
    try:
        value = msgspec.json.decode(arguments or "{}")
    except msgspec.DecodeError:
        value = None
    if isinstance(value, dict):
        entry["arguments"] = value
    else:
        entry["raw_arguments"] = arguments
    return entry


def arguments_text(call: ToolCall) -> str:
    """A tool call's arguments as the JSON text the client is given: as the model wrote them."""
    return (
        call.raw_arguments if call.raw_arguments is not None else msgspec.json.encode(call.arguments).decode()
    )


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
        out["tool_calls"] = [
            tool_call_input(call.id, call.function.name, call.function.arguments) for call in msg.tool_calls
        ]
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
    fmt = req.response_format
    if fmt is not None and fmt.type == "json_object":
        params["response_format"] = {"type": "json_object"}
    elif fmt is not None and fmt.type == "json_schema":
        if fmt.json_schema is None or fmt.json_schema.schema is None:
            raise InvalidRequest("A `json_schema` response format needs its `schema`.", "response_format")
        spec = fmt.json_schema
        params["response_format"] = json_schema_format(spec.name, spec.schema, spec.strict)
    return params


def json_schema_format(
    name: str | None, schema: dict[str, Any] | None, strict: bool | None
) -> dict[str, Any]:
    """The sidecar's `response_format` for a JSON Schema, as builtins."""
    out: dict[str, Any] = {"type": "json_schema", "schema": schema}
    if name:
        out["name"] = name
    if strict is not None:
        out["strict"] = strict
    return out


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
            function=FunctionCall(name=c.name, arguments=arguments_text(c)),
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
