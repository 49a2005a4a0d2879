"""Spending alerts (`budget/alert`): after each committed batch of ledger rows, on the ledger's
writer thread, the budgets those rows touch are checked against the spend of the day and the month
(and runs against their soft token caps); an alert no process has sent yet (the database
remembers, `Ledger.mark_alert`) goes out through `broadcast`, which the server sets (alerts belong
to no single request).

Must not know: stdin/stdout, SQL, how a request is refused (services.budget_gate).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Final

from sidecar import logs
from sidecar.core import budget as policy
from sidecar.core.budget import OVERALL, PERIODS, Alert, AlertKey, scope_name
from sidecar.infra.ledger import Ledger, Row
from sidecar.services.budget_book import BudgetBook
from sidecar.wire.base import Wire
from sidecar.wire.usage import BudgetAlertParams

ALERT_METHOD: Final = "budget/alert"

Broadcast = Callable[[str, Wire], None]

_log = logs.get_logger("usage")


class BudgetAlerts:
    def __init__(
        self,
        ledger: Ledger,
        budgets: BudgetBook,
        clock: Callable[[], dt.datetime],
        broadcast: Callable[[], Broadcast | None],
    ) -> None:
        self.ledger = ledger
        self.budgets = budgets
        self.clock = clock
        self._broadcast = broadcast
        self.sent: set[AlertKey] = set()
        """Alerts this process sent or saw sent (the database decides across processes)."""

    def after_commit(self, rows: list[Row]) -> None:
        rows = [r for r in rows if r.outcome != "refused"]  # refusals spend nothing
        if not rows:
            return
        budgets = self.budgets.cached if self.budgets.cached is not None else self.ledger.budgets()
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
                    due.extend(policy.spend_alerts(b, period, now, next(spent), self.sent))
        runs = {(r.run_id, r.provider) for r in rows if r.run_id}
        for run_id, provider in sorted(runs):
            soft = [b for b in policy.applicable(budgets, provider) if b.run_token_limit_soft is not None]
            if not soft:
                continue
            for b, used in zip(soft, self.ledger.run_tokens(run_id, [b.scope for b in soft]), strict=True):
                alert = policy.run_alert(b, run_id, used, self.sent)
                if alert is not None:
                    due.append(alert)
        if due:
            self.send(due)

    def send(self, alerts: list[Alert]) -> None:
        """Send each alert no process has sent yet (the database remembers)."""
        ts = self.clock().timestamp()
        for alert in alerts:
            if alert.key in self.sent:
                continue
            self.sent.add(alert.key)
            if not self.ledger.mark_alert(alert.key, ts):
                continue
            params = BudgetAlertParams(
                kind=alert.key.kind,
                scope=scope_name(alert.key.scope),
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
            if (broadcast := self._broadcast()) is not None:
                try:
                    broadcast(ALERT_METHOD, params)
                except Exception:
                    _log.exception("budget alert not delivered")
