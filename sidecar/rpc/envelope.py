"""JSON-RPC 2.0 envelopes: decoding one inbound line into a typed message, encoding the outbound ones.

Inbound lines become one of `Request`, `Notification`, `Reply` (an answer to a request the server
sent, which only the MCP face makes) or `Invalid` (answered with a standard code), or a `Batch` of
those when the line is a JSON array. Params stay raw (`msgspec.Raw`) until the method is known, so
each method decodes them with its own cached decoder.

Codes follow the spec: a line that is not JSON (`1 x`, `[}`, invalid UTF-8 anywhere, keys
included) is -32700; JSON that is not a request object is -32600; an empty batch is one -32600.
A line nested too deeply to decode is -32600 (-32700 if its brackets or quotes do not even
balance), with the id when it can be read from the line's start. Decoding never raises.

Must not know: which methods exist, LLMs, providers, keys.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

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


# Plain frozen Structs, not dataclasses: one is built per message, and defining a dataclass costs
# start-up time (its methods are generated and compiled at import).
class Request(msgspec.Struct, frozen=True, gc=False):
    id: RequestId
    method: str
    params: msgspec.Raw | None
    raw: bytes


class Notification(msgspec.Struct, frozen=True, gc=False):
    method: str
    params: msgspec.Raw | None
    raw: bytes


class Reply(msgspec.Struct, frozen=True, gc=False):
    """A response from the client to a request the server sent (MCP only)."""

    id: RequestId
    raw: bytes


class Invalid(msgspec.Struct, frozen=True, gc=False):
    id: RequestId | None
    code: int
    message: str


Inbound = Request | Notification | Reply | Invalid


class Batch(msgspec.Struct, frozen=True, gc=False):
    """A JSON array of messages: answered with one array of the answers to its requests."""

    items: tuple[Inbound, ...]


class _Call(msgspec.Struct, gc=False):
    """The usual message, typed: a well-formed request (or notification, without `id`). Decoding
    into it takes a fifth of the time of `_Inbound` and its classification; anything it refuses
    goes the general way, which says what is wrong."""

    jsonrpc: Literal["2.0"]
    method: Annotated[str, msgspec.Meta(min_length=1)]
    id: int | str | msgspec.UnsetType = msgspec.UNSET
    params: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


_decoder: Final = msgspec.json.Decoder(_Inbound)
_call_decoder: Final = msgspec.json.Decoder(_Call)
_batch_decoder: Final = msgspec.json.Decoder(list[msgspec.Raw])
_any_decoder: Final = msgspec.json.Decoder()
_STRING: Final = rb'"(?:[^"\\]|\\.)*"'
_ID_PREFIX_PATTERN: Final = rb'^\s*\{[^{}\[\]]*?"id"\s*:\s*(-?\d{1,18}|"(?:[^"\\]|\\.){0,200}")'


def _valid_id(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)


def decode(line: bytes) -> Inbound | Batch:
    """One line (or LSP body) as a message, a batch of them, or why it is not one."""
    if not line.isascii():
        # msgspec skips the bytes of unknown keys and of raw params without checking them.
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Invalid(None, PARSE_ERROR, f"Parse error: invalid UTF-8 at byte {exc.start}")
    try:
        call = _call_decoder.decode(line)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        pass
    else:
        params = None if call.params is msgspec.UNSET else call.params
        if call.id is msgspec.UNSET:
            return Notification(call.method, params, line)
        return Request(call.id, call.method, params, line)
    try:
        msg = _decoder.decode(line)
    except msgspec.ValidationError:
        return _not_an_object(line)
    except msgspec.DecodeError as exc:
        return Invalid(None, PARSE_ERROR, f"Parse error: {exc}")
    except RecursionError:
        return too_deep(line)
    return _classify(msg, line)


def _classify(msg: _Inbound, line: bytes) -> Inbound:
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


def _not_an_object(line: bytes) -> Inbound | Batch:
    """The line is not a JSON object: a batch, a parse error, or JSON that is no request."""
    try:
        elements = _batch_decoder.decode(line)
    except msgspec.ValidationError:
        try:
            value = _any_decoder.decode(line)
        except msgspec.ValidationError as exc:  # valid JSON holding what no message can (a 5000-digit number)
            return Invalid(None, INVALID_REQUEST, f"Invalid request: {exc}")
        except msgspec.DecodeError as exc:
            return Invalid(None, PARSE_ERROR, f"Parse error: {exc}")
        except RecursionError:
            return too_deep(line)
        if isinstance(value, dict):  # an object whose `id` is out of range, say
            return Invalid(None, INVALID_REQUEST, "Invalid request: `id` must be a string or an integer")
        return Invalid(None, INVALID_REQUEST, "Invalid request: a message must be a JSON object")
    except msgspec.DecodeError as exc:
        return Invalid(None, PARSE_ERROR, f"Parse error: {exc}")
    except RecursionError:
        return too_deep(line)
    if not elements:
        return Invalid(None, INVALID_REQUEST, "Invalid request: an empty batch")
    return Batch(tuple(_element(bytes(raw)) for raw in elements))


def _element(raw: bytes) -> Inbound:
    try:
        msg = _decoder.decode(raw)
    except msgspec.ValidationError:
        return Invalid(None, INVALID_REQUEST, "Invalid request: a batch element must be a JSON object")
    except (msgspec.DecodeError, RecursionError):  # cannot happen after the array decoded; be safe
        return Invalid(None, INVALID_REQUEST, "Invalid request: a batch element could not be read")
    return _classify(msg, raw)


def too_deep(line: bytes) -> Invalid:
    """A line nested deeper than the decoder goes: -32600 with its id if readable, or -32700 when
    its brackets or strings do not balance (so it is not JSON either). Best effort, error path only."""
    bare = re.sub(_STRING, b"", line)
    balanced = (
        b'"' not in bare and bare.count(b"[") == bare.count(b"]") and bare.count(b"{") == bare.count(b"}")
    )
    if not balanced:
        return Invalid(
            None, PARSE_ERROR, "Parse error: the message is nested too deeply and is not valid JSON"
        )
    return Invalid(
        id_from_prefix(line[:4096]), INVALID_REQUEST, "Invalid request: the message is nested too deeply"
    )


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


# `_Result` encoded around its id: what follows the id is the same for every request whose result
# is the same, so a result encoded once (`result_tail`) answers any id (`encode_result_tail`).
_RESULT_HEAD: Final = b'{"jsonrpc":"2.0","id":'


def result_tail(result: Any) -> bytes:
    """What follows the id in `encode_result(rid, result)`, whatever the id."""
    return b',"result":' + _encoder.encode(result) + b"}\n"


def encode_result_tail(rid: RequestId, tail: bytes) -> bytes:
    """`encode_result(rid, result)`, byte for byte, given `result_tail(result)`."""
    return _RESULT_HEAD + _encoder.encode(rid) + tail


def encode_error(rid: RequestId | None, code: int, message: str, data: Any = msgspec.UNSET) -> bytes:
    return _encoder.encode(_Error(id=rid, error=_ErrorObject(code, message, data))) + b"\n"


def encode_notification(method: str, params: Any) -> bytes:
    return _encoder.encode(_Notification(method=method, params=params)) + b"\n"
