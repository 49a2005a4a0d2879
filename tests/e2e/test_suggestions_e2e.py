"""Errors that suggest a way on, through the spawned sidecar against the fakes: close model ids for
`model_not_found`, an available alternative for an exhausted budget or a disabled provider, and
the upstream's HTTP status in `data.status`."""

from __future__ import annotations

from typing import Any

from tests.fakes.openai_compat import FakeOpenAICompat
from tests.harness import Sidecar

NO_RETRY = "[retry]\nmax_attempts = 1\n"


def ask(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


def test_errors_name_a_way_on() -> None:
    with FakeOpenAICompat("openai", strict_models=True) as fake:
        env = {
            "OPENAI_BASE_URL": fake.api_base,
            "OPENAI_API_KEY": "sk-test-valid",
            "ANTHROPIC_API_KEY": "sk-ant-never-used",  # a key, so anthropic can be proposed
        }
        with Sidecar(env, config=NO_RETRY) as sc:
            typo = sc.call("complete", ask("openai:gpt-4o-mni"))["error"]["data"]
            assert typo["kind"] == "model_not_found" and typo["status"] == 404
            assert "openai:gpt-4o-mini" in typo["details"]["suggestions"]
            assert "openai:gpt-4o-mini" in typo["message"]

            sc.result("set_budget", {"provider": "openai", "daily_usd": 0})
            broke = sc.call("complete", ask("openai:gpt-4o-mini"))["error"]["data"]
            assert broke["kind"] == "budget_exceeded"
            assert broke["details"]["alternative"].startswith("anthropic:")
            assert broke["details"]["alternative"] in broke["message"]
            sc.result("set_budget", {"provider": "openai", "daily_usd": None})

            sc.result("set_provider_enabled", {"provider": "openai", "enabled": False})
            off = sc.call("complete", ask("openai:gpt-4o-mini"))["error"]["data"]
            assert off["kind"] == "provider_disabled" and off["details"]["alternative"].startswith(
                "anthropic:"
            )
            sc.result("set_provider_enabled", {"provider": "openai", "enabled": True})

        with Sidecar({**env, "OPENAI_API_KEY": "sk-wrong"}, config=NO_RETRY) as sc:
            refused = sc.call("complete", ask("openai:gpt-4o-mini"))["error"]["data"]
            assert refused["kind"] == "auth_failed" and refused["status"] == 401
