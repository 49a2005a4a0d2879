"""`llm-sidecar` with no subcommand (or `--stdio`): read the configuration, set up logs, serve
JSON-RPC and MCP on stdin/stdout. This is what hosts spawn, so it imports no more than before, and
with no option at all (what hosts usually pass) it does not even build the argument parser. An
`info` already waiting on stdin is answered before the event loop is imported (`sidecar.rpc.early`).

A malformed `config.toml` stops the process at once with exit status 2 and a message naming the
file and the problem on stderr.
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace
from typing import TYPE_CHECKING

from sidecar import __version__, logs
from sidecar.config import ConfigError, env_url_problem, read
from sidecar.paths import config_file
from sidecar.rpc.early import protect_stdout
from sidecar.rpc.framing import DEFAULT_MAX_LINE

if TYPE_CHECKING:
    import argparse

    from sidecar.rpc.early import Early


def _epilog() -> str:
    from sidecar.cli import COMMANDS
    from sidecar.cli.help import ENVIRONMENT

    width = max(len(name) for name in COMMANDS)
    commands = "\n".join(f"  {name.ljust(width)}  {summary}" for name, (_, summary) in COMMANDS.items())
    return f"commands (llm-sidecar COMMAND --help for each):\n{commands}\n\n{ENVIRONMENT}"


def _parser() -> argparse.ArgumentParser:
    import argparse
    from pathlib import Path

    p = argparse.ArgumentParser(
        prog="llm-sidecar",
        usage="llm-sidecar [--stdio] [options] | llm-sidecar COMMAND ...",
        description="Serve JSON-RPC 2.0 (and MCP) on stdin/stdout, one message per line. Logs go to stderr.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--stdio", action="store_true", help="serve on stdin/stdout (the default)")
    p.add_argument("--config", type=Path, help="config.toml to use (default: $SIDECAR_HOME/config.toml)")
    p.add_argument(
        "--log-level",
        choices=sorted(logs.LEVELS),
        default=None,
        help="log threshold (default: $SIDECAR_LOG_LEVEL or info)",
    )
    p.add_argument("--max-line-bytes", type=int, default=DEFAULT_MAX_LINE, help="longest accepted message")
    p.add_argument("--version", action="version", version=f"llm-sidecar {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv in ([], ["--stdio"]):  # the defaults, without argparse (and gettext) to import
        args: argparse.Namespace | SimpleNamespace = SimpleNamespace(
            config=None, log_level=None, max_line_bytes=DEFAULT_MAX_LINE
        )
    else:
        args = _parser().parse_args(argv)
    logs.configure(args.log_level or os.environ.get("SIDECAR_LOG_LEVEL", "info"))
    try:
        # The path as text: pathlib (with urllib.parse and ipaddress) loads after the early answer.
        config_path = config_file(args.config)
        config = read(config_path)
        problem = env_url_problem()
        if problem:
            raise ConfigError(f"environment: {problem}")
    except ConfigError as exc:
        sys.stderr.write(f"llm-sidecar: configuration error: {exc}\n")
        return 2
    proto_out = protect_stdout()
    early = _answer_waiting_info(config_path, args.max_line_bytes, proto_out)
    from sidecar.app import build_services
    from sidecar.process import run

    services = build_services(config, config_path=config_path)
    return run(services, max_line=args.max_line_bytes, proto_out=proto_out, early=early)


def _answer_waiting_info(config_path: str, max_line: int, proto_out: int) -> Early | None:
    """Answer the `info` requests already on stdin, before asyncio and anyio are imported (see
    `sidecar.rpc.early`): the answer the loop would give, from the same service and encoder."""
    import msgspec

    from sidecar.rpc import early, envelope
    from sidecar.services.about import AboutService
    from sidecar.wire.methods import METHODS, wire_type

    about = AboutService(os.environ, config_path)  # what `Services.about` builds, from the same inputs
    decoder = msgspec.json.Decoder(wire_type(METHODS["info"].params_at))

    def accepts(params: msgspec.Raw | None) -> bool:
        # The dispatcher's own test: no params reads as `{}`; what fails is the loop's to answer.
        try:
            decoder.decode(params if params is not None else b"{}")
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            return False
        return True

    return early.answer_waiting(
        sys.stdin.fileno(),
        proto_out,
        max_line=max_line,
        method="info",
        accepts=accepts,
        answer=lambda rid: envelope.encode_result(rid, about.describe()),
    )


if __name__ == "__main__":
    sys.exit(main())
