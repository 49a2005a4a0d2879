"""Spawning `llm-sidecar` as a host would: over pipes, one JSON message per line.

`Sidecar` starts the real console script with a private `SIDECAR_HOME`, reads stdout in a thread,
checks that every stdout line is one JSON-RPC message or a batch's array of answers (and records
any that is not, so a test can assert stdout stayed clean), and lets a test send requests and wait for their answers and
notifications.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

SIDECAR = str(Path(sys.executable).with_name("llm-sidecar"))
EXIT_BOUND_S = 4.0
"""How long after stdin EOF (or SIGTERM) a test lets the process take to be gone.

The contract's 2 s is the sum of the process's own time limits (grace, settle, close, flush,
exit: `tests/unit/test_shutdown_budget.py`). Measured from the host, the exit also holds the
interpreter's teardown and the host's own wait, which a slow, loaded machine stretches: an idle
exit took 0.5-1 s and one with a request in flight 1.4-1.8 s under load. Twice the contract is
still far from what the shutdown tests rule out: waiting for a stalled or endless upstream."""


class Sidecar:
    def __init__(
        self,
        env: Mapping[str, str | None] | None = None,
        *,
        args: list[str] | None = None,
        home: Path | None = None,
        config: str | None = None,
        inherit_env: bool = False,
        executable: str = SIDECAR,
        waiting: bytes | None = None,
    ) -> None:
        self._tmp = None if home else tempfile.mkdtemp(prefix="sidecar-home-")
        self.home = home or Path(self._tmp or "")
        if config is not None:
            (self.home / "config.toml").write_text(config)
        base = (
            dict(os.environ)
            if inherit_env
            else {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
        )
        merged: dict[str, str | None] = {
            **base,
            "SIDECAR_HOME": str(self.home),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
            **(env or {}),
        }
        # A None value removes the variable (e.g. to let keyring pick its backend itself).
        full_env = {k: v for k, v in merged.items() if v is not None}
        # `waiting`: bytes already in stdin when the process starts, as when a host writes before
        # the sidecar reaches its first read (at most a pipe's capacity).
        stdin_r = -1
        if waiting is not None:
            stdin_r, stdin_w = os.pipe()
            os.write(stdin_w, waiting)
        self.proc = subprocess.Popen(
            [executable, *(args or [])],
            stdin=subprocess.PIPE if waiting is None else stdin_r,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
        )
        if waiting is not None:
            os.close(stdin_r)
            self.proc.stdin = os.fdopen(stdin_w, "wb")
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.all_messages: list[dict[str, Any]] = []
        self.batches: list[list[dict[str, Any]]] = []
        self.bad_lines: list[bytes] = []
        self.stderr_lines: list[bytes] = []
        self._ids = itertools.count(1)
        self._answers: dict[Any, dict[str, Any]] = {}
        self._notes: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._err_reader.start()

    # --- reading ---------------------------------------------------------------------------------

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._record(raw)

    def _record(self, raw: bytes) -> None:
        """Check and keep one stdout message (a line with its newline, or an LSP frame's body)."""
        line = raw.rstrip(b"\n")
        try:
            decoded = json.loads(line)
            # A batch's answers come as one array of answers (never empty, never notifications).
            batch = decoded if isinstance(decoded, list) else None
            messages = decoded if batch is not None else [decoded]
            if b"\r" in line or not messages or not all(_is_message(m) for m in messages):
                raise ValueError
            if batch is not None and not all("id" in m for m in batch):
                raise ValueError
        except ValueError:
            self.bad_lines.append(raw)
            return
        with self._cond:
            if batch is not None:
                self.batches.append(batch)
            for msg in messages:
                self.all_messages.append(msg)
                if "id" in msg and ("result" in msg or "error" in msg):
                    self._answers[_key(msg["id"])] = msg
                else:
                    self._notes.append(msg)
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr_lines.append(raw)

    @property
    def stderr_text(self) -> str:
        return b"".join(self.stderr_lines).decode("utf-8", "replace")

    # --- writing ---------------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, message: Mapping[str, Any]) -> None:
        self.send_raw(json.dumps(message).encode() + b"\n")

    def start(self, method: str, params: Mapping[str, Any] | None = None, *, id: Any = None) -> Any:
        rid = next(self._ids) if id is None else id
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return rid

    def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)

    def wait(self, rid: Any, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while _key(rid) not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"no answer to id {rid!r} within {timeout}s; stderr:\n{self.stderr_text[-3000:]}"
                    )
                self._cond.wait(left)
            return self._answers[_key(rid)]

    def call(
        self, method: str, params: Mapping[str, Any] | None = None, *, timeout: float = 10.0
    ) -> dict[str, Any]:
        return self.wait(self.start(method, params), timeout)

    def result(self, method: str, params: Mapping[str, Any] | None = None, *, timeout: float = 10.0) -> Any:
        answer = self.call(method, params, timeout=timeout)
        assert "result" in answer, f"{method} failed: {answer.get('error')}"
        return answer["result"]

    def notifications(
        self, method: str | None = None, where: Callable[[dict[str, Any]], bool] | None = None
    ) -> list[dict[str, Any]]:
        with self._cond:
            return [
                n
                for n in self._notes
                if (method is None or n.get("method") == method) and (where is None or where(n))
            ]

    def wait_notification(
        self, method: str, where: Callable[[dict[str, Any]], bool] | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [n for n in self._notes if n.get("method") == method and (where is None or where(n))]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {method} notification within {timeout}s")
                self._cond.wait(left)

    def events(self, rid: Any) -> list[dict[str, Any]]:
        """The `stream/event` payloads of request `rid`, in order."""
        return [
            n["params"]["event"]
            for n in self.notifications("stream/event")
            if n["params"]["request_id"] == rid
        ]

    # --- ending ----------------------------------------------------------------------------------

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        if not self.proc.stdin.closed:
            self.proc.stdin.close()

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float = 5.0) -> int:
        code = self.proc.wait(timeout)
        # The pipes end once the process is gone, but the readers may still be parsing what it
        # wrote last (thousands of lines after a flood, slowly on a loaded machine): a test reads
        # every message and all of stderr next, so wait for the readers to reach the end.
        self._reader.join(30)
        self._err_reader.join(30)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError):
                self.close_stdin()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(3)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Sidecar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LspSidecar(Sidecar):
    """The same, speaking LSP framing (`Content-Length` headers) as `vscode-jsonrpc` does: every
    `send_raw` line is sent as one frame's body, and stdout must be well-formed frames only."""

    def send_raw(self, data: bytes) -> None:
        for line in data.split(b"\n")[:-1] if data.endswith(b"\n") else [data]:
            super().send_raw(b"Content-Length: %d\r\n\r\n%s" % (len(line), line))

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        out = self.proc.stdout
        while header := out.readline():
            blank = out.readline()
            name, _, value = header.rstrip(b"\r\n").partition(b": ")
            if name != b"Content-Length" or not value.isdigit() or blank != b"\r\n":
                self.bad_lines.append(header + blank)
                return
            body = out.read(int(value))
            if b"\n" in body:  # compact JSON never holds a raw newline, in either framing
                self.bad_lines.append(body)
            else:
                self._record(body)


def run_once(
    home: Path, stdin: bytes | IO[bytes] = b"", *, args: Sequence[str] = (), timeout: float = 20
) -> subprocess.CompletedProcess[bytes]:
    """Run `llm-sidecar` to its exit in a bare environment, `home` its state directory (where a
    config.toml is read from), `stdin` all of its input."""
    feed: dict[str, Any] = {"input": stdin} if isinstance(stdin, bytes) else {"stdin": stdin}
    return subprocess.run(
        [SIDECAR, *args],
        capture_output=True,
        timeout=timeout,
        env={"SIDECAR_HOME": str(home), "PATH": "/usr/bin:/bin"},
        **feed,
    )


def _key(rid: Any) -> str:
    return json.dumps(rid)


def _is_message(msg: Any) -> bool:
    return isinstance(msg, dict) and msg.get("jsonrpc") == "2.0"
