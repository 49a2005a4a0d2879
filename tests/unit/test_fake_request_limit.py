"""The fakes' request limit: spent by requests, refilled by time, its reset the time to whole."""

from __future__ import annotations

import pytest

from sidecar.core.ratelimit import parse_go_duration
from tests.clock import ManualClock
from tests.fakes.request_limit import RequestLimit, go_duration


def test_requests_spend_the_limit_and_time_gives_it_back() -> None:
    clock = ManualClock(100.0)
    limit = RequestLimit(600, clock)  # 10 a second
    assert limit.take() == (599, pytest.approx(0.1))
    for _ in range(598):
        limit.take()
    assert limit.take() == (0, pytest.approx(60.0))
    assert limit.take()[0] == 0  # spent: it stays at nothing, never below
    clock.now += 1.0
    remaining, full_in_s = limit.take()
    assert remaining == 9 and full_in_s == pytest.approx(59.1)
    clock.now += 3600.0
    assert limit.take() == (599, pytest.approx(0.1))  # whole again, never above the limit


def test_a_steady_rate_under_the_limit_never_spends_it() -> None:
    clock = ManualClock(100.0)
    limit = RequestLimit(600, clock)
    for _ in range(10_000):  # 5 a second against a refill of 10
        clock.now += 0.2
        remaining, _ = limit.take()
    assert remaining == 599


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0004, "1ms"),
        (0.012, "12ms"),
        (0.1, "100ms"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (59.1, "59.1s"),
        (360.0, "6m0s"),
    ],
)
def test_resets_are_written_as_go_durations_the_sidecar_reads(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text
    assert parse_go_duration(text) == pytest.approx(max(seconds, 0.001), abs=1e-3)
