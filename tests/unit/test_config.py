"""config.toml: defaults when absent, typed settings when present, a clear failure naming the file
and the problem when malformed."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.config import ConfigError, load, state_dir
from sidecar.providers.registry import ollama_base_url


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    config, path = load(env={"SIDECAR_HOME": str(tmp_path)})
    assert path == tmp_path / "config.toml"
    assert config.timeouts.idle_s > 0 and config.endpoints == {}


def test_endpoints_and_limits(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        """
fallback = ["openai:gpt-4o-mini"]
[timeouts]
idle_s = 12
[providers.openai.limits]
max_concurrent = 2
[endpoints.lmstudio]
base_url = "http://127.0.0.1:1234/v1"
models = ["qwen2.5-7b-instruct"]
needs_key = false
"""
    )
    config, _ = load(env={"SIDECAR_HOME": str(tmp_path)})
    assert config.timeouts.idle_s == 12
    assert (
        config.providers["openai"].limits is not None
        and config.providers["openai"].limits.max_concurrent == 2
    )
    assert config.endpoints["lmstudio"].models == ["qwen2.5-7b-instruct"]
    assert config.fallback == ["openai:gpt-4o-mini"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[timeouts\nidle_s = 1", "not valid TOML"),
        ("[timeouts]\nidle_s = -1", "timeouts.idle_s"),
        ("[timeouts]\nidel_s = 1", "idel_s"),
        ("[endpoints.openai]\nbase_url = 'http://x'", "built-in provider"),
        ("[endpoints.x]\nmodels = []", "base_url"),
    ],
)
def test_malformed_file_names_file_and_problem(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_state_dir_prefers_sidecar_home(tmp_path: Path) -> None:
    assert state_dir({"SIDECAR_HOME": str(tmp_path)}) == tmp_path
    assert state_dir({}).name == "llm-sidecar"


@pytest.mark.parametrize(
    ("value", "url"),
    [
        (None, "http://127.0.0.1:11434"),
        ("", "http://127.0.0.1:11434"),
        ("127.0.0.1:18431", "http://127.0.0.1:18431"),
        ("example.com", "http://example.com:11434"),
        ("http://example.com", "http://example.com:80"),
        ("https://ollama.example", "https://ollama.example:443"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("http://10.0.0.2:9000/proxy/", "http://10.0.0.2:9000/proxy"),
    ],
)
def test_ollama_host_rules(value: str | None, url: str) -> None:
    assert ollama_base_url(value) == url


@pytest.mark.parametrize(
    ("url", "insecure", "problem"),
    [
        ("https://api.openai.com/v1", False, None),
        ("http://127.0.0.1:1234/v1", False, None),
        ("http://[::1]:8080", False, None),
        ("http://localhost:11434", False, None),
        ("http://lab.example.com/v1", False, "allow_insecure"),
        ("http://lab.example.com/v1", True, None),
        ("https://me:secret@api.example.com", True, "credentials"),
        ("api.example.com/v1", False, "https://"),
        ("https://", False, "no host"),
        ("https://host:99999", False, "not a valid URL"),
    ],
)
def test_base_url_rules(url: str, insecure: bool, problem: str | None) -> None:
    from sidecar.config import base_url_problem

    found = base_url_problem(url, allow_insecure=insecure)
    assert (found is None) if problem is None else (found is not None and problem in found)
