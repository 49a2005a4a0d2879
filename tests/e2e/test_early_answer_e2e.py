"""The early answer, on the spawned process: an `info` already waiting on stdin when `llm-sidecar`
starts is answered before the event loop exists, with the very bytes the loop would send, and
everything else of that read reaches the loop as if it had read it itself.

Each test puts its bytes in the stdin pipe before spawning (`Sidecar(waiting=...)`), so they are
there when the process looks; `--log-level debug` makes it say on stderr whether it answered early.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness import SIDECAR, LspSidecar, Sidecar, run_once

DEBUG = ["--log-level", "debug"]


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def _info(rid: Any, **extra: Any) -> bytes:
    return _line({"jsonrpc": "2.0", "id": rid, "method": "info", **extra})


def _request(rid: Any, method: str, params: dict[str, Any] | None = None) -> bytes:
    return _line({"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}})


def _answered_early(sc: Sidecar, timeout: float = 10.0) -> bool:
    """What the process logged at start (debug): whether its first answers went out early."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in sc.stderr_text.splitlines():
            if '"event": "serving"' in line:
                answered: bool = json.loads(line)["answered_early"]
                return answered
        time.sleep(0.02)
    raise TimeoutError(f"no start-up line on stderr:\n{sc.stderr_text[-2000:]}")


def _spawn_raw(waiting: bytes, home: Path, *, close: bool = False) -> subprocess.Popen[bytes]:
    r, w = os.pipe()
    os.write(w, waiting)
    if close:
        os.close(w)
    proc = subprocess.Popen(
        [SIDECAR, *DEBUG],
        stdin=r,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"SIDECAR_HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    os.close(r)
    if not close:
        proc.stdin = os.fdopen(w, "wb")
    return proc


def test_the_early_answer_is_byte_for_byte_the_loops(tmp_path: Path) -> None:
    proc = _spawn_raw(_info(7, params={}), tmp_path)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        early = proc.stdout.readline()
        # The same request again, once the loop runs (the early path reads stdin only once).
        proc.stdin.write(_info(7, params={}))
        proc.stdin.flush()
        from_loop = proc.stdout.readline()
        proc.stdin.close()
        assert proc.wait(10) == 0
        log = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert '"answered_early": true' in log
    assert early == from_loop and json.loads(early)["result"]["version"]


@pytest.mark.parametrize("extra", [{}, {"params": {}}])
def test_info_with_no_or_empty_params_is_answered_early(extra: dict[str, Any]) -> None:
    # Ids the harness does not give (it counts from 1 for `sc.result`).
    with Sidecar(args=DEBUG, waiting=_info(101, **extra)) as sc:
        assert sc.wait(101)["result"]["methods"]
        assert _answered_early(sc)
        assert sc.result("list_providers")["providers"]  # the loop serves what comes next
        assert sc.bad_lines == []


@pytest.mark.parametrize("params", [{"verbose": True}, None, []])
def test_info_with_invalid_params_gets_the_loops_error(params: Any) -> None:
    with Sidecar(args=DEBUG, waiting=_info(1, params=params)) as sc:
        error = sc.wait(1)["error"]
        assert error["code"] == -32602 and not _answered_early(sc)


def test_an_info_notification_gets_no_answer() -> None:
    with Sidecar(args=DEBUG, waiting=_line({"jsonrpc": "2.0", "method": "info"}) + _info(2)) as sc:
        assert "result" in sc.wait(2) and _answered_early(sc)
        sc.close_stdin()
        assert sc.wait_exit() == 0
        assert [m.get("id") for m in sc.all_messages] == [2]


def test_info_followed_by_other_requests_in_the_same_read() -> None:
    batch = b"[" + _request(11, "list_providers")[:-1] + b"," + _info(12)[:-1] + b"]\n"
    initialize = _request(
        13,
        "initialize",
        {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    )
    waiting = _info(1) + _request(2, "list_models") + batch + b"not json\n" + initialize + _info(3)
    with Sidecar(args=DEBUG, waiting=waiting) as sc:
        assert "result" in sc.wait(1) and "result" in sc.wait(3) and _answered_early(sc)
        assert sc.wait(2)["result"]["models"]
        assert sc.wait(13, timeout=30)["result"]["serverInfo"]
        assert sc.wait(None)["error"]["code"] == -32700  # the line that is not JSON
        assert [sorted(a["id"] for a in b) for b in sc.batches] == [[11, 12]]  # one array, from the loop
        assert sc.bad_lines == []


def test_a_partial_last_line_is_completed_by_the_next_read() -> None:
    second = _info(2)
    with Sidecar(args=DEBUG, waiting=_info(1) + second[:15]) as sc:
        assert "result" in sc.wait(1) and _answered_early(sc)
        sc.send_raw(second[15:])
        assert "result" in sc.wait(2)


def test_a_partial_info_at_the_end_of_a_closed_pipe_is_answered_by_the_loop() -> None:
    with Sidecar(args=DEBUG, waiting=_info(1)[:-1]) as sc:
        sc.close_stdin()
        assert "result" in sc.wait(1) and not _answered_early(sc)
        assert sc.wait_exit() == 0


@pytest.mark.parametrize("waiting", [b"", _info(1), _info(1) + _request(2, "list_models")])
def test_a_pipe_closed_at_once_still_ends_in_the_normal_shutdown(waiting: bytes) -> None:
    with Sidecar(args=DEBUG, waiting=waiting) as sc:
        sc.close_stdin()
        assert sc.wait_exit(10) == 0
        assert sorted(m["id"] for m in sc.all_messages) == list(range(1, waiting.count(b"\n") + 1))
        assert all("result" in m for m in sc.all_messages) and sc.bad_lines == []


@pytest.mark.parametrize("waiting", [b"", _info(1)])
def test_a_pipe_closed_before_the_process_starts(waiting: bytes, tmp_path: Path) -> None:
    # The writer is gone before the first look at stdin: the early read (or the one after it)
    # meets the end of input, and the process ends as at any end of input.
    proc = _spawn_raw(waiting, tmp_path, close=True)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert [json.loads(line)["id"] for line in out.splitlines()] == ([1] if waiting else [])
    assert (b'"answered_early": true' in err) == bool(waiting)


def test_stdin_from_a_regular_file(tmp_path: Path) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(_info(1) + _request(2, "list_models") + _info(3, params={"x": 1}) + _info(4)[:-1])
    with requests.open("rb") as stdin:
        proc = run_once(tmp_path, stdin, args=DEBUG)
    assert proc.returncode == 0
    answers = {a["id"]: a for a in map(json.loads, proc.stdout.splitlines())}
    assert sorted(answers) == [1, 2, 3, 4]
    assert "result" in answers[1] and "result" in answers[2] and "result" in answers[4]
    assert answers[3]["error"]["code"] == -32602
    assert b'"answered_early": true' in proc.stderr


def test_stdin_from_dev_null(tmp_path: Path) -> None:
    with open(os.devnull, "rb") as stdin:
        proc = run_once(tmp_path, stdin)
    assert proc.returncode == 0 and proc.stdout == b""


def test_the_line_limit_holds_for_an_early_read() -> None:
    long_info = _info(1, params={}, pad="x" * 300)  # over the limit before its params are even read
    with Sidecar(args=[*DEBUG, "--max-line-bytes", "200"], waiting=long_info + _info(2)) as sc:
        error = sc.wait(1)["error"]
        assert error["code"] == -32600 and "200 byte limit" in error["message"]
        assert "result" in sc.wait(2) and _answered_early(sc)


def test_an_lsp_framed_info_is_answered_by_the_loop_in_lsp_framing() -> None:
    body = _info(101)[:-1]
    with LspSidecar(args=DEBUG, waiting=b"Content-Length: %d\r\n\r\n%s" % (len(body), body)) as sc:
        assert "result" in sc.wait(101) and not _answered_early(sc)
        assert sc.result("list_providers")["providers"] and sc.bad_lines == []
