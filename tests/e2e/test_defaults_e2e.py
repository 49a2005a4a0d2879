"""Defaults through the spawned sidecar: `[defaults]` fills what a request leaves out, a provider
named alone (`openai:`) means its default model (config.toml's, else the built-in one)."""

from __future__ import annotations

from tests.fakes.openai_compat import FakeOpenAICompat
from tests.harness import Sidecar

KEY = "sk-test-valid"
HI = [{"role": "user", "content": "hi"}]


def test_complete_without_model_uses_the_configured_defaults(openai: FakeOpenAICompat) -> None:
    config = '[defaults]\nmodel = "openai:gpt-4.1-mini"\ntemperature = 0.25\nmax_tokens = 77\n'
    with Sidecar({"OPENAI_BASE_URL": openai.api_base, "OPENAI_API_KEY": KEY}, config=config) as sc:
        result = sc.result("complete", {"messages": HI})
        assert (result["provider"], result["model"]) == ("openai", "gpt-4.1-mini")
        sent = openai.requests[-1].json()
        assert sent["model"] == "gpt-4.1-mini" and sent["temperature"] == 0.25
        assert 77 in (sent.get("max_tokens"), sent.get("max_completion_tokens"))
        # The request's own values win over [defaults].
        sc.result("complete", {"model": "openai:gpt-4o", "messages": HI, "temperature": 1.0, "max_tokens": 5})
        sent = openai.requests[-1].json()
        assert sent["model"] == "gpt-4o" and sent["temperature"] == 1.0
        assert 5 in (sent.get("max_tokens"), sent.get("max_completion_tokens"))


def test_provider_alone_picks_its_default_model(openai: FakeOpenAICompat) -> None:
    config = '[providers.openai]\ndefault_model = "gpt-4.1-nano"\n'
    env = {"OPENAI_BASE_URL": openai.api_base, "OPENAI_API_KEY": KEY}
    with Sidecar(env, config=config) as sc:
        assert sc.result("complete", {"model": "openai:", "messages": HI})["model"] == "gpt-4.1-nano"
        assert openai.requests[-1].json()["model"] == "gpt-4.1-nano"
        providers = {p["id"]: p for p in sc.result("list_providers")["providers"]}
        assert providers["openai"]["default_model"] == "gpt-4.1-nano"
    with Sidecar(env) as sc:  # no config: the built-in default
        assert sc.result("complete", {"model": "openai:", "messages": HI})["model"] == "gpt-4o-mini"
        assert sc.result("complete", {"model": "stub", "messages": HI})["model"] == "echo"
        providers = {p["id"]: p for p in sc.result("list_providers")["providers"]}
        assert providers["openrouter"]["default_model"] == "openai/gpt-4o"
        assert providers["ollama"].get("default_model") is None


def test_missing_defaults_say_how_to_set_them() -> None:
    with Sidecar() as sc:
        error = sc.call("complete", {"messages": HI})["error"]["data"]
        assert error["kind"] == "invalid_request" and "[defaults]" in error["message"]
        error = sc.call("complete", {"model": "ollama:", "messages": HI})["error"]["data"]
        assert error["kind"] == "invalid_request" and "default_model" in error["message"]
