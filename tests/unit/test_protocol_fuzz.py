"""Protocol fuzzing in-process, without I/O: framing and envelopes under hypothesis, and the
dispatcher under the seeded cases of tests/protocol_fuzz.py with every method routed to a stub.
Nothing raises, every split of the input gives the same messages, every classification matches an
independent reading of the JSON-RPC spec, and every request is answered exactly once."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import anyio
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.errors import INVALID_REQUEST, PARSE_ERROR
from sidecar.rpc import envelope
from sidecar.rpc.dispatcher import Dispatcher
from sidecar.rpc.envelope import Batch, Invalid, Notification, Reply, Request
from sidecar.rpc.framing import Detector, Oversize, Piece, Unframed
from sidecar.rpc.routes import RequestContext, route
from sidecar.wire.methods import METHODS
from tests.protocol_fuzz import Fuzzer

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON values without lone surrogates (msgspec refuses them, Python's json does not).
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)
ids = (
    st.integers(-(2**63), 2**63)
    | text
    | st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.just([1])
)
message_fields = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]),
        "id": ids,
        "method": text | st.integers() | st.none(),
        "params": json_values,
        "result": json_values,
        "error": json_values,
    },
)


def expected(value: Any) -> str:
    """The class of one parsed JSON value, by the spec, written independently of envelope.py."""
    if isinstance(value, list):
        return "batch" if value else "invalid"
    if not isinstance(value, dict):
        return "invalid"
    has_id = "id" in value
    rid = value.get("id")
    if has_id and not ((isinstance(rid, int) and not isinstance(rid, bool)) or isinstance(rid, str)):
        return "invalid"
    if value.get("jsonrpc") != "2.0":
        return "invalid"
    if "method" not in value:
        return "reply" if has_id and ("result" in value or "error" in value) else "invalid"
    if not isinstance(value["method"], str) or not value["method"]:
        return "invalid"
    return "request" if has_id else "notification"


CLASSES = {
    Request: "request",
    Notification: "notification",
    Reply: "reply",
    Invalid: "invalid",
    Batch: "batch",
}


@FAST
@given(st.binary(max_size=200) | st.builds(lambda v: json.dumps(v).encode(), json_values))
def test_decode_never_raises_and_answers_with_a_standard_code(line: bytes) -> None:
    msg = envelope.decode(line)
    assert type(msg) in CLASSES
    if isinstance(msg, Invalid):
        assert msg.code in (PARSE_ERROR, INVALID_REQUEST)


@FAST
@given(message_fields | json_values)
def test_every_message_is_classified_as_the_spec_says(value: Any) -> None:
    line = json.dumps(value, ensure_ascii=False).encode()
    msg = envelope.decode(line)
    assert CLASSES[type(msg)] == expected(value), (value, msg)
    if isinstance(msg, Batch):
        assert [CLASSES[type(item)] for item in msg.items] == [
            "invalid" if isinstance(v, list) else expected(v) for v in value
        ]
    if isinstance(msg, Request | Reply):
        assert msg.id == value["id"]
    if isinstance(msg, Request | Notification):
        assert msg.method == value["method"]
        if "params" in value:
            assert msg.params is not None and json.loads(bytes(msg.params)) == value["params"]
        else:
            assert msg.params is None


@FAST
@given(st.lists(st.binary(max_size=60).filter(lambda b: b"\n" not in b), max_size=8), st.data())
def test_lines_are_the_same_however_the_input_is_cut(lines: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(b"{" + line + b"\n" for line in lines)  # `{`: never mistaken for LSP headers
    assert pieces(stream, data.draw(cuts(len(stream)))) == [b"{" + line.rstrip(b"\r") for line in lines]


@FAST
@given(
    st.lists(st.binary(max_size=90).filter(lambda b: b"\n" not in b), max_size=8),
    st.binary(max_size=90).filter(lambda b: b"\n" not in b),
    st.data(),
)
def test_oversize_lines_are_refused_the_same_however_the_input_is_cut(
    lines: list[bytes], last: bytes, data: st.DataObject
) -> None:
    limit = 40
    whole = [b"{" + line for line in lines] + ([b"{" + last] if last else [])
    stream = b"\n".join(whole) + (b"" if last else b"\n" if lines else b"")
    out = pieces(stream, data.draw(cuts(len(stream))), limit=limit)
    assert len(out) == len(whole), (whole, out)
    for line, piece in zip(whole, out, strict=True):
        if len(line) > limit:
            assert isinstance(piece, Oversize) and piece.limit == limit
            assert line.startswith(piece.prefix) and len(piece.prefix) > limit
        else:
            assert piece == (line[:-1] if line.endswith(b"\r") else line)


@FAST
@given(st.lists(st.binary(max_size=60), max_size=8), st.data())
def test_lsp_frames_are_the_same_however_the_input_is_cut(bodies: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(b"Content-Length: %d\r\n\r\n%s" % (len(body), body) for body in bodies)
    assert pieces(stream, data.draw(cuts(len(stream)))) == bodies


@FAST
@given(st.binary(max_size=300), st.data())
def test_arbitrary_bytes_never_break_the_splitters(stream: bytes, data: st.DataObject) -> None:
    for prefix in (b"", b"Content-Length: 5\r\n\r\n"):
        out = pieces(prefix + stream, data.draw(cuts(len(prefix + stream))), limit=64)
        assert all(isinstance(p, bytes | Oversize | Unframed) for p in out)
        assert all(len(p) <= 64 for p in out if isinstance(p, bytes))


def cuts(size: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, size), max_size=6).map(sorted)


def pieces(stream: bytes, at: list[int], limit: int = 1024) -> list[Piece]:
    detector = Detector(limit)
    out: list[Piece] = []
    for start, end in zip([0, *at], [*at, len(stream)], strict=True):
        out += detector.feed(stream[start:end])
    return out + detector.finish()


# --- the dispatcher under the seeded cases -------------------------------------------------------


async def stub(params: Any, ctx: RequestContext) -> dict[str, str]:
    await ctx.notify("stub/note", {"request_id": ctx.request_id})
    return {"method": ctx.method}


@pytest.mark.anyio
@pytest.mark.parametrize("seed", [1, 2])
async def test_the_dispatcher_answers_every_fuzzed_request_exactly_once(seed: int) -> None:
    fuzzer = Fuzzer(seed)
    cases = [fuzzer.case(mcp=False) for _ in range(1000)]
    out: list[bytes] = []
    dispatcher = Dispatcher({name: route(spec.params, stub) for name, spec in METHODS.items()}, out.append)
    send, receive = anyio.create_memory_object_stream[bytes](100)
    async with anyio.create_task_group() as tg:
        tg.start_soon(dispatcher.serve, receive)
        async with send:
            for case in cases:
                await send.send(case.data)
    answers: list[dict[str, Any]] = []
    for chunk in out:
        decoded = msgspec.json.decode(chunk)
        answers += decoded if isinstance(decoded, list) else [decoded]
    answers = [a for a in answers if "method" not in a]
    by_id: dict[str, list[dict[str, Any]]] = {}
    for a in answers:
        by_id.setdefault(json.dumps(a["id"]), []).append(a)
    problems = []
    for case in cases:
        for expect in case.expects:
            if expect.id is None:
                continue
            got = by_id.pop(json.dumps(expect.id), [])
            if len(got) != 1 or expect.check(got[0]):
                problems.append((expect.what, case.data[:200], got))
    nulls = by_id.pop("null", [])
    wanted = Counter(
        -32700 if e.check({"error": {"code": -32700}}) is None else -32600
        for c in cases
        for e in c.expects
        if e.id is None
    )
    assert Counter(a["error"]["code"] for a in nulls) == wanted
    assert by_id == {}, "answers nobody asked for"
    assert problems == []
