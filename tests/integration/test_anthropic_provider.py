"""The Anthropic provider against the fake Anthropic API over real HTTP on 127.0.0.1: streaming and
non-streaming agree, a tool-use loop with thinking round-trips its continuation, recordings replay,
upstream failures map to the contract's kinds, and cancelling closes the upstream connection."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import msgspec
import pytest

from sidecar.core.assemble import Assembler, Continuation, Finish, ProviderEvent, ResponseMeta
from sidecar.errors import ProviderError
from sidecar.providers.anthropic import AnthropicProvider
from sidecar.providers.base import ProviderSpec
from sidecar.providers.http import HttpClient, Timeouts
from sidecar.wire.chat import (
    ChatResult,
    CompleteParams,
    ImagePart,
    Message,
    Reasoning,
    TextDelta,
    TextPart,
    ThinkingDelta,
    Tool,
    ToolCallDelta,
    UsageEvent,
)
from tests.fakes.anthropic import (
    FIXTURES_DIR,
    FakeAnthropic,
    error_reply,
    fixture_reply,
    invalid_request,
    midstream_error_reply,
)
from tests.fakes.http import Abort, Pause, Stall

pytestmark = pytest.mark.anyio

MODEL = "claude-sonnet-4-5"
TIMEOUTS = Timeouts(connect_s=2.0, read_s=5.0, write_s=2.0)
WEATHER = Tool(
    name="get_weather",
    description="Current weather of a city.",
    parameters={"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]},
)


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as upstream:
        yield upstream


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    client = HttpClient("test")
    yield client
    await client.aclose()


def make_provider(fake: FakeAnthropic, http: HttpClient, key: str | None = None) -> AnthropicProvider:
    async def get_key(provider_id: str, env: str | None, account: str | None) -> str:
        assert (provider_id, env) == ("anthropic", "ANTHROPIC_API_KEY")
        return key or fake.valid_key

    spec = ProviderSpec(id="anthropic", kind="anthropic", base_url=fake.url, key_env="ANTHROPIC_API_KEY")
    return AnthropicProvider(spec, http, get_key)


@pytest.fixture
def provider(fake: FakeAnthropic, http: HttpClient) -> AnthropicProvider:
    return make_provider(fake, http)


def params(messages: list[Message], **kw: Any) -> CompleteParams:
    return CompleteParams(model=MODEL, messages=messages, **kw)


async def collect(events: AsyncGenerator[ProviderEvent, None]) -> list[ProviderEvent]:
    return [ev async for ev in events]


def assemble(events: list[ProviderEvent]) -> ChatResult:
    asm = Assembler()
    for ev in events:
        asm.add(ev)
    return asm.result(provider="anthropic", model=MODEL)


def assert_grammar(events: list[ProviderEvent]) -> None:
    assert isinstance(events[0], ResponseMeta)
    assert isinstance(events[-1], UsageEvent)
    assert sum(isinstance(e, UsageEvent) for e in events) == 1
    finish = next(i for i, e in enumerate(events) if isinstance(e, Finish))
    assert all(isinstance(e, Continuation) for e in events[finish + 1 : -1])
    assert all(isinstance(e, TextDelta | ThinkingDelta | ToolCallDelta) for e in events[1:finish])


async def both(
    provider: AnthropicProvider, p: CompleteParams
) -> tuple[list[ProviderEvent], list[ProviderEvent]]:
    streamed = await collect(provider.stream(MODEL, p, TIMEOUTS))
    completed = await collect(provider.complete(MODEL, p, TIMEOUTS))
    return streamed, completed


# --- happy paths --------------------------------------------------------------------------------


async def test_stream_request_on_the_wire(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    events = await collect(
        provider.stream(MODEL, params([Message(role="user", content="hello there")]), TIMEOUTS)
    )
    assert assemble(events).text == "Echo: hello there"
    (req,) = fake.requests
    assert (req.method, req.path) == ("POST", "/v1/messages")
    assert req.headers["x-api-key"] == fake.valid_key
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["accept"] == "text/event-stream"
    assert "authorization" not in req.headers
    assert req.json() == {
        "model": MODEL,
        "max_tokens": 64_000,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
        "stream": True,
    }


CASES: dict[str, tuple[list[Message], dict[str, Any]]] = {
    "text": ([Message(role="system", content="Be brief."), Message(role="user", content="hello there")], {}),
    "thinking": (
        [Message(role="user", content="why is the sky blue")],
        {"reasoning": Reasoning(effort="low")},
    ),
    "tool call": ([Message(role="user", content="weather in Oslo")], {"tools": [WEATHER]}),
    "tool call + thinking": (
        [Message(role="user", content="weather in Oslo")],
        {"tools": [WEATHER], "reasoning": Reasoning(budget_tokens=1500)},
    ),
    "truncated": ([Message(role="user", content="a rather long question indeed")], {"max_tokens": 3}),
    "stop sequence": ([Message(role="user", content="first part END second part")], {"stop": ["END", "xyz"]}),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_stream_and_complete_agree(case: str, provider: AnthropicProvider) -> None:
    messages, extra = CASES[case]
    streamed, completed = await both(provider, params(messages, **extra))
    assert_grammar(streamed)
    assert_grammar(completed)
    a, b = assemble(streamed), assemble(completed)
    assert msgspec.structs.replace(a, response_id=None) == msgspec.structs.replace(b, response_id=None)
    assert a.response_id and a.response_id.startswith("msg_01")
    assert "".join(e.text for e in streamed if isinstance(e, TextDelta)) == a.text
    if "thinking" in case:
        assert a.thinking and a.thinking.startswith("Thinking about: ")
        assert a.usage.reasoning_tokens == len(a.thinking.split())
        assert a.continuation is not None and a.continuation["blocks"][0]["thinking"] == a.thinking
    else:
        assert a.thinking is None and a.continuation is None
    if "tool call" in case:
        assert a.finish_reason == "tool_calls"
        assert [(c.name, c.arguments) for c in a.tool_calls] == [
            ("get_weather", {"input": "weather in Oslo"})
        ]
        assert a.tool_calls[0].id.startswith("toolu_01")
    elif case == "truncated":
        assert (a.finish_reason, a.text) == ("length", "Echo: a rath")  # 3 pieces of 4 characters
    elif case == "stop sequence":
        assert (a.finish_reason, a.text, a.stop_sequence) == ("stop", "Echo: first part ", "END")
    else:
        assert a.finish_reason == "stop" and a.text.startswith("Echo: ") and a.stop_sequence is None
    assert a.usage.input_tokens > 0 and a.usage.output_tokens > 0


async def test_a_finished_stream_leaves_its_connection_for_the_next_request(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    for _ in range(3):
        await collect(provider.stream(MODEL, params([Message(role="user", content="hi")]), TIMEOUTS))
    await collect(provider.complete(MODEL, params([Message(role="user", content="hi")]), TIMEOUTS))
    assert fake.connections_accepted == 1


async def test_a_server_holding_the_stream_open_after_message_stop_does_not_delay_the_answer(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    fake.edit_stream = lambda ev: [*ev, Stall()]
    with anyio.fail_after(3):
        events = await collect(provider.stream(MODEL, params([Message(role="user", content="hi")]), TIMEOUTS))
    assert assemble(events).text == "Echo: hi"
    assert await anyio.to_thread.run_sync(fake.wait_for_disconnect)


async def test_pings_between_every_event_change_nothing(http: HttpClient) -> None:
    p = params(
        [Message(role="user", content="weather in Oslo")], tools=[WEATHER], reasoning=Reasoning(effort="low")
    )
    with FakeAnthropic() as quiet, FakeAnthropic(ping_every=1) as chatty:
        a = assemble(await collect(make_provider(quiet, http).stream(MODEL, p, TIMEOUTS)))
        b = assemble(await collect(make_provider(chatty, http).stream(MODEL, p, TIMEOUTS)))
    assert msgspec.structs.replace(a, response_id=None) == msgspec.structs.replace(b, response_id=None)


async def test_tool_use_loop_with_thinking_round_trips_the_continuation(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    ask = Message(role="user", content="weather in Oslo")
    first = assemble(
        await collect(
            provider.stream(
                MODEL, params([ask], tools=[WEATHER], reasoning=Reasoning(effort="low")), TIMEOUTS
            )
        )
    )
    assert first.finish_reason == "tool_calls" and first.continuation is not None
    # The host copies the result into the assistant message unchanged, and answers the call.
    history = [
        ask,
        Message(
            role="assistant", content=first.text, tool_calls=first.tool_calls, continuation=first.continuation
        ),
        Message(role="tool", tool_call_id=first.tool_calls[0].id, content="9C and cloudy"),
    ]
    second = assemble(
        await collect(
            provider.stream(
                MODEL, params(history, tools=[WEATHER], reasoning=Reasoning(effort="low")), TIMEOUTS
            )
        )
    )
    assert (second.text, second.finish_reason) == ("The tool said: 9C and cloudy", "stop")
    sent = fake.requests[1].json()
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assistant = sent["messages"][1]["content"]
    assert assistant[0] == first.continuation["blocks"][0]  # first, and byte for byte what came out
    assert [b["type"] for b in assistant] == ["thinking", "tool_use"]
    assert sent["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": first.tool_calls[0].id, "content": "9C and cloudy"}
    ]


async def test_tool_use_loop_without_the_continuation_turns_thinking_off(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    ask = Message(role="user", content="weather in Oslo")
    first = assemble(await collect(provider.complete(MODEL, params([ask], tools=[WEATHER]), TIMEOUTS)))
    history = [
        ask,
        Message(role="assistant", tool_calls=first.tool_calls),  # e.g. answered by another provider
        Message(role="tool", tool_call_id=first.tool_calls[0].id, content="9C"),
    ]
    p = params(history, tools=[WEATHER], reasoning=Reasoning(effort="low"))
    second = assemble(await collect(provider.complete(MODEL, p, TIMEOUTS)))
    assert second.text == "The tool said: 9C"
    sent = fake.requests[1].json()
    assert "thinking" not in sent
    # ...because the API (and so the fake) rejects that turn with thinking on:
    problem = invalid_request({**sent, "thinking": {"type": "enabled", "budget_tokens": 2048}})
    assert problem is not None and "must start with a thinking block" in problem


async def test_a_tampered_thinking_block_is_rejected_upstream(provider: AnthropicProvider) -> None:
    ask = Message(role="user", content="weather in Oslo")
    p = params([ask], tools=[WEATHER], reasoning=Reasoning(effort="low"))
    first = assemble(await collect(provider.complete(MODEL, p, TIMEOUTS)))
    assert first.continuation is not None
    block = {**first.continuation["blocks"][0], "thinking": "something else"}
    history = [
        ask,
        Message(
            role="assistant",
            tool_calls=first.tool_calls,
            continuation={"provider": "anthropic", "blocks": [block]},
        ),
        Message(role="tool", tool_call_id=first.tool_calls[0].id, content="9C"),
    ]
    with pytest.raises(ProviderError) as info:
        await collect(
            provider.stream(
                MODEL, params(history, tools=[WEATHER], reasoning=Reasoning(effort="low")), TIMEOUTS
            )
        )
    assert info.value.kind == "invalid_request"
    assert "Invalid `signature`" in info.value.message


async def test_prompt_cache_writes_then_reads(provider: AnthropicProvider) -> None:
    messages = [
        Message(role="system", content="You answer questions about the weather in great detail.", cache=True),
        Message(role="user", content="hello"),
    ]
    first = assemble(await collect(provider.stream(MODEL, params(messages), TIMEOUTS)))
    second = assemble(await collect(provider.complete(MODEL, params(messages), TIMEOUTS)))
    assert first.usage.cache_write_tokens > 0 and first.usage.cache_read_tokens == 0
    assert (
        second.usage.cache_read_tokens == first.usage.cache_write_tokens
        and second.usage.cache_write_tokens == 0
    )
    assert first.usage.input_tokens == second.usage.input_tokens  # every prompt token, cached or not


async def test_images_are_accepted(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    parts: list[TextPart | ImagePart] = [
        TextPart(text="what is this"),
        ImagePart(data="iVBORw0KGgoAAAANSUhEUgAAAAE="),
        ImagePart(url="https://x.test/a.png"),
    ]
    result = assemble(
        await collect(provider.complete(MODEL, params([Message(role="user", content=parts)]), TIMEOUTS))
    )
    assert result.text == "Echo: what is this"
    sources = [b["source"]["type"] for b in fake.requests[0].json()["messages"][0]["content"][1:]]
    assert sources == ["base64", "url"]


# --- recordings ---------------------------------------------------------------------------------


def recorded(name: str) -> list[dict[str, Any]]:
    text = (FIXTURES_DIR / name).read_text()
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


STREAM_FIXTURES = [
    "anthropic-sdk-stream-basic.sse",
    "anthropic-sdk-stream-tool-use.sse",
    "anthropic-stream-minimal.chunks.jsonl",
    "anthropic-stream-text.chunks.jsonl",
    "anthropic-stream-thinking-signature.chunks.jsonl",
    "anthropic-stream-thinking.response.sse",
    "anthropic-stream-tool-use.chunks.jsonl",
]


@pytest.mark.parametrize("name", STREAM_FIXTURES)
async def test_recorded_streams_replayed_over_http(
    name: str, fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    fake.enqueue(fixture_reply(name))
    events = await collect(provider.stream(MODEL, params([Message(role="user", content="x")]), TIMEOUTS))
    assert_grammar(events)
    result = assemble(events)
    data = recorded(name)
    deltas = [d["delta"] for d in data if d["type"] == "content_block_delta"]
    assert result.text == "".join(d.get("text", "") for d in deltas if d["type"] == "text_delta")
    assert (result.thinking or "") == "".join(d["thinking"] for d in deltas if d["type"] == "thinking_delta")
    tool_blocks = [
        d["content_block"]
        for d in data
        if d["type"] == "content_block_start" and d["content_block"]["type"] == "tool_use"
    ]
    assert [c.id for c in result.tool_calls] == [b["id"] for b in tool_blocks]
    assert all(c.arguments for c in result.tool_calls)
    final = next(d for d in data if d["type"] == "message_delta")
    assert result.usage.output_tokens == final["usage"]["output_tokens"]
    signature = "".join(d["signature"] for d in deltas if d["type"] == "signature_delta")
    assert (result.continuation is not None) == bool(signature)
    if signature:
        assert result.continuation == {
            "provider": "anthropic",
            "blocks": [{"type": "thinking", "thinking": result.thinking, "signature": signature}],
        }


async def test_recorded_message_replayed_over_http(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    fake.enqueue(fixture_reply("anthropic-messages-nonstream-thinking-tooluse.response.json"))
    result = assemble(
        await collect(provider.complete(MODEL, params([Message(role="user", content="x")]), TIMEOUTS))
    )
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [
        ("toolu_01YGzqpRE16Vricda3Aqcejo", "get_user_country", {})
    ]
    assert (result.finish_reason, result.usage.input_tokens, result.usage.output_tokens) == (
        "tool_calls",
        398,
        155,
    )
    assert result.continuation is not None and result.continuation["blocks"][0]["signature"].startswith(
        "EqEECkYICxgC"
    )


# --- failures -----------------------------------------------------------------------------------


async def test_wrong_key_is_auth_failed(fake: FakeAnthropic, http: HttpClient) -> None:
    bad = make_provider(fake, http, key="sk-ant-api03-wrong")
    with pytest.raises(ProviderError) as info:
        await collect(bad.stream(MODEL, params([Message(role="user", content="x")]), TIMEOUTS))
    err = info.value
    assert (err.kind, err.status, err.provider) == ("auth_failed", 401, "anthropic")
    assert "invalid x-api-key" in err.message
    assert err.upstream_request_id and err.upstream_request_id.startswith("req_")
    assert "sk-ant-api03-wrong" not in err.message


@pytest.mark.parametrize(
    ("reply", "kind", "status", "retry_after"),
    [
        (lambda: error_reply(429, retry_after=7), "rate_limited", 429, 7.0),
        (lambda: error_reply(529), "provider_error", 529, None),
        (lambda: error_reply(500), "provider_error", 500, None),
        (lambda: error_reply(400, message="messages: roles must alternate"), "invalid_request", 400, None),
        (lambda: error_reply(404, message="model: claude-nope"), "model_not_found", 404, None),
    ],
)
@pytest.mark.parametrize("method", ["stream", "complete"])
async def test_http_errors_map_to_kinds(
    method: str,
    reply: Callable[[], Any],
    kind: str,
    status: int,
    retry_after: float | None,
    fake: FakeAnthropic,
    provider: AnthropicProvider,
) -> None:
    fake.enqueue(reply())
    call = provider.stream if method == "stream" else provider.complete
    with pytest.raises(ProviderError) as info:
        await collect(call(MODEL, params([Message(role="user", content="x")]), TIMEOUTS))
    assert (info.value.kind, info.value.status, info.value.retry_after_s) == (kind, status, retry_after)


async def test_a_request_anthropic_rejects_is_invalid_request(provider: AnthropicProvider) -> None:
    # The contract allows temperature up to 2; Anthropic only up to 1 and says so.
    with pytest.raises(ProviderError) as info:
        await collect(
            provider.stream(MODEL, params([Message(role="user", content="x")], temperature=1.5), TIMEOUTS)
        )
    assert info.value.kind == "invalid_request"
    assert "temperature" in info.value.message


async def test_overloaded_inside_the_stream(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    fake.enqueue(midstream_error_reply(("Partial", " answer")))
    seen: list[ProviderEvent] = []
    with pytest.raises(ProviderError) as info:
        async for ev in provider.stream(MODEL, params([Message(role="user", content="x")]), TIMEOUTS):
            seen.append(ev)
    assert (info.value.kind, info.value.status) == ("provider_error", None)
    assert "Overloaded" in info.value.message and "in the stream" in info.value.message
    assert [e.text for e in seen if isinstance(e, TextDelta)] == ["Partial", " answer"]
    assert isinstance(seen[-1], UsageEvent) and seen[-1].input_tokens == 12  # the partial usage, relayed


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda ev: ev[:-1], "ended before the answer was complete"),  # no message_stop, clean end of body
        (lambda ev: [*ev[:5], Abort()], "lost before the answer was complete"),
        (lambda ev: [*ev[:5], Abort(reset=True)], "lost before the answer was complete"),
    ],
)
async def test_a_stream_cut_short_is_a_network_error(
    edit: Callable[[list[bytes]], list[Any]], words: str, fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    fake.edit_stream = edit
    seen: list[ProviderEvent] = []
    with pytest.raises(ProviderError) as info:
        async for ev in provider.stream(
            MODEL, params([Message(role="user", content="hello there")]), TIMEOUTS
        ):
            seen.append(ev)
    assert info.value.kind == "network_error"
    assert words in info.value.message
    assert isinstance(seen[-1], UsageEvent)


@pytest.mark.parametrize("hold", [Stall(), Pause(30)])
async def test_cancelling_closes_the_upstream_connection(
    hold: Stall | Pause, fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    fake.edit_stream = lambda ev: [*ev[:4], hold, *ev[4:]]  # message_start, block start, ping, "Echo"
    got_text = anyio.Event()

    async def consume() -> None:
        async for ev in provider.stream(
            MODEL, params([Message(role="user", content="hello there")]), TIMEOUTS
        ):
            if isinstance(ev, TextDelta):
                got_text.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await got_text.wait()
            tg.cancel_scope.cancel()
        assert await anyio.to_thread.run_sync(fake.wait_for_disconnect)
    assert fake.completed_streams == 0


# --- keys ---------------------------------------------------------------------------------------


async def test_validate_key(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    ok = await provider.validate_key(fake.valid_key, TIMEOUTS)
    assert (ok.valid, ok.error) == (True, None)
    req = fake.requests[0]
    assert (req.method, req.path, req.query) == ("GET", "/v1/models", {"limit": "1"})
    assert req.headers["x-api-key"] == fake.valid_key and req.headers["anthropic-version"] == "2023-06-01"
    bad = await provider.validate_key("sk-ant-api03-nope", TIMEOUTS)
    assert bad.valid is False and bad.error is not None and bad.error.kind == "auth_failed"


async def test_validate_key_that_cannot_be_checked_raises(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    fake.enqueue(error_reply(529))
    with pytest.raises(ProviderError) as info:
        await provider.validate_key(fake.valid_key, TIMEOUTS)
    assert info.value.kind == "provider_error"


# --- the fake itself ----------------------------------------------------------------------------


def test_the_fake_frames_streams_and_headers_like_anthropic(fake: FakeAnthropic) -> None:
    import httpx2

    body = {
        "model": MODEL,
        "max_tokens": 1024,
        "stream": True,
        "messages": [{"role": "user", "content": "weather in Oslo"}],
        "tools": [{"name": "get_weather", "description": "", "input_schema": {"type": "object"}}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    ok_headers = {"x-api-key": fake.valid_key, "anthropic-version": "2023-06-01"}
    with httpx2.Client(base_url=fake.url, timeout=5) as client:
        response = client.post("/v1/messages", json={**body, "max_tokens": 2048}, headers=ok_headers)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["request-id"].startswith("req_011C")
        for name in ("requests", "tokens", "input-tokens", "output-tokens"):
            assert int(response.headers[f"anthropic-ratelimit-{name}-limit"]) > 0
            assert int(response.headers[f"anthropic-ratelimit-{name}-remaining"]) >= 0
            reset = response.headers[f"anthropic-ratelimit-{name}-reset"]
            assert reset.endswith("Z") and reset[10] == "T"  # RFC 3339
        raw = response.content
        assert raw.endswith(b"\n\n") and b"[DONE]" not in raw
        events = [e for e in raw.split(b"\n\n") if e]
        assert b'event: ping\ndata: {"type": "ping"}' in events
        names = []
        for ev in events:
            head, data = ev.split(b"\n")
            name = head.removeprefix(b"event: ").decode()
            assert json.loads(data.removeprefix(b"data: "))["type"] == name
            names.append(name)
        assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
        assert any(ev.endswith(b"  }") for ev in events)  # padding before the final brace
        deltas = [
            json.loads(ev.split(b"\n")[1][6:])["delta"] for ev in events if b"content_block_delta" in ev
        ]
        assert [d["type"] for d in deltas if d["type"] == "signature_delta"] == ["signature_delta"]
        assert next(d["partial_json"] for d in deltas if d["type"] == "input_json_delta") == ""

        # What the real API refuses.
        refused = [
            ({"anthropic-version": "2023-06-01"}, body, 401, "x-api-key header is required"),
            ({**ok_headers, "x-api-key": "sk-ant-nope"}, body, 401, "invalid x-api-key"),
            ({"x-api-key": fake.valid_key}, body, 400, "anthropic-version"),
            (ok_headers, body, 400, "`max_tokens` must be greater than `thinking.budget_tokens`"),
            (
                ok_headers,
                {k: v for k, v in body.items() if k != "max_tokens"},
                400,
                "max_tokens: Field required",
            ),
        ]
        for headers, sent, status, words in refused:
            response = client.post("/v1/messages", json=sent, headers=headers)
            assert response.status_code == status
            error = response.json()
            assert error["type"] == "error" and words in error["error"]["message"]
            assert (
                error["request_id"].startswith("req_")
                and response.headers["request-id"] == error["request_id"]
            )

        page = client.get("/v1/models", params={"limit": 2}, headers=ok_headers).json()
        assert [m["type"] for m in page["data"]] == ["model", "model"]
        assert page["has_more"] is True and page["first_id"] == page["data"][0]["id"]
        rest = client.get("/v1/models", params={"after_id": page["last_id"]}, headers=ok_headers).json()
        assert rest["has_more"] is False and rest["data"][0]["id"] != page["last_id"]
