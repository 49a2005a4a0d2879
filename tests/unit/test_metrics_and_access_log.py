"""Pure parts of watching the gateway: minute metrics, bucketed series, and which access-log days
are gzipped or deleted."""

from __future__ import annotations

import datetime as dt

from sidecar.core.metrics import MinuteMetrics, Sample, bucketed, percentile, series
from sidecar.gateway.access import iso_now
from sidecar.infra.access_log import housekeeping


def sample(
    ts: float, provider: str = "openai", client: str | None = "a", outcome: str = "ok", **kw: float
) -> Sample:
    return Sample(
        ts=ts,
        provider=provider,
        client=client,
        outcome=outcome,
        input_tokens=int(kw.get("inp", 10)),
        output_tokens=int(kw.get("out", 5)),
        cost_usd=kw.get("cost", 0.01),
        latency_ms=kw.get("lat", 100.0),
    )


def test_minute_metrics_series_per_group_with_every_step() -> None:
    m = MinuteMetrics()
    base = 1_800_000_000 - 1_800_000_000 % 60
    m.add(sample(base + 1, lat=10))
    m.add(sample(base + 2, provider="anthropic", client="b", outcome="error", lat=30))
    m.add(sample(base + 125, lat=20))
    rows = dict(m.query(base, base + 180, "requests", "provider"))
    assert rows == {"anthropic": [(base, 1.0), (base + 60, 0.0), (base + 120, 0.0)],
                    "openai": [(base, 1.0), (base + 60, 0.0), (base + 120, 1.0)]}  # fmt: skip
    (everything,) = m.query(base, base + 180, "success_rate", None)
    assert everything == (None, [(base, 0.5), (base + 60, None), (base + 120, 1.0)])
    (tokens,) = m.query(base, base + 60, "tokens", "client")[:1]
    assert tokens == ("a", [(base, 15.0)])
    assert m.totals[("openai", "a")].requests == 2


def test_a_renamed_client_keys_minutes_and_totals_go_under_its_new_name() -> None:
    m = MinuteMetrics()
    base = 1_800_000_000 - 1_800_000_000 % 60
    m.add(sample(base + 1, client="old", lat=10))
    m.add(sample(base + 2, client="new", lat=30))  # a key of that name already had some
    m.add(sample(base + 61, provider="anthropic", client="old", outcome="error"))
    m.add(sample(base + 62, client="other"))
    m.rename_client("old", "new")
    assert dict(m.query(base, base + 120, "requests", "client")) == {
        "new": [(base, 2.0), (base + 60, 1.0)],
        "other": [(base, 0.0), (base + 60, 1.0)],
    }
    first_minute = m.minutes()[0][1]
    assert sorted(first_minute[("openai", "new", None)].latencies) == [10.0, 30.0]
    assert {k: b.requests for k, b in m.totals.items()} == {
        ("openai", "new"): 2,
        ("anthropic", "new"): 1,
        ("openai", "other"): 1,
    }


def test_minute_metrics_and_ledger_buckets_group_by_router() -> None:
    m = MinuteMetrics()
    base = 1_800_000_000 - 1_800_000_000 % 60
    routed = [
        Sample(ts=base + 1, provider="openai", client="a", outcome="ok", input_tokens=10, output_tokens=5,
               cost_usd=0.01, latency_ms=10.0, router="cheap"),
        Sample(ts=base + 2, provider="anthropic", client="a", outcome="ok", input_tokens=10, output_tokens=5,
               cost_usd=0.02, latency_ms=10.0, router="cheap"),
        sample(base + 3),  # no router
    ]  # fmt: skip
    for s in routed:
        m.add(s)
    assert dict(m.query(base, base + 60, "requests", "router")) == {
        "cheap": [(base, 2.0)],
        None: [(base, 1.0)],
    }
    assert dict(m.query(base, base + 60, "cost", "router"))["cheap"] == [(base, 0.03)]
    # Prometheus' totals stay per provider and client key: a router adds no series there.
    assert sorted(m.totals) == [("anthropic", "a"), ("openai", "a")]
    assert m.totals[("openai", "a")].requests == 2
    from_ledger = series(bucketed(routed, base, base + 60, 60, "router"), base, base + 60, 60, "requests")
    assert from_ledger == [("cheap", [(base, 2.0)]), (None, [(base, 1.0)])]


def test_minute_metrics_forget_beyond_the_horizon() -> None:
    m = MinuteMetrics(horizon_min=2)
    m.add(sample(0))
    m.add(sample(60))
    m.add(sample(180))
    assert [t for t, v in m.query(0, 240, "requests", None)[0][1] if v] == [180]
    assert m.totals[("openai", "a")].requests == 3  # totals are since start


def test_bucketed_and_percentiles() -> None:
    samples = [sample(3600 * h + 5, lat=float(h)) for h in range(5)]
    rows = series(bucketed(samples, 0, 5 * 3600, 3600, None), 0, 5 * 3600, 3600, "latency_p95")
    assert rows == [(None, [(3600 * h, float(h)) for h in range(5)])]
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([], 95) is None


def test_access_log_housekeeping_gzips_earlier_days_and_deletes_old_ones() -> None:
    today = dt.date(2026, 12, 1)
    names = [
        "access-2026-12-01.jsonl",
        "access-2026-11-30.jsonl",
        "access-2026-11-29.jsonl.gz",
        "access-2026-11-02.jsonl",
        "access-2026-11-01.jsonl.gz",
        "other.txt",
    ]
    to_gzip, to_delete = housekeeping(names, today, keep_days=30)
    assert to_gzip == ["access-2026-11-02.jsonl", "access-2026-11-30.jsonl"]
    assert to_delete == ["access-2026-11-01.jsonl.gz"]


def test_access_timestamps_are_utc_iso_to_the_millisecond() -> None:
    for _ in range(3):
        before = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        stamp = iso_now()
        after = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert len(stamp) == len("2026-01-02T03:04:05.678Z") and stamp.endswith("Z")
        assert before <= stamp <= after  # same format, so text order is time order
        dt.datetime.fromisoformat(stamp)
