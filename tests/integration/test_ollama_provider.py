"""The Ollama chat provider against the fake Ollama server, through the real HTTP client and the
chat service: streaming and whole answers, the tool loop, thinking, errors, nothing listening,
and cancellation closing the upstream connection."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from sidecar.app import Services, build_services
from sidecar.config import Config
from sidecar.errors import SidecarError
from sidecar.infra.keystore import MemoryStore
from sidecar.providers.http import Timeouts
from sidecar.providers.ollama import OllamaProvider
from sidecar.wire.chat import (
    ChatResult,
    CompleteParams,
    Message,
    Reasoning,
    StreamEventParams,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    UsageEvent,
)
from tests.fakes.http import Abort, Stall
from tests.fakes.ollama import FakeOllama

pytestmark = pytest.mark.anyio

WEATHER = Tool(name="get_weather", description="Weather", parameters={"type": "object", "properties": {}})


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as upstream:
        yield upstream


def closed_port_url() -> str:
    """A port that was just free: nothing listens there."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def services_for(tmp_path: Path) -> AsyncIterator[Any]:
    made: list[Services] = []

    def make(url: str) -> Services:
        services = build_services(
            Config(), store=MemoryStore(), env={"OLLAMA_HOST": url, "SIDECAR_HOME": str(tmp_path)}
        )
        made.append(services)
        return services

    yield make
    for services in made:
        await services.aclose()


class Ctx:
    def __init__(self, request_id: int = 7) -> None:
        self.request_id = request_id
        self.notes: list[tuple[str, Any]] = []
        self.notified = anyio.Event()

    async def notify(self, method: str, params: Any) -> None:
        self.notes.append((method, params))
        self.notified.set()

    def events(self) -> list[Any]:
        return [p.event for m, p in self.notes if m == "stream/event" and isinstance(p, StreamEventParams)]


def ask(text: str, **kw: Any) -> CompleteParams:
    return CompleteParams(model="ollama:llama3.2", messages=[Message(role="user", content=text)], **kw)


async def call(services: Services, method: str, params: CompleteParams, ctx: Ctx | None = None) -> ChatResult:
    result = await services.handlers[method](params, ctx or Ctx())
    assert isinstance(result, ChatResult)
    return result


async def test_stream_and_complete_give_the_same_result(fake: FakeOllama, services_for: Any) -> None:
    services = services_for(fake.url)
    ctx = Ctx()
    streamed = await call(services, "stream", ask("hello there friend"), ctx)
    whole = await call(services, "complete", ask("hello there friend"))
    assert streamed.text == whole.text == "Echo: hello there friend"
    assert streamed.usage == whole.usage
    assert streamed.usage.input_tokens == 6 and streamed.usage.output_tokens == 6
    assert streamed.finish_reason == whole.finish_reason == "stop"
    assert streamed.provider == "ollama" and streamed.model == "llama3.2"
    assert streamed.cost_usd == 0.0
    events = ctx.events()
    assert [e.text for e in events if isinstance(e, TextDelta)] == [
        "Echo",
        ": he",
        "llo ",
        "ther",
        "e fr",
        "iend",
    ]
    assert isinstance(events[-1], UsageEvent)
    assert events[-1].input_tokens == 6
    bodies = [r.json() for r in fake.requests if r.path == "/api/chat"]
    # `complete` streams from the upstream too (cancellation and idle limits work the same).
    assert [b["stream"] for b in bodies] == [True, True]
    assert bodies[0]["messages"] == [{"role": "user", "content": "hello there friend"}]


async def test_request_fields_reach_ollama(fake: FakeOllama, services_for: Any) -> None:
    services = services_for(fake.url)
    params = ask(
        "count", max_tokens=2, temperature=0.5, top_p=0.8, stop=["x"], reasoning=Reasoning(effort="medium")
    )
    result = await call(services, "stream", params)
    body = fake.requests[-1].json()
    assert body["options"] == {"num_predict": 2, "temperature": 0.5, "top_p": 0.8, "stop": ["x"]}
    assert body["think"] == "medium"
    assert result.finish_reason == "length"
    assert result.text == "Echo: co"
    assert result.thinking == "Thinking about: count"


async def test_tool_loop(fake: FakeOllama, services_for: Any) -> None:
    services = services_for(fake.url)
    ctx = Ctx()
    first = await call(services, "stream", ask("Tokyo", tools=[WEATHER]), ctx)
    assert first.finish_reason == "tool_calls"
    assert first.text == ""
    [tool_call] = first.tool_calls
    assert tool_call.name == "get_weather" and tool_call.arguments == {"input": "Tokyo"}
    assert tool_call.id.startswith("call_")  # Ollama sent none; one was made up
    deltas = [e for e in ctx.events() if isinstance(e, ToolCallDelta)]
    assert len(deltas) == 1 and deltas[0].id == tool_call.id and deltas[0].name == "get_weather"
    follow = CompleteParams(
        model="ollama:llama3.2",
        messages=[
            Message(role="user", content="Tokyo"),
            Message(
                role="assistant",
                content="",
                tool_calls=[ToolCall(id=tool_call.id, name="get_weather", arguments=tool_call.arguments)],
            ),
            Message(role="tool", tool_call_id=tool_call.id, content="Sunny, 24 C"),
        ],
        tools=[WEATHER],
    )
    second = await call(services, "complete", follow)
    assert second.text == "The tool said: Sunny, 24 C"
    assert second.finish_reason == "stop"
    sent = fake.requests[-1].json()["messages"]
    assert sent[1]["tool_calls"] == [
        {"id": tool_call.id, "function": {"name": "get_weather", "arguments": {"input": "Tokyo"}}}
    ]
    assert sent[2] == {
        "role": "tool",
        "content": "Sunny, 24 C",
        "tool_name": "get_weather",
        "tool_call_id": tool_call.id,
    }


async def test_upstream_tool_call_ids_are_kept(services_for: Any) -> None:
    with FakeOllama(tool_call_ids=True) as fake:
        result = await call(services_for(fake.url), "complete", ask("Paris", tools=[WEATHER]))
    assert result.tool_calls[0].id.startswith("call_") and len(result.tool_calls[0].id) == len("call_") + 12


async def test_unknown_model_is_model_not_found_with_a_pull_hint(fake: FakeOllama, services_for: Any) -> None:
    services = services_for(fake.url)
    params = CompleteParams(model="ollama:qwen9:1b", messages=[Message(role="user", content="hi")])
    for method in ("stream", "complete"):
        with pytest.raises(SidecarError) as err:
            await call(services, method, params)
        assert err.value.kind == "model_not_found"
        assert "qwen9:1b" in err.value.message and "ollama_pull" in err.value.message


async def test_error_line_inside_a_200_stream(fake: FakeOllama, services_for: Any) -> None:
    fake.chat_error_after = 2
    ctx = Ctx()
    with pytest.raises(SidecarError) as err:
        await call(services_for(fake.url), "stream", ask("hello there"), ctx)
    assert err.value.kind == "provider_error"
    assert "an error was encountered while running the model" in err.value.message
    assert [e.text for e in ctx.events() if isinstance(e, TextDelta)] == ["Echo", ": he"]


async def test_stream_cut_short_is_a_network_error(fake: FakeOllama, services_for: Any) -> None:
    fake.edit_chat = lambda parts: [*parts[:2], Abort()]
    with pytest.raises(SidecarError) as err:
        await call(services_for(fake.url), "stream", ask("hello there"))
    assert err.value.kind == "network_error"


async def test_nothing_listening_is_ollama_unavailable_everywhere(services_for: Any) -> None:
    url = closed_port_url()
    services = services_for(url)
    for method in ("stream", "complete"):
        with pytest.raises(SidecarError) as err:
            await call(services, method, ask("hi"))
        assert err.value.kind == "ollama_unavailable"
        assert url in err.value.message and "ollama serve" in err.value.message
        assert err.value.details == {"base_url": url}
    provider = services.providers.get("ollama")
    assert isinstance(provider, OllamaProvider)
    assert provider.spec.needs_key is False
    check = await provider.validate_key("", Timeouts(connect_s=2, read_s=2))
    assert not check.valid and check.error is not None and check.error.kind == "ollama_unavailable"
    for fn in (provider.client.version, provider.client.installed, provider.client.loaded):
        with pytest.raises(SidecarError) as err:
            await fn()
        assert err.value.kind == "ollama_unavailable"


async def test_validate_key_means_reachable(fake: FakeOllama, services_for: Any) -> None:
    provider = services_for(fake.url).providers.get("ollama")
    check = await provider.validate_key("", Timeouts())
    assert check.valid and check.details == {"version": fake.version}


async def test_cancelling_a_stream_closes_the_upstream_connection(
    fake: FakeOllama, services_for: Any
) -> None:
    fake.edit_chat = lambda parts: [parts[0], Stall(10)]
    services = services_for(fake.url)
    ctx = Ctx()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                await call(services, "stream", ask("hello there"), ctx)

            tg.start_soon(run)
            await ctx.notified.wait()
            tg.cancel_scope.cancel()
    assert await anyio.to_thread.run_sync(fake.wait_for_disconnect, 3.0)
    assert [e.text for e in ctx.events() if isinstance(e, TextDelta)] == ["Echo"]


async def test_event_grammar(fake: FakeOllama, services_for: Any) -> None:
    ctx = Ctx()
    await call(services_for(fake.url), "stream", ask("why", reasoning=Reasoning(budget_tokens=100)), ctx)
    kinds = [msgspec.to_builtins(e)["type"] for e in ctx.events()]
    first_text = kinds.index("text_delta")
    assert set(kinds[:first_text]) == {"thinking_delta"}  # thinking first
    assert kinds[-1] == "usage" and kinds.count("usage") == 1
    assert fake.requests[-1].json()["think"] is True
