"""The stdin reader on a real pipe and on a regular file: every message of one read comes in one
batch (one hand-over to the dispatcher per read, not one per line), in order, with the framing
told first, and the end of input is `None` after the last message."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from sidecar.rpc.framing import Framing, Piece
from sidecar.rpc.stdio import StdinReader, StdoutWriter

LINES = [b'{"jsonrpc":"2.0","id":%d,"method":"info"}' % n for n in range(200)]


async def _all_batches(reader: StdinReader) -> list[list[Piece]]:
    batches: list[list[Piece]] = []
    with anyio.fail_after(10):
        while (batch := await reader.next_batch()) is not None:
            batches.append(batch)
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
async def test_writes_from_the_loop_and_from_threads_keep_their_order() -> None:
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
