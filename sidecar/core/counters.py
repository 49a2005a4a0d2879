"""Shared-counter arithmetic: rate-limit windows and budget reservations, as pure functions and
small state objects. The in-process coordinator uses them directly; the Redis coordinator runs the
same rules in Lua scripts (infra.coordination), so one replica alone and two replicas together
limit alike.

Rate-limit windows are token buckets, like `core.limiter`: a window of `limit` units per
`window_s` seconds holds at most `limit` units, starts full and refills continuously, so it is a
sliding window with no edge where twice the limit can pass. A charge larger than the whole
window needs a full bucket. `adjust` charges the difference between an estimate and the real
figure afterwards; the level may go below zero (a debt repaid by refilling).

Budgets: each budget line (a scope and a period, e.g. overall for 2026-12-01) has `spent` (money
settled so far) and live reservations (estimated costs of requests still running, each with an
expiry, so a dead process's reservations lapse). The ledger's committed figure is a floor:
`spent` is never taken below what the ledger has committed, which heals a counter lost with a
restarted Redis. A reservation is refused when spent + reserved has reached the limit, or when
adding it would pass the limit (the rule of `core.budget.check_spend`, with reservations counted).

Money is counted in integer nano-dollars (`usd_units`), so sums are exact and "never exceeds"
means exactly that.

Must not know: I/O of any kind (clocks are the caller's `now`), Redis, wire types.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

import msgspec

NANO_PER_USD: Final = 1_000_000_000


def usd_units(usd: float) -> int:
    """USD as integer nano-dollars (rounded to the nearest)."""
    return round(usd * NANO_PER_USD)


def units_usd(units: int) -> float:
    return units / NANO_PER_USD


# --- rate-limit windows ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """`limit` units per `window_s` seconds under `key` (e.g. `router:cheap:requests`)."""

    key: str
    limit: float
    window_s: float

    def __post_init__(self) -> None:
        if not (self.limit > 0 and self.window_s > 0):
            raise ValueError(f"window {self.key!r}: limit and window_s must be positive")


@dataclass(slots=True)
class Bucket:
    level: float
    updated: float

    @classmethod
    def full(cls, window: Window, now: float) -> Bucket:
        return cls(float(window.limit), now)

    def refill(self, window: Window, now: float) -> None:
        if now > self.updated:
            self.level = min(
                float(window.limit), self.level + (now - self.updated) * window.limit / window.window_s
            )
            self.updated = now

    def wait_s(self, window: Window, amount: float) -> float:
        """Seconds until `amount` fits (call after `refill`); 0 when it fits now."""
        need = min(amount, window.limit)
        return 0.0 if self.level >= need else (need - self.level) * window.window_s / window.limit

    def idle_s(self, window: Window) -> float:
        """Seconds until the bucket is full again (after which forgetting it changes nothing)."""
        return max(window.limit - self.level, 0.0) * window.window_s / window.limit


@dataclass(frozen=True, slots=True)
class Lease:
    """At most `limit` holders at once under `key` (a provider's `max_concurrent` shared by every
    replica). A holder is counted until it is released, or for `ttl_s` at most (a process killed
    while holding one frees it by then)."""

    key: str
    limit: int
    ttl_s: float

    def __post_init__(self) -> None:
        if not (self.limit > 0 and self.ttl_s > 0):
            raise ValueError(f"lease {self.key!r}: limit and ttl_s must be positive")


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer to a charge: allowed (holding `lease_id` when a `Lease` was asked for), or
    refused by `key` with `retry_after_s` (0 when a lease is full: retry when one is released)."""

    allowed: bool
    retry_after_s: float = 0.0
    key: str | None = None
    lease_id: str | None = None


def admit(buckets: list[Bucket], charges: list[tuple[Window, float]], now: float) -> Admission:
    """All or nothing: take every charge when every bucket has room, else take none and say which
    window refused and how long until all of them would have room."""
    worst = 0.0
    refusing: str | None = None
    for bucket, (window, amount) in zip(buckets, charges, strict=True):
        bucket.refill(window, now)
        wait = bucket.wait_s(window, amount)
        if wait > worst:
            worst, refusing = wait, window.key
    if refusing is not None:
        return Admission(False, worst, refusing)
    for bucket, (window, amount) in zip(buckets, charges, strict=True):
        bucket.level -= min(amount, window.limit)
    return Admission(True)


def lease_full(holders: dict[str, float], lease: Lease, now: float) -> bool:
    """Forget holders past their expiry, then say whether `lease` has no room left."""
    for holder in [h for h, until in holders.items() if until <= now]:
        del holders[holder]
    return len(holders) >= lease.limit


def charge(bucket: Bucket, window: Window, extra: float, now: float) -> None:
    """Charge `extra` more (negative refunds), never refusing; the level may go below zero."""
    bucket.refill(window, now)
    bucket.level = min(float(window.limit), bucket.level - extra)


# --- budgets --------------------------------------------------------------------------------------


class BudgetLine(msgspec.Struct, frozen=True, gc=False):
    """One budget limit in one period: `key` names both (e.g. `budget:*:day:2026-12-01`),
    `committed_usd` is what the ledger has committed in it (a floor for `spent`), `expires_at`
    (Unix seconds) when the period is over and its counters may be forgotten.

    A Struct, like `Reservation`: a request with budgets builds a few of each, and a Struct costs
    a tenth of a frozen dataclass to make."""

    key: str
    limit_usd: float
    committed_usd: float
    expires_at: float


class Reservation(msgspec.Struct, frozen=True, gc=False):
    """A request's estimated cost held against some budget lines until settled or released."""

    id: str
    lines: tuple[BudgetLine, ...]
    amount_usd: float


class BudgetRefusal(msgspec.Struct, frozen=True, gc=False):
    """Which line refused, with its figures at that moment."""

    key: str
    limit_usd: float
    spent_usd: float
    reserved_usd: float
    requested_usd: float


def refuses(limit: int, spent: int, reserved: int, amount: int) -> bool:
    """The reservation rule, in integer units (see the module doc)."""
    total = spent + reserved
    return total >= limit or total + amount > limit


@dataclass(slots=True)
class BudgetCounter:
    """One budget line's counters: `spent`, and live reservations `id -> (amount, expires)` with
    their sum `reserved`, kept as holds come and go so a check does not add them up again."""

    spent: int = 0
    reserved: int = 0
    holds: dict[str, tuple[int, float]] = field(default_factory=dict)
    next_expiry: float = math.inf
    """No hold expires before this (it may be a hold already gone: then `purge` looks once)."""

    def hold(self, rid: str, amount: int, until: float) -> None:
        self.holds[rid] = (amount, until)
        self.reserved += amount
        if until < self.next_expiry:
            self.next_expiry = until

    def drop(self, rid: str) -> None:
        entry = self.holds.pop(rid, None)
        if entry is not None:
            self.reserved -= entry[0]

    def purge(self, now: float) -> None:
        """Forget holds past their expiry (a look at every hold only when one may have expired)."""
        if now < self.next_expiry:
            return
        for rid in [rid for rid, (_, until) in self.holds.items() if until <= now]:
            self.drop(rid)
        self.next_expiry = min((until for _, until in self.holds.values()), default=math.inf)

    def floor(self, committed: int) -> None:
        if committed > self.spent:
            self.spent = committed


def ceil_ms(seconds: float) -> int:
    return max(math.ceil(seconds * 1000), 1)
