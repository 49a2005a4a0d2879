"""The stdin reader on a real pipe and on a regular file: every message of one read comes in one
batch (one hand-over to the dispatcher per read, not one per line), in order, with the framing
told first, and the end of input is `None` after the last message."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from sidecar.rpc import early, envelope, stdio
from sidecar.rpc.framing import Framing, Piece
from sidecar.rpc.stdio import StdinReader, StdoutWriter

LINES = [b'{"jsonrpc":"2.0","id":%d,"method":"info"}' % n for n in range(200)]


async def _all_batches(reader: StdinReader) -> list[list[Piece]]:
    batches: list[list[Piece]] = []
    with anyio.fail_after(10):
        while (batch := await reader.next_batch()) is not None:
            batches.append(batch)
    return batches


async def _read_all(reader: StdinReader, how: str) -> list[list[Piece]]:
    """Every batch the reader hands over until the end of input, through `pump` or `next_batch`."""
    if how != "pump":
        return await _all_batches(reader)
    batches: list[list[Piece]] = []
    with anyio.fail_after(10):
        await reader.pump(lambda batch: batches.append(list(batch)))
    return batches


@pytest.mark.anyio
async def test_a_pipe_read_is_handed_over_as_one_batch() -> None:
    r, w = os.pipe()
    told: list[Framing] = []
    try:
        reader = StdinReader(r, 1 << 20, on_framing=told.append)
        os.write(w, b"\n".join(LINES) + b"\n")
        first = await reader.next_batch()
        assert first == LINES and told == ["lines"]  # 200 messages, one read, one batch
        os.write(w, b'{"last":1}')  # no newline: still a message at the end of input
        os.close(w)
        w = -1
        assert await _all_batches(reader) == [[b'{"last":1}']]
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


@pytest.mark.anyio
async def test_a_regular_file_is_read_by_a_thread_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b"\n".join(LINES) + b"\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        batches = await _all_batches(StdinReader(fd, 1 << 20))
    finally:
        os.close(fd)
    assert [m for b in batches for m in b] == LINES and len(batches) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("nowait", [True, False], ids=["pwritev2-nowait", "poll-and-write"])
async def test_writes_from_the_loop_and_from_threads_keep_their_order(
    nowait: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not nowait:  # the portable path, as where RWF_NOWAIT does not exist (macOS)
        monkeypatch.setattr(stdio, "_RWF_NOWAIT", 0)
    r, w = os.pipe()
    writer = StdoutWriter(w)
    try:
        expected = []
        for n in range(300):
            line = b"%04d" % n + b"y" * (n * 7) + b"\n"  # some past PIPE_BUF, past the pipe in total
            expected.append(line)
            if n % 3 == 0:
                await anyio.to_thread.run_sync(writer.write, line)
            else:
                writer.write(line)
            if n % 50 == 0:
                await anyio.lowlevel.checkpoint()
        total = sum(map(len, expected))
        data = b""
        with anyio.fail_after(10):
            while len(data) < total:
                data += await anyio.to_thread.run_sync(os.read, r, 1 << 20)
        assert data == b"".join(expected)
    finally:
        writer.close()
        os.close(r)
        os.close(w)


@pytest.mark.anyio
async def test_pump_hands_each_read_over_from_the_loops_read_callback() -> None:
    import asyncio

    r, w = os.pipe()
    handed: list[list[Piece]] = []
    in_task: list[bool] = []

    def on_batch(batch: Sequence[Piece]) -> None:
        handed.append(list(batch))
        in_task.append(asyncio.current_task() is not None)
        if len(handed) == 1:
            os.write(w, b'{"last":1}')  # no newline: still a message at the end of input
            os.close(w)

    try:
        reader = StdinReader(r, 1 << 20)
        os.write(w, b"\n".join(LINES) + b"\n")
        with anyio.fail_after(10):
            await reader.pump(on_batch)
    finally:
        os.close(r)
    assert handed == [LINES, [b'{"last":1}']]
    assert in_task == [False, False]  # no task woke up to read


@pytest.mark.anyio
async def test_pump_reads_a_regular_file_through_its_thread(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b"\n".join(LINES) + b"\n")
    fd = os.open(path, os.O_RDONLY)
    handed: list[Piece] = []
    try:
        with anyio.fail_after(10):
            await StdinReader(fd, 1 << 20).pump(handed.extend)
    finally:
        os.close(fd)
    assert handed == LINES


@contextlib.contextmanager
def _out_pipe() -> Iterator[tuple[int, StdoutWriter]]:
    """A pipe's read end (non-blocking) and a writer on its write end, made on the running loop."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    writer = StdoutWriter(w)
    try:
        yield r, writer
    finally:
        writer.close()
        os.close(r)
        os.close(w)


@pytest.mark.anyio
@pytest.mark.parametrize("via", ["write", "hold's gatherer and write"])
async def test_what_is_written_between_hold_and_release_goes_out_at_release_in_order(via: str) -> None:
    with _out_pipe() as (r, writer):
        gather = writer.hold()
        ways = [writer.write] * 3 if via == "write" else [gather, writer.write, gather]
        for n, way in enumerate(ways):
            way(b"%d\n" % n)
        with pytest.raises(BlockingIOError):
            os.read(r, 100)  # nothing sent yet
        writer.release()
        assert os.read(r, 100) == b"0\n1\n2\n"


def _early_read(fd: int) -> tuple[list[bytes], early.Early]:
    """What the daemon does before its loop: answer the waiting `info` requests of one read."""
    answered: list[bytes] = []

    def answer(rid: envelope.RequestId) -> bytes:
        answered.append(b"%d" % rid if isinstance(rid, int) else rid.encode())
        return b""  # nothing is written to stdout in this test

    out_r, out_w = os.pipe()
    try:
        handed = early.answer_waiting(
            fd, out_w, max_line=1 << 20, method="info", accepts=lambda params: params is None, answer=answer
        )
    finally:
        os.close(out_r)
        os.close(out_w)
    assert handed is not None
    return answered, handed


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["pump", "next_batch"])
async def test_the_reader_starts_where_the_early_read_left_off(how: str) -> None:
    r, w = os.pipe()
    told: list[Framing] = []
    try:
        os.write(w, LINES[0] + b"\n" + b'{"a":1}\n{"b":')  # an info, another message, half a line
        answered, handed = _early_read(r)
        assert answered == [b"0"] and handed.pieces == [b'{"a":1}'] and not handed.ended
        reader = StdinReader(r, 1 << 20, on_framing=told.append, early=handed)
        os.write(w, b"2}\n")
        os.close(w)
        w = -1
        batches = await _read_all(reader, how)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    # The early read's leftovers first, framing told before them; the half line completed by the next read.
    assert batches == [[b'{"a":1}'], [b'{"b":2}']] and told == ["lines"]


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["pump", "next_batch"])
async def test_an_end_of_input_met_by_the_early_read_ends_the_reader(how: str) -> None:
    r, w = os.pipe()
    os.close(w)
    try:
        answered, handed = _early_read(r)
        assert answered == [] and handed.ended
        reader = StdinReader(r, 1 << 20, early=handed)
        batches = await _read_all(reader, how)
    finally:
        os.close(r)
    assert batches == []


def test_nothing_waiting_means_no_early_read() -> None:
    r, w = os.pipe()
    try:
        # Nothing was written to the pipe: no read, nothing answered, the loop reads as it always did.
        assert (
            early.answer_waiting(
                r, w, max_line=1 << 20, method="info", accepts=bool, answer=lambda rid: str(rid).encode()
            )
            is None
        )
    finally:
        os.close(r)
        os.close(w)


needs_nowait_reads = pytest.mark.skipif(
    not hasattr(os, "RWF_NOWAIT"), reason="reads without waiting are Linux's preadv2(RWF_NOWAIT)"
)


async def _pump_from_first_line(r: int, w: int, on_batch: Callable[[Sequence[Piece]], None]) -> None:
    """The host writes its first request; the reader pumps until the input ends (10 s at most)."""
    try:
        os.write(w, LINES[0] + b"\n")
        with anyio.fail_after(10):
            await StdinReader(r, 1 << 20).pump(on_batch)
    finally:
        os.close(r)


@needs_nowait_reads
@pytest.mark.anyio
async def test_pump_reads_what_the_host_wrote_meanwhile_before_the_loop_turns() -> None:
    loop = asyncio.get_running_loop()
    r, w = os.pipe()
    events: list[str] = []

    def on_batch(batch: Sequence[Piece]) -> None:
        events.append(bytes(batch[0]).decode())  # type: ignore[arg-type]
        if len(events) == 1:
            loop.call_soon(events.append, "the loop turned")
            os.write(w, LINES[1] + b"\n")  # the host's next request, written while this is answered
        elif len(events) == 2:
            os.close(w)  # and the end of input, met by the same read callback

    await _pump_from_first_line(r, w, on_batch)
    assert events[:2] == [LINES[0].decode(), LINES[1].decode()]


@needs_nowait_reads
@pytest.mark.anyio
async def test_a_host_that_never_stops_writing_still_lets_the_loop_turn() -> None:
    loop = asyncio.get_running_loop()
    r, w = os.pipe()
    handed: list[list[Piece]] = []
    turned_after: list[int] = []

    def on_batch(batch: Sequence[Piece]) -> None:
        handed.append(list(batch))
        if len(handed) == 1:
            loop.call_soon(lambda: turned_after.append(len(handed)))
        if len(handed) < 12:
            os.write(w, LINES[len(handed)] + b"\n")
        else:
            os.close(w)

    await _pump_from_first_line(r, w, on_batch)
    assert [b for batch in handed for b in batch] == LINES[:12]
    assert turned_after == [1 + stdio._MORE_READS]  # a few reads at most, then the loop's turn


@needs_nowait_reads
@pytest.mark.anyio
async def test_a_host_that_waits_for_each_answer_is_not_read_again_at_once_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read without waiting that finds nothing costs a system call: after one, the next few read
    callbacks try none."""
    loop = asyncio.get_running_loop()
    tries: list[int] = []
    preadv = os.preadv

    def counted(fd: int, buffers: Sequence[bytearray], offset: int, flags: int = 0) -> int:
        tries.append(len(handed))
        return preadv(fd, buffers, offset, flags)

    monkeypatch.setattr(os, "preadv", counted)
    r, w = os.pipe()
    handed: list[list[Piece]] = []
    total = 3 * (stdio._REST_AFTER_MISS + 1)

    def on_batch(batch: Sequence[Piece]) -> None:
        handed.append(list(batch))
        # The host writes its next request only after the loop has turned (it waited for this answer).
        if len(handed) < total:
            loop.call_later(0.001, os.write, w, LINES[len(handed)] + b"\n")
        else:
            loop.call_later(0.001, os.close, w)

    await _pump_from_first_line(r, w, on_batch)
    assert [b for batch in handed for b in batch] == LINES[:total]
    # One try (a miss) after every REST_AFTER_MISS + 1 batches, not one per batch.
    assert tries == list(range(1, total + 1, stdio._REST_AFTER_MISS + 1))


@pytest.mark.anyio
async def test_pump_on_a_socket_reads_again_without_waiting_too() -> None:
    import socket

    host, ours = socket.socketpair()
    handed: list[Piece] = []

    def on_batch(batch: Sequence[Piece]) -> None:
        handed.extend(batch)
        if len(handed) == 1:
            host.sendall(LINES[1] + b"\n")
            host.shutdown(socket.SHUT_WR)

    try:
        host.sendall(LINES[0] + b"\n")
        with anyio.fail_after(10):
            await StdinReader(ours.fileno(), 1 << 20).pump(on_batch)
    finally:
        host.close()
        ours.close()
    assert handed == LINES[:2]
