"""The budget check of every chat request: before it is sent, and settling after it ends.

- `before(ref, params)`: with budgets that apply to the request (overall, its provider, a run cap
  when it has a `run_id`), estimates its input tokens and input cost (core.tokens, the catalog)
  and raises `budget_exceeded` before anything is sent when it would cross a hard limit
  (core.budget). The spend of the day and the month comes from memory (`Ledger.period_spends`: the
  rollups as last read plus every row queued since), so the check is a comparison (`spent` answers
  the same figures for a client key's and a router's scope, to the gateway and the routers); the rollups
  are read again in the background while checks come (`core.kept`), and on the request's path
  only for the first check, after a long pause, or when a new month began. A soft run cap only warns (a
  log line and a `budget/alert`). Without budgets it costs one cached list lookup. When the
  database can't be read the request goes ahead (logged): a broken state file must not stop every
  request.
- Across requests running at once (and, with Redis, across replicas) the estimate is also
  *reserved* on every budget line that applies (overall and the provider's, day and month, and the
  gateway client key's own) through the coordination seam (`infra.coordination`): a request is
  refused when spent + what others hold + its estimate would pass a limit, so many concurrent
  requests can no longer each pass a nearly spent budget. `settle` settles the reservation with
  the real cost (or releases it); one left behind by a dead process lapses after `hold_s`.

Must not know: stdin/stdout, SQL, providers' wire formats, how the ledger row is built.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Final

import anyio.to_thread

from sidecar import logs
from sidecar.core import budget as policy
from sidecar.core import cost, tokens, usage_stats
from sidecar.core.budget import Budget, scope_name
from sidecar.core.counters import BudgetLine, BudgetRefusal, Reservation
from sidecar.core.kept import Kept
from sidecar.core.models import ModelRef
from sidecar.errors import SidecarError
from sidecar.infra.ledger import TALLY_TTL_S, Ledger
from sidecar.infra.ledger_rows import client_scope
from sidecar.services.budget_alerts import BudgetAlerts
from sidecar.services.budget_book import BudgetBook
from sidecar.services.context import current_client
from sidecar.services.outcome import Outcome
from sidecar.services.pricing import Pricing
from sidecar.wire.chat import CompleteParams

if TYPE_CHECKING:
    from sidecar.infra.coordination import Coordinator

ClientLimits = Callable[[str], Awaitable[tuple[float | None, float | None]]]
"""A gateway client key's own (daily, monthly) USD limits, by its name."""
DEFAULT_HOLD_S: Final = 330.0
"""How long a reservation outlives a request that never finishes (a killed process)."""
PERIOD_GRACE_S: Final = 3600.0

# The reservation a request holds between `before` and `settle` (the same task runs both).
_held: contextvars.ContextVar[Reservation | None] = contextvars.ContextVar("budget_hold", default=None)

_log = logs.get_logger("usage")


class BudgetGate:
    def __init__(
        self,
        ledger: Ledger,
        pricing: Pricing,
        budgets: BudgetBook,
        alerts: BudgetAlerts,
        coordinator: Coordinator,
        clock: Callable[[], dt.datetime],
        *,
        client_limits: ClientLimits | None = None,
        hold_s: float = DEFAULT_HOLD_S,
    ) -> None:
        self.ledger = ledger
        self.pricing = pricing
        self.budgets = budgets
        self.alerts = alerts
        self.coordinator = coordinator
        self.clock = clock
        self.client_limits = client_limits
        self.hold_s = hold_s
        self._plans: dict[str, _Plan] = {}
        # The spend in memory, read again in the background while budget checks use it, so that
        # a check after a pause does not wait for the query. Its value: the first day it covers.
        self._spend: Kept[str] = Kept(self._read_spend, ttl_s=TALLY_TTL_S, name="spend")
        self._spend_from = ""

    async def aclose(self) -> None:
        """Stop reading the spend in the background (the ledger is about to close)."""
        await self._spend.aclose()

    async def _read_spend(self) -> str:
        first_day = self._spend_from
        await anyio.to_thread.run_sync(self.ledger.refresh_spends, first_day)
        return first_day

    async def spent(self, keys: Sequence[tuple[str, str]]) -> list[float]:
        """USD spent in each `(scope, period)` (see `Ledger.period_spends`), every process's rows
        as last read plus this one's queued since: from memory, read again in the background while
        asked; on the caller's path only the first time, after a pause, or in a new month."""
        if not keys:
            return []
        self._spend_from = min(period[:7] for _, period in keys) + "-01"
        await self._spend.get()
        spent = self.ledger.period_spends(keys)
        if spent is None:  # read too late, or a new month: one query
            spent = await anyio.to_thread.run_sync(self.ledger.read_period_spends, keys)
        return spent

    async def client_spent(self, client: str, windows: Sequence[policy.Window]) -> list[float]:
        """USD a gateway client key spent in each of `windows` (a UTC day, a month), as `spent`."""
        return await self.spent([(client_scope(client), w.key) for w in windows])

    async def before(self, ref: ModelRef, params: CompleteParams) -> None:
        try:
            budgets = await self.budgets.current()
        except (sqlite3.Error, OSError, SidecarError) as exc:
            _log.warning("budgets unreadable, request not checked", error=type(exc).__name__)
            return
        plan = self._plans.get(ref.provider)
        if plan is None or plan.budgets is not budgets:
            plan = self._plans[ref.provider] = _Plan(budgets, ref.provider)
        money = plan.money
        run_id = params.run_id
        capped = plan.capped if run_id else []
        client = current_client.get()
        client_limits: tuple[float | None, float | None] = (None, None)
        if client is not None and self.client_limits is not None:
            client_limits = await self.client_limits(client)
        if not money and not capped and client_limits == (None, None):
            return
        now = self.clock()
        est_tokens = tokens.estimate_input_tokens(params.messages, params.tools)
        info, _ = self.pricing.info_for(ref)
        # One estimate gives both the input cost (what is checked) and, with the `max_tokens`
        # the request asked for, the most it may cost (what is held).
        estimate = cost.estimate(info, est_tokens, params.max_tokens or 0) if info is not None else None
        est_cost = estimate.input_cost if estimate is not None else 0.0
        lines_of = plan.lines(policy.windows(now))
        try:
            spent = await self.spent(lines_of.keys)
            used = (
                await anyio.to_thread.run_sync(self.ledger.run_tokens, run_id, [b.scope for b in capped])
                if run_id and capped
                else []
            )
        except (sqlite3.Error, OSError, SidecarError) as exc:
            _log.warning("ledger unreadable, request not checked", error=type(exc).__name__)
            return
        lines: list[BudgetLine] = []
        for (b, w, limit, key, expires_at), committed in zip(lines_of.checks, spent, strict=True):
            refusal = policy.check_spend(b, w.period, now, committed, est_cost)
            if refusal is not None:
                _log.info("request refused: budget", scope=b.scope, period=w.period, provider=ref.provider)
                raise SidecarError(
                    "budget_exceeded",
                    refusal.message(),
                    provider=ref.provider,
                    details={
                        "scope": scope_name(refusal.scope),
                        "period": refusal.period,
                        "period_key": refusal.period_key,
                        "limit_usd": refusal.limit_usd,
                        "spent_usd": round(refusal.spent_usd, 10),
                        "estimated_cost_usd": refusal.estimated_cost_usd,
                        "estimated_input_tokens": est_tokens,
                        "resets_at": usage_stats.iso(refusal.resets_at),
                    },
                )
            if limit is not None:
                lines.append(BudgetLine(key, limit, committed, expires_at))
        for b, run_used in zip(capped, used, strict=True):
            assert run_id is not None
            check = policy.check_run(b, run_id, run_used, est_tokens)
            if check is None:
                continue
            if check.hard:
                _log.info("request refused: run token cap", scope=b.scope, provider=ref.provider)
                raise SidecarError(
                    "budget_exceeded",
                    check.message(),
                    provider=ref.provider,
                    details={
                        "scope": scope_name(check.scope),
                        "period": "run",
                        "run_id": run_id,
                        "limit_tokens": check.limit_tokens,
                        "used_tokens": check.used_tokens,
                        "estimated_input_tokens": check.estimated_tokens,
                    },
                )
            _log.warning("run past its soft token cap", scope=b.scope, used_tokens=check.used_tokens)
            alert = policy.run_warning_alert(check, self.alerts.sent)
            if alert is not None:
                try:
                    await anyio.to_thread.run_sync(self.alerts.send, [alert])
                except (sqlite3.Error, OSError) as exc:  # a warning must not fail the request
                    _log.warning("budget alert not recorded", error=type(exc).__name__)
        # The hold covers what the request may cost: its input, and its output up to the
        # `max_tokens` it asked for (a request that names no cap holds its input alone).
        hold = est_cost
        if estimate is not None and params.max_tokens is not None:
            hold = estimate.max_total
        if client is not None and client_limits != (None, None):
            lines.extend(await self._client_lines(client, client_limits, now, hold))
        if lines:
            await self._reserve(ref, lines, hold, est_tokens, now)

    async def _client_lines(
        self, client: str, limits: tuple[float | None, float | None], now: dt.datetime, est_cost: float
    ) -> list[BudgetLine]:
        """A client key's budget admits a request while what it spent and holds is below its
        limit (the gateway's rule: the last request may finish past it); the line's limit is
        raised by the estimate so the reservation rule says exactly that."""
        windows = policy.windows(now)
        try:
            spent = await self.client_spent(client, windows)
        except (sqlite3.Error, OSError, SidecarError) as exc:
            _log.warning("ledger unreadable, client budget not checked", error=type(exc).__name__)
            return []
        out = []
        for w, committed, limit in zip(windows, spent, limits, strict=True):
            if limit is not None:
                key = f"budget:{client_scope(client)}:{w.key}"
                line = BudgetLine(key, limit + est_cost - 1e-9, committed, w.end.timestamp() + PERIOD_GRACE_S)
                out.append(line)
        return out

    async def _reserve(
        self, ref: ModelRef, lines: list[BudgetLine], est_cost: float, est_tokens: int, now: dt.datetime
    ) -> None:
        held = await self.coordinator.reserve(lines, est_cost, self.hold_s)
        if isinstance(held, Reservation):
            _held.set(held)
            return
        refusal: BudgetRefusal = held
        # `budget:<scope>:<period key>`, or `budget:client:<name>:<period key>`
        parts = refusal.key.split(":")
        period_key = parts[-1]
        period = "day" if len(period_key) == 10 else "month"
        scope = ":".join(parts[1:-1])
        w = policy.window(period, now)  # type: ignore[arg-type]
        others = refusal.spent_usd + refusal.reserved_usd
        limit = refusal.limit_usd
        if scope.startswith("client:"):
            what, limit = scope.replace("client:", "client key ", 1), round(limit - est_cost + 1e-9, 10)
        else:
            what = scope_name(scope)
        span = "daily" if period == "day" else "monthly"
        _log.info("request refused: budget reserved", scope=scope, period=period, provider=ref.provider)
        raise SidecarError(
            "budget_exceeded",
            f"Request refused before sending: the {what} {span} budget of ${limit:g} is spent "
            f"or held by requests still running (${refusal.spent_usd:.4f} spent, "
            f"${refusal.reserved_usd:.4f} held, this one needs about ${refusal.requested_usd:.4f}).",
            provider=ref.provider,
            retry_after_s=5.0 if others < limit else (w.end - now).total_seconds(),
            details={
                "scope": what,
                "period": period,
                "period_key": period_key,
                "limit_usd": limit,
                "spent_usd": round(refusal.spent_usd, 10),
                "reserved_usd": round(refusal.reserved_usd, 10),
                "estimated_cost_usd": est_cost,
                "estimated_input_tokens": est_tokens,
                "resets_at": usage_stats.iso(w.end),
            },
        )

    async def settle(self, outcome: Outcome) -> None:
        """Settle the request's reservation with its real cost (release it when it was refused)."""
        held = _held.get()
        if held is not None:
            _held.set(None)
            if outcome.status == "refused":
                await self.coordinator.release(held)
            else:
                await self.coordinator.settle(held, outcome.cost_usd or 0.0)


class _Lines:
    """The budget lines of one provider's requests on one UTC day: what `period_spends` is asked
    for (`keys`) and, in the same order, each line's budget, window, limit (None when the budget
    limits only the other period), coordination key and expiry."""

    __slots__ = ("checks", "keys", "windows")

    def __init__(self, money: list[Budget], windows: tuple[policy.Window, ...]) -> None:
        self.windows = windows
        self.keys = [(b.scope, w.key) for b in money for w in windows]
        self.checks = [
            (b, w, b.limit(w.period), f"budget:{b.scope}:{w.key}", w.end.timestamp() + PERIOD_GRACE_S)
            for b in money
            for w in windows
        ]


class _Plan:
    """What `before` works out once per provider and list of budgets (re-read every few seconds,
    a new list each time) rather than on every request: which budgets apply, and their lines of
    the current day."""

    __slots__ = ("_lines", "budgets", "capped", "money")

    def __init__(self, budgets: list[Budget], provider: str) -> None:
        self.budgets = budgets
        relevant = policy.applicable(budgets, provider)
        self.money = [b for b in relevant if b.daily_usd is not None or b.monthly_usd is not None]
        self.capped = [
            b for b in relevant if b.run_token_limit_soft is not None or b.run_token_limit_hard is not None
        ]
        self._lines: _Lines | None = None

    def lines(self, windows: tuple[policy.Window, ...]) -> _Lines:
        """The lines for `windows` (`policy.windows(now)`, the same tuple all day long)."""
        lines = self._lines
        if lines is None or lines.windows is not windows:
            lines = self._lines = _Lines(self.money, windows)
        return lines
