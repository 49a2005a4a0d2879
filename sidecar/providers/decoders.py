"""Incremental, pure stream decoders: Server-Sent Events and NDJSON.

`feed(bytes) -> list[...]` may be called with any split of the stream (a test splits recorded
streams at every offset); `finish()` flushes at end of input. SSE follows the WHATWG rules that
matter here: `\\n`, `\\r\\n` and `\\r` line ends (Gemini uses CRLF), comment lines (OpenRouter's
`: OPENROUTER PROCESSING`), `event:` names (Anthropic), multi-line `data:`; an event is dispatched
at a blank line, and a last event left without one is still delivered at `finish()`.

Must not know: any provider's JSON, HTTP, I/O.
"""

from __future__ import annotations

from typing import Final

import msgspec

_MAX_PENDING: Final = 16 * 1024 * 1024
_LF: Final = 10
_CR: Final = 13


class StreamTooLarge(Exception):
    """One event or line grew past the limit without ending."""


class SSEEvent(msgspec.Struct, frozen=True):
    """One dispatched event (a Struct: several per answer, built at a seventh of a frozen
    dataclass's cost)."""

    event: str
    data: str


class _Lines:
    """Splits bytes into lines without copying what is pending: one growing buffer, searched only
    where it has not been searched yet, so a 10 MB line that arrives in 64 KB pieces costs one pass
    and one buffer (not a new concatenation per piece)."""

    __slots__ = ("_buf", "_cr_pending", "_crlf", "_limit", "_scanned")

    def __init__(self, limit: int, *, crlf: bool) -> None:
        self._buf = bytearray()
        self._scanned = 0
        self._limit = limit
        self._crlf = crlf  # \r and \r\n end lines too (SSE); else only \n (NDJSON)
        self._cr_pending = False

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._cr_pending and chunk[:1] == b"\n":
            chunk = chunk[1:]  # the \n of a \r\n split across two chunks
        self._cr_pending = False
        buf = self._buf
        buf += chunk
        out: list[bytes] = []
        start = 0
        pos = self._scanned
        end = len(buf)
        next_lf = buf.find(b"\n", pos)
        next_cr = buf.find(b"\r", pos) if self._crlf else -1
        if next_cr < 0:
            # The usual case (`\n` line ends only; what was scanned before holds no line end):
            # every line up to the last `\n` in one split, not a search per line.
            if next_lf >= 0:
                last = buf.rfind(b"\n")
                out = bytes(buf[:last]).split(b"\n")
                start = last + 1
            next_lf = -1  # nothing left for the loop below
        while True:
            if next_lf < 0 and next_cr < 0:
                break
            if next_cr < 0 or (0 <= next_lf < next_cr):
                eol, after = next_lf, next_lf + 1
            elif next_cr + 1 < end:
                eol = next_cr
                after = next_cr + 2 if buf[next_cr + 1] == _LF else next_cr + 1
            else:  # a \r last in the buffer: the line ends, its \n may come next
                eol, after = next_cr, next_cr + 1
                self._cr_pending = True
            out.append(bytes(buf[start:eol]))
            start = after
            if next_lf >= 0 and next_lf < after:
                next_lf = buf.find(b"\n", after)
            if next_cr >= 0 and next_cr < after:
                next_cr = buf.find(b"\r", after)
        if start:
            del buf[:start]
        self._scanned = len(buf)
        if len(buf) > self._limit:
            raise StreamTooLarge(f"one line exceeded {self._limit} bytes")
        return out

    def finish(self) -> bytes:
        rest = bytes(self._buf)
        self._buf = bytearray()
        self._scanned = 0
        return rest


class SSEDecoder:
    def __init__(self, max_event_bytes: int = _MAX_PENDING) -> None:
        self._lines = _Lines(max_event_bytes, crlf=True)
        self._limit = max_event_bytes
        self._size = 0
        self._event = ""
        self._data: list[str] = []
        self.comments = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        for raw in self._lines.feed(chunk):
            # The two lines nearly every event is made of, here; the rest in `_line`.
            if not raw:
                self._dispatch(out)
            elif raw[:6] == b"data: ":
                self._size += len(raw) - 6
                if self._size > self._limit:
                    raise StreamTooLarge(f"one event exceeded {self._limit} bytes")
                self._data.append(raw[6:].decode("utf-8", "replace"))
            else:
                self._line(raw, out)
        return out

    def finish(self) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        rest = self._lines.finish()
        if rest:
            self._line(rest, out)
        self._dispatch(out)
        return out

    def _line(self, line: bytes, out: list[SSEEvent]) -> None:
        if not line:
            self._dispatch(out)
            return
        if line[:1] == b":":
            self.comments += 1
            return
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._size += len(value)
            if self._size > self._limit:
                raise StreamTooLarge(f"one event exceeded {self._limit} bytes")
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        # `id:` and `retry:` mean nothing to these APIs.

    def _dispatch(self, out: list[SSEEvent]) -> None:
        data = self._data
        if data:
            out.append(SSEEvent(self._event or "message", data[0] if len(data) == 1 else "\n".join(data)))
            self._data = []
        self._size = 0
        self._event = ""


class NDJSONDecoder:
    """Splits a stream into non-empty lines (each a JSON document, left undecoded)."""

    def __init__(self, max_line_bytes: int = _MAX_PENDING) -> None:
        self._lines = _Lines(max_line_bytes, crlf=False)

    def feed(self, chunk: bytes) -> list[bytes]:
        return [p for p in (x.strip() for x in self._lines.feed(chunk)) if p]

    def finish(self) -> list[bytes]:
        rest = self._lines.finish().strip()
        return [rest] if rest else []
