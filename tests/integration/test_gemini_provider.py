"""The Gemini provider against the fake Gemini API over real HTTP on 127.0.0.1.

Stream and complete agree; a tool-use loop carries Gemini 3 thought signatures across turns; the
key goes in the header only; errors map to the contract's kinds; cancelling a stream closes the
upstream connection; recorded streams replay through the whole path; and the fake itself looks
like the recordings.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

import anyio
import httpx2
import msgspec
import pytest

from sidecar.core.assemble import Assembler, ProviderEvent
from sidecar.errors import ProviderError, SidecarError
from sidecar.providers.base import ProviderSpec
from sidecar.providers.gemini import GeminiProvider
from sidecar.providers.http import HttpClient, Timeouts
from sidecar.wire.chat import ChatResult, CompleteParams, TextDelta, ThinkingDelta, ToolCallDelta, UsageEvent
from tests.fakes.behaviour import Conversation, Turn, plan
from tests.fakes.gemini import (
    FIXTURES_DIR,
    VALID_KEY,
    FakeGemini,
    error_reply,
    fixture_reply,
    midstream_error_reply,
)
from tests.fakes.http import Abort, Stall

pytestmark = pytest.mark.anyio

TIMEOUTS = Timeouts(connect_s=2.0, read_s=3.0, write_s=2.0)
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with FakeGemini() as upstream:
        yield upstream


def make_provider(base_url: str, key: str = VALID_KEY) -> GeminiProvider:
    async def get_key(provider_id: str, env: str | None, account: str | None) -> str:
        assert (provider_id, env) == ("gemini", "GEMINI_API_KEY")
        return key

    spec = ProviderSpec(id="gemini", kind="gemini", base_url=base_url, key_env="GEMINI_API_KEY")
    return GeminiProvider(spec, HttpClient("test"), get_key)


@pytest.fixture
async def provider(fake: FakeGemini) -> AsyncIterator[GeminiProvider]:
    p = make_provider(fake.url)
    yield p
    await p.http.aclose()


def params(**fields: Any) -> CompleteParams:
    fields.setdefault("model", "gemini:x")
    fields.setdefault("messages", [{"role": "user", "content": "What is the weather in Paris?"}])
    return msgspec.convert(fields, CompleteParams)


async def collect(events: AsyncGenerator[ProviderEvent, None]) -> list[ProviderEvent]:
    out: list[ProviderEvent] = []
    async with contextlib.aclosing(events):
        async for event in events:
            out.append(event)
    return out


def assemble(events: list[ProviderEvent]) -> ChatResult:
    assembler = Assembler()
    for event in events:
        assembler.add(event)
    return assembler.result(provider="gemini", model="m")


async def run(provider: GeminiProvider, model: str, p: CompleteParams, *, stream: bool) -> ChatResult:
    source = provider.stream if stream else provider.complete
    return assemble(await collect(source(model, p, TIMEOUTS)))


# --- request shape ------------------------------------------------------------------------------


async def test_stream_request_uses_the_sse_route_and_the_key_header(
    fake: FakeGemini, provider: GeminiProvider
) -> None:
    await run(provider, "gemini-2.5-flash", params(), stream=True)
    (req,) = fake.requests
    assert (req.method, req.path, req.query) == (
        "POST",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        {"alt": "sse"},
    )
    assert req.headers["x-goog-api-key"] == VALID_KEY
    assert "key" not in req.query and VALID_KEY not in req.path
    assert "authorization" not in req.headers
    assert req.headers["content-type"] == "application/json"
    assert req.json() == {
        "contents": [{"role": "user", "parts": [{"text": "What is the weather in Paris?"}]}]
    }


async def test_complete_request_uses_generate_content(fake: FakeGemini, provider: GeminiProvider) -> None:
    await run(provider, "gemini-2.5-flash", params(), stream=False)
    (req,) = fake.requests
    assert (req.path, req.query) == ("/v1beta/models/gemini-2.5-flash:generateContent", {})
    assert req.headers["x-goog-api-key"] == VALID_KEY


async def test_base_url_may_name_the_api_version(fake: FakeGemini) -> None:
    p = make_provider(fake.url + "/v1beta/")
    try:
        result = await run(p, "gemini-2.5-flash", params(), stream=False)
    finally:
        await p.http.aclose()
    assert result.text == "Echo: What is the weather in Paris?"
    assert fake.requests[0].path == "/v1beta/models/gemini-2.5-flash:generateContent"


# --- stream and complete agree with the model -----------------------------------------------------

SCENARIOS: dict[str, dict[str, Any]] = {
    "text": {},
    "thinking": {"reasoning": {"budget_tokens": 1024}},
    "tool": {"tools": [WEATHER]},
    "tool+thinking": {"tools": [WEATHER], "reasoning": {"effort": "high"}},
    "length": {"max_tokens": 3},
}


def expected(scenario: str) -> Any:
    fields = SCENARIOS[scenario]
    return plan(
        Conversation(
            turns=[Turn("user", "What is the weather in Paris?")],
            tools=["get_weather"] if "tools" in fields else [],
            want_reasoning="reasoning" in fields,
            max_tokens=fields.get("max_tokens"),
        )
    )


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "gemini-3-pro-preview"])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
async def test_stream_and_complete_agree(provider: GeminiProvider, model: str, scenario: str) -> None:
    p = params(**SCENARIOS[scenario])
    streamed_events = await collect(provider.stream(model, p, TIMEOUTS))
    streamed = assemble(streamed_events)
    completed = await run(provider, model, p, stream=False)
    want = expected(scenario)
    for result in (streamed, completed):
        assert result.text == want.text
        assert result.thinking == want.thinking
        assert [(c.name, c.arguments) for c in result.tool_calls] == (
            [(want.tool_call.name, want.tool_call.arguments)] if want.tool_call else []
        )
        assert result.finish_reason == want.finish
        assert result.usage.input_tokens == want.input_tokens
        assert result.usage.output_tokens == want.output_tokens
        assert result.usage.reasoning_tokens == want.reasoning_tokens
        signed = model.startswith("gemini-3")
        assert (result.continuation is not None) == (signed or want.tool_call is not None)
    # The stream relays each piece as it comes, thinking first; exactly one usage event, last.
    assert [e.text for e in streamed_events if isinstance(e, TextDelta)] == want.text_pieces
    assert [e.text for e in streamed_events if isinstance(e, ThinkingDelta)] == want.thinking_pieces
    assert [type(e) for e in streamed_events].count(UsageEvent) == 1
    assert isinstance(streamed_events[-1], UsageEvent)
    calls = [e for e in streamed_events if isinstance(e, ToolCallDelta)]
    assert len(calls) == (1 if want.tool_call else 0)


# --- the tool-use loop --------------------------------------------------------------------------


def follow_up(first: ChatResult, result_text: str = "sunny") -> list[dict[str, Any]]:
    (call,) = first.tool_calls
    return [
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": first.text,
            "tool_calls": [msgspec.to_builtins(call)],
            "continuation": first.continuation,
        },
        {"role": "tool", "tool_call_id": call.id, "content": result_text},
    ]


@pytest.mark.parametrize("stream", [True, False])
async def test_tool_loop_carries_the_thought_signature(
    fake: FakeGemini, provider: GeminiProvider, stream: bool
) -> None:
    model = "gemini-3-pro-preview"
    first = await run(provider, model, params(tools=[WEATHER]), stream=stream)
    assert first.finish_reason == "tool_calls"
    assert first.continuation is not None
    (signature,) = [s["signature"] for s in first.continuation["signatures"]]
    assert signature in fake.issued_signatures

    second = await run(provider, model, params(tools=[WEATHER], messages=follow_up(first)), stream=stream)
    assert second.text == "The tool said: sunny"
    assert second.finish_reason == "stop"
    sent = fake.requests[-1].json()
    (call_part,) = sent["contents"][1]["parts"]
    assert call_part["thoughtSignature"] == signature
    assert "id" not in call_part["functionCall"]  # the id was made up by the sidecar
    assert sent["contents"][2]["parts"][0]["functionResponse"] == {
        "name": "get_weather",
        "response": {"result": "sunny"},
    }


async def test_gemini3_rejects_a_tool_turn_without_its_signature(provider: GeminiProvider) -> None:
    first = await run(provider, "gemini-3-pro-preview", params(tools=[WEATHER]), stream=True)
    messages = follow_up(first)
    messages[1]["continuation"] = None  # a host that dropped the continuation
    with pytest.raises(ProviderError) as caught:
        await run(provider, "gemini-3-pro-preview", params(tools=[WEATHER], messages=messages), stream=True)
    assert caught.value.kind == "invalid_request"
    assert "thought_signature" in caught.value.message


async def test_call_ids_sent_by_gemini_go_back(fake: FakeGemini, provider: GeminiProvider) -> None:
    fake.send_call_ids = True
    first = await run(provider, "gemini-2.5-flash", params(tools=[WEATHER]), stream=True)
    want = expected("tool").tool_call
    assert [c.id for c in first.tool_calls] == [want.id]
    second = await run(
        provider, "gemini-2.5-flash", params(tools=[WEATHER], messages=follow_up(first)), stream=False
    )
    assert second.text == "The tool said: sunny"
    sent = fake.requests[-1].json()
    assert sent["contents"][1]["parts"][0]["functionCall"]["id"] == want.id
    assert sent["contents"][2]["parts"][0]["functionResponse"]["id"] == want.id


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
async def test_wrong_key_is_auth_failed(fake: FakeGemini, stream: bool) -> None:
    p = make_provider(fake.url, key="AIzaSyWrongKey-000000000000000000000000")
    try:
        with pytest.raises(ProviderError) as caught:
            await run(p, "gemini-2.5-flash", params(), stream=stream)
    finally:
        await p.http.aclose()
    assert caught.value.kind == "auth_failed"
    assert caught.value.status == 400
    assert "AIzaSyWrongKey" not in caught.value.message


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(
    ("status", "kind"),
    [(403, "auth_failed"), (429, "rate_limited"), (500, "provider_error"), (503, "provider_error")],
)
async def test_error_statuses(
    fake: FakeGemini, provider: GeminiProvider, status: int, kind: str, stream: bool
) -> None:
    fake.enqueue(error_reply(status))
    with pytest.raises(ProviderError) as caught:
        await run(provider, "gemini-2.5-flash", params(), stream=stream)
    assert (caught.value.kind, caught.value.status, caught.value.provider) == (kind, status, "gemini")
    assert caught.value.retry_after_s == (34.4 if status == 429 else None)


async def test_unknown_model_is_model_not_found(fake: FakeGemini, provider: GeminiProvider) -> None:
    fake.strict_models = True
    with pytest.raises(ProviderError) as caught:
        await run(provider, "gemini-9-nope", params(), stream=True)
    assert caught.value.kind == "model_not_found"


async def test_error_inside_a_stream_keeps_partial_text_and_usage(
    fake: FakeGemini, provider: GeminiProvider
) -> None:
    fake.enqueue(midstream_error_reply(("Partial", " answer"), status=500))
    events: list[ProviderEvent] = []
    with pytest.raises(ProviderError) as caught:
        async for event in provider.stream("gemini-2.5-flash", params(), TIMEOUTS):
            events.append(event)
    assert caught.value.kind == "provider_error"
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Partial", " answer"]
    assert isinstance(events[-1], UsageEvent)


async def test_stream_that_ends_without_a_finish_reason_is_a_network_error(
    fake: FakeGemini, provider: GeminiProvider
) -> None:
    fake.edit_stream = lambda events: [*events[:-1]]
    events: list[ProviderEvent] = []
    with pytest.raises(ProviderError) as caught:
        async for event in provider.stream("gemini-2.5-flash", params(), TIMEOUTS):
            events.append(event)
    assert caught.value.kind == "network_error"
    assert isinstance(events[-1], UsageEvent)  # the partial usage Gemini had reported


async def test_connection_lost_mid_stream_is_a_network_error(
    fake: FakeGemini, provider: GeminiProvider
) -> None:
    fake.edit_stream = lambda events: [*events[:2], Abort()]
    with pytest.raises(SidecarError) as caught:
        await run(provider, "gemini-2.5-flash", params(), stream=True)
    assert caught.value.kind == "network_error"


async def test_cancelling_a_stream_closes_the_upstream_connection(
    fake: FakeGemini, provider: GeminiProvider
) -> None:
    fake.edit_stream = lambda events: [events[0], Stall()]
    seen: list[ProviderEvent] = []
    with anyio.CancelScope() as scope:
        events = provider.stream("gemini-2.5-flash", params(), TIMEOUTS)
        async with contextlib.aclosing(events):
            async for event in events:
                seen.append(event)
                if isinstance(event, TextDelta):
                    scope.cancel()
    assert scope.cancelled_caught
    assert [e.text for e in seen if isinstance(e, TextDelta)] == ["Echo"]
    assert await anyio.to_thread.run_sync(lambda: fake.wait_for_disconnect(timeout=3.0))


# --- validate_key -------------------------------------------------------------------------------


async def test_validate_key(fake: FakeGemini, provider: GeminiProvider) -> None:
    good = await provider.validate_key(VALID_KEY, TIMEOUTS)
    assert good.valid and good.error is None
    bad = await provider.validate_key("AIzaSyNotAValidKey-00000000000000000000", TIMEOUTS)
    assert not bad.valid
    assert bad.error is not None and bad.error.kind == "auth_failed"
    first, second = fake.requests
    assert (first.method, first.path, first.query) == ("GET", "/v1beta/models", {"pageSize": "1"})
    assert first.headers["x-goog-api-key"] == VALID_KEY
    assert second.headers["x-goog-api-key"].startswith("AIzaSyNotAValidKey")


async def test_validate_key_reports_a_down_service_as_an_error(
    fake: FakeGemini, provider: GeminiProvider
) -> None:
    fake.enqueue(error_reply(503))
    with pytest.raises(ProviderError) as caught:
        await provider.validate_key(VALID_KEY, TIMEOUTS)
    assert caught.value.kind == "provider_error"


# --- recorded streams through the whole path ----------------------------------------------------

REPLAYS = {
    "gemini-stream-text.response.sse": ("The capital of France is Paris.\n", []),
    "gemini-stream-functioncall-then-text.0.response.sse": ("", ["get_country"]),
    "gemini-stream-functioncall-then-text.1.response.sse": ("The capital of Mexico is Mexico City.", []),
    "gemini-stream-text-gemini3.chunks.jsonl": (
        'There are **3** "r"s in strawberry.\n\nst**r**awbe**rr**y',
        [],
    ),
    "gemini-stream-functioncall-gemini3.chunks.jsonl": ("", ["weather"]),
    "gemini-generatecontent-functioncall-roundtrip.0.response.json": ("", ["get_user_country"]),
    "gemini-generatecontent-functioncall-roundtrip.1.response.json": ("", ["final_result"]),
}


@pytest.mark.parametrize("name", sorted(REPLAYS))
async def test_recorded_answers_replay_through_the_provider(
    fake: FakeGemini, provider: GeminiProvider, name: str
) -> None:
    fake.enqueue(fixture_reply(name))
    result = await run(provider, "gemini-3-pro-preview", params(), stream=not name.endswith(".json"))
    text, calls = REPLAYS[name]
    assert result.text == text
    assert [c.name for c in result.tool_calls] == calls


async def test_recorded_429_through_the_provider(fake: FakeGemini, provider: GeminiProvider) -> None:
    fake.enqueue(fixture_reply("gemini-429-error.json", status=429))
    with pytest.raises(ProviderError) as caught:
        await run(provider, "gemini-2.5-flash", params(), stream=True)
    assert (caught.value.kind, caught.value.retry_after_s) == ("rate_limited", 34.4)


# --- the fake looks like the recordings ---------------------------------------------------------


def recorded_chunks() -> list[dict[str, Any]]:
    chunks = []
    for path in sorted(FIXTURES_DIR.glob("gemini-stream-*")):
        if path.name.endswith(".chunks.jsonl"):
            chunks += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        elif path.suffix == ".sse":
            chunks += [
                json.loads(line[6:]) for line in path.read_text().splitlines() if line.startswith("data: ")
            ]
    return chunks


def keys(chunks: list[dict[str, Any]], pick: Any) -> set[str]:
    return {key for chunk in chunks for obj in pick(chunk) for key in obj}


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "gemini-3-pro-preview"])
@pytest.mark.parametrize("tools", [True, False])
def test_fake_stream_is_framed_and_shaped_like_the_recordings(
    fake: FakeGemini, model: str, tools: bool
) -> None:
    payload: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": "Hello there"}]}]}
    if tools:
        payload["tools"] = [{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT"}}]}]
    response = httpx2.post(
        f"{fake.url}/v1beta/models/{model}:streamGenerateContent?alt=sse",
        headers={"x-goog-api-key": VALID_KEY},
        json=payload,
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    raw = response.content
    assert raw.endswith(b"\r\n\r\n") and b"[DONE]" not in raw
    events = raw.split(b"\r\n\r\n")[:-1]
    assert all(e.startswith(b"data: ") and b"\n" not in e for e in events)
    chunks = [json.loads(e[6:]) for e in events]
    recorded = recorded_chunks()
    assert keys(chunks, lambda c: [c]) <= keys(recorded, lambda c: [c])
    assert keys(chunks, lambda c: c["candidates"]) <= keys(recorded, lambda c: c["candidates"])
    assert keys(chunks, lambda c: [c["usageMetadata"]]) <= keys(recorded, lambda c: [c["usageMetadata"]])
    assert all("usageMetadata" in c for c in chunks)
    finishes = [c["candidates"][0].get("finishReason") for c in chunks]
    assert finishes[-1] == "STOP" and not any(finishes[:-1])
    parts = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]
    signed = [p for p in parts if "thoughtSignature" in p]
    if not model.startswith("gemini-3"):
        assert signed == []
    elif tools:  # as recorded: the signature on the call, then an unsigned empty text part
        assert [list(p) for p in signed] == [["functionCall", "thoughtSignature"]]
        assert parts[-1] == {"text": ""}
    else:  # as recorded: the signature on the trailing empty text part
        assert signed == [parts[-1]] and parts[-1]["text"] == ""


def test_fake_rejects_what_gemini_rejects(fake: FakeGemini) -> None:
    url = f"{fake.url}/v1beta/models/gemini-2.5-flash:generateContent"
    ask = [{"role": "user", "parts": [{"text": "hi"}]}]
    cases = [
        {"contents": []},
        {"contents": [{"role": "assistant", "parts": [{"text": "hi"}]}]},
        {"contents": ask, "generation_config": {"max_tokens": 5}},
        {
            "contents": ask,
            "tools": [
                {
                    "functionDeclarations": [
                        {"name": "f", "parameters": {"type": "OBJECT", "additionalProperties": False}}
                    ]
                }
            ],
        },
        {
            "contents": ask,
            "generationConfig": {"thinkingConfig": {"thinkingBudget": 5, "thinkingLevel": "low"}},
        },
    ]
    for case in cases:
        response = httpx2.post(url, headers={"x-goog-api-key": VALID_KEY}, json=case)
        assert response.status_code == 400, case
        assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    no_key = httpx2.post(url, json={"contents": ask})
    assert no_key.status_code == 403
    bad_key = httpx2.post(url, headers={"x-goog-api-key": "nope"}, json={"contents": ask})
    assert bad_key.status_code == 400
    assert bad_key.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
