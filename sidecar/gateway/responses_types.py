"""OpenAI's Responses API shapes the gateway reads and writes (`POST /v1/responses`): the request
with its input items, and the `response` object with its output items. Also what `/openapi.json`
is generated from. Stream events are `responses_stream`'s.

Pure data: no translation (`responses_api`), no I/O.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# --- requests ---------------------------------------------------------------------------------------


class InputContent(msgspec.Struct, omit_defaults=True):
    """`input_text`, `input_image` (`image_url`: a URL or a data URL), and in an assistant message
    given back, `output_text` or `refusal`."""

    type: str
    text: str | None = None
    image_url: str | None = None
    refusal: str | None = None
    detail: str | None = None


class SummaryText(msgspec.Struct):
    text: str
    type: str = "summary_text"


class InputItem(msgspec.Struct, omit_defaults=True):
    """One input item: a message (`type` "message" or absent, with `role` and `content`), a
    `function_call` the model made, its `function_call_output`, or a `reasoning` item given back."""

    type: str | None = None
    role: Literal["user", "assistant", "system", "developer"] | None = None
    content: str | list[InputContent] | None = None
    # function_call, function_call_output
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[InputContent] | None = None
    # reasoning: what the sidecar needs to continue the turn (a provider's signatures) travels here
    encrypted_content: str | None = None
    id: str | None = None
    status: str | None = None
    summary: list[SummaryText] | None = None


class FunctionTool(msgspec.Struct, omit_defaults=True):
    """A tool: only `function` tools can be relayed to every provider."""

    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionChoice(msgspec.Struct, omit_defaults=True):
    type: str
    name: str | None = None


class ReasoningConfig(msgspec.Struct, omit_defaults=True):
    effort: str | None = None
    summary: str | None = None


class TextFormat(msgspec.Struct, omit_defaults=True):
    """`{"type": "text"}`, `{"type": "json_object"}`, or `{"type": "json_schema", "name", "schema",
    "strict"?}`."""

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class TextConfig(msgspec.Struct, omit_defaults=True):
    format: TextFormat | None = None


class ResponsesRequest(msgspec.Struct, omit_defaults=True):
    """Fields the gateway uses; others (`include`, `truncation`, `user`…) are accepted and
    ignored."""

    model: str
    input: str | list[InputItem]
    instructions: str | None = None
    stream: bool = False
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: str | FunctionChoice | None = None
    parallel_tool_calls: bool | None = None
    reasoning: ReasoningConfig | None = None
    text: TextConfig | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None


# --- the response -----------------------------------------------------------------------------------


class OutputText(msgspec.Struct):
    text: str
    type: str = "output_text"
    annotations: list[Any] = msgspec.field(default_factory=list)
    logprobs: list[Any] = msgspec.field(default_factory=list)


class ReasoningText(msgspec.Struct):
    text: str
    type: str = "reasoning_text"


class OutputMessage(msgspec.Struct, tag="message", tag_field="type"):
    id: str
    content: list[OutputText]
    status: str = "completed"
    role: str = "assistant"


class ReasoningItem(msgspec.Struct, tag="reasoning", tag_field="type"):
    id: str
    content: list[ReasoningText]
    summary: list[SummaryText] = msgspec.field(default_factory=list)
    encrypted_content: str | None = None
    status: str = "completed"


class FunctionCallItem(msgspec.Struct, tag="function_call", tag_field="type"):
    id: str
    call_id: str
    name: str
    arguments: str
    status: str = "completed"


OutputItem = OutputMessage | ReasoningItem | FunctionCallItem


class InputTokensDetails(msgspec.Struct):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(msgspec.Struct):
    reasoning_tokens: int = 0


class ResponseUsage(msgspec.Struct):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class IncompleteDetails(msgspec.Struct):
    reason: str


class ResponseError(msgspec.Struct):
    code: str
    message: str


class Response(msgspec.Struct):
    """A `response` object: `status` "in_progress" in the first stream events, then "completed",
    "incomplete" (`incomplete_details` says why) or "failed" (`error`)."""

    id: str
    created_at: int
    model: str
    output: list[OutputItem]
    status: str
    tools: list[FunctionTool]
    tool_choice: str | FunctionChoice
    parallel_tool_calls: bool
    usage: ResponseUsage | None = None
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    reasoning: ReasoningConfig | None = None
    text: TextConfig | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    previous_response_id: str | None = None
    store: bool = True
    object: str = "response"
    cost_usd: float | msgspec.UnsetType | None = msgspec.UNSET
