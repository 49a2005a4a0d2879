"""Framing: any split of the input gives the same messages, in lines or LSP frames (detected from
the first bytes); oversize messages are refused, not held; broken LSP headers resynchronise."""

from __future__ import annotations

from sidecar.rpc.framing import (
    ContentLengthSplitter,
    Detector,
    LineSplitter,
    Oversize,
    Piece,
    Unframed,
    frame,
)


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


# --- LSP framing and its detection ---------------------------------------------------------------


def lsp(body: bytes, *, extra: bytes = b"", name: bytes = b"Content-Length") -> bytes:
    return name + b": %d\r\n%s\r\n%s" % (len(body), extra, body)


def detect_all(data: bytes, limit: int = 1024, step: int | None = None) -> tuple[list[Piece], str | None]:
    d = Detector(limit)
    out: list[Piece] = []
    chunks = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    for chunk in chunks:
        out += d.feed(chunk)
    return out + d.finish(), d.framing


def test_lsp_frames_are_the_same_for_every_split() -> None:
    bodies = [b'{"jsonrpc":"2.0","id":1,"method":"info"}', b'{"a":\n  "pretty\\n"}', b"{}"]
    data = (
        lsp(bodies[0], extra=b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n")
        + lsp(bodies[1], name=b"content-length")
        + b"\r\n"  # a stray blank line between frames
        + lsp(bodies[2])
    )
    for step in range(1, len(data) + 1):
        assert detect_all(data, step=step) == (bodies, "lsp"), step


def test_a_content_type_header_first_also_means_lsp() -> None:
    body = b'{"x":1}'
    data = b"Content-Type: application/vscode-jsonrpc\r\nContent-Length: 7\r\n\r\n" + body
    assert detect_all(data, step=3) == ([body], "lsp")


def test_lines_are_detected_from_the_first_byte_and_split_as_before() -> None:
    assert detect_all(b'{"a":1}\n{"b":2}\n', step=1) == ([b'{"a":1}', b'{"b":2}'], "lines")
    assert detect_all(b"\n\n  [1]\n") == ([b"", b"", b"  [1]"], "lines")
    # Something that starts like a header name but is not one is a (bad) line.
    assert detect_all(b"Content-Lengthy: 3\n", step=2) == ([b"Content-Lengthy: 3"], "lines")
    assert detect_all(b"Cont") == ([b"Cont"], "lines")  # the input ended before it could tell


def test_an_oversize_lsp_body_is_refused_once_skipped_and_the_next_frame_read() -> None:
    big = b'{"jsonrpc":"2.0","id":9,' + b"x" * 5000 + b"}"
    for step in (1, 13, 1000, None):
        out, framing = detect_all(lsp(big) + lsp(b'{"ok":1}'), limit=100, step=step)
        assert framing == "lsp"
        assert len(out) == 2 and isinstance(out[0], Oversize), (step, out)
        assert out[0].prefix.startswith(b'{"jsonrpc":"2.0","id":9,') and out[1] == b'{"ok":1}'


def test_skipping_an_oversize_lsp_body_holds_no_memory() -> None:
    s = ContentLengthSplitter(100)
    assert s.feed(b"Content-Length: 100000000\r\n\r\n") == []  # waits for the body's first bytes
    (refused,) = s.feed(b"y" * 10_000)
    assert isinstance(refused, Oversize) and refused.prefix == b"y" * 4096
    for _ in range(100):
        assert s.feed(b"y" * 10_000) == []
        assert len(s._buf) == 0


def test_broken_header_blocks_are_reported_and_the_stream_resynchronises() -> None:
    out, _ = detect_all(b"Content-Length: nope\r\n\r\n" + lsp(b"{}"))
    assert len(out) == 2 and isinstance(out[0], Unframed) and out[1] == b"{}"
    junk = b"Content-Length: 5\r\n" + b"X-Junk: y" * 2000  # never ends its header block
    out, _ = detect_all(junk + lsp(b"[]"), step=4096)
    assert isinstance(out[0], Unframed) and out[-1] == b"[]"
    out, _ = detect_all(lsp(b"{}")[:-1])  # the input ends one byte short of the body
    assert len(out) == 1 and isinstance(out[0], Unframed)


def test_frame_writes_lines_or_content_length() -> None:
    assert frame(b'{"a":1}\n', "lines") == b'{"a":1}\n'
    assert frame(b'{"a":1}\n', None) == b'{"a":1}\n'
    assert frame('{"é":1}\n'.encode(), "lsp") == b'Content-Length: 8\r\n\r\n{"\xc3\xa9":1}'
