"""The sidecar's MCP server: the official SDK's low-level `Server`, fed from in-memory streams.

`serve` runs one MCP connection over lines the JSON-RPC dispatcher routed here (the MCP share of
stdin) and writes the SDK's answers through the process's single stdout writer. Because the SDK
reads the connection's first request itself, both protocol eras work unchanged: `initialize`
(2025 revisions) and `server/discover` plus per-request envelopes (2026-07-28).

`tools/call` runs the very handlers the JSON-RPC face runs (`services.handlers`), with a call
context whose notifications become MCP progress (see `tools.ProgressTracker`); the SDK
cancels the handler on `notifications/cancelled`, which closes its upstream call.

Errors: an unknown tool or malformed `tools/call` params are JSON-RPC errors (protocol faults);
anything the method itself reports, bad arguments included, is an `isError` result carrying the
contract's kind and message. A request the SDK cannot even parse (params that are not an object,
nesting deeper than its parser goes) would be logged and dropped by the SDK, leaving the client
waiting forever: those are answered here, -32602 with the request's id.

This module imports the SDK (~0.6 s), so only `bridge` imports it, off the event loop.

Must not know: providers, stdin/stdout file descriptors, what the methods do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import anyio
import mcp_types as types
from anyio.abc import ObjectReceiveStream
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage

from sidecar import __version__, logs
from sidecar.errors import INVALID_PARAMS, ProtocolError, SidecarError
from sidecar.mcp.tools import (
    ProgressTracker,
    decode_arguments,
    error_result,
    method_names,
    ok_result,
    tools,
)
from sidecar.rpc import envelope
from sidecar.rpc.envelope import Notification, Reply, Request
from sidecar.rpc.routes import Pacer
from sidecar.services.context import Handler
from sidecar.wire.base import ErrorData

Inbound = Request | Notification | Reply
Write = Callable[[bytes], None]

SERVER_NAME: Final = "llm-sidecar"
INSTRUCTIONS: Final = (
    "llm-sidecar gives one interface to many LLM providers (OpenAI, Anthropic, Gemini, xAI, "
    "OpenRouter, local Ollama). Use `complete` or `stream` to ask another model; `list_models`, "
    "`estimate_cost` and `recommend_models` to choose one; the key and Ollama tools to set things up. "
    "Errors come back as results with isError and error.kind (e.g. missing_key, rate_limited)."
)
_INTERNAL: Final = ErrorData(kind="internal_error", message="The sidecar hit an internal error; see its log.")
_log = logs.get_logger("mcp")


class ToolCallContext:
    """The `CallContext` a handler gets under MCP: notifications become progress, when asked for."""

    __slots__ = ("_progress", "_session", "request_id")

    def __init__(self, request_id: int | str, session: ServerSession) -> None:
        self.request_id = request_id
        self._session = session
        self._progress = ProgressTracker()

    async def notify(self, method: str, params: Any) -> None:
        update = self._progress.update(method, params)
        if update is not None:
            # A no-op when the caller sent no progressToken.
            await self._session.report_progress(update.progress, update.total, update.message)


def build_server(handlers: dict[str, Handler]) -> Server[Any]:
    names = method_names(handlers)
    served = frozenset(names)

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[types.Tool.model_validate(t) for t in tools(names)])

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        name = params.name
        if name not in served:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {name}")
        request_id = ctx.request_id if ctx.request_id is not None else name
        with logs.bound(request_id=request_id, method=name, face="mcp"):
            return types.CallToolResult.model_validate(
                await _call(handlers[name], name, params, request_id, ctx)
            )

    return Server(
        SERVER_NAME,
        version=__version__,
        title="LLM sidecar",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


async def _call(
    handler: Handler,
    name: str,
    params: types.CallToolRequestParams,
    request_id: int | str,
    ctx: ServerRequestContext[Any],
) -> dict[str, Any]:
    decoded = decode_arguments(name, params.arguments)
    if isinstance(decoded, ErrorData):
        return error_result(decoded)
    try:
        result = await handler(decoded, ToolCallContext(request_id, ctx.session))
    except SidecarError as exc:
        _log.info("request failed", kind=exc.kind, provider=exc.provider)
        return error_result(exc.data())
    except ProtocolError as exc:
        raise MCPError(code=exc.code, message=exc.message) from None
    except Exception:
        _log.exception("handler crashed")
        return error_result(_INTERNAL)
    return ok_result(result)


def _unparsable(exc: Exception) -> str:
    """Why the SDK could not parse a request (our envelope check passed, so it is the params)."""
    if isinstance(exc, RecursionError) or "recursion limit" in str(exc):
        return "Invalid params: nested too deeply"
    return "Invalid params: `params` must be an object"


async def serve(
    handlers: dict[str, Handler],
    inbox: ObjectReceiveStream[Inbound],
    write: Write,
    *,
    pacer: Pacer | None = None,
) -> None:
    """Serve MCP until `inbox` ends; in-flight tool calls are then cancelled by the SDK.

    With a `pacer`, the SDK's output waits while stdout's buffer is congested: progress of a
    streamed tool call then backs up into the SDK's bounded stream and slows the call itself."""
    server = build_server(handlers)
    to_sdk, sdk_reads = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    sdk_writes, from_sdk = anyio.create_memory_object_stream[SessionMessage](64)

    async def pump_in() -> None:
        async with to_sdk, inbox:
            async for msg in inbox:
                try:
                    message = types.jsonrpc_message_adapter.validate_json(msg.raw, by_name=False)
                except (ValueError, RecursionError) as exc:
                    if isinstance(msg, Request):
                        write(envelope.encode_error(msg.id, INVALID_PARAMS, _unparsable(exc)))
                    else:  # nothing to answer: the SDK logs and drops it, as its stdio transport does
                        await to_sdk.send(exc if isinstance(exc, ValueError) else ValueError(str(exc)))
                    continue
                await to_sdk.send(SessionMessage(message))

    async def pump_out() -> None:
        async with from_sdk:
            async for out in from_sdk:
                write(out.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n")
                if pacer is not None and pacer.congested:
                    await pacer.wait_for_room()

    async with anyio.create_task_group() as tg:
        tg.start_soon(pump_in)
        tg.start_soon(pump_out)
        await server.run(sdk_reads, sdk_writes, server.create_initialization_options())
