"""Connection pools per provider, against real fake upstreams.

More concurrent streams than a provider's pool: the extra ones wait for a free connection (bounded
queueing) and succeed; past `pool_wait_s` they fail as `overloaded`, which is the sidecar's own
bottleneck: the breaker stays closed, nothing is retried, and another provider is not delayed.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Iterator
from typing import Any

import anyio
import msgspec
import pytest

from sidecar.config import Config
from sidecar.core.catalog import PriceBook
from sidecar.errors import SidecarError
from sidecar.providers.http import HttpClient, PoolSettings
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.chat import ChatService
from sidecar.services.limits import Resilience
from sidecar.services.pricing import Pricing
from sidecar.wire.chat import ChatResult, CompleteParams
from tests.fakes.anthropic import VALID_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.openai_compat import FakeOpenAICompat


@pytest.fixture
def openai() -> Iterator[FakeOpenAICompat]:
    with FakeOpenAICompat("openai", chunk_delay_s=0.12) as fake:  # ~0.7 s per stream
        yield fake


@pytest.fixture
def anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


class Ctx:
    request_id = 1

    async def notify(self, method: str, params: Any) -> None:
        pass


def _chat(toml: str, openai: FakeOpenAICompat, anthropic: FakeAnthropic) -> tuple[ChatService, HttpClient]:
    config = msgspec.convert(tomllib.loads(toml), Config)
    env = {
        "OPENAI_BASE_URL": openai.api_base,
        "OPENAI_API_KEY": "sk-test-valid",
        "ANTHROPIC_BASE_URL": anthropic.url,
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
    }
    http = HttpClient("test", PoolSettings.from_config(config))

    async def get_key(provider: str, env_var: str | None, account: str | None) -> str:
        return env[env_var or ""]

    providers = ProviderRegistry(config, env, http, get_key)
    resilience = Resilience(config, rand=lambda: 0.0)
    return ChatService(providers, Pricing(providers, PriceBook()), config, resilience), http


def _params(model: str) -> CompleteParams:
    return msgspec.convert(
        {"model": model, "messages": [{"role": "user", "content": "hello there my friend"}]}, CompleteParams
    )


async def _many(chat: ChatService, n: int) -> list[ChatResult | SidecarError]:
    outcomes: list[ChatResult | SidecarError] = []

    async def one() -> None:
        try:
            outcomes.append(await chat.stream(_params("openai:gpt-4o-mini"), Ctx()))
        except SidecarError as exc:
            outcomes.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    return outcomes


def test_streams_past_the_pool_wait_their_turn(openai: FakeOpenAICompat, anthropic: FakeAnthropic) -> None:
    toml = "[providers.openai]\nmax_connections = 4\n[http]\npool_wait_s = 10\n"

    async def body() -> None:
        chat, http = _chat(toml, openai, anthropic)
        outcomes = await _many(chat, 12)
        assert all(isinstance(o, ChatResult) for o in outcomes), outcomes
        assert openai.connections_accepted <= 4
        assert chat.resilience.breakers.state("openai") == "closed"
        await http.aclose()

    anyio.run(body)


def test_a_full_pool_is_overloaded_not_a_provider_failure_and_spares_other_providers(
    openai: FakeOpenAICompat, anthropic: FakeAnthropic
) -> None:
    toml = (
        "[providers.openai]\nmax_connections = 3\n[http]\npool_wait_s = 0.25\n"
        "[breaker]\nfailures = 2\n[retry]\nmax_attempts = 3\nbase_delay_s = 0\nmax_delay_s = 0\n"
    )

    async def body() -> None:
        chat, http = _chat(toml, openai, anthropic)
        # Warm both providers (imports, first connections), then hold OpenAI's three connections
        # for ~2.5 s, ten times the pool wait (0.25 s): the other six time out while they are held,
        # however late a slow machine starts them, and a wait for them is far from Anthropic's bound.
        assert (await chat.stream(_params("openai:gpt-4o-mini"), Ctx())).text
        assert (await chat.stream(_params("anthropic:claude-haiku-4-5"), Ctx())).text
        openai.chunk_delay_s = 0.25
        other_s: list[float] = []

        async def meanwhile() -> None:
            await anyio.sleep(0.1)
            t0 = time.monotonic()
            result = await chat.stream(_params("anthropic:claude-haiku-4-5"), Ctx())
            other_s.append(time.monotonic() - t0)
            assert result.text

        async with anyio.create_task_group() as tg:
            tg.start_soon(meanwhile)
            outcomes = await _many(chat, 9)
        ok = [o for o in outcomes if isinstance(o, ChatResult)]
        overloaded = [o for o in outcomes if isinstance(o, SidecarError)]
        assert len(ok) == 3
        assert len(overloaded) == 6 and {o.kind for o in overloaded} == {"overloaded"}
        assert all("max_connections" in o.message for o in overloaded)
        # Not retried (one attempt each), not counted against OpenAI.
        assert all(len(o.details.get("attempts", [None])) == 1 for o in overloaded)
        assert len(openai.requests) == 1 + 3  # the warm-up, then the three that had a connection
        assert chat.resilience.breakers.state("openai") == "closed"
        # Anthropic has a pool of its own: answered at once, while OpenAI's was full.
        assert other_s and other_s[0] < 1.5, other_s
        openai.chunk_delay_s = 0
        after = await chat.stream(_params("openai:gpt-4o-mini"), Ctx())
        assert after.text
        await http.aclose()

    anyio.run(body)


def test_a_warm_pool_opens_no_connection_at_any_concurrency_up_to_its_size(
    openai: FakeOpenAICompat, anthropic: FakeAnthropic
) -> None:
    # Past the old fixed keep-alive count (20): every connection of the pool is kept, so a second
    # round as wide as the pool reuses them all (against a real provider, each one saved is a TLS
    # handshake).
    toml = "[providers.openai]\nmax_connections = 24\n"

    async def body() -> None:
        chat, http = _chat(toml, openai, anthropic)
        first = await _many(chat, 24)
        assert all(isinstance(o, ChatResult) for o in first), first
        warm = openai.connections_accepted
        assert 1 < warm <= 24
        second = await _many(chat, 24)
        assert all(isinstance(o, ChatResult) for o in second), second
        assert openai.connections_accepted == warm
        await http.aclose()

    anyio.run(body)


def test_max_keepalive_caps_the_idle_connections_kept(
    openai: FakeOpenAICompat, anthropic: FakeAnthropic
) -> None:
    # A pool of 6 that keeps 2 idle: a second round as wide as the first reconnects 4 times.
    toml = "[providers.openai]\nmax_connections = 6\n[http]\nmax_keepalive = 2\n"

    async def body() -> None:
        chat, http = _chat(toml, openai, anthropic)
        first = await _many(chat, 6)
        assert all(isinstance(o, ChatResult) for o in first), first
        warm = openai.connections_accepted
        assert warm == 6
        second = await _many(chat, 6)
        assert all(isinstance(o, ChatResult) for o in second), second
        assert openai.connections_accepted == warm + 4
        await http.aclose()

    anyio.run(body)
