"""Client-side limits in tokens and USD per window, global and per provider, through the spawned
sidecar: a request that would cross one is refused before it is sent, recorded in the ledger as
refused with its reason, and counted by usage_summary."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from tests.fakes.openai_compat import FakeOpenAICompat
from tests.harness import Sidecar


def ask(model: str, text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def ledger(home: Path, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30  # rows are committed by a writer thread: slowly on a loaded machine
    while True:
        try:
            with sqlite3.connect(home / "sidecar.db") as conn:
                conn.row_factory = sqlite3.Row
                rows = [dict(r) for r in conn.execute("SELECT * FROM ledger ORDER BY id")]
        except sqlite3.OperationalError:
            rows = []
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_global_and_provider_token_limits_refuse_and_are_recorded(tmp_path: Path) -> None:
    config = (
        "[limits]\nwindow_s = 600\noutput_tokens_per_window = 30\n"
        "[providers.stub.limits]\ninput_tokens_per_window = 200\n"
    )
    with Sidecar(home=tmp_path, config=config) as sc:
        first = sc.result("complete", ask("stub:lorem", max_tokens=20))
        assert 10 <= first["usage"]["output_tokens"] <= 20
        refused = sc.call("complete", ask("stub:lorem", max_tokens=20))["error"]["data"]
        assert refused["kind"] == "rate_limited" and 0 < refused["retry_after_s"] <= 600
        assert refused["details"]["scope"] == "global" and refused["details"]["limit"] == "output_tokens"
        assert "[limits]" in refused["message"]
        too_long = sc.call("complete", ask("stub:echo", "word " * 400, max_tokens=1))["error"]["data"]
        assert too_long["details"]["scope"] == "stub" and too_long["details"]["limit"] == "input_tokens"
        rows = ledger(tmp_path, 3)
        assert [r["outcome"] for r in rows] == ["ok", "refused", "refused"]
        assert all((r["input_tokens"], r["output_tokens"], r["cost_usd"]) == (0, 0, 0) for r in rows[1:])
        assert rows[1]["error_kind"] == "rate_limited" and "output tokens" in rows[1]["reason"]
        summary = sc.result("usage_summary", {"group_by": "provider"})
        assert summary["total"]["refused"] == 2 and summary["total"]["requests"] == 3
        assert summary["total"]["errors"] == 0 and summary["total"]["error_rate"] == 0


def test_usd_limit_per_provider_refuses_once_spent(tmp_path: Path) -> None:
    with FakeOpenAICompat("openai") as fake:
        env = {"OPENAI_BASE_URL": fake.api_base, "OPENAI_API_KEY": "sk-test-valid"}
        config = "[providers.openai.limits]\nwindow_s = 60\nusd_per_window = 0.000002\n"
        with Sidecar(env, home=tmp_path, config=config) as sc:
            answer = sc.result("complete", ask("openai:gpt-4o-mini"))
            assert answer["cost_usd"] > 0.000002
            error = sc.call("complete", ask("openai:gpt-4o-mini"))["error"]["data"]
            assert error["kind"] == "rate_limited" and error["details"]["limit"] == "usd"
            assert len(fake.requests) == 1  # the refused request never left
            # Other providers are not limited by openai's window.
            assert sc.result("complete", ask("stub:echo"))["provider"] == "stub"
