"""The process's two protocol pipes: one thread reads stdin, one thread owns stdout.

Both use plain `os.read`/`os.write` on file descriptors, so stdin and stdout may be pipes, ttys or
regular files (`llm-sidecar < requests.jsonl`), and a reader blocked at shutdown holds no Python
I/O lock. The writer drains everything queued into one `write` call, so a burst of stream events
costs one syscall, and the event loop never blocks on a slow host.

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

from sidecar.rpc.framing import LineSplitter, Oversize

_READ_CHUNK: Final = 256 * 1024
_STOP: Final = object()


def protect_stdout() -> int:
    """Return a private duplicate of fd 1 for the protocol; fd 1 itself then points at stderr."""
    sys.stdout.flush()
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return proto_fd


class StdoutWriter:
    """The only writer of protocol bytes. `write` is thread-safe and never blocks."""

    def __init__(self, fd: int, on_broken_pipe: Callable[[], None] | None = None) -> None:
        self._fd = fd
        self._queue: queue.SimpleQueue[bytes | object] = queue.SimpleQueue()
        self._on_broken = on_broken_pipe
        self._broken = False
        self._thread = threading.Thread(target=self._run, name="sidecar-stdout", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        if not self._broken:
            self._queue.put(data)

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
            if batch and not self._write_all(b"".join(batch)):
                return
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
            if self._on_broken is not None:
                self._on_broken()
            return False
        return True


def start_stdin_reader(
    fd: int, send: MemoryObjectSendStream[bytes | Oversize], max_line: int
) -> threading.Thread:
    """Read `fd` in a daemon thread, pushing whole lines into `send`; close `send` at EOF."""
    token = anyio.lowlevel.current_token()

    def run() -> None:
        splitter = LineSplitter(max_line)
        try:
            while True:
                try:
                    chunk = os.read(fd, _READ_CHUNK)
                except OSError:
                    chunk = b""
                items = splitter.feed(chunk) if chunk else splitter.finish()
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
