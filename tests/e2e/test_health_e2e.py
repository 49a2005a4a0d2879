"""`provider_health` through the spawned sidecar: a cheap authenticated probe per provider against
the fakes, classified healthy or unhealthy with the error, and shown by `list_providers`."""

from __future__ import annotations

import socket

from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.harness import Sidecar


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_probes_report_status_latency_and_error() -> None:
    with FakeOpenAICompat("openai") as oa, FakeAnthropic() as an:
        env = {
            "OPENAI_BASE_URL": oa.api_base,
            "OPENAI_API_KEY": "sk-test-valid",
            "ANTHROPIC_BASE_URL": an.url,
            "ANTHROPIC_API_KEY": "sk-ant-wrong",
            "OLLAMA_HOST": closed_port_url(),
        }
        with Sidecar(env) as sc:
            before = {p["id"]: p for p in sc.result("list_providers")["providers"]}
            assert before["openai"].get("health") is None  # never probed yet
            report = {h["provider"]: h for h in sc.result("provider_health", timeout=30)["providers"]}
            # Only providers with a key (or needing none) are probed when none is named.
            assert set(report) == {"openai", "anthropic", "ollama", "stub"}
            assert report["openai"]["status"] == "healthy" and report["openai"]["latency_ms"] >= 0
            assert report["openai"]["checked_at"].endswith("Z")
            assert oa.requests[-1].path == "/v1/models" and oa.requests[-1].bearer == "sk-test-valid"
            assert report["anthropic"]["status"] == "unhealthy"
            assert report["anthropic"]["error"]["kind"] == "auth_failed"
            assert report["ollama"]["status"] == "unhealthy"
            assert report["ollama"]["error"]["kind"] == "ollama_unavailable"
            assert report["stub"]["status"] == "healthy"
            after = {p["id"]: p for p in sc.result("list_providers")["providers"]}
            assert after["openai"]["health"] == "healthy" and after["anthropic"]["health"] == "unhealthy"
            [xai] = sc.result("provider_health", {"provider": "xai"})["providers"]
            assert xai["status"] == "unhealthy" and xai["error"]["kind"] == "missing_key"
            unknown = sc.call("provider_health", {"provider": "nope"})["error"]["data"]
            assert unknown["kind"] == "unsupported_provider"
