"""Wire types of the local HTTP gateway's host methods: `gateway_start`, `gateway_stop`,
`gateway_status`, and the client keys (`client_key_*`) other programs use to call it.

Must not know: HTTP, the gateway's routes, how keys are stored.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from sidecar.wire.base import Params, Wire

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
NonNegativeUsd = Annotated[float, msgspec.Meta(ge=0)]
KeyName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class GatewayStartParams(Params):
    """`host` defaults to config.toml's `[gateway] host`, else 127.0.0.1; `port` to `[gateway] port`,
    else 3625. Port 0 picks a free port. A host other than a loopback address needs at least one
    client key."""

    host: str | None = None
    port: Port | None = None


class GatewayStartResult(Wire):
    url: str
    port: int


class GatewayStopResult(Wire):
    stopped: bool


class GatewayStatusResult(Wire):
    """`login_url` opens the dashboard in a browser once, within 10 minutes, without a client key
    (each call makes a new one)."""

    running: bool
    url: str | None = None
    port: int | None = None
    uptime_s: float | None = None
    requests_served: int = 0
    open_streams: int = 0
    login_url: str | None = None


class ClientLimits(Params):
    """Per-key request limits, counted by the gateway over a sliding minute."""

    requests_per_minute: Annotated[float, msgspec.Meta(gt=0)] | None = None
    tokens_per_minute: Annotated[float, msgspec.Meta(gt=0)] | None = None


class ClientKeyCreateParams(Params):
    """`allow`: model or router patterns this key may use (`openai:*`, `anthropic:claude-*`,
    `router:cheapest`; `*` matches anything); empty or absent means every model. `router`: the
    model used when a request names none, or names `default`."""

    name: KeyName
    allow: list[str] | None = None
    router: str | None = None
    daily_usd: NonNegativeUsd | None = None
    monthly_usd: NonNegativeUsd | None = None
    limits: ClientLimits | None = None


class ClientKeyInfo(Wire):
    """A client key as listed: never the key itself, only its first characters (`prefix`)."""

    id: str
    name: str
    prefix: str
    allow: list[str]
    enabled: bool
    created: str
    router: str | None = None
    daily_usd: float | None = None
    monthly_usd: float | None = None
    limits: ClientLimits | None = None
    last_used: str | None = None
    requests: int = 0
    cost_usd: float = 0.0


class ClientKeyCreateResult(Wire):
    """`key` is shown this once: only its SHA-256 hash is kept."""

    key: str
    info: ClientKeyInfo


class ClientKeyListResult(Wire):
    keys: list[ClientKeyInfo]


class ClientKeyRef(Params):
    """Names a key by `id` (or by its unique `name`)."""

    id: str | None = None
    name: str | None = None


class ClientKeyUpdateParams(Params):
    """Omitted fields keep their value; null clears `router`, budgets and limits."""

    id: str | None = None
    name: str | None = None
    rename: KeyName | None = None
    enabled: bool | None = None
    allow: list[str] | None = None
    router: str | msgspec.UnsetType | None = msgspec.UNSET
    daily_usd: NonNegativeUsd | msgspec.UnsetType | None = msgspec.UNSET
    monthly_usd: NonNegativeUsd | msgspec.UnsetType | None = msgspec.UNSET
    limits: ClientLimits | msgspec.UnsetType | None = msgspec.UNSET


class ClientKeyUpdateResult(Wire):
    info: ClientKeyInfo


class ClientKeyDeleteResult(Wire):
    deleted: bool


class MetricsParams(Params):
    """`range`: the last hour or day (one-minute steps, from memory), 7 days (hourly steps) or 30
    days (daily steps), both from the usage ledger. `group_by`: one series per provider, per
    client key (requests from the host itself have no client key) or per router (requests made
    without one have none); absent, one series in all."""

    range: Literal["1h", "24h", "7d", "30d"] = "24h"
    metric: Literal["tokens", "cost", "requests", "success_rate", "latency_p50", "latency_p95"] = "requests"
    group_by: Literal["provider", "client", "router"] | None = None


class MetricsSeries(Wire):
    """`points`: `[unix_seconds, value]` for every step of the range, oldest first; a value is null
    where it has no meaning (a rate or a latency in a step without requests)."""

    points: list[list[float | None]]
    key: str | None = None


class MetricsResult(Wire):
    range: str
    metric: str
    step_s: int
    since: int
    until: int
    series: list[MetricsSeries]
    group_by: str | None = None
