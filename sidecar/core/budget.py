"""Budget policy: spending limits per UTC day and month, per-run token caps, alert thresholds.

Pure decisions over figures the caller supplies (what was spent, what a request is estimated to
cost, what a run has used); the clock is the caller's `now`, an aware datetime, so periods roll
over in tests without waiting.

The rules, as a user reads them:

- A budget belongs to one provider, or to everything (`provider` None, the "overall" budget).
  A request is checked against the overall budget and its provider's budget.
- Periods are calendar periods in UTC: the day from 00:00 to 24:00, the month from the 1st.
- "Would cross a hard limit" means: the period's spend has already reached the limit
  (spent >= limit), or the request's estimated input cost alone would take it past the limit
  (spent + input cost > limit). The input cost is the least the request can cost (the answer may
  be short); refusing on the most it could cost (every `max_tokens` token) would refuse requests
  that end up cheap. So one request may overshoot a limit by what its answer costs, never more.
- Run token caps count every token of every request with the same `run_id` (input + output,
  as the ledger recorded them). Hard: refused when the run has reached the cap or this request's
  estimated input tokens would take it past. Soft: the same test only warns.
- Alerts: `threshold` when a period's spend reaches `alert_threshold` x limit, `limit_reached`
  when it reaches the limit, `run_tokens_soft` when a run passes its soft cap. Each is due once
  per budget, kind and period (`AlertKey`); the caller remembers which were sent.

Must not know: I/O of any kind (no clock, no database), wire types, providers.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import math
from collections.abc import Container, Iterable
from dataclasses import dataclass
from typing import Final, Literal

OVERALL: Final = "*"
"""The scope of the overall budget (a provider's budget has the provider id as its scope)."""
DEFAULT_ALERT_THRESHOLD: Final = 0.8

Period = Literal["day", "month"]
AlertKind = Literal["threshold", "limit_reached", "run_tokens_soft"]
PERIODS: Final[tuple[Period, ...]] = ("day", "month")


@dataclass(frozen=True, slots=True)
class Budget:
    provider: str | None = None
    daily_usd: float | None = None
    monthly_usd: float | None = None
    alert_threshold: float = DEFAULT_ALERT_THRESHOLD
    run_token_limit_soft: int | None = None
    run_token_limit_hard: int | None = None

    @property
    def scope(self) -> str:
        return self.provider or OVERALL

    @property
    def empty(self) -> bool:
        """True when the budget limits nothing (every limit cleared)."""
        return (
            self.daily_usd is None
            and self.monthly_usd is None
            and self.run_token_limit_soft is None
            and self.run_token_limit_hard is None
        )

    def limit(self, period: Period) -> float | None:
        return self.daily_usd if period == "day" else self.monthly_usd

    def describe(self) -> str:
        return "the overall budget" if self.provider is None else f"the {self.provider} budget"


@dataclass(frozen=True, slots=True)
class Window:
    """One calendar period in UTC: `key` is `YYYY-MM-DD` for a day, `YYYY-MM` for a month;
    `start` is inclusive, `end` exclusive."""

    period: Period
    key: str
    start: dt.datetime
    end: dt.datetime

    @property
    def first_day(self) -> str:
        return self.start.date().isoformat()

    @property
    def end_day(self) -> str:
        """The first day after the window (exclusive bound for per-day rollups)."""
        return self.end.date().isoformat()

    def elapsed_fraction(self, now: dt.datetime) -> float:
        total = (self.end - self.start).total_seconds()
        return min(max((now - self.start).total_seconds() / total, 0.0), 1.0)


def usd(amount: float) -> str:
    """A dollar amount with enough decimals to show cents and fractions of a cent alike
    ($12.50, $0.0123, $0.00000375)."""
    if amount == 0:
        return "$0.00"
    decimals = min(max(2, 2 - math.floor(math.log10(abs(amount)))), 10)
    whole, _, cents = f"{amount:.{decimals}f}".partition(".")
    return f"${whole}.{cents[:2]}{cents[2:].rstrip('0')}"


def utc(now: dt.datetime) -> dt.datetime:
    """`now` in UTC; a naive datetime is taken to be UTC already."""
    if now.tzinfo is None:
        return now.replace(tzinfo=dt.UTC)
    return now.astimezone(dt.UTC)


def window(period: Period, now: dt.datetime) -> Window:
    """The day or month (UTC) that contains `now`."""
    now = utc(now)
    if period == "day":
        start = dt.datetime(now.year, now.month, now.day, tzinfo=dt.UTC)
        return Window("day", start.date().isoformat(), start, start + dt.timedelta(days=1))
    start = dt.datetime(now.year, now.month, 1, tzinfo=dt.UTC)
    days = calendar.monthrange(now.year, now.month)[1]
    return Window("month", f"{now.year:04d}-{now.month:02d}", start, start + dt.timedelta(days=days))


def scope_name(scope: str) -> str:
    """How a scope is shown: `overall` for `*`, else the provider id."""
    return "overall" if scope == OVERALL else scope


def windows(now: dt.datetime) -> tuple[Window, ...]:
    """The day and the month (UTC) that contain `now`, in `PERIODS` order (cached per day: a
    budget check asks for them on every request)."""
    now = utc(now)
    return _windows_of(now.year, now.month, now.day)


@functools.lru_cache(maxsize=8)
def _windows_of(year: int, month: int, day: int) -> tuple[Window, ...]:
    now = dt.datetime(year, month, day, tzinfo=dt.UTC)
    return tuple(window(period, now) for period in PERIODS)


def applicable(budgets: Iterable[Budget], provider: str) -> list[Budget]:
    """The budgets a request to `provider` is checked against: the overall one, then the provider's."""
    found = [b for b in budgets if b.provider is None or b.provider == provider]
    return sorted(found, key=lambda b: b.provider is not None)


# --- spending limits -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpendRefusal:
    """Why a request was refused: the figures a person needs to decide what to do."""

    scope: str
    period: Period
    period_key: str
    limit_usd: float
    spent_usd: float
    estimated_cost_usd: float
    resets_at: dt.datetime

    def message(self) -> str:
        what = "overall" if self.scope == OVERALL else f"{self.scope}"
        span = "daily" if self.period == "day" else "monthly"
        spent = f"{usd(self.spent_usd)} of {usd(self.limit_usd)} spent"
        if self.spent_usd >= self.limit_usd:
            why = f"the {what} {span} budget is used up ({spent} in {self.period_key})"
        else:
            why = (
                f"this request (estimated {usd(self.estimated_cost_usd)} for its input alone) would "
                f"exceed the {what} {span} budget ({spent} in {self.period_key})"
            )
        resets = self.resets_at.strftime("%Y-%m-%d %H:%M UTC")
        return (
            f"Request refused before sending: {why}. Raise or clear the limit with set_budget, "
            f"or wait until it resets at {resets}."
        )


def check_spend(
    budget: Budget, period: Period, now: dt.datetime, spent_usd: float, estimated_cost_usd: float
) -> SpendRefusal | None:
    """A refusal when the request would cross the budget's hard limit for `period` (see module doc)."""
    limit = budget.limit(period)
    if limit is None:
        return None
    if spent_usd >= limit or spent_usd + estimated_cost_usd > limit:
        w = window(period, now)
        return SpendRefusal(budget.scope, period, w.key, limit, spent_usd, estimated_cost_usd, w.end)
    return None


# --- run token caps ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunCheck:
    """The run cap a request meets: `hard` refuses it, otherwise it is a warning."""

    scope: str
    run_id: str
    hard: bool
    limit_tokens: int
    used_tokens: int
    estimated_tokens: int

    def message(self) -> str:
        what = "" if self.scope == OVERALL else f" for {self.scope}"
        state = (
            f"has used {self.used_tokens} tokens"
            if self.used_tokens >= self.limit_tokens
            else f"has used {self.used_tokens} tokens and this request adds about {self.estimated_tokens}"
        )
        if self.hard:
            return (
                f"Request refused before sending: run {self.run_id!r} {state}, past its hard cap of "
                f"{self.limit_tokens} tokens{what}. Start a new run, or raise run_token_limit_hard "
                "with set_budget."
            )
        return f"Run {self.run_id!r} {state}, past its soft cap of {self.limit_tokens} tokens{what}."


def check_run(budget: Budget, run_id: str, used_tokens: int, estimated_tokens: int) -> RunCheck | None:
    """The hard cap's refusal if the run would pass it, else the soft cap's warning, else None."""
    for hard, limit in ((True, budget.run_token_limit_hard), (False, budget.run_token_limit_soft)):
        if limit is not None and (used_tokens >= limit or used_tokens + estimated_tokens > limit):
            return RunCheck(budget.scope, run_id, hard, limit, used_tokens, estimated_tokens)
    return None


# --- alerts --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertKey:
    """What makes an alert "the same one": sent at most once per key."""

    scope: str
    kind: AlertKind
    period_key: str  # YYYY-MM-DD, YYYY-MM, or "run:<run_id>"


@dataclass(frozen=True, slots=True)
class Alert:
    key: AlertKey
    period: Literal["day", "month", "run"]
    limit: float
    spent: float
    threshold: float | None = None
    run_id: str | None = None

    def message(self) -> str:
        scope = "Overall" if self.key.scope == OVERALL else self.key.scope
        if self.key.kind == "run_tokens_soft":
            return (
                f"{scope}: run {self.run_id!r} has used {int(self.spent)} tokens, past its soft cap of "
                f"{int(self.limit)} tokens."
            )
        span = "daily" if self.period == "day" else "monthly"
        share = self.spent / self.limit if self.limit > 0 else 1.0
        if self.key.kind == "limit_reached":
            return (
                f"{scope} {span} budget reached: {usd(self.spent)} of {usd(self.limit)} spent in "
                f"{self.key.period_key}; further requests are refused until it resets."
            )
        return (
            f"{scope} {span} budget at {share:.0%}: {usd(self.spent)} of {usd(self.limit)} spent in "
            f"{self.key.period_key}."
        )


def spend_alerts(
    budget: Budget, period: Period, now: dt.datetime, spent_usd: float, sent: Container[AlertKey]
) -> list[Alert]:
    """The spending alerts due for `period` and not in `sent` yet."""
    limit = budget.limit(period)
    if limit is None:
        return []
    key = window(period, now).key
    due: list[Alert] = []
    if spent_usd >= limit * budget.alert_threshold:
        k = AlertKey(budget.scope, "threshold", key)
        if k not in sent:
            due.append(Alert(k, period, limit, spent_usd, threshold=budget.alert_threshold))
    if spent_usd >= limit:
        k = AlertKey(budget.scope, "limit_reached", key)
        if k not in sent:
            due.append(Alert(k, period, limit, spent_usd, threshold=budget.alert_threshold))
    return due


def run_alert(budget: Budget, run_id: str, used_tokens: int, sent: Container[AlertKey]) -> Alert | None:
    """The soft-cap alert of a run that has passed it, unless already in `sent`."""
    limit = budget.run_token_limit_soft
    if limit is None or used_tokens <= limit:
        return None
    k = AlertKey(budget.scope, "run_tokens_soft", f"run:{run_id}")
    if k in sent:
        return None
    return Alert(k, "run", float(limit), float(used_tokens), run_id=run_id)


def run_warning_alert(check: RunCheck, sent: Container[AlertKey]) -> Alert | None:
    """The alert for a soft-cap warning found before sending, unless already in `sent`."""
    if check.hard:
        return None
    k = AlertKey(check.scope, "run_tokens_soft", f"run:{check.run_id}")
    if k in sent:
        return None
    return Alert(
        k,
        "run",
        float(check.limit_tokens),
        float(check.used_tokens + check.estimated_tokens),
        run_id=check.run_id,
    )
