#!/usr/bin/env python3
"""The limit of any local proxy on this machine, for the gateway benchmark: a process that copies
bytes between each client connection and an upstream connection of its own, parsing nothing.

What it costs over a direct call is one more process on the path (two more loopback sends and two
more wake-ups per request), the part of the gateway's added latency that no proxy can avoid.

    python scripts/byte_relay.py <upstream host> <upstream port>

It listens on a free port of 127.0.0.1, prints that port on a line of its own, and runs until killed.

Must not know: HTTP, the sidecar.
"""

from __future__ import annotations

import asyncio
import socket
import sys

_connecting: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks


class _Side(asyncio.Protocol):
    """One end of a relayed connection: what it receives goes out of its peer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self._early: list[bytes] = []  # received before the peer's connection was made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        # Until `connected` has handed the peer what came first, later bytes queue behind it: a
        # request's body must not overtake its head while the upstream connection is being made.
        if self.peer is not None and self.peer.transport is not None and not self._early:
            self.peer.transport.write(data)
        else:
            self._early.append(data)

    def connected(self, peer: _Side) -> None:
        """`peer` is connected now: hand it what arrived before."""
        assert peer.transport is not None
        for data in self._early:
            peer.transport.write(data)
        self._early.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


def _accepting(host: str, port: int) -> _Side:
    """A client side whose upstream connection opens as it is accepted."""
    client, upstream = _Side(), _Side()
    client.peer, upstream.peer = upstream, client

    async def connect() -> None:
        try:
            await asyncio.get_running_loop().create_connection(lambda: upstream, host, port)
        except OSError:
            if client.transport is not None:
                client.transport.close()
            return
        client.connected(upstream)

    task = asyncio.get_running_loop().create_task(connect())
    _connecting.add(task)
    task.add_done_callback(_connecting.discard)
    return client


async def _serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _accepting(host, port), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    asyncio.run(_serve(host, port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
