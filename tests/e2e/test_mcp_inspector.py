"""The MCP Inspector CLI (the TypeScript SDK's client) lists and calls the sidecar's tools.

The Inspector is installed by `scripts/install-node-tools` (which `scripts/test` runs) into a
cache directory outside the repository, pinned by tests/node/package-lock.json. A missing Node.js or Inspector fails these tests: the
TypeScript client is stricter than the Python one (it checks every tool's schemas, and any
`structuredContent` against the tool's `outputSchema`, errors included), so it must not be
silently skipped.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.wire.methods import METHODS
from tests.e2e.mcp_env import ASK, sidecar_env
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.harness import SIDECAR
from tests.node_tools import node_tool

pytestmark = pytest.mark.node

EXIT_TOOL_ERROR = 5  # the Inspector's exit status for a call whose result has isError


@pytest.fixture(scope="module")
def inspector() -> Path:
    return node_tool("mcp-inspector")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAICompat]:
    with FakeOpenAICompat("openai") as upstream:
        yield upstream


def _run(inspector: Path, env: dict[str, str], *args: str) -> tuple[int, Any]:
    command = [str(inspector), "--cli"]
    for key, value in env.items():
        command += ["-e", f"{key}={value}"]
    command += [SIDECAR, *args]
    done = subprocess.run(command, capture_output=True, timeout=30, check=False)
    try:
        output = json.loads(done.stdout)
    except ValueError:
        pytest.fail(f"the Inspector printed no JSON (exit {done.returncode}): {done.stderr.decode()[-2000:]}")
    return done.returncode, output


def test_inspector_lists_every_method_as_a_tool_in_strict_mode(inspector: Path, tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[mcp]\nadmin_tools = true\n")  # every method, admin ones too
    code, listed = _run(inspector, sidecar_env(tmp_path), "--strict", "--method", "tools/list")
    assert code == 0, listed
    assert [t["name"] for t in listed["tools"]] == list(METHODS)
    for t in listed["tools"]:
        assert t["inputSchema"]["type"] == "object"
        assert t["outputSchema"]["type"] == "object"


def test_inspector_calls_tools(inspector: Path, fake: FakeOpenAICompat, tmp_path: Path) -> None:
    env = sidecar_env(tmp_path, fake)
    call = ("--method", "tools/call", "--tool-name")
    code, models = _run(inspector, env, *call, "list_models", "--tool-arg", "provider=openai")
    assert code == 0, models
    assert models["isError"] is False
    assert {m["provider"] for m in models["structuredContent"]["models"]} == {"openai"}
    assert json.loads(models["content"][0]["text"]) == models["structuredContent"]

    code, recommended = _run(inspector, env, *call, "recommend_models")
    assert code == 0, recommended
    assert recommended["structuredContent"]["tier"] in ("low", "medium", "high")

    messages = "messages=" + json.dumps(ASK)
    code, streamed = _run(inspector, env, *call, "stream", "--tool-arg", "model=openai:gpt-4o-mini", messages)
    assert code == 0, streamed
    assert streamed["structuredContent"]["text"] == "Echo: " + ASK[0]["content"]
    assert streamed["structuredContent"]["usage"]["output_tokens"] > 0


def test_inspector_sees_a_tool_error_with_the_contract_kind(inspector: Path, tmp_path: Path) -> None:
    messages = "messages=" + json.dumps(ASK)
    args = ["--method", "tools/call", "--tool-name", "complete", "--tool-arg", "model=xai:grok-4", messages]
    code, result = _run(inspector, sidecar_env(tmp_path), *args)
    assert code == EXIT_TOOL_ERROR, result
    assert result["isError"] is True
    error = json.loads(result["content"][0]["text"])["error"]
    assert error["kind"] == "missing_key"
    assert error["provider"] == "xai"
