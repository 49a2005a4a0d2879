"""Resilience seen by a host: `llm-sidecar` spawned over pipes, talking to fakes that misbehave.

Fallback with its `attempt` event, no retry after the first token, cancelling a request queued
behind a client-side limit, a stalled stream ending as `timeout`, the circuit breaker in
`list_providers` and `rate_limits`, and upstream rate-limit headers in `rate_limits`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.fakes.anthropic import VALID_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.anthropic import error_reply as anthropic_error
from tests.fakes.anthropic import midstream_error_reply as anthropic_midstream_error
from tests.fakes.http import RecordedRequest, Reply, Stall
from tests.fakes.openai_compat import FakeOpenAICompat, error_reply, midstream_error_reply
from tests.harness import Sidecar

KEYS = {"OPENAI_API_KEY": "sk-test-valid", "XAI_API_KEY": "xai-test-valid"}
FAST = "[retry]\nmax_attempts = 2\nbase_delay_s = 0.05\nmax_delay_s = 0.05\n"
ASK = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def xai() -> Iterator[FakeOpenAICompat]:
    with FakeOpenAICompat("xai") as fake:
        yield fake


def spawn(openai: FakeOpenAICompat, config: str = FAST, xai: FakeOpenAICompat | None = None) -> Sidecar:
    env = {**KEYS, "OPENAI_BASE_URL": openai.api_base}
    if xai is not None:
        env["XAI_BASE_URL"] = xai.api_base
    return Sidecar(env, config=config)


def unavailable(req: RecordedRequest) -> Reply:
    return error_reply(503, "openai", "overloaded")


def check_clean(sc: Sidecar) -> None:
    assert sc.bad_lines == [], f"stdout held non-protocol lines: {sc.bad_lines!r}"


def test_fallback_from_a_failing_provider_to_a_healthy_one(
    openai: FakeOpenAICompat, xai: FakeOpenAICompat
) -> None:
    openai.route("POST", "/v1/chat/completions", unavailable)
    with spawn(openai, xai=xai) as sc:
        rid = sc.start(
            "stream", {"model": "openai:gpt-4o-mini", "messages": ASK, "fallback": ["xai:grok-3-mini"]}
        )
        result = sc.wait(rid)["result"]
        events = sc.events(rid)
        check_clean(sc)
    assert result["provider"] == "xai" and result["model"] == "grok-3-mini"
    assert result["text"] == "Echo: hello there"
    assert [(a["provider"], a["ok"], a.get("error")) for a in result["attempts"]] == [
        ("openai", False, "provider_error"),
        ("openai", False, "provider_error"),
        ("xai", True, None),
    ]
    assert "503" in result["attempts"][0]["message"]
    attempt_events = [e for e in events if e["type"] == "attempt"]
    assert [(e["provider"], e["model"], e["attempt"]) for e in attempt_events] == [
        ("openai", "gpt-4o-mini", 2),
        ("xai", "grok-3-mini", 3),
    ]
    assert attempt_events[-1]["previous_error"] == "provider_error"
    first_text = next(i for i, e in enumerate(events) if e["type"] == "text_delta")
    assert events.index(attempt_events[-1]) < first_text
    assert "".join(e["text"] for e in events if e["type"] == "text_delta") == result["text"]
    assert len(openai.requests) == 2 and len(xai.requests) == 1


def test_no_retry_after_the_first_token(openai: FakeOpenAICompat, xai: FakeOpenAICompat) -> None:
    openai.enqueue(midstream_error_reply("openai", text_pieces=("Half", " an answer")))
    with spawn(openai, xai=xai) as sc:
        rid = sc.start(
            "stream", {"model": "openai:gpt-4o-mini", "messages": ASK, "fallback": ["xai:grok-3-mini"]}
        )
        answer = sc.wait(rid)
        events = sc.events(rid)
        check_clean(sc)
    assert answer["error"]["data"]["kind"] == "provider_error"
    assert "".join(e["text"] for e in events if e["type"] == "text_delta") == "Half an answer"
    assert not [e for e in events if e["type"] == "attempt"]
    assert len(openai.requests) == 1
    assert xai.requests == []


def test_429_with_retry_after_then_success(openai: FakeOpenAICompat) -> None:
    with spawn(openai) as sc:
        # A first call loads the HTTP stack, so the timed one measures the retry alone.
        sc.result("complete", {"model": "openai:gpt-4o-mini", "messages": ASK})
        openai.enqueue(error_reply(429, "openai", "rate_limit", retry_after_s=0.3))
        t0 = time.monotonic()
        result = sc.result("complete", {"model": "openai:gpt-4o-mini", "messages": ASK})
        elapsed = time.monotonic() - t0
        check_clean(sc)
    assert [a.get("error") for a in result["attempts"]] == ["rate_limited", None]
    assert 0.3 <= elapsed < 4
    assert len(openai.requests) == 3


def test_cancelling_a_request_queued_behind_a_client_side_limit(openai: FakeOpenAICompat) -> None:
    openai.edit_stream = lambda events: [*events[:3], Stall(30)]  # holds the only slot until cancelled
    config = FAST + "[providers.openai.limits]\nmax_concurrent = 1\n"
    with spawn(openai, config) as sc:
        slow = sc.start("stream", {"model": "openai:gpt-4o-mini", "messages": ASK})
        openai.wait_for_requests(1)
        queued = sc.start("stream", {"model": "openai:gpt-4o-mini", "messages": ASK})
        deadline = time.monotonic() + 5
        while True:  # wait until the second request is in the queue
            state = sc.result("rate_limits", {"provider": "openai"})["providers"][0]
            if state["client"].get("waiting") == 1:
                break
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert state["client"]["in_flight"] == 1 and state["client"]["max_concurrent"] == 1
        t0 = time.monotonic()
        sc.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": queued}})
        answer = sc.wait(queued, timeout=10)
        assert time.monotonic() - t0 < 3  # at once, not when the slot comes free (30 s)
        assert answer["error"]["code"] == -32800 and answer["error"]["data"]["kind"] == "cancelled"
        assert sc.events(queued) == []
        sc.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": slow}})
        assert sc.wait(slow, timeout=5)["error"]["code"] == -32800
        check_clean(sc)
    assert len(openai.requests) == 1  # the queued request never reached the provider
    assert openai.wait_for_disconnect(timeout=5)


def test_a_stalled_stream_ends_as_timeout_within_its_idle_limit(openai: FakeOpenAICompat) -> None:
    with spawn(openai) as sc:
        # A first, healthy stream: the bound below is the idle limit's, not the first request's
        # one-off costs (importing the HTTP stack, the first connection).
        assert "result" in sc.call("stream", {"model": "openai:gpt-4o-mini", "messages": ASK})
        openai.edit_stream = lambda events: [*events[:3], Stall()]
        t0 = time.monotonic()
        rid = sc.start("stream", {"model": "openai:gpt-4o-mini", "messages": ASK, "timeout_s": 0.5})
        answer = sc.wait(rid, timeout=10)
        elapsed = time.monotonic() - t0
        check_clean(sc)
        assert answer["error"]["data"]["kind"] == "timeout"
        assert answer["error"]["data"]["provider"] == "openai"
        assert elapsed < 5  # the 0.5 s limit, not the stall (60 s)
        assert openai.wait_for_disconnect(timeout=5)  # the abandoned connection was closed
    assert len(openai.requests) == 2  # text had reached the host: not retried


def _circuit(sc: Sidecar) -> tuple[str, dict[str, Any]]:
    listed = sc.result("list_providers", {})["providers"]
    limits = sc.result("rate_limits", {"provider": "openai"})["providers"][0]
    return next(p["circuit"] for p in listed if p["id"] == "openai"), limits["circuit"]


def test_the_breaker_opens_shows_and_half_opens(openai: FakeOpenAICompat) -> None:
    for _ in range(2):
        openai.enqueue(error_reply(500, "openai", "server"))
    # A cooldown of 2 s: the calls made while the breaker is open (pipe round trips, slow on a
    # loaded machine) all fit in it, so the skipped call is never taken for the half-open trial.
    config = "[retry]\nmax_attempts = 1\n[breaker]\nfailures = 2\ncooldown_s = 2\n"
    with spawn(openai, config) as sc:
        params = {"model": "openai:gpt-4o-mini", "messages": ASK}
        assert _circuit(sc)[0] == "closed"
        for _ in range(2):
            assert sc.call("complete", params)["error"]["data"]["kind"] == "provider_error"
        listed, info = _circuit(sc)
        assert listed == "open" and info["state"] == "open" and info["consecutive_failures"] == 2
        skipped = sc.call("complete", params)["error"]["data"]
        assert skipped["kind"] == "provider_error" and "circuit breaker" in skipped["message"]
        assert 0 < skipped["retry_after_s"] <= 2
        assert len(openai.requests) == 2
        time.sleep(2.05)
        listed, info = _circuit(sc)
        assert listed == "half_open" and info["state"] == "half_open"
        assert sc.result("complete", params)["text"] == "Echo: hello there"
        assert _circuit(sc)[0] == "closed"
        check_clean(sc)
    assert len(openai.requests) == 3


def test_rate_limits_shows_the_providers_headers(openai: FakeOpenAICompat) -> None:
    with spawn(openai) as sc:
        sc.result("complete", {"model": "openai:gpt-4o-mini", "messages": ASK})
        now = time.time()
        answer = sc.result("rate_limits", {})
        check_clean(sc)
    mine = next(p for p in answer["providers"] if p["provider"] == "openai")
    # One request taken from 5,000 a minute, refilled within 12 ms: 4,999 until then, whole after.
    assert mine["requests"]["limit"] == 5000 and mine["requests"]["remaining"] in (4999, 5000)
    assert mine["tokens"]["limit"] == 4_000_000
    reset = datetime.fromisoformat(mine["tokens"]["reset_at"].replace("Z", "+00:00")).timestamp()
    assert reset == pytest.approx(now + 360, abs=3)
    assert mine["circuit"]["state"] == "closed"
    assert answer["as_of"].endswith("Z")
    untouched = next(p for p in answer["providers"] if p["provider"] == "gemini")
    assert "requests" not in untouched


# -- Anthropic: 529 overloads, RFC 3339 rate-limit headers, errors inside the stream ----------------


@pytest.fixture
def anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


def spawn_anthropic(fake: FakeAnthropic, config: str = FAST) -> Sidecar:
    return Sidecar({"ANTHROPIC_BASE_URL": fake.url, "ANTHROPIC_API_KEY": ANTHROPIC_KEY}, config=config)


CLAUDE = {"model": "anthropic:claude-haiku-4-5", "messages": ASK, "max_tokens": 100}


def test_anthropic_529_and_429_are_retried_and_its_headers_shown(anthropic: FakeAnthropic) -> None:
    anthropic.enqueue(anthropic_error(529))
    anthropic.enqueue(anthropic_error(429, retry_after=0.3))
    config = FAST.replace("max_attempts = 2", "max_attempts = 3")
    with spawn_anthropic(anthropic, config) as sc:
        t0 = time.monotonic()
        rid = sc.start("stream", CLAUDE)
        result = sc.wait(rid)["result"]
        elapsed = time.monotonic() - t0
        now = time.time()
        state = sc.result("rate_limits", {"provider": "anthropic"})["providers"][0]
        events = sc.events(rid)
        check_clean(sc)
    assert result["text"] == "Echo: hello there"
    assert [a.get("error") for a in result["attempts"]] == ["provider_error", "rate_limited", None]
    assert "529" in result["attempts"][0]["message"]
    assert elapsed >= 0.3
    attempts = [e for e in events if e["type"] == "attempt"]
    assert [e["previous_error"] for e in attempts] == ["provider_error", "rate_limited"]
    assert attempts[1]["delay_s"] == pytest.approx(0.3)
    # One request taken from 4,000 a minute, refilled within 15 ms: 3,999 until then, whole after.
    assert state["requests"]["limit"] == 4000 and state["requests"]["remaining"] in (3999, 4000)
    assert state["tokens"]["limit"] == 2_000_000
    assert state["input_tokens"]["limit"] == 1_600_000
    assert state["output_tokens"]["limit"] == 400_000
    reset = datetime.fromisoformat(state["output_tokens"]["reset_at"].replace("Z", "+00:00")).timestamp()
    assert now - 1 <= reset <= now + 3  # the fake resets output tokens 2 s after the answer
    assert state["last_status"] == 200
    assert "retry_after_s" not in state  # the success ended the wait
    assert len(anthropic.requests) == 3


def test_an_anthropic_error_event_after_text_is_not_retried(anthropic: FakeAnthropic) -> None:
    anthropic.enqueue(anthropic_midstream_error(("Half", " done")))
    with spawn_anthropic(anthropic) as sc:
        rid = sc.start("stream", CLAUDE)
        answer = sc.wait(rid)
        events = sc.events(rid)
        check_clean(sc)
    assert answer["error"]["data"]["kind"] == "provider_error"  # overloaded_error: transient, yet final
    assert "".join(e["text"] for e in events if e["type"] == "text_delta") == "Half done"
    assert len(anthropic.requests) == 1
