"""Stream decoders, tested byte by byte: every split of a recorded stream gives the same events."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.providers.decoders import NDJSONDecoder, SSEDecoder, SSEEvent

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SSE_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.sse"))


def decode(data: bytes, cut: int | None = None) -> list[SSEEvent]:
    d = SSEDecoder()
    if cut is None:
        return d.feed(data) + d.finish()
    return d.feed(data[:cut]) + d.feed(data[cut:]) + d.finish()


@pytest.mark.parametrize("name", SSE_FIXTURES)
def test_every_split_of_a_recorded_stream_gives_the_same_events(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    whole = decode(data)
    assert whole, name
    for cut in range(len(data) + 1):
        assert decode(data, cut) == whole, (name, cut)


def test_byte_at_a_time_with_crlf() -> None:
    data = b"data: one\r\n\r\n: comment\r\nevent: x\r\ndata: a\r\ndata: b\r\n\r\n"
    d = SSEDecoder()
    out: list[SSEEvent] = []
    for i in range(len(data)):
        out += d.feed(data[i : i + 1])
    out += d.finish()
    assert out == [SSEEvent("message", "one"), SSEEvent("x", "a\nb")]
    assert d.comments == 1


def test_last_event_without_blank_line_is_delivered_at_finish() -> None:
    assert decode(b"event: message_stop\ndata: {}") == [SSEEvent("message_stop", "{}")]


def test_openrouter_comments_are_counted_not_emitted() -> None:
    data = (FIXTURES / "openrouter-stream-comments-midstream-error.response.sse").read_bytes()
    d = SSEDecoder()
    events = d.feed(data) + d.finish()
    assert d.comments == 17
    assert all(not e.data.startswith(":") for e in events)
    assert events[-1].data == "[DONE]"


def test_ndjson_any_split() -> None:
    data = b'{"a":1}\n{"b":2}\n\n{"c":3}'
    for cut in range(len(data) + 1):
        d = NDJSONDecoder()
        assert d.feed(data[:cut]) + d.feed(data[cut:]) + d.finish() == [b'{"a":1}', b'{"b":2}', b'{"c":3}']
