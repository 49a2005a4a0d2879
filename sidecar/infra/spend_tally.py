"""Spend per budget period kept in memory, so a budget check is a dictionary lookup, not a query.

`SpendTally` holds USD per (scope, period): scope `*` (every provider), a provider id, or a named
scope (`client:<name>` for a gateway client key, `router:<name>` for a router), period a UTC day
`YYYY-MM-DD` or month `YYYY-MM`. It is seeded from the `spend_daily` and `spend_daily_scoped`
rollups from the first day of a month on (`reset`, with the rows still queued), then advanced by
each row as it is queued (`add`). Periods before the seeded month are not known (`get` answers
None; ask the database).

The ledger owns one, guards it with its own lock and re-seeds it every few seconds, which is how
other processes' spending comes in (see `infra.ledger`).

Must not know: SQL, threads, how budgets are decided.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

OVERALL: Final = "*"


class SpendTally:
    __slots__ = ("_spent", "since_month")

    def __init__(self) -> None:
        self._spent: dict[tuple[str, str], float] = {}
        self.since_month: str | None = None  # `YYYY-MM`; None until seeded

    def add(self, day: str, provider: str, cost_usd: float, scopes: Iterable[str] = ()) -> None:
        """Count `cost_usd` spent on UTC `day` (`YYYY-MM-DD`) with `provider`, and in each of the
        named `scopes` the request belongs to."""
        if not cost_usd:
            return
        self._count(day, (provider, OVERALL, *scopes), cost_usd)

    def reset(
        self,
        first_day: str,
        spend: Iterable[tuple[str, str, float]],
        scoped: Iterable[tuple[str, str, float]] = (),
    ) -> None:
        """Start again from `spend` (day, provider, USD) and `scoped` (day, named scope, USD), both
        covering every day from `first_day` (`YYYY-MM-01`) on."""
        self._spent = {}
        self.since_month = first_day[:7]
        for day, provider, cost in spend:
            self.add(day, provider, cost)
        for day, scope, cost in scoped:
            if cost:
                self._count(day, (scope,), cost)

    def _count(self, day: str, scopes: Iterable[str], cost_usd: float) -> None:
        spent = self._spent
        month = day[:7]
        for scope in scopes:
            for key in ((scope, day), (scope, month)):
                spent[key] = spent.get(key, 0.0) + cost_usd

    def get_all(self, keys: Sequence[tuple[str, str]]) -> list[float] | None:
        """`get` of each `(scope, period)`, in one call; None when any of them is not known here."""
        since, spent = self.since_month, self._spent
        if since is None:
            return None
        out = []
        for key in keys:
            if key[1][:7] < since:
                return None
            out.append(spent.get(key, 0.0))
        return out

    def get(self, scope: str, period: str) -> float | None:
        """USD spent in `period` (a day or a month) by `scope`; None when not known here."""
        if self.since_month is None or period[:7] < self.since_month:
            return None
        return self._spent.get((scope, period), 0.0)
