"""The pull-progress coalescing policy, driven by an injected clock."""

from __future__ import annotations

import itertools

from sidecar.core.pull_progress import DEFAULT_INTERVAL_S, Coalescer, Progress

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
TOTAL = 1000


def layer(digest: str, completed: int | None) -> Progress:
    return Progress(f"pulling {digest[7:19]}", digest, TOTAL, completed)


def run(
    lines: list[tuple[float, Progress]], interval_s: float = DEFAULT_INTERVAL_S
) -> list[tuple[float, Progress]]:
    coalescer = Coalescer(interval_s)
    sent: list[tuple[float, Progress]] = []
    for now, progress in lines:
        sent += [(now, p) for p in coalescer.offer(progress, now)]
    sent += [(-1.0, p) for p in coalescer.finish()]
    return sent


def test_rate_cap_per_layer() -> None:
    # A figure every 10 ms for 3 s: 300 lines of one layer.
    lines = [(0.0, layer(A, None))] + [(i * 0.01, layer(A, i * 3)) for i in range(1, 301)]
    sent = run(lines)
    times = [t for t, p in sent if p.completed is not None and not p.final]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= DEFAULT_INTERVAL_S - 1e-9 for gap in gaps), gaps
    assert 10 <= len(sent) <= 3 / DEFAULT_INTERVAL_S + 3  # ~4 a second, not 100
    assert sent[0][1] == layer(A, None)  # the first line (a new status) at once
    assert sent[-1][1] == layer(A, 900)  # the last figure is not lost


def test_figures_of_a_layer_stay_in_order() -> None:
    lines = [(i * 0.07, layer(A, i * 10)) for i in range(60)]
    figures = [p.completed or 0 for _, p in run(lines)]
    assert figures == sorted(figures)
    assert figures[-1] == 590


def test_status_changes_are_always_sent_at_once() -> None:
    statuses = [
        "pulling manifest",
        "verifying sha256 digest",
        "writing manifest",
        "removing unused layers",
        "success",
    ]
    coalescer = Coalescer()
    for status in statuses:  # all at the same instant
        assert coalescer.offer(Progress(status), 5.0) == [Progress(status)]
    # A new layer's first line is a status change too, even right after another layer's line.
    assert coalescer.offer(layer(A, 1), 6.0) == [layer(A, 1)]
    assert coalescer.offer(layer(B, 1), 6.0) == [layer(B, 1)]


def test_final_figure_is_sent_at_once_and_replaces_what_was_held() -> None:
    coalescer = Coalescer()
    assert coalescer.offer(layer(A, 0), 0.0) == [layer(A, 0)]
    assert coalescer.offer(layer(A, 500), 0.01) == []  # held
    assert coalescer.offer(layer(A, TOTAL), 0.02) == [layer(A, TOTAL)]  # final: at once
    assert coalescer.finish() == []  # the held 500 was superseded


def test_held_figure_goes_out_when_its_time_comes_with_another_layers_line() -> None:
    coalescer = Coalescer()
    assert coalescer.offer(layer(A, 0), 0.0) == [layer(A, 0)]
    assert coalescer.offer(layer(B, 0), 0.1) == [layer(B, 0)]
    assert coalescer.offer(layer(A, 100), 0.2) == []  # A sent 0.2 s ago: held
    # At 0.3 A's interval has passed: B's line (itself too early, held) brings A's figure along.
    assert coalescer.offer(layer(B, 150), 0.3) == [layer(A, 100)]
    assert coalescer.offer(layer(B, 160), 0.36) == [layer(B, 160)]


def test_phase_change_flushes_held_figures_first() -> None:
    coalescer = Coalescer()
    coalescer.offer(layer(A, 0), 0.0)
    assert coalescer.offer(layer(A, 400), 0.1) == []
    assert coalescer.offer(Progress("verifying sha256 digest"), 0.15) == [
        layer(A, 400),
        Progress("verifying sha256 digest"),
    ]


def test_finish_sends_every_held_last_figure() -> None:
    coalescer = Coalescer()
    coalescer.offer(layer(A, 0), 0.0)
    coalescer.offer(layer(B, 0), 0.0)
    coalescer.offer(layer(A, 10), 0.05)
    coalescer.offer(layer(B, 20), 0.06)
    coalescer.offer(layer(A, 30), 0.07)
    assert coalescer.finish() == [layer(A, 30), layer(B, 20)]
    assert coalescer.finish() == []


def test_interleaved_layers_each_get_their_own_rate() -> None:
    lines: list[tuple[float, Progress]] = []
    for i in range(200):  # two layers, lines alternating every 5 ms
        now = i * 0.005
        lines.append((now, layer(A if i % 2 == 0 else B, i * 4)))
    sent = run(lines)
    for digest in (A, B):
        times = [t for t, p in sent if p.digest == digest and t >= 0]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(g >= DEFAULT_INTERVAL_S - 1e-9 for g in gaps[1:]), gaps  # the first line is its status
        assert len(times) >= 3
    # Each layer's last figure is there.
    assert [p.completed for _, p in sent if p.digest == A][-1] == 198 * 4
    assert [p.completed for _, p in sent if p.digest == B][-1] == 199 * 4
