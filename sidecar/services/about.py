"""`info`: the sidecar's version, methods, notifications, price-catalog date, and where its
configuration and state are (so a person or a host can tell which files this process uses).

Kept apart from the catalog so that answering it (often a host's first request) builds nothing.

Must not know: providers, stdin/stdout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from sidecar import __version__, logs
from sidecar.config import CONFIG_NAME, state_dir
from sidecar.core.catalog import CATALOG_DATE
from sidecar.services.context import CallContext, Handler
from sidecar.wire.base import Empty
from sidecar.wire.catalog import InfoResult
from sidecar.wire.methods import METHODS, NOTIFICATIONS


class AboutService:
    def __init__(self, env: Mapping[str, str], config_path: Path | None = None) -> None:
        self._env = env
        self._config_path = config_path
        self._log_level: Callable[[], str] = logs.level_name

    def handlers(self) -> dict[str, Handler]:
        return {"info": self.info}

    async def info(self, params: Empty, ctx: CallContext) -> InfoResult:
        return InfoResult(
            version=__version__,
            methods=list(METHODS),
            notifications=list(NOTIFICATIONS),
            pricing_date=CATALOG_DATE,
            config_path=str(self._config_path or state_dir(self._env) / CONFIG_NAME),
            state_dir=str(state_dir(self._env)),
            log_level=self._log_level(),
        )
