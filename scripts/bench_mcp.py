#!/usr/bin/env python3
"""Benchmarks of the MCP face against the bare MCP SDK: `initialize` and `tools/call`.

The floor (`--bare`) is the official SDK's low-level stdio server with one tool, `info`, answering
a small JSON text, as little as an MCP server can be. The sidecar answers the same requests on its
own stdio connection, where the first MCP request loads the SDK. Both are driven by the same host:
raw JSON lines over pipes, one request at a time.

- `initialize`: spawn → `initialize` answered (median over runs): the SDK's import is in both.
- `tools/call`: the median round trip of `tools/call info` once initialized.

`bench_mcp(quick)` returns rows in scripts/bench.py's table shape; run alone it prints them.

    .venv/bin/python scripts/bench_mcp.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

SIDECAR = str(Path(sys.executable).with_name("llm-sidecar"))
Table = list[tuple[str, str, str, str]]
INIT: dict[str, object] = {
    "protocolVersion": "2025-06-18",
    "capabilities": {},
    "clientInfo": {"name": "bench", "version": "1"},
}


def bare_server() -> None:
    """The floor: the SDK's low-level server, one tool."""
    from typing import Any

    import anyio
    import mcp_types as types
    from mcp.server.context import ServerRequestContext
    from mcp.server.lowlevel import Server
    from mcp.server.stdio import stdio_server

    info = msgspec.json.encode({"name": "bare", "version": "1"}).decode()

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[types.Tool.model_validate({"name": "info", "inputSchema": {"type": "object"}})]
        )

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        return types.CallToolResult.model_validate({"content": [{"type": "text", "text": info}]})

    server: Server[Any] = Server("bare", on_list_tools=list_tools, on_call_tool=call_tool)

    async def main() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(main)


class _Host:
    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
        )

    def call(self, rid: int, method: str, params: dict[str, object] | None = None) -> dict[str, object]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        body: dict[str, object] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            body["params"] = params
        self.proc.stdin.write(msgspec.json.encode(body) + b"\n")
        self.proc.stdin.flush()
        while True:
            msg = msgspec.json.decode(self.proc.stdout.readline())
            if msg.get("id") == rid:
                assert "result" in msg, msg
                return dict(msg)

    def notify(self, method: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(msgspec.json.encode({"jsonrpc": "2.0", "method": method}) + b"\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


def _measure(argv: list[str], env: dict[str, str], spawns: int, calls: int) -> tuple[float, float]:
    """(median ms spawn → initialize answered, median µs per tools/call)."""
    init_ms: list[float] = []
    call_us: list[float] = []
    for run in range(spawns):
        host = _Host(argv, env)
        host.call(1, "initialize", INIT)
        init_ms.append((time.perf_counter() - host.started) * 1000)
        host.notify("notifications/initialized")
        if run == 0:
            for i in range(calls + 20):
                started = time.perf_counter()
                host.call(100 + i, "tools/call", {"name": "info", "arguments": {}})
                if i >= 20:  # after a warm-up
                    call_us.append((time.perf_counter() - started) * 1e6)
        host.close()
    return statistics.median(init_ms), statistics.median(call_us)


def bench_mcp(quick: bool = False) -> Table:
    spawns, calls = (3, 200) if quick else (7, 1_000)
    with tempfile.TemporaryDirectory() as home:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "SIDECAR_HOME": home,
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        }
        bare = [sys.executable, str(Path(__file__).resolve()), "--bare"]
        side_init, side_call = _measure([SIDECAR], env, spawns, calls)
        bare_init, bare_call = _measure(bare, env, spawns, calls)
    return [
        (
            "MCP: spawn → initialize answered (median)",
            f"{side_init:.0f} ms",
            f"{bare_init:.0f} ms (bare SDK server)",
            f"{side_init / bare_init:.2f}x",
        ),
        (
            "MCP: tools/call info round trip (median)",
            f"{side_call:.0f} µs",
            f"{bare_call:.0f} µs (bare SDK server)",
            f"{side_call / bare_call:.2f}x",
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        bare_server()
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from scripts.bench_common import print_table  # only when run alone

    print_table(bench_mcp(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
