"""The memory of models that refused to stream: kept for an hour, per provider and model, bounded."""

from __future__ import annotations

from sidecar.core.stream_refusals import MAX_REMEMBERED, REMEMBER_S, StreamRefusals
from tests.clock import ManualClock


def test_a_refusal_is_kept_for_an_hour_then_streaming_is_tried_again() -> None:
    clock = ManualClock()
    refusals = StreamRefusals(clock)
    assert not refusals.refuses("openai", "o3")
    refusals.note("openai", "o3")
    assert refusals.refuses("openai", "o3")
    assert not refusals.refuses("openai", "gpt-5")
    assert not refusals.refuses("openrouter", "o3")
    clock.now += REMEMBER_S - 1
    assert refusals.refuses("openai", "o3")
    clock.now += 1
    assert not refusals.refuses("openai", "o3")


def test_a_new_refusal_starts_the_hour_again() -> None:
    clock = ManualClock()
    refusals = StreamRefusals(clock)
    refusals.note("openai", "o3")
    clock.now += REMEMBER_S - 10
    refusals.note("openai", "o3")
    clock.now += 20
    assert refusals.refuses("openai", "o3")


def test_the_oldest_refusal_makes_room_past_the_bound() -> None:
    refusals = StreamRefusals(ManualClock())
    for i in range(MAX_REMEMBERED + 1):
        refusals.note("custom", f"m{i}")
    assert not refusals.refuses("custom", "m0")
    assert refusals.refuses("custom", "m1")
    assert refusals.refuses("custom", f"m{MAX_REMEMBERED}")
