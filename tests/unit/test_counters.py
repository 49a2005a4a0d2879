"""The shared-counter arithmetic (core.counters) and the in-process coordinator built on it:
token-bucket windows taken all or nothing, budget reservations that count what is still running,
expire, and never let the sum pass a limit."""

from __future__ import annotations

import datetime as dt

import anyio
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from sidecar.core import budget as policy
from sidecar.core.counters import (
    Bucket,
    BudgetLine,
    BudgetRefusal,
    Lease,
    Reservation,
    Window,
    admit,
    charge,
    refuses,
    usd_units,
)
from sidecar.infra.coordination import LocalCoordinator, open_coordinator
from sidecar.infra.redis_coordination import describe_url


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_window_passes_its_limit_then_says_when_the_next_fits() -> None:
    w = Window("k", limit=10, window_s=60)
    bucket = Bucket.full(w, 0.0)
    assert all(admit([bucket], [(w, 1)], 0.0).allowed for _ in range(10))
    refused = admit([bucket], [(w, 1)], 0.0)
    assert not refused.allowed and refused.key == "k"
    assert refused.retry_after_s == pytest.approx(6.0)
    assert admit([bucket], [(w, 1)], 6.0).allowed
    assert not admit([bucket], [(w, 1)], 6.0).allowed


def test_windows_are_taken_all_or_nothing() -> None:
    roomy, tight = Window("roomy", 100, 60), Window("tight", 1, 60)
    buckets = [Bucket.full(roomy, 0.0), Bucket.full(tight, 0.0)]
    assert admit(buckets, [(roomy, 1), (tight, 1)], 0.0).allowed
    refused = admit(buckets, [(roomy, 1), (tight, 1)], 0.0)
    assert refused.key == "tight"
    assert buckets[0].level == 99  # the roomy window was not charged for the refused request


def test_a_charge_above_the_limit_needs_a_full_window_and_adjust_can_leave_a_debt() -> None:
    w = Window("tokens", 1000, 60)
    bucket = Bucket.full(w, 0.0)
    assert admit([bucket], [(w, 5000)], 0.0).allowed
    assert bucket.level == 0
    charge(bucket, w, 500, 0.0)  # the answer was longer than estimated
    assert bucket.level == -500
    assert admit([bucket], [(w, 1)], 0.0).retry_after_s == pytest.approx(30.06)
    charge(bucket, w, -2000, 0.0)  # a refund never overfills
    assert bucket.level == 1000


def test_money_is_counted_exactly() -> None:
    assert usd_units(0.1) * 10 == usd_units(1.0)
    spent = 0
    allowed = 0
    for _ in range(200):
        if not refuses(usd_units(1.0), spent, 0, usd_units(0.01)):
            spent += usd_units(0.01)
            allowed += 1
    assert allowed == 100


@given(
    st.floats(0.01, 100),
    st.floats(0, 120),
    st.floats(0, 10),
)
def test_the_reservation_rule_is_the_budget_rule_when_nothing_is_reserved(
    limit: float, spent: float, estimate: float
) -> None:
    budget = policy.Budget(daily_usd=round(limit, 6))
    now = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
    spent, estimate = round(spent, 6), round(estimate, 6)
    # Floats round 0.1 + 0.2 above 0.3; nano-dollar integers don't. Away from that edge they agree.
    assume(abs(spent + estimate - round(limit, 6)) > 1e-9)
    expected = policy.check_spend(budget, "day", now, spent, estimate) is not None
    assert refuses(usd_units(round(limit, 6)), usd_units(spent), 0, usd_units(estimate)) == expected


def line(limit: float, committed: float = 0.0, key: str = "budget:*:day:2026-12-01") -> BudgetLine:
    return BudgetLine(key, limit, committed, expires_at=2_000_000.0)


def test_reservations_count_until_settled_or_released() -> None:
    async def main() -> None:
        clock = Clock()
        coord = LocalCoordinator(clock)
        lines = [line(1.0)]
        held = [await coord.reserve(lines, 0.3, ttl_s=60) for _ in range(4)]
        assert [isinstance(r, Reservation) for r in held] == [True, True, True, False]
        refusal = held[3]
        assert isinstance(refusal, BudgetRefusal)
        assert refusal.reserved_usd == pytest.approx(0.9) and refusal.spent_usd == 0
        first = held[0]
        assert isinstance(first, Reservation)
        await coord.settle(first, 0.05)  # cheaper than estimated: the rest is free again
        assert await coord.figures(lines) == [(pytest.approx(0.05), pytest.approx(0.6))]
        assert isinstance(await coord.reserve(lines, 0.3, ttl_s=60), Reservation)
        second = held[1]
        assert isinstance(second, Reservation)
        await coord.release(second)
        assert (await coord.figures(lines))[0][1] == pytest.approx(0.6)

    anyio.run(main)


def test_a_reservation_lapses_after_its_ttl() -> None:
    async def main() -> None:
        clock = Clock()
        coord = LocalCoordinator(clock)
        lines = [line(1.0)]
        assert isinstance(await coord.reserve(lines, 1.0, ttl_s=30), Reservation)
        assert isinstance(await coord.reserve(lines, 0.01, ttl_s=30), BudgetRefusal)
        clock.now += 30
        assert isinstance(await coord.reserve(lines, 0.01, ttl_s=30), Reservation)

    anyio.run(main)


def test_holds_lapse_one_by_one_whatever_was_settled_before_them() -> None:
    """A counter keeps the sum of its holds and looks for lapsed ones only once the earliest may
    have lapsed: holds of different lengths, the earliest settled first, still lapse each at its
    own time and leave exactly the others held."""

    async def main() -> None:
        clock = Clock()
        coord = LocalCoordinator(clock)
        lines = [line(100.0)]
        short = await coord.reserve(lines, 1.0, ttl_s=10)
        middle = await coord.reserve(lines, 2.0, ttl_s=20)
        await coord.reserve(lines, 4.0, ttl_s=30)
        assert isinstance(short, Reservation) and isinstance(middle, Reservation)
        await coord.settle(short, 0.5)
        assert await coord.figures(lines) == [(pytest.approx(0.5), pytest.approx(6.0))]
        clock.now += 15  # past the settled one's expiry: nothing else lapses
        assert await coord.figures(lines) == [(pytest.approx(0.5), pytest.approx(6.0))]
        clock.now += 10  # past the middle one's
        assert await coord.figures(lines) == [(pytest.approx(0.5), pytest.approx(4.0))]
        await coord.release(middle)  # already lapsed: releasing it again changes nothing
        assert await coord.figures(lines) == [(pytest.approx(0.5), pytest.approx(4.0))]
        clock.now += 10
        assert await coord.figures(lines) == [(pytest.approx(0.5), 0.0)]

    anyio.run(main)


def test_the_ledger_figure_is_a_floor_and_every_line_must_have_room() -> None:
    async def main() -> None:
        coord = LocalCoordinator(Clock())
        day = line(1.0, committed=0.95)
        month = line(10.0, committed=5.0, key="budget:*:month:2026-12")
        refusal = await coord.reserve([month, day], 0.1, ttl_s=60)
        assert isinstance(refusal, BudgetRefusal)
        assert refusal.key == day.key and refusal.spent_usd == pytest.approx(0.95)
        # Nothing was held on the month line for the refused request.
        assert await coord.figures([month]) == [(pytest.approx(5.0), 0.0)]

    anyio.run(main)


def test_without_a_url_the_coordinator_is_this_process() -> None:
    assert open_coordinator(None).engine == "local"
    with pytest.raises(ValueError, match="redis://"):
        open_coordinator("http://127.0.0.1:6379")


def test_a_redis_url_is_described_without_its_password() -> None:
    assert describe_url("redis://:hunter2@cache.internal:6380/3") == "cache.internal:6380"
    assert describe_url("rediss://user:hunter2@cache.internal/0") == "cache.internal:6379"


def test_a_lease_counts_holders_until_released_or_lapsed() -> None:
    async def main() -> None:
        clock = Clock()
        coord = LocalCoordinator(clock)
        lease = Lease("provider:openai:slots", 2, ttl_s=30)
        window = Window("provider:openai:requests", 10, 60)
        first = await coord.acquire([(window, 1)], lease)
        second = await coord.acquire([(window, 1)], lease)
        assert first.allowed and second.allowed and first.lease_id != second.lease_id
        full = await coord.acquire([(window, 1)], lease)
        assert not full.allowed and full.key == lease.key and full.retry_after_s == 0.0
        bucket = coord._buckets[window.key]
        assert bucket.level == 8  # the refused request took nothing from the window
        assert first.lease_id is not None
        await coord.release_lease(lease, first.lease_id)
        assert (await coord.acquire([], lease)).allowed
        clock.now += 31  # both holders lapse (a killed process)
        assert (await coord.acquire([], lease)).allowed

    anyio.run(main)
