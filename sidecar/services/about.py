"""`info`: the sidecar's version, methods, notifications and price-catalog date.

Kept apart from the catalog so that answering it (often a host's first request) builds nothing.

Must not know: providers, stdin/stdout.
"""

from __future__ import annotations

from sidecar import __version__
from sidecar.core.catalog import CATALOG_DATE
from sidecar.services.context import CallContext, Handler
from sidecar.wire.base import Empty
from sidecar.wire.catalog import InfoResult
from sidecar.wire.methods import METHODS, NOTIFICATIONS


class AboutService:
    def handlers(self) -> dict[str, Handler]:
        return {"info": self.info}

    async def info(self, params: Empty, ctx: CallContext) -> InfoResult:
        return InfoResult(
            version=__version__,
            methods=list(METHODS),
            notifications=list(NOTIFICATIONS),
            pricing_date=CATALOG_DATE,
        )
