"""Shared model downloads: every `ollama_pull` of the same model rides on one upstream `/api/pull`.

A download runs in a task of the hub's own task group (`run()`, started with the server), not in
the request that asked for it, so it survives that request being cancelled while another still
waits for the same model. Each waiting request is a subscriber with its own `Coalescer`; the
download task offers every upstream line to each subscriber's coalescer and puts what it lets
through into the subscriber's (unbounded, but rate-limited) stream. A subscriber that joins late
first gets the newest line of every layer and phase seen so far, so its progress bar starts where
the download is. When the download ends, every subscriber gets the same outcome: success, or the
same error. When the last subscriber leaves (cancelled), the download is cancelled, which closes
the upstream stream at once.

Must not know: stdin/stdout, JSON-RPC, Ollama's wire format.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from sidecar import logs
from sidecar.core.pull_progress import DEFAULT_INTERVAL_S, Coalescer, Progress
from sidecar.errors import SidecarError

Upstream = Callable[[str], AsyncGenerator[Progress, None]]
Clock = Callable[[], float]
_log = logs.get_logger("pulls")


@dataclass(eq=False)
class _Subscriber:
    coalescer: Coalescer
    send: MemoryObjectSendStream[Progress]
    receive: MemoryObjectReceiveStream[Progress]


@dataclass(eq=False)
class _Download:
    key: str
    model: str
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    subscribers: list[_Subscriber] = field(default_factory=list)
    latest: dict[str | None, Progress] = field(default_factory=dict)  # newest line per layer/phase
    ended: bool = False  # the download task is over (success, error, or cancelled)
    succeeded: bool = False
    error: SidecarError | None = None

    def publish(self, progress: Progress, now: float) -> None:
        key = progress.digest if progress.digest is not None else None
        self.latest.pop(key, None)  # keep the order of last update: a late joiner sees phases in order
        self.latest[key] = progress
        for sub in self.subscribers:
            _deliver(sub, sub.coalescer.offer(progress, now))

    def close(self) -> None:
        for sub in self.subscribers:
            _deliver(sub, sub.coalescer.finish())
            sub.send.close()


def _again(error: SidecarError) -> SidecarError:
    """The same error for another waiter (one exception object must not be raised in two tasks)."""
    clone = type(error).__new__(type(error), *error.args)
    clone.__dict__.update(error.__dict__)
    return clone


def _deliver(sub: _Subscriber, items: list[Progress]) -> None:
    for item in items:
        try:
            sub.send.send_nowait(item)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return  # the subscriber is leaving


class PullHub:
    """Runs downloads and shares them; `run()` must be running while `pull()` is used."""

    def __init__(self, upstream: Upstream, clock: Clock, *, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self._upstream = upstream
        self._clock = clock
        self._interval_s = interval_s
        self._downloads: dict[str, _Download] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Host the downloads until cancelled (the server's lifetime)."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None

    @property
    def active(self) -> list[str]:
        return list(self._downloads)

    async def pull(self, key: str, model: str, on_progress: Callable[[Progress], Awaitable[None]]) -> None:
        """Download `model` (shared by `key` with concurrent pulls), reporting progress; returns on
        success, raises the download's error otherwise."""
        download = self._downloads.get(key)
        if download is None:
            download = self._start(key, model)
        send, receive = anyio.create_memory_object_stream[Progress](math.inf)
        sub = _Subscriber(Coalescer(self._interval_s), send, receive)
        now = self._clock()
        for progress in download.latest.values():
            _deliver(sub, sub.coalescer.offer(progress, now))
        download.subscribers.append(sub)
        try:
            async with receive:
                async for progress in receive:
                    await on_progress(progress)
        finally:
            self._leave(download, sub)
        if download.error is not None:
            raise _again(download.error)
        if not download.succeeded:
            raise SidecarError(
                "provider_error", f"The download of '{model}' stopped before it finished.", provider="ollama"
            )

    def _start(self, key: str, model: str) -> _Download:
        if self._tg is None:
            raise RuntimeError("PullHub.run() is not running")
        download = _Download(key, model)
        self._downloads[key] = download
        self._tg.start_soon(self._drive, download)
        return download

    def _leave(self, download: _Download, sub: _Subscriber) -> None:
        with contextlib.suppress(ValueError):
            download.subscribers.remove(sub)
        sub.send.close()
        if not download.subscribers and not download.ended:
            # Nobody waits any more: stop the download (this closes the upstream stream).
            if self._downloads.get(download.key) is download:
                del self._downloads[download.key]
            download.scope.cancel()

    async def _drive(self, download: _Download) -> None:
        try:
            with download.scope:
                try:
                    async with contextlib.aclosing(self._upstream(download.model)) as lines:
                        async for progress in lines:
                            download.publish(progress, self._clock())
                    download.succeeded = True
                except SidecarError as exc:
                    download.error = exc
                except Exception:
                    _log.exception("model download crashed", model=download.model)
                    download.error = SidecarError(
                        "internal_error", "The download failed inside the sidecar; see its log."
                    )
        finally:
            # No await from here on: a pull arriving now must start a fresh download.
            if self._downloads.get(download.key) is download:
                del self._downloads[download.key]
            download.ended = True
            download.close()
