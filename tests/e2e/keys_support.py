"""Helpers shared by the key and login end-to-end tests: spawning `llm-sidecar` against a real
Secret Service, looking into that keychain with `secret-tool`, and reading the audit table.

The harness sets `PYTHON_KEYRING_BACKEND` to keyring's null backend by default; here it is
overridden with the Secret Service backend explicitly (keyring honours the variable, and the
sidecar treats an explicit choice like the detected one), so keys really go to gnome-keyring on the
private bus of `secret_service_env`.
"""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.harness import Sidecar

SERVICE = "llm-sidecar"
SECRET_SERVICE_BACKEND = "keyring.backends.SecretService.Keyring"


def keychain_sidecar(
    keychain_env: Mapping[str, str],
    env: Mapping[str, str] | None = None,
    *,
    backend: str = SECRET_SERVICE_BACKEND,
    **kw: Any,
) -> Sidecar:
    return Sidecar({**keychain_env, "PYTHON_KEYRING_BACKEND": backend, **(env or {})}, **kw)


def lookup(keychain_env: Mapping[str, str], account: str) -> str | None:
    r = subprocess.run(
        ["secret-tool", "lookup", "service", SERVICE, "username", account],
        env=dict(keychain_env),
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return r.stdout if r.returncode == 0 and r.stdout else None


def store(keychain_env: Mapping[str, str], account: str, secret: str) -> None:
    subprocess.run(
        ["secret-tool", "store", f"--label={SERVICE}", "service", SERVICE, "username", account],
        env=dict(keychain_env),
        input=secret,
        capture_output=True,
        text=True,
        timeout=15,
        check=True,
    )


def clear(keychain_env: Mapping[str, str], *accounts: str) -> None:
    for account in accounts:
        subprocess.run(
            ["secret-tool", "clear", "service", SERVICE, "username", account],
            env=dict(keychain_env),
            capture_output=True,
            timeout=15,
            check=False,
            stdin=subprocess.DEVNULL,
        )


def finish(sc: Sidecar) -> None:
    """End the sidecar as a host does (stdin EOF) and wait for it, keeping its home to inspect."""
    sc.close_stdin()
    assert sc.wait_exit(10) == 0


def audit_rows(home: Path) -> list[tuple[str, str | None, str, str | None]]:
    """(event, provider, outcome, detail) of every audit row, oldest first."""
    with sqlite3.connect(home / "sidecar.db") as conn:
        return [
            (r[0], r[1], r[2], r[3])
            for r in conn.execute("SELECT event, provider, outcome, detail FROM audit ORDER BY id")
        ]


def error_of(answer: dict[str, Any]) -> dict[str, Any]:
    assert "error" in answer, f"expected an error, got {answer}"
    data: dict[str, Any] = answer["error"]["data"]
    return data
