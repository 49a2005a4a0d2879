"""The rate-limit state learned from a provider's headers is consulted before sending, through
the spawned sidecar: a request waits out a short reset, and goes to its next candidate (unsent)
when the wait is longer than it may wait; requests waiting on a spent bucket go one refill apart."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from tests.fakes.http import RecordedRequest, Reply
from tests.fakes.openai_compat import FakeOpenAICompat, error_reply
from tests.harness import Sidecar

NO_RETRY = "[retry]\nmax_attempts = 1\n"


def ask(**extra: Any) -> dict[str, Any]:
    return {"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_exhausted_limits_send_the_request_elsewhere_or_wait() -> None:
    with FakeOpenAICompat("openai") as fake:
        env = {"OPENAI_BASE_URL": fake.api_base, "OPENAI_API_KEY": "sk-test-valid"}
        with Sidecar(env, config=NO_RETRY) as sc:
            fake.enqueue(error_reply(429, "openai", "rate_limit", retry_after_s=30))
            first = sc.result("complete", ask(fallback=["stub:echo"]))
            assert first["provider"] == "stub" and len(fake.requests) == 1
            # Nothing remains for 30 s: the next request is not sent to OpenAI at all.
            second = sc.result("complete", ask(fallback=["stub:echo"], timeout_s=2))
            assert second["provider"] == "stub" and len(fake.requests) == 1
            skipped = second["attempts"][0]
            assert skipped["error"] == "rate_limited" and "not sent" in skipped["message"]
            alone = sc.call("complete", ask(timeout_s=2))["error"]["data"]
            assert alone["kind"] == "rate_limited" and 25 < alone["retry_after_s"] <= 30
            assert len(fake.requests) == 1
            # Nothing was sent for it: a refusal in the ledger, not an upstream error.
            for _ in range(100):  # the ledger commits off the request path: bounded wait for it
                total = sc.result("usage_summary")["total"]
                if total["requests"] == 3:
                    break
                time.sleep(0.05)
            assert (total["requests"], total["ok"], total["refused"], total["errors"]) == (3, 2, 1, 0)

        with Sidecar(env, config=NO_RETRY) as sc:
            fake.enqueue(error_reply(429, "openai", "rate_limit", retry_after_s=0.5))
            sc.result("complete", ask(fallback=["stub:echo"]))
            started = time.monotonic()
            waited = sc.result("complete", ask())  # a short reset (about 1 s): waited out, then sent
            assert waited["provider"] == "openai" and len(fake.requests) == 3
            assert time.monotonic() - started >= 0.4


def test_requests_waiting_on_a_spent_bucket_go_one_refill_apart() -> None:
    # 600 a minute and none left: one request is back every 0.1 s. Four sent together then go at
    # 0.1, 0.2, 0.3 and 0.4 s, not all at 0.1 s (where three would meet a 429).
    spent = {
        "x-ratelimit-limit-requests": "600",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1m0s",
    }
    with FakeOpenAICompat("openai") as fake:
        answer = fake._chat
        arrived: list[float] = []

        def chat(req: RecordedRequest) -> Reply:
            arrived.append(time.monotonic())
            reply = answer(req)
            return replace(reply, headers={**reply.headers, **spent}) if len(arrived) == 1 else reply

        fake.route("POST", "/v1/chat/completions", chat)
        env = {"OPENAI_BASE_URL": fake.api_base, "OPENAI_API_KEY": "sk-test-valid"}
        with Sidecar(env, config=NO_RETRY) as sc:
            sc.result("complete", ask())
            ids = [sc.start("complete", ask()) for _ in range(4)]
            assert all("result" in sc.wait(i, timeout=20) for i in ids)
    # Sleeps never end early, so however slow the machine, the fourth left 0.4 s after the spent
    # answer at the soonest (without pacing, all four leave at 0.1 s).
    assert len(arrived) == 5
    assert arrived[-1] - arrived[0] >= 0.4
