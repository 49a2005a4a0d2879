"""The process's two protocol pipes: one thread reads stdin, one thread owns stdout.

Both use plain `os.read`/`os.write` on file descriptors, so stdin and stdout may be pipes, ttys or
regular files (`llm-sidecar < requests.jsonl`), and a reader blocked at shutdown holds no Python
I/O lock. The writer drains everything queued into one `write` call, so a burst of stream events
costs one syscall, and the event loop never blocks on a slow host.

The reader detects the connection's framing from its first bytes (lines, or LSP `Content-Length`
headers) and tells the writer, which frames every outgoing message the same way.

The writer counts the bytes queued and not yet written. Past `high_water` it is `congested`, and
`wait_for_room` (awaited by requests after each notification) returns once the queue is below
`low_water` again: a host that stops reading holds a few MiB here, not an ever-growing heap.
`write` itself never blocks and never drops, so answers always get through.

`protect_stdout()` moves the protocol to a private descriptor and points fd 1 at stderr, so a
`print()` in a dependency or a child process can never corrupt the protocol stream.

Must not know: JSON-RPC, methods, anything above framing.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
from collections.abc import Callable
from typing import Final

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectSendStream

from sidecar.rpc.framing import Detector, Framing, Piece, frame

_READ_CHUNK: Final = 256 * 1024
_STOP: Final = object()
HIGH_WATER: Final = 4 * 1024 * 1024
LOW_WATER: Final = 1024 * 1024
_ROOM_POLL_S: Final = 0.005


def protect_stdout() -> int:
    """Return a private duplicate of fd 1 for the protocol; fd 1 itself then points at stderr."""
    sys.stdout.flush()
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return proto_fd


class StdoutWriter:
    """The only writer of protocol bytes. `write` is thread-safe and never blocks."""

    def __init__(
        self,
        fd: int,
        on_broken_pipe: Callable[[], None] | None = None,
        *,
        high_water: int = HIGH_WATER,
        low_water: int = LOW_WATER,
    ) -> None:
        self._fd = fd
        self._queue: queue.SimpleQueue[bytes | object] = queue.SimpleQueue()
        self._on_broken = on_broken_pipe
        self._broken = False
        self._high = high_water
        self._low = low_water
        self._lock = threading.Lock()
        self._backlog = 0  # bytes queued and not yet written
        self.congested = False
        # Set once by the stdin reader, before the first message is dispatched.
        self.framing: Framing | None = None
        self._thread = threading.Thread(target=self._run, name="sidecar-stdout", daemon=True)
        self._thread.start()

    @property
    def backlog(self) -> int:
        return self._backlog

    def write(self, data: bytes) -> None:
        if self._broken:
            return
        with self._lock:
            self._backlog += len(data)
            if self._backlog > self._high:
                self.congested = True
        self._queue.put(data)

    async def wait_for_room(self) -> None:
        """Wait until the queue is back under the low-water mark (or the host is gone)."""
        # Polled: the writer thread could only set an anyio.Event by blocking on the loop, and
        # this runs only while the host is not keeping up.
        while self.congested and not self._broken:  # noqa: ASYNC110
            await anyio.sleep(_ROOM_POLL_S)

    def close(self, timeout: float = 1.0) -> None:
        """Flush what is queued, then stop the thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch: list[bytes] = []
            stop = item is _STOP
            if not stop:
                batch.append(item)  # type: ignore[arg-type]
                while True:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is _STOP:
                        stop = True
                        break
                    batch.append(more)  # type: ignore[arg-type]
            if batch:
                size = sum(map(len, batch))
                framing = self.framing
                data = b"".join(batch) if framing != "lsp" else b"".join(frame(m, framing) for m in batch)
                if not self._write_all(data):
                    return
                with self._lock:
                    self._backlog -= size
                    if self._backlog <= self._low:
                        self.congested = False
            if stop:
                return

    def _write_all(self, data: bytes) -> bool:
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError:  # the host closed its end: nothing more can be delivered
            self._broken = True
            self.congested = False
            if self._on_broken is not None:
                self._on_broken()
            return False
        return True


def start_stdin_reader(
    fd: int,
    send: MemoryObjectSendStream[Piece],
    max_line: int,
    on_framing: Callable[[Framing], None] | None = None,
) -> threading.Thread:
    """Read `fd` in a daemon thread, pushing whole messages into `send`; close `send` at EOF.

    `on_framing` is told the connection's framing once it is known, before the first message
    is pushed (the writer frames its answers the same way)."""
    token = anyio.lowlevel.current_token()

    def run() -> None:
        splitter = Detector(max_line)
        told = False
        try:
            while True:
                try:
                    chunk = os.read(fd, _READ_CHUNK)
                except OSError:
                    chunk = b""
                items = splitter.feed(chunk) if chunk else splitter.finish()
                if not told and splitter.framing is not None:
                    told = True
                    if on_framing is not None:
                        on_framing(splitter.framing)
                for item in items:
                    anyio.from_thread.run(send.send, item, token=token)
                if not chunk:
                    return
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, RuntimeError):
            return  # the loop is shutting down
        finally:
            with contextlib.suppress(RuntimeError):
                anyio.from_thread.run_sync(send.close, token=token)

    thread = threading.Thread(target=run, name="sidecar-stdin", daemon=True)
    thread.start()
    return thread
