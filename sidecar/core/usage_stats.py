"""Usage analytics over ledger rows: per-group totals, error rate, latency percentiles, and the
month's projected spend; plus the parsing of a summary's `since` / `until` bounds.

Definitions (what `usage_summary` documents):

- `error_rate` = requests that ended in an error / all requests; cancelled requests are counted
  apart (`cancelled`) and are not errors.
- Latency percentiles use linear interpolation between closest ranks (numpy's default), over
  every request of the group whatever its outcome.
- `cost_usd` sums the known costs; `unpriced_requests` counts requests whose model had no price.
- Month projection: spend so far this month / elapsed fraction of the month, the fraction taken
  as at least one day's worth, so the first hours of a month don't project a tiny spend to a
  huge one.

Must not know: I/O of any kind (the clock is the caller's `now`), SQL, wire types.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from sidecar.core.budget import utc, window

PROJECTION_METHOD: Final = (
    "spend so far this month (UTC) divided by the elapsed fraction of the month, the fraction "
    "taken as at least one day"
)


@dataclass(frozen=True, slots=True)
class Sample:
    """One ledger row as analytics sees it (`key` is the group it belongs to)."""

    key: str | None
    outcome: str  # ok | error | cancelled | refused
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    latency_ms: float = 0.0
    cache_hit: int = 0
    saved_usd: float | None = None


@dataclass(slots=True)
class GroupStats:
    key: str | None
    requests: int = 0
    ok: int = 0
    errors: int = 0
    cancelled: int = 0
    refused: int = 0
    cache_hits: int = 0
    saved_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_requests: int = 0
    latencies: list[float] = field(default_factory=list)

    def add(self, s: Sample) -> None:
        self.requests += 1
        if s.outcome == "ok":
            self.ok += 1
        elif s.outcome == "cancelled":
            self.cancelled += 1
        elif s.outcome == "refused":
            # Never sent: no tokens, no cost, and no latency worth counting.
            self.refused += 1
            return
        else:
            self.errors += 1
        if s.cache_hit:
            self.cache_hits += 1
            self.saved_usd += s.saved_usd or 0.0
        self.input_tokens += s.input_tokens
        self.output_tokens += s.output_tokens
        self.cache_read_tokens += s.cache_read_tokens
        self.cache_write_tokens += s.cache_write_tokens
        self.reasoning_tokens += s.reasoning_tokens
        if s.cost_usd is None:
            self.unpriced_requests += 1
        else:
            self.cost_usd += s.cost_usd
        self.latencies.append(s.latency_ms)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def cache_hit_rate(self) -> float:
        """Answers from the response cache over requests that were sent or answered."""
        answered = self.requests - self.refused
        return self.cache_hits / answered if answered else 0.0

    @property
    def latency_p50(self) -> float | None:
        return percentile(sorted(self.latencies), 50)

    @property
    def latency_p95(self) -> float | None:
        return percentile(sorted(self.latencies), 95)


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The `q`-th percentile (0-100) of already sorted values, linearly interpolated; None if empty."""
    if not sorted_values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    rank = (len(sorted_values) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(sorted_values[low])
    return float(sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low))


def summarise(samples: Iterable[Sample]) -> tuple[GroupStats, list[GroupStats]]:
    """The total over every sample and one group per distinct key, ordered by cost (highest
    first), then key; rows without a key (an untagged request grouped by tag) form the `None` group."""
    total = GroupStats(None)
    groups: dict[str | None, GroupStats] = {}
    for s in samples:
        total.add(s)
        group = groups.get(s.key)
        if group is None:
            group = groups[s.key] = GroupStats(s.key)
        group.add(s)
    ordered = sorted(groups.values(), key=lambda g: (-g.cost_usd, g.key is None, g.key or ""))
    return total, ordered


@dataclass(frozen=True, slots=True)
class Projection:
    month: str
    spent_usd: float
    projected_usd: float
    elapsed_fraction: float


def month_projection(spent_usd: float, now: dt.datetime) -> Projection:
    """This month's projected spend at the rate so far (see the module doc)."""
    w = window("month", now)
    days = (w.end - w.start).days
    fraction = w.elapsed_fraction(utc(now))
    projected = spent_usd / max(fraction, 1 / days)
    return Projection(w.key, round(spent_usd, 10), round(projected, 10), round(fraction, 6))


def parse_bound(text: str, *, end: bool) -> dt.datetime:
    """A `since` (end=False) or `until` (end=True) bound as an aware UTC datetime.

    Accepts ISO 8601: a date (`2026-11-01`) or a date and time, with an offset or `Z`; a time
    without an offset is UTC. A bare date as `until` includes that whole day (the bound becomes
    the next midnight), so `since=until=2026-11-01` is that one day. Raises ValueError.
    """
    raw = text.strip()
    if len(raw) == 10:  # YYYY-MM-DD
        day = dt.date.fromisoformat(raw)
        start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        return start + dt.timedelta(days=1) if end else start
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    return utc(dt.datetime.fromisoformat(raw))


def iso(moment: dt.datetime) -> str:
    """An aware datetime as ISO 8601 UTC with a `Z`, to the millisecond."""
    return utc(moment).isoformat(timespec="milliseconds").replace("+00:00", "Z")
