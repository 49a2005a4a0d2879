"""Wire types of `complete` and `stream`: messages, tools, results and stream events.

Must not know: providers' own formats, the protocol layer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from sidecar.wire.base import Params, Usage, Wire

Role = Literal["system", "user", "assistant", "tool"]
# `incomplete`: the upstream ended the answer without saying why (a stream closed with `[DONE]`
# but no finish reason): it may be cut short.
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "incomplete"]
Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]


class TextPart(Params, tag="text", tag_field="type"):
    text: str
    cache: bool = False


class ImagePart(Params, tag="image", tag_field="type"):
    """An image by `url` (http(s) or data URL), or inline as base64 `data` with its `media_type`."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    cache: bool = False


Part = TextPart | ImagePart


class ToolCall(Wire):
    """`arguments` is always an object, always present (`{}` for a tool without parameters); when a
    model produced arguments that are not valid JSON (a truncated answer, say) they are `{}` and the
    text is kept in `raw_arguments`."""

    id: str
    name: str
    arguments: dict[str, Any]  # no default: a default would be omitted from the wire
    raw_arguments: str | None = None


class ToolCallInput(ToolCall, forbid_unknown_fields=True):
    """A tool call the host sends back in an assistant message: `arguments` may be left out there
    (hosts echoing an older result that omitted `{}`), and then means `{}`."""

    arguments: dict[str, Any] = msgspec.field(default_factory=dict)


class Message(Params):
    """One turn. `continuation` is opaque provider state (thinking signatures, thought signatures):
    copy it from a result into the assistant message unchanged; adapters of other providers ignore it."""

    role: Role
    content: str | list[Part] | None = None
    tool_calls: list[ToolCallInput] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    cache: bool = False
    continuation: dict[str, Any] | None = None


class Tool(Params):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    description: str = ""
    parameters: dict[str, Any] = msgspec.field(default_factory=lambda: {"type": "object", "properties": {}})
    cache: bool = False


class ToolChoiceName(Params):
    name: str


ToolChoice = Literal["auto", "none", "required"] | ToolChoiceName


class Reasoning(Params):
    """How hard to think: `effort` for providers that take levels, `budget_tokens` for those that
    take a budget (each adapter converts the one it lacks from the other)."""

    effort: Effort | None = None
    budget_tokens: Annotated[int, msgspec.Meta(ge=0)] | None = None


class ResponseCache(Params):
    """Keep this request's answer for `ttl_s` seconds and answer the same request from it (an exact
    match of model, messages, tools, sampling settings and response format), whatever its
    temperature; 0 turns the cache off for this request even where config.toml turns it on."""

    ttl_s: Annotated[float, msgspec.Meta(ge=0, le=31_536_000)]


class JsonObjectFormat(Params, tag="json_object", tag_field="type"):
    """Ask for an answer that is a JSON object, of any shape."""


class JsonSchemaFormat(Params, tag="json_schema", tag_field="type"):
    """Ask for an answer that is JSON following `schema` (a JSON Schema); `name` labels it where a
    provider wants a name, `strict` asks OpenAI-style providers to hold to it exactly."""

    schema: dict[str, Any]
    name: Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_-]{1,64}$")] | None = None
    strict: bool | None = None


ResponseFormat = JsonSchemaFormat | JsonObjectFormat
"""A JSON answer (`response_format`): the result's `text` is the JSON."""


class CompleteParams(Params, kw_only=True):
    """`model` may be left out (or empty) to use `[defaults] model` of config.toml, or name a
    provider alone (`"openrouter:"`) to use that provider's default model."""

    model: str = ""
    messages: Annotated[list[Message], msgspec.Meta(min_length=1)]
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    stop: str | list[str] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    reasoning: Reasoning | None = None
    response_format: ResponseFormat | None = None
    fallback: list[str] | None = None
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] | None = None
    tag: str | None = None
    run_id: str | None = None
    response_cache: ResponseCache | None = None


class CountTokensResult(Wire):
    """How many input tokens the request would cost with `provider`:`model` (the one it names,
    a router's first candidate, or `[defaults] model`): counted by the provider for that model
    when `exact` (OpenAI, Anthropic, Gemini), else the sidecar's estimate from the text (other
    providers, or the provider could not be asked: no key yet, offline)."""

    input_tokens: int
    exact: bool
    provider: str
    model: str


class Attempt(Wire):
    """One try at a provider: which model, and why it failed if it did."""

    provider: str
    model: str
    ok: bool
    error: str | None = None
    message: str | None = None


class ChatResult(Wire):
    text: str
    tool_calls: list[ToolCall]
    finish_reason: FinishReason
    usage: Usage
    cost_usd: float | None
    provider: str
    model: str
    thinking: str | None = None
    continuation: dict[str, Any] | None = None
    pricing_date: str | None = None
    response_id: str | None = None
    latency_ms: float | None = None
    attempts: list[Attempt] = msgspec.field(default_factory=list)
    # True when the upstream reported no usage and `usage` is the sidecar's estimate (still priced).
    usage_estimated: bool = False
    # Answered from the response cache: nothing was sent, `cost_usd` is 0 and `saved_usd` is what
    # the original answer cost.
    cached: bool = False
    saved_usd: float | None = None
    # The stop sequence that ended the answer (`finish_reason` is then `stop`), when that is known:
    # the provider says so (Anthropic) or the sidecar applied it for a model that refused `stop`.
    stop_sequence: str | None = None


# --- stream events ------------------------------------------------------------------------------


class TextDelta(Wire, tag="text_delta", tag_field="type"):
    text: str


class ThinkingDelta(Wire, tag="thinking_delta", tag_field="type"):
    text: str


class ToolCallDelta(Wire, tag="tool_call_delta", tag_field="type"):
    index: int
    id: str | None = None
    name: str | None = None
    arguments_delta: str | None = None


class UsageEvent(Wire, tag="usage", tag_field="type"):
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int


class AttemptEvent(Wire, tag="attempt", tag_field="type"):
    """Sent before every try after the first, before any token was relayed: a retry of the same
    model after a transient failure, or a move to the next model of the fallback chain. `provider`
    and `model` are those of the coming try, `attempt` its number (1 is the first try), and
    `delay_s` how long the sidecar waits before it (backoff or the provider's Retry-After)."""

    provider: str
    model: str
    attempt: int
    previous_error: str | None = None
    previous_message: str | None = None
    delay_s: float | None = None


StreamEvent = TextDelta | ThinkingDelta | ToolCallDelta | UsageEvent | AttemptEvent


class StreamEventParams(Wire):
    request_id: int | str
    event: StreamEvent
