"""JSON-RPC 2.0 envelopes: decoding one inbound line into a typed message, encoding the outbound ones.

Inbound lines become one of `Request`, `Notification`, `Reply` (an answer to a request the server
sent, which only the MCP face makes) or `Invalid` (answered with a standard code). Params stay raw
(`msgspec.Raw`) until the method is known, so each method decodes them with its own cached decoder.

Must not know: which methods exist, LLMs, providers, keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from sidecar.errors import INVALID_REQUEST, PARSE_ERROR

RequestId = int | str


class _Inbound(msgspec.Struct):
    jsonrpc: Any = msgspec.UNSET
    id: Any = msgspec.UNSET
    method: Any = msgspec.UNSET
    params: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    result: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    error: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


@dataclass(frozen=True, slots=True)
class Request:
    id: RequestId
    method: str
    params: msgspec.Raw | None
    raw: bytes


@dataclass(frozen=True, slots=True)
class Notification:
    method: str
    params: msgspec.Raw | None
    raw: bytes


@dataclass(frozen=True, slots=True)
class Reply:
    """A response from the client to a request the server sent (MCP only)."""

    id: RequestId
    raw: bytes


@dataclass(frozen=True, slots=True)
class Invalid:
    id: RequestId | None
    code: int
    message: str


Inbound = Request | Notification | Reply | Invalid

_decoder: Final = msgspec.json.Decoder(_Inbound)
_ID_PREFIX_PATTERN: Final = rb'^\s*\{[^{}\[\]]*?"id"\s*:\s*(-?\d{1,18}|"(?:[^"\\]|\\.){0,200}")'


def _valid_id(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)


def decode(line: bytes) -> Inbound:
    try:
        msg = _decoder.decode(line)
    except msgspec.ValidationError:
        return Invalid(None, INVALID_REQUEST, "Invalid request: a message must be a JSON object")
    except msgspec.DecodeError as exc:
        return Invalid(None, PARSE_ERROR, f"Parse error: {exc}")
    has_id = msg.id is not msgspec.UNSET
    if has_id and not _valid_id(msg.id):
        return Invalid(None, INVALID_REQUEST, "Invalid request: `id` must be a string or an integer")
    rid: RequestId | None = msg.id if has_id else None
    if msg.jsonrpc != "2.0":
        return Invalid(rid, INVALID_REQUEST, 'Invalid request: `jsonrpc` must be "2.0"')
    if msg.method is msgspec.UNSET:
        if rid is not None and (msg.result is not msgspec.UNSET or msg.error is not msgspec.UNSET):
            return Reply(rid, line)
        return Invalid(rid, INVALID_REQUEST, "Invalid request: `method` is missing")
    if not isinstance(msg.method, str) or not msg.method:
        return Invalid(rid, INVALID_REQUEST, "Invalid request: `method` must be a non-empty string")
    params = None if msg.params is msgspec.UNSET else msg.params
    if rid is None:
        return Notification(msg.method, params, line)
    return Request(rid, msg.method, params, line)


def id_from_prefix(prefix: bytes) -> RequestId | None:
    """Best effort: the top-level id of a line too long to parse, so the host can match the error."""
    match = re.match(_ID_PREFIX_PATTERN, prefix)  # compiled on first use: start-up matters more
    if match is None:
        return None
    try:
        value = msgspec.json.decode(match.group(1))
    except msgspec.DecodeError:
        return None
    return value if _valid_id(value) else None


# --- outbound -----------------------------------------------------------------------------------


class _ErrorObject(msgspec.Struct, omit_defaults=True):
    code: int
    message: str
    data: Any = msgspec.UNSET


class _Result(msgspec.Struct, kw_only=True):
    jsonrpc: str = "2.0"
    id: RequestId
    result: Any


class _Error(msgspec.Struct, kw_only=True):
    jsonrpc: str = "2.0"
    id: RequestId | None
    error: _ErrorObject


class _Notification(msgspec.Struct, kw_only=True):
    jsonrpc: str = "2.0"
    method: str
    params: Any


_encoder: Final = msgspec.json.Encoder()


def encode_result(rid: RequestId, result: Any) -> bytes:
    return _encoder.encode(_Result(id=rid, result=result)) + b"\n"


def encode_error(rid: RequestId | None, code: int, message: str, data: Any = msgspec.UNSET) -> bytes:
    return _encoder.encode(_Error(id=rid, error=_ErrorObject(code, message, data))) + b"\n"


def encode_notification(method: str, params: Any) -> bytes:
    return _encoder.encode(_Notification(method=method, params=params)) + b"\n"
