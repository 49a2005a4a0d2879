"""KeyringStore and KeyResolver against a real Secret Service (gnome-keyring on a private D-Bus bus).

Each test runs the store in a subprocess (tests.keychain.run_keystore) because keyring selects and
caches its backend from the process environment. Every probe also checks that the store left the
protocol line on stdin unread and that `keyring` was not imported with the module.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.keychain import PROBE_STDIN, REPO, ProbeResult, SecretService, run_keystore

pytestmark = pytest.mark.keychain

CANARY = "sk-canary-Zq7Wm2Xv9Lp4Rt6Yb1Nc"


def _probe(env: Mapping[str, str], ops: list[tuple[str | None, ...]], **kw: Any) -> ProbeResult:
    result = run_keystore(env, ops, **kw)
    assert result.stdin_left == PROBE_STDIN, "the store read stdin, which carries the protocol"
    assert not result.keyring_loaded_at_import
    return result


def _assert_no_canary(result: ProbeResult, canary: str = CANARY) -> None:
    for entry in result.results:
        if "error" in entry:
            assert canary not in json.dumps(entry["error"])
    assert canary not in result.stderr


def _secret_tool(
    env: Mapping[str, str], *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["secret-tool", *args],
        env=dict(env),
        input=input,
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


def test_set_get_delete(secret_service_env: dict[str, str]) -> None:
    r = _probe(
        secret_service_env,
        [
            ("describe",),
            ("get", "openai"),
            ("set", "openai", CANARY),
            ("get", "openai"),
            ("set", "openai", CANARY + "-v2"),  # replaces, does not add a second item
            ("get", "openai"),
            ("delete", "openai"),
            ("get", "openai"),
            ("delete", "openai"),
        ],
    )
    assert r.ok(0) == "keyring.backends.SecretService.Keyring"
    assert r.ok(1) is None
    assert r.ok(2) is None
    assert r.ok(3) == CANARY
    assert r.ok(5) == CANARY + "-v2"
    assert r.ok(6) is True
    assert r.ok(7) is None
    assert r.ok(8) is False, "deleting a missing entry is False, not an error"


def test_interoperates_with_secret_tool(secret_service_env: dict[str, str]) -> None:
    env = secret_service_env
    try:
        _probe(env, [("set", "openai", CANARY)])
        looked_up = _secret_tool(env, "lookup", "service", "llm-sidecar", "username", "openai")
        assert looked_up.returncode == 0, looked_up.stderr
        assert looked_up.stdout == CANARY

        stored = _secret_tool(
            env,
            "store",
            "--label=llm-sidecar",
            "service",
            "llm-sidecar",
            "username",
            "anthropic",
            input="sk-ant-from-secret-tool-0000",
        )
        assert stored.returncode == 0, stored.stderr
        r = _probe(env, [("get", "anthropic"), ("delete", "anthropic"), ("delete", "openai")])
        assert r.ok(0) == "sk-ant-from-secret-tool-0000"
        assert r.ok(1) is True and r.ok(2) is True
        gone = _secret_tool(env, "lookup", "service", "llm-sidecar", "username", "openai")
        assert gone.returncode != 0 and gone.stdout == ""
    finally:
        _secret_tool(env, "clear", "service", "llm-sidecar", "username", "openai")
        _secret_tool(env, "clear", "service", "llm-sidecar", "username", "anthropic")


def test_missing_key_commands_work_as_written(secret_service_env: dict[str, str]) -> None:
    """The commands the missing_key message suggests really configure the key."""
    env = secret_service_env
    try:
        r = _probe(env, [("resolve", "gemini", "GEMINI_API_KEY"), ("resolve", "xai", "XAI_API_KEY")])
        gemini, xai = r.error(0), r.error(1)
        assert gemini["kind"] == "missing_key" and gemini["provider"] == "gemini"
        commands = re.findall(r"`([^`]+)`", gemini["message"])
        secret_tool_cmd = next(c for c in commands if c.startswith("secret-tool "))
        stored = subprocess.run(
            secret_tool_cmd.split(), env=env, input="AIza-gemini-key-from-hint-0000000", text=True,
            capture_output=True, timeout=15, check=False,
        )  # fmt: skip
        assert stored.returncode == 0, stored.stderr

        keyring_cmd = next(c for c in re.findall(r"`([^`]+)`", xai["message"]) if c.startswith("keyring "))
        keyring_cli = shutil.which("keyring", path=str(REPO / ".venv" / "bin")) or "keyring"
        stored = subprocess.run(
            [keyring_cli, *keyring_cmd.split()[1:]], env=env, input="xai-key-from-hint-00000000000\n",
            text=True, capture_output=True, timeout=15, check=False,
        )  # fmt: skip
        assert stored.returncode == 0, stored.stderr

        r = _probe(
            env,
            [
                ("resolve", "gemini", "GEMINI_API_KEY"),
                ("resolve", "xai", "XAI_API_KEY"),
                ("describe_source", "xai", "XAI_API_KEY"),
            ],
        )
        assert r.ok(0) == {"value": "AIza-gemini-key-from-hint-0000000", "source": "keychain"}
        assert r.ok(1) == {"value": "xai-key-from-hint-00000000000", "source": "keychain"}
        assert r.ok(2) == [True, "keychain", "xai…0000"]

        # The environment still wins over the keychain.
        r = _probe(
            env, [("resolve", "xai", "XAI_API_KEY")], extra_env={"XAI_API_KEY": "xai-env-111111111111"}
        )
        assert r.ok(0) == {"value": "xai-env-111111111111", "source": "env"}
    finally:
        _probe(env, [("delete", "gemini"), ("delete", "xai")])


def test_no_plaintext_copy_is_written(secret_service: SecretService) -> None:
    env, home = secret_service.env, secret_service.home
    keyrings = home / "data" / "keyrings"
    before = {p: p.stat().st_mtime_ns for p in keyrings.glob("*.keyring")}
    try:
        _probe(env, [("set", "openai", CANARY)])
        after = {p: p.stat().st_mtime_ns for p in keyrings.glob("*.keyring")}
        assert any(after.get(p) != before.get(p) for p in after), "the keyring file should have been written"

        needles = [CANARY.encode(), base64.b64encode(CANARY.encode()), CANARY.encode("utf-16-le")]
        scanned = 0
        for path in Path(home).rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                scanned += 1
                for needle in needles:
                    assert needle not in data, f"the key appears unencrypted in {path}"
        assert scanned >= 2
    finally:
        _probe(env, [("delete", "openai")])


def _assert_all_unavailable(r: ProbeResult, indexes: range) -> list[dict[str, Any]]:
    errors = [r.error(i) for i in indexes]
    for err in errors:
        assert err["kind"] == "keychain_unavailable", err
    _assert_no_canary(r)
    return errors


ALL_OPS: list[tuple[str | None, ...]] = [
    ("get", "openai"),
    ("set", "openai", CANARY),
    ("delete", "openai"),
    ("resolve", "openai", "OPENAI_API_KEY"),
]


def test_no_secret_service_on_the_bus(no_secret_service_env: dict[str, str]) -> None:
    r = _probe(no_secret_service_env, [*ALL_OPS, ("describe",)])
    errors = _assert_all_unavailable(r, range(4))
    for err in errors:
        assert err["details"]["cause"] == "no_backend"
        assert "DBUS_SESSION_BUS_ADDRESS" in err["message"]
        assert "MCP clients" in err["message"]
    assert "OPENAI_API_KEY" in errors[3]["message"] and errors[3]["provider"] == "openai"
    assert r.ok(4) == "keyring.backends.fail.Keyring (unavailable: no_backend)"


def test_no_session_bus_at_all(no_secret_service_env: dict[str, str]) -> None:
    """What an MCP client that filters the environment produces."""
    r = _probe(no_secret_service_env, ALL_OPS, unset=["DBUS_SESSION_BUS_ADDRESS"])
    for err in _assert_all_unavailable(r, range(4)):
        assert "DBUS_SESSION_BUS_ADDRESS is not set" in err["message"]
        assert "server's env" in err["message"]


def test_env_var_works_without_a_keychain(no_secret_service_env: dict[str, str]) -> None:
    r = _probe(
        no_secret_service_env,
        [("resolve", "openai", "OPENAI_API_KEY"), ("describe_source", "openai", "OPENAI_API_KEY")],
        extra_env={"OPENAI_API_KEY": CANARY},
    )
    assert r.ok(0) == {"value": CANARY, "source": "env"}
    assert r.ok(1) == [True, "env", "sk-…b1Nc"]


def test_locked_keychain(locked_secret_service: SecretService) -> None:
    r = _probe(locked_secret_service.env, ALL_OPS)
    for err in _assert_all_unavailable(r, range(4)):
        assert err["details"]["cause"] == "locked"
        assert "Unlock the login keyring" in err["message"]
    # secret-tool agrees that it is locked: nothing can be read.
    seed = _secret_tool(
        locked_secret_service.env, "lookup", "service", "sidecar-test-seed", "username", "seed"
    )
    assert seed.stdout == ""


def test_keychain_that_needs_a_prompt(uninitialised_secret_service: SecretService) -> None:
    r = _probe(uninitialised_secret_service.env, ALL_OPS)
    for err in _assert_all_unavailable(r, range(4)):
        assert err["details"]["cause"] == "prompt_dismissed"
        assert "Prompt dismissed" in err["message"]
        assert "desktop session" in err["message"]


def test_null_backend_selected_explicitly(secret_service_env: dict[str, str]) -> None:
    r = _probe(
        secret_service_env,
        [("set", "openai", CANARY), ("get", "openai"), ("delete", "openai"), ("describe",)],
        extra_env={"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"},
    )
    err = r.error(0)
    assert err["kind"] == "keychain_unavailable" and err["details"]["cause"] == "stores_nothing"
    assert "PYTHON_KEYRING_BACKEND" in err["message"]
    assert r.ok(1) is None and r.ok(2) is False
    assert r.ok(3) == "keyring.backends.null.Keyring"
    _assert_no_canary(r)


def test_unloadable_backend_setting(secret_service_env: dict[str, str]) -> None:
    r = _probe(
        secret_service_env,
        [("get", "openai"), ("set", "openai", CANARY)],
        extra_env={"PYTHON_KEYRING_BACKEND": "no.such.Backend"},
    )
    for err in _assert_all_unavailable(r, range(2)):
        assert err["details"]["cause"] == "bad_backend_setting"
        assert "PYTHON_KEYRING_BACKEND=no.such.Backend could not be loaded" in err["message"]


def test_explicit_secret_service_backend(secret_service_env: dict[str, str]) -> None:
    r = _probe(
        secret_service_env,
        [("set", "openrouter", CANARY), ("get", "openrouter"), ("delete", "openrouter")],
        extra_env={"PYTHON_KEYRING_BACKEND": "keyring.backends.SecretService.Keyring"},
    )
    assert r.ok(1) == CANARY and r.ok(2) is True
