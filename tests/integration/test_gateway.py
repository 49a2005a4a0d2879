"""The HTTP gateway, started inside a real Services stack, called by the official `openai` and
`anthropic` SDKs over real sockets, in front of the fake upstreams.

Covers every route, each error status with its SDK's error class, client keys with different
permissions and budgets, the ledger's `client` column, and a client that disconnects mid-stream.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import sqlite3
from pathlib import Path
from typing import Any

import anthropic
import anyio
import httpx2
import msgspec
import openai
import pydantic
import pytest

from sidecar.app import build_services
from sidecar.config import Config, GatewaySettings, RouterSettings
from sidecar.infra.keystore import MemoryStore
from sidecar.wire.base import Empty
from sidecar.wire.gateway import (
    ClientKeyCreateParams,
    ClientKeyRef,
    ClientKeyUpdateParams,
    GatewayStartParams,
    MetricsParams,
)
from sidecar.wire.routers import RouterSetParams
from sidecar.wire.usage import UsageSummaryParams
from tests.fakes.anthropic import VALID_KEY as ANTHROPIC_KEY
from tests.fakes.http import Stall
from tests.fakes.openai_compat import error_reply
from tests.integration.gateway_harness import OPENAI_KEY, Ctx, Gw, first_rows, flush, ledger

pytestmark = pytest.mark.anyio

# --- OpenAI -----------------------------------------------------------------------------------------


async def test_openai_async_non_stream_answers_and_the_ledger_names_the_client(gw: Gw) -> None:
    res = await gw.oai().chat.completions.create(
        model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}]
    )
    assert res.choices[0].message.content == "Echo: hello there"
    assert res.choices[0].finish_reason == "stop"
    assert res.usage is not None and res.usage.prompt_tokens > 0 and res.usage.completion_tokens > 0
    assert res.model == "openai:gpt-4o-mini"
    await flush(gw)
    (row,) = ledger(gw.home)
    assert (row["client"], row["provider"], row["outcome"]) == ("full", "openai", "ok")
    summary = await gw.call("usage_summary", UsageSummaryParams(group_by="client"))
    assert [(g.key, g.requests) for g in summary.groups] == [("full", 1)]
    listed = {k.name: (k.requests, k.cost_usd) for k in (await gw.call("client_key_list", Empty())).keys}
    assert listed == {"full": (1, pytest.approx(row["cost_usd"])), "narrow": (0, 0.0)} and row["cost_usd"] > 0


async def test_openai_async_stream_with_usage(gw: Gw) -> None:
    stream = await gw.oai().chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "stream me please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
            assert chunk.choices == []
    assert text == "Echo: stream me please"
    assert finish == "stop"
    assert usage is not None and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


async def test_a_model_refused_streaming_answers_both_forms(gw: Gw) -> None:
    # OpenAI streams o3 only for a verified organization: a streaming client still gets chunks, the
    # gateway asking again without streaming; the refusal is remembered for the next request.
    gw.oa.stream_refused_models.add("o3")
    messages: Any = [{"role": "user", "content": "hello there"}]
    stream = await gw.oai().chat.completions.create(
        model="openai:o3", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        usage = chunk.usage or usage
    assert text == "Echo: hello there"
    whole = await gw.oai().chat.completions.create(model="openai:o3", messages=messages)
    assert whole.choices[0].message.content == "Echo: hello there"
    assert usage is not None and whole.usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens > 0
    assert [r.json().get("stream") for r in gw.oa.requests] == [True, None, None]
    await flush(gw)
    assert [(r["model"], r["outcome"]) for r in ledger(gw.home)] == [("o3", "ok"), ("o3", "ok")]


async def test_a_reasoning_model_answers_a_tool_that_always_sends_a_temperature(gw: Gw) -> None:
    # Chat tools send their temperature and top_p to every model; OpenAI refuses both for gpt-5.
    messages: Any = [{"role": "user", "content": "hello there"}]
    for stream in (False, True):
        answer = await gw.oai().chat.completions.create(
            model="openai:gpt-5", messages=messages, temperature=0.7, top_p=0.95, stream=stream
        )
        if isinstance(answer, openai.AsyncStream):
            text = "".join([c.choices[0].delta.content or "" async for c in answer if c.choices])
        else:
            text = answer.choices[0].message.content or ""
        assert text == "Echo: hello there"
    assert [(r.json().get("temperature"), r.json().get("top_p")) for r in gw.oa.requests] == [
        (0.7, 0.95),
        (None, 0.95),
        (None, None),
        (None, None),
    ]
    # Nor does it take stop sequences: the gateway ends the text before the first one itself.
    cut = await gw.oai().chat.completions.create(model="openai:gpt-5", messages=messages, stop=["the"])
    assert (cut.choices[0].message.content, cut.choices[0].finish_reason) == ("Echo: hello ", "stop")
    assert [r.json().get("stop") for r in gw.oa.requests[-2:]] == [["the"], None]


async def test_openai_tools_stream_and_non_stream(gw: Gw) -> None:
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "look a thing up",
                "parameters": {"type": "object", "properties": {"input": {"type": "string"}}},
            },
        }
    ]
    messages: Any = [{"role": "user", "content": "capital of France"}]
    res = await gw.oai().chat.completions.create(model="openai:gpt-4o-mini", messages=messages, tools=tools)
    call = res.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert res.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "lookup"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"input": "capital of France"}  # type: ignore[union-attr]

    stream = await gw.oai().chat.completions.create(
        model="openai:gpt-4o-mini", messages=messages, tools=tools, stream=True
    )
    args, names, ids = "", [], []
    async for chunk in stream:
        for tc in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            assert tc.index == 0
            if tc.id:
                ids.append(tc.id)
            if tc.function and tc.function.name:
                names.append(tc.function.name)
            args += (tc.function.arguments or "") if tc.function else ""
    assert ids == [call.id] and names == ["lookup"]
    assert json.loads(args) == {"input": "capital of France"}

    # The tool's answer goes back, with the assistant's call, and the model uses it.
    follow = [
        *messages,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "Paris"},
    ]
    res = await gw.oai().chat.completions.create(model="openai:gpt-4o-mini", messages=follow, tools=tools)
    assert res.choices[0].message.content == "The tool said: Paris"


async def test_openai_image_part_reaches_the_upstream(gw: Gw) -> None:
    url = "data:image/png;base64,iVBORw0KGgo="
    await gw.oai().chat.completions.create(
        model="openai:gpt-4o-mini",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
    )
    sent = gw.oa.requests[-1].json()["messages"][0]["content"]
    assert {"type": "image_url", "image_url": {"url": url}} in [
        {k: v for k, v in p.items() if k in ("type", "image_url")} for p in sent
    ]


async def test_openai_sync_client_and_legacy_completions(gw: Gw) -> None:
    def run() -> tuple[str, str, str]:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.full, max_retries=0)
        res = client.chat.completions.create(
            model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "sync"}]
        )
        streamed = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "sync stream"}], stream=True
            )
            if c.choices
        )
        legacy = client.completions.create(model="openai:gpt-4o-mini", prompt="old style")
        return res.choices[0].message.content or "", streamed, legacy.choices[0].text

    assert await anyio.to_thread.run_sync(run) == ("Echo: sync", "Echo: sync stream", "Echo: old style")


async def test_models_lists_only_what_the_key_may_use(gw: Gw) -> None:
    every = [m.id async for m in gw.oai().models.list()]
    narrow = [m.id async for m in gw.oai(gw.openai_only).models.list()]
    assert any(m.startswith("anthropic:") for m in every)
    assert {"router:cheapest", "router:best"} <= set(every)
    assert narrow and all(m.startswith("openai:") for m in narrow)
    # One model, as the SDK's `models.retrieve` asks (ids with ':' and '/' in them).
    slashed = next(m for m in every if "/" in m)
    for wanted in ("openai:gpt-4o-mini", "router:best", slashed):
        assert (await gw.oai().models.retrieve(wanted)).id == wanted
    with pytest.raises(openai.NotFoundError):
        await gw.oai(gw.openai_only).models.retrieve("anthropic:claude-sonnet-4-5")  # not this key's
    with pytest.raises(openai.NotFoundError):
        await gw.oai().models.retrieve("openai:no-such-model")


async def test_the_anthropic_sdk_lists_models_in_its_own_shape(gw: Gw) -> None:
    every = [m async for m in gw.ant().models.list()]
    by_id = {m.id: m for m in every}
    claude = by_id["anthropic:claude-sonnet-4-5"]
    assert claude.type == "model" and claude.display_name and claude.max_input_tokens and claude.max_tokens
    assert "router:best" in by_id and by_id["router:best"].display_name == "Router best"
    narrow = [m.id async for m in gw.ant(gw.openai_only).models.list()]
    assert narrow and all(m.startswith("openai:") for m in narrow)
    one = await gw.ant().models.retrieve("openai:gpt-4o-mini")
    assert (one.id, one.type) == ("openai:gpt-4o-mini", "model")
    with pytest.raises(anthropic.NotFoundError) as missing:
        await gw.ant(gw.openai_only).models.retrieve("anthropic:claude-sonnet-4-5")
    assert missing.value.body["type"] == "error"  # type: ignore[index]  # Anthropic's error shape
    with pytest.raises(anthropic.AuthenticationError) as refused:
        await gw.ant("lsk-not-a-key").models.list()
    assert refused.value.body["type"] == "error"  # type: ignore[index]


# --- Anthropic --------------------------------------------------------------------------------------


class Weather(pydantic.BaseModel):
    summary: str
    words: int


async def test_structured_output_through_both_sdks(gw: Gw) -> None:
    """The openai SDK's `chat.completions.parse` (a strict JSON Schema in `response_format`) gets
    its type back from Claude; the anthropic SDK's `output_config.format` gets JSON from OpenAI."""
    parsed = await gw.oai().chat.completions.parse(
        model="anthropic:claude-sonnet-4-5",
        messages=[{"role": "user", "content": "sunny and warm"}],
        response_format=Weather,
    )
    assert parsed.choices[0].message.parsed == Weather(summary="Echo: sunny and warm", words=4)
    assert gw.an.requests[-1].json()["output_config"]["format"]["type"] == "json_schema"

    schema: Any = {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"],
                   "additionalProperties": False}  # fmt: skip
    msg = await gw.ant().messages.create(
        model="openai:gpt-4o-mini",
        max_tokens=200,
        messages=[{"role": "user", "content": "sunny and warm"}],
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    assert msg.content[0].type == "text" and json.loads(msg.content[0].text) == {
        "summary": "Echo: sunny and warm"
    }
    sent = gw.oa.requests[-1].json()["response_format"]
    assert sent == {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    # JSON mode with no schema: Claude has none, and the client is told so.
    with pytest.raises(openai.BadRequestError) as exc:
        await gw.oai().chat.completions.create(
            model="anthropic:claude-sonnet-4-5",
            messages=[{"role": "user", "content": "json please"}],
            response_format={"type": "json_object"},
        )
    assert exc.value.body["param"] == "response_format"  # type: ignore[index]


async def test_anthropic_count_tokens_counts_exactly_where_the_provider_can(gw: Gw) -> None:
    """Claude Code and the anthropic SDK count before sending: the provider's own count where it has
    one (Claude's, OpenAI's), the sidecar's estimate for others; a count runs nothing and uses no
    request quota."""
    client = gw.ant()
    ask: Any = {"system": "be brief", "messages": [{"role": "user", "content": "how many tokens"}]}
    counted = await client.messages.count_tokens(model="anthropic:claude-sonnet-4-5", **ask)
    sent = gw.an.requests[-1]
    assert sent.path == "/v1/messages/count_tokens" and "max_tokens" not in sent.json()
    answered = await client.messages.create(model="anthropic:claude-sonnet-4-5", max_tokens=100, **ask)
    u = answered.usage
    total = u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0)
    assert counted.input_tokens == total
    by_openai = await client.messages.count_tokens(model="openai:gpt-4o-mini", **ask)
    assert gw.oa.requests[-1].path == "/v1/responses/input_tokens" and by_openai.input_tokens > 0
    upstream = len(gw.oa.requests) + len(gw.an.requests)
    estimated = await client.messages.count_tokens(model="stub:echo", **ask)
    assert estimated.input_tokens > 0 and len(gw.oa.requests) + len(gw.an.requests) == upstream
    # The narrow key's per-minute limit is not spent by counting; its model list still holds.
    await gw.call(
        "client_key_update", ClientKeyUpdateParams(name="narrow", limits={"requests_per_minute": 1})
    )  # type: ignore[arg-type]
    narrow = gw.ant(gw.openai_only)
    for _ in range(3):
        await narrow.messages.count_tokens(model="openai:gpt-4o-mini", **ask)
    with pytest.raises(anthropic.PermissionDeniedError):
        await narrow.messages.count_tokens(model="anthropic:claude-sonnet-4-5", **ask)


async def test_anthropic_stop_sequences_say_which_one_ended_the_answer(gw: Gw) -> None:
    # Claude says which stop sequence it met; for gpt-5, which refuses `stop`, the sidecar does.
    client = gw.ant()
    messages: Any = [{"role": "user", "content": "first part END second part"}]
    for model in ("anthropic:claude-sonnet-4-5", "openai:gpt-5"):
        msg = await client.messages.create(
            model=model, max_tokens=512, messages=messages, stop_sequences=["END"]
        )
        assert msg.content[0].type == "text" and msg.content[0].text == "Echo: first part ", model
        assert (msg.stop_reason, msg.stop_sequence) == ("stop_sequence", "END"), model
        async with client.messages.stream(
            model=model, max_tokens=512, messages=messages, stop_sequences=["END"]
        ) as stream:
            final = await stream.get_final_message()
        assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "END"), model
        assert "".join(b.text for b in final.content if b.type == "text") == "Echo: first part "
    plain = await client.messages.create(model="openai:gpt-5", max_tokens=512, messages=messages)
    assert (plain.stop_reason, plain.stop_sequence) == ("end_turn", None)


async def test_anthropic_non_stream_with_thinking_and_tools(gw: Gw) -> None:
    client = gw.ant()
    msg = await client.messages.create(
        model="anthropic:claude-sonnet-4-5",
        max_tokens=2048,
        messages=[{"role": "user", "content": "hello claude"}],
    )
    assert msg.content[0].type == "text" and msg.content[0].text == "Echo: hello claude"
    assert msg.stop_reason == "end_turn" and msg.usage.output_tokens > 0

    tools: Any = [{"name": "lookup", "description": "", "input_schema": {"type": "object", "properties": {}}}]
    first = await client.messages.create(
        model="anthropic:claude-sonnet-4-5",
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=tools,
        messages=[{"role": "user", "content": "find it"}],
    )
    kinds = [b.type for b in first.content]
    assert kinds == ["thinking", "tool_use"] and first.stop_reason == "tool_use"
    use = first.content[1]
    assert use.type == "tool_use" and use.input == {"input": "find it"}
    # The thinking block (with the fake's signature) goes back and the fake accepts the turn.
    second = await client.messages.create(
        model="anthropic:claude-sonnet-4-5",
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=tools,
        messages=[
            {"role": "user", "content": "find it"},
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "found"}]},
        ],
    )
    assert [b.type for b in second.content][-1] == "text"
    assert second.content[-1].text == "The tool said: found"  # type: ignore[union-attr]


async def test_a_router_that_lands_on_anthropic_streams_signed_thinking(gw: Gw) -> None:
    """Which candidate a router runs is known only with the result, so its thinking blocks wait for
    their signatures too; the next turn, sent back through the router, is accepted upstream."""
    settings = RouterSettings(models=["anthropic:claude-sonnet-4-5"])
    await gw.call("router_set", RouterSetParams(name="thinker", settings=settings))
    tools: Any = [{"name": "lookup", "description": "", "input_schema": {"type": "object", "properties": {}}}]
    ask: Any = {"max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 1024}, "tools": tools}
    async with gw.ant().messages.stream(
        model="router:thinker", messages=[{"role": "user", "content": "look it up"}], **ask
    ) as stream:
        final = await stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "tool_use"]
    assert final.content[0].signature  # type: ignore[union-attr]
    use: Any = final.content[1]
    async with gw.ant().messages.stream(
        model="thinker",
        messages=[
            {"role": "user", "content": "look it up"},
            {"role": "assistant", "content": [b.model_dump() for b in final.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "7"}]},
        ],
        **ask,
    ) as stream:
        second = await stream.get_final_message()
    assert second.content[-1].text == "The tool said: 7"  # type: ignore[union-attr]


async def test_anthropic_stream_event_sequence(gw: Gw) -> None:
    tools: Any = [{"name": "lookup", "description": "", "input_schema": {"type": "object", "properties": {}}}]
    events: list[str] = []
    async with gw.ant().messages.stream(
        model="anthropic:claude-sonnet-4-5",
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=tools,
        messages=[{"role": "user", "content": "look it up"}],
    ) as stream:
        async for event in stream:
            if event.type in (
                "message_start",
                "content_block_start",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ):
                events.append(event.type)
        final = await stream.get_final_message()
    # The thinking block stays open until its signature (known with the result) has been sent.
    assert events == [
        "message_start",
        "content_block_start",
        "content_block_start",
        "content_block_stop",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert [b.type for b in final.content] == ["thinking", "tool_use"]
    assert final.content[0].signature  # type: ignore[union-attr]
    use = final.content[1]
    assert use.input == {"input": "look it up"}  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use" and final.usage.output_tokens > 0

    # The streamed thinking block, signature included, continues the turn (the fake checks it).
    async with gw.ant().messages.stream(
        model="anthropic:claude-sonnet-4-5",
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=tools,
        messages=[
            {"role": "user", "content": "look it up"},
            {"role": "assistant", "content": [b.model_dump() for b in final.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "42"}]},  # type: ignore[union-attr]
        ],
    ) as stream:
        second = await stream.get_final_message()
    assert second.content[-1].text == "The tool said: 42"  # type: ignore[union-attr]

    async with gw.ant().messages.stream(
        model="openai:gpt-4o-mini", max_tokens=100, messages=[{"role": "user", "content": "any provider"}]
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
    assert text == "Echo: any provider"


# --- errors -----------------------------------------------------------------------------------------


async def test_401_without_or_with_a_wrong_key(gw: Gw) -> None:
    with pytest.raises(openai.AuthenticationError) as oe:
        await gw.oai("lsk-not-a-key").chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    assert oe.value.status_code == 401
    with pytest.raises(anthropic.AuthenticationError):
        await gw.ant("nope").messages.create(
            model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    async with httpx2.AsyncClient() as http:
        r = await http.post(gw.url + "/v1/chat/completions", json={})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


async def test_403_model_not_allowed_and_404_unknown_model(gw: Gw) -> None:
    with pytest.raises(openai.PermissionDeniedError):
        await gw.oai(gw.openai_only).chat.completions.create(
            model="anthropic:claude-sonnet-4-5", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(anthropic.PermissionDeniedError):
        await gw.ant(gw.openai_only).messages.create(
            model="anthropic:claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.NotFoundError):
        await gw.oai().chat.completions.create(
            model="nosuchmodel", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(anthropic.NotFoundError):
        await gw.ant().messages.create(
            model="nosuch:thing", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )


async def test_429_for_a_spent_budget_and_a_per_minute_limit(gw: Gw) -> None:
    narrow = gw.oai(gw.openai_only)
    await narrow.chat.completions.create(
        model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
    )
    with pytest.raises(openai.RateLimitError) as exc:
        await narrow.chat.completions.create(
            model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.response.headers["retry-after"].isdigit()
    assert exc.value.code == "budget_exceeded"
    # The other key is untouched by this one's budget.
    await gw.oai().chat.completions.create(
        model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
    )

    await gw.call("client_key_update", ClientKeyUpdateParams(name="full", limits={"requests_per_minute": 1}))  # type: ignore[arg-type]
    await gw.oai().chat.completions.create(
        model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
    )
    with pytest.raises(anthropic.RateLimitError) as aexc:
        await gw.ant().messages.create(
            model="openai:gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert int(aexc.value.response.headers["retry-after"]) >= 1


async def test_a_renamed_key_keeps_its_spent_budget_and_its_usage(gw: Gw) -> None:
    """Renaming is not a way round a budget: the key's rows and spend go with its new name."""
    narrow = gw.oai(gw.openai_only)
    await narrow.chat.completions.create(
        model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
    )
    await flush(gw)
    before = {k.name: (k.requests, k.cost_usd) for k in (await gw.call("client_key_list", Empty())).keys}
    renamed = await gw.call("client_key_update", ClientKeyUpdateParams(name="narrow", rename="renamed"))
    assert renamed.info.name == "renamed"
    with pytest.raises(openai.RateLimitError) as exc:
        await narrow.chat.completions.create(
            model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.code == "budget_exceeded"
    after = {k.name: (k.requests, k.cost_usd) for k in (await gw.call("client_key_list", Empty())).keys}
    assert before["narrow"][0] == 1 and before["narrow"][1] > 0
    assert after == {"full": before["full"], "renamed": before["narrow"]}
    summary = await gw.call("usage_summary", UsageSummaryParams(group_by="client"))
    assert [(g.key, g.requests) for g in summary.groups] == [("renamed", 1)]
    assert await requests_by_client(gw) == {"renamed": 1}  # the last hour in memory follows too

    # Deleted, its usage stays, under a name no key can have; a new key of that name starts afresh.
    rec_id = renamed.info.id
    await gw.call("client_key_delete", ClientKeyRef(name="renamed"))
    again = await gw.call(
        "client_key_create", ClientKeyCreateParams(name="renamed", allow=["openai:*"], daily_usd=0.000001)
    )
    await gw.oai(again.key).chat.completions.create(
        model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
    )
    await flush(gw)
    listed = {k.name: k.requests for k in (await gw.call("client_key_list", Empty())).keys}
    assert listed == {"full": before["full"][0], "renamed": 1}
    summary = await gw.call("usage_summary", UsageSummaryParams(group_by="client"))
    assert sorted((g.key, g.requests) for g in summary.groups) == [
        ("renamed", 1),
        (f"renamed (deleted, {rec_id})", 1),
    ]
    assert await requests_by_client(gw) == {"renamed": 1, f"renamed (deleted, {rec_id})": 1}


async def requests_by_client(gw: Gw) -> dict[str | None, int]:
    """Requests per client key in the last hour, from the metrics kept in memory."""
    answer = await gw.call("metrics", MetricsParams(range="1h", metric="requests", group_by="client"))
    return {s.key: int(sum(p[1] or 0 for p in s.points)) for s in answer.series}


async def test_502_503_504_for_upstream_failures(gw: Gw) -> None:
    gw.oa.enqueue(error_reply(500, "openai"))
    with pytest.raises(openai.InternalServerError) as e502:
        await gw.oai().chat.completions.create(
            model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    assert e502.value.status_code == 502
    gw.oa.enqueue(error_reply(401, "openai", "auth"))
    with pytest.raises(anthropic.APIStatusError) as a502:
        await gw.ant().messages.create(
            model="openai:gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert a502.value.status_code == 502
    with pytest.raises(openai.InternalServerError) as e503:  # no key for xai behind the gateway
        await gw.oai().chat.completions.create(
            model="xai:grok-4", messages=[{"role": "user", "content": "x"}]
        )
    assert e503.value.status_code == 503
    gw.oa.edit_stream = lambda events: [Stall()]
    with pytest.raises(openai.APIStatusError) as e504:
        stream = await gw.oai().chat.completions.create(
            model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "x"}], stream=True
        )
        async for _ in stream:
            pass
    assert e504.value.status_code == 504


async def test_400_malformed_json_and_413_oversized_body_then_keeps_serving(gw: Gw) -> None:
    headers = {"authorization": f"Bearer {gw.full}", "content-type": "application/json"}
    async with httpx2.AsyncClient() as http:
        bad = await http.post(gw.url + "/v1/chat/completions", content=b"{not json", headers=headers)
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
        bad = await http.post(gw.url + "/v1/messages", content=b'{"model": 3}', headers=headers)
        assert bad.status_code == 400 and bad.json()["type"] == "error"
        big = await http.post(gw.url + "/v1/chat/completions", content=b"x" * (70 * 1024), headers=headers)
        assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
        health = await http.get(gw.url + "/health")
        assert health.status_code == 200
    with pytest.raises(openai.BadRequestError):
        await gw.oai().chat.completions.create(
            model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "x"}], n=2
        )


async def test_host_header_is_checked_and_openapi_is_served(gw: Gw) -> None:
    async with httpx2.AsyncClient() as http:
        evil = await http.get(gw.url + "/health", headers={"host": "attacker.example"})
        assert evil.status_code == 400
        for path in ("/v1/models", "/v1/chat/completions"):
            evil = await http.request(
                "GET" if path == "/v1/models" else "POST",
                gw.url + path,
                headers={"host": "attacker.example:80", "authorization": f"Bearer {gw.full}"},
            )
            assert evil.status_code == 400, path
        fine = await http.get(
            gw.url + "/v1/models", headers={"host": "localhost", "authorization": f"Bearer {gw.full}"}
        )
        assert fine.status_code == 200
        doc = (await http.get(gw.url + "/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    assert {"/v1/chat/completions", "/v1/responses", "/v1/responses/{response_id}", "/v1/messages"} <= set(
        doc["paths"]
    )
    assert {"ChatCompletionRequest", "ResponsesRequest", "Response"} <= set(doc["components"]["schemas"])


async def test_every_answer_is_dated_now(gw: Gw) -> None:
    # The date header is made when a response asks for it (no timer renews it), so it must follow
    # the clock across keep-alive requests on one connection.
    async with httpx2.AsyncClient() as http:
        dates = []
        for _ in range(2):
            r = await http.get(gw.url + "/health")
            dates.append(email.utils.parsedate_to_datetime(r.headers["date"]))
            assert abs((dates[-1] - dt.datetime.now(dt.UTC)).total_seconds()) <= 1.5
            await anyio.sleep(1.1)
    assert dates[1] > dates[0]


async def test_disconnect_mid_stream_closes_upstream_and_records_partial_usage(gw: Gw) -> None:
    gw.oa.chunk_delay_s = 0.05
    body = {
        "model": "openai:gpt-4o-mini",
        "stream": True,
        "messages": [{"role": "user", "content": "a b c d e f g h i j k l"}],
    }
    async with (
        httpx2.AsyncClient() as http,
        http.stream(
            "POST", gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {gw.full}"}
        ) as r,
    ):
        assert r.status_code == 200
        async for _ in r.aiter_bytes():
            break  # the first token is here: go away
    assert await anyio.to_thread.run_sync(lambda: gw.oa.wait_for_disconnect(timeout=5.0))
    (row,) = await first_rows(gw)
    assert (row["outcome"], row["client"]) == ("cancelled", "full")
    assert row["output_tokens"] and row["output_tokens"] > 0


async def test_disconnect_before_a_non_streamed_answer_cancels_the_call(gw: Gw) -> None:
    gw.oa.chunk_delay_s = 0.05  # the upstream takes ~0.6 s; the client gives up long before
    body = {
        "model": "openai:gpt-4o-mini",
        "messages": [{"role": "user", "content": "a b c d e f g h i j k l"}],
    }
    async with httpx2.AsyncClient(timeout=0.25) as http:
        with pytest.raises(httpx2.ReadTimeout):
            await http.post(
                gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {gw.full}"}
            )
    assert await anyio.to_thread.run_sync(lambda: gw.oa.wait_for_disconnect(timeout=5.0))
    (row,) = await first_rows(gw)
    assert (row["outcome"], row["client"]) == ("cancelled", "full")
    status = await gw.call("gateway_status", Empty())
    assert status.requests_served == 1 and status.open_streams == 0


async def test_client_key_lifecycle_rotate_disable_delete(gw: Gw) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    for _ in range(2):  # the second request finds the key among those already seen
        assert [m async for m in gw.oai(gw.full).models.list()]
    listed = await gw.call("client_key_list", Empty())
    assert {k.name for k in listed.keys} == {"full", "narrow"}
    used = {k.name: k.last_used for k in listed.keys}
    assert used["narrow"] is None and used["full"] is not None and used["full"].endswith("Z")
    assert before <= dt.datetime.fromisoformat(used["full"]) <= dt.datetime.now(dt.UTC)
    assert all(gw.full not in json.dumps(k.__struct_fields__) for k in listed.keys)
    rotated = await gw.call("client_key_rotate", ClientKeyRef(name="full"))
    assert rotated.key != gw.full and rotated.key.startswith("lsk-")
    with pytest.raises(openai.AuthenticationError):
        await gw.oai(gw.full).models.list()
    assert [m async for m in gw.oai(rotated.key).models.list()]
    await gw.call("client_key_update", ClientKeyUpdateParams(name="full", enabled=False))
    with pytest.raises(openai.AuthenticationError):
        await gw.oai(rotated.key).models.list()
    await gw.call("client_key_delete", ClientKeyRef(name="narrow"))
    with pytest.raises(openai.AuthenticationError):
        await gw.oai(gw.openai_only).models.list()
    with sqlite3.connect(gw.home / "sidecar.db") as conn:
        stored = conn.execute("SELECT hash, prefix FROM client_keys").fetchall()
        events = [r[0] for r in conn.execute("SELECT event FROM audit ORDER BY id")]
        everything = "\n".join(str(r) for r in conn.execute("SELECT * FROM audit"))
    assert all(rotated.key not in h and len(p) == 10 for h, p in stored)
    assert rotated.key not in everything
    assert events == [
        "client_key_created",
        "client_key_created",
        "client_key_rotated",
        "client_key_updated",
        "client_key_deleted",
    ]


async def test_status_counts_and_a_non_loopback_host_needs_keys(tmp_path: Path) -> None:
    services = build_services(Config(), store=MemoryStore({}), env={"SIDECAR_HOME": str(tmp_path)})
    async with anyio.create_task_group() as tg:
        await services.start_background(tg)
        from sidecar.errors import SidecarError

        with pytest.raises(SidecarError) as exc:
            await services.handlers["gateway_start"](GatewayStartParams(host="0.0.0.0", port=0), Ctx())
        assert exc.value.kind == "invalid_request" and "client key" in exc.value.message
        started = await services.handlers["gateway_start"](GatewayStartParams(port=0), Ctx())
        async with httpx2.AsyncClient() as http:
            assert (await http.get(started.url + "/health")).status_code == 200
            assert (await http.get(started.url + "/v1/models")).status_code == 401
        status = await services.handlers["gateway_status"](Empty(), Ctx())
        assert status.running and status.port == started.port and status.requests_served == 1
        stopped = await services.handlers["gateway_stop"](Empty(), Ctx())
        assert stopped.stopped
        assert not (await services.handlers["gateway_status"](Empty(), Ctx())).running
        tg.cancel_scope.cancel()
    await services.aclose()


# --- watching it --------------------------------------------------------------------------------


async def test_access_log_metrics_and_prometheus_hold_the_traffic_but_no_secret(gw: Gw) -> None:
    secret_prompt = "my-private-prompt-words"
    await gw.oai().chat.completions.create(
        model="openai:gpt-4o-mini", messages=[{"role": "user", "content": secret_prompt}]
    )
    await gw.ant(gw.openai_only).messages.create(
        model="openai:gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    with pytest.raises(openai.NotFoundError):
        await gw.oai().chat.completions.create(
            model="nosuchmodel", messages=[{"role": "user", "content": "x"}]
        )
    await anyio.to_thread.run_sync(gw.services.access_log.flush)
    (log_file,) = (gw.home / "logs").iterdir()
    assert log_file.name.startswith("access-") and log_file.suffix == ".jsonl"
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [(r["client"], r["status"], r["path"]) for r in lines] == [
        ("full", 200, "/v1/chat/completions"),
        ("narrow", 200, "/v1/messages"),
        ("full", 404, "/v1/chat/completions"),
    ]
    assert lines[0]["provider"] == "openai" and lines[0]["total_tokens"] > 0 and lines[0]["latency_ms"] > 0
    assert lines[0]["request_id"] != lines[1]["request_id"]

    per_client = await gw.call("metrics", MetricsParams(range="1h", metric="requests", group_by="client"))
    totals = {s.key: sum(v or 0 for _, v in s.points) for s in per_client.series}
    assert totals == {"full": 1, "narrow": 1}
    assert per_client.step_s == 60 and len(per_client.series[0].points) == 60
    await flush(gw)
    week = await gw.call("metrics", MetricsParams(range="7d", metric="tokens", group_by="provider"))
    assert week.step_s == 3600 and [s.key for s in week.series] == ["openai"]
    assert sum(v or 0 for _, v in week.series[0].points) > 0

    async with httpx2.AsyncClient() as http:
        assert (await http.get(gw.url + "/metrics")).status_code == 401
        prom = await http.get(gw.url + "/metrics", headers={"authorization": f"Bearer {gw.full}"})
    assert prom.headers["content-type"].startswith("text/plain")
    assert 'llm_sidecar_requests_total{provider="openai",client="full",outcome="ok"} 1' in prom.text
    assert 'llm_sidecar_tokens_total{provider="openai",client="narrow",direction="output"}' in prom.text

    everything = log_file.read_text() + prom.text + json.dumps(msgspec.to_builtins(per_client))
    for secret in (OPENAI_KEY, ANTHROPIC_KEY, gw.full, gw.openai_only, secret_prompt):
        assert secret not in everything
    upstream_auth = {r.headers.get("authorization") for r in gw.oa.requests}
    assert upstream_auth == {f"Bearer {OPENAI_KEY}"}  # the client key never goes upstream


async def test_cors_only_for_configured_origins(tmp_path: Path) -> None:
    config = Config(gateway=GatewaySettings(cors_origins=["http://app.example"]))
    services = build_services(config, store=MemoryStore({}), env={"SIDECAR_HOME": str(tmp_path)})
    async with anyio.create_task_group() as tg:
        await services.start_background(tg)
        started = await services.handlers["gateway_start"](GatewayStartParams(port=0), Ctx())
        preflight = {"access-control-request-method": "POST"}
        async with httpx2.AsyncClient() as http:
            good = await http.options(
                started.url + "/v1/chat/completions", headers={"origin": "http://app.example", **preflight}
            )
            bad = await http.options(
                started.url + "/v1/chat/completions", headers={"origin": "http://evil.example", **preflight}
            )
        assert good.headers.get("access-control-allow-origin") == "http://app.example"
        assert "access-control-allow-origin" not in bad.headers
        await services.stop_gateway()
        tg.cancel_scope.cancel()
    await services.aclose()


def test_access_log_rolls_days_and_gzips_the_previous_one(tmp_path: Path) -> None:
    import datetime as dt
    import gzip

    from sidecar.infra.access_log import AccessLog

    now = [dt.datetime(2026, 11, 30, 23, 59, tzinfo=dt.UTC)]
    log = AccessLog(tmp_path, clock=lambda: now[0])
    log.write({"status": 200, "client": "a"})
    log.flush()
    now[0] = dt.datetime(2026, 12, 1, 0, 1, tzinfo=dt.UTC)
    log.write({"status": 201, "client": "b"})
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "access-2026-11-30.jsonl.gz",
        "access-2026-12-01.jsonl",
    ]
    assert json.loads(gzip.decompress((tmp_path / "access-2026-11-30.jsonl.gz").read_bytes())) == {
        "status": 200,
        "client": "a",
    }
    assert oct((tmp_path / "access-2026-12-01.jsonl").stat().st_mode & 0o777) == "0o600"
