"""Why params failed to decode, said so a person (or a model) can fix the call.

`explain(params_type, error)` turns a msgspec validation error into the contract's `error.data`:
kind `invalid_request`, the JSON path of the failing field in `field`, and for an unknown field
the closest known one ("did you mean `api_key`?") or, failing that, the fields that place accepts.
Both faces use it, so a JSON-RPC error and an MCP `isError` result say the same thing.

Must not know: JSON-RPC, MCP, which method is being called.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec
from msgspec import inspect as mi

from sidecar.wire.base import ErrorData

_AT: Final = " - at `"
_UNKNOWN: Final = re.compile(r"^Object contains unknown field `(.*)`$", re.S)
_MISSING: Final = "missing required field `"
_STEP: Final = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def field_path(validation_message: str) -> str:
    """The JSON path a msgspec validation error names, e.g. `$.messages[0].role` (`$` if none)."""
    at = validation_message.rfind(_AT)
    path = validation_message[at + len(_AT) : -1] if at >= 0 else "$"
    missing = validation_message.find(_MISSING)
    if missing >= 0:
        name = validation_message[missing + len(_MISSING) :].split("`", 1)[0]
        path = f"{path}.{name}"
    return path


def explain(params_type: type[Any], error: msgspec.ValidationError, *, what: str = "params") -> ErrorData:
    text = str(error)
    at = text.rfind(_AT)
    head, where = (text[:at], text[at + len(_AT) : -1]) if at >= 0 else (text, "$")
    unknown = _UNKNOWN.match(head)
    if unknown is None:
        message = f"Invalid {what}: {text}"
        return ErrorData(kind="invalid_request", message=message, field=field_path(text))
    name = unknown.group(1)
    known = known_fields(params_type, where)
    best = closest(name, known)
    if best is not None:
        hint = f"; did you mean `{best}`?"
    elif known:
        hint = "; known fields here: " + ", ".join(f"`{k}`" for k in known)
    else:
        hint = ""
    message = f"Invalid {what}: unknown field `{name}` at `{where}`{hint}"
    details = {"unknown_field": name, "did_you_mean": best} if best else {"unknown_field": name}
    return ErrorData(kind="invalid_request", message=message, field=f"{where}.{name}", details=details)


def closest(name: str, known: tuple[str, ...]) -> str | None:
    """The known field `name` most likely meant: a close spelling, or one that contains it."""
    lowered = {k.lower(): k for k in known}
    if name.lower() in lowered:
        return lowered[name.lower()]
    import difflib  # only for an unknown field: start-up does without it

    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    if match:
        return lowered[match[0]]
    # `key` for `api_key`: a name that is a whole part of exactly one known field.
    containing = [k for k in known if name.lower() in k.lower().split("_")]
    return containing[0] if len(containing) == 1 else None


def known_fields(params_type: type[Any], path: str) -> tuple[str, ...]:
    """The field names accepted at `path` (a msgspec error path such as `$.messages[0]`)."""
    key = (params_type, path)
    if key not in _known:
        if len(_known) > 1024:  # paths carry indexes; keep the cache bounded whatever hosts send
            _known.clear()
        _known[key] = _fields_at(params_type, path)
    return _known[key]


_known: dict[tuple[type[Any], str], tuple[str, ...]] = {}


def _fields_at(params_type: type[Any], path: str) -> tuple[str, ...]:
    here: list[mi.Type] = [mi.type_info(params_type)]
    for name, index in _STEP.findall(path.removeprefix("$")):
        nxt: list[mi.Type] = []
        for t in _expand(here):
            if name and isinstance(t, mi.StructType):
                nxt += [f.type for f in t.fields if f.encode_name == name]
            elif name and isinstance(t, mi.DictType):
                nxt.append(t.value_type)
            elif index and isinstance(t, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
                nxt.append(t.item_type)
        here = nxt
    names: dict[str, None] = {}
    for t in _expand(here):
        if isinstance(t, mi.StructType):
            names.update((f.encode_name, None) for f in t.fields)
    return tuple(names)


def _expand(types: list[mi.Type]) -> list[mi.Type]:
    out: list[mi.Type] = []
    for t in types:
        out += _expand(list(t.types)) if isinstance(t, mi.UnionType) else [t]
    return out
