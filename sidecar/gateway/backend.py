"""What the gateway uses of the sidecar (`Backend`: the methods' handlers, the model resolver, the
client keys, each key's spend, the Prometheus text, a team's health), and `SidecarBackend`, that
protocol over the app's services (duck-typed: the face never imports the app).

Must not know: HTTP, providers' wire formats.
"""

from __future__ import annotations

from typing import Any, Protocol

from sidecar.errors import SidecarError
from sidecar.services.client_keys import ClientKeyService
from sidecar.services.context import Handler


class Backend(Protocol):
    @property
    def handlers(self) -> dict[str, Handler]: ...

    async def resolve(self, model: str) -> str:
        """`provider:model` of a model string, or `router:<name>` (SidecarError when neither)."""

    @property
    def client_keys(self) -> ClientKeyService: ...

    async def client_spend(self, name: str) -> tuple[float, float]:
        """USD spent today and this month by a client key."""

    def prometheus(self) -> str:
        """The counters of `/metrics`, in Prometheus' text format."""

    async def health(self) -> dict[str, Any] | None:
        """A team gateway's database and Redis states (None on the desktop: nothing shared)."""


class SidecarBackend:
    """`Backend` over the app's services."""

    def __init__(self, services: Any) -> None:
        self._services = services

    @property
    def handlers(self) -> dict[str, Handler]:
        handlers: dict[str, Handler] = self._services.handlers
        return handlers

    async def resolve(self, model: str) -> str:
        """`provider:model`, or `router:<name>` for a router (named so, or plainly when no model is)."""
        if model.startswith("router:"):
            name = model[len("router:") :]
            if not await self._services.routers.exists(name):
                raise SidecarError("model_not_found", f"No router is named {name!r}.", field="model")
            return model
        try:
            return str(self._services.chat.resolve(model))
        except SidecarError:
            if await self._services.routers.exists(model):
                return f"router:{model}"
            raise

    @property
    def client_keys(self) -> Any:
        return self._services.client_keys

    async def client_spend(self, name: str) -> tuple[float, float]:
        spent: tuple[float, float] = await self._services.usage.client_spend(name)
        return spent

    def prometheus(self) -> str:
        text: str = self._services.metrics.prometheus()
        return text

    async def health(self) -> dict[str, Any] | None:
        shared: dict[str, Any] | None = await self._services.team_health()
        return shared
