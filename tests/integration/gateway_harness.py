"""The gateway every gateway test drives: a real Services stack in front of the fake OpenAI and
Anthropic upstreams, its gateway started on a free port, two client keys, and the official SDKs'
clients pointed at it (`gw`, a pytest fixture), with the ledger's rows to check.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import anyio
import openai
import pytest

from sidecar.app import Services, build_services
from sidecar.config import Config, GatewaySettings, Retry, Timeouts
from sidecar.infra.keystore import MemoryStore
from sidecar.wire.gateway import ClientKeyCreateParams, GatewayStartParams
from tests.fakes.anthropic import VALID_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.openai_compat import FakeOpenAICompat

OPENAI_KEY = "sk-test-valid"


class Ctx:
    request_id = "test"

    async def notify(self, method: str, params: Any) -> None:
        return None


@dataclass
class Gw:
    services: Services
    url: str
    full: str  # a key allowed everything
    openai_only: str  # a key allowed openai:* only, with a tiny daily budget
    home: Path
    oa: FakeOpenAICompat
    an: FakeAnthropic
    clients: list[Any] = field(default_factory=list)

    def oai(self, key: str | None = None) -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=key or self.full, max_retries=0)
        self.clients.append(client)
        return client

    def ant(self, key: str | None = None) -> anthropic.AsyncAnthropic:
        client = anthropic.AsyncAnthropic(base_url=self.url, api_key=key or self.full, max_retries=0)
        self.clients.append(client)
        return client

    async def call(self, method: str, params: Any) -> Any:
        return await self.services.handlers[method](params, Ctx())


@pytest.fixture
def fakes() -> Iterator[tuple[FakeOpenAICompat, FakeAnthropic]]:
    with FakeOpenAICompat("openai") as oa, FakeAnthropic() as an:
        yield oa, an


@pytest.fixture
async def gw(tmp_path: Path, fakes: tuple[FakeOpenAICompat, FakeAnthropic]) -> AsyncIterator[Gw]:
    async with running_gateway(tmp_path, *fakes) as gateway:
        yield gateway


@contextlib.asynccontextmanager
async def running_gateway(
    home: Path, oa: FakeOpenAICompat, an: FakeAnthropic, **gateway: Any
) -> AsyncIterator[Gw]:
    """`gw`'s gateway, with `[gateway]` settings (`gateway`) over the fixture's."""
    env = {"SIDECAR_HOME": str(home), "OPENAI_BASE_URL": oa.api_base, "ANTHROPIC_BASE_URL": an.url}
    config = Config(
        retry=Retry(max_attempts=1),
        timeouts=Timeouts(first_byte_s=1.0, idle_s=1.0, total_s=5.0),
        gateway=GatewaySettings(**{"max_body_bytes": 64 * 1024, **gateway}),
    )
    services = build_services(
        config, store=MemoryStore({"openai": OPENAI_KEY, "anthropic": ANTHROPIC_KEY}), env=env
    )
    async with anyio.create_task_group() as tg:
        await services.start_background(tg)
        started = await services.handlers["gateway_start"](GatewayStartParams(port=0), Ctx())
        full = await services.handlers["client_key_create"](ClientKeyCreateParams(name="full"), Ctx())
        narrow = await services.handlers["client_key_create"](
            ClientKeyCreateParams(name="narrow", allow=["openai:*"], daily_usd=0.000001), Ctx()
        )
        gw = Gw(services, started.url, full.key, narrow.key, home, oa, an)
        yield gw
        for client in gw.clients:
            await client.close()
        await services.stop_gateway()
        tg.cancel_scope.cancel()
    await services.aclose()


def ledger(home: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(home / "sidecar.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM ledger ORDER BY id")]


async def flush(gw: Gw) -> None:
    await anyio.to_thread.run_sync(gw.services.usage.ledger.flush)


async def first_rows(gw: Gw) -> list[dict[str, Any]]:
    """The ledger once a row is there: a cancelled call's row is queued after the client has gone."""
    for _ in range(50):
        await flush(gw)
        rows = ledger(gw.home)
        if rows:
            return rows
        await anyio.sleep(0.05)
    return []
