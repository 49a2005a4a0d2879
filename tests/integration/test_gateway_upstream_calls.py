"""How the gateway asks the upstream: a request its client did not stream goes as a non-streamed
call, as the client would have sent it to the provider itself, unless the provider should not take
one (a custom endpoint, a Claude answer longer than ten minutes may take); a streamed request, a
stdio `complete` and every call under `[gateway] upstream_streaming = "always"` stream upstream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sidecar.wire.admin import EndpointSetParams
from sidecar.wire.chat import CompleteParams, Message
from sidecar.wire.keys import SetKeyParams
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.http import RecordedRequest
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.integration.gateway_harness import OPENAI_KEY, Gw, running_gateway

pytestmark = pytest.mark.anyio

HELLO: Any = [{"role": "user", "content": "hello there"}]


def streamed(requests: list[RecordedRequest], path: str) -> list[bool]:
    """Whether each chat request to `path` asked to stream."""
    return [r.json().get("stream") is True for r in requests if r.path.endswith(path)]


async def test_a_request_not_streamed_goes_whole_and_a_streamed_one_streams(gw: Gw) -> None:
    whole = await gw.oai().chat.completions.create(model="openai:gpt-4o-mini", messages=HELLO)
    assert whole.choices[0].message.content == "Echo: hello there"
    chunks = await gw.oai().chat.completions.create(model="openai:gpt-4o-mini", messages=HELLO, stream=True)
    assert (
        "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices]) == "Echo: hello there"
    )
    message = await gw.ant().messages.create(
        model="anthropic:claude-sonnet-4-5", max_tokens=1024, messages=HELLO
    )
    assert message.content[0].type == "text" and message.content[0].text == "Echo: hello there"
    answer = await gw.oai().responses.create(model="openai:gpt-4o-mini", input="hello there", store=False)
    assert answer.output_text == "Echo: hello there"
    assert streamed(gw.oa.requests, "/chat/completions") == [False, True, False]
    assert streamed(gw.an.requests, "/v1/messages") == [False]


async def test_a_claude_answer_that_may_outlast_ten_minutes_streams_upstream(gw: Gw) -> None:
    # Without max_tokens Claude is asked for the model's maximum output (64,000 for Sonnet 4.5):
    # more than a non-streamed call may take. Opus 4.1 takes at most 8,192 without a stream.
    await gw.oai().chat.completions.create(model="anthropic:claude-sonnet-4-5", messages=HELLO)
    await gw.oai().chat.completions.create(
        model="anthropic:claude-sonnet-4-5", messages=HELLO, max_tokens=21_333
    )
    await gw.oai().chat.completions.create(
        model="anthropic:claude-sonnet-4-5", messages=HELLO, max_tokens=21_334
    )
    await gw.oai().chat.completions.create(
        model="anthropic:claude-opus-4-1", messages=HELLO, max_tokens=8_192
    )
    answer = await gw.oai().chat.completions.create(
        model="anthropic:claude-opus-4-1", messages=HELLO, max_tokens=8_193
    )
    assert answer.choices[0].message.content == "Echo: hello there"
    assert [r.json()["max_tokens"] for r in gw.an.requests] == [64_000, 21_333, 21_334, 8_192, 8_193]
    assert streamed(gw.an.requests, "/v1/messages") == [True, False, True, False, True]


async def test_a_custom_endpoint_streams_upstream(gw: Gw) -> None:
    # Often llama.cpp or a server like it, which may go on generating for a non-streamed call whose
    # client has gone.
    await gw.call(
        "endpoint_set", EndpointSetParams(name="box", base_url=gw.oa.api_base, models=["gpt-4o-mini"])
    )
    await gw.call("set_key", SetKeyParams(provider="box", api_key=OPENAI_KEY, validate=False))
    answer = await gw.oai().chat.completions.create(model="box:gpt-4o-mini", messages=HELLO)
    assert answer.choices[0].message.content == "Echo: hello there"
    assert streamed(gw.oa.requests, "/chat/completions") == [True]


async def test_the_hosts_complete_streams_upstream(gw: Gw) -> None:
    # Its timeout_s bounds every wait without progress, which only a stream shows.
    result = await gw.call(
        "complete", CompleteParams(model="openai:gpt-4o-mini", messages=[Message(role="user", content="hi")])
    )
    assert result.text == "Echo: hi"
    assert streamed(gw.oa.requests, "/chat/completions") == [True]


async def test_always_streams_every_call_upstream(
    tmp_path: Path, fakes: tuple[FakeOpenAICompat, FakeAnthropic]
) -> None:
    async with running_gateway(tmp_path, *fakes, upstream_streaming="always") as gw:
        answer = await gw.oai().chat.completions.create(model="openai:gpt-4o-mini", messages=HELLO)
        assert answer.choices[0].message.content == "Echo: hello there"
        await gw.ant().messages.create(model="anthropic:claude-sonnet-4-5", max_tokens=1024, messages=HELLO)
        assert streamed(gw.oa.requests, "/chat/completions") == [True]
        assert streamed(gw.an.requests, "/v1/messages") == [True]


async def test_a_stop_cut_by_the_gateway_keeps_the_usage_of_the_whole_answer(gw: Gw) -> None:
    # gpt-5 refuses `stop`, so the gateway ends the text itself; a whole answer was generated, and
    # billed, all the same: its usage is the provider's, not an estimate of the text kept.
    full = await gw.oai().chat.completions.create(model="openai:gpt-5", messages=HELLO)
    cut = await gw.oai().chat.completions.create(model="openai:gpt-5", messages=HELLO, stop=["the"])
    assert (cut.choices[0].message.content, cut.choices[0].finish_reason) == ("Echo: hello ", "stop")
    assert cut.usage is not None and full.usage is not None
    assert cut.usage.completion_tokens == full.usage.completion_tokens
    assert streamed(gw.oa.requests, "/chat/completions") == [False, False, False]
