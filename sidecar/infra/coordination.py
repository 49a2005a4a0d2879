"""The coordination seam: counters that every replica of a gateway shares, behind one interface
with two engines.

- `LocalCoordinator` (the default): in this process, on `core.counters`. Each process limits on
  its own.
- `RedisCoordinator` (`[coordination] url = "redis://…"`, Redis 6.2+ or Valkey), in
  `infra.redis_coordination`: the same rules as Lua scripts, atomic on the server, so two
  replicas together never pass a limit that one alone enforces. Its module (and `redis.asyncio`)
  is imported only when a configuration names Redis.

What is shared (see `core.counters` for the arithmetic):

- rate-limit windows: `acquire([(window, amount), …])` takes from every window or from none
  (a request passes its provider's, its router's and its client key's windows together, or is
  refused without being charged); `adjust` charges the difference between an estimate and the
  real figure once a request has finished. A provider's `min_interval_s` is a window of one
  request per interval.
- concurrency: `acquire(…, lease=Lease(key, limit, ttl_s))` also takes one of `limit` places
  (a provider's `max_concurrent`), in the same atomic step as the windows; `release_lease` gives
  it back, and a place held by a killed process lapses after `ttl_s`. `renew_lease` gives a place
  still held another `ttl_s` (its holder renews it while the request goes on, so a request longer
  than `ttl_s` keeps its place).
- budget reservations: `reserve(lines, amount_usd, ttl_s)` checks spent + reserved + amount
  against each line's limit and holds the amount on all of them at once, or refuses;
  `settle(reservation, actual_usd)` moves it to spent, `release` drops it. A reservation lapses
  after `ttl_s`, so a replica killed mid-request holds nothing for long.

When Redis cannot be reached (`[coordination] on_unavailable`):

- `"refuse"` (the default): `acquire` and `reserve` raise `SidecarError("coordination_unavailable")`
  with `retry_after_s`; a request with no limit or budget never asks, so it is served. A team
  that shares one budget would rather wait a minute than overspend it N times.
- `"local"`: this replica falls back to its own in-process counters (each replica limits on its own,
  as without Redis) until Redis answers again; logged once per outage.

`settle`, `release` and `adjust` never raise: the request they describe has already happened.
If Redis is gone then, the reservation lapses by its TTL, and the spend is healed from the
ledger's committed figure (each line's floor) at the next reservation. A restarted Redis without
persistence starts with full windows and no reservations; the budget counters are rebuilt from
the ledger the same way. Redis holds no record: the ledger (storage) does.

Must not know: the protocol, providers, which service asks, SQL.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final, Literal, Protocol
from urllib.parse import urlsplit

from sidecar.config import Coordination
from sidecar.core.counters import (
    NANO_PER_USD,
    Admission,
    Bucket,
    BudgetCounter,
    BudgetLine,
    BudgetRefusal,
    Lease,
    Reservation,
    Window,
    admit,
    charge,
    lease_full,
    refuses,
    units_usd,
    usd_units,
)

OnUnavailable = Literal["refuse", "local"]
UNAVAILABLE_RETRY_S: Final = 5.0
DEFAULT_TIMEOUT_S: Final = 5.0
DEFAULT_MAX_CONNECTIONS: Final = 64
POOL_WAIT_S: Final = 30.0
"""How long a call waits for a free pooled connection (busy, not unreachable) before giving up."""
DEFAULT_PREFIX: Final = "llm-sidecar:"


class Coordinator(Protocol):
    """Shared counters (see the module doc). Keys are plain strings; an engine may prefix them."""

    engine: str

    async def acquire(
        self, charges: Sequence[tuple[Window, float]], lease: Lease | None = None
    ) -> Admission: ...

    async def release_lease(self, lease: Lease, lease_id: str) -> None: ...

    async def renew_lease(self, lease: Lease, lease_id: str) -> bool:
        """Hold the place another `lease.ttl_s` from now; False when it is no longer held (lapsed
        or released: it is not taken again). Never raises: an unreachable Redis answers True, the
        next renewal tries again."""
        ...

    async def adjust(self, charges: Sequence[tuple[Window, float]]) -> None: ...

    async def reserve(
        self, lines: Sequence[BudgetLine], amount_usd: float, ttl_s: float
    ) -> Reservation | BudgetRefusal: ...

    async def settle(self, reservation: Reservation, actual_usd: float) -> None: ...

    async def release(self, reservation: Reservation) -> None: ...

    async def figures(self, lines: Sequence[BudgetLine]) -> list[tuple[float, float]]:
        """`(spent_usd, reserved_usd)` per line, now."""
        ...

    async def health(self) -> dict[str, object]: ...

    async def aclose(self) -> None: ...


# --- in process -----------------------------------------------------------------------------------


class LocalCoordinator:
    """`Coordinator` in this process. Thread-safe (one uncontended lock per call).

    Its reservation and lease ids are a counter: they never leave this process. A budget check
    costs a few dictionary steps per line: each counter keeps the sum of its holds, and looks for
    lapsed ones only once the earliest may have lapsed."""

    engine = "local"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, Bucket] = {}
        self._budgets: dict[str, tuple[BudgetCounter, float]] = {}
        self._leases: dict[str, dict[str, float]] = {}
        self._ops = 0
        self._ids = itertools.count(1)

    def _new_id(self) -> str:
        return str(next(self._ids))

    async def acquire(self, charges: Sequence[tuple[Window, float]], lease: Lease | None = None) -> Admission:
        return self.acquire_sync(charges, lease)

    def acquire_sync(self, charges: Sequence[tuple[Window, float]], lease: Lease | None = None) -> Admission:
        with self._lock:
            now = self._clock()
            self._tidy(now)
            holders: dict[str, float] = {}
            if lease is not None:
                holders = self._leases.setdefault(lease.key, {})
                if lease_full(holders, lease, now):
                    return Admission(False, 0.0, lease.key)
            buckets = [self._bucket(window, now) for window, _ in charges]
            admission = admit(buckets, list(charges), now)
            if lease is None or not admission.allowed:
                return admission
            lease_id = self._new_id()
            holders[lease_id] = now + lease.ttl_s
            return Admission(True, lease_id=lease_id)

    async def release_lease(self, lease: Lease, lease_id: str) -> None:
        with self._lock:
            self._leases.get(lease.key, {}).pop(lease_id, None)

    async def renew_lease(self, lease: Lease, lease_id: str) -> bool:
        with self._lock:
            now = self._clock()
            holders = self._leases.get(lease.key, {})
            until = holders.get(lease_id)
            if until is None or until <= now:  # released, or lapsed (its place may be taken)
                return False
            holders[lease_id] = now + lease.ttl_s
            return True

    async def adjust(self, charges: Sequence[tuple[Window, float]]) -> None:
        with self._lock:
            now = self._clock()
            for window, extra in charges:
                charge(self._bucket(window, now), window, extra, now)

    def _bucket(self, window: Window, now: float) -> Bucket:
        bucket = self._buckets.get(window.key)
        if bucket is None:
            bucket = self._buckets[window.key] = Bucket.full(window, now)
        return bucket

    async def reserve(
        self, lines: Sequence[BudgetLine], amount_usd: float, ttl_s: float
    ) -> Reservation | BudgetRefusal:
        return self.reserve_sync(lines, amount_usd, ttl_s)

    # `reserve_sync` and `settle_sync` run on every request with a budget: they do the counters'
    # steps (`BudgetCounter.floor`, `hold`, `drop`; `usd_units`) in line, each function call
    # being a fair share of their cost on a busy machine.

    def reserve_sync(
        self, lines: Sequence[BudgetLine], amount_usd: float, ttl_s: float
    ) -> Reservation | BudgetRefusal:
        amount = round(amount_usd * NANO_PER_USD)
        budgets = self._budgets
        with self._lock:
            now = self._clock()
            self._tidy(now)
            counters = []
            for line in lines:
                entry = budgets.get(line.key)
                counter = entry[0] if entry is not None else self._counter(line)
                if now >= counter.next_expiry:
                    counter.purge(now)
                committed = round(line.committed_usd * NANO_PER_USD)
                if committed > counter.spent:
                    counter.spent = committed
                reserved = counter.reserved
                if refuses(round(line.limit_usd * NANO_PER_USD), counter.spent, reserved, amount):
                    return BudgetRefusal(
                        line.key, line.limit_usd, units_usd(counter.spent), units_usd(reserved), amount_usd
                    )
                counters.append(counter)
            rid = str(next(self._ids))
            until = now + ttl_s
            for counter in counters:
                counter.holds[rid] = (amount, until)
                counter.reserved += amount
                if until < counter.next_expiry:
                    counter.next_expiry = until
            return Reservation(rid, tuple(lines), amount_usd)

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        self.settle_sync(reservation, actual_usd)

    def settle_sync(self, reservation: Reservation, actual_usd: float | None) -> None:
        actual = None if actual_usd is None else round(actual_usd * NANO_PER_USD)
        rid = reservation.id
        budgets = self._budgets
        with self._lock:
            for line in reservation.lines:
                entry = budgets.get(line.key)
                counter = entry[0] if entry is not None else self._counter(line)
                held = counter.holds.pop(rid, None)
                if held is not None:
                    counter.reserved -= held[0]
                if actual is not None:
                    committed = round(line.committed_usd * NANO_PER_USD)
                    if committed > counter.spent:
                        counter.spent = committed
                    counter.spent += actual

    async def release(self, reservation: Reservation) -> None:
        self.settle_sync(reservation, None)

    async def figures(self, lines: Sequence[BudgetLine]) -> list[tuple[float, float]]:
        with self._lock:
            now = self._clock()
            out = []
            for line in lines:
                counter = self._counter(line)
                counter.purge(now)
                counter.floor(usd_units(line.committed_usd))
                out.append((units_usd(counter.spent), units_usd(counter.reserved)))
            return out

    def _counter(self, line: BudgetLine) -> BudgetCounter:
        entry = self._budgets.get(line.key)
        if entry is None:
            entry = self._budgets[line.key] = (BudgetCounter(), line.expires_at)
        return entry[0]

    def _tidy(self, now: float) -> None:
        """Now and then, forget full buckets and finished periods (the key set stays bounded)."""
        self._ops += 1
        if self._ops % 1024:
            return
        for key in [k for k, (_, until) in self._budgets.items() if until <= now]:
            del self._budgets[key]
        # A bucket last touched longer ago than a day is full for any window up to a day long.
        for key in [k for k, b in self._buckets.items() if now - b.updated > 86400]:
            del self._buckets[key]
        for key in [k for k, holders in self._leases.items() if not holders]:
            del self._leases[key]

    async def health(self) -> dict[str, object]:
        return {"engine": self.engine, "ok": True}

    async def aclose(self) -> None:
        return None


def open_coordinator(
    url: str | None,
    *,
    prefix: str = DEFAULT_PREFIX,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    on_unavailable: OnUnavailable = "refuse",
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> Coordinator:
    """The engine a configuration names: Redis for a `redis://`, `rediss://` or `unix://` URL,
    else this process."""
    if not url:
        return LocalCoordinator()
    if urlsplit(url).scheme not in ("redis", "rediss", "unix", "valkey", "valkeys"):
        raise ValueError(f"[coordination] url must be a redis:// URL, got scheme {urlsplit(url).scheme!r}")
    if url.startswith("valkey"):
        url = "redis" + url[len("valkey") :]
    from sidecar.infra.redis_coordination import RedisCoordinator

    return RedisCoordinator(
        url,
        prefix=prefix,
        timeout_s=timeout_s,
        on_unavailable=on_unavailable,
        max_connections=max_connections,
    )


def from_config(settings: Coordination) -> Coordinator:
    """The coordinator `[coordination]` in config.toml asks for."""
    return open_coordinator(
        settings.url,
        prefix=settings.key_prefix,
        timeout_s=settings.timeout_s,
        on_unavailable=settings.on_unavailable,
        max_connections=settings.max_connections,
    )
