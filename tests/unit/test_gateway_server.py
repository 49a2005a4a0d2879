"""The gateway's transport wrapper: writes of one loop turn leave in one send, none is lost."""

from __future__ import annotations

import asyncio
from typing import Any

from sidecar.gateway.server import _CoalescingTransport


class Recorder(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.sent.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


def test_writes_of_one_turn_leave_together_and_close_flushes_first() -> None:
    async def main() -> None:
        inner = Recorder()
        t = _CoalescingTransport(inner)
        t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        t.write(b"")
        t.write(b"{}")
        assert inner.sent == []  # nothing until the loop turns
        await asyncio.sleep(0)
        assert inner.sent == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
        t.write(memoryview(b"data: 1\n\n"))
        await asyncio.sleep(0)
        t.write(b"data: 2\n\n")
        t.flush()  # a response is complete: it leaves now, not on the next turn
        assert inner.sent[1:] == [b"data: 1\n\n", b"data: 2\n\n"]
        t.write(b"data: 3\n\n")
        t.close()  # a connection closed right after a write still sends it
        assert inner.sent[1:] == [b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"] and inner.closed
        assert t.get_extra_info("peername") == ("127.0.0.1", 1)  # everything else is the transport's

    asyncio.run(main())
