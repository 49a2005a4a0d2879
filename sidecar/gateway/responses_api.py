"""Translation between OpenAI's Responses API (`responses_types`) and the sidecar's chat types: a
`POST /v1/responses` request into `CompleteParams` builtins, a `ChatResult` into a `response`.

A request carries its conversation in `input`, after that of the response it continues
(`previous_response_id`, kept by `response_store`). An assistant turn arrives as several items
(its message, each function call, a reasoning item); they become one assistant message. The
provider state a next turn needs (a result's `continuation`: Anthropic's signed thinking, Gemini's
thought signatures) travels as a reasoning item's `encrypted_content` and comes back onto that
assistant message. The model's thinking is given as the reasoning item's `summary` when the
request asks for one (`reasoning.summary`, as Codex CLI does; Claude 4 and Gemini show summarized
thinking), else as its `reasoning_text` content.

Pure: no I/O. Stream events are `responses_stream`'s.

Must not know: HTTP, providers' wire formats, how a request is run.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

import msgspec

from sidecar.gateway.errors import InvalidRequest
from sidecar.gateway.openai_api import arguments_text, json_schema_format, new_id, tool_call_input
from sidecar.gateway.responses_types import (
    FunctionCallItem,
    FunctionChoice,
    IncompleteDetails,
    InputContent,
    InputItem,
    InputTokensDetails,
    OutputItem,
    OutputMessage,
    OutputText,
    OutputTokensDetails,
    ReasoningItem,
    ReasoningText,
    Response,
    ResponseError,
    ResponsesRequest,
    ResponseUsage,
    SummaryText,
    TextConfig,
    TextFormat,
)
from sidecar.wire.base import Usage
from sidecar.wire.chat import ChatResult

_CONTINUATION_TAG: Final = "llm-sidecar:"  # marks encrypted_content the sidecar wrote
INCOMPLETE: Final = {"length": "max_output_tokens", "content_filter": "content_filter"}
"""finish_reason → `incomplete_details.reason`; other reasons complete the response."""


# --- request → CompleteParams -----------------------------------------------------------------------


def encode_continuation(continuation: dict[str, Any]) -> str:
    return _CONTINUATION_TAG + base64.urlsafe_b64encode(msgspec.json.encode(continuation)).decode()


def decode_continuation(text: str | None) -> dict[str, Any] | None:
    """The continuation in a reasoning item the sidecar wrote; None for anything else (a real
    provider's encrypted reasoning means nothing to another)."""
    if not text or not text.startswith(_CONTINUATION_TAG):
        return None
    try:
        value = msgspec.json.decode(base64.urlsafe_b64decode(text[len(_CONTINUATION_TAG) :]))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        return None
    return value if isinstance(value, dict) else None


def _text(content: str | list[InputContent] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(
        p.text or p.refusal or "" for p in content if p.type in ("input_text", "output_text", "refusal")
    )


def _parts(content: str | list[InputContent] | None, where: str) -> str | list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return content or ""
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        if part.type in ("input_text", "output_text"):
            parts.append({"type": "text", "text": part.text or ""})
        elif part.type == "refusal":
            parts.append({"type": "text", "text": part.refusal or ""})
        elif part.type == "input_image" and part.image_url:
            parts.append({"type": "image", "url": part.image_url})
        else:
            raise InvalidRequest(
                f"Content part type {part.type!r} is not supported.", f"{where}.content[{i}]"
            )
    return parts


class _Conversation:
    """Input items folded into the sidecar's messages, an assistant turn's items into one."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._turn: dict[str, Any] | None = None  # the assistant message being gathered
        self._continuation: dict[str, Any] | None = None  # for the next assistant turn

    def _assistant(self) -> dict[str, Any]:
        if self._turn is None:
            self._turn = {"role": "assistant", "content": None}
            if self._continuation is not None:
                self._turn["continuation"], self._continuation = self._continuation, None
            self.messages.append(self._turn)
        return self._turn

    def add(self, item: InputItem, where: str) -> None:
        kind = item.type or "message"
        if kind == "message":
            if item.role is None:
                raise InvalidRequest("A message needs a `role`.", f"{where}.role")
            if item.role == "assistant":
                turn = self._assistant()
                text = _text(item.content)
                turn["content"] = (turn["content"] or "") + text if text else turn["content"]
                return
            self._turn = None
            role = "system" if item.role == "developer" else item.role
            content = _text(item.content) if role == "system" else _parts(item.content, where)
            self.messages.append({"role": role, "content": content})
        elif kind == "function_call":
            if not item.call_id or not item.name:
                raise InvalidRequest("A function_call needs `call_id` and `name`.", where)
            call = tool_call_input(item.call_id, item.name, item.arguments)
            self._assistant().setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            if not item.call_id:
                raise InvalidRequest("A function_call_output needs `call_id`.", f"{where}.call_id")
            self._turn = None
            self.messages.append(
                {"role": "tool", "tool_call_id": item.call_id, "content": _text(item.output)}
            )
        elif kind == "reasoning":
            continuation = decode_continuation(item.encrypted_content)
            if continuation is None:
                return  # its text is the model's own; only what a provider needs goes back
            if self._turn is not None:
                self._turn["continuation"] = continuation
            else:
                self._continuation = continuation
        else:
            raise InvalidRequest(
                f"Input item type {kind!r} is not supported: the gateway relays messages, function "
                "calls and their outputs, and reasoning.",
                f"{where}.type",
            )


def _tool_choice(choice: str | FunctionChoice | None) -> Any:
    if choice is None or isinstance(choice, str):
        return choice
    if choice.type == "function" and choice.name:
        return {"name": choice.name}
    raise InvalidRequest(f"tool_choice type {choice.type!r} is not supported.", "tool_choice")


def conversation(req: ResponsesRequest, before: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The sidecar's messages of the conversation so far: those of the response the request
    continues (`before`), then its `input`. Not its `instructions`, which hold for this request
    alone."""
    folded = _Conversation()
    folded.messages = list(before or ())
    if isinstance(req.input, str):
        folded.messages.append({"role": "user", "content": req.input})
    else:
        for i, item in enumerate(req.input):
            folded.add(item, f"input[{i}]")
    if len(folded.messages) == len(before or ()):
        raise InvalidRequest("`input` must not be empty.", "input")
    return folded.messages


def assistant_message(result: ChatResult) -> dict[str, Any]:
    """The answer as the assistant message a continuing request puts in the conversation."""
    turn: dict[str, Any] = {
        "role": "assistant",
        "content": result.text if result.text or not result.tool_calls else None,
    }
    if result.tool_calls:
        turn["tool_calls"] = [msgspec.to_builtins(call) for call in result.tool_calls]
    if result.continuation:
        turn["continuation"] = result.continuation
    return turn


def to_params(req: ResponsesRequest, model: str, turns: list[dict[str, Any]]) -> dict[str, Any]:
    """The `complete`/`stream` params (as builtins, for validation by the caller) of a request
    whose conversation is `turns` (`conversation`)."""
    messages = [{"role": "system", "content": req.instructions}, *turns] if req.instructions else turns
    params: dict[str, Any] = {"model": model, "messages": messages}
    for name, value in (
        ("max_tokens", req.max_output_tokens),
        ("temperature", req.temperature),
        ("top_p", req.top_p),
        ("tool_choice", _tool_choice(req.tool_choice)),
    ):
        if value is not None:
            params[name] = value
    if req.tools:
        tools = []
        for i, tool in enumerate(req.tools):
            if tool.type != "function" or not tool.name:
                raise InvalidRequest(
                    f"Tool type {tool.type!r} is not supported: the gateway relays function tools.",
                    f"tools[{i}].type",
                )
            tools.append(
                {
                    "name": tool.name,
                    "description": tool.description or "",
                    "parameters": tool.parameters or {"type": "object", "properties": {}},
                }
            )
        params["tools"] = tools
    if req.reasoning is not None and req.reasoning.effort:
        params["reasoning"] = {"effort": req.reasoning.effort}
    fmt = req.text.format if req.text is not None else None
    if fmt is not None and fmt.type == "json_object":
        params["response_format"] = {"type": "json_object"}
    elif fmt is not None and fmt.type == "json_schema":
        if fmt.schema is None:
            raise InvalidRequest("A `json_schema` format needs its `schema`.", "text.format.schema")
        params["response_format"] = json_schema_format(fmt.name, fmt.schema, fmt.strict)
    return params


# --- ChatResult → response --------------------------------------------------------------------------


def usage(u: Usage) -> ResponseUsage:
    return ResponseUsage(
        input_tokens=u.input_tokens,
        input_tokens_details=InputTokensDetails(
            cached_tokens=u.cache_read_tokens, cache_write_tokens=u.cache_write_tokens
        ),
        output_tokens=u.output_tokens,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=u.reasoning_tokens),
        total_tokens=u.input_tokens + u.output_tokens,
    )


def summarized(req: ResponsesRequest) -> bool:
    """Whether the request asks for the reasoning as a summary (`reasoning.summary`)."""
    return req.reasoning is not None and req.reasoning.summary not in (None, "none")


def reasoning_item(item_id: str, thinking: str, summary: bool, encrypted: str | None = None) -> ReasoningItem:
    """A reasoning item with `thinking` as its summary or as its content."""
    if not thinking:
        return ReasoningItem(id=item_id, content=[], encrypted_content=encrypted)
    if summary:
        return ReasoningItem(
            id=item_id, content=[], summary=[SummaryText(text=thinking)], encrypted_content=encrypted
        )
    return ReasoningItem(id=item_id, content=[ReasoningText(text=thinking)], encrypted_content=encrypted)


def output_items(result: ChatResult, summary: bool = False) -> list[OutputItem]:
    """The output items of a whole answer: its reasoning (with what the next turn needs; its text as
    a summary with `summary`), its message (when there is text, or nothing else), then each
    function call."""
    items: list[OutputItem] = []
    if result.thinking or result.continuation:
        encrypted = encode_continuation(result.continuation) if result.continuation else None
        items.append(reasoning_item(new_id("rs_"), result.thinking or "", summary, encrypted))
    if result.text or not result.tool_calls:
        items.append(OutputMessage(id=new_id("msg_"), content=[OutputText(text=result.text)]))
    for call in result.tool_calls:
        items.append(
            FunctionCallItem(
                id=new_id("fc_"), call_id=call.id, name=call.name, arguments=arguments_text(call)
            )
        )
    return items


def skeleton(req: ResponsesRequest, *, response_id: str, created_at: int, model: str) -> Response:
    """A response that echoes the request's settings, with no output yet (`in_progress`)."""
    return Response(
        id=response_id,
        created_at=created_at,
        model=model,
        output=[],
        status="in_progress",
        tools=req.tools or [],
        tool_choice=req.tool_choice or "auto",
        parallel_tool_calls=True if req.parallel_tool_calls is None else req.parallel_tool_calls,
        instructions=req.instructions,
        max_output_tokens=req.max_output_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        reasoning=req.reasoning,
        text=req.text or TextConfig(format=TextFormat(type="text")),
        metadata=req.metadata or {},
        previous_response_id=req.previous_response_id,
        store=req.store is not False,
    )


def finished(base: Response, result: ChatResult, output: list[OutputItem]) -> Response:
    """`base` completed (or incomplete, with why) by `result`, with `output`."""
    reason = INCOMPLETE.get(result.finish_reason)
    return msgspec.structs.replace(
        base,
        model=f"{result.provider}:{result.model}",
        output=output,
        status="completed" if reason is None else "incomplete",
        incomplete_details=None if reason is None else IncompleteDetails(reason=reason),
        usage=usage(result.usage),
        cost_usd=result.cost_usd,
    )


def failed(base: Response, error: dict[str, Any], output: list[OutputItem]) -> Response:
    """`base` failed with the OpenAI error body `error` (`{"error": {message, type, code}}`)."""
    inner = error.get("error") or {}
    code = "rate_limit_exceeded" if inner.get("type") == "rate_limit_error" else "server_error"
    return msgspec.structs.replace(
        base,
        output=output,
        status="failed",
        error=ResponseError(code=code, message=str(inner.get("message"))),
    )


def response(req: ResponsesRequest, result: ChatResult, *, response_id: str, created_at: int) -> Response:
    base = skeleton(req, response_id=response_id, created_at=created_at, model=req.model)
    return finished(base, result, output_items(result, summarized(req)))
