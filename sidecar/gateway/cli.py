"""`llm-sidecar gateway [--host] [--port]`: the gateway alone, without a host on stdin/stdout,
for people with no desktop app and for servers. Logs go to stderr; SIGTERM or Ctrl-C stop it.

In team mode (a PostgreSQL `[storage] url` or a `[coordination] url`) it connects to both, applies
migrations and loads the shared prices before it binds, and exits 2 with a message naming what it
could not reach (host and port, never a password); its stderr is JSON lines only.

Must not know: providers, the stdio protocol.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from sidecar import logs
from sidecar.config import Config, ConfigError, load


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llm-sidecar gateway",
        description="Serve the OpenAI- and Anthropic-compatible HTTP gateway only. Logs go to stderr.",
    )
    p.add_argument("--host", help="address to listen on (default: [gateway] host, else 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: [gateway] port, else 3625; 0 picks a free one)")
    p.add_argument("--config", type=Path, help="config.toml to use (default: $SIDECAR_HOME/config.toml)")
    p.add_argument("--log-level", choices=sorted(logs.LEVELS), default=None)
    return p


class _Caller:
    request_id = "cli"

    async def notify(self, method: str, params: Any) -> None:
        return None


def main(argv: list[str] | None, build_services: Callable[[Config], Any]) -> int:
    """`build_services` comes from the process entry (`sidecar.cli`): a face never imports the app."""
    args = _parser().parse_args(argv)
    logs.configure(args.log_level or os.environ.get("SIDECAR_LOG_LEVEL", "info"))
    try:
        config, _ = load(args.config)
    except ConfigError as exc:
        sys.stderr.write(f"llm-sidecar: configuration error: {exc}\n")
        return 2
    from sidecar.errors import SidecarError
    from sidecar.wire.gateway import GatewayStartParams

    services = build_services(config)
    status = 0

    async def serve() -> None:
        nonlocal status
        if services.team:
            # A replica that cannot reach its database or Redis must not bind (and so never takes
            # traffic from the load balancer): say which, and exit non-zero.
            try:
                await services.open_storage()
            except SidecarError as exc:
                sys.stderr.write(f"llm-sidecar gateway: cannot start: {exc.message}\n")
                status = 2
                with anyio.CancelScope(shield=True):
                    await services.aclose()
                return
        async with anyio.create_task_group() as tg:
            await services.start_background(tg)
            try:
                started = await services.handlers["gateway_start"](
                    GatewayStartParams(host=args.host, port=args.port), _Caller()
                )
            except SidecarError as exc:
                sys.stderr.write(f"llm-sidecar gateway: {exc.message}\n")
                status = 1
                tg.cancel_scope.cancel()
                return
            if not services.team:  # a team gateway's stderr is JSON lines only ("gateway listening")
                sys.stderr.write(f"llm-sidecar gateway listening on {getattr(started, 'url', '?')}\n")
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    break
            await services.stop_gateway()
            tg.cancel_scope.cancel()
        with anyio.CancelScope(shield=True):
            await services.aclose()

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve)
    return status
