"""core.usage_stats: percentiles, grouping, error rate, month projection, summary bounds."""

from __future__ import annotations

import datetime as dt

import pytest

from sidecar.core.usage_stats import Sample, month_projection, parse_bound, percentile, summarise


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def test_percentile_interpolates_between_ranks() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0) == 10.0
    assert percentile(values, 50) == 25.0
    assert percentile(values, 100) == 40.0
    assert percentile(values, 95) == pytest.approx(38.5)
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_percentiles_of_one_to_a_hundred() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)


def test_summarise_groups_counts_tokens_cost_and_error_rate() -> None:
    samples = [
        Sample("openai", "ok", 10, 5, 2, 0, 1, 0.01, 100.0),
        Sample("openai", "error", 0, 0, 0, 0, 0, None, 50.0),
        Sample("openai", "cancelled", 4, 1, 0, 0, 0, 0.002, 300.0),
        Sample("anthropic", "ok", 20, 10, 0, 3, 0, 0.05, 200.0),
    ]
    total, groups = summarise(samples)
    assert total.requests == 4 and (total.ok, total.errors, total.cancelled) == (2, 1, 1)
    assert total.error_rate == 0.25  # cancelled is not an error
    assert total.input_tokens == 34 and total.output_tokens == 16
    assert total.cache_read_tokens == 2 and total.cache_write_tokens == 3 and total.reasoning_tokens == 1
    assert total.cost_usd == pytest.approx(0.062) and total.unpriced_requests == 1
    assert [g.key for g in groups] == ["anthropic", "openai"]  # most expensive first
    openai = groups[1]
    assert openai.requests == 3 and openai.error_rate == pytest.approx(1 / 3)
    assert openai.latency_p50 == 100.0 and openai.latency_p95 == pytest.approx(280.0)


def test_untagged_rows_form_their_own_group_last() -> None:
    _, groups = summarise([Sample(None, "ok", cost_usd=1.0), Sample("a", "ok", cost_usd=1.0)])
    assert [g.key for g in groups] == ["a", None]


def test_empty_summary_has_zero_totals_and_no_latency() -> None:
    total, groups = summarise([])
    assert total.requests == 0 and total.error_rate == 0.0 and total.latency_p50 is None and groups == []


def test_month_projection_divides_by_elapsed_fraction() -> None:
    # November has 30 days; the 16th at 00:00 is exactly half-way.
    p = month_projection(15.0, at("2026-11-16T00:00:00"))
    assert p.month == "2026-11" and p.elapsed_fraction == 0.5 and p.projected_usd == pytest.approx(30.0)


def test_month_projection_early_in_the_month_uses_at_least_one_day() -> None:
    p = month_projection(1.0, at("2026-11-01T00:30:00"))
    assert p.projected_usd == pytest.approx(30.0)  # 1 USD over "one day" of 30
    assert month_projection(0.0, at("2026-11-01T00:00:00")).projected_usd == 0.0


def test_month_projection_at_the_end_of_the_month_is_the_spend() -> None:
    p = month_projection(42.0, at("2026-11-30T23:59:59.999999"))
    assert p.projected_usd == pytest.approx(42.0, rel=1e-6)


@pytest.mark.parametrize(
    ("text", "end", "expected"),
    [
        ("2026-11-01", False, "2026-11-01T00:00:00"),
        ("2026-11-01", True, "2026-11-02T00:00:00"),  # a bare `until` date includes that day
        ("2026-11-01T09:30:00Z", True, "2026-11-01T09:30:00"),
        ("2026-11-01T09:30:00", False, "2026-11-01T09:30:00"),
        ("2026-11-01T11:30:00+02:00", False, "2026-11-01T09:30:00"),
    ],
)
def test_parse_bound(text: str, end: bool, expected: str) -> None:
    assert parse_bound(text, end=end) == at(expected)


def test_parse_bound_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_bound("last tuesday", end=False)
