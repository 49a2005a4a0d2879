"""What the gateway keeps of each request: `AccessRecord` (the access log's line and the
dashboard's recent row) and the counters `gateway_status` reports.

Must not know: HTTP, how records are written (infra.access_log does that, off the request path).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import msgspec


@dataclass
class Counters:
    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    open_streams: int = 0


class AccessRecord(msgspec.Struct, frozen=True):
    """One request as the access log keeps it: never a prompt or a completion. A Struct: built
    once per request (a tenth of a frozen dataclass's cost) and encoded as it is by the log's
    writer thread."""

    ts: str
    request_id: str
    method: str
    path: str
    status: int
    latency_ms: float
    client: str | None = None
    model: str | None = None
    provider: str | None = None
    router: str | None = None
    outcome: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cost_usd: float | None = None


class _UtcNow:
    """`2026-01-02T03:04:05.678Z`: the date and time of day formatted once a second, the
    milliseconds per call."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{int((now - second) * 1000):03d}Z"


iso_now = _UtcNow()
"""The time now in UTC, ISO 8601 to the millisecond (what `datetime.isoformat` gives)."""
