"""`refresh_pricing` keeps what it fetched in the state database: a restarted sidecar, with the
upstream gone, still prices with it and `list_models` says where each price came from."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.fakes.openai_compat import FakeOpenAICompat, openrouter_model
from tests.harness import Sidecar

KEY = "sk-or-v1-test-valid"
HI = [{"role": "user", "content": "hi"}]


def test_refreshed_prices_survive_a_restart(tmp_path: Path) -> None:
    with FakeOpenAICompat("openrouter") as fake:
        fake.openrouter_models = [
            openrouter_model("openai/gpt-4o-mini", "OpenAI: GPT-4o-mini", "0.000001", "0.000004"),
            openrouter_model("acme/new-model", "Acme: New", "0.0000005", "0.0000015", 64_000),
        ]
        fake.models = [m["id"] for m in fake.openrouter_models]
        env = {"OPENROUTER_BASE_URL": fake.api_base, "OPENROUTER_API_KEY": KEY}
        with Sidecar(env, home=tmp_path) as sc:
            before = {m["id"]: m for m in sc.result("list_models", {"provider": "openrouter"})["models"]}
            assert before["openai/gpt-4o-mini"]["price_source"] == "catalog"
            refreshed = sc.result("refresh_pricing")
            assert refreshed["applied"] == 2
            today = refreshed["pricing_date"]
        fake_url = fake.api_base
    with sqlite3.connect(tmp_path / "sidecar.db") as conn:
        rows = conn.execute("SELECT model, input_per_mtok, price_date FROM prices ORDER BY model").fetchall()
    assert rows == [("acme/new-model", 0.5, today), ("openai/gpt-4o-mini", 1.0, today)]
    # The upstream is gone: the stored prices are used, and said to be refreshed ones.
    with Sidecar({"OPENROUTER_BASE_URL": fake_url}, home=tmp_path) as sc:
        models = {m["id"]: m for m in sc.result("list_models", {"provider": "openrouter"})["models"]}
        mini = models["openai/gpt-4o-mini"]
        assert (mini["input_per_mtok"], mini["output_per_mtok"]) == (1.0, 4.0)
        assert mini["price_source"] == "refreshed" and mini["price_date"] == today
        assert models["acme/new-model"]["context_window"] == 64_000
        estimate = sc.result(
            "estimate_cost", {"model": "openrouter:acme/new-model", "messages": HI, "max_tokens": 1000}
        )
        assert estimate["pricing_date"] == today and estimate["cost_usd_max"] > 0
