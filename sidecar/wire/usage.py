"""Wire types of usage and budgets: `usage_summary`, `set_budget`, `get_budgets`,
`refresh_pricing`, and the `budget/alert` notification.

Must not know: how the ledger stores rows, how budgets are decided, the protocol layer.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from sidecar.wire.base import Params, Wire

GroupBy = Literal["provider", "model", "day", "tag", "client", "router"]
NonNegativeUsd = Annotated[float, msgspec.Meta(ge=0)]
TokenCap = Annotated[int, msgspec.Meta(ge=1)]


class UsageSummaryParams(Params):
    """`since`/`until`: ISO 8601 dates or times (no offset = UTC); a bare `until` date includes
    that whole day. Defaults: the start of the current month (UTC) until now. `client` and
    `router` keep the requests of one gateway client key or one router (by name)."""

    since: str | None = None
    until: str | None = None
    group_by: GroupBy | None = None
    provider: str | None = None
    tag: str | None = None
    run_id: str | None = None
    client: str | None = None
    router: str | None = None


class UsageGroup(Wire):
    """Totals of a set of requests. `key` names the group (a provider, `provider:model`, a day, a
    tag, a client key or a router; absent for the total and for requests without a tag, client key
    or router). `error_rate` = errors / requests
    (cancelled requests are not errors); latencies are over every request of the group. `refused`
    counts requests refused before sending (a budget, a client-side limit): they are not errors
    and carry no tokens, cost or latency. `cache_hits` counts answers from the response cache (no
    tokens, no cost); `cache_hit_rate` is their share of the requests answered, and `saved_usd`
    what those answers cost when they were first made."""

    requests: int
    ok: int
    errors: int
    cancelled: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_usd: float
    error_rate: float
    key: str | None = None
    unpriced_requests: int = 0
    latency_ms_p50: float | None = None
    latency_ms_p95: float | None = None
    refused: int = 0
    cache_hits: int = 0
    cache_hit_rate: float = 0.0
    saved_usd: float = 0.0


class MonthProjection(Wire):
    month: str
    spent_usd: float
    projected_usd: float
    elapsed_fraction: float
    method: str


class UsageSummaryResult(Wire):
    since: str
    until: str
    total: UsageGroup
    month: MonthProjection
    group_by: GroupBy | None = None
    groups: list[UsageGroup] = msgspec.field(default_factory=list)


class SetBudgetParams(Params):
    """Set the budget of `provider`, or the overall budget without one. A field left out keeps its
    value; `null` clears it. A budget whose limits are all cleared is removed.

    Periods are UTC calendar days and months. A request is refused before it is sent when the
    period's spend has reached the limit, or when the request's estimated input cost would take
    it past the limit (its output can't be known in advance, so one request may overshoot by
    what its answer costs). Run caps count input + output tokens of every request with the same
    `run_id`: past the soft cap a `budget/alert` warns, the hard cap refuses."""

    provider: str | None = None
    daily_usd: NonNegativeUsd | msgspec.UnsetType | None = msgspec.UNSET
    monthly_usd: NonNegativeUsd | msgspec.UnsetType | None = msgspec.UNSET
    alert_threshold: Annotated[float, msgspec.Meta(gt=0, le=1)] | msgspec.UnsetType | None = msgspec.UNSET
    run_token_limit_soft: TokenCap | msgspec.UnsetType | None = msgspec.UNSET
    run_token_limit_hard: TokenCap | msgspec.UnsetType | None = msgspec.UNSET


class BudgetStatus(Wire):
    """A budget with what has been spent in its current periods (UTC day and month)."""

    scope: str  # "overall" or the provider id
    alert_threshold: float
    day: str
    month: str
    spent_today_usd: float
    spent_month_usd: float
    provider: str | None = None
    daily_usd: float | None = None
    monthly_usd: float | None = None
    run_token_limit_soft: int | None = None
    run_token_limit_hard: int | None = None
    remaining_today_usd: float | None = None
    remaining_month_usd: float | None = None


class SetBudgetResult(Wire):
    removed: bool = False
    budget: BudgetStatus | None = None


class GetBudgetsResult(Wire):
    budgets: list[BudgetStatus]


class RefreshPricingResult(Wire):
    applied: int
    models: int
    skipped: int
    pricing_date: str
    source: str


class BudgetAlertParams(Wire):
    """`kind`: `threshold` (spend reached `threshold` x limit), `limit_reached` (spend reached the
    limit: further requests are refused), `run_tokens_soft` (a run passed its soft token cap).
    Sent once per budget, kind and period (`period_key`: `YYYY-MM-DD`, `YYYY-MM` or `run:<id>`).
    `limit` and `spent` are USD, or tokens for `run_tokens_soft`."""

    kind: Literal["threshold", "limit_reached", "run_tokens_soft"]
    scope: str
    period: Literal["day", "month", "run"]
    period_key: str
    limit: float
    spent: float
    message: str
    provider: str | None = None
    threshold: float | None = None
    run_id: str | None = None
