"""The usage ledger and budgets through spawned `llm-sidecar` processes, over pipes as a host would:
rows survive a kill -9 mid-stream, budgets refuse before sending, `budget/alert` goes out once,
a cancelled stream leaves its row, two processes share one ledger without losing a row, a request
through a router names it, and a router's daily spend still refuses after a restart."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.http import Pause, Stall
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.harness import Sidecar

KEY = "sk-test-valid"
NO_RETRY = "[retry]\nmax_attempts = 1\n"


def env(fake: FakeOpenAICompat) -> dict[str, str]:
    return {"OPENAI_BASE_URL": fake.api_base, "OPENAI_API_KEY": KEY}


def ask(text: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def ledger_rows(home: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(home / "sidecar.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM ledger ORDER BY id")]


def wait_rows(home: Path, n: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = ledger_rows(home)
        except sqlite3.OperationalError:  # not created yet
            found = []
        if len(found) >= n or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def test_kill_9_mid_stream_keeps_committed_rows_and_a_readable_file(
    openai: FakeOpenAICompat, tmp_path: Path
) -> None:
    sc = Sidecar(env(openai), home=tmp_path, config=NO_RETRY)
    try:
        for i in range(5):
            sc.result("complete", ask(f"question {i}", tag="before-crash"))
        assert len(wait_rows(tmp_path, 5)) == 5  # committed by the writer, seen by another connection
        openai.edit_stream = lambda events: [*events[:4], Pause(30), *events[4:]]
        rid = sc.start("stream", ask("a slow answer that will never finish"))
        sc.wait_notification("stream/event", where=lambda n: n["params"]["request_id"] == rid)
        sc.proc.kill()
        assert sc.proc.wait(5) == -9
    finally:
        sc.stop()
    with sqlite3.connect(tmp_path / "sidecar.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = ledger_rows(tmp_path)
    assert [r["tag"] for r in rows] == ["before-crash"] * 5 and all(r["outcome"] == "ok" for r in rows)
    # The sidecar itself opens the file again and counts them.
    with Sidecar(env(openai), home=tmp_path, config=NO_RETRY) as again:
        summary = again.result("usage_summary", {"group_by": "tag"})
        assert again.bad_lines == []
    assert summary["total"]["requests"] == 5 and summary["groups"][0]["key"] == "before-crash"


def test_cancelled_stream_leaves_one_row(openai: FakeOpenAICompat, tmp_path: Path) -> None:
    openai.edit_stream = lambda events: [*events[:4], Stall()]
    with Sidecar(env(openai), home=tmp_path, config=NO_RETRY) as sc:
        rid = sc.start("stream", ask("cancel me", run_id="run-c"))
        sc.wait_notification("stream/event", where=lambda n: n["params"]["request_id"] == rid)
        sc.notify("$/cancelRequest", {"id": rid})
        assert sc.wait(rid)["error"]["data"]["kind"] == "cancelled"
        (row,) = wait_rows(tmp_path, 1)
        assert sc.bad_lines == []
    assert (row["outcome"], row["method"], row["run_id"]) == ("cancelled", "stream", "run-c")


def test_budget_refuses_before_sending_and_alerts_once(openai: FakeOpenAICompat, tmp_path: Path) -> None:
    with Sidecar(env(openai), home=tmp_path, config=NO_RETRY) as sc:
        refused_budget = sc.result("set_budget", {"provider": "openai", "daily_usd": 0})
        assert refused_budget["budget"]["daily_usd"] == 0 and refused_budget["budget"]["scope"] == "openai"
        answer = sc.call("complete", ask())
        error = answer["error"]
        assert error["code"] == 1010 and error["data"]["kind"] == "budget_exceeded"
        assert error["data"]["details"]["limit_usd"] == 0 and error["data"]["provider"] == "openai"
        assert openai.requests == []  # the upstream never saw it

        # One request costs 3.75e-06 USD here (5 input + 5 output tokens of gpt-4o-mini): past half
        # of a 5e-06 limit, so the threshold alert goes out; the next request's input would cross
        # the limit, so it is refused, and no second alert follows.
        sc.result("set_budget", {"provider": "openai", "daily_usd": 5e-6, "alert_threshold": 0.5})
        sc.result("complete", ask())
        note = sc.wait_notification("budget/alert")
        assert note["params"]["kind"] == "threshold" and note["params"]["scope"] == "openai"
        assert "request_id" not in note["params"]
        for _ in range(2):
            assert sc.call("complete", ask())["error"]["data"]["kind"] == "budget_exceeded"
        budgets = sc.result("get_budgets", {})["budgets"]
        time.sleep(0.2)
        assert len(sc.notifications("budget/alert")) == 1
        assert sc.bad_lines == []
    assert len(openai.requests) == 1
    (status,) = budgets
    assert status["spent_today_usd"] == pytest.approx(3.75e-6) and status[
        "remaining_today_usd"
    ] == pytest.approx(1.25e-6)


def test_two_processes_share_one_ledger_without_losing_rows(openai: FakeOpenAICompat, tmp_path: Path) -> None:
    per_process = 50
    first = Sidecar(env(openai), home=tmp_path, config=NO_RETRY)
    second = Sidecar(env(openai), home=tmp_path, config=NO_RETRY)
    try:
        ids = {
            sc: [sc.start("complete", ask(f"p{n} q{i}", tag=f"proc-{n}")) for i in range(per_process)]
            for n, sc in enumerate((first, second))
        }
        for sc, rids in ids.items():
            for rid in rids:
                assert "result" in sc.wait(rid, timeout=30)
        for sc in (first, second):
            sc.close_stdin()
        assert first.wait_exit(5) == 0 and second.wait_exit(5) == 0
        assert first.bad_lines == [] and second.bad_lines == []
    finally:
        first.stop()
        second.stop()
    rows = ledger_rows(tmp_path)
    assert len(rows) == 2 * per_process
    assert sorted({r["tag"] for r in rows}) == ["proc-0", "proc-1"]
    assert len({r["uid"] for r in rows}) == 2 * per_process
    assert len({r["pid"] for r in rows}) == 2
    with sqlite3.connect(tmp_path / "sidecar.db") as conn:
        (requests,) = conn.execute("SELECT sum(requests) FROM spend_daily").fetchone()
    assert requests == 2 * per_process


def test_a_router_request_names_its_router_in_the_ledger_summary_and_metrics(tmp_path: Path) -> None:
    config = NO_RETRY + '[routers.offline]\nmodels = ["stub:echo"]\n'
    with Sidecar(home=tmp_path, config=config) as sc:  # the stub provider: no upstream, no key
        routed = sc.result("complete", ask(model="router:offline"))
        assert (routed["provider"], routed["model"]) == ("stub", "echo")
        sc.result("stream", ask(model="stub:echo"))  # no router
        groups = sc.result("usage_summary", {"group_by": "router"})["groups"]
        assert {g.get("key"): g["requests"] for g in groups} == {"offline": 1, None: 1}
        assert sc.result("usage_summary", {"router": "offline"})["total"]["requests"] == 1
        series = sc.result("metrics", {"range": "1h", "group_by": "router"})["series"]
        assert {s.get("key"): sum(v or 0 for _, v in s["points"]) for s in series} == {"offline": 1, None: 1}
        assert sc.bad_lines == []
    assert [(r["router"], r["provider"]) for r in ledger_rows(tmp_path)] == [
        ("offline", "stub"),
        (None, "stub"),
    ]


def test_a_routers_daily_spend_still_refuses_after_a_restart(
    openai: FakeOpenAICompat, tmp_path: Path
) -> None:
    # One request costs 3.75e-06 USD here: the second starts below the 5e-06 limit, the third not.
    config = (
        NO_RETRY + '[routers.thrifty]\nmodels = ["openai:gpt-4o-mini"]\nlimits = { usd_per_day = 5e-06 }\n'
    )
    with Sidecar(env(openai), home=tmp_path, config=config) as sc:
        for _ in range(2):
            assert "result" in sc.call("complete", ask(model="router:thrifty"))
        assert sc.call("complete", ask(model="router:thrifty"))["error"]["data"]["kind"] == "budget_exceeded"
    with Sidecar(env(openai), home=tmp_path, config=config) as sc:  # a new process, the same ledger
        error = sc.call("complete", ask(model="router:thrifty"))["error"]
        assert error["data"]["kind"] == "budget_exceeded" and "thrifty" in error["message"]
        assert "result" in sc.call("complete", ask())  # the provider itself is not limited
    assert len(openai.requests) == 3
    rows = [(r["router"], r["outcome"]) for r in ledger_rows(tmp_path)]
    assert rows == [("thrifty", "ok")] * 2 + [("thrifty", "refused")] * 2 + [(None, "ok")]
