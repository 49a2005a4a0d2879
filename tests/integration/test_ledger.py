"""The usage ledger, budgets and price refresh, in process: the real services (`build_services`) on a
real SQLite file in a temporary state directory, talking to fake upstreams over HTTP on 127.0.0.1.

Rows are checked after success, provider failure, fallback and cancellation mid-stream; budgets
are refused before anything reaches the fake; alerts go out once per period with an injected
clock; two ledgers (two connections, as two processes would have) write one file concurrently.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from sidecar.app import Services, build_services
from sidecar.config import Config, Retry
from sidecar.core.assemble import ProviderEvent
from sidecar.core.budget import AlertKey
from sidecar.errors import SidecarError
from sidecar.infra.db import Database
from sidecar.infra.keystore import MemoryStore
from sidecar.infra.ledger import Ledger, Row
from sidecar.infra.ledger_schema import MIGRATIONS
from sidecar.providers.base import Provider
from sidecar.services.outcome import Outcome
from sidecar.services.usage import UsageService
from sidecar.wire.base import Empty
from sidecar.wire.catalog import EstimateCostParams
from sidecar.wire.chat import CompleteParams, TextDelta, UsageEvent
from sidecar.wire.usage import SetBudgetParams, UsageSummaryParams
from tests.fakes.http import Stall
from tests.fakes.openai_compat import FakeOpenAICompat, error_reply, openrouter_model

pytestmark = pytest.mark.anyio
KEY = "sk-test-valid"


class Ctx:
    def __init__(self, request_id: int | str = 1) -> None:
        self.request_id = request_id
        self.notes: list[tuple[str, Any]] = []
        self.notified = anyio.Event()

    async def notify(self, method: str, params: Any) -> None:
        self.notes.append((method, params))
        self.notified.set()


class Clock:
    def __init__(self, start: str) -> None:
        self.now = dt.datetime.fromisoformat(start).replace(tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


class Alerts:
    """A `broadcast` that keeps what it was given (called from the ledger's writer thread)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, method: str, params: Any) -> None:
        assert method == "budget/alert"
        with self._lock:
            self.sent.append(msgspec.to_builtins(params))


@pytest.fixture
async def services(tmp_path: Path, openai: FakeOpenAICompat) -> AsyncIterator[Services]:
    env = {"SIDECAR_HOME": str(tmp_path), "OPENAI_BASE_URL": openai.api_base}
    built = build_services(Config(retry=Retry(max_attempts=1)), store=MemoryStore({"openai": KEY}), env=env)
    yield built
    await built.aclose()


def usage_of(services: Services) -> UsageService:
    (found,) = [h for h in services.chat.hooks if isinstance(h, UsageService)]
    return found


def rows(home: Path, where: str = "1") -> list[dict[str, Any]]:
    with sqlite3.connect(home / "sidecar.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(f"SELECT * FROM ledger WHERE {where} ORDER BY id")]


def audit_rows(home: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(home / "sidecar.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM audit ORDER BY id")]


def params(text: str = "hello there", **extra: Any) -> CompleteParams:
    return msgspec.convert({"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra},
                           CompleteParams)  # fmt: skip


async def flush(services: Services) -> None:
    await anyio.to_thread.run_sync(usage_of(services).ledger.flush)


# --- rows ----------------------------------------------------------------------------------------


async def test_success_writes_one_row_with_usage_cost_and_labels(services: Services, tmp_path: Path) -> None:
    result = await services.chat.complete(params(tag="nightly", run_id="run-1"), Ctx())
    await flush(services)
    (row,) = rows(tmp_path)
    assert (row["provider"], row["model"], row["method"], row["outcome"]) == (
        "openai",
        "gpt-4o-mini",
        "complete",
        "ok",
    )
    assert row["input_tokens"] == result.usage.input_tokens > 0
    assert row["output_tokens"] == result.usage.output_tokens > 0
    assert row["cache_read_tokens"] == 0 and row["reasoning_tokens"] == 0 and row["usage_estimated"] == 0
    assert row["cost_usd"] == pytest.approx(result.cost_usd) and row["cost_usd"] > 0
    assert row["pricing_date"] == result.pricing_date
    assert (row["tag"], row["run_id"], row["attempts"], row["error_kind"]) == ("nightly", "run-1", 1, None)
    assert row["latency_ms"] > 0 and len(row["uid"]) == 32


async def test_provider_failure_writes_an_error_row(
    services: Services, openai: FakeOpenAICompat, tmp_path: Path
) -> None:
    openai.enqueue(error_reply(500, "openai"))
    with pytest.raises(SidecarError) as caught:
        await services.chat.stream(params(), Ctx())
    await flush(services)
    (row,) = rows(tmp_path)
    assert (row["outcome"], row["error_kind"], row["method"]) == ("error", caught.value.kind, "stream")
    assert row["error_kind"] == "provider_error"
    assert row["input_tokens"] is None and row["cost_usd"] is None  # nothing reported, nothing invented


async def test_fallback_writes_one_row_and_an_audit_row(
    services: Services, openai: FakeOpenAICompat, tmp_path: Path
) -> None:
    openai.enqueue(error_reply(500, "openai"))
    result = await services.chat.complete(params(fallback=["openai:gpt-4.1-nano"]), Ctx())
    assert result.model == "gpt-4.1-nano"
    await flush(services)
    (row,) = rows(tmp_path)
    assert (row["outcome"], row["model"], row["attempts"]) == ("ok", "gpt-4.1-nano", 2)
    (note,) = [a for a in audit_rows(tmp_path) if a["event"] == "fallback"]
    detail = json.loads(note["detail"])
    assert detail == {"from": "openai:gpt-4o-mini", "to": "openai:gpt-4.1-nano", "error": "provider_error"}
    assert note["provider"] == "openai" and note["outcome"] == "provider_error"


async def test_cancelled_stream_without_reported_usage_records_an_estimate(
    services: Services, openai: FakeOpenAICompat, tmp_path: Path
) -> None:
    # Content arrives, then the upstream stalls before its usage chunk; the host cancels.
    openai.edit_stream = lambda events: [*events[:5], Stall()]
    ctx = Ctx()
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            await services.chat.stream(params("a long enough question to stream"), ctx)

        tg.start_soon(run)
        with anyio.fail_after(5):
            await ctx.notified.wait()
        tg.cancel_scope.cancel()
    await flush(services)
    (row,) = rows(tmp_path)
    assert (row["outcome"], row["error_kind"], row["method"]) == ("cancelled", "cancelled", "stream")
    # The tokens that flowed were billed: the row estimates them from what was received, and says so.
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0 and row["cost_usd"] > 0
    assert row["usage_estimated"] == 1
    assert openai.wait_for_disconnect(timeout=5)


class _PartialUsageProvider(Provider):
    """Reports usage mid-stream and then hangs, like an upstream that sends running totals."""

    def __init__(self) -> None:
        pass

    async def stream(self, model: str, params: Any, timeouts: Any) -> AsyncGenerator[ProviderEvent, None]:
        yield TextDelta(text="partial")
        yield UsageEvent(input_tokens=1000, output_tokens=7, cache_read_tokens=0, cache_write_tokens=0,
                         reasoning_tokens=0)  # fmt: skip
        await anyio.sleep_forever()

    async def complete(self, model: str, params: Any, timeouts: Any) -> AsyncGenerator[ProviderEvent, None]:
        async for event in self.stream(model, params, timeouts):
            yield event

    async def validate_key(self, api_key: str | None, timeouts: Any) -> Any:
        raise NotImplementedError


async def test_cancelled_stream_records_the_partial_usage_it_had(services: Services, tmp_path: Path) -> None:
    services.providers._providers["openai"] = _PartialUsageProvider()
    ctx = Ctx()
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            await services.chat.stream(params(), ctx)

        tg.start_soon(run)
        with anyio.fail_after(5):
            await ctx.notified.wait()
        await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    await flush(services)
    (row,) = rows(tmp_path)
    assert row["outcome"] == "cancelled"
    assert (row["input_tokens"], row["output_tokens"]) == (1000, 7)
    assert row["cost_usd"] == pytest.approx((1000 * 0.15 + 7 * 0.60) / 1e6)


async def test_rows_queued_at_close_are_committed(tmp_path: Path) -> None:
    ledger = Ledger(Database(tmp_path / "sidecar.db"))
    for i in range(300):
        ledger.record(Row(ts=1_800_000_000 + i, method="complete", provider="openai", model="m", outcome="ok",
                          latency_ms=1.0, cost_usd=0.001))  # fmt: skip
    assert ledger.close(timeout=5)
    assert len(rows(tmp_path)) == 300
    with sqlite3.connect(tmp_path / "sidecar.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = dict(conn.execute("SELECT component, version FROM schema_versions"))
        assert versions["ledger"] == len(MIGRATIONS) and versions["audit"] >= 1
        (spent,) = conn.execute("SELECT sum(cost_usd) FROM spend_daily").fetchone()
    assert spent == pytest.approx(0.3)


async def test_a_clean_shutdown_commits_every_queued_row(tmp_path: Path) -> None:
    """A host that floods requests and quits at once: a hundred thousand rows are still queued
    when the services close, far more than the writer commits in the old fixed half second (some
    200,000 rows a second would be needed); the close waits while the writer commits them."""
    services = build_services(Config(), store=MemoryStore(), env={"SIDECAR_HOME": str(tmp_path)})
    usage = usage_of(services)
    outcome = Outcome(method="complete", provider="stub", model="echo", status="ok", cost_usd=0.0,
                      latency_ms=1.0, tag="flood")  # fmt: skip
    await usage.after(outcome)  # the hooks' own way in
    count = 100_000
    for i in range(1, count):
        usage.ledger.record(Row(ts=1_800_000_000 + i, method="complete", provider="stub", model="echo",
                                outcome="ok", latency_ms=1.0, tag="flood"))  # fmt: skip
    await services.aclose()
    assert usage.ledger.pending_count == 0 and usage.ledger.dropped == 0
    with sqlite3.connect(tmp_path / "sidecar.db") as conn:
        assert conn.execute("SELECT count(*) FROM ledger WHERE tag = 'flood'").fetchone() == (count,)


class SlowCommits(Database):
    """The state database, each step of the writer taking `delay_s` longer: a slow disk."""

    def __init__(self, path: Path, delay_s: float) -> None:
        super().__init__(path)
        self.delay_s = delay_s

    def run_sync(self, call: Any) -> Any:
        time.sleep(self.delay_s)
        return super().run_sync(call)


def test_close_waits_as_long_as_the_writer_commits_rows(tmp_path: Path) -> None:
    # 60 batches of 512 rows, each at least 20 ms: well over a second in all, with a row committed
    # every few tens of milliseconds; `stall_s` is the longest the close waits without one.
    ledger = Ledger(SlowCommits(tmp_path / "sidecar.db", 0.02))
    count = 60 * 512
    for i in range(count):
        ledger.record(Row(ts=1_800_000_000 + i, method="complete", provider="openai", model="m", outcome="ok",
                          latency_ms=1.0))  # fmt: skip
    started = time.monotonic()
    assert ledger.close(timeout=60, stall_s=0.5)
    assert time.monotonic() - started > 0.5  # it went on past `stall_s`, since rows kept coming
    assert ledger.committed == count and len(rows(tmp_path)) == count


def test_close_gives_up_when_the_writer_commits_nothing(tmp_path: Path) -> None:
    """Another process holds the write lock: nothing is committed, so the close does not wait for
        its whole `timeout` (the process's exit would only be later), and says rows are left (the
    warning is seen in tests/e2e/test_shutdown_e2e.py)."""
    path = tmp_path / "sidecar.db"
    ledger = Ledger(Database(path))
    ledger.record(Row(ts=1_800_000_000.0, method="complete", provider="openai", model="m", outcome="ok",
                      latency_ms=1.0))  # fmt: skip
    assert ledger.flush(10)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        ledger.record(Row(ts=1_800_000_001.0, method="complete", provider="openai", model="m", outcome="ok",
                          latency_ms=1.0))  # fmt: skip
        started = time.monotonic()
        assert not ledger.close(timeout=60, stall_s=0.3)
        assert time.monotonic() - started < 30  # far from the whole minute
        assert ledger.pending_count == 1
    finally:
        other.execute("ROLLBACK")
        other.close()
    deadline = time.monotonic() + 30  # the writer still commits the row once the lock is free
    while ledger.committed < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(rows(tmp_path)) == 2


def test_two_ledgers_on_one_file_lose_no_row(tmp_path: Path) -> None:
    """Two connections with their own writer threads, as two sidecar processes would have."""
    path = tmp_path / "sidecar.db"
    ledgers = [Ledger(Database(path)), Ledger(Database(path))]

    def write(ledger: Ledger, n: int) -> None:
        for _ in range(n):
            ledger.record(Row(ts=1_800_000_000.0, method="stream", provider="openai", model="m", outcome="ok",
                              latency_ms=1.0, cost_usd=0.01, run_id="shared", input_tokens=3, output_tokens=2))  # fmt: skip

    threads = [threading.Thread(target=write, args=(ledger, 250)) for ledger in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(ledger.close(timeout=10) for ledger in ledgers)
    assert all(ledger.dropped == 0 for ledger in ledgers)
    assert len(rows(tmp_path)) == 500
    fresh = Ledger(Database(path))
    assert fresh.spends([("*", "2000-01-01", "2100-01-01")]) == [pytest.approx(5.0)]
    assert fresh.run_tokens("shared", ["*", "openai", "anthropic"]) == [2500, 2500, 0]


def test_a_writer_that_died_of_a_bug_is_replaced_by_the_next_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`record` wakes the writer only while it is idle; a writer thread that ended on an
    unexpected error counts as idle, so the next row starts another (no flush needed)."""
    db = Database(tmp_path / "sidecar.db")
    ledger = Ledger(db)
    real, failed = db.run_sync, threading.Event()
    broken: list[threading.Thread] = []

    def broken_once(call: Any) -> Any:
        if not failed.is_set():
            broken.append(threading.current_thread())
            failed.set()
            raise RuntimeError("a bug in the writer")
        return real(call)

    monkeypatch.setattr(db, "run_sync", broken_once)
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # the bug is expected here
    ledger.record(Row(ts=1_800_000_000.0, method="stream", provider="openai", model="m", outcome="ok",
                      latency_ms=1.0))  # fmt: skip
    assert failed.wait(5)
    broken[0].join(10)  # the thread ends right after the error (later, on a slow machine)
    assert not broken[0].is_alive()
    ledger.record(Row(ts=1_800_000_001.0, method="stream", provider="openai", model="m", outcome="ok",
                      latency_ms=1.0))  # fmt: skip
    deadline = time.monotonic() + 5
    while ledger.committed == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [r["ts"] for r in rows(tmp_path)] == [1_800_000_001.0]
    assert ledger.close(5)


def test_rows_recorded_while_the_writer_commits_are_counted_once(tmp_path: Path) -> None:
    """Four threads record while the writer takes and commits batches and queries run: every
    answer lies between what was recorded before it was asked and what was recorded once it
    returned, give or take a row per thread in the middle of recording (a row is counted as queued, in flight or committed, never twice, never not at all),
    from the database with the queued rows and from the spend kept in memory alike."""
    ledger = Ledger(Database(tmp_path / "sidecar.db"))
    cost, per_thread = 0.001, 400
    day = "2027-01-15"
    ts = dt.datetime.fromisoformat(f"{day}T12:00:00+00:00").timestamp()
    done = [0] * 4

    def write(index: int) -> None:
        for i in range(per_thread):
            ledger.record(Row(ts=ts, method="stream", provider="openai", model="m", outcome="ok",
                              latency_ms=1.0, cost_usd=cost))  # fmt: skip
            done[index] += 1
            if i % 50 == 0:
                time.sleep(0.005)  # spread over several of the writer's batches

    def check(asked: int, answer: float, answered: int) -> None:
        # Each thread may have queued one row it has not counted yet.
        assert asked * cost - 1e-9 <= answer <= (answered + len(done)) * cost + 1e-9

    keys = [("*", day), ("openai", day[:7])]
    ledger.read_period_spends(keys)  # the spend in memory is in use from here on
    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    checks = 0
    while any(t.is_alive() for t in threads) or checks < 20:
        asked = sum(done)
        (stored,) = ledger.spends([("*", day, "2027-01-16")])
        check(asked, stored, sum(done))
        asked = sum(done)
        in_memory = ledger.period_spends(keys) or ledger.read_period_spends(keys)
        answered = sum(done)
        for figure in in_memory:
            check(asked, figure, answered)
        checks += 1
    for t in threads:
        t.join()
    assert ledger.close(timeout=10) and ledger.dropped == 0 and ledger.pending_count == 0
    assert len(rows(tmp_path)) == 4 * per_thread
    total = 4 * per_thread * cost
    assert ledger.spends([("*", day, "2027-01-16")]) == [pytest.approx(total)]
    assert ledger.read_period_spends(keys) == [pytest.approx(total)] * 2


# --- budgets -------------------------------------------------------------------------------------


async def test_budget_refuses_before_sending(
    services: Services, openai: FakeOpenAICompat, tmp_path: Path
) -> None:
    usage = usage_of(services)
    await usage.set_budget(SetBudgetParams(provider="openai", daily_usd=0.0), Ctx())
    with pytest.raises(SidecarError) as caught:
        await services.chat.complete(params(), Ctx())
    err = caught.value
    assert err.kind == "budget_exceeded" and err.provider == "openai"
    assert err.details["scope"] == "openai" and err.details["period"] == "day"
    assert err.details["limit_usd"] == 0.0 and err.details["spent_usd"] == 0.0
    details: dict[str, Any] = dict(err.details)
    assert details["estimated_cost_usd"] > 0 and details["estimated_input_tokens"] > 0
    assert "set_budget" in err.message
    assert openai.requests == []  # nothing was sent
    await flush(services)
    # A refused request costs nothing: its row says why, with zero tokens and cost.
    [refused] = rows(tmp_path)
    assert refused["outcome"] == "refused" and refused["error_kind"] == "budget_exceeded"
    assert (refused["input_tokens"], refused["output_tokens"], refused["cost_usd"]) == (0, 0, 0.0)
    assert "set_budget" in refused["reason"]


async def test_budget_refuses_once_spend_reaches_the_limit(
    services: Services, openai: FakeOpenAICompat
) -> None:
    usage = usage_of(services)
    first = await services.chat.complete(params(), Ctx())
    assert first.cost_usd is not None
    # The limit sits between one request's cost and two: the second request is still allowed
    # (spent < limit and its input fits), the third is refused on the spend alone.
    await usage.set_budget(SetBudgetParams(monthly_usd=first.cost_usd * 1.5), Ctx())
    await services.chat.complete(params(), Ctx())
    sent = len(openai.requests)
    with pytest.raises(SidecarError) as caught:
        await services.chat.complete(params(), Ctx())
    assert caught.value.kind == "budget_exceeded" and caught.value.details["period"] == "month"
    assert caught.value.details["scope"] == "overall"
    assert caught.value.details["spent_usd"] == pytest.approx(first.cost_usd * 2)
    assert len(openai.requests) == sent


async def test_run_token_caps_warn_then_refuse(services: Services, openai: FakeOpenAICompat) -> None:
    usage = usage_of(services)
    alerts = usage.broadcast = Alerts()
    first = await services.chat.complete(params(run_id="r1"), Ctx())
    used = first.usage.input_tokens + first.usage.output_tokens
    await usage.set_budget(SetBudgetParams(run_token_limit_soft=used, run_token_limit_hard=used * 3), Ctx())
    await services.chat.complete(params(run_id="r1"), Ctx())  # past soft: warned, sent
    await services.chat.complete(params(run_id="r1"), Ctx())  # warned again in the log only
    await flush(services)
    soft = [a for a in alerts.sent if a["kind"] == "run_tokens_soft"]
    assert len(soft) == 1 and soft[0]["run_id"] == "r1" and soft[0]["period_key"] == "run:r1"
    sent = len(openai.requests)
    with pytest.raises(SidecarError) as caught:
        await services.chat.complete(params(run_id="r1"), Ctx())
    assert caught.value.kind == "budget_exceeded" and caught.value.details["run_id"] == "r1"
    assert caught.value.details["used_tokens"] == used * 3
    assert len(openai.requests) == sent
    await services.chat.complete(params(run_id="r2"), Ctx())  # another run starts from zero


async def test_alerts_once_per_period_and_again_after_the_day_rolls_over(services: Services) -> None:
    usage = usage_of(services)
    clock = usage.clock = Clock("2026-11-22T10:00:00")
    alerts = usage.broadcast = Alerts()
    first = await services.chat.complete(params(), Ctx())
    cost = first.cost_usd
    assert cost is not None
    # Every request costs the same: the threshold (7.5 requests' worth) is crossed by the 8th
    # request of a day, the limit (10) never.
    await usage.set_budget(
        SetBudgetParams(provider="openai", daily_usd=cost * 10, alert_threshold=0.75), Ctx()
    )

    async def run(n: int) -> None:
        for _ in range(n):
            await services.chat.complete(params(), Ctx())
            await flush(services)

    await run(6)
    assert alerts.sent == []
    await run(1)  # the 8th of the day
    assert [(a["kind"], a["period_key"], a["provider"]) for a in alerts.sent] == [
        ("threshold", "2026-11-22", "openai")
    ]
    assert alerts.sent[0]["limit"] == pytest.approx(cost * 10) and alerts.sent[0]["spent"] == pytest.approx(
        cost * 8
    )
    await run(1)
    assert len(alerts.sent) == 1  # once per period
    clock.now += dt.timedelta(days=1)
    await run(7)
    assert len(alerts.sent) == 1  # the new day's spend is below the threshold
    await run(1)
    assert [a["period_key"] for a in alerts.sent] == ["2026-11-22", "2026-11-23"]


async def test_an_alert_is_sent_by_one_process_only(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.db"
    first, second = Ledger(Database(path)), Ledger(Database(path))
    key = AlertKey("*", "threshold", "2026-11-22")
    assert first.mark_alert(key, 1.0) is True
    assert second.mark_alert(key, 2.0) is False


async def test_set_and_get_budgets_with_spend_and_audit(services: Services, tmp_path: Path) -> None:
    usage = usage_of(services)
    clock = usage.clock = Clock("2026-11-22T10:00:00")
    result = await services.chat.complete(params(), Ctx())
    set_result = await usage.set_budget(
        SetBudgetParams(provider="openai", daily_usd=2.0, monthly_usd=20.0, alert_threshold=0.5), Ctx()
    )
    assert set_result.budget is not None and set_result.budget.spent_today_usd == pytest.approx(
        result.cost_usd
    )
    # Leaving a field out keeps it; null clears it.
    await usage.set_budget(
        msgspec.json.decode(b'{"provider": "openai", "daily_usd": null}', type=SetBudgetParams), Ctx()
    )
    (status,) = (await usage.get_budgets(Empty(), Ctx())).budgets
    assert (status.scope, status.daily_usd, status.monthly_usd, status.alert_threshold) == (
        "openai",
        None,
        20.0,
        0.5,
    )
    assert (status.day, status.month) == ("2026-11-22", "2026-11")
    assert result.cost_usd is not None
    assert status.remaining_month_usd == pytest.approx(20.0 - result.cost_usd)
    clock.now += dt.timedelta(days=10)  # December: this month's spend starts again
    (status,) = (await usage.get_budgets(Empty(), Ctx())).budgets
    assert (status.month, status.spent_month_usd) == ("2026-12", 0.0)
    cleared = await usage.set_budget(SetBudgetParams(provider="openai", monthly_usd=None), Ctx())
    assert cleared.removed and (await usage.get_budgets(Empty(), Ctx())).budgets == []
    events = [(a["event"], a["provider"]) for a in audit_rows(tmp_path)]
    assert events == [("budget_set", "openai"), ("budget_set", "openai"), ("budget_cleared", "openai")]
    before_after = json.loads(audit_rows(tmp_path)[1]["detail"])
    assert before_after["before"]["daily_usd"] == 2.0 and before_after["after"] == {"daily_usd": None}


async def test_set_budget_rejects_unknown_providers_and_inverted_caps(services: Services) -> None:
    usage = usage_of(services)
    with pytest.raises(SidecarError) as unknown:
        await usage.set_budget(SetBudgetParams(provider="nope", daily_usd=1.0), Ctx())
    assert unknown.value.kind == "unsupported_provider"
    with pytest.raises(SidecarError) as inverted:
        await usage.set_budget(SetBudgetParams(run_token_limit_soft=10, run_token_limit_hard=5), Ctx())
    assert inverted.value.kind == "invalid_request" and inverted.value.field == "run_token_limit_soft"


# --- analytics -----------------------------------------------------------------------------------


async def test_usage_summary_groups_and_projects(services: Services, openai: FakeOpenAICompat) -> None:
    usage = usage_of(services)
    usage.clock = Clock("2026-11-16T00:00:00")  # half-way through November
    a = await services.chat.complete(params(tag="a"), Ctx())
    await services.chat.complete(params(tag="b"), Ctx())
    openai.enqueue(error_reply(500, "openai"))
    with pytest.raises(SidecarError):
        await services.chat.complete(params(tag="b"), Ctx())
    summary = await usage.usage_summary(UsageSummaryParams(group_by="tag"), Ctx())
    assert summary.since == "2026-11-01T00:00:00.000Z" and summary.until == "2026-11-16T00:00:00.000Z"
    # The rows were stamped at the clock's instant; `until` is exclusive, so widen it by a day.
    summary = await usage.usage_summary(UsageSummaryParams(until="2026-11-16", group_by="tag"), Ctx())
    assert summary.total.requests == 3 and summary.total.errors == 1
    assert summary.total.error_rate == pytest.approx(1 / 3)
    by_tag = {g.key: g for g in summary.groups}
    assert by_tag["b"].requests == 2 and by_tag["b"].error_rate == 0.5
    assert by_tag["a"].cost_usd == pytest.approx(a.cost_usd)
    assert by_tag["a"].latency_ms_p50 is not None and by_tag["a"].latency_ms_p95 is not None
    assert summary.month.month == "2026-11" and summary.month.elapsed_fraction == 0.5
    assert summary.month.projected_usd == pytest.approx(summary.month.spent_usd * 2)
    by_model = await usage.usage_summary(UsageSummaryParams(until="2026-11-16", group_by="model"), Ctx())
    assert [g.key for g in by_model.groups] == ["openai:gpt-4o-mini"]
    by_day = await usage.usage_summary(UsageSummaryParams(until="2026-11-16", group_by="day"), Ctx())
    assert [g.key for g in by_day.groups] == ["2026-11-16"]
    empty = await usage.usage_summary(UsageSummaryParams(since="2026-10-01", until="2026-10-31"), Ctx())
    assert empty.total.requests == 0 and empty.groups == []
    with pytest.raises(SidecarError) as bad:
        await usage.usage_summary(UsageSummaryParams(since="yesterday"), Ctx())
    assert bad.value.kind == "invalid_request" and bad.value.field == "since"


# --- prices --------------------------------------------------------------------------------------


async def test_refresh_pricing_applies_openrouter_prices(tmp_path: Path) -> None:
    with FakeOpenAICompat("openrouter") as fake:
        fake.openrouter_models = [
            openrouter_model("openai/gpt-4o-mini", "GPT-4o mini", "0.000001", "0.000002"),
            openrouter_model("vendor/new-model", "New", "0.0000005", "0.0000015"),
            openrouter_model("vendor/variable", "Variable", "-1", "-1"),
        ]
        fake.models = [m["id"] for m in fake.openrouter_models]
        env = {"SIDECAR_HOME": str(tmp_path), "OPENROUTER_BASE_URL": fake.api_base}
        services = build_services(Config(), store=MemoryStore(), env=env)
        try:
            usage = usage_of(services)
            usage.clock = Clock("2026-11-22T10:00:00")
            before = await services.catalog.estimate_cost(
                EstimateCostParams(model="openrouter:vendor/new-model"), Ctx()
            )
            assert before.cost_usd is None
            result = await usage.refresh_pricing(Empty(), Ctx())
            assert (result.applied, result.models, result.skipped) == (2, 3, 1)
            assert result.pricing_date == "2026-11-22" and result.source == f"{fake.api_base}/models"
            (request,) = fake.requests
            assert request.method == "GET" and "authorization" not in request.headers
            info, date = services.pricing.book.price_for("openrouter", "openai/gpt-4o-mini")
            assert info is not None and (info.input_per_mtok, info.output_per_mtok, date) == (
                1.0,
                2.0,
                "2026-11-22",
            )
            after = await services.catalog.estimate_cost(
                EstimateCostParams(model="openrouter:vendor/new-model", max_tokens=1_000_000), Ctx()
            )
            assert after.pricing_date == "2026-11-22" and after.cost_usd_max == pytest.approx(1.5, rel=1e-3)
        finally:
            await services.aclose()


async def test_estimate_cost_counts_tools_and_compares_models(services: Services) -> None:
    messages = [{"role": "user", "content": "hello"}]
    tools = [{"name": "lookup", "description": "Look a thing up", "parameters": {"type": "object"}}]
    bare = msgspec.convert({"model": "openai:gpt-4o-mini", "messages": messages}, EstimateCostParams)
    with_tools = msgspec.convert(
        {"model": "openai:gpt-4o-mini", "messages": messages, "tools": tools, "compare": ["openai:gpt-4.1"]},
        EstimateCostParams,
    )
    plain = await services.catalog.estimate_cost(bare, Ctx())
    richer = await services.catalog.estimate_cost(with_tools, Ctx())
    assert richer.input_tokens > plain.input_tokens
    (other,) = richer.comparisons
    assert other.model == "openai:gpt-4.1" and other.cost_usd is not None and richer.cost_usd is not None
    assert other.cost_usd > richer.cost_usd
