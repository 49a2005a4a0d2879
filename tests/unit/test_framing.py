"""Line framing: any split of the input gives the same lines; oversize lines are refused, not held."""

from __future__ import annotations

from sidecar.rpc.framing import LineSplitter, Oversize


def split_all(data: bytes, limit: int = 1024, step: int | None = None) -> list[bytes | Oversize]:
    s = LineSplitter(limit)
    out: list[bytes | Oversize] = []
    chunks = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    for chunk in chunks:
        out += s.feed(chunk)
    return out + s.finish()


def test_lines_are_the_same_for_every_split() -> None:
    data = b'{"a":1}\n{"b":2}\r\n\n{"c":"x"}'
    expected = [b'{"a":1}', b'{"b":2}', b"", b'{"c":"x"}']
    for step in range(1, len(data) + 1):
        assert split_all(data, step=step) == expected


def test_oversize_line_is_reported_once_and_skipped() -> None:
    big = b'{"jsonrpc":"2.0","id":7,' + b"x" * 200 + b"}"
    for step in (1, 7, 64, None):
        out = split_all(big + b'\n{"ok":1}\n', limit=50, step=step)
        assert len(out) == 2, step
        assert isinstance(out[0], Oversize)
        assert out[0].prefix.startswith(b'{"jsonrpc":"2.0","id":7,')
        assert out[1] == b'{"ok":1}'


def test_memory_stays_bounded_while_skipping() -> None:
    s = LineSplitter(100)
    s.feed(b"y" * 150)
    for _ in range(1000):
        s.feed(b"y" * 1000)
    assert len(s._buf) == 0
    assert s.feed(b"\nz\n") == [b"z"]


def test_line_exactly_at_limit_is_accepted() -> None:
    assert split_all(b"a" * 10 + b"\n", limit=10) == [b"a" * 10]
    out = split_all(b"a" * 11 + b"\n", limit=10)
    assert len(out) == 1 and isinstance(out[0], Oversize)
