"""Usage, budgets and prices: `usage_summary`, `set_budget`, `get_budgets`, `refresh_pricing`, and
the chat hooks that refuse a request over budget and write every request to the ledger.

- `before(ref, params)`: with budgets that apply to the request (overall, its provider, a run cap
  when it has a `run_id`), estimates its input tokens and input cost (core.tokens, the catalog)
  and raises `budget_exceeded` before anything is sent when it would cross a hard limit
  (core.budget). A soft run cap only warns (a log line and a `budget/alert`). Without budgets it
  costs one cached list lookup. When the database can't be read the request goes ahead (logged):
  a broken state file must not stop every request.
- Across requests running at once (and, with Redis, across replicas) the estimate is also
  *reserved* on every budget line that applies (overall and the provider's, day and month, and the
  gateway client key's own) through the coordination seam (`infra.coordination`): a request is
  refused when spent + what others hold + its estimate would pass a limit, so many concurrent
  requests can no longer each pass a nearly spent budget. `after` settles the reservation with
  the real cost (or releases it); one left behind by a dead process lapses after `hold_s`.
- `after(outcome)`: queues the ledger row (and an audit row per failed try that was followed by
  another: `fallback` to another model, `retry` of the same one) and returns; the
  ledger's writer commits it. After each commit, on the writer thread, spending alerts are
  checked and sent through `broadcast` (set by the server; alerts belong to no single request).

Must not know: stdin/stdout, SQL, providers' wire formats.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import itertools
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.to_thread
import msgspec

from sidecar import logs
from sidecar.core import budget as policy
from sidecar.core import cost, tokens, usage_stats
from sidecar.core.budget import OVERALL, PERIODS, Alert, AlertKey, Budget
from sidecar.core.counters import BudgetLine, BudgetRefusal, Reservation
from sidecar.core.models import ModelRef
from sidecar.errors import SidecarError, invalid_request
from sidecar.infra.ledger import AuditNote, Ledger, Row
from sidecar.infra.price_store import PriceStore
from sidecar.infra.prices import SqlPriceStore
from sidecar.providers.http import HttpClient, Timeouts
from sidecar.providers.openrouter_models import parse_models
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.chat import Outcome
from sidecar.services.context import CallContext, Handler, current_client
from sidecar.services.pricing import Pricing
from sidecar.wire.base import Empty, Wire
from sidecar.wire.chat import CompleteParams
from sidecar.wire.usage import (
    BudgetAlertParams,
    BudgetStatus,
    GetBudgetsResult,
    MonthProjection,
    RefreshPricingResult,
    SetBudgetParams,
    SetBudgetResult,
    UsageGroup,
    UsageSummaryParams,
    UsageSummaryResult,
)

if TYPE_CHECKING:
    from sidecar.infra.coordination import Coordinator

BUDGETS_TTL_S: Final = 2.0
"""How long the budgets read from the database are reused; another process's `set_budget` is
seen within this time (this process's own changes at once)."""
REFRESH_TIMEOUTS: Final = Timeouts(connect_s=10.0, read_s=30.0)
ALERT_METHOD: Final = "budget/alert"

Clock = Callable[[], dt.datetime]
Broadcast = Callable[[str, Wire], None]
ClientLimits = Callable[[str], Awaitable[tuple[float | None, float | None]]]
"""A gateway client key's own (daily, monthly) USD limits, by its name."""
DEFAULT_HOLD_S: Final = 330.0
"""How long a reservation outlives a request that never finishes (a killed process)."""
PERIOD_GRACE_S: Final = 3600.0

# The reservation a request holds between `before` and `after` (the same task runs both).
_held: contextvars.ContextVar[Reservation | None] = contextvars.ContextVar("budget_hold", default=None)

_log = logs.get_logger("usage")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _scope_name(scope: str) -> str:
    return "overall" if scope == OVERALL else scope


class UsageService:
    def __init__(
        self,
        ledger: Ledger,
        pricing: Pricing,
        providers: ProviderRegistry,
        http: HttpClient,
        *,
        clock: Clock = utcnow,
        broadcast: Broadcast | None = None,
        price_store: PriceStore | SqlPriceStore | None = None,
        coordinator: Coordinator | None = None,
        client_limits: ClientLimits | None = None,
        hold_s: float = DEFAULT_HOLD_S,
    ) -> None:
        if coordinator is None:
            from sidecar.infra.coordination import LocalCoordinator

            coordinator = LocalCoordinator()
        self.coordinator = coordinator
        self.client_limits = client_limits
        self.hold_s = hold_s
        self.price_store = price_store
        self.ledger = ledger
        self.pricing = pricing
        self.providers = providers
        self.http = http
        self.clock = clock
        self.broadcast = broadcast
        self._budgets: list[Budget] | None = None
        self._budgets_at = 0.0
        self._sent: set[AlertKey] = set()
        ledger.on_commit = self._after_commit

    def handlers(self) -> dict[str, Handler]:
        return {
            "usage_summary": self.usage_summary,
            "set_budget": self.set_budget,
            "get_budgets": self.get_budgets,
            "refresh_pricing": self.refresh_pricing,
        }

    def close(self) -> None:
        """Commit what is queued (a clean shutdown loses no row)."""
        self.ledger.close(timeout=0.5)

    # --- chat hooks ------------------------------------------------------------------------------

    async def before(self, ref: ModelRef, params: CompleteParams) -> None:
        try:
            budgets = await self._current_budgets()
        except (sqlite3.Error, OSError, SidecarError) as exc:
            _log.warning("budgets unreadable, request not checked", error=type(exc).__name__)
            return
        relevant = policy.applicable(budgets, ref.provider)
        money = [b for b in relevant if b.daily_usd is not None or b.monthly_usd is not None]
        run_id = params.run_id
        capped = (
            [b for b in relevant if b.run_token_limit_soft is not None or b.run_token_limit_hard is not None]
            if run_id
            else []
        )
        client = current_client.get()
        client_limits: tuple[float | None, float | None] = (None, None)
        if client is not None and self.client_limits is not None:
            client_limits = await self.client_limits(client)
        if not money and not capped and client_limits == (None, None):
            return
        now = self.clock()
        est_tokens = tokens.estimate_input_tokens(params.messages, params.tools)
        info, _ = self.pricing.info_for(ref)
        est_cost = cost.estimate(info, est_tokens, 0).input_cost if info is not None else 0.0
        windows = policy.windows(now)
        keys = [(b.scope, w.key) for b in money for w in windows]
        try:
            spent = self.ledger.period_spends(keys) if keys else []
            if spent is None:  # not read for a while, or a new month: one query
                spent = await anyio.to_thread.run_sync(self.ledger.read_period_spends, keys)
            used = (
                await anyio.to_thread.run_sync(self.ledger.run_tokens, run_id, [b.scope for b in capped])
                if run_id and capped
                else []
            )
        except (sqlite3.Error, OSError, SidecarError) as exc:
            _log.warning("ledger unreadable, request not checked", error=type(exc).__name__)
            return
        figures = iter(spent)
        lines: list[BudgetLine] = []
        for b in money:
            for w in windows:
                period = w.period
                committed = next(figures)
                refusal = policy.check_spend(b, period, now, committed, est_cost)
                limit = b.limit(period)
                if refusal is None and limit is not None:
                    line = BudgetLine(
                        f"budget:{b.scope}:{w.key}", limit, committed, w.end.timestamp() + PERIOD_GRACE_S
                    )
                    lines.append(line)
                if refusal is not None:
                    _log.info("request refused: budget", scope=b.scope, period=period, provider=ref.provider)
                    raise SidecarError(
                        "budget_exceeded",
                        refusal.message(),
                        provider=ref.provider,
                        details={
                            "scope": _scope_name(refusal.scope),
                            "period": refusal.period,
                            "period_key": refusal.period_key,
                            "limit_usd": refusal.limit_usd,
                            "spent_usd": round(refusal.spent_usd, 10),
                            "estimated_cost_usd": refusal.estimated_cost_usd,
                            "estimated_input_tokens": est_tokens,
                            "resets_at": usage_stats.iso(refusal.resets_at),
                        },
                    )
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
                        "scope": _scope_name(check.scope),
                        "period": "run",
                        "run_id": run_id,
                        "limit_tokens": check.limit_tokens,
                        "used_tokens": check.used_tokens,
                        "estimated_input_tokens": check.estimated_tokens,
                    },
                )
            _log.warning("run past its soft token cap", scope=b.scope, used_tokens=check.used_tokens)
            alert = policy.run_warning_alert(check, self._sent)
            if alert is not None:
                try:
                    await anyio.to_thread.run_sync(self._send_alerts, [alert])
                except (sqlite3.Error, OSError) as exc:  # a warning must not fail the request
                    _log.warning("budget alert not recorded", error=type(exc).__name__)
        # The hold covers what the request may cost: its input, and its output up to the
        # `max_tokens` it asked for (a request that names no cap holds its input alone).
        hold = est_cost
        if info is not None and params.max_tokens is not None:
            hold = cost.estimate(info, est_tokens, params.max_tokens).max_total
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
        windows = [policy.window(p, now) for p in PERIODS]
        periods = [(w.start.timestamp(), now.timestamp() + 1) for w in windows]
        try:
            spent = await anyio.to_thread.run_sync(self.ledger.client_spends, client, periods)
        except (sqlite3.Error, OSError, SidecarError) as exc:
            _log.warning("ledger unreadable, client budget not checked", error=type(exc).__name__)
            return []
        out = []
        for w, committed, limit in zip(windows, spent, limits, strict=True):
            if limit is not None:
                key = f"budget:client:{client}:{w.key}"
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
            what = _scope_name(scope)
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

    async def after(self, outcome: Outcome) -> None:
        held = _held.get()
        if held is not None:
            _held.set(None)
            if outcome.status == "refused":
                await self.coordinator.release(held)
            else:
                await self.coordinator.settle(held, outcome.cost_usd or 0.0)
        now = self.clock().timestamp()
        usage = outcome.usage
        row = Row(
            ts=now,
            method=outcome.method,
            provider=outcome.provider,
            model=outcome.model,
            outcome=outcome.status,
            latency_ms=round(outcome.latency_ms, 3),
            error_kind=outcome.error_kind,
            input_tokens=usage.input_tokens if usage else None,
            output_tokens=usage.output_tokens if usage else None,
            cache_read_tokens=usage.cache_read_tokens if usage else None,
            cache_write_tokens=usage.cache_write_tokens if usage else None,
            reasoning_tokens=usage.reasoning_tokens if usage else None,
            usage_estimated=outcome.usage_estimated,
            cost_usd=outcome.cost_usd,
            pricing_date=outcome.pricing_date,
            attempts=max(len(outcome.attempts), 1),
            run_id=outcome.run_id,
            tag=outcome.tag,
            client=current_client.get(),
            reason=outcome.reason,
            cache_hit=outcome.cache_hit,
            saved_usd=outcome.saved_usd,
        )
        self.ledger.record(row)
        # A failed try followed by another: "fallback" when the next try is another model,
        # "retry" when it is the same one again.
        attempts = outcome.attempts
        for failed, following in itertools.pairwise(attempts):
            if failed.ok:
                continue
            source, target = f"{failed.provider}:{failed.model}", f"{following.provider}:{following.model}"
            detail = {"from": source, "to": target, "error": failed.error}
            event = "retry" if source == target else "fallback"
            self.ledger.note(
                AuditNote(now, event, failed.provider, failed.error or "error", json.dumps(detail))
            )

    # --- alerts (writer thread) ------------------------------------------------------------------

    def _after_commit(self, rows: list[Row]) -> None:
        rows = [r for r in rows if r.outcome != "refused"]  # refusals spend nothing
        if not rows:
            return
        budgets = self._budgets if self._budgets is not None else self.ledger.budgets()
        if not budgets:
            return
        providers = {r.provider for r in rows}
        now = self.clock()
        money = [
            b
            for b in budgets
            if (b.provider is None or b.provider in providers)
            and (b.daily_usd is not None or b.monthly_usd is not None)
        ]
        due: list[Alert] = []
        if money:
            windows = policy.windows(now)
            keys = [(b.scope, w.key) for b in money for w in windows]
            spent = iter(self.ledger.period_spends(keys) or self.ledger.read_period_spends(keys))
            for b in money:
                for period in PERIODS:
                    due.extend(policy.spend_alerts(b, period, now, next(spent), self._sent))
        runs = {(r.run_id, r.provider) for r in rows if r.run_id}
        for run_id, provider in sorted(runs):
            soft = [b for b in policy.applicable(budgets, provider) if b.run_token_limit_soft is not None]
            if not soft:
                continue
            for b, used in zip(soft, self.ledger.run_tokens(run_id, [b.scope for b in soft]), strict=True):
                alert = policy.run_alert(b, run_id, used, self._sent)
                if alert is not None:
                    due.append(alert)
        if due:
            self._send_alerts(due)

    def _send_alerts(self, alerts: list[Alert]) -> None:
        """Send each alert no process has sent yet (the database remembers)."""
        ts = self.clock().timestamp()
        for alert in alerts:
            if alert.key in self._sent:
                continue
            self._sent.add(alert.key)
            if not self.ledger.mark_alert(alert.key, ts):
                continue
            params = BudgetAlertParams(
                kind=alert.key.kind,
                scope=_scope_name(alert.key.scope),
                provider=None if alert.key.scope == OVERALL else alert.key.scope,
                period=alert.period,
                period_key=alert.key.period_key,
                limit=alert.limit,
                spent=round(alert.spent, 10),
                threshold=alert.threshold,
                run_id=alert.run_id,
                message=alert.message(),
            )
            _log.warning(
                "budget alert", kind=alert.key.kind, scope=alert.key.scope, period=alert.key.period_key
            )
            if self.broadcast is not None:
                try:
                    self.broadcast(ALERT_METHOD, params)
                except Exception:
                    _log.exception("budget alert not delivered")

    # --- budgets ---------------------------------------------------------------------------------

    async def _current_budgets(self) -> list[Budget]:
        if self._budgets is None or time.monotonic() - self._budgets_at > BUDGETS_TTL_S:
            try:
                self._budgets = await anyio.to_thread.run_sync(self.ledger.budgets)
            except SidecarError:
                if self._budgets is None:
                    raise
                _log.warning("budgets not re-read: storage unavailable; the last ones apply")
            self._budgets_at = time.monotonic()
        return self._budgets

    async def set_budget(self, params: SetBudgetParams, ctx: CallContext) -> SetBudgetResult:
        if params.provider is not None:
            self.providers.spec(params.provider)  # unknown -> unsupported_provider
        current = {b.provider: b for b in await anyio.to_thread.run_sync(self.ledger.budgets)}
        before = current.get(params.provider) or Budget(params.provider)
        changes = {
            name: value
            for name in (
                "daily_usd",
                "monthly_usd",
                "alert_threshold",
                "run_token_limit_soft",
                "run_token_limit_hard",
            )
            if (value := getattr(params, name)) is not msgspec.UNSET
        }
        if changes.get("alert_threshold", 0.0) is None:
            changes["alert_threshold"] = policy.DEFAULT_ALERT_THRESHOLD
        after = Budget(**{**_budget_fields(before), **changes})
        soft, hard = after.run_token_limit_soft, after.run_token_limit_hard
        if soft is not None and hard is not None and soft > hard:
            raise invalid_request(
                f"run_token_limit_soft ({soft}) is above run_token_limit_hard ({hard}); the soft cap warns "
                "before the hard cap refuses, so it must not be larger.",
                field="run_token_limit_soft",
            )
        now = self.clock()
        note = AuditNote(
            now.timestamp(),
            "budget_cleared" if after.empty else "budget_set",
            params.provider,
            "ok",
            json.dumps(
                {"scope": _scope_name(after.scope), "before": _budget_fields(before), "after": changes}
            ),
        )
        await anyio.to_thread.run_sync(self.ledger.put_budget, after, now.timestamp(), note)
        self._budgets = None  # this process sees its own change at once
        _log.info("budget changed", scope=after.scope, removed=after.empty)
        if after.empty:
            return SetBudgetResult(removed=True)
        (status,) = await self._statuses([after])
        return SetBudgetResult(budget=status)

    async def get_budgets(self, params: Empty, ctx: CallContext) -> GetBudgetsResult:
        budgets = await anyio.to_thread.run_sync(self.ledger.budgets)
        self._budgets, self._budgets_at = budgets, time.monotonic()
        return GetBudgetsResult(budgets=await self._statuses(budgets))

    async def _statuses(self, budgets: list[Budget]) -> list[BudgetStatus]:
        now = self.clock()
        day, month = policy.window("day", now), policy.window("month", now)
        queries = [(b.scope, w.first_day, w.end_day) for b in budgets for w in (day, month)]
        spent = iter(await anyio.to_thread.run_sync(self.ledger.spends, queries) if queries else [])
        out: list[BudgetStatus] = []
        for b in budgets:
            today, this_month = next(spent), next(spent)
            out.append(
                BudgetStatus(
                    scope=_scope_name(b.scope),
                    provider=b.provider,
                    daily_usd=b.daily_usd,
                    monthly_usd=b.monthly_usd,
                    alert_threshold=b.alert_threshold,
                    run_token_limit_soft=b.run_token_limit_soft,
                    run_token_limit_hard=b.run_token_limit_hard,
                    day=day.key,
                    month=month.key,
                    spent_today_usd=round(today, 10),
                    spent_month_usd=round(this_month, 10),
                    remaining_today_usd=None
                    if b.daily_usd is None
                    else round(max(b.daily_usd - today, 0.0), 10),
                    remaining_month_usd=(
                        None if b.monthly_usd is None else round(max(b.monthly_usd - this_month, 0.0), 10)
                    ),
                )
            )
        return out

    # --- analytics -------------------------------------------------------------------------------

    async def usage_summary(self, params: UsageSummaryParams, ctx: CallContext) -> UsageSummaryResult:
        now = self.clock()
        month = policy.window("month", now)
        since = self._bound(params.since, "since", end=False) if params.since else month.start
        until = self._bound(params.until, "until", end=True) if params.until else now
        if until < since:
            raise invalid_request("`until` is before `since`; swap them.", field="until")
        # This process's queued rows belong in the answer: commit them first.
        await anyio.to_thread.run_sync(self.ledger.flush)

        def query() -> tuple[list[usage_stats.Sample], list[float]]:
            samples = self.ledger.samples(
                since.timestamp(),
                until.timestamp(),
                params.group_by,
                provider=params.provider,
                tag=params.tag,
                run_id=params.run_id,
                client=params.client,
            )
            return samples, self.ledger.spends([(OVERALL, month.first_day, month.end_day)])

        samples, (month_spent,) = await anyio.to_thread.run_sync(query)
        total, groups = usage_stats.summarise(samples)
        projection = usage_stats.month_projection(month_spent, now)
        return UsageSummaryResult(
            since=usage_stats.iso(since),
            until=usage_stats.iso(until),
            group_by=params.group_by,
            total=_group(total),
            groups=[_group(g) for g in groups] if params.group_by else [],
            month=MonthProjection(
                month=projection.month,
                spent_usd=projection.spent_usd,
                projected_usd=projection.projected_usd,
                elapsed_fraction=projection.elapsed_fraction,
                method=usage_stats.PROJECTION_METHOD,
            ),
        )

    async def client_totals(self) -> dict[str, tuple[int, float]]:
        """Requests and USD of every gateway client key, over the whole ledger."""
        await anyio.to_thread.run_sync(self.ledger.flush)
        samples = await anyio.to_thread.run_sync(
            lambda: self.ledger.samples(0.0, self.clock().timestamp() + 1, "client")
        )
        _, groups = usage_stats.summarise(samples)
        return {g.key: (g.requests, g.cost_usd) for g in groups if g.key is not None}

    async def client_spend(self, client: str) -> tuple[float, float]:
        """USD spent today and this month (UTC) by one gateway client key."""
        now = self.clock()
        day = policy.window("day", now)
        month = policy.window("month", now)
        periods = [
            (day.start.timestamp(), now.timestamp() + 1),
            (month.start.timestamp(), now.timestamp() + 1),
        ]
        today, this_month = await anyio.to_thread.run_sync(self.ledger.client_spends, client, periods)
        return today, this_month

    @staticmethod
    def _bound(text: str, name: str, *, end: bool) -> dt.datetime:
        try:
            return usage_stats.parse_bound(text, end=end)
        except ValueError:
            raise invalid_request(
                f"`{name}` must be an ISO 8601 date or time, like 2026-11-01 or 2026-11-01T09:30:00Z; "
                f"got {text!r}.",
                field=name,
            ) from None

    # --- prices ----------------------------------------------------------------------------------

    async def refresh_pricing(self, params: Empty, ctx: CallContext) -> RefreshPricingResult:
        spec = self.providers.spec("openrouter")
        url = f"{spec.base_url}/models"
        body, _ = await self.http.request_json("openrouter", "GET", url, timeouts=REFRESH_TIMEOUTS)
        try:
            entries, skipped = parse_models(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise SidecarError(
                "provider_error",
                "OpenRouter's model list could not be read (not the expected JSON); prices were not changed.",
                provider="openrouter",
            ) from None
        date = self.clock().date().isoformat()
        applied = self.pricing.book.apply_overrides(entries, date)
        if self.price_store is not None:  # kept, so a restart prices with them too
            try:
                await self.price_store.replace("openrouter", entries, url, date)
            except (sqlite3.Error, OSError, SidecarError) as exc:
                _log.warning("refreshed prices not saved", error=type(exc).__name__)
        _log.info("prices refreshed", applied=applied, models=len(entries), skipped=skipped)
        return RefreshPricingResult(
            applied=applied,
            models=len(entries),
            skipped=skipped + len(entries) - applied,
            pricing_date=date,
            source=url,
        )


def _budget_fields(b: Budget) -> dict[str, Any]:
    return {
        "provider": b.provider,
        "daily_usd": b.daily_usd,
        "monthly_usd": b.monthly_usd,
        "alert_threshold": b.alert_threshold,
        "run_token_limit_soft": b.run_token_limit_soft,
        "run_token_limit_hard": b.run_token_limit_hard,
    }


def _group(g: usage_stats.GroupStats) -> UsageGroup:
    return UsageGroup(
        key=g.key,
        requests=g.requests,
        ok=g.ok,
        errors=g.errors,
        cancelled=g.cancelled,
        input_tokens=g.input_tokens,
        output_tokens=g.output_tokens,
        cache_read_tokens=g.cache_read_tokens,
        cache_write_tokens=g.cache_write_tokens,
        reasoning_tokens=g.reasoning_tokens,
        cost_usd=round(g.cost_usd, 10),
        unpriced_requests=g.unpriced_requests,
        error_rate=round(g.error_rate, 6),
        refused=g.refused,
        cache_hits=g.cache_hits,
        cache_hit_rate=round(g.cache_hit_rate, 6),
        saved_usd=round(g.saved_usd, 10),
        latency_ms_p50=None if g.latency_p50 is None else round(g.latency_p50, 3),
        latency_ms_p95=None if g.latency_p95 is None else round(g.latency_p95, 3),
    )
