"""`audit_log` through the spawned sidecar: budget changes, provider switches, endpoints and
fallbacks are read back newest first, filtered by kind and time, with no secret in them."""

from __future__ import annotations

import json

from tests.harness import Sidecar

HI = [{"role": "user", "content": "hi"}]
SECRET = "sk-abcdefghijklmnopqrstuvwx0123456789"


def test_audit_log_reads_back_the_trail() -> None:
    env = {"LAB_KEY": SECRET}
    with Sidecar(env) as sc:
        sc.result("set_budget", {"provider": "openai", "daily_usd": 3.0})
        sc.result("set_provider_enabled", {"provider": "xai", "enabled": False})
        sc.result(
            "endpoint_set",
            {"name": "lab", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "LAB_KEY", "keychain": False},
        )
        # xai is off, so the request falls back to the stub: a fallback row.
        sc.result("complete", {"model": "xai:grok-4", "messages": HI, "fallback": ["stub:echo"]})
        found = None
        for _ in range(50):
            entries = sc.result("audit_log")["entries"]
            if any(e["event"] == "fallback" for e in entries):
                found = entries
                break
            sc.call("info")
        assert found is not None
        events = [e["event"] for e in found]
        assert {"budget_set", "provider_disabled", "endpoint_set", "fallback"} <= set(events)
        ids = [e["id"] for e in found]
        assert ids == sorted(ids, reverse=True)  # newest first
        fallback = next(e for e in found if e["event"] == "fallback")
        assert fallback["provider"] == "xai" and json.loads(fallback["detail"])["to"] == "stub:echo"
        only = sc.result("audit_log", {"kind": "provider_disabled"})["entries"]
        assert [e["provider"] for e in only] == ["xai"]
        assert sc.result("audit_log", {"since": "2999-01-01"})["entries"] == []
        assert len(sc.result("audit_log", {"since": "2000-01-01T00:00:00Z", "limit": 2})["entries"]) == 2
        bad = sc.call("audit_log", {"since": "yesterday"})["error"]["data"]
        assert bad["kind"] == "invalid_request" and bad["field"] == "since"
        assert SECRET not in json.dumps(sc.result("audit_log"))
