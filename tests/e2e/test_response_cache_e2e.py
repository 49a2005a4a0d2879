"""The response cache through the spawned sidecar against the fake OpenAI: opt-in per request or
per provider (temperature 0 only), a hit replays the stream and costs nothing, the ledger and
usage_summary count hits and savings, entries survive a restart and the size cap evicts the least
recently used."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from tests.fakes.openai_compat import FakeOpenAICompat
from tests.harness import Sidecar

KEY = "sk-test-valid"


def ask(text: str = "hello there", model: str = "openai:gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def ledger(home: Path, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30  # rows are committed by a writer thread: slowly on a loaded machine
    while True:
        with sqlite3.connect(home / "sidecar.db") as conn:
            conn.row_factory = sqlite3.Row
            rows = [dict(r) for r in conn.execute("SELECT * FROM ledger ORDER BY id")]
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_hits_replay_cost_nothing_and_are_counted(tmp_path: Path) -> None:
    with FakeOpenAICompat("openai") as fake:
        env = {"OPENAI_BASE_URL": fake.api_base, "OPENAI_API_KEY": KEY}
        cached = {"response_cache": {"ttl_s": 600}, "temperature": 0.7}
        with Sidecar(env, home=tmp_path) as sc:
            first = sc.result("complete", ask(**cached))
            assert not first.get("cached") and first["cost_usd"] > 0 and len(fake.requests) == 1
            rid = sc.start("stream", ask(**cached, tag="other-tag"))  # tags do not change the key
            hit = sc.wait(rid)["result"]
            assert len(fake.requests) == 1
            assert hit["cached"] is True and hit["cost_usd"] == 0 and hit["saved_usd"] == first["cost_usd"]
            assert hit["text"] == first["text"] and hit["usage"] == first["usage"]
            events = sc.events(rid)
            assert "".join(e["text"] for e in events if e["type"] == "text_delta") == first["text"]
            assert (
                events[-1]["type"] == "usage"
                and events[-1]["output_tokens"] == first["usage"]["output_tokens"]
            )
            sc.result("complete", ask("something else", **cached))  # another request: a miss
            assert len(fake.requests) == 2
            rows = ledger(tmp_path, 3)
            assert [r["cache_hit"] for r in rows] == [0, 1, 0]
            assert rows[1]["cost_usd"] == 0 and rows[1]["saved_usd"] == first["cost_usd"]
            assert rows[1]["input_tokens"] == 0
            total = sc.result("usage_summary")["total"]
            assert total["cache_hits"] == 1 and abs(total["cache_hit_rate"] - 1 / 3) < 1e-6
            assert total["saved_usd"] == first["cost_usd"]
        with Sidecar(env, home=tmp_path) as sc:  # kept in the state database
            again = sc.result("complete", ask(**cached))
            assert again["cached"] is True and len(fake.requests) == 2


def test_provider_setting_caches_only_temperature_zero(tmp_path: Path) -> None:
    with FakeOpenAICompat("openai") as fake:
        env = {"OPENAI_BASE_URL": fake.api_base, "OPENAI_API_KEY": KEY}
        config = "[providers.openai]\nresponse_cache_ttl_s = 600\n"
        with Sidecar(env, home=tmp_path, config=config) as sc:
            for _ in range(2):
                sc.result("complete", ask(temperature=0))
            assert len(fake.requests) == 1
            for _ in range(2):
                assert not sc.result("complete", ask(temperature=0.5)).get("cached")
            assert len(fake.requests) == 3  # sampled answers are not cached unless asked
            off = sc.result("complete", ask(temperature=0, response_cache={"ttl_s": 0}))
            assert not off.get("cached") and len(fake.requests) == 4
            forced = [
                sc.result("complete", ask(temperature=0.5, response_cache={"ttl_s": 60})) for _ in range(2)
            ]
            assert forced[1]["cached"] is True and len(fake.requests) == 5


def test_the_size_cap_evicts_the_least_recently_used(tmp_path: Path) -> None:
    config = "[response_cache]\nmax_bytes = 2500\n"
    with Sidecar(home=tmp_path, config=config) as sc:
        opts = {"model": "stub:lorem", "response_cache": {"ttl_s": 600}}
        prompts = [f"prompt number {i}" for i in range(8)]
        for p in prompts:
            sc.result("complete", {**opts, "messages": [{"role": "user", "content": p}]})
        with sqlite3.connect(tmp_path / "sidecar.db") as conn:
            count, size = conn.execute("SELECT count(*), sum(size) FROM response_cache").fetchone()
        assert 1 <= count < len(prompts) and size <= 2500
        newest = sc.result("complete", {**opts, "messages": [{"role": "user", "content": prompts[-1]}]})
        oldest = sc.result("complete", {**opts, "messages": [{"role": "user", "content": prompts[0]}]})
        assert newest["cached"] is True and not oldest.get("cached")
