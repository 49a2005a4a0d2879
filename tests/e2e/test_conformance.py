"""One conformance suite over all six providers, through the spawned sidecar: the same request
gives the same grammar of contract events from every provider, a tool-use loop (with thinking and
its continuation) completes through each, usage means the same everywhere, upstream failures map
to the same kinds, cancelling closes the upstream connection, and the gateway asks each provider
for a whole answer or a stream as its client asked.

Each provider runs behind its own fake upstream speaking its own wire format (OpenAI SSE, xAI,
OpenRouter with comments, Anthropic events with padding and pings, Gemini CRLF SSE, Ollama
NDJSON), all rendering the same deterministic model (tests/fakes/behaviour.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from tests.fakes import anthropic as fake_anthropic
from tests.fakes import gemini as fake_gemini
from tests.fakes.http import FakeUpstream, RecordedRequest
from tests.fakes.ollama import FakeOllama
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.harness import Sidecar


@dataclass
class Upstreams:
    fakes: dict[str, FakeUpstream]
    env: dict[str, str]


MODELS = {
    "openai": "openai:gpt-4o-mini",
    "xai": "xai:grok-3-mini",
    "openrouter": "openrouter:openai/gpt-4o-mini",
    "anthropic": "anthropic:claude-sonnet-4-5",
    "gemini": "gemini:gemini-2.5-flash",
    "ollama": "ollama:llama3.2",
}
PROVIDERS = list(MODELS)
# OpenAI's Chat Completions never returns reasoning text, only its token count.
SHOWS_THINKING = {"xai", "openrouter", "anthropic", "gemini", "ollama"}
TOOLS = [
    {
        "name": "lookup",
        "description": "Look something up.",
        "parameters": {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]},
    }
]


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    fakes: dict[str, FakeUpstream] = {
        "openai": FakeOpenAICompat("openai"),
        "xai": FakeOpenAICompat("xai"),
        "openrouter": FakeOpenAICompat("openrouter"),
        "anthropic": fake_anthropic.FakeAnthropic(),
        "gemini": fake_gemini.FakeGemini(),
        "ollama": FakeOllama(),
    }
    for fake in fakes.values():
        fake.start()
    openai, xai, router = (fakes[p] for p in ("openai", "xai", "openrouter"))
    assert isinstance(openai, FakeOpenAICompat) and isinstance(xai, FakeOpenAICompat)
    assert isinstance(router, FakeOpenAICompat)
    env = {
        "OPENAI_BASE_URL": openai.api_base,
        "OPENAI_API_KEY": min(openai.valid_keys),
        "XAI_BASE_URL": xai.api_base,
        "XAI_API_KEY": min(xai.valid_keys),
        "OPENROUTER_BASE_URL": router.api_base,
        "OPENROUTER_API_KEY": min(router.valid_keys),
        "ANTHROPIC_BASE_URL": fakes["anthropic"].url,
        "ANTHROPIC_API_KEY": fake_anthropic.VALID_KEY,
        "GEMINI_BASE_URL": fakes["gemini"].url,
        "GEMINI_API_KEY": fake_gemini.VALID_KEY,
        "OLLAMA_HOST": fakes["ollama"].url,
    }
    try:
        yield Upstreams(fakes, env)
    finally:
        for fake in fakes.values():
            fake.stop()


@pytest.fixture(scope="module")
def sidecar(upstreams: Upstreams) -> Iterator[Sidecar]:
    with Sidecar(upstreams.env, config="[retry]\nmax_attempts = 1\n") as sc:
        yield sc
        assert sc.bad_lines == []


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def stream(sc: Sidecar, params: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rid = sc.start("stream", params)
    answer = sc.wait(rid, timeout=15)
    assert "result" in answer, answer
    return answer["result"], sc.events(rid)


def check_grammar(events: list[dict[str, Any]], result: dict[str, Any]) -> None:
    """thinking*, text*, tool-call deltas*, then exactly one usage event, last."""
    order = {"thinking_delta": 0, "text_delta": 1, "tool_call_delta": 2, "usage": 3}
    ranks = [order[e["type"]] for e in events]
    assert ranks == sorted(ranks), [e["type"] for e in events]
    assert [e["type"] for e in events].count("usage") == 1 and events[-1]["type"] == "usage"
    usage = {k: v for k, v in events[-1].items() if k != "type"}
    assert usage == result["usage"]
    assert "".join(e["text"] for e in events if e["type"] == "text_delta") == result["text"]
    thinking = "".join(e["text"] for e in events if e["type"] == "thinking_delta")
    assert thinking == (result.get("thinking") or "")
    u = result["usage"]
    assert u["input_tokens"] > 0 and u["output_tokens"] > 0
    assert (
        u["output_tokens"] >= u["reasoning_tokens"]
        and u["input_tokens"] >= u["cache_read_tokens"] + u["cache_write_tokens"]
    )


@pytest.mark.parametrize("provider", PROVIDERS)
def test_same_request_same_events_from_every_provider(sidecar: Sidecar, provider: str) -> None:
    result, events = stream(sidecar, {"model": MODELS[provider], "messages": user("conformance check")})
    check_grammar(events, result)
    assert result["text"] == "Echo: conformance check"
    assert result["finish_reason"] == "stop" and result["tool_calls"] == []
    assert result["provider"] == provider
    assert result["cost_usd"] is not None and result["cost_usd"] >= 0
    assert (result["cost_usd"] == 0) == (provider == "ollama")
    same = sidecar.result("complete", {"model": MODELS[provider], "messages": user("conformance check")})
    assert (same["text"], same["finish_reason"], same["usage"]) == (result["text"], "stop", result["usage"])


def asked_to_stream(provider: str, request: RecordedRequest) -> bool | None:
    """Whether a chat request asked its upstream to stream; None for any other request."""
    if provider == "gemini":
        return "streamGenerateContent" in request.path if "enerateContent" in request.path else None
    path = {"anthropic": "/v1/messages", "ollama": "/api/chat"}.get(provider, "/chat/completions")
    if not request.path.endswith(path):
        return None
    return request.json().get("stream", provider == "ollama") is True


@pytest.fixture(scope="module")
def gateway(sidecar: Sidecar) -> Iterator[openai.OpenAI]:
    url = sidecar.result("gateway_start", {"port": 0})["url"]
    key = sidecar.result("client_key_create", {"name": "conformance"})["key"]
    with openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0) as client:
        yield client


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_gateway_asks_each_provider_as_its_client_asked(
    upstreams: Upstreams, gateway: openai.OpenAI, provider: str
) -> None:
    # A whole answer for a request not streamed, except from Ollama (on this machine's hardware, a
    # call whose client has gone must stop generating): the same answer and usage either way.
    fake = upstreams.fakes[provider]
    before = len(fake.requests)
    messages: Any = user("whole or streamed")
    whole = gateway.chat.completions.create(model=MODELS[provider], messages=messages, max_tokens=1000)
    chunks = list(
        gateway.chat.completions.create(
            model=MODELS[provider],
            messages=messages,
            max_tokens=1000,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert whole.choices[0].message.content == text == "Echo: whole or streamed"
    assert whole.usage is not None and whole.usage == chunks[-1].usage
    asked = [asked_to_stream(provider, r) for r in fake.requests[before:]]
    assert [a for a in asked if a is not None] == [provider == "ollama", True]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_thinking_comes_first_and_is_counted(sidecar: Sidecar, provider: str) -> None:
    params = {
        "model": MODELS[provider],
        "messages": user("think it through"),
        "reasoning": {"effort": "high"},
        "max_tokens": 4000,
    }
    result, events = stream(sidecar, params)
    check_grammar(events, result)
    assert result["text"] == "Echo: think it through"
    if provider in SHOWS_THINKING:
        assert result["thinking"] == "Thinking about: think it through"
    else:
        assert not result.get("thinking") and result["usage"]["reasoning_tokens"] > 0


WEATHER = {
    "type": "object",
    "properties": {"summary": {"type": "string"}, "words": {"type": "integer"}},
    "required": ["summary", "words"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_json_schema_answer_from_every_provider(sidecar: Sidecar, provider: str) -> None:
    """Each provider is asked in its own words (OpenAI-style `response_format`, Claude's
    `output_config.format`, Gemini's `responseJsonSchema`, Ollama's `format`) and answers JSON
    text that follows the schema, streamed in pieces or whole."""
    fmt = {"type": "json_schema", "name": "weather", "schema": WEATHER, "strict": True}
    params = {"model": MODELS[provider], "messages": user("sunny and warm"), "response_format": fmt}
    result, events = stream(sidecar, params)
    check_grammar(events, result)
    assert json.loads(result["text"]) == {"summary": "Echo: sunny and warm", "words": 4}
    assert len([e for e in events if e["type"] == "text_delta"]) > 1
    whole = sidecar.result("complete", params)
    assert whole["text"] == result["text"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_json_mode_everywhere_but_claude_which_needs_a_schema(sidecar: Sidecar, provider: str) -> None:
    # OpenAI refuses JSON mode unless the conversation says "JSON" (the fakes hold every provider to it
    # where it applies), so the request says it.
    params = {"model": MODELS[provider], "messages": user("reply in JSON please"),
              "response_format": {"type": "json_object"}}  # fmt: skip
    answer = sidecar.call("complete", params)
    if provider == "anthropic":
        assert answer["error"]["data"]["kind"] == "invalid_request"
        assert answer["error"]["data"]["field"] == "response_format"
        return
    assert json.loads(answer["result"]["text"]) == {"answer": "Echo: reply in JSON please"}
    if provider == "openai":  # its rule, passed on to the host as the provider said it
        refused = sidecar.call("complete", {**params, "messages": user("reply please")})
        assert refused["error"]["data"]["kind"] == "invalid_request"
        assert "must contain the word 'json'" in refused["error"]["message"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_count_tokens_is_what_the_request_will_report_where_the_provider_counts(
    sidecar: Sidecar, provider: str
) -> None:
    params = {"model": MODELS[provider], "tools": TOOLS,
              "messages": [{"role": "system", "content": "be brief"}, *user("how many tokens is this")]}  # fmt: skip
    counted = sidecar.result("count_tokens", params)
    assert (counted["provider"], counted["exact"]) == (
        provider,
        provider in ("openai", "anthropic", "gemini"),
    )
    assert counted["model"] == MODELS[provider].split(":", 1)[1]
    used = sidecar.result("complete", {**params, "tool_choice": "none"})["usage"]["input_tokens"]
    if counted["exact"]:
        assert counted["input_tokens"] == used
    else:  # the sidecar's estimate (tools included, which this fake model does not count)
        longer = {**params, "messages": [*params["messages"], *user("and a much longer question " * 20)]}
        assert 0 < counted["input_tokens"] < sidecar.result("count_tokens", longer)["input_tokens"]
        return
    # A tool loop: the call and its result are counted as the provider will see them.
    first = sidecar.result("complete", params)
    (call,) = first["tool_calls"]
    loop = {**params, "messages": [*params["messages"],
            {"role": "assistant", "content": None, "tool_calls": [call], "continuation": first.get("continuation")},
            {"role": "tool", "tool_call_id": call["id"], "content": "forty two"}]}  # fmt: skip
    counted = sidecar.result("count_tokens", loop)
    assert (
        counted["exact"]
        and counted["input_tokens"] == sidecar.result("complete", loop)["usage"]["input_tokens"]
    )


@pytest.mark.parametrize("provider", PROVIDERS)
def test_tool_use_loop_with_thinking_and_continuation(sidecar: Sidecar, provider: str) -> None:
    first, events = stream(
        sidecar,
        {
            "model": MODELS[provider],
            "messages": user("weather in Oslo"),
            "tools": TOOLS,
            "reasoning": {"effort": "low"},
            "max_tokens": 4000,
        },
    )
    check_grammar(events, first)
    assert first["finish_reason"] == "tool_calls" and first["text"] == ""
    (call,) = first["tool_calls"]
    assert call["name"] == "lookup" and call["arguments"] == {"input": "weather in Oslo"} and call["id"]
    deltas = [e for e in events if e["type"] == "tool_call_delta"]
    assert deltas[0]["index"] == 0 and deltas[0]["id"] == call["id"] and deltas[0]["name"] == "lookup"
    assert json.loads("".join(d.get("arguments_delta") or "" for d in deltas)) == call["arguments"]
    assistant: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
    if first.get("continuation"):
        assert first["continuation"]["provider"] == provider
        assistant["continuation"] = first["continuation"]
    second = sidecar.result(
        "complete",
        {
            "model": MODELS[provider],
            "tools": TOOLS,
            "reasoning": {"effort": "low"},
            "max_tokens": 4000,
            "messages": [
                *user("weather in Oslo"),
                assistant,
                {"role": "tool", "tool_call_id": call["id"], "name": "lookup", "content": "sunny, 21 C"},
            ],
        },
        timeout=15,
    )
    assert second["text"] == "The tool said: sunny, 21 C"
    assert second["finish_reason"] == "stop"


def test_a_conversation_can_switch_providers_mid_loop(sidecar: Sidecar) -> None:
    """A continuation made by one provider is ignored by the others."""
    first = sidecar.result(
        "complete",
        {
            "model": MODELS["anthropic"],
            "messages": user("weather in Rome"),
            "tools": TOOLS,
            "reasoning": {"effort": "low"},
            "max_tokens": 4000,
        },
    )
    (call,) = first["tool_calls"]
    for provider in ("gemini", "openai", "ollama"):
        answer = sidecar.result(
            "complete",
            {
                "model": MODELS[provider],
                "tools": TOOLS,
                "messages": [
                    *user("weather in Rome"),
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [call],
                        "continuation": first.get("continuation"),
                    },
                    {"role": "tool", "tool_call_id": call["id"], "name": "lookup", "content": "rain"},
                ],
            },
        )
        assert answer["text"] == "The tool said: rain", provider


@pytest.mark.parametrize("provider", [p for p in PROVIDERS if p != "ollama"])
def test_a_wrong_key_is_auth_failed_everywhere(upstreams: Upstreams, provider: str) -> None:
    key_var = f"{provider.upper()}_API_KEY"
    with Sidecar(
        {**upstreams.env, key_var: "wrong-key-0123456789abcdefghij"}, config="[retry]\nmax_attempts = 1\n"
    ) as sc:
        err = sc.call("complete", {"model": MODELS[provider], "messages": user("hi")})["error"]
        assert err["data"]["kind"] == "auth_failed", err
        assert err["data"]["provider"] == provider
        assert "wrong-key-0123456789abcdefghij" not in json.dumps(err)
        check = sc.result("validate_key", {"provider": provider})
        assert check["valid"] is False and check["error"]["kind"] == "auth_failed"


def test_an_unknown_local_model_is_model_not_found(sidecar: Sidecar) -> None:
    err = sidecar.call("complete", {"model": "ollama:no-such-model:7b", "messages": user("hi")})["error"]
    assert err["data"]["kind"] == "model_not_found" and "ollama_pull" in err["data"]["message"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_cancel_closes_the_upstream_connection(upstreams: Upstreams, sidecar: Sidecar, provider: str) -> None:
    fake = upstreams.fakes[provider]
    before = fake.disconnects
    fake.chunk_delay_s = 0.3  # type: ignore[attr-defined]
    try:
        rid = sidecar.start(
            "stream", {"model": MODELS[provider], "messages": user("a slow answer to cancel")}
        )
        sidecar.wait_notification("stream/event", lambda n: n["params"]["request_id"] == rid, timeout=10)
        sidecar.notify("notifications/cancelled", {"requestId": rid})
        assert sidecar.wait(rid, timeout=5)["error"]["code"] == -32800
        assert fake.wait_for_disconnect(timeout=5, count=before + 1)
    finally:
        fake.chunk_delay_s = 0.0  # type: ignore[attr-defined]
