"""Request metrics in memory: the last 24 hours at one-minute resolution, per provider, client key
and router, plus running totals since start per provider and client key (for Prometheus). Longer
ranges come from the ledger, bucketed by `bucketed` from its rows.

Pure: no I/O; times are passed in (Unix seconds).

Must not know: HTTP, the ledger's storage, providers.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

Metric = Literal["tokens", "cost", "requests", "success_rate", "latency_p50", "latency_p95"]
GroupBy = Literal["provider", "client", "router"]
GroupKey = tuple[str, str | None, str | None]
"""A minute's group: provider, client key, router."""
_GROUP_POSITION: Final = {"provider": 0, "client": 1, "router": 2}
METRICS: Final = ("tokens", "cost", "requests", "success_rate", "latency_p50", "latency_p95")
MINUTE: Final = 60
HORIZON_MIN: Final = 24 * 60
_MAX_LATENCIES: Final = 2000  # per minute and group: enough for a p95, bounded under load


@dataclass(frozen=True, slots=True)
class Sample:
    ts: float
    provider: str
    client: str | None
    outcome: str  # ok, error, cancelled
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_ms: float
    router: str | None = None


@dataclass(slots=True)
class Bucket:
    requests: int = 0
    ok: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def add(self, s: Sample) -> None:
        self.requests += 1
        if s.outcome == "ok":
            self.ok += 1
        elif s.outcome == "error":
            self.errors += 1
        self.input_tokens += s.input_tokens
        self.output_tokens += s.output_tokens
        self.cost_usd += s.cost_usd
        if len(self.latencies) < _MAX_LATENCIES:
            self.latencies.append(s.latency_ms)

    def merge(self, other: Bucket) -> None:
        self.requests += other.requests
        self.ok += other.ok
        self.errors += other.errors
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost_usd += other.cost_usd
        self.latencies.extend(other.latencies)

    def value(self, metric: Metric) -> float | None:
        if metric == "requests":
            return float(self.requests)
        if metric == "tokens":
            return float(self.input_tokens + self.output_tokens)
        if metric == "cost":
            return round(self.cost_usd, 10)
        if metric == "success_rate":
            decided = self.ok + self.errors
            return round(self.ok / decided, 6) if decided else None
        return percentile(self.latencies, 50 if metric == "latency_p50" else 95)


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(pct / 100 * len(ordered)) - 1, 0)
    return round(ordered[rank], 3)


def _key(s: Sample, group_by: GroupBy | None) -> str | None:
    if group_by == "provider":
        return s.provider
    if group_by == "client":
        return s.client
    if group_by == "router":
        return s.router
    return None


def bucketed(
    samples: Iterable[Sample], since: float, until: float, step: int, group_by: GroupBy | None
) -> dict[str | None, dict[int, Bucket]]:
    """Samples in `[since, until)` summed per group and per `step`-second bucket (keyed by its start)."""
    out: dict[str | None, dict[int, Bucket]] = {}
    for s in samples:
        if not since <= s.ts < until:
            continue
        start = int(s.ts // step * step)
        out.setdefault(_key(s, group_by), {}).setdefault(start, Bucket()).add(s)
    return out


def series(
    buckets: dict[str | None, dict[int, Bucket]], since: float, until: float, step: int, metric: Metric
) -> list[tuple[str | None, list[tuple[int, float | None]]]]:
    """Every step of the range for every group (empty steps count 0, or None for rates and latencies)."""
    first = int(since // step * step)
    steps = range(first, int(until), step)
    empty_value = Bucket().value(metric)
    out = []
    for key in sorted(buckets, key=lambda k: (k is None, k or "")):
        row = buckets[key]
        out.append((key, [(t, row[t].value(metric) if t in row else empty_value) for t in steps]))
    return out


class MinuteMetrics:
    """The last 24 hours, one bucket per minute per (provider, client, router), and totals since
    start per (provider, client)."""

    def __init__(self, horizon_min: int = HORIZON_MIN) -> None:
        self.horizon_min = horizon_min
        self._minutes: deque[tuple[int, dict[GroupKey, Bucket]]] = deque()
        self.totals: dict[tuple[str, str | None], Bucket] = {}

    def add(self, s: Sample) -> None:
        minute = int(s.ts // MINUTE)
        if not self._minutes or self._minutes[-1][0] < minute:
            self._minutes.append((minute, {}))
            while self._minutes and self._minutes[0][0] <= minute - self.horizon_min:
                self._minutes.popleft()
        groups = self._minutes[-1][1] if self._minutes[-1][0] == minute else self._find(minute)
        if groups is not None:
            groups.setdefault((s.provider, s.client, s.router), Bucket()).add(s)
        total = self.totals.setdefault((s.provider, s.client), Bucket())
        latencies = total.latencies
        total.add(s)
        del latencies[:]  # totals keep counts only

    def _find(self, minute: int) -> dict[GroupKey, Bucket] | None:
        for m, groups in reversed(self._minutes):
            if m == minute:
                return groups
            if m < minute:
                return None
        return None

    def rename_client(self, old: str, new: str) -> None:
        """Put what was counted for client key `old` under `new` (a renamed key is the same key;
        the ledger's rows move too), merged with whatever `new` already has."""
        for _, groups in self._minutes:
            for group in [g for g in groups if g[1] == old]:
                target = groups.setdefault((group[0], new, group[2]), Bucket())
                target.merge(groups.pop(group))
        for total in [t for t in self.totals if t[1] == old]:
            self.totals.setdefault((total[0], new), Bucket()).merge(self.totals.pop(total))

    def minutes(self) -> list[tuple[int, dict[GroupKey, Bucket]]]:
        return list(self._minutes)

    def query(
        self, since: float, until: float, metric: Metric, group_by: GroupBy | None
    ) -> list[tuple[str | None, list[tuple[int, float | None]]]]:
        buckets: dict[str | None, dict[int, Bucket]] = {}
        position = None if group_by is None else _GROUP_POSITION[group_by]
        for minute, groups in self._minutes:
            start = minute * MINUTE
            if not since <= start < until:
                continue
            for group, bucket in groups.items():
                key = None if position is None else group[position]
                target = buckets.setdefault(key, {}).setdefault(start, Bucket())
                target.merge(bucket)
        return series(buckets, since, until, MINUTE, metric)
