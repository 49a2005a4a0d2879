"""`llm-sidecar` with no subcommand (or `--stdio`): read the configuration, set up logs, serve
JSON-RPC and MCP on stdin/stdout. This is what hosts spawn, so it imports no more than before, and
with no option at all (what hosts usually pass) it does not even build the argument parser.

A malformed `config.toml` stops the process at once with exit status 2 and a message naming the
file and the problem on stderr.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from sidecar import __version__, logs
from sidecar.config import ConfigError, env_url_problem, load
from sidecar.rpc.framing import DEFAULT_MAX_LINE

if TYPE_CHECKING:
    import argparse


def _epilog() -> str:
    from sidecar.cli import COMMANDS
    from sidecar.cli.help import ENVIRONMENT

    width = max(len(name) for name in COMMANDS)
    commands = "\n".join(f"  {name.ljust(width)}  {summary}" for name, (_, summary) in COMMANDS.items())
    return f"commands (llm-sidecar COMMAND --help for each):\n{commands}\n\n{ENVIRONMENT}"


def _parser() -> argparse.ArgumentParser:
    import argparse

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
        config, config_path = load(args.config)
        problem = env_url_problem()
        if problem:
            raise ConfigError(f"environment: {problem}")
    except ConfigError as exc:
        sys.stderr.write(f"llm-sidecar: configuration error: {exc}\n")
        return 2
    from sidecar.app import build_services
    from sidecar.process import run

    return run(build_services(config, config_path=config_path), max_line=args.max_line_bytes)


if __name__ == "__main__":
    sys.exit(main())
