"""PostgreSQL as the storage engine of a team gateway (`[storage] url = "postgresql://…"`): a
psycopg 3 async connection pool, the components' migrations, and `infra.sql.SqlEngine` on top.

- Migrations: the same per-component, append-only lists as on SQLite (`infra.db`), each entry a
  string both engines run or an `infra.sql.Dialects` pair, and the same `schema_versions` table.
  Every replica runs them at start; they are applied under a session-level advisory lock, so the
  first replica to get there applies each one exactly once, in its own transaction, and the
  others wait (bounded by `lock_timeout`) and find nothing left to do. A database written by a
  newer sidecar is used as it is.
- Statements are written SQLite-style (`?`) and translated once (`infra.sql.to_postgres`).
- Connections are checked before each use, so a restarted server costs the pool a reconnect, not
  an error; a server that cannot be reached raises `SidecarError("storage_unavailable")` naming
  host, port and database (never the password).
- A statement waits at most `pool_wait_s` for a pooled connection. Every connection busy that
  long is this replica's own bottleneck: `SidecarError("overloaded")` with a short
  `retry_after_s`, the server is not marked away. The pool unable to open a connection in that
  time (with room to open one) is the server away: `storage_unavailable`, found in seconds, not
  after the (longer) connect timeout a slow network may need. While it is known to be away, one
  call at a time probes it, waiting up to the connect timeout (the pool reconnects with backoff);
  the others are refused at once.

psycopg and psycopg_pool are imported when a `PgEngine` is built, never at start-up.

Must not know: what the components store, the protocol, providers.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit

import anyio

from sidecar import logs
from sidecar.errors import SidecarError
from sidecar.infra.sql import Conflict, Engine, Retry, Row, Sql, Stmt, text_for, to_postgres

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

MIGRATION_LOCK: Final = int.from_bytes(
    hashlib.sha256(b"llm-sidecar:migrations").digest()[:8], "big", signed=True
)
"""The advisory lock key under which migrations run (the same for every replica)."""
LOCK_TIMEOUT_S: Final = 120
CONNECT_TIMEOUT_S: Final = 10.0
POOL_WAIT_S: Final = 2.0
"""How long a statement waits for a pooled connection (see the module doc)."""
UNAVAILABLE_RETRY_S: Final = 5.0
BUSY_RETRY_S: Final = 1.0

_VERSIONS_TABLE: Final = (
    "CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
)

_log = logs.get_logger("pg")
_T = TypeVar("_T")


def describe_url(url: str) -> str:
    """`host:port/database` of a PostgreSQL URL: what messages may show (never the password)."""
    parts = urlsplit(url)
    database = parts.path.lstrip("/") or "postgres"
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}/{database}"


class _ToSidecarLog(logging.Handler):
    """psycopg and its pool log through the standard library; their lines join ours (JSON on
    stderr, redacted) instead of reaching stderr as plain text through logging's last resort."""

    def emit(self, record: logging.LogRecord) -> None:
        level = "error" if record.levelno >= logging.ERROR else "warning"
        if record.levelno < logging.WARNING:
            level = "debug"
        getattr(_log, level)("driver", driver=record.name, message=record.getMessage())


def _route_driver_logs() -> None:
    driver = logging.getLogger("psycopg")
    if not any(isinstance(h, _ToSidecarLog) for h in driver.handlers):
        driver.addHandler(_ToSidecarLog())
        driver.propagate = False


class PgEngine:
    """`SqlEngine` on PostgreSQL (see the module doc)."""

    engine: Engine = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        pool_wait_s: float = POOL_WAIT_S,
        application_name: str = "llm-sidecar",
    ) -> None:
        from psycopg_pool import AsyncConnectionPool

        _route_driver_logs()
        self.where = describe_url(url)
        self.connect_timeout_s = connect_timeout_s
        self.pool_wait_s = pool_wait_s
        self.max_size = max_size
        self._in_use = 0
        self._migrations: dict[str, tuple[str, ...]] = {}
        self._unapplied: set[str] = set()
        self._migrate_lock = anyio.Lock()
        self._open_lock = anyio.Lock()
        self.pool: AsyncConnectionPool[AsyncConnection[tuple[object, ...]]] = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            timeout=connect_timeout_s,
            check=AsyncConnectionPool.check_connection,
            kwargs={
                "autocommit": True,
                "connect_timeout": max(int(connect_timeout_s), 1),
                "application_name": application_name,
            },
            name="llm-sidecar",
        )
        self._opened = False
        self._down = False
        self._probing = False

    # -- life ------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect (bounded by `connect_timeout_s`) and apply pending migrations; raises
        `storage_unavailable` when the server can't be reached."""
        # One opening at a time: the first calls of a process may come at once (a request and a
        # background task). A pool that could not connect stays open, reconnecting on its own (a
        # closed psycopg pool cannot be opened again), and later calls probe it.
        async with self._open_lock:
            if not self._opened:
                self._opened = True
                try:
                    await self.pool.open(wait=True, timeout=self.connect_timeout_s)
                except Exception as exc:
                    raise self._unavailable(exc) from None
        await self._ensure_migrated()

    async def aclose(self) -> None:
        await self.pool.close()
        self._opened = False

    async def health(self) -> dict[str, object]:
        try:
            await self.fetchone("SELECT 1")
        except SidecarError as exc:
            return {"engine": self.engine, "ok": False, "at": self.where, "error": exc.kind}
        return {"engine": self.engine, "ok": True, "at": self.where}

    def _unavailable(self, exc: BaseException | None) -> SidecarError:
        if exc is not None:
            self._down = True
            _log.warning("postgresql unreachable", database=self.where, error=type(exc).__name__)
        return SidecarError(
            "storage_unavailable",
            f"The database (PostgreSQL at {self.where}) cannot be reached; nothing was read or written.",
            retry_after_s=UNAVAILABLE_RETRY_S,
        )

    # -- migrations ------------------------------------------------------------------------------

    def register(self, component: str, migrations: Sequence[Sql]) -> None:
        texts = tuple(text_for(m, "postgresql") for m in migrations)
        known = self._migrations.get(component)
        if known is not None and texts[: len(known)] != known:
            raise ValueError(f"migrations of {component!r} changed: they may only be appended to")
        self._migrations[component] = texts
        self._unapplied.add(component)

    async def _ensure_migrated(self) -> None:
        if not self._unapplied:
            return
        async with self._migrate_lock:
            if not self._unapplied:
                return
            pending = sorted(self._unapplied)
            try:
                async with self.pool.connection() as conn:
                    await self._migrate(conn, pending)
            except _connection_errors() as exc:
                if not _lost(exc):
                    raise
                raise self._unavailable(exc) from None
            self._unapplied.difference_update(pending)

    async def _migrate(self, conn: AsyncConnection[tuple[object, ...]], components: list[str]) -> None:
        await conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT_S}s'")
        await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            await conn.execute(_VERSIONS_TABLE)
            for component in components:
                migrations = self._migrations[component]
                cur = await conn.execute(
                    "SELECT version FROM schema_versions WHERE component = %s", (component,)
                )
                row = await cur.fetchone()
                version = int(row[0]) if row else 0  # type: ignore[call-overload]
                for index in range(version, len(migrations)):
                    async with conn.transaction():
                        # One script per entry: PL/pgSQL bodies hold semicolons, so it is not split.
                        await conn.execute(migrations[index].encode())
                        await conn.execute(
                            "INSERT INTO schema_versions (component, version) VALUES (%s, %s) "
                            "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                            (component, index + 1),
                        )
                    _log.info("migrated", component=component, version=index + 1, engine=self.engine)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
            await conn.execute("RESET lock_timeout")

    # -- statements ------------------------------------------------------------------------------

    async def fetchall(self, sql: Sql, params: Sequence[object] = ()) -> list[Row]:
        await self._ensure_ready()
        try:
            async with self._probe(), self._connection() as conn:
                cur = await conn.execute(to_postgres(text_for(sql, "postgresql")), params)
                rows = await cur.fetchall()
            self._down = False
            return rows
        except _connection_errors() as exc:
            if not _lost(exc):
                raise
            raise self._unavailable(exc) from None

    async def fetchone(self, sql: Sql, params: Sequence[object] = ()) -> Row | None:
        await self._ensure_ready()
        try:
            async with self._probe(), self._connection() as conn:
                cur = await conn.execute(to_postgres(text_for(sql, "postgresql")), params)
                row = await cur.fetchone()
            self._down = False
            return row
        except _connection_errors() as exc:
            if not _lost(exc):
                raise
            raise self._unavailable(exc) from None

    async def write(self, statements: Sequence[Stmt]) -> list[int]:
        await self._ensure_ready()
        counts: list[int] = []
        try:
            async with (
                self._probe(),
                self._connection() as conn,
                conn.transaction(),
                conn.cursor() as cur,
            ):
                for stmt in statements:
                    text = to_postgres(text_for(stmt.sql, "postgresql"))
                    if stmt.many is not None:
                        if stmt.many:
                            await cur.executemany(text, stmt.many)
                        counts.append(max(cur.rowcount, 0) if stmt.many else 0)
                    else:
                        await cur.execute(text, stmt.params)
                        counts.append(cur.rowcount)
        except _integrity_error() as exc:
            raise Conflict(str(exc)) from exc
        except _connection_errors() as exc:
            if not _lost(exc):
                raise
            raise self._unavailable(exc) from None
        self._down = False
        return counts

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[tuple[object, ...]]]:
        """A pooled connection within `pool_wait_s`: `overloaded` when every one is in use here for
        that long; a `PoolTimeout` (the server away, mapped by the caller) when the pool had room
        but could not open one."""
        from psycopg_pool import PoolTimeout

        # The one call that probes a server known to be away waits out the connect timeout, so the
        # pool's reconnection (it backs off between tries) can finish once the server is back.
        wait = self.connect_timeout_s if self._down else self.pool_wait_s
        async with contextlib.AsyncExitStack() as stack:
            try:
                conn = await stack.enter_async_context(self.pool.connection(timeout=wait))
            except PoolTimeout:
                if self._in_use >= self.max_size:
                    raise self._overloaded() from None
                raise
            self._in_use += 1
            try:
                yield conn
            finally:
                self._in_use -= 1

    def _overloaded(self) -> SidecarError:
        _log.warning("database pool busy", database=self.where, pool_max=self.max_size)
        return SidecarError(
            "overloaded",
            f"All {self.max_size} connections of this replica to the database (PostgreSQL at {self.where}) "
            f"stayed busy for {self.pool_wait_s:g}s: too many requests at once. Retry shortly, or raise "
            "[storage] pool_max.",
            retry_after_s=BUSY_RETRY_S,
        )

    @contextlib.asynccontextmanager
    async def _probe(self) -> AsyncIterator[None]:
        """While the server is known to be away, one call at a time tries it (waiting out the
        connect timeout while the pool reconnects); the others are refused at once, so requests
        served meanwhile never queue behind the database."""
        if not self._down:
            yield
            return
        if self._probing:
            raise self._unavailable(None)
        self._probing = True
        try:
            yield
        finally:
            self._probing = False

    async def _ensure_ready(self) -> None:
        if not self._opened:
            await self.open()
        elif self._unapplied:
            await self._ensure_migrated()


def _connection_errors() -> tuple[type[BaseException], ...]:
    """Errors that may mean "the server can't be reached"; `_lost` decides."""
    from psycopg import OperationalError
    from psycopg_pool import PoolTimeout

    return (OperationalError, PoolTimeout, OSError)


def _integrity_error() -> type[BaseException]:
    from psycopg import IntegrityError

    return IntegrityError


def _lost(exc: BaseException) -> bool:
    """True when `exc` is a lost or refused connection (no SQLSTATE, class 08, or the server
    shutting down, 57P0x), not a statement's own failure such as a lock timeout."""
    state = getattr(exc, "sqlstate", None)
    return state is None or state.startswith(("08", "57P0"))


class _PgConn:
    """What `PgBlocking.run_sync` hands its caller: `execute`/`executemany` like sqlite3's, taking
    engine-neutral statements (`?` placeholders, `Dialects`), on one pooled connection."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: Sql, params: Sequence[object] = ()) -> Any:
        text = text_for(sql, "postgresql")
        if text == "BEGIN IMMEDIATE":  # SQLite's "take the write lock now"; PostgreSQL locks rows
            text = "BEGIN"
        return self._conn.execute(to_postgres(text), params) if params else self._conn.execute(text)

    def executemany(self, sql: Sql, rows: Sequence[Sequence[object]]) -> Any:
        cur = self._conn.cursor()
        if rows:
            cur.executemany(to_postgres(text_for(sql, "postgresql")), rows)
        return cur


class PgBlocking:
    """The blocking face of PostgreSQL, for code that runs on threads (the ledger's writer and its
    queries, run with `anyio.to_thread`): `run_sync(call)` like `infra.db.Database`'s, on a psycopg
    connection from a (sync) pool, one call at a time per process (so a row read as queued and the
    same row committed are never counted twice): callers queue on the process lock, then take a
    connection, so the pool is never the queue and never busy. Migrations run under the same
    advisory lock as `PgEngine`'s. A lost server is `SidecarError("storage_unavailable")` (found
    within `pool_wait_s`, and a caller that queued while another found it away is refused at
    once); a deadlock or a serialisation failure (two replicas' batches) is `Retry`."""

    engine: Engine = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        max_size: int = 2,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        pool_wait_s: float = POOL_WAIT_S,
    ) -> None:
        from psycopg_pool import ConnectionPool

        _route_driver_logs()
        self.where = describe_url(url)
        self.path = None
        self._lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._migrations: dict[str, tuple[str, ...]] = {}
        self._unapplied: set[str] = set()
        self._opened = False
        self.pool: ConnectionPool[Any] = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            timeout=connect_timeout_s,
            check=ConnectionPool.check_connection,
            kwargs={
                "autocommit": True,
                "connect_timeout": max(int(connect_timeout_s), 1),
                "application_name": "llm-sidecar-ledger",
            },
            name="llm-sidecar-ledger",
        )
        self.connect_timeout_s = connect_timeout_s
        self.pool_wait_s = pool_wait_s
        self._down = False
        self._probe_lock = threading.Lock()
        self._down_message = (
            f"The database (PostgreSQL at {self.where}) cannot be reached; nothing was read or written."
        )

    def register(self, component: str, migrations: Sequence[Sql]) -> None:
        texts = tuple(text_for(m, "postgresql") for m in migrations)
        with self._lock:
            known = self._migrations.get(component)
            if known is not None and texts[: len(known)] != known:
                raise ValueError(f"migrations of {component!r} changed: they may only be appended to")
            self._migrations[component] = texts
            self._unapplied.add(component)

    async def run(self, call: Callable[[Any], _T]) -> _T:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self.run_sync, call)

    def run_sync(self, call: Callable[[Any], _T]) -> _T:
        # While the server is known to be away, one thread at a time tries it; the others are
        # refused at once (see `PgEngine._probe`).
        probe = self._down
        if probe and not self._probe_lock.acquire(blocking=False):
            raise SidecarError("storage_unavailable", self._down_message, retry_after_s=UNAVAILABLE_RETRY_S)
        try:
            return self._run(call, probe)
        finally:
            if probe:
                self._probe_lock.release()

    def _run(self, call: Callable[[Any], _T], probing: bool) -> _T:
        from psycopg import errors

        try:
            with self._open_lock:
                if not self._opened:
                    self.pool.open(wait=True, timeout=self.connect_timeout_s)
                    self._opened = True
            with self._lock:
                if self._down and not probing:  # found away while this call queued
                    raise SidecarError(
                        "storage_unavailable", self._down_message, retry_after_s=UNAVAILABLE_RETRY_S
                    )
                try:
                    wait = self.connect_timeout_s if probing else self.pool_wait_s  # see PgEngine
                    with self.pool.connection(timeout=wait) as conn:
                        return self._call(conn, call)
                except _connection_errors() as exc:
                    if _lost(exc):
                        self._down = True  # before the lock is let go: callers queued see it
                    raise
        except (errors.DeadlockDetected, errors.SerializationFailure) as exc:
            raise Retry(str(exc)) from exc
        except _connection_errors() as exc:
            if not _lost(exc):
                raise
            _log.warning("postgresql unreachable", database=self.where, error=type(exc).__name__)
            self._down = True
            raise SidecarError(
                "storage_unavailable", self._down_message, retry_after_s=UNAVAILABLE_RETRY_S
            ) from None

    def _call(self, conn: Any, call: Callable[[Any], _T]) -> _T:
        if self._unapplied:
            self._migrate(conn)
        try:
            result = call(_PgConn(conn))
        except BaseException:
            if conn.info.transaction_status != 0:  # not idle: roll the batch back
                with contextlib.suppress(Exception):
                    conn.execute("ROLLBACK")
            raise
        self._down = False
        return result

    def _migrate(self, conn: Any) -> None:
        conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT_S}s'")
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            conn.execute(_VERSIONS_TABLE)
            for component in sorted(self._unapplied):
                migrations = self._migrations[component]
                row = conn.execute(
                    "SELECT version FROM schema_versions WHERE component = %s", (component,)
                ).fetchone()
                version = int(row[0]) if row else 0
                for index in range(version, len(migrations)):
                    with conn.transaction():
                        conn.execute(migrations[index].encode())
                        conn.execute(
                            "INSERT INTO schema_versions (component, version) VALUES (%s, %s) "
                            "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                            (component, index + 1),
                        )
            self._unapplied.clear()
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
            conn.execute("RESET lock_timeout")

    def close(self) -> None:
        with self._lock:
            self.pool.close()
            self._opened = False
