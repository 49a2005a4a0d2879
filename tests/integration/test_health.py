"""The health service in process: a slow probe is degraded, and providers declared in use are
probed again every interval in the background (the API the gateway and routers call)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from sidecar.app import build_services
from sidecar.config import Config
from sidecar.infra.keystore import MemoryStore
from sidecar.services.health import HealthService
from tests.fakes.openai_compat import FakeOpenAICompat


@pytest.fixture
def fake() -> Iterator[FakeOpenAICompat]:
    with FakeOpenAICompat("openai") as upstream:
        yield upstream


@pytest.mark.anyio
async def test_slow_probe_is_degraded_and_watched_providers_are_probed_in_background(
    fake: FakeOpenAICompat, tmp_path: Path
) -> None:
    env = {"OPENAI_BASE_URL": fake.api_base, "SIDECAR_HOME": str(tmp_path)}
    services = build_services(Config(), store=MemoryStore({"openai": "sk-test-valid"}), env=env)
    try:
        ticks = iter([0.0, 3.0, 10.0, 10.1])  # the first probe takes 3 s, the second 0.1 s
        health = HealthService(services.providers, clock=lambda: next(ticks), interval_s=0.05)
        slow = await health.check("openai")
        assert slow.status == "degraded" and slow.latency_ms == 3000.0 and slow.error is None
        fast = await health.check("openai")
        assert fast.status == "healthy" and health.status("openai") == "healthy"

        watcher = HealthService(services.providers, interval_s=0.05)
        async with anyio.create_task_group() as tg:
            await tg.start(watcher.run)
            await anyio.sleep(0.2)
            assert len(fake.requests) == 2  # nothing watched: the loop probes nothing
            seen = len(fake.requests)
            watcher.watch("openai")
            # The fake records on its own threads; wait for three more probes (bounded).
            await anyio.to_thread.run_sync(lambda: fake.wait_for_requests(seen + 3, timeout=5))
            assert watcher.latest("openai") is not None
            watcher.unwatch("openai")
            tg.cancel_scope.cancel()
    finally:
        await services.aclose()


@pytest.mark.anyio
async def test_the_breaker_reads_probes(tmp_path: Path) -> None:
    from sidecar.core.breaker import Breakers

    now = [0.0]
    breakers = Breakers(failure_threshold=2, cooldown_s=10, clock=lambda: now[0])
    with FakeOpenAICompat("openai") as fake:
        env = {"OPENAI_BASE_URL": fake.api_base, "SIDECAR_HOME": str(tmp_path)}
        services = build_services(Config(), store=MemoryStore({"openai": "sk-test-valid"}), env=env)
        try:
            health = HealthService(services.providers, breakers=breakers)
            breaker = breakers.get("openai")
            for _ in range(2):  # two real failures open it
                assert breaker.allow()
                breaker.failure("network_error")
            assert breaker.state == "open"
            await health.check("openai")  # open: the probe does not count
            assert breaker.state == "open" and len(fake.requests) == 1
            now[0] = 11.0  # cool-down over: the probe is the half-open trial, and it succeeds
            assert breaker.state == "half_open"
            report = await health.check("openai")
            assert report.status == "healthy" and breaker.state == "closed"
            fake.stop()
            # Nothing listening any more: failed probes count against it and open it again.
            for _ in range(2):
                report = await health.check("openai")
                assert report.status == "unhealthy" and report.error is not None
                assert report.error.kind == "network_error"
            assert breaker.state == "open"
        finally:
            await services.aclose()
