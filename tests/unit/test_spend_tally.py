"""The spend kept in memory (infra.spend_tally), the rollups a batch adds (infra.ledger_rows) and
the UTC day of a Unix time: pure arithmetic, checked without a database."""

from __future__ import annotations

import datetime as dt

import pytest

from sidecar.infra.ledger import _period_days
from sidecar.infra.ledger_rows import Row, rollups, utc_day
from sidecar.infra.spend_tally import SpendTally


def ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def test_utc_day_matches_the_calendar_at_midnight() -> None:
    assert utc_day(ts("2026-11-30T23:59:59.999+00:00")) == "2026-11-30"
    assert utc_day(ts("2026-12-01T00:00:00+00:00")) == "2026-12-01"
    assert utc_day(ts("2026-12-01T01:30:00+02:00")) == "2026-11-30"
    assert utc_day(0.0) == "1970-01-01"


def test_tally_counts_days_months_and_overall_and_knows_what_it_does_not_know() -> None:
    tally = SpendTally()
    assert tally.get("*", "2026-12") is None  # never seeded
    tally.reset("2026-11-01", [("2026-11-30", "openai", 1.0), ("2026-12-01", "xai", 0.5)])
    tally.add("2026-12-01", "openai", 0.25)
    tally.add("2026-12-01", "openai", 0.0)
    assert tally.get("*", "2026-12-01") == pytest.approx(0.75)
    assert tally.get("openai", "2026-12") == pytest.approx(0.25)
    assert tally.get("*", "2026-11") == pytest.approx(1.0)
    assert tally.get("anthropic", "2026-12-01") == 0.0
    assert tally.get("*", "2026-10-31") is None and tally.get("*", "2026-10") is None
    # Several at once, as a budget check asks: all known, or None.
    keys = [("*", "2026-12-01"), ("openai", "2026-12"), ("anthropic", "2026-12-01")]
    assert tally.get_all(keys) == [pytest.approx(0.75), pytest.approx(0.25), 0.0]
    assert tally.get_all([*keys, ("*", "2026-10")]) is None
    assert SpendTally().get_all(keys) is None


def test_rollups_of_a_batch_one_entry_per_key_in_key_order() -> None:
    def row(
        when: str, provider: str, cost: float | None, run: str | None, out: int | None, **named: str
    ) -> Row:
        return Row(ts=ts(when), method="stream", provider=provider, model="m", outcome="ok", latency_ms=1.0,
                   input_tokens=10, output_tokens=out, cost_usd=cost, run_id=run, **named)  # type: ignore[arg-type]  # fmt: skip

    spend, scoped, runs = rollups(
        [
            row("2026-12-01T10:00:00+00:00", "xai", 0.5, "r", 5, client="bob", router="cheap"),
            row("2026-11-30T23:59:59+00:00", "openai", None, None, None, client="bob"),
            row("2026-12-01T11:00:00+00:00", "xai", 0.25, "r", None, client="alice"),
            row("2026-12-01T12:00:00+00:00", "openai", 1.0, "q", 1, router="cheap"),
        ]
    )
    assert spend == [
        ("2026-11-30", "openai", 1, 0.0),
        ("2026-12-01", "openai", 1, 1.0),
        ("2026-12-01", "xai", 2, 0.75),
    ]
    assert scoped == [
        ("2026-11-30", "client:bob", 1, 0.0),
        ("2026-12-01", "client:alice", 1, 0.25),
        ("2026-12-01", "client:bob", 1, 0.5),
        ("2026-12-01", "router:cheap", 2, 1.5),
    ]
    assert runs == [("q", "openai", 11, 1.0), ("r", "xai", 25, 0.75)]


def test_tally_counts_a_client_key_and_a_router_apart_from_the_providers() -> None:
    tally = SpendTally()
    tally.reset(
        "2026-12-01",
        [("2026-12-01", "openai", 1.0)],
        [("2026-12-01", "client:alice", 1.0), ("2026-12-01", "router:other", 9.0)],
    )
    tally.add("2026-12-02", "xai", 0.5, ("client:alice", "router:cheap"))
    tally.add("2026-12-02", "openai", 0.25)
    assert tally.get_all(
        [
            ("client:alice", "2026-12"),
            ("client:alice", "2026-12-02"),
            ("router:cheap", "2026-12"),
            ("*", "2026-12"),
        ]
    ) == [pytest.approx(1.5), pytest.approx(0.5), pytest.approx(0.5), pytest.approx(1.75)]
    # A named scope's spend is part of its provider's, never added to the overall figure again.
    assert tally.get("xai", "2026-12-02") == pytest.approx(0.5)
    assert tally.get("client:bob", "2026-12") == 0.0


def test_period_bounds_for_the_database_fallback() -> None:
    assert _period_days("2026-12") == ("2026-12-01", "2027-01-01")
    assert _period_days("2026-02-28") == ("2026-02-28", "2026-03-01")
