"""Retries, fallback, circuit breaking, client-side limits and timeouts against real fake upstreams.

The chat stack is built in-process (HTTP client, registry, resilience, chat service) and talks over
real sockets to fakes that misbehave on command: 429 with Retry-After, 500, 529, 401, a stream that
fails after its first token, stalls before and after the first byte, a slow trickle.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import anyio
import msgspec
import pytest

from sidecar.config import Config
from sidecar.core.catalog import PriceBook
from sidecar.errors import SidecarError
from sidecar.providers.http import HttpClient
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.catalog import CatalogService
from sidecar.services.chat import ChatService
from sidecar.services.limits import RateLimitsService, Resilience
from sidecar.services.pricing import Pricing
from sidecar.wire.base import Empty
from sidecar.wire.chat import ChatResult, CompleteParams
from sidecar.wire.limits import RateLimitsParams
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.http import Abort, FakeUpstream, Pause, RecordedRequest, Reply, Stall, json_reply
from tests.fakes.openai_compat import FakeOpenAICompat, error_reply, midstream_error_reply

KEYS = {"OPENAI_API_KEY": "sk-test-valid", "XAI_API_KEY": "xai-test-valid"}
FAST = """
[retry]
max_attempts = 3
base_delay_s = 0.05
max_delay_s = 0.05
"""


# -- the stack --------------------------------------------------------------------------------------


@dataclass
class Ctx:
    request_id: int | str = 1
    events: list[dict[str, Any]] = field(default_factory=list)

    async def notify(self, method: str, params: Any) -> None:
        assert method == "stream/event"
        self.events.append(msgspec.to_builtins(params.event))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


@dataclass
class Stack:
    http: HttpClient
    chat: ChatService
    limits: RateLimitsService
    catalog: CatalogService
    resilience: Resilience


def stack(
    toml: str = FAST, env: dict[str, str] | None = None, rand: Callable[[], float] = lambda: 1.0
) -> Stack:
    config = msgspec.convert(tomllib.loads(toml), Config)
    env = {**KEYS, **(env or {})}
    http = HttpClient("llm-sidecar-test")

    async def get_key(provider: str, env_var: str | None, account: str | None) -> str:
        if env_var and env.get(env_var):
            return env[env_var]
        raise SidecarError("missing_key", f"No key for {provider}.", provider=provider)

    providers = ProviderRegistry(config, env, http, get_key)
    pricing = Pricing(providers, PriceBook())
    resilience = Resilience(config, rand=rand)
    http.observers.append(resilience.tracker.observe)
    chat = ChatService(providers, pricing, config, resilience)
    catalog = CatalogService(
        providers,
        pricing,
        circuit_state=resilience.circuit_state,
    )
    return Stack(http, chat, RateLimitsService(resilience, providers), catalog, resilience)


def params(model: str = "openai:gpt-4o-mini", **kw: Any) -> CompleteParams:
    return msgspec.convert(
        {"model": model, "messages": [{"role": "user", "content": "hello there"}], **kw}, CompleteParams
    )


def run(body: Callable[[], Awaitable[None]]) -> None:
    anyio.run(body)


async def stream(s: Stack, p: CompleteParams, ctx: Ctx | None = None) -> ChatResult:
    return await s.chat.stream(p, ctx or Ctx())


async def warm(s: Stack) -> None:
    """One answered call, so a timed call after it pays for no lazy import or first connection.

    A cold first call on a slow machine can take longer than the margins the timing tests keep.
    """
    assert (await stream(s, params())).text == "Echo: hello there"


async def failing(call: Awaitable[Any]) -> SidecarError:
    with pytest.raises(SidecarError) as info:
        await call
    return info.value


@pytest.fixture
def xai() -> Iterator[FakeOpenAICompat]:
    with FakeOpenAICompat("xai") as fake:
        yield fake


def env_for(openai: FakeOpenAICompat, xai: FakeOpenAICompat | None = None) -> dict[str, str]:
    env = {"OPENAI_BASE_URL": openai.api_base}
    if xai is not None:
        env["XAI_BASE_URL"] = xai.api_base
    return env


def always(reply: Callable[[], Reply]) -> Callable[[RecordedRequest], Reply]:
    return lambda req: reply()


# -- retries ------------------------------------------------------------------------------------------


def test_429_with_retry_after_is_waited_out_then_retried(openai: FakeOpenAICompat) -> None:
    # retry-after (whole seconds) is set far from retry-after-ms, so the wait shows which one won
    # with a margin a slow machine cannot eat.
    limited = error_reply(429, "openai", "rate_limit", retry_after_s=0.4)
    s = stack(env=env_for(openai))

    async def body() -> None:
        await warm(s)
        openai.enqueue(replace(limited, headers={**limited.headers, "retry-after": "4"}))
        ctx = Ctx()
        t0 = time.monotonic()
        result = await stream(s, params(), ctx)
        waited = time.monotonic() - t0
        assert result.text == "Echo: hello there"
        assert [(a.ok, a.error) for a in result.attempts] == [(False, "rate_limited"), (True, None)]
        assert 0.4 <= waited < 3  # retry-after-ms (400) wins over retry-after (4)
        [event] = ctx.of("attempt")
        assert event["attempt"] == 2 and event["previous_error"] == "rate_limited"
        assert event["delay_s"] == pytest.approx(0.4)
        assert ctx.events.index(event) < ctx.events.index(ctx.of("text_delta")[0])
        await s.http.aclose()

    run(body)
    assert len(openai.requests) == 3  # the warm-up, the 429, the retry


@pytest.mark.parametrize("status", [500, 502, 503, 529])
def test_server_errors_are_retried_with_backoff(openai: FakeOpenAICompat, status: int) -> None:
    openai.enqueue(error_reply(status, "openai", "server", retry_after_s=None))
    s = stack(env=env_for(openai))

    async def body() -> None:
        t0 = time.monotonic()
        result = await s.chat.complete(params(), Ctx())
        assert time.monotonic() - t0 >= 0.05  # the backoff (jitter pinned to its ceiling)
        assert [(a.ok, a.error) for a in result.attempts] == [(False, "provider_error"), (True, None)]
        assert result.attempts[0].message and f"HTTP {status}" in result.attempts[0].message
        await s.http.aclose()

    run(body)
    assert len(openai.requests) == 2


def test_attempts_are_capped(openai: FakeOpenAICompat) -> None:
    openai.route("POST", "/v1/chat/completions", always(lambda: error_reply(503, "openai", "overloaded")))
    s = stack(FAST.replace("max_attempts = 3", "max_attempts = 2"), env=env_for(openai))

    async def body() -> None:
        err = await failing(stream(s, params()))
        assert err.kind == "provider_error"
        assert [a["error"] for a in err.details["attempts"]] == ["provider_error", "provider_error"]
        await s.http.aclose()

    run(body)
    assert len(openai.requests) == 2


@pytest.mark.parametrize(
    ("status", "kind", "expected"),
    [(401, "auth", "auth_failed"), (400, "bad_request", "invalid_request"), (429, "quota", "quota_exceeded")],
)
def test_non_transient_errors_are_not_retried(
    openai: FakeOpenAICompat, status: int, kind: Any, expected: str
) -> None:
    openai.enqueue(error_reply(status, "openai", kind))
    s = stack(env=env_for(openai))

    async def body() -> None:
        err = await failing(stream(s, params()))
        assert err.kind == expected
        assert "attempts" not in err.details  # a single try
        await s.http.aclose()

    run(body)
    assert len(openai.requests) == 1


def test_a_retry_after_beyond_the_cap_is_reported_not_waited(openai: FakeOpenAICompat) -> None:
    # A cap of 10 s: waiting up to it would take far longer than the bound below.
    s = stack(FAST + "max_retry_after_s = 10\n", env=env_for(openai))

    async def body() -> None:
        await warm(s)
        openai.enqueue(error_reply(429, "openai", "rate_limit", retry_after_s=30))
        t0 = time.monotonic()
        err = await failing(stream(s, params()))
        assert time.monotonic() - t0 < 5
        assert err.kind == "rate_limited"
        assert err.retry_after_s == 30
        await s.http.aclose()

    run(body)
    assert len(openai.requests) == 2  # the warm-up and the 429, never a retry


# -- a model the upstream refuses to stream ------------------------------------------------------------


@pytest.mark.parametrize("flavor", ["openai", "openrouter"])
def test_a_model_refused_streaming_is_asked_again_without_then_straight_away(flavor: str) -> None:
    # OpenAI refuses to stream o3 for an organization that is not verified, directly or through
    # OpenRouter; both methods still answer, `stream` with the whole answer at once.
    prefix = "OPENAI" if flavor == "openai" else "OPENROUTER"
    with FakeOpenAICompat(flavor) as fake:  # type: ignore[arg-type]
        fake.stream_refused_models.add("o3")
        key = next(iter(fake.valid_keys))
        s = stack(env={f"{prefix}_BASE_URL": fake.api_base, f"{prefix}_API_KEY": key})

        async def body() -> None:
            ctx = Ctx()
            streamed = await stream(s, params(f"{flavor}:o3"), ctx)
            assert streamed.text == "Echo: hello there"
            assert [(a.ok, a.error) for a in streamed.attempts] == [(True, None)]
            assert "".join(e["text"] for e in ctx.of("text_delta")) == "Echo: hello there"
            [usage] = ctx.of("usage")
            assert usage["output_tokens"] == streamed.usage.output_tokens > 0
            assert not streamed.usage_estimated  # the whole answer's own usage
            completed = await s.chat.complete(params(f"{flavor}:o3"), Ctx())
            assert completed.text == "Echo: hello there"
            assert (await stream(s, params(f"{flavor}:gpt-4o-mini"))).text == "Echo: hello there"
            await s.http.aclose()

        run(body)
        # The refused stream, the same call whole; then whole at once; another model still streams.
        assert [r.json().get("stream") for r in fake.requests] == [True, None, None, True]
        assert s.resilience.breakers.get(flavor).snapshot().consecutive_failures == 0


def test_a_reasoning_model_is_asked_again_without_the_sampling_it_refuses(openai: FakeOpenAICompat) -> None:
    # gpt-5 takes neither a temperature but 1 nor a top_p: each 400 names its parameter, and the
    # same attempt is made without it; later calls leave both out at once. Other models keep them.
    s = stack(env=env_for(openai))

    async def body() -> None:
        ctx = Ctx()
        answered = await stream(s, params("openai:gpt-5", temperature=0.2, top_p=0.9), ctx)
        assert answered.text == "Echo: hello there"
        assert [(a.ok, a.error) for a in answered.attempts] == [(True, None)]
        assert ctx.of("attempt") == []  # one attempt, as the host sees it
        again = await s.chat.complete(params("openai:gpt-5", temperature=0.0), Ctx())
        assert again.text == "Echo: hello there"
        await stream(s, params("openai:gpt-4o-mini", temperature=0.2, top_p=0.9))
        await s.http.aclose()

    run(body)
    sent = [{k: r.json().get(k) for k in ("model", "temperature", "top_p")} for r in openai.requests]
    assert sent == [
        {"model": "gpt-5", "temperature": 0.2, "top_p": 0.9},  # refused: temperature
        {"model": "gpt-5", "temperature": None, "top_p": 0.9},  # refused: top_p
        {"model": "gpt-5", "temperature": None, "top_p": None},
        {"model": "gpt-5", "temperature": None, "top_p": None},  # straight away
        {"model": "gpt-4o-mini", "temperature": 0.2, "top_p": 0.9},
    ]
    assert s.resilience.breakers.get("openai").snapshot().consecutive_failures == 0


def test_stop_sequences_a_model_refuses_are_applied_by_the_sidecar(openai: FakeOpenAICompat) -> None:
    # gpt-5 refuses `stop`; an agent's ReAct loop needs the answer to end before "Observation:".
    # The fake echoes the question in 4-character pieces, so the sequence arrives split.
    question = "Thought: look it up\nObservation: " + "made up " * 40
    openai.chunk_delay_s = 0.01
    s = stack(env=env_for(openai))

    async def body() -> None:
        ctx = Ctx()
        answered = await stream(s, params("openai:gpt-5", messages=ask(question), stop=["Observation:"]), ctx)
        assert answered.text == "Echo: Thought: look it up\n"
        assert answered.finish_reason == "stop"
        assert "".join(e["text"] for e in ctx.of("text_delta")) == answered.text
        assert answered.usage.output_tokens > 0 and answered.usage_estimated  # not read to its end
        whole = await s.chat.complete(params("openai:gpt-5", messages=ask("a STOP b"), stop="STOP"), Ctx())
        assert (whole.text, whole.finish_reason) == ("Echo: a ", "stop")
        kept = await s.chat.complete(params("openai:gpt-4o-mini", stop=["x"]), Ctx())
        assert kept.text == "Echo: hello there"  # a model that takes `stop` gets it
        await s.http.aclose()

    run(body)
    assert [r.json().get("stop") for r in openai.requests] == [["Observation:"], None, None, ["x"]]
    assert openai.wait_for_disconnect(timeout=5.0)  # the rest of the first answer was not read


def test_grok_4_refusing_stop_gets_it_applied_by_the_sidecar(
    openai: FakeOpenAICompat, xai: FakeOpenAICompat
) -> None:
    # xAI names the refused parameter only in its message; grok-3 still takes `stop`.
    s = stack(env=env_for(openai, xai))

    async def body() -> None:
        cut = await s.chat.complete(params("xai:grok-4", messages=ask("a STOP b"), stop=["STOP"]), Ctx())
        assert (cut.text, cut.finish_reason, cut.stop_sequence) == ("Echo: a ", "stop", "STOP")
        kept = await s.chat.complete(params("xai:grok-3", messages=ask("a STOP b"), stop=["STOP"]), Ctx())
        assert kept.stop_sequence is None  # sent upstream as asked (the fake ignores it)
        await s.http.aclose()

    run(body)
    assert [(r.json()["model"], r.json().get("stop")) for r in xai.requests] == [
        ("grok-4", ["STOP"]),
        ("grok-4", None),
        ("grok-3", ["STOP"]),
    ]


def test_claude_that_takes_one_sampling_knob_is_asked_without_top_p() -> None:
    # Sonnet 4.5 refuses `temperature` with `top_p` (naming neither as a parameter); the request is
    # sent again with the temperature alone. Sonnet 4 takes both.
    with FakeAnthropic() as fake:
        s = stack(env={"ANTHROPIC_BASE_URL": fake.url, "ANTHROPIC_API_KEY": next(iter(fake.valid_keys))})

        async def body() -> None:
            for model in (
                "claude-sonnet-4-5-20250929",
                "claude-sonnet-4-5-20250929",
                "claude-sonnet-4-20250514",
            ):
                answer = await s.chat.complete(
                    params(f"anthropic:{model}", temperature=0.3, top_p=0.9), Ctx()
                )
                assert answer.text == "Echo: hello there"
            await s.http.aclose()

        run(body)
    sent = [(r.json()["model"], r.json().get("temperature"), r.json().get("top_p")) for r in fake.requests]
    assert sent == [
        ("claude-sonnet-4-5-20250929", 0.3, 0.9),  # refused
        ("claude-sonnet-4-5-20250929", 0.3, None),
        ("claude-sonnet-4-5-20250929", 0.3, None),  # straight away
        ("claude-sonnet-4-20250514", 0.3, 0.9),
    ]


def test_a_model_that_does_not_reason_is_asked_without_the_reasoning(
    openai: FakeOpenAICompat, xai: FakeOpenAICompat
) -> None:
    # A host's "thinking: low" sent to gpt-4o, or to grok-4, which names the parameter only in
    # its message (as OpenAI and xAI answer it, as users have reported: avante.nvim#1359,
    # litellm#16265). The model answers without reasoning; its next calls leave it out at once.
    not_a_reasoner = {"error": {"message": "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
                                "type": "invalid_request_error", "param": "reasoning_effort",
                                "code": "unsupported_parameter"}}  # fmt: skip
    openai.enqueue(json_reply(400, not_a_reasoner))
    xai.enqueue(json_reply(400, {"code": "Client specified an invalid argument",
                                 "error": "Model grok-4 does not support parameter reasoningEffort."}))  # fmt: skip
    s = stack(env=env_for(openai, xai))

    async def body() -> None:
        for model in ("openai:gpt-4o", "openai:gpt-4o", "xai:grok-4"):
            answer = await s.chat.complete(params(model, reasoning={"effort": "low"}), Ctx())
            assert answer.text == "Echo: hello there" and answer.thinking is None, model
        await s.http.aclose()

    run(body)
    assert [r.json().get("reasoning_effort") for r in openai.requests] == ["low", None, None]
    assert [r.json().get("reasoning_effort") for r in xai.requests] == ["low", None]


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_another_bad_request_is_not_asked_again(openai: FakeOpenAICompat) -> None:
    refused = error_reply(400, "openai", "bad_request", message="Unsupported value: 'temperature'.")
    openai.enqueue(refused)
    s = stack(env=env_for(openai))

    async def body() -> None:
        err = await failing(stream(s, params()))
        assert err.kind == "invalid_request"
        await s.http.aclose()

    run(body)
    assert len(openai.requests) == 1


# -- no retry after the first token ------------------------------------------------------------------------


def test_an_error_after_the_first_token_is_reported_never_retried(
    openai: FakeOpenAICompat, xai: FakeOpenAICompat
) -> None:
    openai.enqueue(midstream_error_reply("openai", text_pieces=("Partial", " answer")))
    s = stack(env=env_for(openai, xai))

    async def body() -> None:
        ctx = Ctx()
        err = await failing(stream(s, params(fallback=["xai:grok-3-mini"]), ctx))
        assert err.kind == "provider_error"  # transient, yet neither retried nor passed to the fallback
        assert "".join(e["text"] for e in ctx.of("text_delta")) == "Partial answer"
        assert ctx.of("attempt") == []
        await s.http.aclose()

    run(body)
    assert len(openai.requests) == 1
    assert xai.requests == []


def test_a_connection_reset_after_the_first_token_is_not_retried(openai: FakeOpenAICompat) -> None:
    openai.edit_stream = lambda events: [*events[:3], Abort(reset=True)]
    s = stack(env=env_for(openai))

    async def body() -> None:
        ctx = Ctx()
        err = await failing(stream(s, params(), ctx))
        assert err.kind == "network_error"
        assert ctx.of("text_delta")
        await s.http.aclose()

    run(body)
    assert len(openai.requests) == 1


def test_a_stream_cut_before_any_token_is_retried(openai: FakeOpenAICompat) -> None:
    # The first chunk only says the role; no content reached the host, so a retry is safe.
    first = True

    def edit(events: list[bytes]) -> list[Any]:
        nonlocal first
        if first:
            first = False
            return [events[0], Abort()]
        return list(events)

    openai.edit_stream = edit
    s = stack(env=env_for(openai))

    async def body() -> None:
        result = await stream(s, params())
        assert result.text == "Echo: hello there"
        assert [(a.ok, a.error) for a in result.attempts] == [(False, "network_error"), (True, None)]
        await s.http.aclose()

    run(body)
    assert len(openai.requests) == 2


# -- fallback -------------------------------------------------------------------------------------------


def test_fallback_to_a_healthy_provider(openai: FakeOpenAICompat, xai: FakeOpenAICompat) -> None:
    openai.route("POST", "/v1/chat/completions", always(lambda: error_reply(503, "openai", "overloaded")))
    s = stack(FAST.replace("max_attempts = 3", "max_attempts = 2"), env=env_for(openai, xai))

    async def body() -> None:
        ctx = Ctx()
        result = await stream(s, params(fallback=["xai:grok-3-mini"]), ctx)
        assert (result.provider, result.model) == ("xai", "grok-3-mini")
        assert result.text == "Echo: hello there"
        assert [(a.provider, a.ok, a.error) for a in result.attempts] == [
            ("openai", False, "provider_error"),
            ("openai", False, "provider_error"),
            ("xai", True, None),
        ]
        attempts = ctx.of("attempt")
        assert [(e["provider"], e["model"], e["attempt"], e["previous_error"]) for e in attempts] == [
            ("openai", "gpt-4o-mini", 2, "provider_error"),
            ("xai", "grok-3-mini", 3, "provider_error"),
        ]
        assert ctx.events.index(attempts[-1]) < ctx.events.index(ctx.of("text_delta")[0])
        assert "".join(e["text"] for e in ctx.of("text_delta")) == result.text
        await s.http.aclose()

    run(body)
    assert len(openai.requests) == 2
    assert len(xai.requests) == 1


def test_the_config_fallback_chain_is_the_default(openai: FakeOpenAICompat, xai: FakeOpenAICompat) -> None:
    openai.enqueue(error_reply(401, "openai", "auth"))  # not retried, but a fallback may still answer
    s = stack('fallback = ["xai:grok-3-mini"]\n' + FAST, env=env_for(openai, xai))

    async def body() -> None:
        result = await s.chat.complete(params(), Ctx())
        assert result.provider == "xai"
        assert [(a.provider, a.error) for a in result.attempts] == [("openai", "auth_failed"), ("xai", None)]
        # A request's own list replaces the default: an empty one means no fallback.
        openai.enqueue(error_reply(401, "openai", "auth"))
        err = await failing(s.chat.complete(params(fallback=[]), Ctx()))
        assert err.kind == "auth_failed"
        await s.http.aclose()

    run(body)
    assert len(xai.requests) == 1


def test_when_every_model_fails_the_host_gets_the_first_models_error_and_every_attempt(
    openai: FakeOpenAICompat, xai: FakeOpenAICompat
) -> None:
    openai.enqueue(error_reply(401, "openai", "auth"))
    s = stack(env={"OPENAI_BASE_URL": openai.api_base, "XAI_API_KEY": "", "XAI_BASE_URL": xai.api_base})

    async def body() -> None:
        err = await failing(stream(s, params(fallback=["xai:grok-3-mini"])))
        assert err.kind == "auth_failed"
        assert err.provider == "openai"
        assert "xai:grok-3-mini failed too" in err.message
        assert [(a["provider"], a["error"]) for a in err.details["attempts"]] == [
            ("openai", "auth_failed"),
            ("xai", "missing_key"),
        ]
        await s.http.aclose()

    run(body)
    assert xai.requests == []


def test_a_bad_fallback_model_is_an_invalid_request() -> None:
    s = stack()

    async def body() -> None:
        err = await failing(stream(s, params(fallback=["openai:gpt-4o", "nonsense"])))
        assert err.kind == "invalid_request"
        assert err.field == "fallback[1]"

    run(body)


# -- circuit breaker ---------------------------------------------------------------------------------------


# The cooldown is long enough that the steps a test takes while the breaker is open (each a few
# milliseconds, but a stalled slow machine can stretch one well past 0.4 s) all fit in it.
COOLDOWN_S = 1.5
BREAKER = f"""
[retry]
max_attempts = 1
[breaker]
failures = 2
cooldown_s = {COOLDOWN_S}
"""


def test_the_breaker_opens_skips_and_half_opens_after_the_cooldown(openai: FakeOpenAICompat) -> None:
    for _ in range(2):
        openai.enqueue(error_reply(503, "openai", "overloaded"))
    s = stack(BREAKER, env=env_for(openai))

    async def circuit() -> tuple[str | None, Any]:
        listed = await s.catalog.list_providers(Empty(), Ctx())
        state = next(p.circuit for p in listed.providers if p.id == "openai")
        shown = await s.limits.rate_limits(RateLimitsParams(provider="openai"), Ctx())
        return state, shown.providers[0].circuit

    async def body() -> None:
        for _ in range(2):
            assert (await failing(stream(s, params()))).kind == "provider_error"
        state, info = await circuit()
        assert state == "open" and info.state == "open"
        assert info.consecutive_failures == 2 and info.failure_threshold == 2
        assert 0 < info.retry_in_s <= COOLDOWN_S

        t0 = time.monotonic()
        skipped = await failing(stream(s, params()))
        assert time.monotonic() - t0 < COOLDOWN_S / 2  # refused at once, not after the cooldown
        assert skipped.kind == "provider_error"
        assert "circuit breaker" in skipped.message
        assert skipped.retry_after_s is not None and 0 < skipped.retry_after_s <= COOLDOWN_S
        assert len(openai.requests) == 2  # never sent

        await anyio.sleep(COOLDOWN_S + 0.05)
        state, info = await circuit()
        assert state == "half_open" and info.state == "half_open"
        result = await stream(s, params())  # the one trial request; the fake is healthy again
        assert result.text == "Echo: hello there"
        state, info = await circuit()
        assert state == "closed" and info.consecutive_failures == 0
        await s.http.aclose()

    run(body)
    assert len(openai.requests) == 3


def test_an_open_breaker_sends_the_request_to_the_fallback(
    openai: FakeOpenAICompat, xai: FakeOpenAICompat
) -> None:
    openai.route("POST", "/v1/chat/completions", always(lambda: error_reply(500, "openai", "server")))
    s = stack(BREAKER.replace("failures = 2", "failures = 1"), env=env_for(openai, xai))

    async def body() -> None:
        assert (await failing(stream(s, params()))).kind == "provider_error"
        ctx = Ctx()
        result = await stream(s, params(fallback=["xai:grok-3-mini"]), ctx)
        assert result.provider == "xai"
        assert result.attempts[0].error == "provider_error"
        assert result.attempts[0].message and "circuit breaker" in result.attempts[0].message
        await s.http.aclose()

    run(body)
    assert len(openai.requests) == 1


def test_a_failed_trial_request_opens_the_breaker_again(openai: FakeOpenAICompat) -> None:
    openai.route("POST", "/v1/chat/completions", always(lambda: error_reply(500, "openai", "server")))
    s = stack(BREAKER.replace("failures = 2", "failures = 1"), env=env_for(openai))

    async def body() -> None:
        await failing(stream(s, params()))
        await anyio.sleep(COOLDOWN_S + 0.05)
        assert s.resilience.circuit_state("openai") == "half_open"
        await failing(stream(s, params()))  # the trial
        assert s.resilience.circuit_state("openai") == "open"
        await s.http.aclose()

    run(body)
    assert len(openai.requests) == 2


# -- rate-limit state ------------------------------------------------------------------------------------


def _instant(text: str | None) -> float:
    assert text is not None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_rate_limits_shows_openais_headers(openai: FakeOpenAICompat) -> None:
    s = stack(env=env_for(openai))

    async def body() -> None:
        before = await s.limits.rate_limits(RateLimitsParams(provider="openai"), Ctx())
        assert before.providers[0].requests is None
        await stream(s, params())
        now = time.time()
        shown = (await s.limits.rate_limits(RateLimitsParams(), Ctx())).providers
        assert {p.provider for p in shown} >= {"openai", "anthropic", "gemini", "xai", "openrouter", "ollama"}
        mine = next(p for p in shown if p.provider == "openai")
        assert mine.requests is not None and mine.tokens is not None
        # One request taken from 5,000 a minute, refilled within 12 ms: 4,999 until then, whole after.
        assert mine.requests.limit == 5000 and mine.requests.remaining in (4999, 5000)
        assert mine.tokens.limit == 4_000_000 and mine.tokens.remaining is not None
        assert mine.tokens.remaining < 4_000_000
        assert _instant(mine.tokens.reset_at) == pytest.approx(now + 360, abs=2)  # "6m0s"
        assert mine.tokens.resets_in_s == pytest.approx(360, abs=2)
        assert _instant(mine.requests.reset_at) == pytest.approx(now, abs=1)  # "12ms"
        assert mine.last_status == 200
        assert mine.circuit.state == "closed"
        await s.http.aclose()

    run(body)


ANTHROPIC_HEADERS = {
    "anthropic-ratelimit-requests-limit": "1000",
    "anthropic-ratelimit-requests-remaining": "999",
    "anthropic-ratelimit-requests-reset": "2030-08-21T12:40:59Z",
    "anthropic-ratelimit-tokens-limit": "96000",
    "anthropic-ratelimit-tokens-remaining": "95000",
    "anthropic-ratelimit-tokens-reset": "2030-08-21T12:40:59Z",
    "anthropic-ratelimit-input-tokens-limit": "80000",
    "anthropic-ratelimit-input-tokens-remaining": "79000",
    "anthropic-ratelimit-input-tokens-reset": "2030-08-21T12:40:59Z",
    "anthropic-ratelimit-output-tokens-limit": "16000",
    "anthropic-ratelimit-output-tokens-remaining": "16000",
    "anthropic-ratelimit-output-tokens-reset": "2030-08-21T12:41:00Z",
    "request-id": "req_011CSLsW7mFqvHHnzrKdKjAE",
}


def test_rate_limits_shows_anthropics_headers_seen_on_any_response() -> None:
    with FakeUpstream() as fake:
        fake.route("GET", "/v1/models", lambda req: json_reply(200, {"data": []}, ANTHROPIC_HEADERS))
        fake.route(
            "POST",
            "/v1/messages",
            lambda req: json_reply(
                529,
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                {"retry-after": "20"},
            ),
        )
        s = stack(env={"ANTHROPIC_BASE_URL": fake.url})

        async def body() -> None:
            await s.http.request_json("anthropic", "GET", fake.url + "/v1/models")
            state = (await s.limits.rate_limits(RateLimitsParams(provider="anthropic"), Ctx())).providers[0]
            assert state.requests is not None and state.requests.remaining == 999
            assert state.requests.reset_at == "2030-08-21T12:40:59Z"
            assert state.tokens is not None and state.tokens.remaining == 95000
            assert state.input_tokens is not None and state.input_tokens.limit == 80000
            assert state.output_tokens is not None and state.output_tokens.reset_at == "2030-08-21T12:41:00Z"
            assert state.retry_after_s is None

            err = await failing(
                s.http.request_json("anthropic", "POST", fake.url + "/v1/messages", json_body=b"{}")
            )
            assert err.kind == "provider_error"  # 529 overloaded: transient
            state = (await s.limits.rate_limits(RateLimitsParams(provider="anthropic"), Ctx())).providers[0]
            assert state.last_status == 529
            assert state.retry_after_s == pytest.approx(20, abs=1)
            assert state.requests is not None and state.requests.remaining == 999  # kept from before
            await s.http.aclose()

        run(body)


def test_rate_limits_learns_gemini_style_retry_info_from_the_error_body() -> None:
    google_429 = {
        "error": {
            "code": 429,
            "message": "You exceeded your current quota, please check your plan.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "34.4s"},
            ],
        }
    }
    with FakeUpstream() as fake:
        fake.route("POST", "/v1/chat/completions", lambda req: json_reply(429, google_429))
        toml = (
            f'[endpoints.local]\nbase_url = "{fake.url}/v1"\nneeds_key = false\n'
            + FAST
            + "max_retry_after_s = 5\n"
        )
        s = stack(toml)

        async def body() -> None:
            err = await failing(stream(s, params("local:some-model")))
            assert err.kind == "rate_limited"
            assert err.retry_after_s == pytest.approx(34.4)
            state = (await s.limits.rate_limits(RateLimitsParams(provider="local"), Ctx())).providers[0]
            assert state.retry_after_s == pytest.approx(34.4, abs=1)
            assert state.retry_at is not None
            await s.http.aclose()

        run(body)
        assert len(fake.requests) == 1


def test_rate_limits_of_an_unknown_provider() -> None:
    s = stack()

    async def body() -> None:
        err = await failing(s.limits.rate_limits(RateLimitsParams(provider="nope"), Ctx()))
        assert err.kind == "unsupported_provider"

    run(body)


# -- client-side limits ------------------------------------------------------------------------------------


def test_requests_per_minute_refuses_a_request_that_would_wait_too_long(openai: FakeOpenAICompat) -> None:
    s = stack(FAST + "[providers.openai.limits]\nrequests_per_minute = 1\n", env=env_for(openai))

    async def body() -> None:
        await stream(s, params(timeout_s=2))
        t0 = time.monotonic()
        # Refused at once: not after waiting out its timeout_s (10 s), nor the 60 s the limit asks.
        err = await failing(stream(s, params(timeout_s=10)))
        assert time.monotonic() - t0 < 5
        assert err.kind == "rate_limited"
        assert err.retry_after_s == pytest.approx(60, abs=1)
        state = (await s.limits.rate_limits(RateLimitsParams(provider="openai"), Ctx())).providers[0]
        assert state.client is not None
        assert state.client.requests_per_minute == 1
        assert state.client.requests_available is not None and state.client.requests_available < 1
        await s.http.aclose()

    run(body)
    assert len(openai.requests) == 1


def test_tokens_per_minute_charges_the_estimate_then_the_real_count(openai: FakeOpenAICompat) -> None:
    s = stack(FAST + "[providers.openai.limits]\ntokens_per_minute = 60\n", env=env_for(openai))

    async def body() -> None:
        async def available() -> float:
            state = (await s.limits.rate_limits(RateLimitsParams(provider="openai"), Ctx())).providers[0]
            assert state.client is not None and state.client.tokens_available is not None
            return state.client.tokens_available

        result = await s.chat.complete(params(max_tokens=40), Ctx())
        used = result.usage.input_tokens + result.usage.output_tokens
        assert used < 20
        # charged ~45 up front (estimate + max_tokens), then settled on the real count
        assert await available() == pytest.approx(60 - used, abs=1.5)
        await s.chat.complete(params(max_tokens=40), Ctx())
        err = await failing(s.chat.complete(params(max_tokens=59, timeout_s=1), Ctx()))
        assert err.kind == "rate_limited"
        assert err.retry_after_s is not None and err.retry_after_s > 1
        await s.http.aclose()

    run(body)
    assert len(openai.requests) == 2


def test_a_request_waiting_for_a_slot_can_be_cancelled(openai: FakeOpenAICompat) -> None:
    # The first request holds the only slot for 3 s; the one waiting for it is cancelled well
    # before, and must end then, while the slot is still held, not when it comes free.
    openai.edit_stream = lambda events: [events[0], Pause(3.0), *events[1:]]
    s = stack(FAST + "[providers.openai.limits]\nmax_concurrent = 1\n", env=env_for(openai))

    async def body() -> None:
        first: list[ChatResult] = []

        async def slow() -> None:
            first.append(await stream(s, params()))

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow)
            await anyio.to_thread.run_sync(openai.wait_for_requests, 1)
            with anyio.CancelScope() as waiting:

                async def cancel_soon() -> None:
                    for _ in range(200):  # until the request below waits for the slot (bounded)
                        limits = (
                            await s.limits.rate_limits(RateLimitsParams(provider="openai"), Ctx())
                        ).providers[0]
                        assert limits.client is not None
                        if limits.client.waiting:
                            break
                        await anyio.sleep(0.01)
                    assert (limits.client.in_flight, limits.client.waiting) == (1, 1)
                    waiting.cancel()

                tg.start_soon(cancel_soon)
                t0 = time.monotonic()
                await stream(s, params())
            assert waiting.cancelled_caught
            assert not first  # ended while the slot was still held, not once it came free
            assert time.monotonic() - t0 < 2.5
        assert first and first[0].text == "Echo: hello there"
        await s.http.aclose()

    run(body)
    assert len(openai.requests) == 1  # the cancelled request never reached the provider


# -- timeouts -------------------------------------------------------------------------------------------


def test_a_stall_after_the_first_token_ends_as_timeout_within_the_idle_limit(
    openai: FakeOpenAICompat,
) -> None:
    s = stack(env=env_for(openai))

    async def body() -> None:
        await warm(s)
        openai.edit_stream = lambda events: [*events[:3], Stall()]
        ctx = Ctx()
        t0 = time.monotonic()
        err = await failing(stream(s, params(timeout_s=0.5), ctx))
        elapsed = time.monotonic() - t0
        assert err.kind == "timeout"
        assert "0.5s" in err.message
        assert 0.45 < elapsed < 5  # the idle limit, not the stall (60 s)
        assert ctx.of("text_delta")
        await s.http.aclose()

    run(body)
    assert openai.wait_for_disconnect(timeout=5)  # the abandoned upstream connection was closed
    assert len(openai.requests) == 2  # the warm-up and the stalled one


def test_a_stall_before_the_first_token_is_retried_then_reported(openai: FakeOpenAICompat) -> None:
    openai.edit_stream = lambda events: [events[0], Stall()]
    toml = FAST.replace("max_attempts = 3", "max_attempts = 2") + "[timeouts]\nidle_s = 0.3\n"
    s = stack(toml, env=env_for(openai))

    async def body() -> None:
        t0 = time.monotonic()
        err = await failing(stream(s, params()))
        assert err.kind == "timeout"
        assert [a["error"] for a in err.details["attempts"]] == ["timeout", "timeout"]
        assert time.monotonic() - t0 < 6  # two idle limits (0.3 s), not the stalls (60 s)
        await s.http.aclose()

    run(body)
    assert openai.wait_for_disconnect(timeout=5, count=2)


def test_timeout_s_bounds_the_wait_for_the_first_token_retries_included(openai: FakeOpenAICompat) -> None:
    # With timeout_s the host waits at most that long for the answer to start, however many
    # attempts fit in it, and the message says so (it used to say "within 0.3s" after 3 x 0.3s).
    # Ten attempts of 0.3 s each would take over 3 s: far from the bound, even on a slow machine.
    s = stack(FAST.replace("max_attempts = 3", "max_attempts = 10"), env=env_for(openai))

    async def body() -> None:
        await warm(s)
        openai.edit_stream = lambda events: [events[0], Stall()]
        t0 = time.monotonic()
        err = await failing(stream(s, params(timeout_s=0.3)))
        elapsed = time.monotonic() - t0
        assert err.kind == "timeout"
        assert "0.3s" in err.message and "timeout_s" in err.message
        assert 0.25 < elapsed < 2
        await s.http.aclose()

    run(body)
    assert openai.wait_for_disconnect(timeout=5)


def test_no_first_byte_within_the_limit_is_a_timeout(openai: FakeOpenAICompat) -> None:
    s = stack(FAST.replace("max_attempts = 3", "max_attempts = 1"), env=env_for(openai))

    async def body() -> None:
        await warm(s)
        # The fake ends its 20 s delay as soon as the sidecar hangs up, so the test stays short.
        openai.enqueue(Reply(status=200, delay_s=20, body=b"{}"))
        t0 = time.monotonic()
        err = await failing(s.chat.complete(params(timeout_s=0.3), Ctx()))
        assert err.kind == "timeout"
        assert "first-byte" in err.message or "timeout_s of 0.3s" in err.message
        assert time.monotonic() - t0 < 5  # the 0.3 s limit, not the upstream's 20 s
        await s.http.aclose()

    run(body)
    assert openai.wait_for_disconnect(timeout=5)


def test_the_idle_limit_is_not_the_first_byte_limit(openai: FakeOpenAICompat) -> None:
    # A slow first byte is fine when the first-byte limit allows it, headers or not; the idle
    # limit applies from the body's first byte on.
    sse = {"content-type": "text/event-stream"}
    toml = (
        FAST.replace("max_attempts = 3", "max_attempts = 1")
        + "[timeouts]\nfirst_byte_s = 2.5\nidle_s = 0.2\n"
    )
    s = stack(toml, env=env_for(openai))

    async def body() -> None:
        # A first call pays for lazy imports and the connection, which a slow machine stretches
        # past the margins below; the limits are timed on a warm stack.
        await stream(s, params())
        openai.enqueue(Reply(status=200, headers=sse, chunks=[Pause(0.4), b": ping\n\n", Stall()]))
        t0 = time.monotonic()
        err = await failing(stream(s, params()))
        assert err.kind == "timeout"
        assert "idle" in err.message
        # 0.4 s to the first byte, then 0.2 s of nothing; the first-byte limit again would be 2.9 s
        assert 0.55 < time.monotonic() - t0 < 2
        # A stall right after the headers is bounded by the first-byte limit, not the idle one.
        openai.enqueue(Reply(status=200, headers=sse, chunks=[Stall()]))
        t0 = time.monotonic()
        err = await failing(stream(s, params()))
        assert err.kind == "timeout" and "first-byte" in err.message
        assert 2.4 < time.monotonic() - t0 < 7  # the first-byte limit (2.5 s), not the idle one
        await s.http.aclose()

    run(body)


def test_a_slow_trickle_is_ended_by_the_total_limit(openai: FakeOpenAICompat) -> None:
    openai.chunk_delay_s = 0.15
    toml = FAST + "[timeouts]\ntotal_s = 0.5\nidle_s = 5\n"
    s = stack(toml, env=env_for(openai))

    async def body() -> None:
        t0 = time.monotonic()
        err = await failing(stream(s, params()))
        assert err.kind == "timeout"
        assert "total time limit of 0.5s" in err.message
        assert time.monotonic() - t0 < 3  # not the idle limit (5 s)
        await s.http.aclose()

    run(body)
    assert openai.wait_for_disconnect(timeout=5)
    assert len(openai.requests) == 1
