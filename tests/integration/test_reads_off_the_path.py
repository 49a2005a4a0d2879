"""What a gateway request needs from storage (the client keys, the budgets, the spend they are
checked against, a client key's and a router's included) is read again in the background while
requests come, so a request after a pause
longer than their time to live does not wait for the database; a change made elsewhere is still
seen within that time; and when a key was last used is written aside, not by the request, and at
the latest when the sidecar stops."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from sidecar.app import Services, build_services
from sidecar.config import Config, RouterLimits, RouterSettings
from sidecar.gateway import connection
from sidecar.infra.keystore import MemoryStore
from sidecar.infra.ledger import TALLY_TTL_S
from sidecar.services.budget_book import BUDGETS_TTL_S
from sidecar.services.client_keys import TABLE_TTL_S
from sidecar.wire.gateway import ClientKeyCreateParams, GatewayStartParams
from sidecar.wire.routers import RouterSetParams
from sidecar.wire.usage import SetBudgetParams
from tests.fakes.openai_compat import FakeOpenAICompat

pytestmark = pytest.mark.anyio

BODY = {"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}
PAUSE_S = max(TABLE_TTL_S, BUDGETS_TTL_S) + 0.5


class Ctx:
    request_id = "test"

    async def notify(self, method: str, params: Any) -> None:
        return None


class Reads:
    """Which storage reads ran on a gateway request's path (its connection in their context),
    and which in the background."""

    def __init__(self) -> None:
        self.on_path: list[str] = []
        self.background: list[str] = []

    def note(self, what: str) -> None:
        (self.on_path if connection.current.get() is not None else self.background).append(what)

    def wrap_async(self, what: str, call: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(*args: Any) -> Any:
            self.note(what)
            return await call(*args)

        return counted

    def wrap_sync(self, what: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any) -> Any:
            self.note(what)  # in a worker thread, in a copy of the caller's context
            return call(*args)

        return counted


@pytest.fixture
def fake() -> Iterator[FakeOpenAICompat]:
    with FakeOpenAICompat("openai") as oa:
        yield oa


@pytest.fixture
async def gateway(tmp_path: Path, fake: FakeOpenAICompat) -> AsyncIterator[tuple[Services, str, str]]:
    env = {"SIDECAR_HOME": str(tmp_path), "OPENAI_BASE_URL": fake.api_base}
    services = build_services(Config(), store=MemoryStore({"openai": "sk-test-valid"}), env=env)
    async with anyio.create_task_group() as tg:
        await services.start_background(tg)
        started = await services.handlers["gateway_start"](GatewayStartParams(port=0), Ctx())
        created = await services.handlers["client_key_create"](ClientKeyCreateParams(name="app"), Ctx())
        yield services, started.url, created.key
        await services.stop_gateway()
        tg.cancel_scope.cancel()
    await services.aclose()


async def test_a_request_after_a_pause_does_not_wait_for_the_database(
    gateway: tuple[Services, str, str],
) -> None:
    services, url, key = gateway
    reads = Reads()
    keys_store = services.client_keys.store
    keys_store.all = reads.wrap_async("client keys", keys_store.all)  # type: ignore[method-assign]
    keys_store.touch = reads.wrap_async("last used", keys_store.touch)  # type: ignore[method-assign]
    ledger = services.usage.budgets.ledger
    ledger.budgets = reads.wrap_sync("budgets", ledger.budgets)  # type: ignore[method-assign]
    headers = {"authorization": f"Bearer {key}"}
    async with httpx2.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        assert (await client.post("/v1/chat/completions", json=BODY)).status_code == 200
        assert reads.on_path == ["budgets"]  # the first request reads them: nothing had before
        reads.on_path.clear()
        for _ in range(2):
            await anyio.sleep(PAUSE_S)
            r = await client.post("/v1/chat/completions", json=BODY)
            assert r.status_code == 200, r.text
    assert reads.on_path == []
    # Both were re-read meanwhile, at least once a time to live.
    assert reads.background.count("client keys") >= 2
    assert reads.background.count("budgets") >= 2
    assert "last used" in reads.background  # the key's first use, written aside


async def test_with_a_budget_the_spend_is_read_again_off_the_path(
    gateway: tuple[Services, str, str],
) -> None:
    services, url, key = gateway
    await services.handlers["set_budget"](SetBudgetParams(daily_usd=100.0), Ctx())
    reads = Reads()
    ledger = services.usage.ledger
    ledger.refresh_spends = reads.wrap_sync("spend", ledger.refresh_spends)  # type: ignore[method-assign]
    ledger.read_period_spends = reads.wrap_sync("spend", ledger.read_period_spends)  # type: ignore[method-assign]
    headers = {"authorization": f"Bearer {key}"}
    async with httpx2.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        assert (await client.post("/v1/chat/completions", json=BODY)).status_code == 200
        assert "spend" in reads.on_path  # the first check reads it: nothing had before
        reads.on_path.clear()
        for _ in range(2):
            await anyio.sleep(TALLY_TTL_S + 0.5)
            r = await client.post("/v1/chat/completions", json=BODY)
            assert r.status_code == 200, r.text
    assert reads.on_path == []
    assert reads.background.count("spend") >= 2


async def test_a_client_keys_and_a_routers_spend_come_from_memory(
    gateway: tuple[Services, str, str],
) -> None:
    """A client key with its own budgets, through a router with a daily limit: after a pause, no
    query of the ledger on the request's path (the spend of each was a sum over the month's rows,
    queried on every request)."""
    services, url, _ = gateway
    created = await services.handlers["client_key_create"](
        ClientKeyCreateParams(name="capped", daily_usd=100.0, monthly_usd=1000.0), Ctx()
    )
    settings = RouterSettings(models=["openai:gpt-4o-mini"], limits=RouterLimits(usd_per_day=100.0))
    await services.handlers["router_set"](RouterSetParams(name="thrifty", settings=settings), Ctx())
    reads = Reads()
    db = services.usage.ledger.db
    db.run_sync = reads.wrap_sync("ledger", db.run_sync)  # type: ignore[method-assign]
    body = {**BODY, "model": "router:thrifty"}
    headers = {"authorization": f"Bearer {created.key}"}
    async with httpx2.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
        assert "ledger" in reads.on_path  # the first check reads the spend: nothing had before
        reads.on_path.clear()
        for _ in range(2):
            await anyio.sleep(max(PAUSE_S, TALLY_TTL_S + 0.5))
            r = await client.post("/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text
    assert reads.on_path == []
    assert reads.background.count("ledger") >= 2
    spent = await services.usage.client_spend("capped")
    assert spent[0] > 0 and spent[0] == pytest.approx(spent[1])  # what the three requests cost


async def test_a_key_deleted_elsewhere_is_refused_within_its_time(
    gateway: tuple[Services, str, str], tmp_path: Path
) -> None:
    _, url, key = gateway
    headers = {"authorization": f"Bearer {key}"}
    async with httpx2.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        assert (await client.post("/v1/chat/completions", json=BODY)).status_code == 200
        with sqlite3.connect(tmp_path / "sidecar.db") as conn:  # another process deletes it
            conn.execute("DELETE FROM client_keys")
        deleted_at = time.monotonic()
        while (r := await client.post("/v1/chat/completions", json=BODY)).status_code == 200:
            assert time.monotonic() - deleted_at < TABLE_TTL_S + 3.0, "a deleted key still works"
            await anyio.sleep(0.1)
        assert r.status_code == 401
        assert time.monotonic() - deleted_at <= TABLE_TTL_S + 3.0


async def test_a_stop_writes_when_a_key_was_last_used(tmp_path: Path) -> None:
    services = build_services(Config(), store=MemoryStore(), env={"SIDECAR_HOME": str(tmp_path)})
    keys = services.client_keys
    created = await keys.create(ClientKeyCreateParams(name="app"), Ctx())
    assert await keys.authenticate(created.key) is not None  # the first use is written at once
    await anyio.sleep(1.1)  # `last_used` is kept to the second
    assert await keys.authenticate(created.key) is not None  # written within 30 s, or at the stop
    await services.aclose()
    with sqlite3.connect(tmp_path / "sidecar.db") as conn:
        (last_used,) = conn.execute("SELECT last_used FROM client_keys").fetchone()
    assert last_used is not None
    first = dt.datetime.fromisoformat(created.info.created.replace("Z", "+00:00"))
    assert dt.datetime.fromisoformat(last_used.replace("Z", "+00:00")) >= first + dt.timedelta(seconds=1)
