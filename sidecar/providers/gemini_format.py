"""The Google Gemini `generateContent` wire format (Generative Language API, REST, camelCase).

Pure: `build_body` turns contract params into a `GenerateContentRequest` (tool schemas through
`gemini_schema`). Its answers are read by `gemini_decode`.

Multi-turn continuity. Gemini 3 puts an opaque `thoughtSignature` on some parts of its answer
and wants each one back on the same part next turn (it rejects a function-call turn without
it). Gemini may also send function calls without an `id`; the sidecar then makes one up, and
must not send it back as if Gemini had issued it. Both facts travel in the result's
`continuation`, which the host copies into the assistant message unchanged:

    {"provider": "gemini",
     "signatures": [{"part": "function_call", "id": "...", "name": "...", "signature": "..."},
                    {"part": "text", "index": 0, "signature": "..."},
                    {"part": "thought", "text": "...", "signature": "..."}],
     "generated_ids": ["call_0_1a2b3c4d"]}

`text` signatures name the text part by its index among the answer's text runs (streamed text
fragments with nothing else between them are one run); on the way back they go on the message's
text part of that index, or on its last text part when the host merged them. `thought`
signatures (a signed thought summary) come back as a thought part with that text.

A choice made here: a tool result goes back as `functionResponse.response = {"result": <the
content, parsed if it is JSON>}`.

Must not know: HTTP, keys, the protocol.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from sidecar.providers.content import invalid_message, sniff_image_type, stop_list, text_of
from sidecar.providers.gemini_schema import to_gemini_schema
from sidecar.wire.chat import (
    CompleteParams,
    ImagePart,
    JsonSchemaFormat,
    Message,
    Reasoning,
    TextPart,
    ToolChoiceName,
)

PROVIDER_TAG: Final = "gemini"

_LEVELS_PRO: Final = {
    "none": "low",
    "minimal": "low",
    "low": "low",
    "medium": "high",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}
_LEVELS_FLASH: Final = {
    "none": "minimal",
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}
_BUDGETS: Final = {
    "none": 0,
    "minimal": 512,
    "low": 2048,
    "medium": 8192,
    "high": 24576,
    "xhigh": 32768,
    "max": 32768,
}


def is_gemini3(model: str) -> bool:
    return model.removeprefix("models/").startswith("gemini-3")


def thinking_config(model: str, reasoning: Reasoning | None) -> dict[str, Any] | None:
    """`generationConfig.thinkingConfig` for the request's `reasoning`.

    `budget_tokens` becomes `thinkingBudget` on every model. `effort` becomes `thinkingLevel` on
    Gemini 3 (Pro knows only low/high, Flash also minimal/medium: levels a model lacks round to
    the nearest it has) and a `thinkingBudget` on earlier models (none 0, minimal 512, low 2048,
    medium 8192, high 24576, xhigh/max 32768; Flash models top out at 24576, and 2.5 Pro cannot
    stop thinking, so `none` asks it for its minimum, 128). Thoughts are asked for
    (`includeThoughts`) unless the request asks for no reasoning.
    """
    if reasoning is None or (reasoning.effort is None and reasoning.budget_tokens is None):
        return None
    name = model.removeprefix("models/")
    if reasoning.budget_tokens is not None:
        budget = reasoning.budget_tokens
        return {"thinkingBudget": budget, "includeThoughts": budget > 0}
    effort = reasoning.effort or "medium"
    if is_gemini3(name):
        levels = _LEVELS_FLASH if "flash" in name else _LEVELS_PRO
        return {"thinkingLevel": levels[effort], "includeThoughts": effort != "none"}
    budget = _BUDGETS[effort]
    if "flash" in name:
        budget = min(budget, 24576)
    elif "pro" in name and budget == 0:
        budget = 128
    return {"thinkingBudget": budget, "includeThoughts": effort != "none"}


def _inline(data: str, media_type: str | None) -> dict[str, Any]:
    mime = media_type or sniff_image_type(data)
    if mime is None:
        raise invalid_message(
            "An inline image part needs its `media_type` (image/png, image/jpeg, ...) for Gemini."
        )
    return {"inlineData": {"mimeType": mime, "data": data}}


def _image(part: ImagePart) -> dict[str, Any]:
    if part.data:
        return _inline(part.data, part.media_type)
    url = part.url or ""
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        if not sep or not header.endswith(";base64"):
            raise invalid_message("An image data URL must be base64 (`data:<type>;base64,<data>`).")
        return _inline(data, header[: -len(";base64")] or part.media_type)
    if url.startswith(("https://", "gs://")):
        mime = part.media_type or mimetypes.guess_type(url.split("?", 1)[0])[0]
        file_data: dict[str, Any] = {"fileUri": url}
        if mime:
            file_data["mimeType"] = mime
        return {"fileData": file_data}
    if not url:
        raise invalid_message("An image part needs `url`, or `data` with `media_type`.")
    raise invalid_message(
        "Gemini takes image URLs only as https:// or gs:// links; send other images inline as `data` "
        "with `media_type`."
    )


def _text_parts(content: str | list[TextPart | ImagePart] | None) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, TextPart):
            if part.text:
                parts.append({"text": part.text})
        else:
            parts.append(_image(part))
    return parts


@dataclass(slots=True)
class _Carried:
    """What an assistant message's continuation says about its parts."""

    calls_by_id: dict[str, str] = field(default_factory=dict)
    calls_by_name: dict[str, list[str]] = field(default_factory=dict)
    texts: dict[int, str] = field(default_factory=dict)
    thoughts: list[tuple[str, str]] = field(default_factory=list)
    generated: set[str] = field(default_factory=set)


def _carried(msg: Message) -> _Carried:
    """Read a continuation defensively: it comes back from the host, possibly from another provider."""
    carried = _Carried()
    data = msg.continuation
    if not isinstance(data, dict) or data.get("provider") != PROVIDER_TAG:
        return carried
    generated = data.get("generated_ids")
    if isinstance(generated, list):
        carried.generated = {g for g in generated if isinstance(g, str)}
    for entry in data.get("signatures") or ():
        if not isinstance(entry, dict) or not isinstance(entry.get("signature"), str):
            continue
        sig, kind = entry["signature"], entry.get("part")
        if kind == "function_call":
            if isinstance(entry.get("id"), str):
                carried.calls_by_id[entry["id"]] = sig
            if isinstance(entry.get("name"), str):
                carried.calls_by_name.setdefault(entry["name"], []).append(sig)
        elif kind == "text" and isinstance(entry.get("index"), int):
            carried.texts[entry["index"]] = sig
        elif kind == "thought":
            text = entry.get("text")
            carried.thoughts.append((text if isinstance(text, str) else "", sig))
    return carried


def _model_parts(msg: Message, carried: _Carried) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [
        {"text": text, "thought": True, "thoughtSignature": sig} for text, sig in carried.thoughts
    ]
    texts = _text_parts(msg.content)
    text_slots = [i for i, p in enumerate(texts) if "text" in p]
    for index, text_sig in sorted(carried.texts.items()):
        if text_slots:  # without text to carry it the signature is dropped (Gemini checks only calls')
            texts[text_slots[min(index, len(text_slots) - 1)]]["thoughtSignature"] = text_sig
    parts += texts
    # A signature belongs to its call's id; when the host re-keyed the calls, to the next call of
    # that name whose id the continuation does not know.
    calls = msg.tool_calls or []
    matched = {carried.calls_by_id[c.id] for c in calls if c.id in carried.calls_by_id}
    pool = {name: [s for s in sigs if s not in matched] for name, sigs in carried.calls_by_name.items()}
    for call in calls:
        function_call: dict[str, Any] = {"name": call.name, "args": call.arguments}
        if call.id not in carried.generated:
            function_call = {"id": call.id, **function_call}
        part: dict[str, Any] = {"functionCall": function_call}
        sig = carried.calls_by_id.get(call.id)
        if sig is None and pool.get(call.name):
            sig = pool[call.name].pop(0)
        if sig is not None:
            part["thoughtSignature"] = sig
        parts.append(part)
    return parts


def _tool_result(content: str) -> Any:
    try:
        return msgspec.json.decode(content)
    except msgspec.DecodeError:
        return content


def _contents(messages: list[Message]) -> tuple[list[str], list[dict[str, Any]]]:
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    generated: set[str] = set()
    call_names: dict[str, str] = {}

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)  # Gemini wants turns to alternate
        else:
            contents.append({"role": role, "parts": parts})

    for msg in messages:
        if msg.role == "system":
            text = text_of(msg.content)
            if text:
                system.append(text)
        elif msg.role == "user":
            add("user", _text_parts(msg.content))
        elif msg.role == "assistant":
            carried = _carried(msg)
            generated |= carried.generated
            for call in msg.tool_calls or ():
                call_names[call.id] = call.name
            add("model", _model_parts(msg, carried))
        else:
            if not msg.tool_call_id:
                raise invalid_message("A tool message needs `tool_call_id`.")
            name = msg.name or call_names.get(msg.tool_call_id)
            if not name:
                raise invalid_message(
                    "Gemini needs the tool's name with its result: give the tool message `name`, or keep "
                    f"the assistant message that called `{msg.tool_call_id}` before it."
                )
            result = _tool_result(text_of(msg.content))
            response: dict[str, Any] = {"name": name, "response": {"result": result}}
            if msg.tool_call_id not in generated:
                response = {"id": msg.tool_call_id, **response}
            add("user", [{"functionResponse": response}])
    return system, contents


def build_body(model: str, params: CompleteParams) -> dict[str, Any]:
    """The `GenerateContentRequest` for `params` (the same for streaming and not: the URL differs)."""
    system, contents = _contents(params.messages)
    if not contents:
        raise invalid_message("Gemini needs at least one user message besides the system prompt.")
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": text} for text in system]}
    if params.tools:
        declarations = []
        for tool in params.tools:
            declaration: dict[str, Any] = {"name": tool.name, "description": tool.description}
            schema = to_gemini_schema(tool.parameters)
            if schema:
                declaration["parameters"] = schema
            declarations.append(declaration)
        body["tools"] = [{"functionDeclarations": declarations}]
    if params.tool_choice is not None:
        if isinstance(params.tool_choice, ToolChoiceName):
            config: dict[str, Any] = {"mode": "ANY", "allowedFunctionNames": [params.tool_choice.name]}
        else:
            config = {"mode": {"auto": "AUTO", "required": "ANY", "none": "NONE"}[params.tool_choice]}
        body["toolConfig"] = {"functionCallingConfig": config}
    generation: dict[str, Any] = {}
    if params.max_tokens is not None:
        generation["maxOutputTokens"] = params.max_tokens
    if params.temperature is not None:
        generation["temperature"] = params.temperature
    if params.top_p is not None:
        generation["topP"] = params.top_p
    if params.stop is not None:
        generation["stopSequences"] = stop_list(params.stop)
    thinking = thinking_config(model, params.reasoning)
    if thinking is not None:
        generation["thinkingConfig"] = thinking
    if params.response_format is not None:
        generation["responseMimeType"] = "application/json"
        if isinstance(params.response_format, JsonSchemaFormat):
            generation["responseJsonSchema"] = params.response_format.schema
    if generation:
        body["generationConfig"] = generation
    return body
