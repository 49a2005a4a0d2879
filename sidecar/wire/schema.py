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


def method_schema(name: str) -> dict[str, Any]:
    spec = METHODS[name]
    (params, result), defs = _components(spec.params, spec.result)
    return {
        "$schema": DIALECT,
        "$id": f"llm-sidecar/methods/{name}.json",
        "title": name,
        "description": spec.summary,
        "notifications": list(spec.notifications),
        "params": params,
        "result": result,
        "$defs": defs,
    }


def params_schema(name: str) -> dict[str, Any]:
    (params,), defs = _components(METHODS[name].params)
    return inline(params, defs)


def result_schema(name: str) -> dict[str, Any]:
    (result,), defs = _components(METHODS[name].result)
    return inline(result, defs)


def notification_schema(name: str) -> dict[str, Any]:
    spec = NOTIFICATIONS[name]
    (params,), defs = _components(spec.params)
    return {
        "$schema": DIALECT,
        "$id": f"llm-sidecar/notifications/{name.replace('/', '.')}.json",
        "title": name,
        "description": spec.summary,
        "params": params,
        "$defs": defs,
    }


def openrpc() -> dict[str, Any]:
    types = [t for spec in METHODS.values() for t in (spec.params, spec.result)]
    types += [spec.params for spec in NOTIFICATIONS.values()]
    schemas, defs = _components(*types)
    refs = iter(schemas)
    methods = []
    for spec in METHODS.values():
        params_ref, result_ref = next(refs), next(refs)
        methods.append(
            {
                "name": spec.name,
                "summary": spec.summary,
                "description": spec.description,
                "paramStructure": "by-name",
                "params": [{"name": "params", "required": True, "schema": params_ref}],
                "result": {"name": "result", "schema": result_ref},
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
            "`error.data.kind` (see x-error-kinds) and `error.data.message`.",
        },
        "methods": methods,
        "components": {"schemas": defs},
        "x-notifications": notifications,
        "x-error-kinds": [{"kind": kind, "code": code} for kind, code in KIND_CODES.items()],
    }


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
