"""What the gateway keeps of each request: `AccessRecord` (the access log's line and the
dashboard's recent row) and the counters `gateway_status` reports.

Must not know: HTTP, how records are written (infra.access_log does that, off the request path).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field, fields
from typing import Any, Final


@dataclass
class Counters:
    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    open_streams: int = 0


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """One request as the access log keeps it: never a prompt or a completion."""

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

    def as_dict(self) -> dict[str, Any]:
        """The fields as a flat dict (what `dataclasses.asdict` gives, without its deep copy)."""
        return {name: getattr(self, name) for name in _FIELDS}


_FIELDS: Final = tuple(f.name for f in fields(AccessRecord))


def iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
