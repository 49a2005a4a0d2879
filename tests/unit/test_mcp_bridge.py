"""McpBridge, with the SDK server replaced: queueing while the SDK loads, and a failed load."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from anyio.abc import ObjectReceiveStream

from sidecar.mcp import bridge as mcp_bridge
from sidecar.mcp.bridge import McpBridge
from sidecar.rpc.envelope import Notification, Reply, Request, decode
from sidecar.services.context import Handler


@dataclass
class _Services:
    handlers: dict[str, Handler] = field(default_factory=dict)


def _msg(**fields: Any) -> Request | Notification | Reply:
    decoded = decode(json.dumps({"jsonrpc": "2.0", **fields}).encode())
    assert isinstance(decoded, Request | Notification | Reply)
    return decoded


def test_messages_fed_before_the_server_loads_reach_it_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[bytes] = []

    async def serve(handlers: Any, inbox: ObjectReceiveStream[Any], write: Any, **_: Any) -> None:
        async with inbox:
            async for msg in inbox:
                received.append(msg.raw)

    monkeypatch.setattr(mcp_bridge, "_load_server", lambda: serve)
    sent = [
        _msg(id=0, method="initialize", params={}),
        _msg(method="notifications/initialized"),
        _msg(id=1, method="tools/list"),
    ]

    async def main() -> None:
        bridge = McpBridge(_Services(), lambda data: None)
        assert all(bridge.feed(m) for m in sent)  # before run() has even started
        async with anyio.create_task_group() as tg:
            tg.start_soon(bridge.run)
            await anyio.sleep(0.05)
            await bridge.aclose()
        assert bridge.feed(_msg(id=2, method="tools/list")) is False  # closed

    anyio.run(main)
    assert received == [m.raw for m in sent]


def test_a_failed_load_refuses_queued_and_later_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> Any:
        raise ImportError("No module named 'mcp'")

    monkeypatch.setattr(mcp_bridge, "_load_server", broken)
    written: list[dict[str, Any]] = []

    async def main() -> None:
        bridge = McpBridge(_Services(), lambda data: written.append(json.loads(data)))
        bridge.feed(_msg(id="a", method="initialize", params={}))
        bridge.feed(_msg(method="notifications/initialized"))
        await bridge.run()  # returns: the failure does not take the process down
        assert bridge.feed(_msg(id="b", method="tools/list")) is False  # the dispatcher answers -32601
        await bridge.aclose()

    anyio.run(main)
    assert [(w["id"], w["error"]["code"]) for w in written] == [("a", -32601)]
    assert "MCP face is unavailable" in written[0]["error"]["message"]
