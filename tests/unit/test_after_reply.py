"""Work put off until a call's answer is sent (`context.after_reply`): the rate-limit observer
defers a success's headers only while a face collects such work, `loop.in_context` runs a
coroutine in the variables of an earlier moment, and `Bookkeeping.wait` waits for the work begun
before it, not for work begun meanwhile."""

from __future__ import annotations

import contextvars
from typing import Any

import anyio
import anyio.lowlevel

from sidecar.gateway.bookkeeping import Bookkeeping
from sidecar.services import loop
from sidecar.services.context import AfterReply, after_reply, current_client
from sidecar.services.limits import observed_after_reply

HEADERS = {"x-ratelimit-remaining-requests": "7"}


def recorder() -> tuple[list[tuple[str, int]], Any]:
    seen: list[tuple[str, int]] = []

    def observe(provider: str, status: int, headers: Any) -> None:
        seen.append((provider, status))

    return seen, observed_after_reply(observe)


def test_without_a_face_collecting_work_headers_are_taken_in_at_once() -> None:
    seen, observer = recorder()
    observer("openai", 200, HEADERS)
    assert seen == [("openai", 200)]


def test_a_success_waits_for_the_answer_and_a_failure_does_not() -> None:
    async def main() -> None:
        seen, observer = recorder()
        later = AfterReply()
        token = after_reply.set(later)
        try:
            observer("openai", 200, HEADERS)
            assert seen == [] and len(later) == 1
            observer("openai", 429, HEADERS)  # steers this request's retry: now
            assert seen == [("openai", 429)]
        finally:
            after_reply.reset(token)
        for work in later:
            await work()
        assert seen == [("openai", 429), ("openai", 200)]

    anyio.run(main)


def test_work_offered_once_the_face_has_run_its_list_runs_at_once() -> None:
    seen, observer = recorder()
    later = AfterReply()
    later.open = False  # a task the call started, still holding the variable, after the answer
    token = after_reply.set(later)
    try:
        observer("openai", 200, HEADERS)
    finally:
        after_reply.reset(token)
    assert seen == [("openai", 200)] and later == []


def test_in_context_sees_the_variables_of_its_moment_and_keeps_what_it_sets() -> None:
    async def main() -> None:
        token = current_client.set("app")
        moment = contextvars.copy_context()
        current_client.reset(token)

        async def work(n: int) -> tuple[str | None, str | None, int]:
            seen = current_client.get()
            await anyio.lowlevel.checkpoint()  # and after a suspension
            again = current_client.get()
            current_client.set("changed")
            return seen, again, n

        assert await loop.in_context(moment, work, 3) == ("app", "app", 3)
        assert current_client.get() is None  # the caller's variables are untouched
        assert moment[current_client] == "changed"

    anyio.run(main)


def test_wait_is_for_the_bookkeeping_begun_before_it() -> None:
    async def main() -> None:
        book = Bookkeeping()
        order: list[str] = []
        first_go, second_go = anyio.Event(), anyio.Event()

        def held(name: str, go: anyio.Event) -> Any:
            async def work() -> None:
                await go.wait()
                order.append(name)

            return work

        async def waiter() -> None:
            await book.wait()
            order.append("admitted")

        async with anyio.create_task_group() as tg:
            tg.start_soon(book.run, [held("first", first_go)])
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(book.run, [held("second", second_go)])  # begun after the wait
            await anyio.wait_all_tasks_blocked()
            assert order == [] and book.running == 2
            first_go.set()
            await anyio.wait_all_tasks_blocked()
            assert order == ["first", "admitted"]  # not held back by the second
            second_go.set()
        assert order == ["first", "admitted", "second"] and book.running == 0

    anyio.run(main)
