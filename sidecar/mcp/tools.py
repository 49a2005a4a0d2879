"""The pure half of the MCP face: tools built from the METHODS table, tool results built from wire
results and errors, and MCP progress derived from a method's own notifications.

Everything here is plain data (dicts in the MCP wire shape), so it is cheap to import, testable
without the SDK, and shared by whatever serves it. `server` turns it into SDK types.

- A tool per method: same name, `description` from the table, `inputSchema` and `outputSchema`
  from `wire.schema` (what `schemas/` is generated from), with `$defs` inlined so clients and
  model APIs that do not follow `$ref` still see the whole shape.
- Arguments are decoded exactly as the JSON-RPC face decodes params; a validation error (an
  unknown field included, with the closest known one) is a tool execution error (`isError`, kind
  `invalid_request`, the field path), as MCP 2025-11-25 asks, so a model can correct its call.
- A result is `structuredContent` (the result object) plus the same JSON as a text block. An
  error is `isError: true` with one text block, the JSON `{"error": {kind, message, ...}}` (the
  JSON-RPC face's `error.data`). It has no `structuredContent`: TypeScript clients (the Inspector,
  so likely others built on that SDK) validate `structuredContent` against `outputSchema` even
  on errors, and an error object is not the method's result.

Must not know: the MCP SDK, stdin/stdout, JSON-RPC framing, providers.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from sidecar.wire import schema
from sidecar.wire.base import ErrorData, Wire
from sidecar.wire.chat import StreamEventParams, TextDelta
from sidecar.wire.invalid import explain
from sidecar.wire.methods import METHODS, TOOL_HINTS, MethodSpec

Json = dict[str, Any]

_encoder: Final = msgspec.json.Encoder()
_REF_PREFIX: Final = "#/$defs/"


# --- schemas ------------------------------------------------------------------------------------


def self_contained(doc: Json) -> Json:
    """`doc` with every `$ref` into its `$defs` replaced by the definition itself.

    Some MCP clients hand tool schemas to model APIs that do not follow `$ref`, so the tools carry
    whole shapes. A recursive type would keep its `$defs` (and the `$ref`s into them), which
    JSON Schema 2020-12 allows; none of the wire types is recursive today. msgspec's OpenAPI-style
    `discriminator` is dropped (its mapping points into `$defs`, and each variant's `type` enum
    says the same), and so is an empty `required` (invalid before draft 2020-12).
    """
    defs: dict[str, Json] = doc.get("$defs", {})
    kept: dict[str, Json] = {}

    def inline(node: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [inline(item, stack) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF_PREFIX) and len(node) == 1:
            name = ref[len(_REF_PREFIX) :]
            if name in stack:  # recursion: leave the reference, keep its definition
                kept[name] = defs[name]
                return {"$ref": ref}
            return inline(copy.deepcopy(defs[name]), (*stack, name))
        out: Json = {}
        for key, value in node.items():
            if key == "discriminator" or (key == "required" and value == []):
                continue
            out[key] = inline(value, stack)
        return out

    root = {key: value for key, value in doc.items() if key != "$defs"}
    result: Json = inline(root, ())
    if kept:
        result["$defs"] = {name: inline(body, (name,)) for name, body in kept.items()}
    if result.get("type") != "object":
        raise TypeError(f"schema {doc.get('title')!r} is not an object; MCP needs `type: object` at the root")
    return result


def tool_annotations(name: str) -> Json | None:
    """MCP `ToolAnnotations` from the method's `TOOL_HINTS` row, every hint spelled out (MCP's
    defaults are the cautious ones: not read-only, destructive, open world); None without a row."""
    hints = TOOL_HINTS.get(name)
    if hints is None:
        return None
    out: Json = {"readOnlyHint": hints.read_only}
    if not hints.read_only:  # destructiveHint means something only for a tool that writes
        out["destructiveHint"] = hints.destructive
    out["openWorldHint"] = hints.open_world
    return out


def tool(spec: MethodSpec) -> Json:
    """The MCP `Tool` of one method, in wire shape (camelCase keys), schemas as in `schemas/`."""
    out: Json = {
        "name": spec.name,
        "description": spec.description,
        "inputSchema": self_contained(schema.params_schema(spec.name)),
        "outputSchema": self_contained(schema.result_schema(spec.name)),
    }
    hints = tool_annotations(spec.name)
    if hints is not None:
        out["annotations"] = hints
    return out


@functools.cache
def tools(names: tuple[str, ...]) -> tuple[Json, ...]:
    """The tools for `names` (method names of the table), in table order; computed once per set."""
    wanted = set(names)
    return tuple(tool(spec) for name, spec in METHODS.items() if name in wanted)


# --- arguments and results ----------------------------------------------------------------------


@functools.cache
def _decoder(name: str) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(METHODS[name].params)


def decode_arguments(name: str, arguments: Json | None) -> Wire | ErrorData:
    """The method's params from a `tools/call`'s `arguments`, or why they are wrong.

    Goes through JSON and the same decoder type as the JSON-RPC face, so both faces accept and
    reject exactly the same inputs: an unknown field is refused here too, naming the closest
    known one.
    """
    try:
        params: Wire = _decoder(name).decode(_encoder.encode(arguments or {}))
    except msgspec.ValidationError as exc:
        return explain(METHODS[name].params, exc, what="arguments")
    except RecursionError:
        return ErrorData(kind="invalid_request", message="Invalid arguments: nested too deeply", field="$")
    return params


def ok_result(result: Wire) -> Json:
    """A `CallToolResult` for a method's result: the object, and its JSON as text."""
    return {
        "content": [{"type": "text", "text": _encoder.encode(result).decode()}],
        "structuredContent": msgspec.to_builtins(result),
        "isError": False,
    }


def error_result(error: ErrorData) -> Json:
    """A `CallToolResult` for a failed call: `{"error": <the contract's error object>}` as text."""
    body = _encoder.encode({"error": error}).decode()
    return {"content": [{"type": "text", "text": body}], "isError": True}


# --- progress -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProgressUpdate:
    progress: float
    total: float | None
    message: str | None


@dataclass(slots=True)
class ProgressTracker:
    """Turns one call's notifications into MCP progress, whose `progress` must always increase.

    - `stream/event` text deltas: `progress` counts the characters so far, `message` is the delta
      (so the messages, joined, are the answer's text). Other deltas are not progress.
    - `ollama_pull/progress`: Ollama reports each layer (digest) from 0 again, so `progress` is the
      sum of bytes completed over all layers and `total` the sum of the layer sizes known so far;
      `message` is Ollama's status. Updates that would not increase `progress` are dropped.
    """

    _last: float = -1.0
    _chars: int = 0
    _layers: dict[str, tuple[int, int]] = field(default_factory=dict)

    def update(self, method: str, params: Any) -> ProgressUpdate | None:
        if isinstance(params, StreamEventParams):
            # The per-delta path of a streamed call: read the struct, don't convert it to a dict.
            event = params.event
            return self._add_text(event.text) if isinstance(event, TextDelta) else None
        data = params if isinstance(params, dict) else msgspec.to_builtins(params)
        if not isinstance(data, dict):
            return None
        if method == "stream/event":
            return self._text(data.get("event"))
        if method == "ollama_pull/progress":
            return self._pull(data)
        return None

    def _text(self, event: Any) -> ProgressUpdate | None:
        if not isinstance(event, dict) or event.get("type") != "text_delta":
            return None
        text = event.get("text")
        return self._add_text(text) if isinstance(text, str) else None

    def _add_text(self, text: str) -> ProgressUpdate | None:
        if not text:
            return None
        self._chars += len(text)
        return self._emit(self._chars, None, text)

    def _pull(self, data: Json) -> ProgressUpdate | None:
        digest, completed, total = data.get("digest"), data.get("completed"), data.get("total")
        if isinstance(digest, str) and isinstance(total, int):
            done = completed if isinstance(completed, int) else 0
            self._layers[digest] = (min(done, total), total)
        status = data.get("status")
        message = status if isinstance(status, str) else None
        progress = sum(done for done, _ in self._layers.values())
        known_total = sum(size for _, size in self._layers.values()) or None
        return self._emit(progress, known_total, message)

    def _emit(self, progress: float, total: float | None, message: str | None) -> ProgressUpdate | None:
        if progress <= self._last:
            return None
        self._last = progress
        return ProgressUpdate(progress, total, message)


def method_names(available: Iterable[str]) -> tuple[str, ...]:
    """The methods to offer as tools: those of the table that have a handler, in table order."""
    have = set(available)
    return tuple(name for name in METHODS if name in have)


ADMIN_TOOLS: Final = frozenset(
    {
        "gateway_start",
        "gateway_stop",
        "gateway_status",  # hands out a dashboard login link
        "client_key_create",
        "client_key_list",
        "client_key_update",
        "client_key_rotate",
        "client_key_delete",
        "router_set",
        "router_delete",
        "set_budget",  # a model must not lift the caps that bound its own spending
        "set_provider_enabled",
        "endpoint_set",
        "endpoint_delete",
    }
)
"""Methods that administer the sidecar itself: the MCP face serves them only with
`[mcp] admin_tools = true` (README "As an MCP server"). A model driving an MCP client should not
open the gateway to the network, mint client keys or lift budgets on its own."""


def offered(handlers: dict[str, Any], *, admin_tools: bool) -> dict[str, Any]:
    """The handlers the MCP face serves as tools: all of them, or all but `ADMIN_TOOLS`."""
    if admin_tools:
        return handlers
    return {name: handler for name, handler in handlers.items() if name not in ADMIN_TOOLS}
