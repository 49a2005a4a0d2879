"""kill -9 of a process whose ledger writer commits batches: every committed row is there exactly
once and the rollups agree with the rows (they are written in the rows' transaction), whenever the
process dies, and a process started afterwards on the same file goes on counting from there."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

# A process that queues rows as fast as it can (a short pause every 50) until it is killed, so the
# kill lands at any point of the writer's batches: gathering, inserting, committing.
WRITER = """
import sys, time
from pathlib import Path
from sidecar.infra.db import Database
from sidecar.infra.ledger import Ledger, Row
ledger = Ledger(Database(Path(sys.argv[1])))
run = sys.argv[2]
i = 0
while True:
    i += 1
    ledger.record(Row(ts=1_796_083_190.0 + i / 1000, method="stream", provider=("openai", "xai")[i % 2],
                      model="m", outcome="ok", latency_ms=1.0, input_tokens=1, output_tokens=i % 7,
                      cost_usd=0.001, run_id=run))
    if i % 50 == 0:
        time.sleep(0.01)
"""


def committed(path: Path) -> int:
    try:
        with sqlite3.connect(path) as conn:
            return int(conn.execute("SELECT count(*) FROM ledger").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_kill_9_leaves_rows_and_rollups_agreeing(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.db"
    root = Path(__file__).resolve().parents[2]
    for n, wait_for in enumerate((300, 1500, 3000)):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"run-{n}"], cwd=root)
        try:
            deadline = time.monotonic() + 60
            while committed(path) < wait_for and time.monotonic() < deadline:
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(10) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            rows, uids, cost = conn.execute(
                "SELECT count(*), count(DISTINCT uid), sum(cost_usd) FROM ledger"
            ).fetchone()
            assert rows >= wait_for and uids == rows
            by_key = conn.execute(
                "SELECT date(ts, 'unixepoch') AS d, provider, count(*), sum(cost_usd) FROM ledger GROUP BY d, provider "
                "ORDER BY d, provider"
            ).fetchall()
            rollup = conn.execute(
                "SELECT day, provider, requests, cost_usd FROM spend_daily ORDER BY day, provider"
            ).fetchall()
            assert [r[:3] for r in rollup] == [r[:3] for r in by_key]
            assert [r[3] for r in rollup] == pytest.approx([r[3] for r in by_key])
            assert sum(r[3] for r in rollup) == pytest.approx(cost)
            runs = conn.execute(
                "SELECT run_id, provider, sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0)), count(*) "
                "FROM ledger GROUP BY run_id, provider ORDER BY run_id, provider"
            ).fetchall()
            run_rollup = conn.execute(
                "SELECT run_id, provider, tokens, cost_usd FROM run_tokens ORDER BY run_id, provider"
            ).fetchall()
            assert [r[:3] for r in run_rollup] == [r[:3] for r in runs]
            assert [r[3] for r in run_rollup] == pytest.approx([r[3] * 0.001 for r in runs])
