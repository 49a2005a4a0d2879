"""Stop sequences applied by the sidecar: the text ends before the first one, wherever the pieces
of the answer split it, and nothing is held back when the text ends without one."""

from __future__ import annotations

import pytest

from sidecar.core.stop_sequences import StopCutter


def cut(stops: list[str], pieces: list[str]) -> tuple[str, bool]:
    cutter = StopCutter(stops)
    out = "".join(cutter.feed(p) for p in pieces)
    if not cutter.stopped:
        out += cutter.flush()
    return out, cutter.stopped


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        (["Thought: look it up\nObservation: 42"], "Thought: look it up\n"),
        (["Thought: look it up\nObs", "ervation: 42"], "Thought: look it up\n"),  # split across pieces
        (["Thought", ": x\n", "O", "b", "s", "e", "r", "v", "a", "t", "i", "o", "n", ":"], "Thought: x\n"),
        (["Observation: at once"], ""),
    ],
)
def test_the_text_ends_before_the_stop_sequence(pieces: list[str], expected: str) -> None:
    assert cut(["Observation:"], pieces) == (expected, True)


def test_the_earliest_of_several_stop_sequences_wins() -> None:
    assert cut(["END", "\n\n"], ["one\n", "\ntwo END"]) == ("one", True)
    assert cut(["\n\n", "END"], ["oneEND\n\n"]) == ("one", True)


def test_a_near_miss_is_passed_on_once_it_is_known_not_to_be_one() -> None:
    cutter = StopCutter(["Observation:"])
    assert cutter.feed("an Obs") == "an "  # "Obs" could begin the stop sequence: held
    assert cutter.feed("tacle") == "Obstacle"  # it did not
    assert cutter.feed(" Observ") == " "
    assert cutter.flush() == "Observ"  # the text ended: what was held is the answer's
    assert not cutter.stopped


def test_nothing_after_the_stop_and_empty_sequences_are_ignored() -> None:
    cutter = StopCutter(["", "STOP"])
    assert cutter.feed("aSTOPb") == "a"
    assert cutter.feed("more") == "" and cutter.flush() == ""
    assert cut([""], ["plain text"]) == ("plain text", False)
