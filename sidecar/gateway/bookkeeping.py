"""What a gateway request records once its answer is sent: the chat hooks' `after` (the ledger
row, metrics, budget and limit accounting), collected while the call runs
(`services.context.after_reply`) and run by the request's own task after the last bytes are handed
to the socket, so the client has its answer before the gateway turns to its bookkeeping.

`Bookkeeping` keeps the order that running it before the answer gave: a request's budgets and
limits are checked (`wait`) only once the bookkeeping that began before it is done, so a client
that sends its next request as soon as it has an answer is checked against what the previous one
spent. (The hooks settle this process's own counters without waiting on anything, so in practice
the bookkeeping is done before the loop reads another request; `wait` is the guarantee.)

Must not know: HTTP, routes, what the hooks record.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from sidecar.services.context import Later


class Bookkeeping:
    """The bookkeeping still running, by the order it began in."""

    __slots__ = ("_open", "_seq")

    def __init__(self) -> None:
        self._seq = 0
        self._open: dict[int, anyio.Event | None] = {}  # an event only once something waits

    @property
    def running(self) -> int:
        return len(self._open)

    async def run(self, later: Sequence[Later]) -> None:
        """Run one request's bookkeeping, in order."""
        self._seq += 1
        seq = self._seq
        self._open[seq] = None
        try:
            for work in later:
                await work()
        finally:
            done = self._open.pop(seq, None)
            if done is not None:
                done.set()

    async def wait(self) -> None:
        """Return once the bookkeeping running now is done (not any begun meanwhile)."""
        if not self._open:
            return
        for seq in list(self._open):
            if seq not in self._open:
                continue
            done = self._open[seq]
            if done is None:
                done = self._open[seq] = anyio.Event()
            await done.wait()
