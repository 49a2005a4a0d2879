"""core.budget: UTC periods, hard limits, run token caps and once-per-period alerts, with an
injected clock."""

from __future__ import annotations

import datetime as dt

import pytest

from sidecar.core import budget as policy
from sidecar.core.budget import OVERALL, AlertKey, Budget


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


class Clock:
    """A settable clock, as the service's `clock` would be in a test."""

    def __init__(self, start: str) -> None:
        self.now = at(start)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


# --- periods -------------------------------------------------------------------------------------


def test_day_window_is_the_utc_calendar_day() -> None:
    w = policy.window("day", at("2026-11-22T23:59:59.999"))
    assert w.key == "2026-11-22"
    assert (w.start, w.end) == (at("2026-11-22T00:00:00"), at("2026-11-23T00:00:00"))
    assert (w.first_day, w.end_day) == ("2026-11-22", "2026-11-23")


def test_month_window_spans_the_calendar_month_including_leap_february() -> None:
    w = policy.window("month", at("2028-02-29T12:00:00"))
    assert w.key == "2028-02"
    assert (w.first_day, w.end_day) == ("2028-02-01", "2028-03-01")
    december = policy.window("month", at("2026-12-31T23:00:00"))
    assert (december.key, december.end_day) == ("2026-12", "2027-01-01")


def test_periods_use_utc_whatever_the_clock_zone() -> None:
    # 01:30 in UTC+02:00 on the 1st is still the last day of the previous month in UTC.
    local = dt.datetime(2026, 12, 1, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert policy.window("day", local).key == "2026-11-30"
    assert policy.window("month", local).key == "2026-11"
    assert policy.window("day", dt.datetime(2026, 12, 1, 1, 30)).key == "2026-12-01"  # naive = UTC


def test_applicable_budgets_are_overall_then_the_provider() -> None:
    budgets = [Budget("openai", daily_usd=1), Budget(None, monthly_usd=5), Budget("anthropic", daily_usd=2)]
    assert [b.scope for b in policy.applicable(budgets, "openai")] == [OVERALL, "openai"]
    assert [b.scope for b in policy.applicable(budgets, "gemini")] == [OVERALL]


# --- hard limits ---------------------------------------------------------------------------------


def test_request_refused_when_spend_already_reached_the_limit() -> None:
    b = Budget(None, daily_usd=1.0)
    refusal = policy.check_spend(b, "day", at("2026-11-22T10:00:00"), spent_usd=1.0, estimated_cost_usd=0.0)
    assert refusal is not None
    assert (refusal.limit_usd, refusal.spent_usd, refusal.period_key) == (1.0, 1.0, "2026-11-22")
    assert refusal.resets_at == at("2026-11-23T00:00:00")
    text = refusal.message()
    assert "used up" in text and "$1.00 of $1.00" in text and "set_budget" in text and "2026-11-23" in text


def test_request_refused_when_its_input_alone_would_cross_the_limit() -> None:
    b = Budget("openai", monthly_usd=10.0)
    now = at("2026-11-22T10:00:00")
    assert policy.check_spend(b, "month", now, spent_usd=9.5, estimated_cost_usd=0.5) is None  # lands on it
    refusal = policy.check_spend(b, "month", now, spent_usd=9.5, estimated_cost_usd=0.51)
    assert refusal is not None and refusal.scope == "openai" and refusal.period == "month"
    assert "would exceed the openai monthly budget" in refusal.message()
    assert "estimated $0.51 for its input alone" in refusal.message()


def test_no_limit_for_the_period_means_no_refusal() -> None:
    b = Budget(None, daily_usd=None, monthly_usd=1.0)
    assert policy.check_spend(b, "day", at("2026-11-22T00:00:00"), 100.0, 1.0) is None


def test_spend_check_rolls_over_with_the_day() -> None:
    clock = Clock("2026-11-22T23:59:00")
    b = Budget(None, daily_usd=1.0)
    assert policy.check_spend(b, "day", clock(), 1.2, 0.0) is not None
    clock.advance(minutes=2)
    # The caller asks for the new day's spend, which starts at zero.
    assert policy.window("day", clock()).key == "2026-11-23"
    assert policy.check_spend(b, "day", clock(), 0.0, 0.1) is None


# --- run token caps ------------------------------------------------------------------------------


def test_run_hard_cap_refuses_and_soft_cap_warns() -> None:
    b = Budget(None, run_token_limit_soft=100, run_token_limit_hard=200)
    assert policy.check_run(b, "r1", used_tokens=50, estimated_tokens=40) is None
    soft = policy.check_run(b, "r1", used_tokens=90, estimated_tokens=20)
    assert soft is not None and not soft.hard and soft.limit_tokens == 100
    assert "soft cap of 100" in soft.message()
    hard = policy.check_run(b, "r1", used_tokens=190, estimated_tokens=20)
    assert hard is not None and hard.hard and hard.limit_tokens == 200
    assert "refused" in hard.message() and "'r1'" in hard.message()
    assert policy.check_run(b, "r1", used_tokens=200, estimated_tokens=0) is not None


def test_run_without_caps_is_never_checked() -> None:
    assert policy.check_run(Budget(None, daily_usd=1), "r", 10**9, 10**9) is None


# --- alerts --------------------------------------------------------------------------------------


def test_threshold_alert_is_due_once_per_period_and_again_after_rollover() -> None:
    clock = Clock("2026-11-22T08:00:00")
    b = Budget("openai", daily_usd=10.0, alert_threshold=0.8)
    sent: set[AlertKey] = set()

    def step(spent: float) -> list[str]:
        due = policy.spend_alerts(b, "day", clock(), spent, sent)
        sent.update(a.key for a in due)
        return [a.key.kind for a in due]

    assert step(7.9) == []
    assert step(8.0) == ["threshold"]
    assert step(9.0) == []  # already sent this day
    assert step(10.0) == ["limit_reached"]
    assert step(12.0) == []
    clock.advance(hours=16)  # 2026-11-23 00:00
    assert step(8.5) == ["threshold"]
    assert AlertKey("openai", "threshold", "2026-11-23") in sent
    assert AlertKey("openai", "threshold", "2026-11-22") in sent


def test_monthly_alerts_roll_over_with_the_month_not_the_day() -> None:
    clock = Clock("2026-11-30T23:00:00")
    b = Budget(None, monthly_usd=100.0, alert_threshold=0.5)
    sent: set[AlertKey] = set()
    first = policy.spend_alerts(b, "month", clock(), 60.0, sent)
    assert [a.key for a in first] == [AlertKey(OVERALL, "threshold", "2026-11")]
    sent.update(a.key for a in first)
    clock.advance(minutes=30)
    assert policy.spend_alerts(b, "month", clock(), 70.0, sent) == []
    clock.advance(hours=1)  # December
    again = policy.spend_alerts(b, "month", clock(), 60.0, sent)
    assert [a.key.period_key for a in again] == ["2026-12"]
    assert "Overall monthly budget at 60%" in again[0].message()


def test_crossing_threshold_and_limit_at_once_sends_both() -> None:
    b = Budget(None, daily_usd=1.0)
    due = policy.spend_alerts(b, "day", at("2026-11-22T00:00:00"), 1.5, set())
    assert [a.key.kind for a in due] == ["threshold", "limit_reached"]
    assert "refused" in due[1].message()


def test_run_soft_alert_once_per_run() -> None:
    b = Budget("openai", run_token_limit_soft=100)
    sent: set[AlertKey] = set()
    assert policy.run_alert(b, "r1", 100, sent) is None  # at the cap is not past it
    alert = policy.run_alert(b, "r1", 101, sent)
    assert alert is not None and alert.key == AlertKey("openai", "run_tokens_soft", "run:r1")
    assert "run 'r1' has used 101 tokens" in alert.message()
    sent.add(alert.key)
    assert policy.run_alert(b, "r1", 500, sent) is None
    assert policy.run_alert(b, "r2", 500, sent) is not None


def test_soft_warning_found_before_sending_becomes_an_alert_hard_does_not() -> None:
    b = Budget(None, run_token_limit_soft=10, run_token_limit_hard=1000)
    check = policy.check_run(b, "r", 8, 5)
    assert check is not None and not check.hard
    alert = policy.run_warning_alert(check, set())
    assert alert is not None and alert.spent == 13 and alert.limit == 10
    hard = policy.check_run(b, "r", 999, 5)
    assert hard is not None and hard.hard
    assert policy.run_warning_alert(hard, set()) is None


@pytest.mark.parametrize(
    ("budget", "empty"),
    [
        (Budget(None), True),
        (Budget("openai", alert_threshold=0.5), True),
        (Budget(None, daily_usd=0.0), False),
        (Budget(None, run_token_limit_hard=5), False),
    ],
)
def test_a_budget_without_limits_is_empty(budget: Budget, empty: bool) -> None:
    assert budget.empty is empty


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (0, "$0.00"),
        (12.5, "$12.50"),
        (1234.567, "$1234.57"),
        (0.0123, "$0.0123"),
        (0.00000375, "$0.00000375"),
    ],
)
def test_usd_shows_fractions_of_a_cent(amount: float, text: str) -> None:
    assert policy.usd(amount) == text
