"""`llm-sidecar doctor`: is everything the sidecar needs in place here? One line per check.

Python; the keychain's backend and whether it can be read (unlocked); the D-Bus variables the
Linux keychain needs; the state directory and config file; the upstream proxy; Ollama; each
configured provider's key, present and valid (checked upstream, as `validate_key` does); the HTTP
gateway's port. The checks go through the same handlers as the JSON-RPC methods (`info`,
`list_keys`, `validate_key`, `ollama_status`). Exit status 1 when a check fails (warnings do not
count).

Must not know: providers, how keys are stored.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from sidecar.cli.common import Session, run_session
from sidecar.config import Http
from sidecar.core.proxy import Proxies, ProxyProblem
from sidecar.errors import SidecarError
from sidecar.wire.catalog import InfoResult

GATEWAY_PORT: Final = 3625
Status = Literal["ok", "warn", "FAIL", "-"]


@dataclass(frozen=True, slots=True)
class Check:
    status: Status
    what: str
    detail: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--offline",
        action="store_true",
        help="do not validate keys upstream (only check that they are present)",
    )


def run(args: argparse.Namespace) -> int:
    return run_session(args, lambda s: _doctor(s, offline=args.offline))


async def _doctor(session: Session, *, offline: bool) -> int:
    checks: list[Check] = [python_check()]
    checks += paths_checks(await session.call("info"))
    checks += dbus_checks(dict(os.environ), sys.platform)
    checks.append(proxy_check(session.services.config.http, dict(os.environ)))
    checks += await keychain_checks(session, offline=offline)
    checks.append(await ollama_check(session))
    checks.append(port_check(GATEWAY_PORT))
    for check in checks:
        print(f"{check.status:<5} {check.what}: {check.detail}")
    failed = sum(c.status == "FAIL" for c in checks)
    print(f"\n{failed} problem(s) found." if failed else "\nNo problems found.")
    return 1 if failed else 0


def python_check() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    where = "this executable" if getattr(sys, "frozen", False) else sys.executable
    ok = sys.version_info >= (3, 11)
    return Check("ok" if ok else "FAIL", "Python", f"{version} ({where})" + ("" if ok else "; 3.11+ needed"))


def paths_checks(info: InfoResult) -> list[Check]:
    home, config = Path(info.state_dir or "."), Path(info.config_path or "config.toml")
    if home.is_dir():
        writable = os.access(home, os.W_OK)
        detail = f"{home}" + ("" if writable else " is not writable")
        state = Check("ok" if writable else "FAIL", "state directory", detail)
    else:
        state = Check("ok", "state directory", f"{home} (created on first use)")
    where = f"{config}" if config.is_file() else f"{config} (absent: defaults in use)"
    return [state, Check("ok", "config file", where), Check("-", "log level", info.log_level or "info")]


def proxy_check(http: Http, env: dict[str, str]) -> Check:
    """The proxy a cloud provider is reached through (never its credentials)."""
    try:
        proxy = Proxies(http.proxy, http.no_proxy, env).for_url("https://provider.invalid/")
    except ProxyProblem as exc:
        return Check("FAIL", "proxy", str(exc))
    return Check("-", "proxy", proxy.shown if proxy else "none: providers are reached directly")


def dbus_checks(env: dict[str, str], platform: str) -> list[Check]:
    if not platform.startswith("linux"):
        return []
    checks = []
    for name in ("DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR"):
        value = env.get(name)
        if value:
            checks.append(Check("ok", name, value))
        else:
            checks.append(
                Check(
                    "warn",
                    name,
                    "not set: the Secret Service (keychain) cannot be reached; MCP clients drop it, "
                    "pass it in the client's `env`",
                )
            )
    return checks


async def keychain_checks(session: Session, *, offline: bool) -> list[Check]:
    backend = await session.services.keys.store.describe()
    keys = (await session.call("list_keys")).keys
    problems = [k.error.message for k in keys if k.error is not None]
    checks = [
        Check(
            "FAIL" if problems else "ok",
            "keychain",
            backend + (f"; {problems[0]}" if problems else "; readable"),
        )
    ]
    for key in keys:
        what = f"key {key.provider}"
        if key.error is not None:
            continue  # said above
        if not key.configured:
            checks.append(
                Check("-", what, f"not set (llm-sidecar keys set {key.provider}, or {key.env_var})")
            )
            continue
        where = f"{key.masked} from {key.source}"
        if offline:
            checks.append(Check("ok", what, f"{where} (not validated: --offline)"))
            continue
        try:
            result = await session.call("validate_key", {"provider": key.provider})
        except SidecarError as exc:
            checks.append(Check("warn", what, f"{where}; could not be checked: {exc.message}"))
            continue
        if result.valid:
            checks.append(Check("ok", what, f"{where}, valid"))
        else:
            reason = result.error.message if result.error else "rejected"
            checks.append(Check("FAIL", what, f"{where}, not valid: {reason}"))
    return checks


async def ollama_check(session: Session) -> Check:
    status = await session.call("ollama_status")
    if status.running:
        return Check("ok", "Ollama", f"{status.version or 'running'} at {status.base_url}")
    return Check("warn", "Ollama", status.hint or f"not reachable at {status.base_url}")


def port_check(port: int) -> Check:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return Check(
                "warn", "gateway port", f"{port} is in use (a gateway already running, or another program)"
            )
    return Check("ok", "gateway port", f"{port} is free")
