"""JSON-RPC envelopes: every inbound shape classified per the spec; outbound lines are compact JSON."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.errors import INVALID_REQUEST, PARSE_ERROR
from sidecar.rpc import envelope
from sidecar.rpc.envelope import Batch, Invalid, Notification, Reply, Request


@pytest.mark.parametrize("rid", [0, 1, -5, "a", "", "0"])
def test_requests_keep_string_and_integer_ids(rid: object) -> None:
    msg = envelope.decode(json.dumps({"jsonrpc": "2.0", "id": rid, "method": "info"}).encode())
    assert isinstance(msg, Request) and msg.id == rid and msg.method == "info" and msg.params is None


def test_notification_has_no_id() -> None:
    msg = envelope.decode(b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}')
    assert isinstance(msg, Notification) and msg.params is not None


@pytest.mark.parametrize(
    ("line", "code", "rid"),
    [
        (b"{not json", PARSE_ERROR, None),
        (b"", PARSE_ERROR, None),
        (b"[]", INVALID_REQUEST, None),
        (b"1 x", PARSE_ERROR, None),
        (b"[}", PARSE_ERROR, None),
        (b'{"jsonrpc":"2.0","i\xffd":5,"method":"info"}', PARSE_ERROR, None),
        (b'{"jsonrpc":"2.0","id":5,"method":"info","params":{"k":"\xc3"}}', PARSE_ERROR, None),
        (b'{"jsonrpc":"2.0","id":5,"method":"info","x":"a\x00b"}', PARSE_ERROR, None),
        (b'{"jsonrpc":"2.0","id":1' + b"0" * 5000 + b',"method":"x"}', INVALID_REQUEST, None),
        (b'"text"', INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"x"}', INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":null,"method":"x"}', INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":true,"method":"x"}', INVALID_REQUEST, None),
        (b'{"jsonrpc":"1.0","id":4,"method":"x"}', INVALID_REQUEST, 4),
        (b'{"id":4,"method":"x"}', INVALID_REQUEST, 4),
        (b'{"jsonrpc":"2.0","id":4}', INVALID_REQUEST, 4),
        (b'{"jsonrpc":"2.0","id":4,"method":7}', INVALID_REQUEST, 4),
    ],
)
def test_faults_are_classified(line: bytes, code: int, rid: object) -> None:
    msg = envelope.decode(line)
    assert isinstance(msg, Invalid)
    assert (msg.code, msg.id) == (code, rid)


def test_replies_to_server_requests_are_recognised() -> None:
    assert isinstance(envelope.decode(b'{"jsonrpc":"2.0","id":"s1","result":{}}'), Reply)
    assert isinstance(envelope.decode(b'{"jsonrpc":"2.0","id":2,"error":{"code":1,"message":"x"}}'), Reply)


def test_id_is_recovered_from_the_prefix_of_an_oversize_line() -> None:
    assert envelope.id_from_prefix(b'{"jsonrpc":"2.0","id":"abc","method":"complete","params":{"x"') == "abc"
    assert envelope.id_from_prefix(b'{"id": 12, "jsonrpc":"2.0"') == 12
    # An "id" nested inside params must not be taken for the request's id.
    assert envelope.id_from_prefix(b'{"jsonrpc":"2.0","method":"m","params":{"id":9') is None


def test_outbound_lines() -> None:
    line = envelope.encode_result(0, {"a": 1})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"jsonrpc": "2.0", "id": 0, "result": {"a": 1}}
    err = json.loads(envelope.encode_error(None, -32700, "bad"))
    assert err == {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "bad"}}
    note = json.loads(envelope.encode_notification("stream/event", {"x": "line\nbreak"}))
    assert note["params"]["x"] == "line\nbreak"
    assert b"\n" not in envelope.encode_notification("m", {"x": "a\nb\rc"})[:-1]


@given(
    rid=st.integers(min_value=-(2**200), max_value=2**200) | st.text(),
    result=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=8,
    ),
)
def test_a_result_encoded_once_answers_any_id_byte_for_byte(rid: int | str, result: object) -> None:
    tail = envelope.result_tail(result)
    assert envelope.encode_result_tail(rid, tail) == envelope.encode_result(rid, result)


def test_a_batch_is_decoded_element_by_element() -> None:
    line = (
        b'[{"jsonrpc":"2.0","id":1,"method":"info"},{"jsonrpc":"2.0","method":"note"},'
        b'5,{"jsonrpc":"2.0","id":"r","result":1},{"jsonrpc":"1.0","id":2,"method":"x"}]'
    )
    batch = envelope.decode(line)
    assert isinstance(batch, Batch)
    request, note, five, reply, old = batch.items
    assert isinstance(request, Request) and request.raw == b'{"jsonrpc":"2.0","id":1,"method":"info"}'
    assert isinstance(note, Notification) and isinstance(reply, Reply)
    assert isinstance(five, Invalid) and (five.code, five.id) == (INVALID_REQUEST, None)
    assert isinstance(old, Invalid) and (old.code, old.id) == (INVALID_REQUEST, 2)


@pytest.mark.parametrize("where", ["under an unknown key", "in params", "in a batch"])
def test_a_depth_bomb_is_one_invalid_request_with_its_id(where: str) -> None:
    bomb = b"[" * 1000 + b"]" * 1000
    line = {
        "under an unknown key": b'{"jsonrpc":"2.0","id":1,"method":"info","x":' + bomb + b"}",
        "in params": b'{"jsonrpc":"2.0","id":1,"method":"info","params":{"a":' + bomb + b"}}",
        "in a batch": b'[{"jsonrpc":"2.0","id":1,"method":"info","x":' + bomb + b"}]",
    }[where]
    msg = envelope.decode(line)
    assert isinstance(msg, Invalid) and msg.code == INVALID_REQUEST and "nested too deeply" in msg.message
    assert msg.id == (None if where == "in a batch" else 1)


def test_a_depth_bomb_that_is_not_even_json_is_a_parse_error() -> None:
    for line in (b"[" * 100_000, b'{"id":1,"x":' + b"[" * 5000 + b"}", b"[" * 2000 + b'"' + b"]" * 2000):
        msg = envelope.decode(line)
        assert isinstance(msg, Invalid) and (msg.code, msg.id) == (PARSE_ERROR, None)
