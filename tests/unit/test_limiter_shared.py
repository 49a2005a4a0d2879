"""A provider's client-side limits shared by several limiters (as by the replicas of a team
gateway) through one coordinator (`services.limits.ProviderGate`; here the in-process one, on
Redis in tests/integration/test_coordination_redis.py and tests/e2e/test_team_e2e.py): together
they keep to what one limiter alone would."""

from __future__ import annotations

import itertools

import anyio
import pytest

from sidecar.core.counters import Lease, Window
from sidecar.core.limiter import Limiter, LimitSettings
from sidecar.errors import SidecarError
from sidecar.infra.coordination import LocalCoordinator
from sidecar.services.limits import ProviderGate


def pair(settings: LimitSettings, coordinator: LocalCoordinator) -> list[Limiter]:
    return [
        Limiter("openai", "OpenAI", settings, ProviderGate(coordinator, "openai", settings, hold_s=60))
        for _ in range(2)
    ]


def test_max_concurrent_holds_across_limiters_and_places_come_free() -> None:
    async def main() -> int:
        limiters = pair(LimitSettings(max_concurrent=2), LocalCoordinator())
        running = peak = done = 0

        async def request(limiter: Limiter) -> None:
            nonlocal running, peak, done
            async with limiter.slot(max_wait_s=10):
                running += 1
                peak = max(peak, running)
                await anyio.sleep(0.05)
                running -= 1
            done += 1

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(request, limiters[i % 2])
        assert done == 8
        return peak

    assert anyio.run(main) == 2


def test_requests_per_minute_is_one_window_for_both() -> None:
    async def main() -> list[str]:
        limiters = pair(LimitSettings(requests_per_minute=3), LocalCoordinator())
        outcomes: list[str] = []
        for i in range(6):
            try:
                async with limiters[i % 2].slot(max_wait_s=1):
                    outcomes.append("ok")
            except SidecarError as exc:
                outcomes.append(exc.kind)
                assert exc.retry_after_s is not None and 15 < exc.retry_after_s <= 20
        return outcomes

    assert anyio.run(main) == ["ok"] * 3 + ["rate_limited"] * 3


def test_min_interval_spaces_requests_of_both() -> None:
    async def main() -> list[float]:
        limiters = pair(LimitSettings(min_interval_s=0.2), LocalCoordinator())
        started: list[float] = []
        for i in range(3):
            async with limiters[i % 2].slot(max_wait_s=5):
                started.append(anyio.current_time())
        return started

    started = anyio.run(main)
    assert all(b - a >= 0.19 for a, b in itertools.pairwise(started)), started


def test_tokens_are_settled_on_the_shared_window_and_places_released() -> None:
    async def main() -> None:
        coordinator = LocalCoordinator()
        settings = LimitSettings(tokens_per_minute=1000, max_concurrent=1)
        one, two = pair(settings, coordinator)
        async with one.slot(tokens=100, max_wait_s=1) as permit:
            permit.settle(700)  # the answer used more than estimated
        # 300 left in the shared window: 400 must wait, 250 fits, through the other limiter.
        with pytest.raises(SidecarError):
            async with two.slot(tokens=400, max_wait_s=0.1):
                pass
        async with two.slot(tokens=250, max_wait_s=0.1):
            pass
        window = Window("provider:openai:tokens", 1000, 60)
        assert not (await coordinator.acquire([(window, 100)])).allowed
        lease = Lease("provider:openai:slots", 1, 60)
        taken = await coordinator.acquire([], lease)  # both places were given back
        assert taken.allowed and taken.lease_id is not None
        assert not (await coordinator.acquire([], lease)).allowed

    anyio.run(main)


def test_a_full_shared_place_ends_as_rate_limited_naming_max_concurrent() -> None:
    async def main() -> None:
        one, two = pair(LimitSettings(max_concurrent=1), LocalCoordinator())
        async with one.slot(max_wait_s=1):
            with pytest.raises(SidecarError) as caught:
                async with two.slot(max_wait_s=0.3):
                    pass
        assert caught.value.kind == "rate_limited" and "max_concurrent" in caught.value.message
        async with two.slot(max_wait_s=0.3):  # free again
            pass

    anyio.run(main)
