"""The memory of parameters models refused: kept for an hour, per provider, model and parameter,
bounded."""

from __future__ import annotations

from sidecar.core.refusals import MAX_REMEMBERED, REMEMBER_S, Refusals
from tests.clock import ManualClock


def test_a_refusal_is_kept_for_an_hour_then_streaming_is_tried_again() -> None:
    clock = ManualClock()
    refusals = Refusals(clock)
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
    refusals = Refusals(clock)
    refusals.note("openai", "o3")
    clock.now += REMEMBER_S - 10
    refusals.note("openai", "o3")
    clock.now += 20
    assert refusals.refuses("openai", "o3")


def test_the_oldest_refusal_makes_room_past_the_bound() -> None:
    refusals = Refusals(ManualClock())
    for i in range(MAX_REMEMBERED + 1):
        refusals.note("custom", f"m{i}")
    assert not refusals.refuses("custom", "m0")
    assert refusals.refuses("custom", "m1")
    assert refusals.refuses("custom", f"m{MAX_REMEMBERED}")


def test_sampling_parameters_are_kept_apart_from_streaming_and_from_each_other() -> None:
    clock = ManualClock()
    refusals = Refusals(clock)
    assert refusals.refused("openai", "gpt-5") == []
    refusals.note("openai", "gpt-5", "top_p")
    assert refusals.refused("openai", "gpt-5") == ["top_p"]
    assert not refusals.refuses("openai", "gpt-5")  # streaming still tried
    refusals.note("openai", "gpt-5", "temperature")
    refusals.note("openai", "gpt-5", "messages")  # noted, but never dropped
    assert refusals.refused("openai", "gpt-5") == ["temperature", "top_p"]
    refusals.note("openai", "gpt-5", "reasoning")  # kept by the request's field, not the wire's name
    assert refusals.refused("openai", "gpt-5") == ["temperature", "top_p", "reasoning"]
    assert refusals.refused("openai", "gpt-5-chat-latest") == []
    clock.now += REMEMBER_S
    assert refusals.refused("openai", "gpt-5") == []
