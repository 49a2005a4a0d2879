"""`info`: the sidecar's version, methods, notifications, price-catalog date, and where its
configuration and state are (so a person or a host can tell which files this process uses).

Kept apart from the catalog so that answering it (often a host's first request) builds nothing.

Must not know: providers, stdin/stdout.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Final

from sidecar import __version__, logs
from sidecar.core.catalog_date import CATALOG_DATE
from sidecar.paths import config_file, state_home
from sidecar.services.context import CallContext, Handler
from sidecar.wire.base import Empty
from sidecar.wire.catalog import InfoResult
from sidecar.wire.methods import METHODS, NOTIFICATIONS


class AboutService:
    def __init__(self, env: Mapping[str, str], config_path: str | os.PathLike[str] | None = None) -> None:
        self._env = env
        self._config_path = config_path
        self._log_level: Callable[[], str] = logs.level_name
        self._paths: tuple[str, str] | None = None  # (config path, state dir), found on first use
        # The last answer, given again while the log level (all that changes) is the same: `info`
        # is `same_result` in the METHODS table, so the stdio face reuses its encoding.
        self._described: InfoResult | None = None

    def handlers(self) -> dict[str, Handler]:
        return {"info": self.info}

    async def info(self, params: Empty, ctx: CallContext) -> InfoResult:
        described = self._described  # `describe`'s own first test, without its call (a busy pipe's)
        if described is not None and described.log_level == self._log_level():
            return described
        return self.describe()

    def describe(self) -> InfoResult:
        """What `info` answers (the daemon also answers with it before its event loop starts): the
        same object while the answer is the same, and never one changed after it was returned."""
        level = self._log_level()
        described = self._described
        if described is not None and described.log_level == level:
            return described
        if self._paths is None:
            self._paths = (config_file(self._config_path, self._env), state_home(self._env))
        self._described = described = InfoResult(
            version=__version__,
            methods=_METHOD_NAMES,
            notifications=_NOTIFICATION_NAMES,
            pricing_date=CATALOG_DATE,
            config_path=self._paths[0],
            state_dir=self._paths[1],
            log_level=level,
        )
        return described


# Built once: encoding reads them, nothing changes them.
_METHOD_NAMES: Final = list(METHODS)
_NOTIFICATION_NAMES: Final = list(NOTIFICATIONS)
