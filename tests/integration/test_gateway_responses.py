"""`POST /v1/responses` driven by the official `openai` SDK (`responses.create`, and the
`responses.stream` helper that rebuilds the response from its events): text, instructions and
message items, a response cut at `max_output_tokens`, function tools round-tripped with their
outputs, an Anthropic tool-use turn with thinking continued through a reasoning item's
`encrypted_content` (signed thinking goes back, so Claude thinks on), structured output parsed
into the client's type, a failure after the stream began, stored responses continued
(`previous_response_id`), retrieved and deleted by their own key alone, and the refusals of what
the gateway cannot do (a built-in tool, an item it cannot relay)."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai
import pydantic
import pytest

from tests.fakes.http import Abort
from tests.integration.gateway_harness import Gw, first_rows

pytestmark = pytest.mark.anyio

TOOLS: Any = [
    {
        "type": "function",
        "name": "lookup",
        "description": "look a thing up",
        "parameters": {"type": "object", "properties": {"input": {"type": "string"}}},
    }
]


def _items(output: Any) -> list[dict[str, Any]]:
    """Output items as a client gives them back in its next request's `input`."""
    return [item.model_dump(exclude_none=True) for item in output]


async def test_text_answers_with_usage_and_the_ledger_names_the_client(gw: Gw) -> None:
    res = await gw.oai().responses.create(model="openai:gpt-4o-mini", input="hello there")
    assert res.output_text == "Echo: hello there"
    assert res.status == "completed" and res.object == "response" and res.id.startswith("resp_")
    assert res.model == "openai:gpt-4o-mini"
    (message,) = res.output
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    assert res.usage is not None and res.usage.input_tokens > 0 and res.usage.output_tokens > 0
    assert res.usage.total_tokens == res.usage.input_tokens + res.usage.output_tokens
    (row,) = await first_rows(gw)
    assert (row["client"], row["provider"], row["outcome"]) == ("full", "openai", "ok")
    assert row["input_tokens"] == res.usage.input_tokens


async def test_instructions_and_message_items_and_a_cut_answer(gw: Gw) -> None:
    res = await gw.oai().responses.create(
        model="openai:gpt-4o-mini",
        instructions="be brief",
        input=[
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "say more"}]},
        ],
        max_output_tokens=2,
    )
    assert res.status == "incomplete"
    assert res.incomplete_details is not None and res.incomplete_details.reason == "max_output_tokens"
    assert res.output_text == "Echo: sa"  # two pieces of four characters
    (request,) = gw.oa.requests
    sent = request.json()
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert sent["messages"][0]["content"] == "be brief" and sent["max_completion_tokens"] == 2


async def test_streamed_events_rebuild_the_response(gw: Gw) -> None:
    kinds: list[str] = []
    numbers: list[int] = []
    text = ""
    async with gw.oai().responses.stream(model="openai:gpt-4o-mini", input="stream me please") as stream:
        async for event in stream:
            kinds.append(event.type)
            numbers.append(event.sequence_number)
            if event.type == "response.output_text.delta":
                text += event.delta
        final = await stream.get_final_response()
    assert numbers == list(range(len(kinds)))
    deltas = kinds.count("response.output_text.delta")
    assert deltas > 1 and text == "Echo: stream me please"
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert final.output_text == text and final.status == "completed"
    assert final.usage is not None and final.usage.output_tokens > 0


async def test_function_tools_round_trip_streamed_and_not(gw: Gw) -> None:
    client = gw.oai()
    first = await client.responses.create(model="openai:gpt-4o-mini", input="capital of France", tools=TOOLS)
    (call,) = first.output
    assert call.type == "function_call" and call.name == "lookup" and call.status == "completed"
    assert json.loads(call.arguments) == {"input": "capital of France"}
    assert call.call_id.startswith("call_") and call.id.startswith("fc_")

    args = ""
    async with client.responses.stream(
        model="openai:gpt-4o-mini", input="capital of France", tools=TOOLS
    ) as stream:
        async for event in stream:
            if event.type == "response.function_call_arguments.delta":
                args += event.delta
        streamed = await stream.get_final_response()
    (streamed_call,) = streamed.output
    assert streamed_call.type == "function_call" and streamed_call.call_id == call.call_id
    assert json.loads(args) == json.loads(streamed_call.arguments) == {"input": "capital of France"}

    # The call and its output go back; the model answers from them.
    follow: Any = [
        {"role": "user", "content": "capital of France"},
        *_items(first.output),
        {"type": "function_call_output", "call_id": call.call_id, "output": "Paris"},
    ]
    second = await client.responses.create(model="openai:gpt-4o-mini", input=follow, tools=TOOLS)
    assert second.output_text == "The tool said: Paris"
    sent = gw.oa.requests[-1].json()["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[1]["tool_calls"][0]["id"] == call.call_id and sent[2]["tool_call_id"] == call.call_id


@pytest.mark.parametrize("streamed", [False, True])
async def test_an_anthropic_tool_turn_with_thinking_continues(gw: Gw, streamed: bool) -> None:
    """Claude refuses a tool-use turn that comes back without its signed thinking: the signature
    travels in a reasoning item's `encrypted_content` and goes back with the turn."""
    client = gw.oai()
    ask: Any = {"model": "anthropic:claude-sonnet-4-5", "tools": TOOLS, "reasoning": {"effort": "low"},
                "max_output_tokens": 4096}  # fmt: skip
    if streamed:
        async with client.responses.stream(input="find it", **ask) as stream:
            thinking = "".join([e.delta async for e in stream if e.type == "response.reasoning_text.delta"])
            first = await stream.get_final_response()
    else:
        first = await client.responses.create(input="find it", **ask)
        thinking = first.output[0].content[0].text  # type: ignore[union-attr,index]
    assert thinking == "Thinking about: find it"
    kinds = [item.type for item in first.output]
    # Whole, the reasoning item carries both; streamed, what the next turn needs comes at the end.
    assert kinds == (
        ["reasoning", "function_call", "reasoning"] if streamed else ["reasoning", "function_call"]
    )
    carried = [item.encrypted_content for item in first.output if item.type == "reasoning"]
    assert carried[-1] and "Thinking" not in carried[-1]
    call = next(item for item in first.output if item.type == "function_call")

    follow: Any = [
        {"role": "user", "content": "find it"},
        *_items(first.output),
        {"type": "function_call_output", "call_id": call.call_id, "output": "found"},
    ]
    second = await client.responses.create(input=follow, **ask)
    assert second.output_text == "The tool said: found"
    sent = gw.an.requests[-1].json()
    assert sent["thinking"]["type"] == "enabled"
    assert [b["type"] for b in sent["messages"][1]["content"]] == ["thinking", "tool_use"]
    assert second.output[0].type == "reasoning"  # it thought on

    # Without what the reasoning item carried, Claude would refuse the turn: the sidecar has to
    # ask without thinking.
    bare = [item for item in follow if item.get("type") != "reasoning"]
    third = await client.responses.create(input=bare, **ask)
    assert third.output_text == "The tool said: found"
    assert "thinking" not in gw.an.requests[-1].json()
    assert [item.type for item in third.output] == ["message"]


async def test_the_sdks_stream_helper_rebuilds_a_summarized_thinking_turn(gw: Gw) -> None:
    client = gw.oai()
    ask: Any = {"model": "anthropic:claude-sonnet-4-5", "tools": TOOLS, "max_output_tokens": 4096,
                "reasoning": {"effort": "low", "summary": "detailed"}}  # fmt: skip
    async with client.responses.stream(input="find it", **ask) as stream:
        shown = [e.delta async for e in stream if e.type == "response.reasoning_summary_text.delta"]
        first = await stream.get_final_response()
    reasoning = first.output[0]
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "".join(shown)
    assert "".join(shown) == "Thinking about: find it"
    call = next(item for item in first.output if item.type == "function_call")
    follow: Any = [
        *_items(first.output),
        {"type": "function_call_output", "call_id": call.call_id, "output": "ok"},
    ]
    second = await client.responses.create(input=[{"role": "user", "content": "find it"}, *follow], **ask)
    assert second.output_text == "The tool said: ok"
    assert second.output[0].type == "reasoning" and second.output[0].summary  # Claude thought on


async def test_a_failure_after_the_stream_began_ends_it_with_response_failed(gw: Gw) -> None:
    gw.oa.edit_stream = lambda events: [*events[:3], Abort()]
    kinds: list[str] = []
    failed: Any = None
    stream = await gw.oai().responses.create(model="openai:gpt-4o-mini", input="hello there", stream=True)
    async for event in stream:
        kinds.append(event.type)
        if event.type == "response.failed":
            failed = event.response
    assert kinds[-3:] == ["response.content_part.done", "response.output_item.done", "response.failed"]
    assert "response.completed" not in kinds
    assert failed.status == "failed" and failed.error.code == "server_error" and failed.error.message
    assert failed.output[0].content[0].text.startswith("Echo")  # what was shown before the failure


async def test_a_stored_response_is_continued_retrieved_and_deleted_by_its_key_alone(gw: Gw) -> None:
    client = gw.oai()
    first = await client.responses.create(
        model="openai:gpt-4o-mini", input="capital of France", tools=TOOLS, instructions="be brief"
    )
    assert first.store is True
    (call,) = first.output
    assert call.type == "function_call"
    # Only the tool's output is sent: the call it answers comes from the stored response.
    async with client.responses.stream(
        model="openai:gpt-4o-mini",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Paris"}],
        tools=TOOLS,
    ) as stream:
        second = await stream.get_final_response()
    assert second.output_text == "The tool said: Paris" and second.previous_response_id == first.id
    sent = gw.oa.requests[-1].json()["messages"]
    # Instructions hold for the request that gives them, not for the ones that continue it.
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[1]["tool_calls"][0]["id"] == call.call_id

    third = await client.responses.create(model="openai:gpt-4o-mini", previous_response_id=second.id,
                                          input="and of Italy?", store=False)  # fmt: skip
    assert third.store is False and third.status == "completed"
    sent = gw.oa.requests[-1].json()["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "user"]
    assert (sent[3]["content"], sent[4]["content"]) == ("The tool said: Paris", "and of Italy?")

    again = await client.responses.retrieve(second.id)
    assert again.output_text == second.output_text and again.id == second.id
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(third.id)  # not stored
    other = gw.oai(gw.openai_only)
    with pytest.raises(openai.NotFoundError):
        await other.responses.retrieve(second.id)  # another key's
    with pytest.raises(openai.NotFoundError) as exc:
        await other.responses.create(model="openai:gpt-4o-mini", input="x", previous_response_id=second.id)
    assert exc.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert exc.value.body["code"] == "previous_response_not_found"  # type: ignore[index]
    await client.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(second.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.delete(second.id)


async def test_a_stored_responses_input_items_are_listed_a_page_at_a_time(gw: Gw) -> None:
    client = gw.oai()
    first = await client.responses.create(model="openai:gpt-4o-mini", input="capital of France", tools=TOOLS)
    (call,) = first.output
    assert call.type == "function_call"
    second = await client.responses.create(
        model="openai:gpt-4o-mini",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Paris"}],
        tools=TOOLS,
    )
    # What went into the second response: the first's input and answer, then the tool's output.
    listed = await client.responses.input_items.list(second.id, order="asc")
    kinds = [(i.type, getattr(i, "role", None)) for i in listed.data]
    assert kinds == [("message", "user"), ("function_call", None), ("function_call_output", None)]
    assert listed.data[0].content[0].text == "capital of France"  # type: ignore[union-attr]
    assert (listed.data[1].call_id, listed.data[1].name) == (call.call_id, call.name)  # type: ignore[union-attr]
    assert listed.data[2].output == "Paris"  # type: ignore[union-attr]
    # Newest first by default; the SDK's paging follows `after` one item at a time.
    paged = [item.id async for item in client.responses.input_items.list(second.id, limit=1)]
    assert paged == [item.id for item in reversed(listed.data)] and len(set(paged)) == 3
    assert [i.type for i in (await client.responses.input_items.list(first.id)).data] == ["message"]
    with pytest.raises(openai.NotFoundError):
        await gw.oai(gw.openai_only).responses.input_items.list(second.id)  # another key's
    with pytest.raises(openai.BadRequestError) as exc:
        await client.responses.input_items.list(second.id, limit=500)
    assert exc.value.body["param"] == "limit"  # type: ignore[index]


async def test_input_tokens_are_counted_with_the_stored_conversation(gw: Gw) -> None:
    client = gw.oai()
    first = await client.responses.create(model="anthropic:claude-sonnet-4-5", input="remember this")
    counted = await client.responses.input_tokens.count(
        model="anthropic:claude-sonnet-4-5", previous_response_id=first.id, input="and this"
    )
    assert counted.object == "response.input_tokens"
    second = await client.responses.create(
        model="anthropic:claude-sonnet-4-5", previous_response_id=first.id, input="and this"
    )
    assert second.usage is not None and counted.input_tokens == second.usage.input_tokens
    sent = gw.an.requests[-2]  # the count, before the second answer
    assert sent.path == "/v1/messages/count_tokens" and len(sent.json()["messages"]) == 3
    by_openai = await client.responses.input_tokens.count(model="openai:gpt-4o-mini", input="count me")
    asked = gw.oa.requests[-1]  # OpenAI counts its own models, with the same request shape
    assert asked.path == "/v1/responses/input_tokens" and asked.json()["input"][-1]["content"] == "count me"
    assert by_openai.input_tokens > 0


async def test_what_the_gateway_cannot_do_is_refused_with_the_field(gw: Gw) -> None:
    client = gw.oai()
    with pytest.raises(openai.BadRequestError) as tool:
        await client.responses.create(model="openai:gpt-4o-mini", input="x", tools=[{"type": "web_search"}])
    assert tool.value.body["param"] == "tools[0].type"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as item:
        await client.responses.create(
            model="openai:gpt-4o-mini", input=[{"type": "item_reference", "id": "msg_1"}]
        )
    assert item.value.body["param"] == "input[0].type"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model="nosuch:thing", input="x")
    with pytest.raises(openai.PermissionDeniedError):
        await gw.oai(gw.openai_only).responses.create(model="anthropic:claude-sonnet-4-5", input="x")
    assert gw.oa.requests == []


class Weather(pydantic.BaseModel):
    summary: str
    words: int


async def test_structured_output_parses_into_the_clients_type_on_any_provider(gw: Gw) -> None:
    """`responses.parse` sends `text.format` (a strict JSON Schema built from the type) and reads
    `output_text` back into it; Claude gets the schema as its structured output format."""
    client = gw.oai()
    for model in ("openai:gpt-4o-mini", "anthropic:claude-sonnet-4-5"):
        res = await client.responses.parse(model=model, input="sunny and warm", text_format=Weather)
        assert res.output_parsed == Weather(summary="Echo: sunny and warm", words=4)
        assert res.text is not None and res.text.format is not None and res.text.format.type == "json_schema"
    sent = gw.oa.requests[-1].json()["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Weather"
    assert sent["json_schema"]["strict"] is True
    assert gw.an.requests[-1].json()["output_config"]["format"]["schema"]["required"] == ["summary", "words"]


async def test_a_request_shaped_as_codex_cli_sends_it_is_answered(gw: Gw) -> None:
    """Codex CLI keeps the conversation itself: `store: false`, the encrypted reasoning asked back,
    fields the gateway has no use for (`text.verbosity`, `prompt_cache_key`, `include`) ignored."""
    body = {
        "model": "anthropic:claude-sonnet-4-5",
        "instructions": "You are a coding agent.",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]}
        ],
        "tools": TOOLS,
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "0b3f",
        "text": {"verbosity": "medium"},
    }
    events = []
    async with (
        httpx2.AsyncClient(timeout=10) as http,
        http.stream(
            "POST", gw.url + "/v1/responses", json=body, headers={"authorization": f"Bearer {gw.full}"}
        ) as r,
    ):
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [i["type"] for i in done] == ["reasoning", "function_call", "reasoning"]
    assert done[-1]["encrypted_content"] and events[-1]["type"] == "response.completed"
    # It asked for a reasoning summary, which is what it shows: Claude's thinking comes as one.
    shown = "".join(e["delta"] for e in events if e["type"] == "response.reasoning_summary_text.delta")
    assert shown == "Thinking about: list files"
    assert done[0]["summary"] == [{"type": "summary_text", "text": shown}] and done[0]["content"] == []
    assert events[-1]["response"]["store"] is False
    # It sends the items back, as it received them, with the tool's output.
    follow = {**body, "input": [*body["input"], *done,
                                {"type": "function_call_output", "call_id": done[1]["call_id"], "output": "a.py"}]}  # fmt: skip
    async with httpx2.AsyncClient(timeout=10) as http:
        r2 = await http.post(gw.url + "/v1/responses", json={**follow, "stream": False},
                             headers={"authorization": f"Bearer {gw.full}"})  # fmt: skip
    assert r2.status_code == 200, r2.text
    assert r2.json()["output"][-1]["content"][0]["text"] == "The tool said: a.py"
    with pytest.raises(openai.NotFoundError):
        await gw.oai().responses.retrieve(events[-1]["response"]["id"])  # store: false kept nothing
