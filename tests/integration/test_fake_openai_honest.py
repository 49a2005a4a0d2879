"""The OpenAI-compatible fakes are honest: the official SDK accepts them and they match the recordings.

If these pass, a sidecar test that talks to ``FakeOpenAICompat`` talks to something the real
``openai`` client cannot tell apart from the provider in every way these tests look at.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from tests.fakes.http import Stall
from tests.fakes.openai_compat import (
    FIXTURES_DIR,
    FakeOpenAICompat,
    Flavor,
    error_reply,
    fixture_reply,
    midstream_error_reply,
    pkce_challenge,
)

FLAVORS: list[Flavor] = ["openai", "xai", "openrouter"]
TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_capital",
            "parameters": {"type": "object", "properties": {"country": {"type": "string"}}},
        },
    }
]
ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is the capital of the UK?"}]


@pytest.fixture(params=FLAVORS)
def fake(request: pytest.FixtureRequest) -> Iterator[FakeOpenAICompat]:
    with FakeOpenAICompat(request.param) as upstream:
        yield upstream


@pytest.fixture
def openai_fake() -> Iterator[FakeOpenAICompat]:
    with FakeOpenAICompat("openai") as upstream:
        yield upstream


_clients: list[OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def sdk(fake: FakeOpenAICompat, key: str | None = None) -> OpenAI:
    """The official client, configured the way the brief requires (no retries), closed after the test."""
    client = OpenAI(base_url=fake.api_base, api_key=key or min(fake.valid_keys), max_retries=0, timeout=5.0)
    _clients.append(client)
    return client


def recorded_chunks(name: str) -> list[dict[str, Any]]:
    """The data payloads of a recorded stream fixture (``.chunks.jsonl`` or ``.response.sse``)."""
    text = (FIXTURES_DIR / name).read_text()
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    payloads = [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]
    return [json.loads(p) for p in payloads if p != "[DONE]"]


def raw_stream(fake: FakeOpenAICompat, **body: Any) -> tuple[httpx2.Response, list[dict[str, Any]]]:
    """POST a streaming chat request with httpx2 and decode every data payload."""
    payload = {"model": fake.models[0], "messages": ASK, "stream": True, **body}
    headers = {"authorization": f"Bearer {min(fake.valid_keys)}"}
    response = httpx2.post(f"{fake.api_base}/chat/completions", json=payload, headers=headers, timeout=5.0)
    lines = [line[len("data: ") :] for line in response.text.split("\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return response, [json.loads(line) for line in lines[:-1]]


# -------------------- the official SDK against every flavor


def test_sdk_non_stream_completion(fake: FakeOpenAICompat) -> None:
    completion = sdk(fake).chat.completions.create(model=fake.models[0], messages=ASK)

    choice = completion.choices[0]
    assert choice.message.content == "Echo: What is the capital of the UK?"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 7 + 3


def test_sdk_stream_reassembles_tool_call_fragments(fake: FakeOpenAICompat) -> None:
    stream = sdk(fake).chat.completions.create(
        model=fake.models[0],
        messages=ASK,
        tools=TOOLS,
        stream=True,
    )

    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for frag in choice.delta.tool_calls or []:
                call = calls.setdefault(frag.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += frag.id or ""
                if frag.function:
                    call["name"] += frag.function.name or ""
                    call["arguments"] += frag.function.arguments or ""

    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["id"].startswith("call_")
    assert calls[0]["name"] == "get_capital"
    assert json.loads(calls[0]["arguments"]) == {"input": "What is the capital of the UK?"}


def test_sdk_tool_result_round_trip(fake: FakeOpenAICompat) -> None:
    first = sdk(fake).chat.completions.create(model=fake.models[0], messages=ASK, tools=TOOLS)
    call = first.choices[0].message.tool_calls
    assert call is not None
    history: list[Any] = [
        *ASK,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call[0].id, "content": "London"},
    ]

    second = sdk(fake).chat.completions.create(model=fake.models[0], messages=history, tools=TOOLS)

    assert second.choices[0].message.content == "The tool said: London"


def test_sdk_usage_chunk_when_include_usage(fake: FakeOpenAICompat) -> None:
    stream = sdk(fake).chat.completions.create(
        model=fake.models[0],
        messages=ASK,
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=3,
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: What i"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (10, 3)


def test_usage_chunk_only_on_request_except_openrouter(fake: FakeOpenAICompat) -> None:
    _, chunks = raw_stream(fake)

    has_usage_chunk = chunks[-1]["choices"] == []
    assert has_usage_chunk == (fake.flavor == "openrouter")


def test_bad_key_fails_the_providers_way(fake: FakeOpenAICompat) -> None:
    expected = openai.BadRequestError if fake.flavor == "xai" else openai.AuthenticationError

    with pytest.raises(expected) as info:
        sdk(fake, key="sk-wrong-key-123456").chat.completions.create(model="m", messages=ASK)

    body = info.value.response.json()
    if fake.flavor == "openai":
        assert body["error"]["code"] == "invalid_api_key"
        assert "sk-wro********3456" in body["error"]["message"]
    elif fake.flavor == "xai":
        assert body == {
            "code": "invalid-argument",
            "error": "Incorrect API key provided. You can obtain an API key from https://console.x.ai.",
        }
    else:
        assert body == {"error": {"code": 401, "message": "User not found."}}


def test_enqueued_429_is_a_rate_limit_error(fake: FakeOpenAICompat) -> None:
    fake.enqueue(error_reply(429, fake.flavor, retry_after_s=2))

    with pytest.raises(openai.RateLimitError) as info:
        sdk(fake).chat.completions.create(model=fake.models[0], messages=ASK)

    assert info.value.response.headers["retry-after"] == "2"
    if fake.flavor == "openai":
        assert info.value.response.headers["retry-after-ms"] == "2000"
        assert info.value.code == "rate_limit_exceeded"


def test_midstream_error_chunk_is_an_api_error(fake: FakeOpenAICompat) -> None:
    fake.enqueue(midstream_error_reply(fake.flavor))
    stream = sdk(fake).chat.completions.create(model=fake.models[0], messages=ASK, stream=True)

    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            received += [c.delta.content or "" for c in chunk.choices]

    assert "".join(received) == "Partial answer"
    if fake.flavor == "openai":
        assert info.value.message.startswith("The server had an error")


def test_stall_then_client_close_is_seen_upstream(fake: FakeOpenAICompat) -> None:
    fake.edit_stream = lambda events: [*events[:4], Stall()]
    stream = sdk(fake).chat.completions.create(model=fake.models[0], messages=ASK, stream=True)

    next(iter(stream))
    stream.close()

    assert fake.wait_for_disconnect(timeout=2.0)
    assert fake.completed_streams == 0


# -------------------- OpenAI specifics


def test_openai_headers_and_models(openai_fake: FakeOpenAICompat) -> None:
    raw = sdk(openai_fake).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=ASK)

    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["x-ratelimit-limit-requests"] == "5000"
    assert raw.headers["x-ratelimit-reset-tokens"] == "6m0s"
    assert [m.id for m in sdk(openai_fake).models.list()] == openai_fake.models
    with pytest.raises(openai.NotFoundError):
        sdk(openai_fake).models.retrieve("no-such-model")


def test_openai_strict_models(openai_fake: FakeOpenAICompat) -> None:
    openai_fake.strict_models = True

    with pytest.raises(openai.NotFoundError) as info:
        sdk(openai_fake).chat.completions.create(model="gpt-9", messages=ASK)

    assert info.value.code == "model_not_found"


def test_openai_rejects_orphan_tool_messages(openai_fake: FakeOpenAICompat) -> None:
    orphan: list[ChatCompletionMessageParam] = [
        *ASK,
        {"role": "tool", "tool_call_id": "call_x", "content": "London"},
    ]

    with pytest.raises(openai.BadRequestError, match="role 'tool' must be a response"):
        sdk(openai_fake).chat.completions.create(model="gpt-4o-mini", messages=orphan)


def test_openai_reasoning_models_refuse_sampling_as_reported(openai_fake: FakeOpenAICompat) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk(openai_fake).chat.completions.create(model="gpt-5", messages=ASK, temperature=0)
    assert (info.value.param, info.value.code) == ("temperature", "unsupported_value")
    assert (
        "does not support 0 with this model. Only the default (1) value is supported." in info.value.message
    )
    with pytest.raises(openai.BadRequestError) as info:
        sdk(openai_fake).chat.completions.create(model="o3", messages=ASK, temperature=1, top_p=0.5)
    assert (info.value.param, info.value.code) == ("top_p", "unsupported_parameter")
    with pytest.raises(openai.BadRequestError) as info:
        sdk(openai_fake).chat.completions.create(model="gpt-5-mini", messages=ASK, stop=["\n"])
    assert (info.value.param, info.value.code) == ("stop", "unsupported_parameter")
    answer = sdk(openai_fake).chat.completions.create(model="gpt-5", messages=ASK, temperature=1)
    assert answer.choices[0].message.content
    assert sdk(openai_fake).chat.completions.create(model="gpt-4o", messages=ASK, temperature=0.2).choices


def test_recorded_sse_replays_byte_for_byte(openai_fake: FakeOpenAICompat) -> None:
    name = "openai-chat-stream-toolcall-then-text.0.response.sse"
    openai_fake.enqueue(fixture_reply(name))
    openai_fake.enqueue(fixture_reply(name))

    raw = httpx2.post(f"{openai_fake.api_base}/chat/completions", json={}, timeout=5.0)
    assert raw.content == (FIXTURES_DIR / name).read_bytes()
    assert raw.headers["content-type"] == "text/event-stream; charset=utf-8"

    stream = sdk(openai_fake).chat.completions.create(model="gpt-4o-mini", messages=ASK, stream=True)
    arguments = "".join(
        tc.function.arguments or ""
        for chunk in stream
        for choice in chunk.choices
        for tc in choice.delta.tool_calls or []
        if tc.function
    )
    assert json.loads(arguments) == {"country": "UK"}


def test_recorded_chunks_replay_through_the_sdk(openai_fake: FakeOpenAICompat) -> None:
    openai_fake.enqueue(fixture_reply("openai-chat-stream-text-usage.chunks.jsonl"))
    stream = sdk(openai_fake).chat.completions.create(model="gpt-4o-mini", messages=ASK, stream=True)

    chunks = list(stream)

    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 300


# -------------------- shapes match the recordings


def key_shape(obj: Any) -> Any:
    """Keys, recursively (list shapes from the first element), ignoring values."""
    if isinstance(obj, dict):
        return {k: key_shape(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [key_shape(obj[0])] if obj else []
    return None


def test_openai_chunks_match_recording(openai_fake: FakeOpenAICompat) -> None:
    recorded = recorded_chunks("openai-chat-stream-text-usage.chunks.jsonl")
    _, ours = raw_stream(openai_fake, stream_options={"include_usage": True})

    assert [key_shape(c) for c in (ours[0], ours[1], ours[-2], ours[-1])] == [
        key_shape(c) for c in (recorded[0], recorded[1], recorded[-2], recorded[-1])
    ]
    recorded_tool = recorded_chunks("openai-chat-stream-toolcall-then-text.0.response.sse")
    _, ours_tool = raw_stream(openai_fake, stream_options={"include_usage": True}, tools=TOOLS)
    # the recorded chunks lack service_tier/system_fingerprint only because they are older
    assert key_shape(ours_tool[0]["choices"]) == key_shape(recorded_tool[0]["choices"])
    assert key_shape(ours_tool[1]["choices"]) == key_shape(recorded_tool[1]["choices"])


def test_xai_chunks_match_recording() -> None:
    recorded = recorded_chunks("xai-chat-stream-toolcall.chunks.jsonl")
    with FakeOpenAICompat("xai") as fake:
        _, ours = raw_stream(
            fake, tools=TOOLS, reasoning_effort="low", stream_options={"include_usage": True}
        )

    assert [key_shape(c) for c in (ours[0], ours[1], ours[-3], ours[-2], ours[-1])] == [
        key_shape(c) for c in (recorded[0], recorded[1], recorded[-3], recorded[-2], recorded[-1])
    ]
    usage = ours[-1]["usage"]
    reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] + reasoning


def test_openrouter_shapes_match_recordings() -> None:
    recorded = recorded_chunks("openrouter-stream-comments-midstream-error.response.sse")
    recorded_file = FIXTURES_DIR / "openrouter-chat-toolcall-nonstream.response.json"
    recorded_message = json.loads(recorded_file.read_text())
    with FakeOpenAICompat("openrouter") as fake:
        response, ours = raw_stream(fake, reasoning={"effort": "low"})
        completion = sdk(fake).chat.completions.with_raw_response.create(
            model=fake.models[0],
            messages=ASK,
            tools=TOOLS,
        )

    assert response.text.startswith(": OPENROUTER PROCESSING\n\n")
    assert key_shape(ours[0]) == key_shape(recorded[0])
    assert set(ours[-1]["usage"]) == set(recorded[-1]["usage"])
    body = json.loads(completion.http_response.content)
    assert set(body) >= set(recorded_message)
    assert key_shape(body["choices"][0]) == key_shape(recorded_message["choices"][0])


# -------------------- key validation and OAuth


def test_xai_api_key_route() -> None:
    with FakeOpenAICompat("xai") as fake:
        fake.key_info_overrides["xai-test-valid"] = {"api_key_blocked": True}
        ok = httpx2.get(f"{fake.api_base}/api-key", headers={"authorization": "Bearer xai-test-valid"})
        bad = httpx2.get(f"{fake.api_base}/api-key", headers={"authorization": "Bearer xai-nope"})

    assert ok.json()["redacted_api_key"] == "xai-...alid"
    assert ok.json()["api_key_blocked"] is True
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid-argument")


def test_openrouter_key_and_models_routes() -> None:
    with FakeOpenAICompat("openrouter") as fake:
        key = httpx2.get(f"{fake.api_base}/key", headers={"authorization": "Bearer sk-or-v1-test-valid"})
        missing = httpx2.get(f"{fake.api_base}/key")
        models = httpx2.get(f"{fake.api_base}/models")

    assert key.json()["data"]["limit_remaining"] == 74.5
    assert missing.json() == {"error": {"code": 401, "message": "No auth credentials found"}}
    pricing = models.json()["data"][0]["pricing"]
    assert isinstance(pricing["prompt"], str)
    assert float(pricing["completion"]) > 0


def test_openrouter_oauth_pkce_exchange() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    with FakeOpenAICompat("openrouter") as fake:
        issued = fake.register_oauth_code("code-1", pkce_challenge(verifier))
        exchange = f"{fake.api_base}/auth/keys"

        def attempt(code_verifier: str) -> httpx2.Response:
            body = {"code": "code-1", "code_verifier": code_verifier, "code_challenge_method": "S256"}
            return httpx2.post(exchange, json=body)

        wrong = attempt("x" * 43)
        good = attempt(verifier)
        again = attempt(verifier)
        malformed = httpx2.post(exchange, json={"code_verifier": verifier})
        works = httpx2.get(f"{fake.api_base}/key", headers={"authorization": f"Bearer {issued}"})

    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"  # RFC 7636 appendix B
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (403, 403)
    assert good.json() == {"key": issued, "user_id": "user_fake"}
    assert again.status_code == 403
    assert malformed.status_code == 400
    assert works.status_code == 200


def test_fixture_reply_uses_recorded_status(tmp_path: Path) -> None:
    with FakeOpenAICompat("openrouter") as fake:
        fake.enqueue(fixture_reply("openrouter-429-error.response.json"))
        with pytest.raises(openai.RateLimitError) as info:
            sdk(fake).chat.completions.create(model="m", messages=ASK)

    assert info.value.response.json()["error"]["metadata"]["provider_name"] == "Google"
