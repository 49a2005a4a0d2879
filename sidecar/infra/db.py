"""The state directory's SQLite database (`<state dir>/sidecar.db`): one connection, WAL, and
per-component schema migrations.

Each component that keeps tables here (the audit trail, the usage ledger, ...) registers its own
append-only list of migrations under its own name:

    AUDIT_MIGRATIONS = ("CREATE TABLE audit (...)", "CREATE INDEX ...")   # never edit, only append
    db.register("audit", AUDIT_MIGRATIONS)

On first use (and whenever a component registers later) the migrations a component has not yet
applied run in order, each in its own transaction, and `schema_versions(component, version)`
records how far each component got. A database written by a newer sidecar (more migrations than
this one knows) is used as it is.

The file is opened lazily, on the first call, so start-up pays nothing; every call runs in a worker
thread (`anyio.to_thread`) under one lock, since sqlite3 blocks. The directory is created private
(0700) and the file private (0600).

Must not know: what the components store, the protocol, providers.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, TypeVar

import anyio.to_thread

from sidecar import logs

DB_NAME: Final = "sidecar.db"
BUSY_TIMEOUT_MS: Final = 5000
CLOSE_WAIT_S: Final = 0.1
"""How long `close` waits for a call in progress (a step takes milliseconds; one waiting for
another process's write lock may take BUSY_TIMEOUT_MS)."""

_T = TypeVar("_T")
_log = logs.get_logger("db")

_VERSIONS_TABLE: Final = (
    "CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
)


class Database:
    engine: Final = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._migrations: dict[str, tuple[str, ...]] = {}
        self._unapplied: set[str] = set()

    def register(self, component: str, migrations: Sequence[str]) -> None:
        """Declare a component's migrations (an append-only list of SQL scripts)."""
        with self._lock:
            known = self._migrations.get(component)
            if known is not None and tuple(migrations[: len(known)]) != known:
                raise ValueError(f"migrations of {component!r} changed: they may only be appended to")
            self._migrations[component] = tuple(migrations)
            self._unapplied.add(component)

    async def run(self, call: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `call(connection)` in a worker thread, after any pending migrations."""
        return await anyio.to_thread.run_sync(self.run_sync, call)

    def run_sync(self, call: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            conn = self._connection()
            return call(conn)

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Close the connection once the call in progress (if any) ends. One still going after
        `wait_s` (the ledger's writer waiting up to the busy timeout for another process's write
        lock) keeps it: the process's exit closes it, and a clean shutdown is not held up."""
        if not self._lock.acquire(timeout=wait_s):
            _log.warning("database busy at close, left to the process's exit", path=str(self.path))
            return
        try:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None
                self._unapplied = set(self._migrations)
        finally:
            self._lock.release()

    # -- internals (called with the lock held) ---------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open()
        if self._unapplied:
            for component in sorted(self._unapplied):
                _migrate(self._conn, component, self._migrations[component])
            self._unapplied.clear()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.path.exists():
            # Create it private before sqlite does (sqlite would follow the umask).
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
        # isolation_level=None: autocommit; transactions are explicit (BEGIN ... COMMIT).
        conn = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(_VERSIONS_TABLE)
        except sqlite3.Error:
            conn.close()
            raise
        return conn


def _migrate(conn: sqlite3.Connection, component: str, migrations: tuple[str, ...]) -> None:
    row = conn.execute("SELECT version FROM schema_versions WHERE component = ?", (component,)).fetchone()
    version = int(row[0]) if row else 0
    for index in range(version, len(migrations)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            row = conn.execute(
                "SELECT version FROM schema_versions WHERE component = ?", (component,)
            ).fetchone()
            if row and int(row[0]) > index:
                conn.execute("COMMIT")
                continue
            for statement in _statements(migrations[index]):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_versions (component, version) VALUES (?, ?) "
                "ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                (component, index + 1),
            )
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        _log.debug("migrated", component=component, version=index + 1)


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (sqlite3's execute runs one at a time)."""
    out: list[str] = []
    current = ""
    for piece in script.split(";"):
        current = f"{current};{piece}" if current else piece
        if sqlite3.complete_statement(current + ";"):
            if current.strip():
                out.append(current.strip())
            current = ""
    if current.strip():
        out.append(current.strip())
    return out


def state_database(state_dir: Path) -> Database:
    return Database(state_dir / DB_NAME)
