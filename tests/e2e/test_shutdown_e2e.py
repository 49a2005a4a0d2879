"""stdin EOF with requests that would never end by themselves: a stalled upstream (before the
headers, after the headers, mid-stream) and an endless stream. Each time the process exits 0 within
the contract's 2 s, every request in flight is answered -32800 after the grace period, and its
ledger row is written (the usage hook ran)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sidecar.infra.db import BUSY_TIMEOUT_MS
from sidecar.process import EOF_GRACE_S
from tests.fakes.endless import endless_openai_stream
from tests.fakes.http import Reply, Stall
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.harness import EXIT_BOUND_S, SIDECAR, Sidecar

KEY = "sk-test-valid"
NO_RETRY = "[retry]\nmax_attempts = 1\n"


def ask(text: str) -> dict[str, Any]:
    return {"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": text}]}


def ledger_outcomes(home: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(home / "sidecar.db") as conn:
        return list(conn.execute("SELECT method, outcome FROM ledger ORDER BY id"))


def stall_before_headers(fake: FakeOpenAICompat) -> None:
    fake.enqueue(Reply(status=200, body=b"{}", delay_s=50))


def stall_after_headers(fake: FakeOpenAICompat) -> None:
    fake.enqueue(Reply(status=200, headers={"content-type": "text/event-stream"}, chunks=[Stall(50)]))


def stall_mid_stream(fake: FakeOpenAICompat) -> None:
    fake.edit_stream = lambda events: [*events[:3], Stall(50)]


def endless(fake: FakeOpenAICompat) -> None:
    fake.enqueue(endless_openai_stream(pause_s=0.001, batch=5))


CASES: dict[str, tuple[Callable[[FakeOpenAICompat], None], str]] = {
    "complete, upstream silent before its headers": (stall_before_headers, "complete"),
    "stream, upstream silent after its headers": (stall_after_headers, "stream"),
    "stream, upstream stalls mid-stream": (stall_mid_stream, "stream"),
    "stream that never ends": (endless, "stream"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_eof_cancels_what_never_ends_answers_records_and_exits_within_two_seconds(
    openai: FakeOpenAICompat, tmp_path: Path, case: str
) -> None:
    arrange, method = CASES[case]
    arrange(openai)
    with Sidecar(
        {"OPENAI_BASE_URL": openai.api_base, "OPENAI_API_KEY": KEY}, home=tmp_path, config=NO_RETRY
    ) as sc:
        assert sc.result("info")["version"]
        rid = sc.start(method, ask("never finishes"))
        openai.wait_for_requests(1)
        if method == "stream" and case != "stream, upstream silent after its headers":
            sc.wait_notification("stream/event", where=lambda n: n["params"]["request_id"] == rid)
        started = time.monotonic()
        sc.close_stdin()
        assert sc.wait_exit(10) == 0
        took = time.monotonic() - started
        answer = sc.wait(rid, timeout=1)
        assert sc.bad_lines == []
    assert took < EXIT_BOUND_S, f"exit took {took:.2f}s"
    assert took >= EOF_GRACE_S * 0.9, "in-flight requests must get the grace period first"
    assert answer["error"]["code"] == -32800 and answer["error"]["data"]["kind"] == "cancelled"
    assert ledger_outcomes(tmp_path) == [(method, "cancelled")]
    assert openai.wait_for_disconnect(timeout=3)


def test_a_request_that_finishes_within_the_grace_period_is_answered_normally(
    openai: FakeOpenAICompat, tmp_path: Path
) -> None:
    openai.chunk_delay_s = 0.02  # ~25 pieces: about half a second in all
    with Sidecar(
        {"OPENAI_BASE_URL": openai.api_base, "OPENAI_API_KEY": KEY}, home=tmp_path, config=NO_RETRY
    ) as sc:
        rid = sc.start("stream", ask("a reasonably short answer that takes a moment " * 2))
        sc.wait_notification("stream/event", where=lambda n: n["params"]["request_id"] == rid)
        sc.close_stdin()
        assert sc.wait_exit(5) == 0
        answer = sc.wait(rid, timeout=1)
    assert "result" in answer, answer
    assert ledger_outcomes(tmp_path) == [("stream", "ok")]


@pytest.mark.parametrize("how", ["stdin closed", "SIGTERM"])
def test_a_host_that_floods_and_quits_at_once_loses_no_ledger_row(tmp_path: Path, how: str) -> None:
    """Every request that got a result has its committed row once the process has exited, and
    the cancelled ones that reached the chat service theirs; nothing is left queued.

    Each request is tagged with its id, so every row is matched to the answer the host saw. On a
    loaded machine the last -32800 answers (those for the requests in flight at the end, written
    after the grace period) may not get out before the bounded exit; their rows must then say
    cancelled."""
    count = 1500
    with Sidecar(home=tmp_path) as sc:
        flood = b"".join(
            json.dumps({"jsonrpc": "2.0", "id": i, "method": "complete",
                        "params": {"model": "stub:echo", "tag": f"r{i}",
                                   "messages": [{"role": "user", "content": f"hi {i}"}]}}
                       ).encode() + b"\n"
            for i in range(count)
        )  # fmt: skip
        sc.send_raw(flood)
        if how == "SIGTERM":
            sc.wait(0, timeout=30)  # serving has begun
            sc.terminate()
        sc.close_stdin()
        assert sc.wait_exit(60) == 0
        answers = [m for m in sc.all_messages if "id" in m]
        stderr = sc.stderr_text
    assert "ledger rows not committed at shutdown" not in stderr
    results = {a["id"] for a in answers if "result" in a}
    cancelled = {a["id"] for a in answers if "error" in a and a["error"]["code"] == -32800}
    assert len(results) + len(cancelled) == len(answers) <= count and results
    with sqlite3.connect(tmp_path / "sidecar.db") as conn:
        rows = list(conn.execute("SELECT tag, outcome FROM ledger"))
    outcome_of = {int(tag.removeprefix("r")): outcome for tag, outcome in rows}
    assert len(outcome_of) == len(rows) and set(outcome_of) <= set(range(count))  # one row a request
    assert {i for i, outcome in outcome_of.items() if outcome == "ok"} == results
    assert {outcome for i, outcome in outcome_of.items() if i not in results} <= {"cancelled"}
    assert not cancelled & {i for i, outcome in outcome_of.items() if outcome != "cancelled"}


def test_answers_a_host_reads_a_moment_after_closing_stdin_all_reach_it(tmp_path: Path) -> None:
    """The answers to a burst outgrow the pipe (64 KiB) while the host is not reading; it closes
    stdin and starts reading a second later, within the exit budget: every answer arrives
    and the process still exits 0 (stdout's flush waits for what the budget has left,
    not a fixed 0.15 s)."""
    count = 300  # ~0.9 KiB an `info` answer: over four times the pipe's capacity
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env |= {"SIDECAR_HOME": str(tmp_path), "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    proc = subprocess.Popen(
        [SIDECAR], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(b'{"jsonrpc":"2.0","id":0,"method":"info"}\n')
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["id"] == 0  # serving
        burst = b"".join(b'{"jsonrpc":"2.0","id":%d,"method":"info"}\n' % i for i in range(1, count + 1))
        proc.stdin.write(burst)
        proc.stdin.close()
        time.sleep(1.0)  # not reading yet
        out = proc.stdout.read()
        assert proc.wait(EXIT_BOUND_S) == 0
    finally:
        proc.kill()
        proc.wait()
    # Answers may come in any order (the first `info` the loop routes builds its service in a task).
    assert sorted(json.loads(line)["id"] for line in out.splitlines()) == list(range(1, count + 1))


def test_a_database_locked_by_another_process_does_not_hold_the_exit_up(tmp_path: Path) -> None:
    """Another process holds the state database's write lock at shutdown: the ledger's writer waits
    for it (up to the busy timeout, 5 s), but the exit does not; the row left is named on stderr."""
    with Sidecar(home=tmp_path) as sc:
        ask_stub = {"model": "stub:echo", "messages": [{"role": "user", "content": "hi"}]}
        assert "result" in sc.call("complete", ask_stub)
        deadline = time.monotonic() + 10
        while not ledger_outcomes(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        other = sqlite3.connect(tmp_path / "sidecar.db", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            assert "result" in sc.call("complete", ask_stub)
            started = time.monotonic()
            sc.close_stdin()
            assert sc.wait_exit(30) == 0
            took = time.monotonic() - started
        finally:
            other.close()
        stderr = sc.stderr_text
    assert took < BUSY_TIMEOUT_MS / 1000, f"exit took {took:.2f}s"
    assert "ledger rows not committed at shutdown" in stderr
    assert ledger_outcomes(tmp_path) == [("complete", "ok")]  # the second row was not committed
