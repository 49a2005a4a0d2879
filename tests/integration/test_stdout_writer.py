"""The stdout writer on a real pipe: it counts what is queued, says `congested` past its high-water
mark while the reader is away, lets waiters go once the queue drains below the low-water mark, never
drops a byte, and frames messages in LSP form when the connection asked for it."""

from __future__ import annotations

import os
import time

import anyio
import pytest

from sidecar.rpc.stdio import StdoutWriter


def read_exactly(fd: int, size: int, timeout: float = 10.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < size and time.monotonic() < deadline:
        data += os.read(fd, size - len(data))
    return data


@pytest.mark.anyio
async def test_a_reader_that_stops_makes_the_writer_congested_until_it_reads_again() -> None:
    r, w = os.pipe()
    writer = StdoutWriter(w, high_water=256 * 1024, low_water=64 * 1024)
    try:
        messages = [b"%06d" % n + b"x" * 1017 + b"\n" for n in range(1024)]  # 1 MiB, far past the pipe
        for m in messages:
            writer.write(m)
        await anyio.sleep(0.2)
        assert writer.congested and writer.backlog > 256 * 1024

        waited = anyio.Event()

        async def waiter() -> None:
            await writer.wait_for_room()
            waited.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.1)
            assert not waited.is_set()  # nobody reads: still waiting
            data = await anyio.to_thread.run_sync(read_exactly, r, len(messages) * 1024)
            with anyio.fail_after(5):
                await waited.wait()
        assert data == b"".join(messages)  # everything, in order
        assert writer.backlog == 0 and not writer.congested
    finally:
        writer.close()
        os.close(r)
        os.close(w)


def test_lsp_framing_frames_each_message() -> None:
    r, w = os.pipe()
    writer = StdoutWriter(w)
    writer.framing = "lsp"
    writer.write(b'{"id":1}\n')
    writer.write(b'{"id":"\xc3\xa9"}\n')
    writer.close()
    expected = b'Content-Length: 8\r\n\r\n{"id":1}Content-Length: 11\r\n\r\n{"id":"\xc3\xa9"}'
    assert read_exactly(r, len(expected)) == expected
    os.close(r)
    os.close(w)


def test_a_closed_pipe_releases_waiters_and_drops_quietly() -> None:
    r, w = os.pipe()
    os.close(r)
    broken: list[bool] = []
    writer = StdoutWriter(w, on_broken_pipe=lambda: broken.append(True), high_water=10, low_water=5)
    writer.write(b"x" * 100)
    writer.close()
    assert broken == [True] and not writer.congested
    writer.write(b"more")  # after the host left: dropped, no error
    anyio.run(writer.wait_for_room)  # returns at once
    os.close(w)
