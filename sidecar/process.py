"""The process: serve the services on stdin/stdout until EOF or SIGTERM.

The host's JSON-RPC requests go through the dispatcher (`sidecar.rpc`); MCP traffic on the same
connection goes to the MCP face, created on the first MCP request; the HTTP gateway, when
configured, starts with the daemon. On stdin EOF, in-flight requests get a grace period, then are
cancelled, answered and recorded, all within the contract's 2 s.

Must not know: what the methods do, providers, storage.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Final

import anyio

from sidecar import __version__, logs
from sidecar.app import Services
from sidecar.rpc import envelope, stdio
from sidecar.rpc.dispatcher import Dispatcher, HandleBatch
from sidecar.rpc.early import Early
from sidecar.rpc.envelope import Notification, Reply, Request
from sidecar.rpc.framing import DEFAULT_MAX_LINE, Framing, Piece
from sidecar.rpc.routes import Pacer, Route, route
from sidecar.services.context import Handler
from sidecar.wire.methods import METHODS, wire_type

# stdin EOF: in-flight requests get EOF_GRACE_S to finish, then are cancelled and get SETTLE_S to
# answer -32800 and be recorded; closing services and flushing stdout get their own bounds. The
# sum stays under the contract's 2 s. The usage ledger's close (every queued row committed) may
# use what those steps leave: it waits while its writer commits, until LEDGER_BY_S after the EOF
# (or signal), then the other services get CLOSE_S, stdout what is left before EXIT_S (FLUSH_S at
# least) and the interpreter's own exit EXIT_S. It always gets CLOSE_S at least.
SHUTDOWN_S: Final = 2.0
EOF_GRACE_S: Final = 1.0
SETTLE_S: Final = 0.2
CLOSE_S: Final = 0.25
FLUSH_S: Final = 0.15
EXIT_S: Final = 0.2
LEDGER_BY_S: Final = SHUTDOWN_S - EXIT_S - FLUSH_S - CLOSE_S
WARM_DELAY_S: Final = 0.02
_log = logs.get_logger("process")


def routes_for(handlers: Mapping[str, Handler]) -> dict[str, Route]:
    """Dispatcher routes for every method of the table that has a handler."""
    # A method's structs load when it is first called, not at start.
    return {
        name: route(
            partial(wire_type, spec.params_at),
            handlers[name],
            inline=spec.inline,
            same_result=spec.same_result,
        )
        for name, spec in METHODS.items()
        if name in handlers
    }


class _McpGate:
    """Hands MCP traffic to the MCP face, created on the first MCP request (it loads the SDK off the loop)."""

    def __init__(
        self,
        services: Services,
        write: Callable[[bytes], None],
        tg: anyio.abc.TaskGroup,
        pacer: Pacer | None = None,
    ) -> None:
        self._services = services
        self._write = write
        self._tg = tg
        self._pacer = pacer
        self._bridge: Any = None

    def claims(self, method: str) -> bool:
        """Whether `method` belongs to the MCP face (the dispatcher refuses those in batches)."""
        return _looks_like_mcp_method(method)

    def __call__(self, msg: Request | Notification | Reply) -> bool:
        if isinstance(msg, Request | Notification) and not _looks_like_mcp_method(msg.method):
            return False  # a host's unknown method stays a plain -32601, whatever MCP is doing
        if self._bridge is None:
            if not isinstance(msg, Request):
                # Only an MCP client's first request opens its connection; a host's late
                # `notifications/cancelled` (for a request already answered) must not load the SDK.
                return False
            try:
                from sidecar.mcp.bridge import McpBridge
            except ImportError:
                return False
            self._bridge = McpBridge(self._services, self._write, self._pacer)
            self._tg.start_soon(self._bridge.run)
        return bool(self._bridge.feed(msg))

    async def aclose(self, wait_s: float) -> None:
        if self._bridge is not None:
            await self._bridge.aclose(wait_s)


_MCP_PREFIXES: Final = (
    "notifications/",
    "tools/",
    "resources/",
    "prompts/",
    "completion/",
    "logging/",
    "tasks/",
)
_MCP_METHODS: Final = frozenset({"initialize", "ping", "server/discover", "subscriptions/listen"})


def _looks_like_mcp_method(method: str) -> bool:
    return method in _MCP_METHODS or method.startswith(_MCP_PREFIXES)


async def serve(
    services: Services,
    *,
    stdin_fd: int,
    stdout_fd: int,
    max_line: int = DEFAULT_MAX_LINE,
    early: Early | None = None,
) -> None:
    """Serve until stdin ends or SIGTERM/SIGINT arrives; in-flight requests finish or are cancelled.

    `early` is what `sidecar.rpc.early` read (and perhaps answered) before the loop existed."""
    stopping = anyio.Event()
    stop_began: float | None = None  # when stdin ended or a signal came (`time.monotonic()`)
    writer = stdio.StdoutWriter(stdout_fd, on_broken_pipe=lambda: None)

    def begin_stop() -> None:
        nonlocal stop_began
        if stop_began is None:
            stop_began = time.monotonic()

    write = writer.write

    def warm_soon() -> None:
        tg.start_soon(warm)

    async def warm() -> None:
        # Import the HTTP stack off the critical path, once the host has its first answer; the
        # short wait lets the writer thread deliver that answer before the import holds the GIL.
        await anyio.sleep(WARM_DELAY_S)
        await anyio.to_thread.run_sync(services.http.warm)

    def set_framing(framing: Framing) -> None:
        writer.framing = framing

    # The warm-up follows the first answer; when that went out before the loop, it starts with it.
    answered = early is not None and early.answered
    dispatcher = Dispatcher(
        routes_for(services.handlers), write, on_first_answer=None if answered else warm_soon, pacer=writer
    )
    services.broadcaster = lambda method, params: write(envelope.encode_notification(method, params))
    reader = stdio.StdinReader(stdin_fd, max_line, on_framing=set_framing, early=early)
    try:
        async with anyio.create_task_group() as tg:
            gate = _McpGate(services, write, tg, writer)
            dispatcher.fallback = gate

            async def watch_signals() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for signum in signals:
                        begin_stop()
                        _log.info("signal received, shutting down", signal=signal.Signals(signum).name)
                        dispatcher.cancel_all()
                        stopping.set()
                        return

            async def pump(handle: HandleBatch) -> None:
                def on_batch(pieces: Sequence[Piece]) -> None:
                    if stopping.is_set():
                        return
                    # What is answered at once (`info`, errors) goes out in one write per read.
                    gather = writer.hold()
                    try:
                        handle(pieces, gather)
                    finally:
                        writer.release()

                await reader.pump(on_batch)
                begin_stop()  # stdin ended

            async def run_dispatcher() -> None:
                # At EOF, `serve_batches` gives in-flight requests EOF_GRACE_S, then cancels them.
                await dispatcher.serve_batches(pump, grace_s=EOF_GRACE_S, settle_s=SETTLE_S)
                stopping.set()

            tg.start_soon(watch_signals)
            tg.start_soon(run_dispatcher)
            if answered:
                warm_soon()
            await services.start_background(tg)
            if services.config.gateway.enabled:
                tg.start_soon(services.start_gateway)
            await stopping.wait()
            await dispatcher.drain(0, SETTLE_S)  # after a signal: the cancelled requests' answers
            await gate.aclose(SETTLE_S)
            with anyio.move_on_after(SETTLE_S):
                await services.stop_gateway()
            tg.cancel_scope.cancel()
    finally:
        began = time.monotonic() if stop_began is None else stop_began
        ledger_by = max(began + LEDGER_BY_S, time.monotonic() + CLOSE_S)
        with anyio.CancelScope(shield=True), anyio.move_on_after(ledger_by + CLOSE_S - time.monotonic()):
            await services.aclose(ledger_by=ledger_by)
        # What the host has not read yet gets what the budget has left (FLUSH_S at least): a host
        # that reads its answers a moment after closing stdin still gets every one.
        flush_by = max(began + SHUTDOWN_S - EXIT_S, time.monotonic() + FLUSH_S)
        writer.close(timeout=flush_by - time.monotonic())


def run(
    services: Services,
    *,
    max_line: int = DEFAULT_MAX_LINE,
    proto_out: int | None = None,
    early: Early | None = None,
) -> int:
    """Serve on stdin and `proto_out` (the descriptor `protect_stdout()` returned: called here
    when not given), starting from `early` when the handshake was read before the loop."""
    if proto_out is None:
        proto_out = stdio.protect_stdout()
    out = proto_out
    _log.debug("serving", version=__version__, pid=os.getpid(), answered_early=bool(early and early.answered))
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(
            lambda: serve(
                services, stdin_fd=sys.stdin.fileno(), stdout_fd=out, max_line=max_line, early=early
            )
        )
    return 0
