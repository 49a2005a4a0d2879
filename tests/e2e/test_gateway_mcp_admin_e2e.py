"""The MCP face hides the sidecar's administration (gateway, client keys, routers, budgets,
providers) from the model that drives an MCP client, unless `[mcp] admin_tools = true`; the
official `mcp` client spawns `llm-sidecar` both ways. The host's JSON-RPC face keeps them."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from sidecar.mcp.tools import ADMIN_TOOLS
from sidecar.wire.methods import METHODS
from tests.e2e.mcp_env import server_params
from tests.harness import Sidecar


def test_admin_tools_are_hidden_and_refused_by_default(tmp_path: Path) -> None:
    async def main() -> None:
        async with Client(server_params(tmp_path)) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            assert names == [m for m in METHODS if m not in ADMIN_TOOLS]
            assert {"complete", "stream", "embed", "list_models", "router_preview"} <= set(names)
            for hidden in ("client_key_create", "gateway_start", "set_budget"):
                with pytest.raises(MCPError) as refused:
                    await client.call_tool(hidden, {"name": "mine"} if hidden == "client_key_create" else {})
                assert refused.value.error.code == types.INVALID_PARAMS
                assert refused.value.error.message == f"Unknown tool: {hidden}"

    anyio.run(main)
    # Nothing was created behind the refusal: the host still sees no client key.
    with Sidecar(home=tmp_path) as sc:
        assert sc.result("client_key_list", {})["keys"] == []


def test_admin_tools_are_served_when_the_config_says_so(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[mcp]\nadmin_tools = true\n")

    async def main() -> None:
        async with Client(server_params(tmp_path)) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            assert names == list(METHODS)
            created = await client.call_tool("client_key_create", {"name": "from-mcp"})
            assert created.is_error is False
            secret = created.structured_content["key"]
            assert secret.startswith("lsk-")
            listed = await client.call_tool("client_key_list", {})
            assert [k["name"] for k in listed.structured_content["keys"]] == ["from-mcp"]
            text = listed.content[0]
            assert isinstance(text, types.TextContent)
            assert secret not in text.text  # the list never carries the key itself
            assert json.loads(text.text) == listed.structured_content

    anyio.run(main)
