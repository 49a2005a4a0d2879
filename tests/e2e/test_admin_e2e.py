"""Providers switched on and off, base URLs checked at load, one precedence (config.toml over the
environment), endpoints set at run time, and config.toml reloaded on change: all through the
spawned sidecar against the fake OpenAI upstream."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.openai_compat import FakeOpenAICompat
from tests.harness import Sidecar

KEY = "sk-test-valid"
HI = [{"role": "user", "content": "hi"}]


def ask(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": HI, **extra}


def providers(sc: Sidecar) -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in sc.result("list_providers")["providers"]}


def test_disabled_provider_is_refused_skipped_by_fallback_and_switchable(
    openai: FakeOpenAICompat, tmp_path: Path
) -> None:
    env = {"OPENAI_BASE_URL": openai.api_base, "OPENAI_API_KEY": KEY}
    config = "[providers.openai]\nenabled = false\n"
    with Sidecar(env, home=tmp_path, config=config) as sc:
        error = sc.call("complete", ask("openai:gpt-4o-mini"))["error"]["data"]
        assert error["kind"] == "provider_disabled" and "set_provider_enabled" in error["message"]
        assert openai.requests == []
        answer = sc.result("complete", ask("openai:gpt-4o-mini", fallback=["stub:echo"]))
        assert answer["provider"] == "stub"
        assert answer["attempts"][0] == {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "ok": False,
            "error": "provider_disabled",
            "message": answer["attempts"][0]["message"],
        }
        listed = providers(sc)["openai"]
        assert listed["enabled"] is False and listed["key_configured"] is True
        assert listed["display_name"] == "OpenAI" and "tools" in listed["capabilities"]
        switched = sc.result("set_provider_enabled", {"provider": "openai", "enabled": True})
        assert switched == {"provider": "openai", "enabled": True, "previous": False}
        assert sc.result("complete", ask("openai:gpt-4o-mini"))["provider"] == "openai"
        sc.result("set_provider_enabled", {"provider": "anthropic", "enabled": False})
    # Kept in the state directory, not in config.toml, and it beats the file after a restart.
    assert (tmp_path / "config.toml").read_text() == config
    assert json.loads((tmp_path / "runtime.json").read_text())["enabled"] == {
        "openai": True,
        "anthropic": False,
    }
    with Sidecar(env, home=tmp_path) as sc:
        listed = providers(sc)
        # Defaults are left out of results (as everywhere in the contract): enabled means true.
        assert listed["openai"].get("enabled", True) is True and listed["anthropic"]["enabled"] is False
        assert listed["anthropic"]["key_configured"] is False
        assert sc.call("complete", ask("anthropic:claude-haiku-4-5"))["error"]["data"]["kind"] == (
            "provider_disabled"
        )
        audit = sc.call("set_provider_enabled", {"provider": "nope", "enabled": False})["error"]["data"]
        assert audit["kind"] == "unsupported_provider"


@pytest.mark.parametrize(
    ("config", "env", "says"),
    [
        ('[providers.openai]\nbase_url = "http://api.example.com/v1"\n', {}, "allow_insecure"),
        ('[providers.openai]\nbase_url = "https://user:pw@api.example.com/v1"\n', {}, "credentials"),
        ('[endpoints.lab]\nbase_url = "ftp://lab.example.com"\n', {}, "https://"),
        ('[endpoints.lab]\nbase_url = "https:///v1"\n', {}, "no host"),
        ("", {"OPENAI_BASE_URL": "http://10.0.0.8/v1"}, "OPENAI_BASE_URL"),
    ],
)
def test_bad_base_urls_stop_the_sidecar_at_start(config: str, env: dict[str, str], says: str) -> None:
    sc = Sidecar(env, config=config)
    try:
        assert sc.wait_exit(10) == 2
        assert "configuration error" in sc.stderr_text and says in sc.stderr_text
        assert sc.bad_lines == [] and sc.all_messages == []
    finally:
        sc.stop()


def test_insecure_is_allowed_when_asked_and_loopback_always() -> None:
    config = (
        '[providers.openai]\nbase_url = "http://llm.lan:8080/v1"\nallow_insecure = true\n'
        '[endpoints.local]\nbase_url = "http://localhost:1234/v1"\nmodels = ["m"]\n'
        '[endpoints.lan]\nbase_url = "http://192.168.1.20:8000/v1"\nneeds_key = false\n'
    )
    with Sidecar(config=config) as sc:
        listed = providers(sc)
        assert listed["openai"]["base_url"] == "http://llm.lan:8080/v1"
        assert {"local", "lan"} <= set(listed)


def test_config_file_beats_the_environment(tmp_path: Path) -> None:
    with FakeOpenAICompat("openai") as in_file, FakeOpenAICompat("openai") as in_env:
        config = f'[providers.openai]\nbase_url = "{in_file.api_base}"\n'
        env = {"OPENAI_BASE_URL": in_env.api_base, "OPENAI_API_KEY": KEY}
        with Sidecar(env, config=config) as sc:
            sc.result("complete", ask("openai:gpt-4o-mini"))
            assert providers(sc)["openai"]["base_url"] == in_file.api_base
        assert len(in_file.requests) == 1 and in_env.requests == []
        with Sidecar(env) as sc:  # nothing in the file: the environment applies
            sc.result("complete", ask("openai:gpt-4o-mini"))
        assert len(in_env.requests) == 1


def test_endpoints_set_and_deleted_at_run_time_persist(openai: FakeOpenAICompat, tmp_path: Path) -> None:
    env = {"LAB_KEY": KEY}
    endpoint = {
        "name": "lab",
        "base_url": openai.api_base,
        "models": ["gpt-4o-mini"],
        "api_key_env": "LAB_KEY",
        "keychain": False,
        "input_per_mtok": 1.0,
        "output_per_mtok": 2.0,
    }
    with Sidecar(env, home=tmp_path) as sc:
        assert sc.call("complete", ask("lab:gpt-4o-mini"))["error"]["data"]["kind"] == "unsupported_provider"
        assert sc.result("endpoint_set", endpoint) == {
            "name": "lab",
            "created": True,
            "base_url": openai.api_base,
        }
        answer = sc.result("complete", ask("lab:"))  # its first model is its default
        assert (answer["provider"], answer["model"]) == ("lab", "gpt-4o-mini") and answer["cost_usd"] > 0
        assert openai.requests[-1].bearer == KEY
        bad = sc.call("endpoint_set", {**endpoint, "base_url": "http://10.1.2.3/v1"})["error"]["data"]
        assert bad["kind"] == "invalid_request" and bad["field"] == "base_url"
        builtin = sc.call("endpoint_set", {**endpoint, "name": "openai"})["error"]["data"]
        assert builtin["kind"] == "invalid_request"
    with Sidecar(env, home=tmp_path) as sc:
        assert providers(sc)["lab"]["custom"] is True
        assert sc.result("complete", ask("lab:gpt-4o-mini"))["provider"] == "lab"
        assert sc.result("endpoint_delete", {"name": "lab"}) == {"name": "lab", "deleted": True}
        assert "lab" not in providers(sc)
        assert sc.call("complete", ask("lab:gpt-4o-mini"))["error"]["data"]["kind"] == "unsupported_provider"
        assert sc.call("endpoint_delete", {"name": "lab"})["error"]["data"]["kind"] == "unsupported_provider"
    assert "lab" not in json.loads((tmp_path / "runtime.json").read_text()).get("endpoints", {})


def _until(check: Any, timeout: float = 8.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_config_toml_is_reloaded_and_a_bad_edit_keeps_the_old_config(tmp_path: Path) -> None:
    with Sidecar(home=tmp_path, config="") as sc:
        assert sc.call("complete", {"messages": HI})["error"]["data"]["kind"] == "invalid_request"
        (tmp_path / "config.toml").write_text('[defaults]\nmodel = "stub:lorem"\nmax_tokens = 12\n')
        reloaded = _until(lambda: "result" in sc.call("complete", {"messages": HI}))
        assert reloaded
        assert sc.result("complete", {"messages": HI})["model"] == "lorem"
        (tmp_path / "config.toml").write_text('[defaults]\nmodel = "stub:echo"\nbogus = [\n')
        note = sc.wait_notification("config/error", timeout=8)
        assert note["params"]["path"] == str(tmp_path / "config.toml")
        assert "not valid TOML" in note["params"]["message"]
        assert _until(lambda: "not reloaded" in sc.stderr_text)  # stderr is read by its own thread
        assert sc.result("complete", {"messages": HI})["model"] == "lorem"  # the old config stays
        (tmp_path / "config.toml").write_text('[providers.openai]\nbase_url = "http://x.example/v1"\n')
        notes = _until(lambda: len(sc.notifications("config/error")) >= 2)
        assert notes and "allow_insecure" in sc.notifications("config/error")[1]["params"]["message"]
        assert sc.bad_lines == []
