"""Budgets as stored: `set_budget` and `get_budgets` (each budget with what it has spent today
and this month), and the list the other budget parts read, re-read from the database every
`BUDGETS_TTL_S` (this process's own changes at once), ahead of the requests while they are in use
(`core.kept`).

Must not know: how a request is checked against them (services.budget_gate), alerts, SQL.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any, Final

import anyio.to_thread
import msgspec

from sidecar import logs
from sidecar.core import budget as policy
from sidecar.core.budget import Budget, scope_name
from sidecar.core.kept import Kept
from sidecar.errors import SidecarError, invalid_request
from sidecar.infra.ledger import AuditNote, Ledger
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.context import CallContext
from sidecar.wire.base import Empty
from sidecar.wire.usage import BudgetStatus, GetBudgetsResult, SetBudgetParams, SetBudgetResult

BUDGETS_TTL_S: Final = 2.0
"""How long the budgets read from the database are reused; another process's `set_budget` is
seen within this time (this process's own changes at once)."""

_log = logs.get_logger("usage")


class BudgetBook:
    def __init__(self, ledger: Ledger, providers: ProviderRegistry, clock: Callable[[], dt.datetime]) -> None:
        self.ledger = ledger
        self.providers = providers
        self.clock = clock
        # While the database is away the last budgets read apply.
        self._kept: Kept[list[Budget]] = Kept(
            self._read, ttl_s=BUDGETS_TTL_S, last_on=(SidecarError,), name="budgets"
        )

    @property
    def cached(self) -> list[Budget] | None:
        """The budgets as last read (None before the first read, or after a change)."""
        return self._kept.value

    async def current(self) -> list[Budget]:
        """The budgets, no older than `BUDGETS_TTL_S` (re-read ahead of the requests while they
        are in use); the last ones when the database is away (raises when there are none)."""
        return await self._kept.get()

    async def aclose(self) -> None:
        """Stop re-reading in the background (the database is about to close)."""
        await self._kept.aclose()

    async def _read(self) -> list[Budget]:
        return await anyio.to_thread.run_sync(self.ledger.budgets)

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
                {"scope": scope_name(after.scope), "before": _budget_fields(before), "after": changes}
            ),
        )
        await anyio.to_thread.run_sync(self.ledger.put_budget, after, now.timestamp(), note)
        self._kept.forget()  # this process sees its own change at once
        _log.info("budget changed", scope=after.scope, removed=after.empty)
        if after.empty:
            return SetBudgetResult(removed=True)
        (status,) = await self.statuses([after])
        return SetBudgetResult(budget=status)

    async def get_budgets(self, params: Empty, ctx: CallContext) -> GetBudgetsResult:
        budgets = await anyio.to_thread.run_sync(self.ledger.budgets)
        self._kept.put(budgets)
        return GetBudgetsResult(budgets=await self.statuses(budgets))

    async def statuses(self, budgets: list[Budget]) -> list[BudgetStatus]:
        now = self.clock()
        day, month = policy.window("day", now), policy.window("month", now)
        queries = [(b.scope, w.first_day, w.end_day) for b in budgets for w in (day, month)]
        spent = iter(await anyio.to_thread.run_sync(self.ledger.spends, queries) if queries else [])
        out: list[BudgetStatus] = []
        for b in budgets:
            today, this_month = next(spent), next(spent)
            out.append(
                BudgetStatus(
                    scope=scope_name(b.scope),
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


def _budget_fields(b: Budget) -> dict[str, Any]:
    return {
        "provider": b.provider,
        "daily_usd": b.daily_usd,
        "monthly_usd": b.monthly_usd,
        "alert_threshold": b.alert_threshold,
        "run_token_limit_soft": b.run_token_limit_soft,
        "run_token_limit_hard": b.run_token_limit_hard,
    }
