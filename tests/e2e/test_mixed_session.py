"""Host requests and MCP traffic on one connection (raw pipes), and the MCP SDK's lazy start.

A host needs no handshake, an MCP client gets the SDK, both can run at once with interleaved
lines, each side's cancellation reaches the side that owns the request id, and stdout carries
nothing but protocol lines. A host that never speaks MCP never imports the SDK.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.mcp_env import ASK, sidecar_env
from tests.fakes.http import Stall
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.harness import EXIT_BOUND_S, Sidecar

STREAM = {"model": "openai:gpt-4o-mini", "messages": ASK}
ANSWER = "Echo: " + ASK[0]["content"]
INIT = {
    "protocolVersion": "2025-11-25",
    "capabilities": {},
    "clientInfo": {"name": "raw-test", "version": "0"},
}
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "0"},
}
# CPython keeps the import timer's running total in one global, so a module imported while the
# warm-up imports in another thread can print a negative self time.
_IMPORT_LINE = re.compile(r"^import time:\s+-?\d+ \|\s+-?\d+ \|(\s+)(\S+)\s*$")


@pytest.fixture
def fake() -> Iterator[FakeOpenAICompat]:
    with FakeOpenAICompat("openai") as upstream:
        yield upstream


def _progress_text(sc: Sidecar, token: str) -> str:
    notes = sc.notifications("notifications/progress", lambda n: n["params"]["progressToken"] == token)
    values = [n["params"]["progress"] for n in notes]
    assert values == sorted(set(values)), "progress must increase"
    return "".join(n["params"].get("message", "") for n in notes)


def _tool_result(answer: dict[str, Any]) -> dict[str, Any]:
    assert "result" in answer, answer
    result: dict[str, Any] = answer["result"]
    assert result["isError"] is False, result
    return result


def test_host_and_legacy_mcp_requests_interleave_on_one_connection(
    fake: FakeOpenAICompat, tmp_path: Any
) -> None:
    with Sidecar(env=sidecar_env(tmp_path, fake)) as sc:
        info = sc.start("info", id="h-info")
        init = sc.start("initialize", INIT, id=0)  # the Inspector opens with id 0
        models = sc.start("list_models", {"provider": "openai"}, id="h-models")
        host_stream = sc.start("stream", STREAM, id="h-stream")
        assert sc.wait(init)["result"]["serverInfo"]["name"] == "llm-sidecar"
        sc.notify("notifications/initialized")
        tools = sc.start("tools/list", id="m-tools")
        call = sc.start(
            "tools/call",
            {"name": "stream", "arguments": STREAM, "_meta": {"progressToken": "tok"}},
            id="m-stream",
        )
        host_again = sc.start("stream", STREAM, id="h-stream-2")
        mcp_models = sc.start(
            "tools/call", {"name": "list_models", "arguments": {"provider": "openai"}}, id=7
        )
        unknown = sc.start("no_such_method", id="h-unknown")

        assert sc.wait(info)["result"]["version"]
        assert {m["provider"] for m in sc.wait(models)["result"]["models"]} == {"openai"}
        for rid in (host_stream, host_again):
            result = sc.wait(rid)["result"]
            assert result["text"] == ANSWER
            assert "".join(e["text"] for e in sc.events(rid) if e["type"] == "text_delta") == ANSWER
        listed = [t["name"] for t in sc.wait(tools)["result"]["tools"]]
        assert {"complete", "stream", "info", "list_models"} <= set(listed)
        structured = _tool_result(sc.wait(call, timeout=15))["structuredContent"]
        assert structured["text"] == ANSWER
        assert _progress_text(sc, "tok") == ANSWER
        assert not sc.events(call), "an MCP call reports progress, never host stream/event notifications"
        assert _tool_result(sc.wait(mcp_models))["structuredContent"]["models"]
        # A host's unknown method is still a plain JSON-RPC error, not the MCP SDK's business.
        assert sc.wait(unknown)["error"] == {"code": -32601, "message": "Method not found: no_such_method"}

        sc.close_stdin()
        assert sc.wait_exit() == 0
        assert sc.bad_lines == []


def test_cancellation_reaches_whichever_side_owns_the_id(fake: FakeOpenAICompat, tmp_path: Any) -> None:
    with Sidecar(env=sidecar_env(tmp_path, fake)) as sc:
        sc.wait(sc.start("initialize", INIT, id="m-init"))
        sc.notify("notifications/initialized")
        fake.edit_stream = lambda events: [*events[:4], Stall()]

        host = sc.start("stream", STREAM, id="h-1")
        call = sc.start(
            "tools/call", {"name": "stream", "arguments": STREAM, "_meta": {"progressToken": 9}}, id="m-1"
        )
        sc.wait_notification("stream/event", lambda n: n["params"]["request_id"] == host)
        sc.wait_notification("notifications/progress", lambda n: n["params"]["progressToken"] == 9)

        sc.notify("notifications/cancelled", {"requestId": call, "reason": "user"})
        assert fake.wait_for_disconnect(5.0, count=1)
        sc.notify("notifications/cancelled", {"requestId": host})
        assert fake.wait_for_disconnect(5.0, count=2)
        assert sc.wait(host)["error"]["data"]["kind"] == "cancelled"

        fake.edit_stream = None
        after = sc.start("tools/call", {"name": "complete", "arguments": STREAM}, id="m-2")
        assert _tool_result(sc.wait(after))["structuredContent"]["text"] == ANSWER
        assert not [m for m in sc.all_messages if m.get("id") == call], "a cancelled MCP call is not answered"
        sc.close_stdin()
        assert sc.wait_exit() == 0
        assert sc.bad_lines == []


def test_host_requests_mix_with_a_2026_client_that_sends_no_handshake(
    fake: FakeOpenAICompat, tmp_path: Any
) -> None:
    with Sidecar(env=sidecar_env(tmp_path, fake)) as sc:
        discover = sc.start("server/discover", {"_meta": MODERN_META}, id="d")
        info = sc.start("info", id="h")
        call = sc.start(
            "tools/call",
            {"name": "stream", "arguments": STREAM, "_meta": {**MODERN_META, "progressToken": "p"}},
            id="c",
        )
        found = sc.wait(discover)["result"]
        assert found["supportedVersions"] == ["2026-07-28"]
        assert found["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "llm-sidecar"
        assert sc.wait(info)["result"]["version"]
        result = _tool_result(sc.wait(call, timeout=15))
        assert result["resultType"] == "complete"
        assert result["structuredContent"]["text"] == ANSWER
        assert _progress_text(sc, "p") == ANSWER
        assert sc.bad_lines == []


def _imported(stderr: str) -> set[str]:
    return {m.group(2) for line in stderr.splitlines() if (m := _IMPORT_LINE.match(line))}


def _is_mcp(module: str) -> bool:
    return module in ("mcp", "mcp_types") or module.startswith(("mcp.", "mcp_types."))


def test_a_host_that_never_speaks_mcp_never_imports_the_sdk(fake: FakeOpenAICompat, tmp_path: Any) -> None:
    # PYTHONPROFILEIMPORTTIME only adds one stderr line per module imported.
    env = {**sidecar_env(tmp_path, fake), "PYTHONPROFILEIMPORTTIME": "1"}
    with Sidecar(env=env) as host_only:
        assert host_only.result("info")["version"]
        assert host_only.result("list_models", {"provider": "openai"})["models"]
        assert host_only.result("stream", STREAM)["text"] == ANSWER
        host_only.notify("notifications/cancelled", {"requestId": 12345})  # late cancel, unknown id
        assert host_only.call("tools_list")["error"]["code"] == -32601
        host_only.close_stdin()
        assert host_only.wait_exit() == 0
        imported = _imported(host_only.stderr_text)
    assert "sidecar.app" in imported and "sidecar.services.chat" in imported  # the probe works
    assert not [m for m in imported if _is_mcp(m) or m.startswith("sidecar.mcp")]

    with Sidecar(env=env) as mcp_client:
        mcp_client.wait(mcp_client.start("initialize", INIT))
        mcp_client.close_stdin()
        assert mcp_client.wait_exit() == 0
        imported = _imported(mcp_client.stderr_text)
    assert {"mcp", "mcp_types", "sidecar.mcp.server"} <= imported


def test_host_requests_are_answered_while_the_sdk_loads(tmp_path: Any) -> None:
    with Sidecar(env=sidecar_env(tmp_path)) as sc:
        assert sc.result("info")["version"]  # the process is up
        init = sc.start("initialize", INIT)
        started = time.monotonic()
        info = sc.start("info")
        sc.wait(info)
        host_s = time.monotonic() - started
        sc.wait(init)
        order = [m.get("id") for m in sc.all_messages if "id" in m]
        assert order.index(info) < order.index(init), f"info waited for the SDK ({host_s:.3f} s)"
        assert sc.bad_lines == []


def test_stdin_eof_ends_in_flight_mcp_calls_and_exits_promptly(fake: FakeOpenAICompat, tmp_path: Any) -> None:
    fake.edit_stream = lambda events: [*events[:4], Stall()]
    with Sidecar(env=sidecar_env(tmp_path, fake)) as sc:
        sc.wait(sc.start("initialize", INIT))
        sc.notify("notifications/initialized")
        sc.start("tools/call", {"name": "stream", "arguments": STREAM, "_meta": {"progressToken": 1}})
        sc.wait_notification("notifications/progress")
        started = time.monotonic()
        sc.close_stdin()
        assert sc.wait_exit(10) == 0
        assert time.monotonic() - started < EXIT_BOUND_S
        assert fake.wait_for_disconnect(5.0)
        assert sc.bad_lines == []
