"""`llm-sidecar keys set|list|delete|validate`: the `set_key`, `list_keys`, `delete_key` and
`validate_key` methods for a person at a terminal.

A key is read from a hidden prompt, or from stdin when stdin is not a terminal (or with
`--stdin`), never from the command line, where it would land in shell history and `ps`.

Must not know: the keychain, providers.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from sidecar.cli.common import Session, add_subcommand, fail, run_session, table
from sidecar.errors import SidecarError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = add_subcommand(sub, "set", "store a provider's key in the OS keychain (validated first)")
    p.add_argument(
        "provider", help="provider id (openai, anthropic, gemini, xai, openrouter) or endpoint name"
    )
    p.add_argument("--no-validate", action="store_true", help="store without the upstream check")
    p.add_argument(
        "--stdin",
        action="store_true",
        help="read the key from stdin (the default when stdin is not a terminal)",
    )
    add_subcommand(sub, "list", "which providers have a key, from where, masked")
    p = add_subcommand(sub, "delete", "remove a provider's key from the OS keychain")
    p.add_argument("provider")
    p = add_subcommand(sub, "validate", "check the configured key with a cheap authenticated call")
    p.add_argument("provider")


def read_key(provider: str, from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        key = sys.stdin.readline().strip()
    else:
        key = getpass.getpass(f"API key for {provider} (input hidden): ").strip()
    if not key:
        raise SidecarError("invalid_request", "No key given: type or pipe the key, then press Enter.")
    return key


def run(args: argparse.Namespace) -> int:
    if args.action == "set":
        key = read_key(args.provider, args.stdin)
        return run_session(args, lambda s: _set(s, args.provider, key, not args.no_validate))
    if args.action == "list":
        return run_session(args, _list)
    if args.action == "delete":
        return run_session(args, lambda s: _delete(s, args.provider))
    return run_session(args, lambda s: _validate(s, args.provider))


async def _set(session: Session, provider: str, key: str, validate: bool) -> int:
    result = await session.call("set_key", {"provider": provider, "api_key": key, "validate": validate})
    checked = "validated" if result.validated else "not validated"
    print(f"Stored the {result.provider} key {result.masked} in the keychain ({checked}).")
    if result.overridden_by_env:
        print(f"Note: {result.overridden_by_env} is set here and wins over the keychain.")
    return 0


async def _list(session: Session) -> int:
    result = await session.call("list_keys")
    rows = [
        (k.provider, k.configured, k.source, k.masked, k.env_var, k.error.message if k.error else None)
        for k in result.keys
    ]
    print(table(("provider", "configured", "source", "key", "env var", "problem"), rows))
    return 0


async def _delete(session: Session, provider: str) -> int:
    result = await session.call("delete_key", {"provider": provider})
    print(
        f"Deleted the {result.provider} key." if result.deleted else f"No {result.provider} key was stored."
    )
    return 0


async def _validate(session: Session, provider: str) -> int:
    result = await session.call("validate_key", {"provider": provider})
    if result.valid:
        print(f"The {result.provider} key is valid.")
        return 0
    fail(f"the {result.provider} key is not valid: {result.error.message if result.error else 'unknown'}")
    return 1
