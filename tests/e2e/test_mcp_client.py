"""The official `mcp` client spawns `llm-sidecar` and uses it as an MCP server, in both eras.

Legacy: `ClientSession` + `initialize` (2025 revisions). Modern: the high-level `Client` in auto
mode, which probes `server/discover` and gets 2026-07-28. Streams come from the fake OpenAI on
127.0.0.1; the client's `progress_callback` sees each text delta. A call through a router is a
ledger row naming it, as on every face.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client, ClientSession, stdio_client
from mcp.shared.dispatcher import ProgressFnT

from sidecar.mcp.tools import ADMIN_TOOLS
from sidecar.wire.methods import METHODS, TOOL_HINTS
from tests.e2e.mcp_env import ASK, server_params
from tests.fakes.http import Stall
from tests.fakes.ollama import FakeOllama
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.harness import SIDECAR

STREAM_ARGS = {"model": "openai:gpt-4o-mini", "messages": ASK}
Progress = list[tuple[float, float | None, str | None]]


@pytest.fixture
def fake() -> Iterator[FakeOpenAICompat]:
    with FakeOpenAICompat("openai") as upstream:
        yield upstream


def _collector() -> tuple[Progress, ProgressFnT]:
    seen: Progress = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    return seen, on_progress


def _text_of(result: types.CallToolResult) -> str:
    [block] = result.content
    assert isinstance(block, types.TextContent)
    return block.text


def _check_stream(result: types.CallToolResult, seen: Progress) -> None:
    assert result.is_error is False, _text_of(result)
    structured: dict[str, Any] = result.structured_content
    assert structured["text"] == "Echo: " + ASK[0]["content"]
    assert structured["finish_reason"] == "stop"
    assert structured["provider"] == "openai"
    ordered = sorted(seen)  # the client runs each progress callback as its own task
    assert len(ordered) > 3
    progress = [p for p, _, _ in ordered]
    assert progress == sorted(set(progress)), "progress must increase on every notification"
    assert "".join(m or "" for _, _, m in ordered) == structured["text"]


def _check_tools(tools: list[types.Tool]) -> None:
    assert [t.name for t in tools] == [m for m in METHODS if m not in ADMIN_TOOLS]  # default config
    for t in tools:
        assert t.input_schema["type"] == "object"
        assert t.output_schema is not None and t.output_schema["type"] == "object"
        assert t.description == METHODS[t.name].description
    _check_annotations({t.name: t for t in tools})


def _check_annotations(tools: dict[str, types.Tool]) -> None:
    """The hints as the client reads them: each from the method's TOOL_HINTS row."""
    for name, tool in tools.items():
        hints = TOOL_HINTS.get(name)
        if hints is None:  # a method without a row gets no hints at all
            assert tool.annotations is None, name
            continue
        assert tool.annotations is not None, name
        assert tool.annotations.read_only_hint is hints.read_only, name
        assert tool.annotations.open_world_hint is hints.open_world, name
        if not hints.read_only:
            assert tool.annotations.destructive_hint is hints.destructive, name
    assert tools["list_keys"].annotations.read_only_hint is True  # type: ignore[union-attr]
    for name in ("delete_key", "ollama_delete"):
        assert tools[name].annotations.destructive_hint is True  # type: ignore[union-attr]
        assert tools[name].annotations.read_only_hint is False  # type: ignore[union-attr]
    for name in ("complete", "stream", "validate_key", "ollama_pull"):
        assert tools[name].annotations.open_world_hint is True  # type: ignore[union-attr]
    for name in ("info", "list_keys", "usage_summary"):
        assert tools[name].annotations.open_world_hint is False  # type: ignore[union-attr]


def test_legacy_session_lists_and_calls_tools(fake: FakeOpenAICompat, tmp_path: Path) -> None:
    async def main() -> None:
        async with (
            stdio_client(server_params(tmp_path, fake)) as (read, write),
            ClientSession(read, write) as s,
        ):
            init = await s.initialize()
            assert init.server_info.name == "llm-sidecar"
            assert init.protocol_version == "2025-11-25"
            _check_tools((await s.list_tools()).tools)

            recommended = await s.call_tool("recommend_models", {})
            assert recommended.is_error is False, _text_of(recommended)
            assert recommended.structured_content["tier"] in ("low", "medium", "high")
            assert all(
                r["model"].startswith("ollama:") for r in recommended.structured_content["recommendations"]
            )

            models = await s.call_tool("list_models", {"provider": "openai"})
            assert models.is_error is False
            assert models.structured_content["models"]
            assert {m["provider"] for m in models.structured_content["models"]} == {"openai"}

            seen, on_progress = _collector()
            result = await s.call_tool("stream", STREAM_ARGS, progress_callback=on_progress)
            _check_stream(result, seen)

            # Without a progressToken there is no progress, and the same result.
            quiet = await s.call_tool("complete", STREAM_ARGS)
            assert quiet.structured_content["text"] == result.structured_content["text"]

    anyio.run(main)


def test_modern_client_probes_discover_and_streams_with_progress(
    fake: FakeOpenAICompat, tmp_path: Path
) -> None:
    async def main() -> None:
        async with Client(server_params(tmp_path, fake)) as client:
            assert client.protocol_version == "2026-07-28"
            assert client.session.server_info is not None
            assert client.session.server_info.name == "llm-sidecar"
            _check_tools((await client.list_tools()).tools)

            seen, on_progress = _collector()
            result = await client.call_tool("stream", STREAM_ARGS, progress_callback=on_progress)
            _check_stream(result, seen)

            # A method's own failure is a tool error carrying the contract's kind, not a protocol error.
            missing = await client.call_tool("complete", {"model": "xai:grok-4", "messages": ASK})
            assert missing.is_error is True
            assert missing.structured_content is None
            error = json.loads(_text_of(missing))["error"]
            assert error["kind"] == "missing_key"
            assert "XAI_API_KEY" in error["message"]
            assert error["provider"] == "xai"

            bad = await client.call_tool("complete", {"model": "openai:gpt-4o-mini", "messages": []})
            assert bad.is_error is True
            error = json.loads(_text_of(bad))["error"]
            assert error["kind"] == "invalid_request"
            assert error["field"] == "$.messages"

    anyio.run(main)


def test_cancelling_a_call_stops_the_upstream_request(fake: FakeOpenAICompat, tmp_path: Path) -> None:
    fake.edit_stream = lambda events: [*events[:4], Stall()]

    async def main() -> None:
        async with (
            stdio_client(server_params(tmp_path, fake)) as (read, write),
            ClientSession(read, write) as s,
        ):
            await s.initialize()
            first = anyio.Event()

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                first.set()

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:

                    async def call() -> None:
                        await s.call_tool("stream", STREAM_ARGS, progress_callback=on_progress)
                        raise AssertionError("a stalled stream cannot finish")

                    tg.start_soon(call)
                    await first.wait()
                    # Cancelling the caller sends notifications/cancelled for the call's id.
                    tg.cancel_scope.cancel()
                assert await anyio.to_thread.run_sync(fake.wait_for_disconnect, 5.0)

            fake.edit_stream = None
            after = await s.call_tool("stream", STREAM_ARGS)
            assert after.structured_content["text"] == "Echo: " + ASK[0]["content"]

    anyio.run(main)


def test_the_client_gets_a_protocol_error_for_an_unknown_tool(tmp_path: Path) -> None:
    async def main() -> None:
        async with Client(server_params(tmp_path)) as client:
            with pytest.raises(Exception, match="Unknown tool: no_such_tool"):
                await client.call_tool("no_such_tool", {})

    assert SIDECAR  # spawned through the installed console script
    anyio.run(main)


def test_ollama_pull_reports_download_progress_with_totals(tmp_path: Path) -> None:
    with FakeOllama(interleave=True) as ollama:  # parallel layers, each counting from 0 again
        params = server_params(tmp_path)
        params.env = {**(params.env or {}), "OLLAMA_HOST": ollama.url}
        size = ollama.library["smollm2:135m"].size

        async def main() -> None:
            async with stdio_client(params) as (read, write), ClientSession(read, write) as s:
                await s.initialize()
                seen, on_progress = _collector()
                result = await s.call_tool(
                    "ollama_pull", {"model": "smollm2:135m"}, progress_callback=on_progress
                )
                assert result.is_error is False, _text_of(result)
                assert result.structured_content["status"] == "success"
                ordered = sorted(seen)
                progress = [p for p, _, _ in ordered]
                assert progress == sorted(set(progress))
                assert ordered[0] == (0, None, "pulling manifest")
                assert ordered[-1][:2] == (size, size)
                assert all(total is None or p <= total for p, total, _ in ordered)

        anyio.run(main)
        assert "smollm2:135m" in ollama.installed


def test_a_router_call_is_a_ledger_row_naming_the_router(fake: FakeOpenAICompat, tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[routers.sea]\nmodels = ["openai:gpt-4o-mini"]\n')

    async def main() -> None:
        async with (
            stdio_client(server_params(tmp_path, fake)) as (read, write),
            ClientSession(read, write) as s,
        ):
            await s.initialize()
            routed = await s.call_tool("complete", {**STREAM_ARGS, "model": "router:sea"})
            assert routed.is_error is False, _text_of(routed)
            assert routed.structured_content["provider"] == "openai"
            summary = await s.call_tool("usage_summary", {"group_by": "router"})
            assert [(g.get("key"), g["requests"]) for g in summary.structured_content["groups"]] == [
                ("sea", 1)
            ]

    anyio.run(main)
    with sqlite3.connect(tmp_path / "sidecar.db") as conn:
        assert conn.execute("SELECT router, provider FROM ledger").fetchall() == [("sea", "openai")]
