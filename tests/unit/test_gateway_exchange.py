"""A gateway request's method call is cancelled when its client goes away: told by the connection
(no task of its own per request), or, where no connection is known, by a task waiting on ASGI
`receive` for `http.disconnect`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from sidecar.gateway import connection
from sidecar.gateway.exchange import Disconnected, Exchange


class FakeConnection:
    def __init__(self, *, lost: bool = False) -> None:
        self.lost = lost
        self.on_lost: Callable[[], None] | None = None
        self.calls: list[bool] = []

    def watch(self, on_lost: Callable[[], None] | None) -> bool:
        self.calls.append(on_lost is not None)
        if self.lost:
            return False
        self.on_lost = on_lost
        return True

    def leave(self) -> None:
        self.lost = True
        on_lost, self.on_lost = self.on_lost, None
        if on_lost is not None:
            on_lost()


def exchange(handler: Any, receive: Any = None) -> Exchange:
    gw: Any = SimpleNamespace(
        backend=SimpleNamespace(handlers={"complete": handler}), request_id=lambda: "gw-1"
    )

    async def no_receive() -> dict[str, Any]:
        raise AssertionError("the connection watches: nothing waits on receive")

    async def send(message: Any) -> None:
        raise AssertionError("nothing is sent here")

    return Exchange(gw, {"type": "http", "headers": []}, receive or no_receive, send, "openai")


def test_the_connection_cancels_the_call_and_no_task_waits_for_the_disconnect() -> None:
    async def main() -> None:
        conn = FakeConnection()
        tasks: list[int] = []

        async def handler(params: Any, ctx: Any) -> Any:
            tasks.append(len(asyncio.all_tasks()))
            conn.leave()
            await anyio.sleep(5)

        connection.current.set(conn)
        with anyio.fail_after(2), pytest.raises(Disconnected):
            await exchange(handler).run_method("complete", None)
        assert tasks == [1]  # only this request's own task
        assert conn.calls == [True, False]  # watched while the handler ran, then released

    anyio.run(main)


def test_a_connection_already_lost_cancels_the_call_at_once() -> None:
    async def main() -> None:
        conn = FakeConnection(lost=True)
        reached: list[str] = []

        async def handler(params: Any, ctx: Any) -> Any:
            await anyio.sleep(5)
            reached.append("after the wait")

        connection.current.set(conn)
        with anyio.fail_after(2), pytest.raises(Disconnected):
            await exchange(handler).run_method("complete", None)
        assert reached == []

    anyio.run(main)


def test_an_answer_in_time_is_returned_and_the_watch_released() -> None:
    async def main() -> None:
        conn = FakeConnection()

        async def handler(params: Any, ctx: Any) -> Any:
            return "answer"

        connection.current.set(conn)
        assert await exchange(handler).run_method("complete", None) == "answer"
        assert conn.calls == [True, False] and conn.on_lost is None

    anyio.run(main)


def test_without_a_known_connection_a_task_waits_on_receive_for_the_disconnect() -> None:
    async def main() -> None:
        gone = anyio.Event()

        async def receive() -> dict[str, Any]:
            await gone.wait()
            return {"type": "http.disconnect"}

        async def handler(params: Any, ctx: Any) -> Any:
            gone.set()
            await anyio.sleep(5)

        assert connection.current.get() is None
        with anyio.fail_after(2), pytest.raises(Disconnected):
            await exchange(handler, receive).run_method("complete", None)

    anyio.run(main)


def test_the_handler_the_app_names_settled_is_called_in_place_of_its_wrapper() -> None:
    async def main() -> None:
        async def real(params: Any, ctx: Any) -> Any:
            return ("real", params, ctx.request_id)

        async def wrapper(params: Any, ctx: Any) -> Any:
            raise AssertionError("the first-use wrapper is skipped once it names the settled handler")

        wrapper.settled = real  # type: ignore[attr-defined]
        connection.current.set(FakeConnection())
        assert await exchange(wrapper).run_method("complete", 7) == ("real", 7, "gw-1")

    anyio.run(main)
