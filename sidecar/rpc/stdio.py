"""The process's two protocol pipes: stdin read by the event loop, stdout written by it.

Both use plain `os.read`/`os.write` on file descriptors, so stdin and stdout may be pipes, sockets,
ttys or regular files (`llm-sidecar < requests.jsonl`), and nothing holds a Python I/O lock.

Reading: where the loop can poll stdin (a pipe or a socket on POSIX), the loop itself waits for it
to be readable and reads it: one read, then every whole message in it, handed over as one batch
with no thread in between (`pump` hands it over from the loop's read callback, without a task
switch). Once that batch's answers are written, the same callback reads again without waiting
(Linux: `preadv2(RWF_NOWAIT)`), a few times at most: a host with requests in flight has often
written its next ones meanwhile, and they are served without another turn of the loop. Where
the loop cannot poll stdin (regular files, ttys, /dev/null, Windows), one daemon thread reads,
and hands each read's messages to the loop in one call. The reader detects the connection's framing
from its first bytes (lines, or LSP `Content-Length` headers) and tells the writer, which frames
every outgoing message the same way.

Writing: messages written on the loop are gathered until the loop's next turn (or, between `hold`
and `release`, until `release`: the answers to one read) and written with one call straight from
the loop while the pipe has room: on Linux one `pwritev2(RWF_NOWAIT)`, which writes what fits and
never waits; elsewhere while `poll` says writable, in pieces of at most PIPE_BUF bytes, which a
blocking pipe accepts without waiting. What does not fit, and whatever is written while something
is still queued, goes to one writer thread that blocks on the pipe in the loop's place, so the
loop never waits for a slow host and order is kept.

The writer counts the bytes queued for the thread and not yet written. Past `high_water` it is
`congested`, and `wait_for_room` (awaited by requests after each notification) returns once the
queue is below `low_water` again: a host that stops reading holds a few MiB here, not an ever-
growing heap. `write` itself never blocks and never drops, so answers always get through.

`protect_stdout()` moves the protocol to a private descriptor and points fd 1 at stderr, so a
`print()` in a dependency or a child process can never corrupt the protocol stream. It lives in
`early`, which answers a waiting handshake before this module (and asyncio) is even imported, and
hands the reader what it read as an `Early`: the reader starts from there, as if it had read it.

Must not know: JSON-RPC, methods, anything above framing.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import queue
import select
import stat
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectSendStream

from sidecar.rpc.early import READ_CHUNK, Early, protect_stdout
from sidecar.rpc.framing import Detector, Framing, Piece, frame

__all__ = ["StdinReader", "StdoutWriter", "protect_stdout"]

_READ_CHUNK: Final = READ_CHUNK
_STOP: Final = object()
HIGH_WATER: Final = 4 * 1024 * 1024
LOW_WATER: Final = 1024 * 1024
_ROOM_POLL_S: Final = 0.005
# A write of at most PIPE_BUF bytes to a pipe that polls writable does not block (POSIX, Linux).
_DIRECT_PIECE: Final = getattr(select, "PIPE_BUF", 512)
# A burst larger than this goes to the writer thread whole: one big blocking write there is cheaper
# than many small ones here.
_DIRECT_MAX: Final = 256 * 1024
# Linux: a write that takes what the pipe has room for and never waits, whatever the fd's mode.
_RWF_NOWAIT: Final[int] = getattr(os, "RWF_NOWAIT", 0)
# What an older kernel (or a descriptor without non-blocking writes) says to RWF_NOWAIT.
_NOWAIT_REFUSED: Final = frozenset({errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS, errno.ESPIPE})
# Reads the loop's read callback may add, each without waiting, while stdin has more: a host with
# requests in flight has often written its next ones by the time this read's answers are written,
# and reading them here saves a turn of the loop (and its `epoll_wait`). Bounded, so that the
# requests it started, and everything else on the loop, wait for a few reads at most.
_MORE_READS: Final = 3
# Read callbacks that try no such read after one found nothing at once (the host waits for every
# answer before it writes again): there, each would be a system call for nothing.
_REST_AFTER_MISS: Final = 4


def _loop_can_poll(fd: int) -> bool:
    """Whether the event loop can wait on `fd`: a pipe or a socket, on POSIX."""
    if os.name != "posix":
        return False
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class StdoutWriter:
    """The only writer of protocol bytes. `write` is thread-safe and never blocks.

    Created on a running asyncio loop, it writes from that loop when it can (see the module
    docstring); created elsewhere, every write goes through its thread."""

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
        self._backlog = 0  # bytes queued for the thread and not yet written
        self.congested = False
        # Set once by the stdin reader, before the first message is dispatched.
        self.framing: Framing | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = -1
        self._poll: select.poll | None = None
        self._pending: list[bytes] = []  # written on the loop this turn, not yet sent
        self._turn_used = False  # this loop turn has written; `_flush` is scheduled
        self._held = False  # between `hold` and `release`: everything waits for `release`
        self._nowait = False  # `pwritev2(RWF_NOWAIT)` works on this fd (until it says otherwise)
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
            self._nowait = bool(_RWF_NOWAIT) and _loop_can_poll(fd)
            if hasattr(select, "poll"):
                self._poll = select.poll()
                self._poll.register(fd, select.POLLOUT)
        self._thread = threading.Thread(target=self._run, name="sidecar-stdout", daemon=True)
        self._thread.start()

    @property
    def backlog(self) -> int:
        return self._backlog

    def write(self, data: bytes) -> None:
        if self._broken:
            return
        if threading.get_ident() == self._loop_thread:
            if self._turn_used or self._held:  # later writes of this turn go out together, at its end
                self._pending.append(data)
                return
            # The first write of a turn goes out at once: an answer or a first event waits for
            # nothing else the loop is doing.
            self._turn_used = True
            assert self._loop is not None
            self._loop.call_soon(self._flush)
            self._send([data])
            return
        if self._loop is not None and not self._loop.is_closed():
            # Keep order with what the loop has gathered: let the loop write it.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self.write, data)
                return
        self._enqueue(self._framed([data]))

    def hold(self) -> Callable[[bytes], None]:
        """On the loop: gather what is written until `release` (the answers to one read).

        Returns a function that writes like `write` until `release`, called on the loop (the
        list the answers gather in: no Python call per answer)."""
        self._held = True
        if self._broken or threading.get_ident() != self._loop_thread:
            return self.write
        return self._pending.append

    def release(self) -> None:
        """On the loop: send what was gathered since `hold`, in one write."""
        self._held = False
        if self._pending:
            batch, self._pending = self._pending, []
            self._send(batch)

    async def wait_for_room(self) -> None:
        """Wait until the queue is back under the low-water mark (or the host is gone)."""
        # Polled: the writer thread could only set an anyio.Event by blocking on the loop, and
        # this runs only while the host is not keeping up.
        while self.congested and not self._broken:  # noqa: ASYNC110
            await anyio.sleep(_ROOM_POLL_S)

    def close(self, timeout: float = 1.0) -> None:
        """Flush what is gathered and queued, then stop the thread."""
        if self._pending:
            pending, self._pending = self._pending, []
            self._enqueue(self._framed(pending))
        self._loop_thread = -1  # from now on every write goes through the thread
        self._loop = None
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _framed(self, batch: list[bytes]) -> bytes:
        framing = self.framing
        return b"".join(batch) if framing != "lsp" else b"".join(frame(m, framing) for m in batch)

    def _flush(self) -> None:
        """On the loop, once per turn that wrote: send what the turn gathered."""
        self._turn_used = False
        if self._pending:
            batch, self._pending = self._pending, []
            self._send(batch)

    def _send(self, batch: list[bytes]) -> None:
        """On the loop: write `batch` straight away while the pipe has room; queue the rest."""
        if self._broken:
            return
        data = b"".join(batch) if self.framing != "lsp" else self._framed(batch)
        if self._backlog == 0 and len(data) <= _DIRECT_MAX:
            try:
                data = self._write_now(data)
            except OSError:
                self._gone()
                return
            if not data:
                return
        self._enqueue(data)

    def _write_now(self, data: bytes) -> bytes:
        """Write what the pipe takes at once, without waiting; return the rest."""
        if self._nowait:
            try:
                return data[os.pwritev(self._fd, (data,), -1, _RWF_NOWAIT) :]
            except BlockingIOError:
                return data
            except OSError as exc:
                if exc.errno not in _NOWAIT_REFUSED:
                    raise
                self._nowait = False
        if self._poll is None:
            return data
        view = memoryview(data)
        while view and self._poll.poll(0):
            view = view[os.write(self._fd, view[:_DIRECT_PIECE]) :]
        return bytes(view)

    def _enqueue(self, data: bytes) -> None:
        with self._lock:
            self._backlog += len(data)
            if self._backlog > self._high:
                self.congested = True
        self._queue.put(data)

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
                data = b"".join(batch)
                if not self._write_all(data):
                    return
                with self._lock:
                    self._backlog -= len(data)
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
            self._gone()
            return False
        return True

    def _gone(self) -> None:
        self._broken = True
        self.congested = False
        if self._on_broken is not None:
            self._on_broken()


class StdinReader:
    """Whole messages from `fd`, one batch per read; `None` once the input has ended.

    `on_framing` is told the connection's framing once it is known, before the first message is
    handed over (the writer frames its answers the same way)."""

    def __init__(
        self,
        fd: int,
        max_line: int,
        on_framing: Callable[[Framing], None] | None = None,
        *,
        early: Early | None = None,
    ) -> None:
        self._fd = fd
        # Where the early read left off (see `early`): its splitter, and the messages it left.
        self._early = early
        self._splitter = early.splitter if early is not None else Detector(max_line)
        self._feed = self._splitter.feed  # the chosen splitter's own, once the framing is known
        self._on_framing = on_framing
        self._told = False
        self._ended = False
        self._polled = _loop_can_poll(fd)
        # Linux: `preadv2(RWF_NOWAIT)` reads what is there without waiting, whatever the fd's mode.
        self._nowait = self._polled and bool(_RWF_NOWAIT)
        self._buffer: bytearray | None = None  # what those reads read into, made on the first
        self._resting = 0  # read callbacks left that try no such read (see `_REST_AFTER_MISS`)
        self._thread_batches: anyio.abc.ObjectReceiveStream[list[Piece]] | None = None

    async def pump(self, on_batch: Callable[[Sequence[Piece]], None]) -> None:
        """Hand each read's messages to `on_batch` on the loop, until the input ends.

        Where the loop can poll stdin, it is read and `on_batch` called from the loop's own read
        callback: no task wakes up for a read."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio: no read callbacks
            loop = None
        if early := self._from_early():
            on_batch(early)
        if not self._polled or loop is None:
            while (batch := await self.next_batch()) is not None:
                on_batch(batch)
            return
        ended = loop.create_future()

        def readable() -> None:
            chunk = self._read()
            more = 0
            if self._resting:
                self._resting -= 1
            elif self._nowait:
                more = _MORE_READS
            while chunk is not None:
                items = self._split(chunk)
                if self._ended:
                    loop.remove_reader(self._fd)
                    if not ended.done():
                        ended.set_result(None)
                if items:
                    on_batch(items)  # its answers are written before it returns
                if self._ended or not more:
                    return
                chunk = self._read_nowait()
                if chunk is None and more == _MORE_READS:
                    self._resting = _REST_AFTER_MISS
                more -= 1

        if self._ended:
            return
        loop.add_reader(self._fd, readable)
        try:
            await ended
        finally:
            loop.remove_reader(self._fd)

    async def next_batch(self) -> list[Piece] | None:
        if early := self._from_early():
            return early
        while not self._ended:
            if self._polled:
                await anyio.wait_readable(self._fd)
                chunk = self._read()
                if chunk is None:
                    continue
                items = self._split(chunk)
            else:
                items = await self._from_thread()
            if items:
                return items
        return None

    def _read(self) -> bytes | None:
        """One read of what is there; None when nothing is (the host made the pipe non-blocking)."""
        try:
            return os.read(self._fd, _READ_CHUNK)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def _read_nowait(self) -> bytes | None:
        """What is there now, without waiting; None when nothing is (or this fd cannot tell)."""
        buffer = self._buffer
        if buffer is None:
            buffer = self._buffer = bytearray(_READ_CHUNK)
        try:
            size = os.preadv(self._fd, (buffer,), -1, _RWF_NOWAIT)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno in _NOWAIT_REFUSED:
                self._nowait = False
                return None
            return b""
        return bytes(memoryview(buffer)[:size])

    def _from_early(self) -> list[Piece]:
        """The messages the early read left, once (the framing told first, as after any read)."""
        early, self._early = self._early, None
        if early is None:
            return []
        self._ended = early.ended
        self._tell_framing()
        return early.pieces

    def _split(self, chunk: bytes) -> list[Piece]:
        if chunk:
            items = self._feed(chunk)
            if self._told:
                return items
        else:
            self._ended = True
            items = self._splitter.finish()
        self._tell_framing()
        return items

    def _tell_framing(self) -> None:
        if not self._told and self._splitter.framing is not None:
            self._told = True
            chosen = self._splitter.chosen
            if chosen is not None:
                self._feed = chosen.feed
            if self._on_framing is not None:
                self._on_framing(self._splitter.framing)

    async def _from_thread(self) -> list[Piece]:
        if self._thread_batches is None:
            send, self._thread_batches = anyio.create_memory_object_stream[list[Piece]](4)
            self._start_thread(send)
        try:
            return await self._thread_batches.receive()
        except anyio.EndOfStream:
            self._ended = True
            return []

    def _start_thread(self, send: MemoryObjectSendStream[list[Piece]]) -> None:
        import anyio.from_thread  # only this path needs it

        token = anyio.lowlevel.current_token()

        def run() -> None:
            try:
                while True:
                    try:
                        chunk = os.read(self._fd, _READ_CHUNK)
                    except OSError:
                        chunk = b""
                    items = self._split(chunk)
                    if items:
                        anyio.from_thread.run(send.send, items, token=token)
                    if not chunk:
                        return
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, RuntimeError):
                return  # the loop is shutting down
            finally:
                with contextlib.suppress(RuntimeError):
                    anyio.from_thread.run_sync(send.close, token=token)

        threading.Thread(target=run, name="sidecar-stdin", daemon=True).start()
