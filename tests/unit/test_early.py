"""The early answer's pure part: one read of stdin split into the `info` requests answered before
the event loop and everything handed on to the stdin reader, in order, with its splitter."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from sidecar.rpc import early, envelope
from sidecar.rpc.early import Early
from sidecar.rpc.framing import Oversize, Piece
from sidecar.wire.base import Empty

_decoder = msgspec.json.Decoder(Empty)
LIMIT = 1 << 20


def _accepts(params: msgspec.Raw | None) -> bool:
    try:
        _decoder.decode(params if params is not None else b"{}")
    except (msgspec.ValidationError, msgspec.DecodeError):
        return False
    return True


def _answer(rid: envelope.RequestId) -> bytes:
    return envelope.encode_result(rid, {"version": "test"})


def _take(chunk: bytes, max_line: int = LIMIT) -> tuple[list[Any], Early]:
    answers, handed = early.take(chunk, max_line=max_line, method="info", accepts=_accepts, answer=_answer)
    ids = [json.loads(line)["id"] for line in answers.splitlines()]
    return ids, handed


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def _info(rid: Any, **extra: Any) -> bytes:
    return _line({"jsonrpc": "2.0", "id": rid, "method": "info", **extra})


MODELS = _line({"jsonrpc": "2.0", "id": 9, "method": "list_models"})


@pytest.mark.parametrize("extra", [{}, {"params": {}}])
def test_an_info_with_empty_or_no_params_is_answered_and_nothing_is_handed_on(extra: dict[str, Any]) -> None:
    ids, handed = _take(_info(1, **extra) + b"\n")
    assert ids == [1] and handed.pieces == [] and handed.answered and not handed.ended
    assert handed.splitter.framing == "lines"


def test_the_answer_is_the_callers_encoding_byte_for_byte() -> None:
    answers, _ = early.take(
        _info("a") + b"\n", max_line=LIMIT, method="info", accepts=_accepts, answer=_answer
    )
    assert answers == envelope.encode_result("a", {"version": "test"})


@pytest.mark.parametrize(
    "line",
    [
        _info(1, params={"verbose": True}),  # invalid params: the loop answers -32602
        _info(1, params=None),  # `null` is no params object either
        _info(1, params=[]),
        _line({"jsonrpc": "2.0", "method": "info"}),  # a notification: never answered
        _line({"jsonrpc": "2.0", "id": None, "method": "info"}),  # an invalid id: -32600 from the loop
        _line({"jsonrpc": "1.0", "id": 1, "method": "info"}),
        _line({"id": 1, "method": "info"}),
        b"[" + _info(1) + b"]",  # a batch is answered as one array, by the loop
        _line({"jsonrpc": "2.0", "id": 1, "method": "list_models", "params": {"provider": "info"}}),
        b'{"jsonrpc":"2.0","id":1,"method":"info"',  # malformed (a whole line, not valid JSON)
        b'{"jsonrpc":"2.0","id":1,"method":"info","params":{}}  x',
    ],
)
def test_anything_but_a_well_formed_info_request_is_handed_on_untouched(line: bytes) -> None:
    ids, handed = _take(line + b"\n")
    assert ids == [] and handed.pieces == [line] and not handed.answered


def test_info_among_other_requests_is_answered_and_the_others_keep_their_order() -> None:
    chunk = (
        b"\n".join([MODELS, _info(1), b"", _info(2, params={"x": 1}), _info("z", params={}), MODELS]) + b"\n"
    )
    ids, handed = _take(chunk)
    assert ids == [1, "z"]
    assert handed.pieces == [MODELS, b"", _info(2, params={"x": 1}), MODELS]


def test_a_partial_last_line_stays_in_the_splitter_and_is_completed_by_the_next_read() -> None:
    ids, handed = _take(_info(1) + b"\n" + _info(2)[:10])
    assert ids == [1] and handed.pieces == []
    # The reader goes on feeding the same splitter: the line is whole once its end arrives.
    assert handed.splitter.feed(_info(2)[10:] + b"\n") == [_info(2)]


def test_a_partial_info_alone_is_not_answered() -> None:
    ids, handed = _take(_info(1))
    assert ids == [] and handed.pieces == [] and handed.splitter.finish() == [_info(1)]


def test_crlf_lines_are_answered_as_the_loop_reads_them() -> None:
    ids, handed = _take(_info(1) + b"\r\n" + MODELS + b"\r\n")
    assert ids == [1] and handed.pieces == [MODELS]


def test_an_info_over_the_line_limit_is_left_to_the_loop_as_oversize() -> None:
    line = _info(1, params={})
    ids, handed = _take(line + b"\n" + _info(2) + b"\n", max_line=len(line) - 1)
    assert ids == [2]
    assert len(handed.pieces) == 1 and isinstance(handed.pieces[0], Oversize)
    ids, handed = _take(line + b"\n", max_line=len(line))  # the limit itself is allowed
    assert ids == [1]


def test_an_lsp_framed_read_gets_no_early_answer() -> None:
    body = _info(1)
    ids, handed = _take(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert ids == [] and handed.pieces == [body] and handed.splitter.framing == "lsp"


_BODY = _info(1)
_FRAME = b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(_BODY), _BODY)


@pytest.mark.parametrize(  # blank so far, or a header name cut short (`Content-Type` is 12 bytes)
    ("blank", "cut"), [(b"\n\n", 0), (b"  ", 0), (b"", 5), (b"", 12), (b"\r\n", 12)]
)
def test_a_read_too_short_to_tell_the_framing_gets_no_answer_and_keeps_its_bytes(
    cut: int, blank: bytes
) -> None:
    ids, handed = _take(blank + _FRAME[:cut])
    assert ids == [] and handed.pieces == [] and handed.splitter.framing is None
    assert handed.splitter.feed(_FRAME[cut:]) == [_BODY] and handed.splitter.framing == "lsp"


def test_after_an_answered_info_the_connection_stays_line_framed() -> None:
    # The reader takes over the splitter that read `info`: a header later is a bad line, not LSP.
    ids, handed = _take(_info(1) + b"\n")
    pieces: list[Piece] = handed.splitter.feed(b"Content-Length: 5\r\n\r\nhello\n")
    assert ids == [1] and handed.splitter.framing == "lines"
    assert pieces == [b"Content-Length: 5", b"", b"hello"]


def test_the_end_of_input_is_handed_on() -> None:
    ids, handed = _take(b"")
    assert ids == [] and handed.ended and handed.pieces == [] and not handed.answered


def test_answers_stop_at_the_budget_and_the_rest_go_to_the_loop_in_order() -> None:
    chunk = b"".join(_info(n) + b"\n" for n in range(100))
    ids, handed = _take(chunk)
    each = len(_answer(10))
    assert 0 < len(ids) <= early.ANSWER_BUDGET // (each - 1)
    assert ids == list(range(len(ids)))
    assert handed.pieces == [_info(n) for n in range(len(ids), 100)]


def test_split_on_pieces_alone() -> None:
    answers, kept = early.split(
        [MODELS, _info(3), Oversize(b"{", 10)], method="info", accepts=_accepts, answer=_answer
    )
    assert answers == _answer(3) and kept == [MODELS, Oversize(b"{", 10)]
