"""`llm-sidecar` subcommands for people, run as a person runs them (a subprocess), against the
real Secret Service (keys), a ledger filled by a real serving sidecar (usage), the fake Ollama
(pull, doctor) and the fake OpenAI (key validation). Each subcommand goes through the same
handlers as the JSON-RPC methods, so these check the wiring and the presentation."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.e2e.keys_support import SECRET_SERVICE_BACKEND, clear, lookup
from tests.fakes.ollama import FakeOllama
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.harness import SIDECAR, Sidecar

KEY = "sk-test-valid"
WRONG = "sk-proj-thisKeyIsWrong0123456789abcd"
NULL_KEYRING = "keyring.backends.null.Keyring"


def cli(
    *args: str, env: Mapping[str, str], stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    return subprocess.run(
        [SIDECAR, *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**base, **env},
    )


@pytest.fixture(scope="module")
def openai() -> Iterator[FakeOpenAICompat]:
    with FakeOpenAICompat("openai") as fake:
        yield fake


@pytest.fixture(scope="module")
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


@pytest.fixture
def kc(
    secret_service_env: dict[str, str], openai: FakeOpenAICompat, tmp_path: Path
) -> Iterator[dict[str, str]]:
    env = {
        **secret_service_env,
        "PYTHON_KEYRING_BACKEND": SECRET_SERVICE_BACKEND,
        "OPENAI_BASE_URL": openai.api_base,
        "SIDECAR_HOME": str(tmp_path),
    }
    clear(env, "openai")
    yield env
    clear(env, "openai")


@pytest.mark.keychain
def test_keys_set_list_validate_delete_through_the_keychain(kc: dict[str, str]) -> None:
    stored = cli("keys", "set", "openai", env=kc, stdin=KEY + "\n")
    assert stored.returncode == 0, stored.stderr
    assert "validated" in stored.stdout and KEY not in stored.stdout + stored.stderr
    assert lookup(kc, "openai") == KEY

    listed = cli("keys", "list", env=kc)
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if line.startswith("openai ")]
    assert "keychain" in row and "yes" in row and KEY not in listed.stdout
    assert "…" in row  # the masked form

    valid = cli("keys", "validate", "openai", env=kc)
    assert valid.returncode == 0 and "valid" in valid.stdout

    deleted = cli("keys", "delete", "openai", env=kc)
    assert deleted.returncode == 0 and "Deleted" in deleted.stdout
    assert lookup(kc, "openai") is None
    again = cli("keys", "validate", "openai", env=kc)
    assert again.returncode == 1 and "not valid" in again.stderr


@pytest.mark.keychain
def test_keys_set_refuses_a_wrong_key_and_stores_nothing(kc: dict[str, str]) -> None:
    refused = cli("keys", "set", "openai", env=kc, stdin=WRONG + "\n")
    assert refused.returncode == 1
    assert "llm-sidecar:" in refused.stderr and WRONG not in refused.stderr + refused.stdout
    assert lookup(kc, "openai") is None


def test_keys_set_takes_no_key_on_the_command_line(tmp_path: Path) -> None:
    env = {"SIDECAR_HOME": str(tmp_path), "PYTHON_KEYRING_BACKEND": NULL_KEYRING}
    proc = cli("keys", "set", "openai", KEY, env=env)
    assert proc.returncode == 2 and "unrecognized arguments" in proc.stderr
    empty = cli("keys", "set", "openai", env=env, stdin="\n")
    assert empty.returncode == 1 and "No key given" in empty.stderr


def test_usage_shows_the_ledger_by_model_and_provider(openai: FakeOpenAICompat, tmp_path: Path) -> None:
    env = {"OPENAI_BASE_URL": openai.api_base, "OPENAI_API_KEY": KEY}
    with Sidecar(env, home=tmp_path) as sc:
        for text in ("one", "two", "three"):
            sc.result(
                "complete", {"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
            )
        sc.result("complete", {"model": "openai:gpt-4o", "messages": [{"role": "user", "content": "four"}]})
        sc.close_stdin()
        assert sc.wait_exit(5) == 0  # the ledger is committed at exit
    home = {"SIDECAR_HOME": str(tmp_path), "PYTHON_KEYRING_BACKEND": NULL_KEYRING}
    by_model = cli("usage", "--by", "model", env=home)
    assert by_model.returncode == 0, by_model.stderr
    rows = {
        line.split()[0]: line.split()
        for line in by_model.stdout.splitlines()
        if line.startswith(("openai", "total"))
    }
    assert rows["openai:gpt-4o-mini"][1] == "3" and rows["openai:gpt-4o"][1] == "1"
    assert rows["total"][1] == "4"
    by_provider = cli("usage", "--by", "provider", env=home)
    assert [line.split()[1] for line in by_provider.stdout.splitlines() if line.startswith("openai")] == ["4"]
    bad = cli("usage", "--by", "weather", env=home)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_models_lists_one_providers_models(tmp_path: Path) -> None:
    proc = cli("models", "--provider", "anthropic", env={"SIDECAR_HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    models = [
        line.split()[0] for line in proc.stdout.splitlines()[2:] if line.strip() and ":" in line.split()[0]
    ]
    assert models and all(m.startswith("anthropic:") for m in models)
    unknown = cli("models", "--provider", "nobody", env={"SIDECAR_HOME": str(tmp_path)})
    assert unknown.returncode == 1 and "nobody" in unknown.stderr


def test_recommend_and_pull_against_ollama(ollama: FakeOllama, tmp_path: Path) -> None:
    env = {"SIDECAR_HOME": str(tmp_path), "OLLAMA_HOST": ollama.url, "PYTHON_KEYRING_BACKEND": NULL_KEYRING}
    rec = cli("recommend", env=env)
    assert rec.returncode == 0, rec.stderr
    assert "tier" in rec.stdout and "ollama:" in rec.stdout
    before = len(ollama.pull_lines_sent)
    pulled = cli("pull", "tinyllama", env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert "Pulled tinyllama" in pulled.stdout
    assert len(ollama.pull_lines_sent) > before
    progress = pulled.stderr.splitlines()
    assert progress and progress[-1].startswith("[" + "#" * 30 + "]") and "100%" in progress[-1]
    assert any("pulling" in line for line in progress)
    missing = cli("pull", "no-such-model:3b", env=env)
    assert missing.returncode == 1 and "no model named" in missing.stderr


@pytest.mark.keychain
def test_doctor_reports_each_check_and_fails_on_a_bad_key(
    kc: dict[str, str], ollama: FakeOllama, openai: FakeOpenAICompat
) -> None:
    env = {**kc, "OLLAMA_HOST": ollama.url, "XDG_RUNTIME_DIR": kc.get("XDG_RUNTIME_DIR", "/tmp")}
    assert cli("keys", "set", "openai", env=env, stdin=KEY + "\n").returncode == 0
    healthy = cli("doctor", env=env)
    lines = healthy.stdout.splitlines()
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr

    def line(what: str) -> str:
        return next(x for x in lines if x[6:].startswith(what + ":"))

    assert line("Python").startswith("ok")
    assert line("keychain").startswith("ok") and "SecretService" in line("keychain")
    assert line("DBUS_SESSION_BUS_ADDRESS").startswith("ok")
    assert line("state directory").startswith("ok") and env["SIDECAR_HOME"] in line("state directory")
    assert line("key openai").startswith("ok") and "valid" in line("key openai") and KEY not in healthy.stdout
    assert line("Ollama").startswith("ok") and ollama.url in line("Ollama")
    assert line("gateway port").split()[0] in ("ok", "warn")

    openai.valid_keys.discard(KEY)  # the key is revoked upstream
    try:
        sick = cli("doctor", env=env)
    finally:
        openai.valid_keys.add(KEY)
    assert sick.returncode == 1
    assert next(x for x in sick.stdout.splitlines() if "key openai" in x).startswith("FAIL")


def test_doctor_without_dbus_warns_and_says_what_to_pass(tmp_path: Path) -> None:
    env = {"SIDECAR_HOME": str(tmp_path), "OLLAMA_HOST": "http://127.0.0.1:9"}
    proc = cli("doctor", "--offline", env=env)
    assert "warn  DBUS_SESSION_BUS_ADDRESS: not set" in proc.stdout
    assert "warn  Ollama" in proc.stdout


@pytest.mark.parametrize("command", ["keys", "usage", "models", "recommend", "pull", "doctor"])
def test_each_command_help_names_the_environment_and_paths(command: str, tmp_path: Path) -> None:
    proc = cli(command, "--help", env={"SIDECAR_HOME": str(tmp_path)})
    assert proc.returncode == 0
    assert "SIDECAR_HOME" in proc.stdout and "OPENAI_API_KEY" in proc.stdout
    assert f"state directory           {tmp_path}" in proc.stdout
    assert "config.toml" in proc.stdout


def test_top_level_help_lists_the_commands() -> None:
    proc = cli("--help", env={})
    assert proc.returncode == 0
    for command in ("keys", "usage", "models", "recommend", "pull", "doctor"):
        assert f"\n  {command} " in proc.stdout
