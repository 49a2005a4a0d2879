"""The coordination seam on a real Redis: two replicas (separate connection pools, and separate
processes) hammering one limit or one budget never pass it together; reservations of a process
that died lapse by their TTL; a stopped Redis gives `coordination_unavailable` (or local counters
when configured so) and a restarted one is used again."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import anyio
import pytest

from sidecar.core.counters import Admission, BudgetLine, BudgetRefusal, Lease, Reservation, Window
from sidecar.core.limiter import Limiter, LimitSettings
from sidecar.errors import SidecarError
from sidecar.infra.coordination import LocalCoordinator, open_coordinator
from sidecar.infra.redis_coordination import RedisCoordinator
from sidecar.services.limits import ProviderGate
from tests.conftest import ServerFactory

FAR = time.time() + 7 * 86400  # the budget period's end, for the keys' expiry


def day_line(limit: float, committed: float = 0.0) -> BudgetLine:
    return BudgetLine("budget:*:day:test", limit, committed, FAR)


async def _pair(url: str, **kwargs: object) -> tuple[RedisCoordinator, RedisCoordinator]:
    one, two = open_coordinator(url, **kwargs), open_coordinator(url, **kwargs)  # type: ignore[arg-type]
    assert isinstance(one, RedisCoordinator) and isinstance(two, RedisCoordinator)
    assert one.client.connection_pool is not two.client.connection_pool
    return one, two


def test_two_replicas_share_one_rate_window(redis_url: str) -> None:
    async def main() -> list[Admission]:
        one, two = await _pair(redis_url)
        window = Window("router:team:requests", limit=50, window_s=3600)
        results: list[Admission] = []

        async def hit(coord: RedisCoordinator) -> None:
            results.append(await coord.acquire([(window, 1)]))

        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(hit, one if i % 2 else two)
        await one.aclose()
        await two.aclose()
        return results

    results = anyio.run(main)
    allowed = [r for r in results if r.allowed]
    assert len(results) == 200 and len(allowed) == 50
    # The next slot comes 72 s after the window's last use (3600 s / 50); refusals say about that.
    assert all(
        r.key == "router:team:requests" and 0 < r.retry_after_s <= 72.0 for r in results if not r.allowed
    )


def test_windows_are_charged_all_or_nothing_and_adjusted(redis_url: str) -> None:
    async def main() -> None:
        coord = open_coordinator(redis_url)
        tokens, requests = Window("key:a:tokens", 1000, 60), Window("key:a:requests", 1, 60)
        assert (await coord.acquire([(tokens, 400), (requests, 1)])).allowed
        refused = await coord.acquire([(tokens, 400), (requests, 1)])
        assert not refused.allowed and refused.key == "key:a:requests"
        assert (await coord.acquire([(tokens, 600)])).allowed  # the refused one took nothing
        await coord.adjust([(tokens, 300)])  # answers longer than estimated: a debt
        late = await coord.acquire([(tokens, 1)])
        assert not late.allowed and late.retry_after_s == pytest.approx(18.06, abs=0.5)
        await coord.adjust([(tokens, -1000)])  # a refund: back to about 700
        assert not (await coord.acquire([(tokens, 1000)])).allowed
        assert (await coord.acquire([(tokens, 690)])).allowed
        await coord.aclose()

    anyio.run(main)


LEASE_TTL_S = 6.0


def test_two_replicas_share_one_lease_with_their_windows(redis_url: str) -> None:
    """A provider's `max_concurrent` across replicas: 100 concurrent asks through two pools, 3
    places; a refused ask takes nothing from the windows; a released place is free at once, a
    place never released (a killed replica) lapses by its TTL."""

    async def main() -> None:
        one, two = await _pair(redis_url)
        lease = Lease("provider:openai:slots", 3, ttl_s=LEASE_TTL_S)
        # Refilling by 0.28 a second: the burst may take a loaded machine 300 ms and the level
        # still shows exactly what was charged (at 1000 a minute, 6 ms of refill broke the check).
        window = Window("provider:openai:requests", 1000, 3600)
        results: list[Admission] = []

        async def ask(coord: RedisCoordinator) -> None:
            results.append(await coord.acquire([(window, 1)], lease))

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(ask, one if i % 2 else two)
        granted_by = time.monotonic()
        assert granted_by - started < LEASE_TTL_S  # else a place could lapse mid-burst
        held = [r for r in results if r.allowed]
        assert len(held) == 3 and len({r.lease_id for r in held}) == 3
        assert all(r.key == lease.key and r.retry_after_s == 0 for r in results if not r.allowed)
        # Only the three admitted asks were charged on the window.
        level = await one.client.hget(one.prefix + window.key, "level")
        assert float(level) == pytest.approx(997, abs=0.1)
        assert held[0].lease_id is not None
        await two.release_lease(lease, held[0].lease_id)
        assert (await one.acquire([], lease)).allowed
        assert not (await two.acquire([], lease)).allowed
        await anyio.sleep(max(granted_by + LEASE_TTL_S + 0.1 - time.monotonic(), 0))
        # Nobody released the other two: they have lapsed.
        assert (await two.acquire([], lease)).allowed
        await one.aclose()
        await two.aclose()

    anyio.run(main)


class CountingLocal(LocalCoordinator):
    """This process's counters, counting the renewals asked of them."""

    renewals = 0

    async def renew_lease(self, lease: Lease, lease_id: str) -> bool:
        self.renewals += 1
        return await super().renew_lease(lease, lease_id)


class CountingRedis(RedisCoordinator):
    """Redis, counting the renewals asked of it."""

    renewals = 0

    async def renew_lease(self, lease: Lease, lease_id: str) -> bool:
        self.renewals += 1
        return await super().renew_lease(lease, lease_id)


@pytest.mark.parametrize("engine", ["redis", "local"])
def test_a_place_held_past_its_ttl_is_still_counted_until_released(
    engine: str, request: pytest.FixtureRequest
) -> None:
    """A request that lasts longer than its `max_concurrent` place's TTL (`total_s` + 10 s) keeps
    the place: its replica renews it (every third of the TTL), so another replica is still
    refused; once released the place is free at once and no renewal follows."""
    ttl = 1.2
    settings = LimitSettings(max_concurrent=1)

    async def main() -> None:
        mine: CountingLocal | CountingRedis
        if engine == "redis":
            url = request.getfixturevalue("redis_url")
            mine, other = CountingRedis(url), open_coordinator(url)
        else:
            mine = CountingLocal()
            other = mine  # one process's counters: its other requests
        gate = ProviderGate(mine, "openai", settings, ttl)
        theirs = ProviderGate(other, "openai", settings, ttl)
        limiter = Limiter("openai", "OpenAI", settings, gate)
        async with limiter.slot(max_wait_s=1):
            await anyio.sleep(ttl * 2.5)  # the place would have lapsed twice over
            assert not (await theirs.enter(0)).admitted, "a held place lapsed"
            assert mine.renewals >= 2 and gate.renewing == 1
        assert gate.renewing == 0
        answer = await theirs.enter(0)  # released: free at once
        assert answer.admitted
        await theirs.leave(answer.handle, 0, None)
        renewed = mine.renewals
        await anyio.sleep(ttl)  # three renewal periods
        assert mine.renewals == renewed, "renewed after its release"
        await mine.aclose()
        await other.aclose()

    anyio.run(main)


def test_a_renewal_takes_back_no_place_that_was_released_or_lapsed(redis_url: str) -> None:
    async def main() -> None:
        for coord in (open_coordinator(redis_url), LocalCoordinator()):
            # A lease of 1 s: renewed right after it is taken, which a stalled slow machine could
            # otherwise reach after a shorter lease had lapsed.
            lease = Lease("provider:openai:slots", 1, ttl_s=1.0)
            taken = await coord.acquire([], lease)
            assert taken.allowed and taken.lease_id is not None
            assert await coord.renew_lease(lease, taken.lease_id)
            await coord.release_lease(lease, taken.lease_id)
            assert not await coord.renew_lease(lease, taken.lease_id)
            again = await coord.acquire([], lease)
            assert again.allowed and again.lease_id is not None
            await anyio.sleep(1.2)  # lapsed
            assert not await coord.renew_lease(lease, again.lease_id)
            assert (await coord.acquire([], lease)).allowed  # the lapsed place was not taken back
            await coord.aclose()

    anyio.run(main)


def test_two_replicas_never_reserve_past_a_budget(redis_url: str) -> None:
    async def main() -> None:
        one, two = await _pair(redis_url)
        lines = [day_line(1.0), BudgetLine("budget:*:month:test", 100.0, 0.0, FAR)]

        async def burst(held: list[Reservation]) -> None:
            async def request(coord: RedisCoordinator) -> None:
                got = await coord.reserve(lines, 0.01, ttl_s=60)
                if isinstance(got, Reservation):
                    held.append(got)
                else:
                    assert got.key == "budget:*:day:test" and got.limit_usd == 1.0

            async with anyio.create_task_group() as tg:
                for i in range(200):
                    tg.start_soon(request, one if i % 2 else two)

        # 200 concurrent requests split between two replicas against $1.00 at $0.01 each.
        first: list[Reservation] = []
        await burst(first)
        assert len(first) == 100
        assert await one.figures(lines) == [(0.0, pytest.approx(1.0)), (0.0, pytest.approx(1.0))]

        # 60 finish (some cheaper than estimated), 40 fail before sending and release their hold.
        async with anyio.create_task_group() as tg:
            for i, held in enumerate(first):
                coord = one if i % 2 else two
                if i < 30:
                    tg.start_soon(coord.settle, held, 0.01)
                elif i < 60:
                    tg.start_soon(coord.settle, held, 0.005)
                else:
                    tg.start_soon(coord.release, held)
        (spent, reserved), (month_spent, month_reserved) = await two.figures(lines)
        assert (spent, reserved) == (pytest.approx(0.45), 0.0)
        assert (month_spent, month_reserved) == (pytest.approx(0.45), 0.0)

        # The room left is $0.55: exactly 55 of the next 200 pass, whichever replica they reach.
        second: list[Reservation] = []
        await burst(second)
        assert len(second) == 55
        await one.aclose()
        await two.aclose()

    anyio.run(main)


_REPLICA = """
import json, sys, time, anyio
from sidecar.core.counters import BudgetLine, Reservation
from sidecar.infra.coordination import open_coordinator

url, far, ttl = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
async def main():
    coord = open_coordinator(url)
    lines = [BudgetLine("budget:team:day:test", 0.5, 0.0, far)]
    got = []
    async def one():
        r = await coord.reserve(lines, 0.01, ttl_s=ttl)
        if isinstance(r, Reservation):
            got.append(r.id)
    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(one)
    print(json.dumps(len(got)), flush=True)
    await anyio.sleep(600)  # mid-request, holding everything, until killed
anyio.run(main)
"""
HOLD_TTL_S = 4.0


def test_two_processes_share_a_budget_and_a_killed_ones_reservations_lapse(redis_url: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _REPLICA, redis_url, str(FAR), str(HOLD_TTL_S)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        assert procs[0].stdout is not None and procs[1].stdout is not None
        # Two processes, 100 concurrent reservations each, against $0.50 at $0.01: 50 in all.
        held = [json.loads(proc.stdout.readline()) for proc in procs]
        all_held_at = time.monotonic()  # every hold was made before its process printed
        assert sum(held) == 50
    finally:
        for proc in procs:
            proc.kill()  # kill -9: no release, no settle
            proc.wait(10)

    async def probe() -> Reservation | BudgetRefusal:
        coord = open_coordinator(redis_url)
        try:
            return await coord.reserve([BudgetLine("budget:team:day:test", 0.5, 0.0, FAR)], 0.01, ttl_s=5)
        finally:
            await coord.aclose()

    refused = anyio.run(probe)  # the dead processes' holds still count...
    assert isinstance(refused, BudgetRefusal) and refused.reserved_usd == pytest.approx(0.5)
    time.sleep(max(all_held_at + HOLD_TTL_S + 0.1 - time.monotonic(), 0))
    assert isinstance(anyio.run(probe), Reservation)  # ...until their TTL has passed


def test_redis_stopped_mid_use_refuses_then_recovers(server_factory: ServerFactory) -> None:
    server = server_factory.redis()

    async def main() -> None:
        coord = open_coordinator(server.url(), timeout_s=1.0)
        window = Window("provider:openai:requests", 100, 60)
        assert (await coord.acquire([(window, 1)])).allowed
        held = await coord.reserve([day_line(1.0)], 0.2, ttl_s=60)
        assert isinstance(held, Reservation)
        server.stop()
        started = time.monotonic()
        with pytest.raises(SidecarError) as refused:
            await coord.acquire([(window, 1)])
        assert refused.value.kind == "coordination_unavailable"
        assert refused.value.retry_after_s == 5.0 and "127.0.0.1" in refused.value.message
        with pytest.raises(SidecarError, match="cannot be reached"):
            await coord.reserve([day_line(1.0)], 0.2, ttl_s=60)
        await coord.settle(held, 0.1)  # a finished request is never failed afterwards
        assert time.monotonic() - started < 20  # bounded: short timeouts, one retry, no backoff
        assert (await coord.health())["ok"] is False
        server.start()  # same port; no persistence, so the counters start again from the floor
        assert (await coord.health())["ok"] is True
        assert (await coord.acquire([(window, 1)])).allowed
        refusal = await coord.reserve([day_line(1.0, committed=0.95)], 0.1, ttl_s=60)
        assert isinstance(refusal, BudgetRefusal) and refusal.spent_usd == pytest.approx(0.95)
        await coord.aclose()

    anyio.run(main)


def test_redis_stopped_with_local_fallback_limits_on_its_own(server_factory: ServerFactory) -> None:
    server = server_factory.redis()

    async def main() -> None:
        coord = open_coordinator(server.url(), timeout_s=1.0, on_unavailable="local")
        window = Window("key:alice:requests", 2, 3600)
        server.stop()
        results = [(await coord.acquire([(window, 1)])).allowed for _ in range(3)]
        assert results == [True, True, False]  # this replica's own window, same limit
        got = await coord.reserve([day_line(1.0)], 0.6, ttl_s=60)
        assert isinstance(got, Reservation)
        assert isinstance(await coord.reserve([day_line(1.0)], 0.6, ttl_s=60), BudgetRefusal)
        await coord.aclose()

    anyio.run(main)


def test_a_place_taken_locally_while_redis_was_away_is_released_once_it_is_back(
    server_factory: ServerFactory,
) -> None:
    server = server_factory.redis()

    async def main() -> None:
        coord = open_coordinator(server.url(), timeout_s=1.0, on_unavailable="local")
        lease = Lease("provider:openai:slots", 1, ttl_s=3600)
        server.stop()
        taken = await coord.acquire([], lease)
        assert taken.allowed and taken.lease_id is not None
        assert not (await coord.acquire([], lease)).allowed  # the one local place is held
        server.start()
        await coord.release_lease(lease, taken.lease_id)
        server.stop()  # back on local places: the released one is free again
        assert (await coord.acquire([], lease)).allowed
        await coord.aclose()

    anyio.run(main)


def test_counters_survive_a_restart_of_a_persistent_redis(server_factory: ServerFactory) -> None:
    server = server_factory.redis(appendonly=True)

    async def spend(lines: Sequence[BudgetLine]) -> Reservation | BudgetRefusal:
        coord = open_coordinator(server.url())
        try:
            got = await coord.reserve(lines, 0.9, ttl_s=60)
            if isinstance(got, Reservation):
                await coord.settle(got, 0.9)
            return got
        finally:
            await coord.aclose()

    lines = [day_line(1.0)]
    assert isinstance(anyio.run(spend, lines), Reservation)
    server.restart()
    # The ledger has committed nothing yet (floor 0), but Redis kept the settled $0.90.
    refusal = anyio.run(spend, lines)
    assert isinstance(refusal, BudgetRefusal) and refusal.spent_usd == pytest.approx(0.9)


def test_a_restart_under_load_gives_answers_or_coordination_unavailable_only(
    server_factory: ServerFactory,
) -> None:
    server = server_factory.redis()
    outcomes: dict[str, int] = {}

    async def main() -> None:
        coord = open_coordinator(server.url(), timeout_s=1.0)
        window = Window("provider:openai:requests", 1e9, 60)
        stop = anyio.Event()

        async def load(worker: int) -> None:
            while not stop.is_set():
                try:
                    got = await coord.reserve([day_line(1e6)], 0.001, ttl_s=60)
                    assert isinstance(got, Reservation)
                    assert (await coord.acquire([(window, 1)])).allowed
                    await coord.settle(got, 0.001)
                    outcome = "ok"
                except SidecarError as exc:
                    outcome = exc.kind
                    await anyio.sleep(0.05)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1

        async def until(seen: Callable[[], bool]) -> None:
            """Wait for an outcome rather than for a time a slow machine may not keep (bounded)."""
            for _ in range(1500):  # 30 s at most
                if seen():
                    return
                await anyio.sleep(0.02)

        async with anyio.create_task_group() as tg:
            for worker in range(16):
                tg.start_soon(load, worker)
            await until(lambda: outcomes.get("ok", 0) > 0)
            await anyio.to_thread.run_sync(server.stop)
            await until(lambda: outcomes.get("coordination_unavailable", 0) > 0)  # the outage is met
            await anyio.to_thread.run_sync(server.start)
            before = outcomes.get("ok", 0)
            await until(lambda: outcomes.get("ok", 0) > before)
            stop.set()
        assert outcomes.get("ok", 0) > before  # served again once Redis is back
        await coord.aclose()

    anyio.run(main)
    assert set(outcomes) == {"ok", "coordination_unavailable"}, outcomes
