"""Wire types of `provider_health`.

Must not know: how a provider is probed, the protocol layer.
"""

from __future__ import annotations

from typing import Literal

from sidecar.wire.base import ErrorData, Params, Wire

HealthStatus = Literal["healthy", "degraded", "unhealthy"]


class ProviderHealthParams(Params):
    """Without `provider`, every provider switched on that has a key (or needs none) is probed."""

    provider: str | None = None


class ProviderHealth(Wire):
    """`healthy`: the probe answered quickly; `degraded`: it answered slowly or was rate limited;
    `unhealthy`: it failed (`error` says why: no key, a refused key, nothing listening...)."""

    provider: str
    status: HealthStatus
    checked_at: str
    latency_ms: float | None = None
    error: ErrorData | None = None


class ProviderHealthResult(Wire):
    providers: list[ProviderHealth]
