"""Incremental, pure stream decoders: Server-Sent Events and NDJSON.

`feed(bytes) -> list[...]` may be called with any split of the stream (a test splits recorded
streams at every offset); `finish()` flushes at end of input. SSE follows the WHATWG rules that
matter here: `\\n`, `\\r\\n` and `\\r` line ends (Gemini uses CRLF), comment lines (OpenRouter's
`: OPENROUTER PROCESSING`), `event:` names (Anthropic), multi-line `data:`; an event is dispatched
at a blank line, and a last event left without one is still delivered at `finish()`.

Must not know: any provider's JSON, HTTP, I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

_MAX_PENDING: Final = 16 * 1024 * 1024


class StreamTooLarge(Exception):
    """One event or line grew past the limit without ending."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str
    data: str


class SSEDecoder:
    def __init__(self) -> None:
        self._pending = b""
        self._event = ""
        self._data: list[str] = []
        self._cr_pending = False
        self.comments = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._cr_pending and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the \n of a \r\n split across two chunks
        self._cr_pending = False
        buf = self._pending + chunk if self._pending else chunk
        out: list[SSEEvent] = []
        lines = buf.splitlines(keepends=True)
        if lines and not lines[-1].endswith((b"\n", b"\r")):
            self._pending = lines.pop()
            if len(self._pending) > _MAX_PENDING:
                raise StreamTooLarge("an SSE line exceeded 16 MiB")
        else:
            self._pending = b""
        if lines and lines[-1].endswith(b"\r"):
            self._cr_pending = True
        for raw in lines:
            self._line(raw.rstrip(b"\r\n"), out)
        return out

    def finish(self) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        if self._pending:
            self._line(self._pending, out)
            self._pending = b""
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
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        # `id:` and `retry:` mean nothing to these APIs.

    def _dispatch(self, out: list[SSEEvent]) -> None:
        if self._data:
            out.append(SSEEvent(self._event or "message", "\n".join(self._data)))
        self._data = []
        self._event = ""


class NDJSONDecoder:
    """Splits a stream into non-empty lines (each a JSON document, left undecoded)."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._pending + chunk if self._pending else chunk
        parts = buf.split(b"\n")
        self._pending = parts.pop()
        if len(self._pending) > _MAX_PENDING:
            raise StreamTooLarge("an NDJSON line exceeded 16 MiB")
        return [p for p in (x.strip() for x in parts) if p]

    def finish(self) -> list[bytes]:
        rest, self._pending = self._pending.strip(), b""
        return [rest] if rest else []
