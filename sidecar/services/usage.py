"""Usage, budgets and prices: `usage_summary`, `set_budget`, `get_budgets`, `refresh_pricing`, and
the chat hooks that refuse a request over budget and write every request to the ledger.

`UsageService` puts together the parts, each in its own module:

- `services.budget_gate`: `before` checks a request against its budgets and reserves its estimate
  (raises `budget_exceeded`); the reservation is settled when the request ends.
- `services.usage_rows`: the ledger row of a finished request and its audit rows (fallbacks,
  retries). `after` settles, then queues them and returns; the ledger's writer commits them.
- `services.budget_alerts`: after each commit, on the writer thread, spending alerts are checked
  and sent through `broadcast` (set by the server; alerts belong to no single request).
- `services.budget_book`: `set_budget`, `get_budgets`, and the budgets as last read.
- `services.usage_report`: `usage_summary`, and the gateway's per-client-key figures.
- `services.pricing_refresh`: `refresh_pricing`.

`clock` and `broadcast` may be set after construction (tests, the server); every part reads them
from here.

Must not know: stdin/stdout, SQL, providers' wire formats.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

from sidecar.core import budget as budget_policy
from sidecar.infra.ledger import Ledger
from sidecar.infra.ledger_rows import router_scope
from sidecar.infra.price_store import PriceStore
from sidecar.infra.prices import SqlPriceStore
from sidecar.providers.http import HttpClient
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.budget_alerts import ALERT_METHOD, Broadcast, BudgetAlerts
from sidecar.services.budget_book import BUDGETS_TTL_S, BudgetBook
from sidecar.services.budget_gate import DEFAULT_HOLD_S, PERIOD_GRACE_S, BudgetGate, ClientLimits
from sidecar.services.context import Handler, current_client
from sidecar.services.outcome import Outcome
from sidecar.services.pricing import Pricing
from sidecar.services.pricing_refresh import REFRESH_TIMEOUTS, PricingRefresh
from sidecar.services.usage_report import UsageReport
from sidecar.services.usage_rows import notes_for, row_for

if TYPE_CHECKING:
    from sidecar.core.models import ModelRef
    from sidecar.infra.coordination import Coordinator
    from sidecar.wire.chat import CompleteParams

__all__ = [
    "ALERT_METHOD",
    "BUDGETS_TTL_S",
    "DEFAULT_HOLD_S",
    "PERIOD_GRACE_S",
    "REFRESH_TIMEOUTS",
    "Broadcast",
    "ClientLimits",
    "Clock",
    "UsageService",
    "utcnow",
]

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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
        self.ledger = ledger
        self.clock = clock
        self.broadcast = broadcast
        self.coordinator = coordinator

        def now() -> dt.datetime:
            return self.clock()

        self.budgets = BudgetBook(ledger, providers, now)
        self.alerts = BudgetAlerts(ledger, self.budgets, now, lambda: self.broadcast)
        self.gate = BudgetGate(
            ledger,
            pricing,
            self.budgets,
            self.alerts,
            coordinator,
            now,
            client_limits=client_limits,
            hold_s=hold_s,
        )
        self.report = UsageReport(ledger, now)
        self.prices = PricingRefresh(pricing, providers, http, now, price_store)
        ledger.on_commit = self.alerts.after_commit
        # The methods, by their names here too.
        self.usage_summary = self.report.usage_summary
        self.set_budget = self.budgets.set_budget
        self.get_budgets = self.budgets.get_budgets
        self.refresh_pricing = self.prices.refresh_pricing

    def handlers(self) -> dict[str, Handler]:
        return {
            "usage_summary": self.usage_summary,
            "set_budget": self.set_budget,
            "get_budgets": self.get_budgets,
            "refresh_pricing": self.refresh_pricing,
        }

    async def stop_background(self) -> None:
        """Stop the background reads of the budgets and the spend (the ledger is about to close)."""
        await self.budgets.aclose()
        await self.gate.aclose()

    def close(self, timeout: float | None = None) -> None:
        """Commit what is queued (a clean shutdown loses no row): the ledger waits while its writer
        commits, for `timeout` seconds at most (by default the ledger's own bound)."""
        if timeout is None:
            self.ledger.close()
        else:
            self.ledger.close(timeout=timeout)

    # --- chat hooks ------------------------------------------------------------------------------

    async def before(self, ref: ModelRef, params: CompleteParams) -> None:
        await self.gate.before(ref, params)

    async def after(self, outcome: Outcome) -> None:
        await self.gate.settle(outcome)
        ts = self.clock().timestamp()
        self.ledger.record(row_for(outcome, ts, current_client.get()))
        if len(outcome.attempts) > 1:
            for note in notes_for(outcome, ts):
                self.ledger.note(note)

    # --- the gateway's figures -------------------------------------------------------------------

    async def client_totals(self) -> dict[str, tuple[int, float]]:
        """Requests and USD of every gateway client key, over the whole ledger."""
        return await self.report.client_totals()

    async def rename_client(self, old: str, new: str) -> int:
        """Carry a renamed client key's rows and spend over to its new name; how many rows moved."""
        return await self.report.rename_client(old, new)

    async def client_spend(self, client: str) -> tuple[float, float]:
        """USD spent today and this month (UTC) by one gateway client key, queued rows included."""
        today, this_month = await self.gate.client_spent(client, budget_policy.windows(self.clock()))
        return today, this_month

    async def router_spend(self, router: str, day: str) -> float:
        """USD spent through one router on UTC `day` (`YYYY-MM-DD`), queued rows included."""
        (spent,) = await self.gate.spent([(router_scope(router), day)])
        return spent
