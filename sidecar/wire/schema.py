"""JSON Schemas of the wire types, built from the METHODS table: one document per method and per
notification, plus an OpenRPC document listing methods, notifications and error kinds.

`scripts/gen_schemas.py` writes them to `schemas/`; a test fails when the checked-in files differ
from what this module builds. The MCP face builds its tool schemas from the same functions.

Must not know: handlers, the protocol layer, I/O.
"""

from __future__ import annotations

import inspect
from typing import Any, Final

import msgspec

from sidecar import __version__
from sidecar.errors import KIND_CODES
from sidecar.wire.methods import METHODS, NOTIFICATIONS

DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
_REF: Final = "#/$defs/{name}"


def _components(*types: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    schemas, defs = msgspec.json.schema_components(types, ref_template=_REF)
    return [_clean_descriptions(s) for s in schemas], {k: _clean_descriptions(v) for k, v in defs.items()}


def _clean_descriptions(node: Any) -> Any:
    """Descriptions come from docstrings, whose indentation msgspec releases and Python versions
    (3.13 strips it at compile time) treat differently; `cleandoc` makes the output one text."""
    if isinstance(node, dict):
        return {
            key: inspect.cleandoc(value)
            if key == "description" and isinstance(value, str)
            else _clean_descriptions(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_clean_descriptions(value) for value in node]
    return node


def inline(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A self-contained schema: a top-level `$ref` is replaced by its definition, and the `$defs`
    it needs travel with it (MCP clients want `type: object` at the top)."""
    if "$ref" in schema and len(schema) == 1:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = dict(defs[name])
    needed = _referenced(schema, defs)
    if needed:
        schema = {**schema, "$defs": {name: defs[name] for name in sorted(needed)}}
    return schema


def _referenced(node: Any, defs: dict[str, Any], seen: set[str] | None = None) -> set[str]:
    seen = set() if seen is None else seen
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                _referenced(defs[name], defs, seen)
        for value in node.values():
            _referenced(value, defs, seen)
    elif isinstance(node, list):
        for value in node:
            _referenced(value, defs, seen)
    return seen


def _root(ref_or_schema: dict[str, Any], defs: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """A top-level `$ref` replaced by its definition (and that definition's name)."""
    ref = ref_or_schema.get("$ref")
    if isinstance(ref, str) and len(ref_or_schema) == 1:
        name = ref.rsplit("/", 1)[-1]
        return dict(defs[name]), name
    return dict(ref_or_schema), None


def _top_level(
    title: str, summary: str, path: str, payload: dict[str, Any], defs: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """A document whose top level validates `payload` (params of a method or a notification), with
    every other definition under `$defs` and `extra` (results, notification names) beside them."""
    body, inlined = _root(payload, defs)
    body.pop("title", None)
    struct_doc = body.pop("description", None)
    # The inlined definition stays under `$defs` only when something still refers to it.
    others = [body, extra, *(value for key, value in defs.items() if key != inlined)]
    still_used = inlined is not None and inlined in _referenced(others, defs)
    rest = {key: value for key, value in defs.items() if key != inlined or still_used}
    doc: dict[str, Any] = {
        "$schema": DIALECT,
        "$id": f"llm-sidecar/{path}",
        "title": title,
        "description": summary,
    }
    if struct_doc:
        doc["$comment"] = struct_doc
    doc.update(body)
    named = {key: value for key, value in extra.items() if key.startswith("x-")}
    doc.update(named)
    defs_out = {key: value for key, value in extra.items() if not key.startswith("x-")}
    for key in defs_out:
        if key in rest:
            raise ValueError(f"a wire type is named {key!r}, which the schema documents reserve")
    doc["$defs"] = {**defs_out, **rest}
    return doc


def method_schema(name: str) -> dict[str, Any]:
    """`methods/<name>.json`: the top level validates the method's `params`; `$defs.result` is its
    result (`{"$ref": "<this file>#/$defs/result"}` validates one); `x-notifications` names the
    notifications it sends before answering (each has its own file under `notifications/`)."""
    spec = METHODS[name]
    (params, result), defs = _components(spec.params, spec.result)
    return _top_level(
        name,
        spec.summary,
        f"methods/{name}.json",
        params,
        defs,
        **{"x-notifications": list(spec.notifications), "result": result},
    )


def params_schema(name: str) -> dict[str, Any]:
    (params,), defs = _components(METHODS[name].params)
    return inline(params, defs)


def result_schema(name: str) -> dict[str, Any]:
    (result,), defs = _components(METHODS[name].result)
    return inline(result, defs)


def notification_schema(name: str) -> dict[str, Any]:
    """`notifications/<name with / as .>.json`: the top level validates the notification's `params`."""
    spec = NOTIFICATIONS[name]
    (params,), defs = _components(spec.params)
    return _top_level(name, spec.summary, f"notifications/{name.replace('/', '.')}.json", params, defs)


_COMPONENT_REF: Final = "#/components/schemas/{name}"


def openrpc() -> dict[str, Any]:
    """The OpenRPC document: each method's params are the fields of its params struct, listed one
    by one with `paramStructure: by-name` (the wire sends one params object); `$ref`s point into
    `components/schemas`. Notifications and error kinds are `x-` extensions."""
    types = [t for spec in METHODS.values() for t in (spec.params, spec.result)]
    types += [spec.params for spec in NOTIFICATIONS.values()]
    raw_schemas, raw_defs = msgspec.json.schema_components(types, ref_template=_COMPONENT_REF)
    defs = {k: _clean_descriptions(v) for k, v in raw_defs.items()}
    refs = iter([_clean_descriptions(s) for s in raw_schemas])
    methods = []
    for spec in METHODS.values():
        params_ref, result_ref = next(refs), next(refs)
        params_def = defs[params_ref["$ref"].rsplit("/", 1)[-1]]
        required = set(params_def.get("required", []))
        params = []
        for field, field_schema in params_def.get("properties", {}).items():
            param: dict[str, Any] = {"name": field, "required": field in required, "schema": field_schema}
            if isinstance(field_schema.get("description"), str):
                param["description"] = field_schema["description"]
            params.append(param)
        methods.append(
            {
                "name": spec.name,
                "summary": spec.summary,
                "description": spec.description,
                "paramStructure": "by-name",
                "params": params,
                "result": {"name": f"{spec.name}_result", "schema": result_ref},
                "x-notifications": list(spec.notifications),
            }
        )
    notifications = [
        {"name": spec.name, "summary": spec.summary, "params": {"schema": next(refs)}}
        for spec in NOTIFICATIONS.values()
    ]
    return {
        "openrpc": "1.3.2",
        "info": {
            "title": "llm-sidecar",
            "version": __version__,
            "description": "JSON-RPC 2.0 over stdio, one message per line. Every non-protocol error carries "
            "`error.data.kind` (see x-error-kinds) and `error.data.message`. The host contract is "
            "schemas/README.md.",
        },
        "methods": methods,
        "components": {"schemas": defs},
        "x-notifications": notifications,
        "x-error-kinds": [{"kind": kind, "code": code} for kind, code in KIND_CODES.items()],
    }


def typescript_source() -> dict[str, Any]:
    """One schema for json-schema-to-typescript: its root holds a `Methods` map (each method's
    params and result) and a `Notifications` map (each notification's params), so one run emits
    every wire type once, named after its struct."""
    types = [t for spec in METHODS.values() for t in (spec.params, spec.result)]
    types += [spec.params for spec in NOTIFICATIONS.values()]
    schemas, defs = _components(*types)
    refs = iter(schemas)

    def closed(properties: dict[str, Any], title: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "object"}
        if title:
            out["title"] = title
        out |= {"properties": properties, "required": list(properties), "additionalProperties": False}
        return out

    methods = {}
    for spec in METHODS.values():
        params_ref, result_ref = next(refs), next(refs)
        methods[spec.name] = closed({"params": params_ref, "result": result_ref})
        methods[spec.name]["description"] = spec.summary
    notifications = {
        note.name: {**next(refs), "description": note.summary} for note in NOTIFICATIONS.values()
    }
    root = closed(
        {"methods": closed(methods, "Methods"), "notifications": closed(notifications, "Notifications")},
        "LlmSidecar",
    )
    root["$defs"] = {name: _open_maps(body) for name, body in defs.items()}
    return root


def _open_maps(node: Any) -> Any:
    """A free-form object (`dict[str, Any]`: tool arguments, JSON Schemas) says so, so that
    json-schema-to-typescript, run with closed objects as its default, types it as a map."""
    if isinstance(node, list):
        return [_open_maps(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _open_maps(value) for key, value in node.items()}
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["additionalProperties"] = {}
    return out


def _type_name(node: dict[str, Any]) -> str:
    """A short, readable name of a field's type for the Markdown index."""
    if "$ref" in node:
        return str(node["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in node:
        return " | ".join(_type_name(option) for option in node["anyOf"])
    if "enum" in node:
        return " | ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in node["enum"])
    kind = node.get("type")
    if kind == "array":
        return f"{_type_name(node.get('items', {}))}[]"
    if kind == "object" and "properties" not in node:
        return "object"
    return str(kind or "any")


def markdown_index() -> str:
    """The tables of methods, notifications and error kinds that schemas/README.md holds between
    its `generated` markers: what the files say, in a form a person reads first."""
    rows = ["| method | params | result | notifications |", "|---|---|---|---|"]
    for spec in METHODS.values():
        (params, result), defs = _components(spec.params, spec.result)
        body, _ = _root(params, defs)
        required = set(body.get("required", []))
        fields = [
            f"`{name}{'' if name in required else '?'}`: {_type_name(field)}"
            for name, field in body.get("properties", {}).items()
        ]
        notes = ", ".join(f"`{n}`" for n in spec.notifications) or "-"
        summary = spec.summary.replace("|", "\\|")
        params_text = "<br>".join(fields).replace("|", "\\|") or "`{}`"
        rows.append(f"| `{spec.name}`: {summary} | {params_text} | `{_type_name(result)}` | {notes} |")
    rows += ["", "| notification | params | what |", "|---|---|---|"]
    for note in NOTIFICATIONS.values():
        (params,), defs = _components(note.params)
        body, _ = _root(params, defs)
        names = ", ".join(f"`{name}`" for name in body.get("properties", {}))
        rows.append(f"| `{note.name}` | {names} | {note.summary} |")
    rows += ["", "| error kind | code |", "|---|---|"]
    rows += [f"| `{kind}` | {code} |" for kind, code in KIND_CODES.items()]
    return "\n".join(rows) + "\n"


def documents() -> dict[str, dict[str, Any]]:
    """Every schema file, by its path under `schemas/`."""
    docs: dict[str, dict[str, Any]] = {"openrpc.json": openrpc()}
    for name in METHODS:
        docs[f"methods/{name}.json"] = method_schema(name)
    for name in NOTIFICATIONS:
        docs[f"notifications/{name.replace('/', '.')}.json"] = notification_schema(name)
    return docs


def render(doc: dict[str, Any]) -> bytes:
    return msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n"
