"""What the ledger says: `usage_summary` (requests, tokens, cost, latency and cache figures over a
span, grouped by provider, model, day, tag, client key or router, with this month's projection), and the
per-client-key totals the gateway shows (which go with a key when it is renamed).

Must not know: stdin/stdout, SQL, budgets.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import anyio.to_thread

from sidecar.core import budget as policy
from sidecar.core import usage_stats
from sidecar.core.budget import OVERALL
from sidecar.errors import invalid_request
from sidecar.infra.ledger import Ledger
from sidecar.services.context import CallContext
from sidecar.wire.usage import MonthProjection, UsageGroup, UsageSummaryParams, UsageSummaryResult


class UsageReport:
    def __init__(self, ledger: Ledger, clock: Callable[[], dt.datetime]) -> None:
        self.ledger = ledger
        self.clock = clock

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
                router=params.router,
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
        return await anyio.to_thread.run_sync(self.ledger.client_totals)

    async def rename_client(self, old: str, new: str) -> int:
        """Move a renamed client key's rows and spend to its new name; how many rows moved."""
        return await anyio.to_thread.run_sync(self.ledger.rename_client, old, new)

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
