"""The running event loop's clock and cancel scopes, for the per-request path, without anyio's
search for the running backend on every call (sniffio, then a table: about a third of what
entering a cancel scope costs, and most of `anyio.current_time()`); and `in_context`, which awaits
a coroutine in the context variables of an earlier moment.

The sidecar runs on asyncio only (`process.run`; the tests' `anyio_backend`), so the clock is the
asyncio loop's, which is what anyio's deadlines are measured in there, and the scope is of the class
anyio builds for the running backend, looked up once. Code off the per-request path keeps calling
anyio directly.

Must not know: anything of the sidecar.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, ParamSpec

import anyio

_P = ParamSpec("_P")
_scope_class: type[anyio.CancelScope] | None = None


def now() -> float:
    """`anyio.current_time()`: the loop's clock, which cancel scope deadlines use."""
    return asyncio.get_running_loop().time()


def cancel_scope(*, deadline: float = math.inf, shield: bool = False) -> anyio.CancelScope:
    """`anyio.CancelScope(deadline=..., shield=...)`."""
    global _scope_class
    cls = _scope_class
    if cls is None:
        cls = _scope_class = type(anyio.CancelScope())
    return cls(deadline=deadline, shield=shield)


class _InContext:
    """Awaitable: a coroutine whose every step runs inside `context`, in the awaiting task."""

    __slots__ = ("_context", "_coro")

    def __init__(self, context: contextvars.Context, coro: Coroutine[Any, Any, Any]) -> None:
        self._context = context
        self._coro = coro

    def __await__(self) -> Generator[Any, Any, Any]:
        run, coro = self._context.run, self._coro
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = run(coro.send, value) if error is None else run(coro.throw, error)
            except StopIteration as stop:
                return stop.value
            try:
                value, error = (yield step), None
            except BaseException as exc:  # a cancellation or an error thrown into the await
                value, error = None, exc


def in_context(
    context: contextvars.Context,
    func: Callable[_P, Coroutine[Any, Any, Any]],
    *args: _P.args,
    **kwargs: _P.kwargs,
) -> Awaitable[Any]:
    """`func(*args, **kwargs)` awaited with the context variables of `context` (a
    `contextvars.copy_context()` taken earlier), in the current task: no task is created, and what
    it sets stays in `context`."""
    return _InContext(context, func(*args, **kwargs))
