"""Every field the contract promises is on the wire, and the schema says it is required.

`Wire` structs omit defaults, so a promised field with a default vanished when it had its default
value (`arguments: {}` of a call to a tool without parameters).
"""

from __future__ import annotations

import msgspec

from sidecar.wire import schema
from sidecar.wire.base import ZERO_USAGE
from sidecar.wire.chat import ChatResult, CompleteParams, ToolCall


def _result(**kw: object) -> ChatResult:
    return ChatResult(
        text="",
        tool_calls=[ToolCall(id="c1", name="now", arguments={})],
        finish_reason="tool_calls",
        usage=ZERO_USAGE,
        cost_usd=None,
        provider="openai",
        model="gpt-4o-mini",
        **kw,  # type: ignore[arg-type]
    )


def test_empty_arguments_are_sent() -> None:
    wire = msgspec.json.decode(msgspec.json.encode(_result()))
    assert wire["tool_calls"] == [{"id": "c1", "name": "now", "arguments": {}}]
    for field in ("text", "tool_calls", "finish_reason", "usage", "cost_usd", "provider", "model"):
        assert field in wire


def test_the_result_schema_requires_every_promised_field() -> None:
    doc = schema.result_schema("complete")
    defs = doc.get("$defs", {})
    call = defs["ToolCall"]
    assert set(call["required"]) >= {"id", "name", "arguments"}
    result = defs.get("ChatResult", doc)
    assert set(result["required"]) >= {
        "text",
        "tool_calls",
        "finish_reason",
        "usage",
        "cost_usd",
        "provider",
        "model",
    }
    assert "incomplete" in str(result["properties"]["finish_reason"])


def test_hosts_may_still_leave_arguments_out_of_the_calls_they_send_back() -> None:
    params = msgspec.convert(
        {
            "model": "openai:gpt-4o-mini",
            "messages": [{"role": "assistant", "tool_calls": [{"id": "c1", "name": "now"}]}],
        },
        CompleteParams,
    )
    calls = params.messages[0].tool_calls
    assert calls is not None and calls[0].arguments == {}


def test_usage_estimated_appears_only_when_true() -> None:
    assert b"usage_estimated" not in msgspec.json.encode(_result())
    assert b'"usage_estimated":true' in msgspec.json.encode(_result(usage_estimated=True))
