"""The Responses API translation, without I/O: input items folded into the sidecar's messages (an
assistant turn's items into one message, what a reasoning item carried back onto it), the refusals
with the field they name, a result as output items, and the stream's events: their order, their
sequence numbers, items the stream did not carry, and a failure mid-item."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pydantic
import pytest
from openai.types.responses import ResponseItem, ResponseReasoningItem, ResponseStreamEvent

from sidecar.gateway import responses_api, responses_items, responses_types
from sidecar.gateway.errors import InvalidRequest
from sidecar.gateway.response_store import ResponseStore
from sidecar.gateway.responses_stream import ResponseEncoder
from sidecar.wire.chat import CompleteParams, TextDelta, ThinkingDelta, ToolCall, ToolCallDelta, UsageEvent
from tests.unit.test_gateway_translate import result

CARRIED = {"provider": "anthropic", "blocks": [{"type": "thinking", "thinking": "t", "signature": "s"}]}


def request(**body: Any) -> responses_types.ResponsesRequest:
    return msgspec.convert({"model": "openai:gpt-4o-mini", **body}, responses_types.ResponsesRequest)


def to_params(
    req: responses_types.ResponsesRequest, before: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return responses_api.to_params(req, "openai:gpt-4o-mini", responses_api.conversation(req, before))


def params(**body: Any) -> CompleteParams:
    return msgspec.convert(to_params(request(**body)), CompleteParams)


def test_an_assistant_turn_of_several_items_is_one_message_with_what_its_reasoning_carried() -> None:
    carried = responses_api.encode_continuation(CARRIED)
    p = params(
        instructions="be brief",
        input=[
            {"role": "developer", "content": "use tools"},
            {"role": "user", "content": [{"type": "input_text", "text": "look "},
                                         {"type": "input_image", "image_url": "data:image/png;base64,AA=="}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": carried},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me."}]},
            {"type": "function_call", "call_id": "c1", "name": "a", "arguments": '{"x": 1}'},
            {"type": "function_call", "call_id": "c2", "name": "b", "arguments": "not json"},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
        ],
        max_output_tokens=50,
        tool_choice={"type": "function", "name": "a"},
        reasoning={"effort": "high", "summary": "auto"},
    )  # fmt: skip
    roles = [m.role for m in p.messages]
    assert roles == ["system", "system", "user", "assistant", "tool", "tool"]
    assert p.messages[0].content == "be brief" and p.messages[1].content == "use tools"
    assert isinstance(p.messages[2].content, list)
    assert [type(part).__name__ for part in p.messages[2].content] == ["TextPart", "ImagePart"]
    turn = p.messages[3]
    assert turn.content == "Let me." and turn.continuation == CARRIED
    assert turn.tool_calls is not None
    assert [(c.id, c.name, c.arguments, c.raw_arguments) for c in turn.tool_calls] == [
        ("c1", "a", {"x": 1}, None),
        ("c2", "b", {}, "not json"),
    ]
    assert [(m.tool_call_id, m.content) for m in p.messages[4:]] == [("c1", "one"), ("c2", "two")]
    assert p.max_tokens == 50 and p.reasoning is not None and p.reasoning.effort == "high"
    assert msgspec.to_builtins(p.tool_choice) == {"name": "a"}


def test_a_reasoning_item_after_the_turn_belongs_to_it_and_a_foreign_one_is_ignored() -> None:
    carried = responses_api.encode_continuation(CARRIED)
    p = params(
        input=[
            {"role": "user", "content": "q"},
            {"type": "reasoning", "id": "rs_0", "summary": [], "encrypted_content": "gAAAAB-openai-s-own"},
            {"type": "function_call", "call_id": "c1", "name": "a", "arguments": "{}"},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": carried},
            {"type": "function_call_output", "call_id": "c1", "output": "r"},
        ]
    )
    assert [m.role for m in p.messages] == ["user", "assistant", "tool"]
    assert p.messages[1].content is None and p.messages[1].continuation == CARRIED
    assert responses_api.decode_continuation("llm-sidecar:%%%") is None
    assert responses_api.decode_continuation(responses_api.encode_continuation({"a": [1]})) == {"a": [1]}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x", "tools": [{"type": "file_search"}]}, "tools[0].type"),
        ({"input": [{"type": "item_reference", "id": "m"}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0]",
        ),
        ({"input": [{"type": "function_call", "name": "a"}]}, "input[0]"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
        ({"input": [{"type": "message", "content": "x"}]}, "input[0].role"),
        ({"input": "x", "tool_choice": {"type": "web_search"}}, "tool_choice"),
        ({"input": []}, "input"),
    ],
)
def test_what_cannot_be_relayed_is_refused_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        to_params(request(**body))
    assert exc.value.param == param


def test_a_continued_conversation_comes_first_and_instructions_hold_for_one_request() -> None:
    req = request(input="and now?", instructions="be brief")
    before = [{"role": "user", "content": "q"}, responses_api.assistant_message(
        result(text="", tool_calls=[ToolCall(id="c1", name="a", arguments={})], continuation=CARRIED,
               finish_reason="tool_calls"))]  # fmt: skip
    turns = responses_api.conversation(req, before)
    assert turns[:2] == before and turns[2] == {"role": "user", "content": "and now?"}
    assert before[1] == {"role": "assistant", "content": None, "continuation": CARRIED,
                         "tool_calls": [{"id": "c1", "name": "a", "arguments": {}}]}  # fmt: skip
    p = msgspec.convert(responses_api.to_params(req, "m", turns), CompleteParams)
    assert [m.role for m in p.messages] == ["system", "user", "assistant", "user"]
    with pytest.raises(InvalidRequest):
        responses_api.conversation(request(input=[]), before)  # nothing new to answer


def test_the_store_keeps_the_recent_within_its_bounds_for_their_owner_alone() -> None:
    store = ResponseStore(max_entries=2, max_bytes=100, ttl_s=60)
    store.put("a", "k1", [], b"{}", 10)
    store.put("b", "k1", [], b"{}", 10)
    assert store.get("a", "k1") is not None  # now the most recent
    store.put("c", "k1", [], b"{}", 10)
    assert (store.get("b", "k1"), len(store)) == (None, 2)  # the least recently used went
    assert store.get("a", "k2") is None and not store.delete("a", "k2")  # not another key's
    store.put("big", "k1", [], b"{}", 90)
    assert [store.get(i, "k1") is not None for i in ("a", "c", "big")] == [False, False, True]
    store.put("huge", "k1", [], b"{}", 500)  # over the bound alone: not kept, and pushes nothing out
    assert store.get("huge", "k1") is None and store.get("big", "k1") is not None
    stale = ResponseStore(ttl_s=0.0)
    stale.put("x", "k1", [], b"{}", 1)
    assert stale.get("x", "k1") is None and len(stale) == 0


def test_a_whole_result_as_output_items_with_usage_and_why_it_stopped() -> None:
    calls = [
        ToolCall(id="c1", name="a", arguments={"x": 1}),
        ToolCall(id="c2", name="b", arguments={}, raw_arguments="{oops"),
    ]
    whole = responses_api.response(
        request(input="q", temperature=0.5, metadata={"k": "v"}),
        result(text="", thinking="hmm", continuation=CARRIED, tool_calls=calls, finish_reason="tool_calls"),
        response_id="resp_x",
        created_at=1,
    )
    out = msgspec.to_builtins(whole)
    assert [i["type"] for i in out["output"]] == ["reasoning", "function_call", "function_call"]
    reasoning = out["output"][0]
    assert reasoning["content"] == [{"text": "hmm", "type": "reasoning_text"}]
    assert responses_api.decode_continuation(reasoning["encrypted_content"]) == CARRIED
    assert [(i["call_id"], i["arguments"]) for i in out["output"][1:]] == [("c1", '{"x":1}'), ("c2", "{oops")]
    assert out["status"] == "completed" and out["incomplete_details"] is None
    assert out["usage"] == {
        "input_tokens": 30,
        "input_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 5},
        "output_tokens": 12,
        "output_tokens_details": {"reasoning_tokens": 4},
        "total_tokens": 42,
    }
    assert (out["temperature"], out["metadata"], out["store"], out["model"]) == (
        0.5,
        {"k": "v"},
        True,
        "openai:gpt-4o-mini",
    )
    cut = responses_api.response(
        request(input="q"), result(finish_reason="length"), response_id="r", created_at=1
    )
    assert cut.status == "incomplete" and cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "max_output_tokens"
    assert [type(i).__name__ for i in cut.output] == ["OutputMessage"]


def events(data: bytes) -> list[dict[str, Any]]:
    """The stream's events, each checked to name its type on its `event:` line too."""
    out = []
    for block in data.decode().split("\n\n"):
        if block:
            head, payload = block.split("\n")
            event = json.loads(payload.removeprefix("data: "))
            assert head == "event: " + event["type"]
            out.append(event)
    return out


def test_the_stream_opens_and_closes_each_item_in_turn_numbering_every_event() -> None:
    enc = ResponseEncoder(request(input="q"))
    data = enc.event(UsageEvent(input_tokens=1, output_tokens=0, cache_read_tokens=0, cache_write_tokens=0,
                                reasoning_tokens=0))  # fmt: skip
    assert data == b""  # nothing a client is shown: the stream has not begun
    for ev in (
        ThinkingDelta(text="hm"),
        ThinkingDelta(text="m"),
        TextDelta(text="Calling"),
        ToolCallDelta(index=0, id="c1", name="a", arguments_delta='{"x"'),
        ToolCallDelta(index=0, arguments_delta=": 1}"),
        ToolCallDelta(index=1, id="c2", name="b"),
        ToolCallDelta(index=1, arguments_delta="{}"),
    ):
        data += enc.event(ev)
    calls = [ToolCall(id="c1", name="a", arguments={"x": 1}), ToolCall(id="c2", name="b", arguments={})]
    data += enc.finish(result(text="Calling", thinking="hmm", tool_calls=calls, finish_reason="tool_calls",
                              continuation=CARRIED))  # fmt: skip
    evs = events(data)
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    adapter = pydantic.TypeAdapter(ResponseStreamEvent)
    assert all(adapter.validate_python(e).type == e["type"] for e in evs)
    assert [(e["type"], e.get("output_index")) for e in evs] == [
        ("response.created", None),
        ("response.in_progress", None),
        ("response.output_item.added", 0),
        ("response.content_part.added", 0),
        ("response.reasoning_text.delta", 0),
        ("response.reasoning_text.delta", 0),
        ("response.reasoning_text.done", 0),
        ("response.content_part.done", 0),
        ("response.output_item.done", 0),
        ("response.output_item.added", 1),
        ("response.content_part.added", 1),
        ("response.output_text.delta", 1),
        ("response.output_text.done", 1),
        ("response.content_part.done", 1),
        ("response.output_item.done", 1),
        ("response.output_item.added", 2),
        ("response.function_call_arguments.delta", 2),
        ("response.function_call_arguments.delta", 2),
        ("response.function_call_arguments.done", 2),
        ("response.output_item.done", 2),
        ("response.output_item.added", 3),
        ("response.function_call_arguments.delta", 3),
        ("response.function_call_arguments.done", 3),
        ("response.output_item.done", 3),
        ("response.output_item.added", 4),
        ("response.output_item.done", 4),
        ("response.completed", None),
    ]
    assert evs[0]["response"]["status"] == "in_progress" and evs[0]["response"]["output"] == []
    final = evs[-1]["response"]
    assert [i["type"] for i in final["output"]] == [
        "reasoning",
        "message",
        "function_call",
        "function_call",
        "reasoning",
    ]
    assert [i["id"] for i in final["output"]] == [
        e["item"]["id"] for e in evs if e["type"] == "response.output_item.done"
    ]
    assert final["output"][2]["arguments"] == '{"x": 1}' and final["output"][3]["call_id"] == "c2"
    assert responses_api.decode_continuation(final["output"][4]["encrypted_content"]) == CARRIED
    assert final["usage"]["total_tokens"] == 42 and final["status"] == "completed"


def test_a_stream_that_carried_nothing_still_gives_the_answer_as_items() -> None:
    enc = ResponseEncoder(request(input="q"))
    calls = [ToolCall(id="c1", name="a", arguments={"x": 1})]
    evs = events(enc.finish(result(text="Hi!", tool_calls=calls, finish_reason="length")))
    done = [e["item"] for e in evs if e["type"] == "response.output_item.done"]
    assert [(i["type"], i.get("content", [{}])[0].get("text"), i.get("arguments")) for i in done] == [
        ("message", "Hi!", None),
        ("function_call", None, '{"x":1}'),
    ]
    assert evs[-1]["type"] == "response.incomplete"
    assert evs[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_a_failure_mid_item_closes_it_and_fails_the_response() -> None:
    enc = ResponseEncoder(request(input="q"))
    data = enc.event(TextDelta(text="Hel"))
    error = {
        "error": {
            "message": "upstream went away",
            "type": "server_error",
            "param": None,
            "code": "network_error",
        }
    }
    evs = events(data + enc.error(error))
    assert [e["type"] for e in evs][-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.failed",
    ]
    failed = evs[-1]["response"]
    assert failed["status"] == "failed" and failed["error"] == {
        "code": "server_error",
        "message": "upstream went away",
    }
    assert failed["output"][0]["content"][0]["text"] == "Hel"
    limited = ResponseEncoder(request(input="q")).error(
        {"error": {"message": "m", "type": "rate_limit_error"}}
    )
    assert events(limited)[-1]["response"]["error"]["code"] == "rate_limit_exceeded"


def test_asked_for_a_summary_the_thinking_is_the_reasoning_items_summary() -> None:
    asked = request(input="q", reasoning={"effort": "low", "summary": "auto"})
    whole = msgspec.to_builtins(
        responses_api.response(asked, result(text="ok", thinking="hmm"), response_id="r", created_at=1)
    )
    assert whole["output"][0]["summary"] == [{"text": "hmm", "type": "summary_text"}]
    assert whole["output"][0]["content"] == []
    enc = ResponseEncoder(asked)
    data = enc.event(ThinkingDelta(text="hm")) + enc.event(ThinkingDelta(text="m"))
    data += enc.event(TextDelta(text="ok")) + enc.finish(result(text="ok", thinking="hmm"))
    evs = events(data)
    # Each event as the openai SDK types it, every required field present.
    adapter = pydantic.TypeAdapter(ResponseStreamEvent)
    assert all(adapter.validate_python(e).type == e["type"] for e in evs)
    reasoning = [e for e in evs if e.get("output_index") == 0]
    assert [(e["type"], e.get("summary_index"), e.get("delta") or e.get("text")) for e in reasoning] == [
        ("response.output_item.added", None, None),
        ("response.reasoning_summary_part.added", 0, None),
        ("response.reasoning_summary_text.delta", 0, "hm"),
        ("response.reasoning_summary_text.delta", 0, "m"),
        ("response.reasoning_summary_text.done", 0, "hmm"),
        ("response.reasoning_summary_part.done", 0, None),
        ("response.output_item.done", None, None),
    ]
    assert reasoning[-2]["part"] == {"text": "hmm", "type": "summary_text"}
    assert reasoning[-1]["item"]["summary"] == [{"text": "hmm", "type": "summary_text"}]
    assert evs[-1]["response"]["output"][0] == reasoning[-1]["item"]
    # Not asked: the same thinking is the item's reasoning_text content, as before.
    plain = ResponseEncoder(request(input="q", reasoning={"effort": "low"}))
    data = plain.event(ThinkingDelta(text="hmm")) + plain.finish(result(text="", thinking="hmm"))
    assert all(adapter.validate_python(e).type == e["type"] for e in events(data))
    assert events(data)[-1]["response"]["output"][0]["content"] == [{"text": "hmm", "type": "reasoning_text"}]


def test_a_conversation_as_input_items_with_stable_ids_a_page_at_a_time() -> None:
    conversation: list[dict[str, Any]] = [
        {"role": "system", "content": "use tools"},
        {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image", "url": "data:,x"}]},
        {"role": "assistant", "content": "Let me.", "continuation": CARRIED, "tool_calls": [
            {"id": "c1", "name": "a", "arguments": {"x": 1}},
            {"id": "c2", "name": "b", "arguments": {}, "raw_arguments": "not json"}]},
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "user", "content": "thanks"},
    ]  # fmt: skip
    items = responses_items.input_items("resp_1", conversation)
    adapter = pydantic.TypeAdapter(ResponseItem | ResponseReasoningItem)
    assert all(adapter.validate_python(item).type == item["type"] for item in items)
    assert [(i["type"], i.get("role")) for i in items] == [
        ("message", "system"),
        ("message", "user"),
        ("reasoning", None),
        ("message", "assistant"),
        ("function_call", None),
        ("function_call", None),
        ("function_call_output", None),
        ("message", "user"),
    ]
    assert items[1]["content"][1] == {"type": "input_image", "image_url": "data:,x", "detail": "auto"}
    assert responses_api.decode_continuation(items[2]["encrypted_content"]) == CARRIED
    assert [items[4]["arguments"], items[5]["arguments"]] == ['{"x":1}', "not json"]
    ids = [i["id"] for i in items]
    assert ids == [i["id"] for i in responses_items.input_items("resp_1", conversation)]  # stable
    assert len(set(ids)) == len(ids) and ids[2].startswith("rs_") and ids[6].startswith("fco_")
    assert set(ids).isdisjoint(i["id"] for i in responses_items.input_items("resp_2", conversation))

    first = responses_items.page(items, {"limit": ["3"]})
    assert [i["id"] for i in first["data"]] == ids[::-1][:3]  # newest first
    assert (first["first_id"], first["last_id"], first["has_more"]) == (ids[7], ids[5], True)
    rest = responses_items.page(items, {"limit": ["100"], "after": [ids[5]]})
    assert [i["id"] for i in rest["data"]] == ids[4::-1] and rest["has_more"] is False
    oldest = responses_items.page(items, {"order": ["asc"], "limit": ["8"]})
    assert [i["id"] for i in oldest["data"]] == ids and oldest["has_more"] is False
    empty = responses_items.page([], {})
    assert (empty["data"], empty["first_id"], empty["has_more"]) == ([], None, False)
    for query, param in (({"limit": ["0"]}, "limit"), ({"limit": ["x"]}, "limit"),
                         ({"order": ["up"]}, "order"), ({"after": ["msg_nope"]}, "after")):  # fmt: skip
        with pytest.raises(InvalidRequest) as exc:
            responses_items.page(items, query)
        assert exc.value.param == param
