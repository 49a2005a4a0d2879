"""Sans-IO splitting of a byte stream into protocol messages, with a size limit, in either framing.

Two framings exist: one message per line (the default, and MCP's stdio framing), and LSP's
`Content-Length: N` headers followed by an N-byte body (what `vscode-jsonrpc`'s stock
`StreamMessageReader/Writer` speak). `Detector` picks one from the connection's first bytes and
then behaves as the splitter it chose; `frame(message, framing)` frames an outgoing message.

Every splitter's `feed(chunk)` returns whole messages (bytes, without their framing) and, for one
longer than the limit, one `Oversize` marker carrying its first bytes; the rest of it is skipped
without ever being held in memory. A malformed LSP header block becomes an `Unframed` marker (the
reader answers it -32700) and the splitter resynchronises at the next header block.

Must not know: JSON, JSON-RPC, where the bytes come from.
"""

from __future__ import annotations

import re
from typing import Final, Literal, Protocol

DEFAULT_MAX_LINE: Final = 16 * 1024 * 1024
_PREFIX_KEPT: Final = 4096
_MAX_HEADER: Final = 8192  # an LSP header block longer than this is not one
_HEADER_NAMES: Final = (b"content-length:", b"content-type:")
# Not anchored to a line start: after junk, the header block that resynchronises may carry it.
# Compiled on first use (by `re`'s cache): only LSP-framed connections need it.
_CONTENT_LENGTH: Final = rb"(?i)content-length[ \t]*:[ \t]*(\d{1,12})[ \t]*(?:\r\n|$)"

Framing = Literal["lines", "lsp"]


class _Marker:
    """A small record compared by value (a dataclass would cost start-up time to define)."""

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Marker) and type(other) is type(self) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Oversize(_Marker):
    """A line went past the limit; `prefix` is its beginning (for finding its id)."""

    __slots__ = ("limit", "prefix")

    def __init__(self, prefix: bytes, limit: int) -> None:
        self.prefix = prefix
        self.limit = limit


class Unframed(_Marker):
    """Bytes that were not a valid LSP header block (`reason` says why); they were skipped."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


Piece = bytes | Oversize | Unframed


class Splitter(Protocol):
    def feed(self, chunk: bytes) -> list[Piece]: ...

    def finish(self) -> list[Piece]: ...


class LineSplitter:
    """One message per line; a CR before the newline is dropped."""

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._max = max_line
        self._buf = bytearray()
        self._skipping = False

    def feed(self, chunk: bytes) -> list[Piece]:
        if not self._buf and not self._skipping and len(chunk) <= self._max:
            # The usual read: whole lines, none of which can be over the limit. One C-level split
            # instead of a find per line (a read of 64 requests costs a fifth as much).
            lines = chunk.split(b"\n")
            rest = lines.pop()
            if rest:
                self._buf += rest
            # `find`, not `in`: bytes.__contains__ first tries its operand as an int, raising (and
            # formatting) a TypeError it then discards, on every read.
            if chunk.find(b"\r") >= 0:
                return [self._strip(line) for line in lines]
            return lines  # type: ignore[return-value]  # bytes are Pieces; cast() would cost a call
        out: list[Piece] = []
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                self._keep(chunk[start:], out)
                return out
            if self._skipping:
                self._skipping = False
            elif len(self._buf) + (nl - start) > self._max:
                prefix = (bytes(self._buf[:_PREFIX_KEPT]) + chunk[start : min(nl, start + _PREFIX_KEPT)])[
                    :_PREFIX_KEPT
                ]
                out.append(Oversize(prefix, self._max))
                self._buf.clear()
            elif self._buf:
                self._buf += chunk[start:nl]
                out.append(self._strip(bytes(self._buf)))
                self._buf.clear()
            else:
                out.append(self._strip(chunk[start:nl]))
            start = nl + 1

    def finish(self) -> list[Piece]:
        """End of input: a last line without a newline still counts."""
        if self._skipping or not self._buf:
            self._buf.clear()
            return []
        line = self._strip(bytes(self._buf))
        self._buf.clear()
        return [line]

    def _keep(self, rest: bytes, out: list[Piece]) -> None:
        if self._skipping or not rest:
            return
        if len(self._buf) + len(rest) > self._max:
            prefix = (bytes(self._buf[:_PREFIX_KEPT]) + rest[:_PREFIX_KEPT])[:_PREFIX_KEPT]
            out.append(Oversize(prefix, self._max))
            self._buf.clear()
            self._skipping = True
            return
        self._buf += rest

    @staticmethod
    def _strip(line: bytes) -> bytes:
        # Hosts on Windows may send CRLF; the JSON itself never contains a raw CR.
        return line[:-1] if line.endswith(b"\r") else line


class ContentLengthSplitter:
    """LSP base protocol: `Content-Length: N` (and optionally `Content-Type`) header lines ending
    in CRLF, a blank line, then exactly N bytes of body. Header names are case-insensitive."""

    def __init__(self, max_body: int = DEFAULT_MAX_LINE) -> None:
        self._max = max_body
        self._buf = bytearray()
        self._need: int | None = None  # body bytes expected, once a header block is read
        self._skip = 0  # bytes of an oversize body still to throw away
        self._prefix: bytearray | None = None  # its first bytes, kept until the Oversize is out

    def feed(self, chunk: bytes) -> list[Piece]:
        out: list[Piece] = []
        self._buf += chunk
        while self._step(out):
            pass
        return out

    def finish(self) -> list[Piece]:
        out: list[Piece] = []
        if self._prefix is not None:
            out.append(Oversize(bytes(self._prefix), self._max))
        elif self._need is not None:
            out.append(Unframed(f"the input ended {self._need - len(self._buf)} bytes short of a body"))
        elif bytes(self._buf).strip():
            out.append(Unframed("the input ended inside a header block"))
        self._buf.clear()
        self._prefix = None
        return out

    def _step(self, out: list[Piece]) -> bool:
        """Take one header block, body or piece of skipped body off the buffer; False when more
        bytes are needed."""
        if self._skip:
            return self._skip_some(out)
        if self._need is None:
            while self._buf[:2] == b"\r\n":  # blank lines between messages
                del self._buf[:2]
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > _MAX_HEADER:
                    out.append(Unframed(f"no end of the header block within {_MAX_HEADER} bytes"))
                    self._resync()
                    return True
                return False
            header = bytes(self._buf[:end])
            del self._buf[: end + 4]
            lengths = re.findall(_CONTENT_LENGTH, header)
            if not lengths:
                out.append(Unframed("a header block without a valid Content-Length"))
                return True
            size = int(lengths[-1])
            if size > self._max:
                self._skip, self._prefix = size, bytearray()
                return True
            self._need = size
        if len(self._buf) < self._need:
            return False
        out.append(bytes(self._buf[: self._need]))
        del self._buf[: self._need]
        self._need = None
        return True

    def _skip_some(self, out: list[Piece]) -> bool:
        taken = min(self._skip, len(self._buf))
        if self._prefix is not None:
            self._prefix += self._buf[: min(taken, _PREFIX_KEPT - len(self._prefix))]
            if len(self._prefix) >= _PREFIX_KEPT or taken == self._skip:
                out.append(Oversize(bytes(self._prefix), self._max))
                self._prefix = None
        del self._buf[:taken]
        self._skip -= taken
        return not self._skip and bool(self._buf)

    def _resync(self) -> None:
        """Drop junk up to the next thing that may start a header block (keeping a tail that may
        hold the start of a header name cut by the read)."""
        at = self._buf.lower().find(b"content-", 1)
        del self._buf[: at if at > 0 else max(len(self._buf) - len(_HEADER_NAMES[0]), 0)]


class Detector:
    """Decides the framing from the connection's first bytes, then splits as that framing does.

    The connection is LSP-framed when its first non-blank bytes are a header name
    (`Content-Length:` or `Content-Type:`, any case); anything else is line-delimited.
    """

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._max = max_line
        self._pending = bytearray()
        self._inner: Splitter | None = None
        self.framing: Framing | None = None

    def feed(self, chunk: bytes) -> list[Piece]:
        if self._inner is not None:
            return self._inner.feed(chunk)
        self._pending += chunk
        start = len(self._pending) - len(self._pending.lstrip())
        head = bytes(self._pending[start : start + len(_HEADER_NAMES[0])]).lower()
        undecided = not head or any(name.startswith(head) and len(head) < len(name) for name in _HEADER_NAMES)
        if undecided and len(self._pending) < _MAX_HEADER:
            return []  # blank so far, or a prefix of a header name: wait for more
        framing: Framing = "lsp" if any(head.startswith(name) for name in _HEADER_NAMES) else "lines"
        return self._choose(framing).feed(self._take())

    @property
    def chosen(self) -> Splitter | None:
        """The splitter of the framing decided on, once it is: feed it directly from then on."""
        return self._inner

    def finish(self) -> list[Piece]:
        if self._inner is None:
            return self._choose("lines").feed(self._take()) + self._choose("lines").finish()
        return self._inner.finish()

    def _choose(self, framing: Framing) -> Splitter:
        if self._inner is None:
            self.framing = framing
            self._inner = ContentLengthSplitter(self._max) if framing == "lsp" else LineSplitter(self._max)
        return self._inner

    def _take(self) -> bytes:
        data = bytes(self._pending)
        self._pending.clear()
        return data


def frame(message: bytes, framing: Framing | None) -> bytes:
    """An outgoing message (one JSON text ending in a newline) in the connection's framing."""
    if framing != "lsp":
        return message
    body = message[:-1] if message.endswith(b"\n") else message
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
