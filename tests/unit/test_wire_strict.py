"""Unknown params fields are refused (contract: -32602 naming the field), on every struct a host
sends, while results stay permissive and free-form values (JSON Schemas, arguments, continuation)
accept any keys; the error names the closest known field."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from msgspec import inspect as mi

from sidecar.wire.base import Empty, ErrorData
from sidecar.wire.chat import ChatResult, CompleteParams
from sidecar.wire.invalid import closest, explain, known_fields
from sidecar.wire.keys import ValidateKeyParams
from sidecar.wire.methods import METHODS, NOTIFICATIONS


def structs(t: mi.Type, seen: set[type]) -> set[type]:
    if isinstance(t, mi.StructType) and t.cls not in seen:
        seen.add(t.cls)
        for f in t.fields:
            structs(f.type, seen)
    elif isinstance(t, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
        structs(t.item_type, seen)
    elif isinstance(t, mi.DictType):
        structs(t.value_type, seen)
    elif isinstance(t, mi.UnionType):
        for member in t.types:
            structs(member, seen)
    return seen


def test_every_struct_a_host_sends_refuses_unknown_fields() -> None:
    inbound: set[type] = set()
    for spec in METHODS.values():
        structs(mi.type_info(spec.params), inbound)
    assert len(inbound) > 15
    lax = sorted(c.__name__ for c in inbound if not c.__struct_config__.forbid_unknown_fields)
    assert lax == []


def test_results_and_notifications_stay_permissive() -> None:
    outbound: set[type] = set()
    for spec in METHODS.values():
        structs(mi.type_info(spec.result), outbound)
    for note in NOTIFICATIONS.values():
        structs(mi.type_info(note.params), outbound)
    inbound: set[type] = set()
    for spec in METHODS.values():
        structs(mi.type_info(spec.params), inbound)
    # A struct only the sidecar sends may gain fields a client decoding it with these types ignores.
    strict = sorted(c.__name__ for c in outbound - inbound if c.__struct_config__.forbid_unknown_fields)
    assert strict == []
    decoded = msgspec.json.decode(
        b'{"text":"","tool_calls":[],"finish_reason":"stop","usage":{"input_tokens":0,"output_tokens":0,'
        b'"cache_read_tokens":0,"cache_write_tokens":0,"reasoning_tokens":0},"cost_usd":null,'
        b'"provider":"p","model":"m","from_the_future":1}',
        type=ChatResult,
    )
    assert decoded.provider == "p"


def test_free_form_values_take_any_keys() -> None:
    params = msgspec.json.decode(
        b'{"model":"m","messages":[{"role":"assistant","content":"x","continuation":{"anything":[1]},'
        b'"tool_calls":[{"id":"c","name":"t","arguments":{"whatever":{"deep":true}}}]}],'
        b'"tools":[{"name":"t","parameters":{"type":"object","x-vendor":1,"properties":{}}}]}',
        type=CompleteParams,
    )
    assert params.messages[0].continuation == {"anything": [1]}


def test_empty_params_take_nothing() -> None:
    assert msgspec.json.decode(b"{}", type=Empty) == Empty()
    with pytest.raises(msgspec.ValidationError, match="unknown field `x`"):
        msgspec.json.decode(b'{"x":1}', type=Empty)


def error_for(params_type: type[Any], raw: bytes) -> ErrorData:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(raw, type=params_type)
    return explain(params_type, caught.value)


def test_the_error_names_the_field_and_the_closest_known_one() -> None:
    err = error_for(ValidateKeyParams, b'{"provider":"openai","key":"sk-bad"}')
    assert err.kind == "invalid_request" and err.field == "$.key"
    assert err.message == "Invalid params: unknown field `key` at `$`; did you mean `api_key`?"
    assert err.details == {"unknown_field": "key", "did_you_mean": "api_key"}
    typo = error_for(CompleteParams, b'{"model":"m","messages":[{"role":"user"}],"max_token":5}')
    assert typo.field == "$.max_token" and "did you mean `max_tokens`?" in typo.message


def test_nested_unknown_fields_name_their_path_and_the_fields_there() -> None:
    err = error_for(CompleteParams, b'{"model":"m","messages":[{"role":"user","contnet":"hi"}]}')
    assert err.field == "$.messages[0].contnet" and "did you mean `content`?" in err.message
    part = error_for(
        CompleteParams, b'{"model":"m","messages":[{"role":"user","content":[{"type":"text","txt":"a"}]}]}'
    )
    assert part.field == "$.messages[0].content[0].txt" and "did you mean `text`?" in part.message
    far = error_for(CompleteParams, b'{"model":"m","messages":[{"role":"user"}],"zzz":1}')
    assert far.details == {"unknown_field": "zzz"} and "known fields here: `model`, `messages`" in far.message


def test_known_fields_follow_lists_unions_and_optionals() -> None:
    assert "tool_call_id" in known_fields(CompleteParams, "$.messages[3]")
    assert {"text", "url", "media_type"} <= set(known_fields(CompleteParams, "$.messages[0].content[2]"))
    assert known_fields(CompleteParams, "$.reasoning") == ("effort", "budget_tokens")
    assert known_fields(CompleteParams, "$.nowhere[1].x") == ()


def test_closest() -> None:
    known = ("provider", "api_key", "validate")
    assert closest("key", known) == "api_key"
    assert closest("Provider", known) == "provider"
    assert closest("validat", known) == "validate"
    assert closest("colour", known) is None
