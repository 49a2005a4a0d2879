"""What a request's task knows of its client connection: the server's protocol (`server`) sets
`current` while it starts request tasks, so each task's context names the connection it serves,
and a request asks that connection to call it back when the client goes away (`Connection.watch`).

The alternative, a task per request blocked on ASGI `receive` until `http.disconnect`, cost a
task, a future and its cancellation on every request. Where `current` is unset (an app run by
another server, in tests) a request falls back to that task.

Must not know: routes, services, uvicorn.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Protocol


class Connection(Protocol):
    def watch(self, on_lost: Callable[[], None] | None) -> bool:
        """Call `on_lost` (once) when the client connection is lost, replacing any earlier
        callback; None stops watching. False, and no callback kept, if it is already lost."""
        ...


current: ContextVar[Connection | None] = ContextVar("gateway_connection", default=None)
