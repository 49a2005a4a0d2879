"""The gateway's access log: one JSON line per request in `<state dir>/logs/access-YYYY-MM-DD.jsonl`
(UTC days), written by a thread so requests never wait on the disk. When a new day begins (and
at start), earlier days are gzipped and days older than `keep_days` deleted.

A record holds what happened (time, client key name, provider, model, router, status, tokens,
cost, latency, request id), never a prompt or a completion: callers pass only those fields, and
every line passes through `redact` as a second net against a key in a model name or message.

Must not know: HTTP, the gateway's routes, providers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import os
import re
import shutil
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

from sidecar import logs
from sidecar.redact import redact

KEEP_DAYS: Final = 30
_NAME: Final = re.compile(r"^access-(\d{4}-\d{2}-\d{2})\.jsonl(\.gz)?$")
_log = logs.get_logger("access_log")


def file_name(day: str) -> str:
    return f"access-{day}.jsonl"


def housekeeping(
    names: Iterable[str], today: dt.date, keep_days: int = KEEP_DAYS
) -> tuple[list[str], list[str]]:
    """Which files to gzip (earlier days still plain) and which to delete (older than `keep_days`)."""
    to_gzip: list[str] = []
    to_delete: list[str] = []
    oldest = today - dt.timedelta(days=keep_days - 1)
    for name in sorted(names):
        found = _NAME.match(name)
        if not found:
            continue
        day = dt.date.fromisoformat(found.group(1))
        if day < oldest:
            to_delete.append(name)
        elif day < today and not found.group(2):
            to_gzip.append(name)
    return to_gzip, to_delete


class AccessLog:
    """Records are appended to a deque (no thread wake-up per request); a writer thread drains it
    every `interval_s`, and at `flush`/`close`."""

    def __init__(
        self,
        directory: Path,
        *,
        keep_days: int = KEEP_DAYS,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        interval_s: float = 0.25,
    ) -> None:
        self.directory = directory
        self.keep_days = keep_days
        self.interval_s = interval_s
        self._clock = clock
        self._pending: deque[Mapping[str, Any] | msgspec.Struct] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._drained = threading.Condition()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._day: str | None = None
        self._file: Any = None
        self.written = 0

    def write(self, record: Mapping[str, Any] | msgspec.Struct) -> None:
        """Queue one record (a flat mapping, or a Struct, of the fields above); never blocks on the
        disk. It is encoded by the writer thread: a Struct must not change once written."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._stopping = False
                    self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
                    self._thread.start()
        self._pending.append(record)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything queued so far is on disk."""
        if self._thread is None:
            return
        with self._drained:
            self._wake.set()
            self._drained.wait_for(lambda: not self._pending, timeout)

    def close(self, timeout: float = 2.0) -> None:
        thread = self._thread
        if thread is not None:
            self._stopping = True
            self._wake.set()
            thread.join(timeout)
            self._thread = None

    # --- writer thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(self.interval_s)
                self._wake.clear()
                self._drain()
                if self._stopping:
                    self._drain()
                    return
        finally:
            if self._file is not None:
                with contextlib.suppress(OSError):
                    self._file.close()
                self._file = None
            self._day = None

    def _drain(self) -> None:
        wrote = False
        while self._pending:
            record = self._pending.popleft()
            try:
                self._append(record)
                wrote = True
            except OSError as exc:
                _log.warning("access log line not written", error=type(exc).__name__)
        if wrote and self._file is not None:
            with contextlib.suppress(OSError):
                self._file.flush()
        with self._drained:
            self._drained.notify_all()

    def _append(self, record: Mapping[str, Any] | msgspec.Struct) -> None:
        now = self._clock()
        day = now.date().isoformat()
        if day != self._day:
            if self._file is not None:
                self._file.close()
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = self.directory / file_name(day)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._file = os.fdopen(fd, "a", encoding="utf-8")
            self._day = day
            self._tidy(now.date())
        line = redact(msgspec.json.encode(record).decode())
        self._file.write(line + "\n")
        self.written += 1

    def _tidy(self, today: dt.date) -> None:
        to_gzip, to_delete = housekeeping(os.listdir(self.directory), today, self.keep_days)
        for name in to_gzip:
            src = self.directory / name
            with src.open("rb") as plain, gzip.open(f"{src}.gz", "wb") as packed:
                shutil.copyfileobj(plain, packed)
            src.unlink()
        for name in to_delete:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / name).unlink()
