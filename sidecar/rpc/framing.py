"""Sans-IO splitting of a byte stream into protocol lines, with a size limit.

`LineSplitter.feed(chunk)` returns whole lines (without the newline) and, for a line longer than
the limit, one `Oversize` marker carrying the line's first bytes; the rest of that line is skipped
without ever being held in memory.

Must not know: JSON, JSON-RPC, where the bytes come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_MAX_LINE: Final = 16 * 1024 * 1024
_PREFIX_KEPT: Final = 4096


@dataclass(frozen=True, slots=True)
class Oversize:
    """A line went past the limit; `prefix` is its beginning (for finding its id)."""

    prefix: bytes
    limit: int


class LineSplitter:
    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._max = max_line
        self._buf = bytearray()
        self._skipping = False

    def feed(self, chunk: bytes) -> list[bytes | Oversize]:
        out: list[bytes | Oversize] = []
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

    def finish(self) -> list[bytes | Oversize]:
        """End of input: a last line without a newline still counts."""
        if self._skipping or not self._buf:
            self._buf.clear()
            return []
        line = self._strip(bytes(self._buf))
        self._buf.clear()
        return [line]

    def _keep(self, rest: bytes, out: list[bytes | Oversize]) -> None:
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
