"""Client-side limits: the bucket arithmetic with explicit times, then the waiting, on a real event loop."""

from __future__ import annotations

import time

import anyio
import anyio.lowlevel
import pytest

from sidecar.core.limiter import Limiter, LimitSettings, LimitState, TokenBucket
from sidecar.errors import SidecarError

# -- pure arithmetic -------------------------------------------------------------------------------


def test_bucket_starts_full_and_refills_continuously() -> None:
    bucket = TokenBucket(60, now=0.0)  # one a second
    assert bucket.available(0.0) == 60
    for _ in range(60):
        assert bucket.wait_s(1, 0.0) == 0
        bucket.take(1, 0.0)
    assert bucket.wait_s(1, 0.0) == pytest.approx(1.0)
    assert bucket.wait_s(1, 0.5) == pytest.approx(0.5)
    assert bucket.available(10.0) == pytest.approx(10.0)
    assert bucket.available(1000.0) == 60  # never over capacity


def test_an_amount_over_capacity_waits_for_a_full_bucket_instead_of_forever() -> None:
    bucket = TokenBucket(1000, now=0.0)
    assert bucket.wait_s(5000, 0.0) == 0
    bucket.take(5000, 0.0)
    assert bucket.available(0.0) == 0
    assert bucket.wait_s(5000, 0.0) == pytest.approx(60.0)


def test_bucket_adjust_charges_and_refunds() -> None:
    bucket = TokenBucket(600, now=0.0)  # 10 a second
    bucket.take(100, 0.0)
    bucket.adjust(200, 0.0)  # the answer was bigger than estimated
    assert bucket.available(0.0) == 300
    bucket.adjust(-1000, 0.0)  # refund, capped at capacity
    assert bucket.available(0.0) == 600
    bucket.adjust(700, 0.0)  # a debt
    assert bucket.available(0.0) == -100
    assert bucket.wait_s(1, 0.0) == pytest.approx(10.1)


def test_min_interval_spaces_requests() -> None:
    state = LimitState(LimitSettings(min_interval_s=2.0), now=0.0)
    assert state.delay_s(0, 0.0) == 0
    state.start(0, 0.0)
    state.finish()
    assert state.delay_s(0, 0.5) == pytest.approx(1.5)
    assert state.delay_s(0, 2.0) == 0


def test_requests_per_minute() -> None:
    state = LimitState(LimitSettings(requests_per_minute=2), now=0.0)
    state.start(0, 0.0)
    state.start(0, 0.0)
    assert state.delay_s(0, 0.0) == pytest.approx(30.0)
    assert state.delay_s(0, 20.0) == pytest.approx(10.0)


def test_tokens_per_minute_uses_the_estimate_and_settles_on_the_real_count() -> None:
    state = LimitState(LimitSettings(tokens_per_minute=6000), now=0.0)  # 100 a second
    assert state.delay_s(4000, 0.0) == 0
    state.start(4000, 0.0)
    assert state.delay_s(4000, 0.0) == pytest.approx(20.0)
    state.settle(estimated=4000, actual=1000, now=0.0)  # the request was smaller
    assert state.delay_s(4000, 0.0) == 0
    assert state.delay_s(0, 0.0) == 0  # no tokens needed: no token wait


def test_the_longest_wait_wins_and_concurrency_is_separate() -> None:
    settings = LimitSettings(max_concurrent=1, min_interval_s=1.0, requests_per_minute=60)
    state = LimitState(settings, now=0.0)
    assert not state.full
    state.start(0, 0.0)
    assert state.full
    assert state.in_flight == 1
    assert state.delay_s(0, 0.0) == pytest.approx(1.0)
    state.finish()
    assert not state.full
    state.finish()
    assert state.in_flight == 0


def test_settings_any() -> None:
    assert not LimitSettings().any
    assert LimitSettings(max_concurrent=1).any


# -- waiting (real event loop, short times) ------------------------------------------------------


def limiter(**kw: float) -> Limiter:
    return Limiter("openai", "OpenAI", LimitSettings(**kw))  # type: ignore[arg-type]


def test_max_concurrent_queues_in_order() -> None:
    # Each step waits for the tasks to be blocked, not for a time: on a loaded machine a sleep
    # meant to leave "a" holding its place could outlast "a" itself.
    order: list[str] = []

    async def main() -> None:
        lim = limiter(max_concurrent=1)
        release_a = anyio.Event()

        async def job(name: str, until: anyio.Event | None) -> None:
            async with lim.slot(max_wait_s=5):
                order.append(f"start {name}")
                if until is not None:
                    await until.wait()
                await anyio.lowlevel.checkpoint()
                order.append(f"end {name}")

        async with anyio.create_task_group() as tg:
            tg.start_soon(job, "a", release_a)
            await anyio.wait_all_tasks_blocked()
            for name in ("b", "c", "d"):
                tg.start_soon(job, name, None)
                await anyio.wait_all_tasks_blocked()
            assert order == ["start a"]
            assert lim.waiting == 3
            assert lim.state.in_flight == 1
            release_a.set()

    anyio.run(main)
    assert order == ["start a", "end a", "start b", "end b", "start c", "end c", "start d", "end d"]


def test_a_waiting_request_can_be_cancelled_and_frees_its_place() -> None:
    async def main() -> None:
        lim = limiter(max_concurrent=1)
        entered: list[str] = []
        async with lim.slot(max_wait_s=5):
            with anyio.move_on_after(0.05) as scope:
                async with lim.slot(max_wait_s=5):
                    entered.append("second")
            assert scope.cancelled_caught
            assert lim.waiting == 0
        assert entered == []
        assert lim.state.in_flight == 0
        async with lim.slot(max_wait_s=0.1):  # the line is free again
            entered.append("third")
        assert entered == ["third"]

    anyio.run(main)


def test_a_known_wait_longer_than_the_limit_fails_at_once() -> None:
    async def main() -> None:
        lim = limiter(requests_per_minute=1)
        async with lim.slot(max_wait_s=1):
            pass
        t0 = time.monotonic()
        with pytest.raises(SidecarError) as info:
            async with lim.slot(max_wait_s=20):
                pass
        assert time.monotonic() - t0 < 5  # at once, not after waiting out its 20 s
        err = info.value
        assert err.kind == "rate_limited"
        assert err.provider == "openai"
        assert err.retry_after_s == pytest.approx(60, abs=0.5)
        assert "OpenAI" in err.message and "config.toml" in err.message

    anyio.run(main)


def test_a_short_wait_is_waited_out() -> None:
    async def main() -> None:
        # An interval of 0.5 s keeps "no wait" and "one interval" apart on a slow machine.
        lim = limiter(min_interval_s=0.5)
        async with lim.slot(max_wait_s=5) as first:
            assert first.waited_s < 0.25
        async with lim.slot(max_wait_s=5) as second:
            assert 0.45 < second.waited_s < 2.5

    anyio.run(main)


def test_a_full_slot_that_never_frees_ends_as_rate_limited_at_the_limit() -> None:
    async def main() -> None:
        lim = limiter(max_concurrent=1)
        async with lim.slot():
            t0 = time.monotonic()
            with pytest.raises(SidecarError) as info:
                async with lim.slot(max_wait_s=0.3):
                    pass
            assert 0.28 < time.monotonic() - t0 < 3  # at its limit, not never
        assert info.value.kind == "rate_limited"
        assert info.value.retry_after_s is not None
        assert "max_concurrent = 1" in info.value.message
        assert lim.waiting == 0

    anyio.run(main)


def test_available_reports_the_buckets() -> None:
    async def main() -> None:
        lim = limiter(requests_per_minute=10, tokens_per_minute=1000)
        async with lim.slot(tokens=400):
            requests, tokens = lim.available()
            assert requests == pytest.approx(9, abs=0.01)
            assert tokens == pytest.approx(600, abs=1)
        assert limiter(max_concurrent=2).available() == (None, None)

    anyio.run(main)
