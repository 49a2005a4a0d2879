"""The `llm-sidecar` command.

With no subcommand (or with `--stdio` and the other serving options) it serves JSON-RPC 2.0 and
MCP on stdin/stdout, as hosts spawn it (`serve`). A subcommand is a tool for people (`keys`,
`usage`, `models`, `recommend`, `pull`, `doctor`): each calls the very handlers the JSON-RPC
methods run, through `common.Session`.

`COMMANDS` is the whole registry: a new subcommand is one row here and one module. The module
either has `add_arguments(parser)` and `run(args) -> int` (it then gets the shared `--config`,
`--log-level` and environment help), or `main(argv) -> int` when it parses its own arguments
(a server such as the HTTP gateway). A subcommand's module is imported only when it runs, so
serving (what a host pays for at every start) imports nothing more than it did.

Must not know: providers, the keychain, how methods are implemented.
"""

from __future__ import annotations

import importlib
import sys
from typing import Final

# name -> (module, one line for --help). Order is the order `--help` shows.
COMMANDS: Final[dict[str, tuple[str, str]]] = {
    "keys": ("sidecar.cli.keys", "store, list, delete or validate a provider's API key in the OS keychain"),
    "usage": ("sidecar.cli.usage", "requests, tokens and cost from the usage ledger, as a table"),
    "models": ("sidecar.cli.models", "the known models with context window and prices"),
    "recommend": ("sidecar.cli.recommend", "local (Ollama) models that fit this machine"),
    "pull": ("sidecar.cli.pull", "download a model into Ollama, with a progress bar"),
    "doctor": ("sidecar.cli.doctor", "check Python, the keychain, D-Bus, paths, Ollama, keys and ports"),
    "gateway": ("sidecar.cli.gateway", "serve the OpenAI- and Anthropic-compatible HTTP gateway alone"),
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in COMMANDS:
        name = args[0]
        module_name, summary = COMMANDS[name]
        module = importlib.import_module(module_name)
        own_main = getattr(module, "main", None)
        if callable(own_main):
            status: int = own_main(args[1:])
            return status
        from sidecar.cli.common import run_command

        return run_command(name, summary, module, args[1:])
    from sidecar.cli.serve import main as serve

    return serve(args)
