"""Notices when config.toml changes on disk: one `stat` per interval, compared with the last one.

Kept apart from the reload itself so the watching task imports nothing heavy: the services that
reload are built only when the file actually changes.

Must not know: what the file holds, how a configuration is applied.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import anyio
import anyio.abc

POLL_INTERVAL_S: Final = 1.0


def stamp(path: Path) -> tuple[int, int] | None:
    """What identifies a version of the file: modification time and size (None when absent)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


class ConfigWatcher:
    def __init__(
        self,
        path: Path,
        on_change: Callable[[], Awaitable[object]],
        interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self.path = path
        self.on_change = on_change
        self.interval_s = interval_s
        self.last = stamp(path)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await anyio.sleep(self.interval_s)
            await self.check()

    async def check(self) -> bool:
        current = stamp(self.path)
        if current == self.last:
            return False
        self.last = current
        await self.on_change()
        return True
