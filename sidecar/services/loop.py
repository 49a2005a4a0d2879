"""The running event loop's clock and cancel scopes, for the per-request path, without anyio's
search for the running backend on every call (sniffio, then a table: about a third of what
entering a cancel scope costs, and most of `anyio.current_time()`).

The sidecar runs on asyncio only (`process.run`; the tests' `anyio_backend`), so the clock is the
asyncio loop's, which is what anyio's deadlines are measured in there, and the scope is of the class
anyio builds for the running backend, looked up once. Code off the per-request path keeps calling
anyio directly.

Must not know: anything of the sidecar.
"""

from __future__ import annotations

import asyncio
import math

import anyio

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
