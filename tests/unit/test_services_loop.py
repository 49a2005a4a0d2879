"""The per-request clock and cancel scopes are anyio's own: the same clock as its deadlines, the
same scope class, deadlines and shields that behave as anyio's."""

from __future__ import annotations

import anyio

from sidecar.services import loop


def test_the_clock_and_scopes_are_anyios() -> None:
    async def main() -> None:
        before = anyio.current_time()
        assert before <= loop.now() <= anyio.current_time()
        assert type(loop.cancel_scope()) is type(anyio.CancelScope())

        with loop.cancel_scope(deadline=loop.now() + 0.05) as scope:
            await anyio.sleep(5)
        assert scope.cancelled_caught

        finished = []
        with anyio.CancelScope() as outer:
            outer.cancel()
            with loop.cancel_scope(shield=True):
                await anyio.sleep(0.01)  # the outer cancellation does not reach a shielded scope
                finished.append(True)
            await anyio.sleep(5)
        assert finished == [True] and outer.cancelled_caught

    anyio.run(main)
