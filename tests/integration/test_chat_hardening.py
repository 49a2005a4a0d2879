"""What the chat service tells the host about an upstream, checked against real fake upstreams:
nothing free that was priced, nothing clean that was cut, no error hiding another, and `complete`
bounded and cancellable like `stream` (it streams from the upstream too).
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
from sidecar.providers.http import HttpClient
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.chat import ChatService
from sidecar.services.limits import Resilience
from sidecar.services.outcome import Outcome
from sidecar.services.pricing import Pricing
from sidecar.wire.chat import CompleteParams
from tests.fakes.http import Stall, json_reply, text_reply
from tests.fakes.ollama import FakeOllama
from tests.fakes.openai_compat import FakeOpenAICompat

FAST = "[retry]\nmax_attempts = 1\n"


class Ctx:
    request_id = 1

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def notify(self, method: str, params: Any) -> None:
        self.events.append(msgspec.to_builtins(params.event))


class Recorder:
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    async def before(self, ref: Any, params: Any) -> None:
        pass

    async def after(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)


def _chat(toml: str, env: dict[str, str]) -> tuple[ChatService, HttpClient, Recorder]:
    config = msgspec.convert(tomllib.loads(toml), Config)
    http = HttpClient("test")
    env = {"OPENAI_API_KEY": "sk-test-valid", **env}

    async def get_key(provider: str, env_var: str | None, account: str | None) -> str:
        return env[env_var or ""]

    providers = ProviderRegistry(config, env, http, get_key)
    chat = ChatService(
        providers, Pricing(providers, PriceBook()), config, Resilience(config, rand=lambda: 0.0)
    )
    recorder = Recorder()
    chat.hooks.append(recorder)
    return chat, http, recorder


def _params(model: str = "openai:gpt-4o-mini", **kw: Any) -> CompleteParams:
    return msgspec.convert(
        {"model": model, "messages": [{"role": "user", "content": "hello there"}], **kw}, CompleteParams
    )


@pytest.mark.parametrize("method", ["stream", "complete"])
def test_a_stream_without_usage_is_estimated_marked_and_priced(openai: FakeOpenAICompat, method: str) -> None:
    openai.edit_stream = lambda events: [e for e in events if b'"choices":[]' not in e]

    async def body() -> None:
        chat, http, rec = _chat(FAST, {"OPENAI_BASE_URL": openai.api_base})
        result = await getattr(chat, method)(_params(), Ctx())
        assert result.usage_estimated is True
        assert result.usage.output_tokens > 0 and result.usage.input_tokens > 0
        assert result.cost_usd is not None and result.cost_usd > 0
        assert rec.outcomes[-1].usage_estimated and rec.outcomes[-1].cost_usd == result.cost_usd
        assert b'"usage_estimated":true' in msgspec.json.encode(result)
        await http.aclose()

    anyio.run(body)


def test_a_reported_usage_is_not_marked_estimated(openai: FakeOpenAICompat) -> None:
    async def body() -> None:
        chat, http, rec = _chat(FAST, {"OPENAI_BASE_URL": openai.api_base})
        result = await chat.stream(_params(), Ctx())
        assert result.usage_estimated is False and not rec.outcomes[-1].usage_estimated
        await http.aclose()

    anyio.run(body)


def test_done_without_a_finish_reason_is_incomplete_not_stop(openai: FakeOpenAICompat) -> None:
    openai.edit_stream = lambda events: [e for e in events if b'"finish_reason":"' not in e]

    async def body() -> None:
        chat, http, _ = _chat(FAST, {"OPENAI_BASE_URL": openai.api_base})
        result = await chat.stream(_params(), Ctx())
        assert result.text == "Echo: hello there"
        assert result.finish_reason == "incomplete"
        await http.aclose()

    anyio.run(body)


def test_tool_turns_go_out_without_a_null_content(openai: FakeOpenAICompat) -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "name": "weather", "arguments": {}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]

    async def body() -> None:
        chat, http, _ = _chat(FAST, {"OPENAI_BASE_URL": openai.api_base})
        result = await chat.complete(_params(messages=messages), Ctx())
        assert result.text == "The tool said: sunny"
        sent = openai.requests[-1].json()["messages"][1]
        assert "content" not in sent
        assert sent["tool_calls"][0]["function"]["arguments"] == "{}"
        await http.aclose()

    anyio.run(body)


def test_a_retry_skipped_by_the_breaker_reports_the_real_error(openai: FakeOpenAICompat) -> None:
    toml = "[retry]\nmax_attempts = 3\nbase_delay_s = 0\nmax_delay_s = 0\n[breaker]\nfailures = 1\n"
    openai.enqueue(json_reply(500, {"error": {"message": "the real failure", "type": "server_error"}}))

    async def body() -> None:
        chat, http, _ = _chat(toml, {"OPENAI_BASE_URL": openai.api_base})
        with pytest.raises(SidecarError) as info:
            await chat.stream(_params(), Ctx())
        assert info.value.kind == "provider_error"
        assert "the real failure" in info.value.message
        assert "circuit breaker" not in info.value.message
        await http.aclose()

    anyio.run(body)


def test_complete_streams_from_the_upstream_and_keeps_the_idle_limit(openai: FakeOpenAICompat) -> None:
    openai.edit_stream = lambda events: [*events[:2], Stall(30)]
    toml = FAST + "[timeouts]\nidle_s = 0.3\n"

    async def body() -> None:
        chat, http, _ = _chat(toml, {"OPENAI_BASE_URL": openai.api_base})
        t0 = time.monotonic()
        with pytest.raises(SidecarError) as info:
            await chat.complete(_params(), Ctx())
        assert info.value.kind == "timeout" and "idle" in info.value.message
        assert time.monotonic() - t0 < 6  # the idle limit (0.3 s), not the stall (30 s)
        assert openai.requests[-1].json()["stream"] is True
        await http.aclose()

    anyio.run(body)
    assert openai.wait_for_disconnect(timeout=5)


def test_cancelling_complete_closes_the_upstream_stream(openai: FakeOpenAICompat) -> None:
    # Paced at 2 s a part, the stream would take over ten seconds to end by itself; it is cancelled
    # once the upstream has the request and has begun to answer, however slow the machine.
    openai.chunk_delay_s = 2.0

    async def body() -> None:
        chat, http, rec = _chat(FAST, {"OPENAI_BASE_URL": openai.api_base})
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(chat.complete, _params(), Ctx())
                await anyio.to_thread.run_sync(openai.wait_for_requests, 1, 30)
                await anyio.sleep(0.2)
                scope.cancel()
        assert rec.outcomes[-1].status == "cancelled"
        await http.aclose()

    t0 = time.monotonic()
    anyio.run(body)
    assert openai.wait_for_disconnect(timeout=5)
    assert time.monotonic() - t0 < 6


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


def test_an_ollama_404_is_model_not_found_only_for_a_missing_model(ollama: FakeOllama) -> None:
    async def body() -> None:
        chat, http, _ = _chat(FAST, {"OLLAMA_HOST": ollama.url})
        with pytest.raises(SidecarError) as missing:
            await chat.stream(_params("ollama:not-installed"), Ctx())
        assert missing.value.kind == "model_not_found"
        ollama.enqueue(text_reply(404, "404 page not found"))
        with pytest.raises(SidecarError) as no_route:
            await chat.stream(_params("ollama:llama3.2"), Ctx())
        assert no_route.value.kind == "provider_error"
        assert "ollama_pull" not in no_route.value.message and "base URL" in no_route.value.message
        await http.aclose()

    anyio.run(body)


def test_a_request_ends_with_the_hooks_it_began_with(openai: FakeOpenAICompat) -> None:
    """The app adds a hook by replacing the list (the routers' hook, on the first `router:`
    request): a request already past its `before` runs the `after` of the hooks it began with only,
    so no hook sees an `after` without its `before`; the next request gets the new hook."""

    async def body() -> None:
        chat, http, first = _chat(FAST, {"OPENAI_BASE_URL": openai.api_base})
        added = Recorder()

        class AddsOneMidway(Recorder):
            async def before(self, ref: Any, params: Any) -> None:
                if not added.outcomes and added not in chat.hooks:
                    chat.hooks = [*chat.hooks, added]

        chat.hooks.append(AddsOneMidway())
        await chat.complete(_params(tag="one"), Ctx())
        assert [o.tag for o in first.outcomes] == ["one"]
        assert added.outcomes == []
        await chat.complete(_params(tag="two"), Ctx())
        assert [o.tag for o in added.outcomes] == ["two"]
        await http.aclose()

    anyio.run(body)
