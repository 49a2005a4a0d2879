"""JSON Schema (what a host declares for a tool's parameters) to the Schema subset Gemini's
`functionDeclarations` accept: `$ref`s resolved, unions and `allOf` folded, unsupported keywords
(`additionalProperties`, `$schema`, ...) dropped, types upper-cased as the API documents them.

Must not know: HTTP, keys, the rest of Gemini's wire format.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

_TYPES: Final = {
    "string": "STRING",
    "number": "NUMBER",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
    "array": "ARRAY",
    "object": "OBJECT",
    "null": "NULL",
}
_FORMATS: Final = {
    "STRING": {"enum", "date-time"},
    "INTEGER": {"int32", "int64"},
    "NUMBER": {"float", "double"},
}
_COPIED: Final = (
    "title",
    "description",
    "default",
    "example",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "propertyOrdering",
)
_MAX_DEPTH: Final = 24


def to_gemini_schema(schema: Any) -> dict[str, Any]:
    """A tool's JSON Schema as Gemini's `Schema` (an OpenAPI 3.0 subset).

    Gemini rejects fields it does not know (`additionalProperties`, `$schema`, ...), so only its
    own fields are kept: type (upper-case), format (only the ones it supports for the type),
    title, description, default, example, enum (strings only), properties, required, items,
    anyOf, nullable, the min/max counts and lengths, minimum, maximum, pattern and
    propertyOrdering. Conversions: local `$ref`s (`#/$defs/..`, `#/definitions/..`) are inlined
    (a recursive one becomes a plain OBJECT); `allOf` is merged; `oneOf` becomes `anyOf`; a
    `null` member of a `type` list or of an `anyOf` becomes `nullable: true`; `const` becomes a
    one-value `enum`; an `enum` of non-strings is dropped and its values are named in the
    description; `required` names without a property are dropped; tuple `items`/`prefixItems`
    become `items: {anyOf: [...]}`. Everything else (`additionalProperties`, `not`,
    `exclusiveMinimum`, `multipleOf`, `uniqueItems`, `patternProperties`, `if/then/else`, ...)
    is dropped.
    """
    if not isinstance(schema, dict):
        return {}
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            defs.update({f"#/{key}/{name}": value for name, value in schema[key].items()})
    return _schema(schema, defs, ())


def _schema(node: Any, defs: dict[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(node, dict) or len(seen) > _MAX_DEPTH:
        return {}
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref)
        if target is None or ref in seen:
            return {"type": "OBJECT"} if ref in seen else {}
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _schema(merged, defs, (*seen, ref))
    all_of = node.get("allOf")
    if isinstance(all_of, list) and all_of:
        rest = {k: v for k, v in node.items() if k != "allOf"}
        return _merge([_schema(rest, defs, seen), *(_schema(s, defs, seen) for s in all_of)])

    out: dict[str, Any] = {}
    nullable = node.get("nullable") is True
    json_type = node.get("type")
    types = json_type if isinstance(json_type, list) else [json_type] if isinstance(json_type, str) else []
    if "null" in types and len(types) > 1:
        nullable = True
        types = [t for t in types if t != "null"]
    variants: list[dict[str, Any]] = []
    if len(types) == 1 and types[0] in _TYPES:
        out["type"] = _TYPES[types[0]]
    elif len(types) > 1:
        variants = [{"type": _TYPES[t]} for t in types if t in _TYPES]

    any_of = node.get("anyOf") if isinstance(node.get("anyOf"), list) else node.get("oneOf")
    if isinstance(any_of, list):
        for member in any_of:
            if isinstance(member, dict) and member.get("type") == "null":
                nullable = True
            else:
                converted = _schema(member, defs, seen)
                if converted:
                    variants.append(converted)
    for key in _COPIED:
        if key in node:
            out[key] = node[key]

    enum = node.get("enum")
    if "const" in node:
        enum = [node["const"]]
    if isinstance(enum, list) and enum:
        if all(isinstance(v, str) for v in enum):
            out["enum"] = list(enum)
            out.setdefault("type", "STRING")
        else:
            allowed = ", ".join(msgspec.json.encode(v).decode() for v in enum)
            note = f"Allowed values: {allowed}."
            out["description"] = f"{out['description']} {note}" if out.get("description") else note

    fmt = node.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS.get(out.get("type", ""), ()):
        out["format"] = fmt

    properties = node.get("properties")
    if isinstance(properties, dict):
        out["properties"] = {str(name): _schema(sub, defs, seen) for name, sub in properties.items()}
        out.setdefault("type", "OBJECT")
    required = node.get("required")
    if isinstance(required, list):
        known = out.get("properties", {})
        kept = [name for name in required if isinstance(name, str) and name in known]
        if kept:
            out["required"] = kept

    items = node.get("items")
    if items is None and isinstance(node.get("prefixItems"), list):
        items = node["prefixItems"]
    if isinstance(items, list):
        members = [m for m in (_schema(i, defs, seen) for i in items) if m]
        items = members[0] if len(members) == 1 else {"anyOf": members} if members else None
        if items is not None:
            out["items"] = items
    elif isinstance(items, dict):
        out["items"] = _schema(items, defs, seen)
    if "items" in out:
        out.setdefault("type", "ARRAY")

    if variants:
        if len(variants) == 1 and "type" not in out:
            out = {**variants[0], **out}
        else:
            out["anyOf"] = variants
    if nullable:
        if not out:
            return {"type": "NULL"}
        out["nullable"] = True
    return out


def _merge(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for schema in schemas:
        for key, value in schema.items():
            if key == "properties" and isinstance(out.get("properties"), dict):
                out["properties"] = {**out["properties"], **value}
            elif key == "required" and isinstance(out.get("required"), list):
                out["required"] = out["required"] + [r for r in value if r not in out["required"]]
            else:
                out.setdefault(key, value)
    return out
