"""Unit tests of `Kept`: a value in use is read again in the background before it gets old, so a
reader does not wait for the read; a value no older than its time is ever answered; changes made
here win over reads that began before them; a value not in use is left alone."""

from __future__ import annotations

import asyncio
import io

import anyio
import pytest

from sidecar import logs
from sidecar.core.kept import REFRESH_AT, Kept
from tests.clock import ManualClock

pytestmark = pytest.mark.anyio
TTL_S = 2.0


class Store:
    """What a `Kept` reads: counts its reads, can hold one until released or make them fail."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.reads = 0
        self.fail: Exception | None = None
        self.hold: anyio.Event | None = None
        self.reading = anyio.Event()

    async def read(self) -> str:
        self.reads += 1
        value = self.value  # read before waiting: what a slow database had
        if self.hold is not None:
            self.reading.set()
            await self.hold.wait()
        if self.fail is not None:
            raise self.fail
        return value


class Naps:
    """The background loop's sleep: each nap waits until the test lets it end, then moves the clock
    on by what it asked for."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.asked: list[float] = []
        self._ends: list[asyncio.Future[None]] = []
        self._asked = anyio.Event()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        asked, self._asked = self._asked, anyio.Event()
        asked.set()
        end = asyncio.get_running_loop().create_future()
        self._ends.append(end)
        await end
        self.clock.now += seconds

    async def napping(self, count: int) -> None:
        """Wait until the loop has asked for `count` naps in all."""
        with anyio.fail_after(5):
            while len(self.asked) < count:
                await self._asked.wait()

    async def end_nap(self) -> None:
        self._ends[len(self.asked) - 1].set_result(None)
        await asyncio.sleep(0)


class Seen(list[str]):
    """What readers were answered, in order."""

    async def read(self, kept: Kept[str]) -> None:
        self.append(await kept.get())


def kept_with_naps(store: Store, **kwargs: float) -> tuple[Kept[str], ManualClock, Naps]:
    clock = ManualClock()
    naps = Naps(clock)
    return Kept(store.read, ttl_s=TTL_S, clock=clock, sleep=naps, **kwargs), clock, naps


async def test_a_value_in_use_is_read_again_before_it_gets_old() -> None:
    store = Store("one")
    kept, clock, naps = kept_with_naps(store)
    try:
        assert await kept.get() == "one"
        await naps.napping(1)
        assert naps.asked == [TTL_S * REFRESH_AT]  # the read starts a while before the value's time
        store.value = "two"
        await naps.end_nap()
        await naps.napping(2)  # read, and asleep until the next one
        assert store.reads == 2
        clock.now += TTL_S * (1 - REFRESH_AT)  # the first value's time is up
        assert await kept.get() == "two"
        assert store.reads == 2  # the reader did not wait for a read
    finally:
        await kept.aclose()


async def test_a_value_no_longer_used_is_not_read_in_the_background() -> None:
    store = Store("one")
    kept, clock, naps = kept_with_naps(store, keep_warm_s=10.0)
    try:
        await kept.get()
        loop = kept._warm
        assert loop is not None
        for nap in range(1, 8):  # naps of 1.5 s: the seventh ends 10.5 s after the reader
            await naps.napping(nap)
            await naps.end_nap()
        with anyio.fail_after(5):
            await loop  # it ends by itself
        assert kept._warm is None
        assert store.reads == 1 + 6  # read after each nap that ended within `keep_warm_s`
        assert len(naps.asked) == 7
        assert clock.now == pytest.approx(1000.0 + 7 * TTL_S * REFRESH_AT)
    finally:
        await kept.aclose()


async def test_a_reader_waits_when_the_background_read_came_too_late() -> None:
    store = Store("one")
    kept, clock, naps = kept_with_naps(store)
    try:
        await kept.get()
        await naps.napping(1)
        store.value = "two"
        clock.now += TTL_S  # the loop is still asleep: a reader must not get the old value
        assert await kept.get() == "two"
        assert store.reads == 2
    finally:
        await kept.aclose()


async def test_a_fresh_value_is_answered_without_a_read_and_a_stricter_reader_reads() -> None:
    store = Store("one")
    kept, clock, _ = kept_with_naps(store)
    try:
        await kept.get()
        clock.now += 1.0
        assert await kept.get() == "one"
        assert store.reads == 1
        store.value = "two"
        assert await kept.get(fresh_within_s=0.5) == "two"
        assert store.reads == 2
    finally:
        await kept.aclose()


async def test_readers_share_one_read() -> None:
    store = Store("one")
    kept, _, _ = kept_with_naps(store)
    held = store.hold = anyio.Event()
    seen = Seen()
    try:
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(seen.read, kept)
            await store.reading.wait()
            held.set()
        assert seen == ["one"] * 5
        assert store.reads == 1
    finally:
        await kept.aclose()


async def test_readers_of_a_cancelled_read_read_again_themselves() -> None:
    store = Store("one")
    kept, _, _ = kept_with_naps(store)
    store.hold = anyio.Event()
    scopes: list[anyio.CancelScope] = []
    seen = Seen()

    async def first_reader() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            await kept.get()
        seen.append("cancelled")

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(first_reader)
            await store.reading.wait()  # the first reader's read is under way
            tg.start_soon(seen.read, kept)
            await anyio.wait_all_tasks_blocked()  # and the second shares it
            store.hold = None
            scopes[0].cancel()
        assert seen == ["cancelled", "one"]  # the second read itself, and was not cancelled
        assert store.reads == 2
    finally:
        await kept.aclose()


async def test_a_change_made_here_wins_over_a_read_begun_before_it() -> None:
    store = Store("old")
    kept, _, _ = kept_with_naps(store)
    held = store.hold = anyio.Event()
    seen = Seen()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(seen.read, kept)
            await store.reading.wait()
            store.hold = None
            kept.put("new")
            held.set()
        assert seen == ["old"]  # answered what it read, but did not keep it
        assert await kept.get() == "new"
        assert store.reads == 1
        kept.forget()
        store.value = "newer"
        assert await kept.get() == "newer"
    finally:
        await kept.aclose()


async def test_what_keep_if_refuses_is_answered_and_read_again_next_time() -> None:
    store = Store("")
    clock = ManualClock()
    kept = Kept(store.read, ttl_s=TTL_S, clock=clock, sleep=Naps(clock), keep_if=bool)
    try:
        assert await kept.get() == ""
        store.value = "there"
        assert await kept.get() == "there"
        assert store.reads == 2
        assert kept.value == "there"
    finally:
        await kept.aclose()


async def test_a_failing_read_reaches_the_reader_and_the_loop_tries_again() -> None:
    store = Store("one")
    kept, clock, naps = kept_with_naps(store)
    try:
        await kept.get()
        await naps.napping(1)
        store.fail = RuntimeError("database away")
        await naps.end_nap()
        await naps.napping(2)  # the background read failed: it waits, then tries again
        assert naps.asked[1] == pytest.approx(TTL_S * (1 - REFRESH_AT))
        clock.now += TTL_S
        with pytest.raises(RuntimeError, match="database away"):
            await kept.get()  # the value got old: the reader reads, and meets the error
        store.fail = None
        store.value = "two"
        await naps.end_nap()
        await naps.napping(3)  # its time is up already: a nap of nothing, then the read
        assert naps.asked[2] == 0.0
        await naps.end_nap()
        await naps.napping(4)
        assert kept.value == "two"  # the loop's next try read it
    finally:
        await kept.aclose()


async def test_after_aclose_nothing_is_read_in_the_background() -> None:
    store = Store("one")
    kept, _, naps = kept_with_naps(store)
    await kept.get()
    await naps.napping(1)
    await kept.aclose()
    assert kept._warm is None
    await kept.get()
    await asyncio.sleep(0)
    assert len(naps.asked) == 1  # no new loop


async def test_a_read_failing_with_a_last_on_error_answers_the_last_value() -> None:
    store = Store("one")
    clock = ManualClock()
    kept = Kept(store.read, ttl_s=TTL_S, clock=clock, sleep=Naps(clock), last_on=(ConnectionError,))
    log, saved = io.StringIO(), dict(logs._state)
    logs.configure("info", stream=log)
    try:
        store.fail = ConnectionError("database away")
        with pytest.raises(ConnectionError):
            await kept.get()  # nothing to answer yet
        store.fail = None
        assert await kept.get() == "one"
        store.fail = ConnectionError("database away")
        for _ in range(3):
            clock.now += TTL_S
            assert await kept.get() == "one"  # the last one serves, and counts as read now
            clock.now += TTL_S / 2
            assert await kept.get() == "one"
        assert store.reads == 5
        assert log.getvalue().count("not read again") == 1  # once for the outage
        store.fail = None
        clock.now += TTL_S
        await kept.get()
        assert log.getvalue().count("read again") == 2  # and once when it is over
        store.fail = RuntimeError("a bug")
        clock.now += TTL_S
        with pytest.raises(RuntimeError):
            await kept.get()  # not one of `last_on`: the reader meets it
    finally:
        logs._state.update(saved)
        await kept.aclose()
