"""Wire types of `rate_limits`: what each provider said about its limits, its circuit breaker, and
the client-side limits the sidecar keeps for it.

Instants are RFC 3339 strings in UTC (`2025-08-21T12:40:59Z`); `*_in_s` fields are seconds from
the moment of the answer.

Must not know: how the figures were learned, the protocol layer.
"""

from __future__ import annotations

from typing import Literal

from sidecar.wire.base import Params, Wire

CircuitState = Literal["closed", "open", "half_open"]


class RateLimitsParams(Params):
    """`provider` narrows the answer to one provider."""

    provider: str | None = None


class LimitWindow(Wire):
    """One upstream limit: its size, what is left, and when it refills. `remaining` is as the
    provider last reported it (or back at `limit` once `reset_at` has passed)."""

    limit: int | None = None
    remaining: int | None = None
    reset_at: str | None = None
    resets_in_s: float | None = None


class CircuitInfo(Wire):
    """The provider's circuit breaker: `open` means requests skip it until `retry_in_s` has passed,
    then one request (`half_open`) decides whether it is back."""

    state: CircuitState
    consecutive_failures: int
    failure_threshold: int
    cooldown_s: float
    retry_in_s: float | None = None


class ClientLimits(Wire):
    """The client-side limits from config.toml and how much of them is in use."""

    max_concurrent: int | None = None
    in_flight: int = 0
    waiting: int = 0
    min_interval_s: float | None = None
    requests_per_minute: float | None = None
    requests_available: float | None = None
    tokens_per_minute: float | None = None
    tokens_available: float | None = None


class ProviderRateLimits(Wire):
    """Everything known about one provider's limits. The windows are null until a response from
    the provider carried rate-limit headers (Gemini sends none; OpenRouter only on its own 429s)."""

    provider: str
    circuit: CircuitInfo
    requests: LimitWindow | None = None
    tokens: LimitWindow | None = None
    input_tokens: LimitWindow | None = None
    output_tokens: LimitWindow | None = None
    retry_after_s: float | None = None
    retry_at: str | None = None
    last_status: int | None = None
    updated_at: str | None = None
    client: ClientLimits | None = None


class RateLimitsResult(Wire):
    providers: list[ProviderRateLimits]
    as_of: str
