"""OpenAI's public API shapes the gateway reads and writes: Chat Completions (request, response),
legacy Completions, embeddings, the model list. Also what `/openapi.json` is generated from.

Pure data: no translation (`openai_api`), no I/O.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# --- requests ---------------------------------------------------------------------------------------


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


class JsonSchemaFormat(msgspec.Struct, omit_defaults=True):
    name: str
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class ResponseFormat(msgspec.Struct, omit_defaults=True):
    """`{"type": "text"}`, `{"type": "json_object"}` or `{"type": "json_schema", "json_schema"}`."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


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
    response_format: ResponseFormat | None = None
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
