"""A value read from slow storage (the keychain, a database), kept fresh ahead of its readers.

A cache that re-reads a stale value when a request asks for it puts that read on the request's
path: with a time to live of a few seconds, the first request after a pause waits for a SQLite
query in a worker thread, and a key kept in the OS keychain costs a D-Bus exchange of tens of
milliseconds. `Kept` keeps the same promise, a reader never gets a value older than `ttl_s`, but
re-reads the value in the background shortly before it gets that old, for as long as it is in
use (read within `keep_warm_s`). A reader waits only for the first read, after a longer pause,
or when the background read did not finish in time.

A change made in this process is `put` (or `forget`): a read that began before it does not
overwrite it. A value that `keep_if` refuses (a key not found, say) is answered but not kept.
A read that raises one of `last_on` (the database away, say) answers the last value, which then
counts as read at that moment (logged once per outage; with no value yet, the error is raised).
Any other error reaches the reader; in the background it leaves the value to age, and the next
reader reads itself and meets the error.

Must not know: what the value is, where it comes from.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Awaitable, Callable
from typing import Final, Generic, TypeVar

from sidecar import logs

KEEP_WARM_S: Final = 900.0
"""How long after its last reader a value is still re-read in the background."""
REFRESH_AT: Final = 0.75
"""The share of `ttl_s` after which the background read starts (the rest is its time to finish)."""

_log = logs.get_logger("kept")
_T = TypeVar("_T")


class _Unset:
    pass


class _Abandoned(Exception):
    """The read a reader shared was cancelled with the reader that began it."""


_UNSET: Final = _Unset()


class Kept(Generic[_T]):
    def __init__(
        self,
        read: Callable[[], Awaitable[_T]],
        *,
        ttl_s: float,
        keep_warm_s: float = KEEP_WARM_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        keep_if: Callable[[_T], bool] = lambda value: True,
        last_on: tuple[type[Exception], ...] = (),
        name: str = "value",
    ) -> None:
        self._read = read
        self.ttl_s = ttl_s
        self.keep_warm_s = keep_warm_s
        self._clock = clock
        self._sleep = sleep
        self._keep_if = keep_if
        self._last_on = last_on
        self._name = name
        self._value: _T | _Unset = _UNSET
        self._read_at = 0.0
        self._used_at = 0.0
        self._generation = 0  # bumped by `put`/`forget`: a read begun before does not store
        self._reading: asyncio.Future[_T] | None = None
        self._warm: asyncio.Task[None] | None = None
        self._closed = False
        self._failing = False  # the last read raised one of `last_on`

    @property
    def value(self) -> _T | None:
        """The value as last read or put (None before)."""
        return None if isinstance(self._value, _Unset) else self._value

    async def get(self, *, fresh_within_s: float | None = None) -> _T:
        """The value, read now only when it is older than `fresh_within_s` (default `ttl_s`)."""
        self._used_at = now = self._clock()
        value = self._value
        within = self.ttl_s if fresh_within_s is None else fresh_within_s
        if not isinstance(value, _Unset) and now - self._read_at < within:
            self._keep_warm()
            return value
        value = await self.refresh()
        self._keep_warm()
        return value

    async def refresh(self) -> _T:
        """Read the value now; readers that ask meanwhile share this read (and, when the reader
        that began it is cancelled, read again themselves)."""
        while (reading := self._reading) is not None:
            with contextlib.suppress(_Abandoned):
                return await asyncio.shield(reading)
        reading = self._reading = asyncio.get_running_loop().create_future()
        generation, began = self._generation, self._clock()
        try:
            value = await self._read_or_last()
        except BaseException as exc:
            reading.set_exception(_Abandoned() if isinstance(exc, asyncio.CancelledError) else exc)
            reading.exception()  # retrieved: a read nobody else awaited logs nothing
            raise
        finally:
            self._reading = None
        if generation == self._generation:
            if self._keep_if(value):
                self._value, self._read_at = value, began
            else:
                self.forget()
        reading.set_result(value)
        return value

    async def _read_or_last(self) -> _T:
        try:
            value = await self._read()
        except self._last_on as exc:
            last = self._value
            if isinstance(last, _Unset):
                raise
            if not self._failing:  # once per outage: the background reads go on meanwhile
                self._failing = True
                error = type(exc).__name__
                _log.warning("not read again: the last one serves", value=self._name, error=error)
            return last
        if self._failing:
            self._failing = False
            _log.info("read again", value=self._name)
        return value

    def put(self, value: _T) -> None:
        """A value this process just stored: it is the value from now on."""
        self._generation += 1
        self._value, self._read_at = value, self._clock()

    def forget(self) -> None:
        """Read again at the next `get` (a change made here, or a value that must not be kept)."""
        self._generation += 1
        self._value = _UNSET
        self._stop_warm()

    async def aclose(self) -> None:
        """Stop reading in the background (the storage is about to close)."""
        self._closed = True
        task, self._warm = self._warm, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _keep_warm(self) -> None:
        if self._warm is None and not self._closed and not isinstance(self._value, _Unset):
            # In a context of its own: not in that of the request which happened to start it.
            self._warm = asyncio.get_running_loop().create_task(
                self._run_warm(), context=contextvars.Context()
            )

    def _stop_warm(self) -> None:
        task, self._warm = self._warm, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _run_warm(self) -> None:
        try:
            while not isinstance(self._value, _Unset):
                await self._sleep(max(self._read_at + self.ttl_s * REFRESH_AT - self._clock(), 0.0))
                if self._clock() - self._used_at > self.keep_warm_s:
                    return
                try:
                    await self.refresh()
                except Exception as exc:  # the next reader reads itself, and meets the error
                    _log.debug("background read failed", value=self._name, error=type(exc).__name__)
                    await self._sleep(self.ttl_s * (1 - REFRESH_AT))
        finally:
            if self._warm is asyncio.current_task():
                self._warm = None
