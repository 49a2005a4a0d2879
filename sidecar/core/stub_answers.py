"""What the offline `stub` provider answers: deterministic text and tool calls, derived from the
request alone, so a host developer sees the same answer for the same request every time.

Three models: `echo` repeats the last user text, `lorem` writes lorem ipsum sized by `max_tokens`
(seeded by the conversation), `tools` calls the first declared tool (or the one `tool_choice`
names) with arguments built from its JSON Schema, then, once the tool answered, says what it got.
`echo` and `lorem` call a tool too when `tool_choice` requires one. Asked for JSON
(`response_format`), each answers a JSON object instead: one built from the schema (its strings the
text it would have written), or `{"text": ...}` without one.

Must not know: I/O, the protocol, how events reach a host.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from sidecar.core import tokens
from sidecar.core.catalog import STREAMING, TOOLS, ModelInfo
from sidecar.core.stop_sequences import StopCutter
from sidecar.wire.chat import (
    CompleteParams,
    FinishReason,
    JsonSchemaFormat,
    Message,
    TextPart,
    ToolChoiceName,
)

MODELS: Final = ("echo", "lorem", "tools")
DEFAULT_MODEL: Final = "echo"
CONTEXT_WINDOW: Final = 128_000
MAX_OUTPUT_TOKENS: Final = 8_192
LOREM_DEFAULT_TOKENS: Final = 64

_LOREM: Final = (
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "ut",
    "enim",
    "ad",
    "minim",
    "veniam",
    "quis",
    "nostrud",
    "exercitation",
    "ullamco",
    "laboris",
    "nisi",
    "ut",
    "aliquip",
    "ex",
    "ea",
    "commodo",
    "consequat",
    "duis",
    "aute",
    "irure",
    "dolor",
    "in",
    "reprehenderit",
    "in",
    "voluptate",
    "velit",
    "esse",
    "cillum",
    "dolore",
    "eu",
    "fugiat",
    "nulla",
    "pariatur",
    "excepteur",
    "sint",
    "occaecat",
    "cupidatat",
    "non",
    "proident",
    "sunt",
    "in",
    "culpa",
    "qui",
    "officia",
    "deserunt",
    "mollit",
    "anim",
    "id",
    "est",
    "laborum",
)


class StubCall(msgspec.Struct, frozen=True):
    id: str
    name: str
    arguments_json: str


class StubAnswer(msgspec.Struct, frozen=True):
    text: str
    tool_call: StubCall | None
    finish_reason: FinishReason
    input_tokens: int
    output_tokens: int
    stop_sequence: str | None = None


def answer(model: str, params: CompleteParams) -> StubAnswer:
    """The stub's whole answer to `params` (`model` is one of `MODELS`)."""
    input_tokens = tokens.estimate_input_tokens(params.messages, params.tools)
    seed = _seed(params)
    call = _tool_call(model, params, seed)
    if call is not None:
        output = tokens.text_tokens(call.name) + tokens.text_tokens(call.arguments_json)
        return StubAnswer("", call, "tool_calls", input_tokens, output)
    if model == "lorem":
        text = _lorem(seed, params.max_tokens or LOREM_DEFAULT_TOKENS)
    elif model == "tools":
        text = _after_tools(params.messages)
    else:
        text = _last_user_text(params.messages) or "(nothing to echo)"
    fmt = params.response_format
    if fmt is not None:
        value = _sample(fmt.schema, text) if isinstance(fmt, JsonSchemaFormat) else {"text": text}
        text = msgspec.json.encode(value).decode()
    # A stop sequence ends the text, as it ends a model's; `max_tokens` may end it sooner.
    cutter = StopCutter(params.stop)
    text = cutter.feed(text)
    if cutter.matched is None:
        text += cutter.flush()
    if params.max_tokens is not None and tokens.text_tokens(text) > params.max_tokens:
        text = text[: params.max_tokens * tokens.CHARS_PER_TOKEN]
        return StubAnswer(text, None, "length", input_tokens, tokens.text_tokens(text))
    return StubAnswer(text, None, "stop", input_tokens, tokens.text_tokens(text), cutter.matched)


def chunks(text: str, size: int = 12) -> list[str]:
    """The text split into the deltas a stream sends: word-aligned pieces of about `size` characters."""
    pieces: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if current and len(candidate) > size:
            pieces.append(current + " ")
            current = word
        else:
            current = candidate
    if current:
        pieces.append(current)
    return pieces


def _seed(params: CompleteParams) -> int:
    import hashlib  # on the stub's first answer, not by every catalog lookup that imports MODELS

    import msgspec

    digest = hashlib.sha256(msgspec.json.encode(params.messages)).digest()
    return int.from_bytes(digest[:8], "big")


def _lorem(seed: int, max_tokens: int) -> str:
    words: list[str] = []
    used = 0
    index = seed % len(_LOREM)
    while True:
        word = _LOREM[index % len(_LOREM)]
        cost = tokens.text_tokens(word + " ")
        if words and used + cost > max_tokens:
            break
        words.append(word)
        used += cost
        index += 1
        if used >= max_tokens:
            break
    text = " ".join(words)
    return text[:1].upper() + text[1:] + "."


def _text_of(message: Message) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    return " ".join(p.text for p in content if isinstance(p, TextPart))


def _last_user_text(messages: list[Message]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return _text_of(message)
    return ""


def _after_tools(messages: list[Message]) -> str:
    last = messages[-1]
    if last.role == "tool":
        return f"The tool answered: {_text_of(last)}"
    return f"No tools were given, so here is your message back: {_last_user_text(messages)}"


def _tool_call(model: str, params: CompleteParams, seed: int) -> StubCall | None:
    if not params.tools or params.tool_choice == "none" or params.messages[-1].role == "tool":
        return None
    choice = params.tool_choice
    forced = choice == "required" or isinstance(choice, ToolChoiceName)
    if model != "tools" and not forced:
        return None
    tool = params.tools[0]
    if isinstance(choice, ToolChoiceName):
        tool = next((t for t in params.tools if t.name == choice.name), tool)
    arguments = msgspec.json.encode(_sample(tool.parameters, _last_user_text(params.messages))).decode()
    return StubCall(id=f"call_stub_{seed % 16**12:012x}", name=tool.name, arguments_json=arguments)


def _sample(schema: Any, text: str, depth: int = 0) -> Any:
    """A value that fits `schema` (the common JSON Schema shapes): enums take their first value,
    strings the user's text, numbers their minimum or 1, objects every required property."""
    if not isinstance(schema, dict) or depth > 6:
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties") or {}
        required = schema.get("required") or list(props)
        return {name: _sample(props.get(name, {}), text, depth + 1) for name in required if name in props}
    if kind == "array":
        return [_sample(schema.get("items", {}), text, depth + 1)]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return text[:80] or "stub"


def model_info(model: str) -> ModelInfo:
    """The catalog entry of a stub model: free, with a generous window."""
    return ModelInfo(
        provider="stub",
        model=model,
        display_name=f"Stub {model} (offline)",
        context_window=CONTEXT_WINDOW,
        max_output_tokens=MAX_OUTPUT_TOKENS,
        input_per_mtok=0.0,
        output_per_mtok=0.0,
        capabilities=frozenset({STREAMING, TOOLS}),
    )
