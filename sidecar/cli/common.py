"""What every people-facing subcommand shares: its parser (with `--config`, `--log-level` and the
environment help), a `Session` that builds the services as `serve` does and calls the same
handlers the JSON-RPC methods run, and plain-text tables.

Must not know: providers, the keychain, how any method is implemented.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import anyio
import msgspec

from sidecar import logs
from sidecar.cli.help import ENVIRONMENT, paths_in_use
from sidecar.config import ConfigError, load
from sidecar.errors import SidecarError
from sidecar.wire.methods import METHODS

Notify = Callable[[str, Any], None]


class Command(Protocol):
    """A subcommand module."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def epilog() -> str:
    return f"{ENVIRONMENT}\n\n{paths_in_use()}"


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, help="config.toml to use (default: $SIDECAR_HOME/config.toml)")
    p.add_argument(
        "--log-level",
        choices=sorted(logs.LEVELS),
        default=None,
        help="log threshold for stderr (default: $SIDECAR_LOG_LEVEL or warning)",
    )
    return p


def add_subcommand(subparsers: Any, name: str, summary: str) -> argparse.ArgumentParser:
    """A sub-action (`keys set`) with the same options and help as its command."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=summary,
        description=summary[:1].upper() + summary[1:] + ".",
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="config.toml to use")
    p.add_argument(
        "--log-level", choices=sorted(logs.LEVELS), default=argparse.SUPPRESS, help="log threshold"
    )
    return p


def run_command(name: str, summary: str, module: ModuleType, argv: list[str]) -> int:
    command: Command = module
    p = parser(f"llm-sidecar {name}", summary[:1].upper() + summary[1:] + ".")
    command.add_arguments(p)
    args = p.parse_args(argv)
    try:
        return command.run(args)
    except ConfigError as exc:
        fail(f"configuration error: {exc}")
        return 2
    except SidecarError as exc:
        fail(exc.message)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `llm-sidecar models | head`: the reader has gone, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def fail(message: str) -> None:
    sys.stderr.write(f"llm-sidecar: {message}\n")


class _Context:
    def __init__(self, request_id: str, on_notify: Notify | None) -> None:
        self._id = request_id
        self._on_notify = on_notify

    @property
    def request_id(self) -> int | str:
        return self._id

    async def notify(self, method: str, params: Any) -> None:
        if self._on_notify is not None:
            self._on_notify(method, params)


class Session:
    """The services of one command run, built from the config exactly as `serve` builds them."""

    def __init__(self, args: argparse.Namespace) -> None:
        logs.configure(args.log_level or os.environ.get("SIDECAR_LOG_LEVEL", "warning"))
        config, config_path = load(args.config)
        from sidecar.app import build_services

        self.services = build_services(config, config_path=config_path)
        self._calls = 0

    async def call(
        self, method: str, params: dict[str, Any] | None = None, on_notify: Notify | None = None
    ) -> Any:
        """Run `method`'s handler (the JSON-RPC method's own) with `params` checked like the wire's."""
        try:
            decoded = msgspec.convert(params or {}, METHODS[method].params)
        except msgspec.ValidationError as exc:
            raise SidecarError("invalid_request", f"Invalid arguments: {exc}") from None
        self._calls += 1
        return await self.services.handlers[method](decoded, _Context(f"cli-{self._calls}", on_notify))


def run_session(args: argparse.Namespace, work: Callable[[Session], Awaitable[int]]) -> int:
    """Build the services, run `work` with their background tasks going, then close everything."""
    session = Session(args)

    async def main() -> int:
        status, failure = 1, None
        try:
            async with anyio.create_task_group() as tg:
                await session.services.start_background(tg)
                try:
                    status = await work(session)
                except Exception as exc:  # raised as itself below, not inside an exception group
                    failure = exc
                finally:
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await session.services.aclose()
        if failure is not None:
            raise failure
        return status

    return anyio.run(main)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table; numbers are right-aligned, `None` shows as `-`."""
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [all(_is_number(row[i]) or row[i] is None for row in rows) for i in range(len(headers))]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            (v.rjust(w) if num else v.ljust(w)) for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if value else "0"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def human_bytes(n: float | None) -> str:
    """Decimal units, as Ollama and disk vendors count: 2.0 GB is 2,000,000,000 bytes."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1000:
            return f"{size:.0f} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
