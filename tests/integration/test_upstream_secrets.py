"""Secrets against real fake upstreams: nothing an upstream echoes reaches the host whole, and
what the sidecar remembers to mask stays bounded however many keys it sees.

- An upstream error that carries the key in any field (type, code, message, metadata), over HTTP
  or as an error event inside a stream, leaves the sidecar masked: message, details, attempts.
- 3,000 `validate_key` calls with distinct keys: the remembered set stays at its cap, RSS does not
  grow with the count, and redacting a message does not get slower as keys pile up.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anyio
import msgspec
import psutil
import pytest

from sidecar import redact
from sidecar.config import Config
from sidecar.core.catalog import PriceBook
from sidecar.errors import SidecarError
from sidecar.infra.audit import MemoryAudit
from sidecar.infra.keystore import KeyResolver, MemoryStore
from sidecar.providers.http import HttpClient
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.chat import ChatService
from sidecar.services.keys import KeyService
from sidecar.services.limits import Resilience
from sidecar.services.pricing import Pricing
from sidecar.wire.chat import CompleteParams
from tests.fakes.http import json_reply, sse_event
from tests.fakes.openai_compat import FakeOpenAICompat

# Not shaped like any provider's key: only remembering it can mask it.
ODD_KEY = "zz9-canary-7f3a1c0e5b2d4a6f8091"


@pytest.fixture
def openai() -> Iterator[FakeOpenAICompat]:
    with FakeOpenAICompat("openai", valid_keys={ODD_KEY}) as fake:
        yield fake


class Ctx:
    request_id = 1

    def __init__(self) -> None:
        self.events: list[Any] = []

    async def notify(self, method: str, params: Any) -> None:
        self.events.append(msgspec.to_builtins(params.event))


def _chat(openai: FakeOpenAICompat, attempts: int = 2) -> tuple[ChatService, HttpClient]:
    config = msgspec.convert(
        {"retry": {"max_attempts": attempts, "base_delay_s": 0.0, "max_delay_s": 0.0}}, Config
    )
    http = HttpClient("test")
    env = {"OPENAI_BASE_URL": openai.api_base, "OPENAI_API_KEY": ODD_KEY}

    async def get_key(provider: str, env_var: str | None, account: str | None) -> str:
        value = env[env_var or ""]
        redact.remember(value)  # as the app does for every key it reads
        return value

    providers = ProviderRegistry(config, env, http, get_key)
    resilience = Resilience(config, rand=lambda: 0.0)
    return ChatService(providers, Pricing(providers, PriceBook()), config, resilience), http


def _params() -> CompleteParams:
    return msgspec.convert(
        {"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}, CompleteParams
    )


ECHOES = [
    {"error": {"message": "x", "type": f"Bearer {ODD_KEY}"}},
    {"error": {"message": "x", "type": "invalid_request_error", "code": ODD_KEY}},
    {"error": {"message": f"key {ODD_KEY} refused", "type": "server_error"}},
    {"error": {"message": "x", "status": f"UNAVAILABLE {ODD_KEY}"}},
    {"error": {"message": "x", "code": 502, "metadata": {"error_type": ODD_KEY, "raw": ODD_KEY}}},
]


@pytest.mark.parametrize("status", [400, 500])
@pytest.mark.parametrize("body", ECHOES, ids=["type", "code", "message", "status", "metadata"])
def test_a_key_echoed_in_any_field_of_an_error_is_masked(
    openai: FakeOpenAICompat, body: dict[str, Any], status: int
) -> None:
    openai.enqueue(json_reply(status, body))
    openai.enqueue(json_reply(status, body))

    async def run() -> None:
        chat, http = _chat(openai)
        ctx = Ctx()
        with pytest.raises(SidecarError) as info:
            await chat.stream(_params(), ctx)
        wire = msgspec.json.encode(info.value.data()).decode() + msgspec.json.encode(ctx.events).decode()
        assert ODD_KEY not in wire
        assert info.value.kind in ("invalid_request", "provider_error")
        await http.aclose()

    anyio.run(run)


def test_a_key_echoed_in_an_error_event_inside_a_stream_is_masked(openai: FakeOpenAICompat) -> None:
    error = {"error": {"message": f"Bearer {ODD_KEY}", "type": ODD_KEY, "code": "server_error"}}
    openai.edit_stream = lambda events: [events[0], sse_event(error)]

    async def run() -> None:
        chat, http = _chat(openai, attempts=1)
        with pytest.raises(SidecarError) as info:
            await chat.stream(_params(), Ctx())
        assert ODD_KEY not in msgspec.json.encode(info.value.data()).decode()
        assert info.value.details.get("upstream_type") == redact.mask(ODD_KEY)
        await http.aclose()

    anyio.run(run)


def test_thousands_of_distinct_keys_keep_redaction_bounded(openai: FakeOpenAICompat) -> None:
    process = psutil.Process()
    message = "upstream said: " + "lorem ipsum dolor " * 100  # a 1.8 KB error message

    def redact_cost_s() -> float:
        t0 = time.perf_counter()
        for _ in range(200):
            redact.redact(message)
        return (time.perf_counter() - t0) / 200

    async def run() -> None:
        http = HttpClient("test")
        env = {"OPENAI_BASE_URL": openai.api_base}
        keys = KeyResolver(MemoryStore())

        async def get_key(pid: str, env_var: str | None, account: str | None) -> str:
            return (await keys.resolve(pid, env_var, account=account)).value

        registry = ProviderRegistry(Config(), env, http, get_key)
        service = KeyService(registry, keys, MemoryAudit(), env={}, validate_timeout_s=2.0)
        from sidecar.wire.keys import ValidateKeyParams

        async def validate(i: int) -> None:
            key = f"sk-distinct-{i:06d}-" + "k" * 40
            result = await service.validate_key(ValidateKeyParams(provider="openai", api_key=key), Ctx())
            assert not result.valid  # the fake knows none of them: 401, auth_failed
            assert key not in msgspec.json.encode(result).decode()

        for i in range(600):
            await validate(i)
        rss_early = process.memory_info().rss
        cost_early = redact_cost_s()
        for i in range(600, 3000):
            await validate(i)
        rss_late = process.memory_info().rss
        cost_late = redact_cost_s()
        assert redact.remembered_count() <= redact.MAX_REMEMBERED + 16
        # 2,400 more keys: the remembered set is full either way; generous ceilings.
        assert rss_late - rss_early < 40 * 1024 * 1024, (rss_early, rss_late)
        assert cost_late < cost_early * 3 + 0.0005, (cost_early, cost_late)
        await http.aclose()

    anyio.run(run)
