"""The usage ledger and budgets, in the state directory's SQLite database (`infra.db`).

The tables (`ledger`, the `spend_daily`, `spend_daily_scoped` and `run_tokens` rollups, `budgets`,
`budget_alerts`) and their migrations are in `infra.ledger_schema`.

The same code runs on PostgreSQL for a team (`infra.pg.PgBlocking` in place of the state database):
statements are written in the subset both engines share, with `Dialects` where they differ.

Writes stay off the request path: `record` appends the row to a deque and returns (no lock; a
wake-up only when the writer is idle); a writer thread commits what queued within 50 ms of the
first row in one short `BEGIN IMMEDIATE` transaction (one transaction per 50 ms under load, not one
per request), retrying while another process holds the write lock. Rows not yet committed are
counted by the budget queries (`_pending`), so a burst of requests can't slip past a limit while
its rows wait. The spend of the current month per day and provider, client key and router is also
kept in memory (`infra.spend_tally`: the rollups as read, plus every row queued since, re-read every
`TALLY_TTL_S` to take in other processes' spending), so a budget check is a lookup
(`period_spends`); while no budget check uses it, rows are not added to it. `close` commits
what is queued, waiting for as long as the writer makes progress (within its bound). A
crash (kill -9) loses only rows still queued; WAL keeps the committed ones and the file
consistent. On PostgreSQL a batch that cannot reach the server is kept and tried again (backing
off up to 2 s) for as long as the process lives, so a restarted database loses nothing; two
replicas' batches that deadlock on the rollups are retried.
A batch retried after a commit whose answer was lost finds some of its rows already there (the
`uid` is unique); it then counts in the rollups only the rows it inserted.

Must not know: the protocol, providers, chat, how budgets are decided (core.budget).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Final, Literal

from sidecar import logs
from sidecar.core.budget import OVERALL, AlertKey, Budget
from sidecar.core.metrics import Sample as MetricSample
from sidecar.core.usage_stats import Sample
from sidecar.errors import SidecarError
from sidecar.infra import audit, pg_schema
from sidecar.infra.db import Database
from sidecar.infra.ledger_rows import (
    ADD_RUN_TOKENS,
    ADD_SCOPED_SPEND,
    ADD_SPEND,
    INSERT_AUDIT,
    INSERT_ROW,
    MOVE_SCOPED_SPEND,
    AuditNote,
    Row,
    client_scope,
    insert_chunks,
    rollups,
)
from sidecar.infra.ledger_schema import COMPONENT, ENGINE_MIGRATIONS
from sidecar.infra.spend_tally import SpendTally
from sidecar.infra.sql import Dialects, Retry, text_for

if TYPE_CHECKING:
    from sidecar.infra.pg import PgBlocking

_DAY_OF_TS: Final = Dialects(sqlite="date(ts, 'unixepoch')", postgres=pg_schema.UTC_DAY.format(ts="ts"))
RETRY_WAIT_MAX_S: Final = 2.0
"""The longest wait between tries of a batch PostgreSQL could not take (the server away)."""

GroupBy = Literal["provider", "model", "day", "tag", "client", "router"]
Outcome = Literal["ok", "error", "cancelled"]

COMMIT_ATTEMPTS: Final = 4
"""Tries of one batch; each waits up to the database's busy timeout for another process's lock."""
_MAX_BATCH: Final = 512
_BATCH_WINDOW_S: Final = 0.05
"""How long the writer gathers rows before it commits them. A transaction has a fixed cost (the
write lock, the WAL append: ~0.5 ms on the 2-core machine), so at one row per 0.5 ms a 50 ms
window costs a row ~10 µs less CPU than a 20 ms one; a kill -9 loses at most this much."""
CLOSE_TIMEOUT_S: Final = 30.0
"""The longest `close` waits by default (the stdio process gives it what is left of the
contract's 2 s instead)."""
CLOSE_STALL_S: Final = 0.5
"""How long `close` waits for the writer to commit another row before it gives up."""
TALLY_TTL_S: Final = 2.0
"""How long the in-memory spend is used before it is read again (other processes' spending is
seen within this time; this process's own at once)."""

__all__ = ["AuditNote", "Ledger", "Row"]

_log = logs.get_logger("ledger")

# The statements, in the subset both engines share (kept here under their old names too).
_INSERT_ROW: Final = INSERT_ROW
_INSERT_AUDIT: Final = INSERT_AUDIT
_UPSERT_BUDGET: Final = (
    "INSERT INTO budgets (scope, daily_usd, monthly_usd, alert_threshold, run_token_limit_soft, "
    "run_token_limit_hard, updated_ts) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (scope) DO UPDATE SET "
    "daily_usd = excluded.daily_usd, monthly_usd = excluded.monthly_usd, "
    "alert_threshold = excluded.alert_threshold, run_token_limit_soft = excluded.run_token_limit_soft, "
    "run_token_limit_hard = excluded.run_token_limit_hard, updated_ts = excluded.updated_ts"
)
_SPEND_SINCE: Final = "SELECT day, provider, cost_usd FROM spend_daily WHERE day >= ?"
_SCOPED_SPEND_SINCE: Final = "SELECT day, scope, cost_usd FROM spend_daily_scoped WHERE day >= ?"


def _period_days(period: str) -> tuple[str, str]:
    """The first day of a UTC day `YYYY-MM-DD` or month `YYYY-MM`, and the first day after it."""
    if len(period) == 10:
        day = dt.date.fromisoformat(period)
        return period, (day + dt.timedelta(days=1)).isoformat()
    year, month = int(period[:4]), int(period[5:7])
    following = dt.date(year + month // 12, month % 12 + 1, 1)
    return f"{period}-01", following.isoformat()


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, its lock taken at once (`BEGIN` on PostgreSQL), rolled back when
    the block raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


class _Flush:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class _Stop(_Flush):
    __slots__ = ()


def _busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


class Ledger:
    """Rows, rollups and budgets of the usage database; see the module doc.

    `record`/`note` never block. Every other method does database work and is meant to run in a
    worker thread (`anyio.to_thread.run_sync`); each takes the database's lock for one short step.
    `on_commit(rows)` runs on the writer thread after each committed batch.
    """

    def __init__(
        self, db: Database | PgBlocking, *, on_commit: Callable[[list[Row]], None] | None = None
    ) -> None:
        self.db = db
        self.on_commit = on_commit
        self.engine = db.engine
        self._sqlite = db.engine == "sqlite"
        db.register(audit.COMPONENT, [text_for(m, db.engine) for m in audit.ENGINE_MIGRATIONS])
        db.register(COMPONENT, [text_for(m, db.engine) for m in ENGINE_MIGRATIONS])
        self._day_of_ts = text_for(_DAY_OF_TS, db.engine)
        # Rows and audit rows wait in deques: appending is one step under the GIL, so `record`
        # takes no lock. Only the writer takes from them, under `_pending_lock`.
        self._queued: collections.deque[Row] = collections.deque()
        self._notes: collections.deque[AuditNote] = collections.deque()
        # Rows the writer has taken and not yet committed (or dropped): still pending.
        self._inflight: list[Row] = []
        self._pending_lock = threading.Lock()  # guards taking rows, `_inflight` and `_tally`
        # Wake-ups for an idle writer (None) and flush or stop markers.
        self._wake: queue.SimpleQueue[_Flush | None] = queue.SimpleQueue()
        self._idle = True  # no writer, or one waiting on `_wake`: the next row must wake it
        self._tally = SpendTally()
        self._tally_read_at = -TALLY_TTL_S
        # Rows counted from the first `record`: `_taken` of them left `_queued` for the writer,
        # the first `_tallied` are in `_tally` (or in what it was last read from).
        self._taken = 0
        self._tallied = 0
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._writer_running = False
        self._urgent = threading.Event()  # a flush or a stop is queued: commit without waiting
        self._pid = os.getpid()
        self.committed = 0
        self.dropped = 0

    # --- writing ---------------------------------------------------------------------------------

    def record(self, row: Row) -> None:
        """Queue one request's row for the writer (no lock, no wake-up while the writer gathers)."""
        self._queued.append(row)
        if self._idle:
            self._wake_writer()

    def note(self, entry: AuditNote) -> None:
        """Queue an audit-trail row; committed with the next batch."""
        self._notes.append(entry)
        if self._idle:
            self._wake_writer()

    def _wake_writer(self) -> None:
        self._idle = False
        self._wake.put(None)
        self._ensure_writer()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued before this call is committed (or dropped)."""
        marker = _Flush()
        self._wake.put(marker)
        self._urgent.set()
        self._ensure_writer()
        return marker.done.wait(timeout)

    def close(self, timeout: float = CLOSE_TIMEOUT_S, *, stall_s: float = CLOSE_STALL_S) -> bool:
        """Commit what is queued and stop the writer. Waits for as long as the writer keeps
        committing (or dropping) rows: until all are done, `timeout` seconds at most, or sooner once
        `stall_s` passes with none committed (a writer held up by another process's lock or an
        unreachable server: waiting longer would only delay the exit). False, with a warning,
        when rows are left."""
        with self._thread_lock:
            thread = self._thread
            if thread is None or not thread.is_alive():
                return True
            marker = _Stop()
            self._wake.put(marker)
            self._urgent.set()
        deadline = time.monotonic() + timeout
        progress = self.committed + self.dropped
        while True:
            left = deadline - time.monotonic()
            if marker.done.wait(max(0.0, min(stall_s, left))):
                return True
            seen, progress = progress, self.committed + self.dropped
            if progress == seen or time.monotonic() >= deadline:
                break
        _log.warning("ledger rows not committed at shutdown", queued=self.pending_count)
        return False

    @property
    def pending_count(self) -> int:
        with self._pending_lock:
            return len(self._inflight) + len(self._queued)

    def _ensure_writer(self) -> None:
        if self._writer_running:  # a flag, not `is_alive()`: this runs once per request
            return
        with self._thread_lock:
            if self._thread is None or not self._thread.is_alive():
                # Daemon: a writer stuck on another process's lock must not hold the exit up.
                self._thread = threading.Thread(target=self._run_writer, name="sidecar-ledger", daemon=True)
                self._writer_running = True
                self._thread.start()

    def _run_writer(self) -> None:
        try:
            self._run()
        finally:
            with self._thread_lock:
                if self._thread is None or self._thread is threading.current_thread():
                    self._writer_running = False
                    self._idle = True  # a writer that died of a bug is replaced by the next row

    def _run(self) -> None:
        backlog = False
        while True:
            markers: list[_Flush] = []
            if not backlog:
                # Idle from here: a row queued before the look below is seen by it, a row queued
                # after it wakes the writer (`record` reads `_idle` after appending).
                self._idle = True
                if not self._queued and not self._notes:
                    first = self._wake.get()
                    if first is not None:
                        markers.append(first)
                self._idle = False
                if not markers:
                    # Gather for up to _BATCH_WINDOW_S with one wake-up: one transaction per few
                    # tens of milliseconds under load instead of one per request. A flush or a
                    # stop cuts the wait short.
                    self._urgent.wait(_BATCH_WINDOW_S)
            self._urgent.clear()
            while True:
                try:
                    item = self._wake.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    markers.append(item)
            # A marker waits for every row queued before it, so all of them now (in batches);
            # otherwise one batch.
            todo = len(self._queued) if markers else min(len(self._queued), _MAX_BATCH)
            while True:
                rows = self._take(min(todo, _MAX_BATCH))
                todo -= len(rows)
                notes = [self._notes.popleft() for _ in range(len(self._notes))]
                if rows or notes:
                    self._commit(rows, notes)
                if rows and self.on_commit is not None:
                    try:
                        self.on_commit(rows)
                    except Exception:
                        _log.exception("ledger commit observer failed")
                if todo <= 0:
                    break
            backlog = len(self._queued) >= _MAX_BATCH
            stop = any(isinstance(m, _Stop) for m in markers)
            if stop:
                with self._thread_lock:
                    self._thread = None
                    self._writer_running = False
                    self._idle = True  # a row queued from now on starts a new writer
            # After the observer: a flush returns once what it waited for is committed *and* its
            # consequences (budget alerts) are out, so nobody reads half of a batch's effects.
            for marker in markers:
                marker.done.set()
            if stop:
                return

    def _take(self, count: int) -> list[Row]:
        """The next `count` queued rows, now in flight; added to the spend in memory if it is in
        use and they were not yet."""
        with self._pending_lock:
            take = self._queued.popleft
            rows = [take() for _ in range(count)]
            self._inflight = rows
            first = self._taken
            self._taken += count
            if self._tallied < self._taken:
                if self._tally_in_use():
                    self._tally_rows(rows[max(self._tallied - first, 0) :])
                self._tallied = self._taken
            return rows

    def _commit(self, rows: list[Row], notes: list[AuditNote]) -> None:
        delay = 0.05
        attempt = 0
        while attempt < COMMIT_ATTEMPTS:
            attempt += 1
            try:
                self.db.run_sync(lambda conn: self._write(conn, rows, notes))
                self.committed += len(rows)
                return
            except SidecarError as exc:  # PostgreSQL away: keep the batch, try until it is back
                if exc.kind != "storage_unavailable":
                    self._drop(rows, notes, exc)
                    return
                attempt = 0
                _log.warning("ledger rows waiting for the database", rows=len(rows), retry_in_s=delay)
                time.sleep(delay)
                delay = min(delay * 2, RETRY_WAIT_MAX_S)
            except Retry:
                _log.info("ledger batch raced another writer, retrying", attempt=attempt, rows=len(rows))
                time.sleep(delay)
                delay = min(delay * 4, 1.0)
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or attempt == COMMIT_ATTEMPTS:
                    self._drop(rows, notes, exc)
                    return
                _log.info("ledger busy, retrying", attempt=attempt, rows=len(rows))
                time.sleep(delay)
                delay = min(delay * 4, 1.0)
            except (sqlite3.Error, OSError, ValueError) as exc:
                self._drop(rows, notes, exc)
                return

    def _drop(self, rows: list[Row], notes: list[AuditNote], exc: Exception) -> None:
        with self._pending_lock:
            self._inflight = []
        self.dropped += len(rows)
        _log.error("ledger rows not written", rows=len(rows), audit_rows=len(notes), error=type(exc).__name__)

    def _write(self, conn: sqlite3.Connection, rows: list[Row], notes: list[AuditNote]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                chunks = insert_chunks(rows, self._pid, sqlite=self._sqlite)
                inserted = sum(conn.execute(sql, params).rowcount for sql, params in chunks)
                fresh = rows
                if inserted != len(rows):
                    # Some were committed already (a batch retried after a commit whose answer was
                    # lost): start again and count in the rollups only the rows this one inserts.
                    conn.execute("ROLLBACK")
                    conn.execute("BEGIN IMMEDIATE")
                    known = self._known_uids(conn, rows)
                    fresh = [r for r in rows if r.uid not in known]
                    for sql, params in insert_chunks(fresh, self._pid, sqlite=self._sqlite):
                        conn.execute(sql, params)
                spend, scoped, runs = rollups(fresh)
                if spend:
                    conn.executemany(ADD_SPEND, spend)
                if scoped:
                    conn.executemany(ADD_SCOPED_SPEND, scoped)
                if runs:
                    conn.executemany(ADD_RUN_TOKENS, runs)
            if notes:
                conn.executemany(INSERT_AUDIT, [n.params() for n in notes])
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        # Under the database lock, like the queries that read what is pending: a row is counted
        # either as pending or as committed, never both.
        with self._pending_lock:
            self._inflight = []

    @staticmethod
    def _known_uids(conn: sqlite3.Connection, rows: list[Row]) -> set[str]:
        known: set[str] = set()
        for start in range(0, len(rows), 256):
            chunk = [r.uid for r in rows[start : start + 256]]
            marks = ", ".join("?" * len(chunk))
            known.update(u for (u,) in conn.execute(f"SELECT uid FROM ledger WHERE uid IN ({marks})", chunk))
        return known

    # --- the spend of the current month, in memory ------------------------------------------------

    def period_spends(self, keys: Sequence[tuple[str, str]]) -> list[float] | None:
        """USD spent for each `(scope, period)` (scope `*`, a provider id, or a client key's or
        router's named scope, `infra.ledger_rows.client_scope`; period a UTC day `YYYY-MM-DD` or
        month `YYYY-MM`) from memory: committed rows of every process as last read
        plus every row this process queued since. None when that was read more than `TALLY_TTL_S`
        ago or does not cover a period: `refresh_spends` (a query), then ask again."""
        with self._pending_lock:
            if time.monotonic() - self._tally_read_at > TALLY_TTL_S:  # `_tally_in_use`, in line
                return None
            if self._tallied - self._taken < len(self._queued):
                self._tally_queued()
            return self._tally.get_all(keys)

    def _tally_in_use(self) -> bool:
        """Whether the spend in memory may still be used (`_pending_lock` held). One that may not
        is read again before its next use, so rows are not added to it meanwhile: without
        budgets, nothing is."""
        return time.monotonic() - self._tally_read_at <= TALLY_TTL_S

    def _tally_queued(self) -> None:
        """Add the rows queued since the last call to the spend in memory (`_pending_lock` held)."""
        queued = self._queued
        start, end = self._tallied - self._taken, len(queued)
        if start < end:
            # Rows only leave the deque's left end under this lock, and `record` appends at the
            # right, so these positions hold still; a position near the right end is one step.
            self._tally_rows([queued[i] for i in range(start, end)])
            self._tallied += end - start

    def _tally_rows(self, rows: Sequence[Row]) -> None:
        add = self._tally.add
        for row in rows:
            if row.cost_usd:
                add(row.day, row.provider, row.cost_usd, row.scopes)

    def read_period_spends(self, keys: Sequence[tuple[str, str]]) -> list[float]:
        """`period_spends`, reading the rollups into memory first (from the first day of the
        earliest month asked about)."""
        self.refresh_spends(min(period[:7] for _, period in keys) + "-01")
        spent = self.period_spends(keys)
        if spent is None:  # another thread read a later month meanwhile: ask the database
            spent = self.spends([(scope, *_period_days(period)) for scope, period in keys])
        return spent

    def refresh_spends(self, first_day: str) -> None:
        """Read the spend of every day from `first_day` (`YYYY-MM-01`) on into memory."""

        def run(conn: sqlite3.Connection) -> None:
            committed = conn.execute(_SPEND_SINCE, (first_day,)).fetchall()
            scoped = conn.execute(_SCOPED_SPEND_SINCE, (first_day,)).fetchall()
            # Under the database lock (no batch commits meanwhile) and the pending lock (no row
            # queued meanwhile): every row is counted once, as committed or as queued.
            with self._pending_lock:
                queued = list(self._queued)
                self._tally.reset(first_day, committed, scoped)
                self._tally_rows([*self._inflight, *queued])
                self._tallied = self._taken + len(queued)
                self._tally_read_at = time.monotonic()

        self.db.run_sync(run)

    # --- spend and run figures -------------------------------------------------------------------

    def _pending(self) -> list[Row]:
        """Rows queued or in flight, not yet committed (call under the database's lock)."""
        with self._pending_lock:
            return [*self._inflight, *self._queued]

    def spends(self, queries: Sequence[tuple[str, str, str]]) -> list[float]:
        """USD spent for each `(scope, first_day, end_day)` (days `YYYY-MM-DD` UTC, end exclusive;
        scope `*`, a provider id or a named scope), committed rows of every process plus this one's
        queued rows."""

        def run(conn: sqlite3.Connection) -> list[float]:
            pending = self._pending()
            out: list[float] = []
            for scope, first, end in queries:
                if scope == OVERALL:
                    cur = conn.execute(
                        "SELECT coalesce(sum(cost_usd), 0) FROM spend_daily WHERE day >= ? AND day < ?",
                        (first, end),
                    )
                elif ":" in scope:  # provider ids have none
                    cur = conn.execute(
                        "SELECT coalesce(sum(cost_usd), 0) FROM spend_daily_scoped "
                        "WHERE day >= ? AND day < ? AND scope = ?",
                        (first, end, scope),
                    )
                else:
                    cur = conn.execute(
                        "SELECT coalesce(sum(cost_usd), 0) FROM spend_daily "
                        "WHERE provider = ? AND day >= ? AND day < ?",
                        (scope, first, end),
                    )
                total = float(cur.fetchone()[0])
                total += sum(
                    r.cost_usd or 0.0
                    for r in pending
                    if (scope == OVERALL or r.provider == scope or scope in r.scopes) and first <= r.day < end
                )
                out.append(total)
            return out

        return self.db.run_sync(run)

    def client_totals(self) -> dict[str, tuple[int, float]]:
        """Requests and USD of every gateway client key (by name) over the whole ledger, from the
        rollup, this process's queued rows included."""
        prefix = client_scope("")

        def run(conn: sqlite3.Connection) -> dict[str, tuple[int, float]]:
            cur = conn.execute(
                "SELECT scope, sum(requests), sum(cost_usd) FROM spend_daily_scoped WHERE scope LIKE ? "
                "GROUP BY scope",
                (prefix + "%",),
            )
            totals = {scope[len(prefix) :]: (int(n), float(usd)) for scope, n, usd in cur.fetchall()}
            for r in self._pending():
                if r.client is not None:
                    n, usd = totals.get(r.client, (0, 0.0))
                    totals[r.client] = (n + 1, usd + (r.cost_usd or 0.0))
            return totals

        return self.db.run_sync(run)

    def rename_client(self, old: str, new: str) -> int:
        """Carry client key `old`'s usage over to its new name `new`: its ledger rows and its spend
        per day, added to whatever `new` has (a deleted key's of that name), in one transaction.
        Rows queued before the call are committed first; a request admitted under the old name
        that ends after it is recorded under that name. Answers how many rows moved."""
        self.flush()
        old_scope, new_scope = client_scope(old), client_scope(new)

        def run(conn: sqlite3.Connection) -> int:
            with _transaction(conn):
                moved = conn.execute("UPDATE ledger SET client = ? WHERE client = ?", (new, old)).rowcount
                conn.execute(MOVE_SCOPED_SPEND, (new_scope, old_scope))
                conn.execute("DELETE FROM spend_daily_scoped WHERE scope = ?", (old_scope,))
            with self._pending_lock:  # the spend in memory still has the old name's: read it again
                self._tally_read_at = -TALLY_TTL_S
            return int(moved)

        return self.db.run_sync(run)

    def run_tokens(self, run_id: str, scopes: Sequence[str]) -> list[int]:
        """Tokens (input + output) used by run `run_id`, per scope (`*` = every provider)."""

        def run(conn: sqlite3.Connection) -> list[int]:
            pending = [r for r in self._pending() if r.run_id == run_id]
            by_provider = dict(
                conn.execute("SELECT provider, tokens FROM run_tokens WHERE run_id = ?", (run_id,)).fetchall()
            )
            for r in pending:
                by_provider[r.provider] = by_provider.get(r.provider, 0) + r.tokens
            return [
                int(sum(by_provider.values()) if scope == OVERALL else by_provider.get(scope, 0))
                for scope in scopes
            ]

        return self.db.run_sync(run)

    # --- analytics -------------------------------------------------------------------------------

    def samples(
        self,
        since_ts: float,
        until_ts: float,
        group_by: GroupBy | None = None,
        *,
        provider: str | None = None,
        tag: str | None = None,
        run_id: str | None = None,
        client: str | None = None,
        router: str | None = None,
    ) -> list[Sample]:
        """Committed rows with `since_ts <= ts < until_ts` as analytics samples keyed by `group_by`."""
        key_sql = {
            None: "NULL",
            "provider": "provider",
            "model": "provider || ':' || model",
            "day": self._day_of_ts,
            "tag": "tag",
            "client": "client",
            "router": "router",
        }[group_by]
        where = ["ts >= ?", "ts < ?"]
        args: list[object] = [since_ts, until_ts]
        for column, value in (
            ("provider", provider),
            ("tag", tag),
            ("run_id", run_id),
            ("client", client),
            ("router", router),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = (
            f"SELECT {key_sql}, outcome, coalesce(input_tokens, 0), coalesce(output_tokens, 0), "
            "coalesce(cache_read_tokens, 0), coalesce(cache_write_tokens, 0), coalesce(reasoning_tokens, 0), "
            f"cost_usd, latency_ms, cache_hit, saved_usd FROM ledger WHERE {' AND '.join(where)}"
        )

        def run(conn: sqlite3.Connection) -> list[Sample]:
            return [Sample(*r) for r in conn.execute(sql, args).fetchall()]

        return self.db.run_sync(run)

    def metric_samples(self, since_ts: float, until_ts: float) -> list[MetricSample]:
        """Committed rows with `since_ts <= ts < until_ts`, as metrics samples."""
        sql = (
            "SELECT ts, provider, client, outcome, coalesce(input_tokens, 0), coalesce(output_tokens, 0), "
            "coalesce(cost_usd, 0), latency_ms, router FROM ledger WHERE ts >= ? AND ts < ?"
        )

        def run(conn: sqlite3.Connection) -> list[MetricSample]:
            return [MetricSample(*r) for r in conn.execute(sql, (since_ts, until_ts)).fetchall()]

        return self.db.run_sync(run)

    # --- budgets ---------------------------------------------------------------------------------

    def budgets(self) -> list[Budget]:
        def run(conn: sqlite3.Connection) -> list[Budget]:
            cur = conn.execute(
                "SELECT scope, daily_usd, monthly_usd, alert_threshold, run_token_limit_soft, "
                "run_token_limit_hard FROM budgets ORDER BY scope"
            )
            return [Budget(None if r[0] == OVERALL else r[0], *r[1:]) for r in cur.fetchall()]

        return self.db.run_sync(run)

    def put_budget(self, budget: Budget, ts: float, note: AuditNote) -> None:
        """Store `budget` (deleting its row when it limits nothing) and its audit row, in one
        transaction."""

        def run(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                if budget.empty:
                    conn.execute("DELETE FROM budgets WHERE scope = ?", (budget.scope,))
                else:
                    b = budget
                    values = (b.scope, b.daily_usd, b.monthly_usd, b.alert_threshold, b.run_token_limit_soft,
                              b.run_token_limit_hard, ts)  # fmt: skip
                    conn.execute(_UPSERT_BUDGET, values)
                conn.execute(_INSERT_AUDIT, note.params())

        self.db.run_sync(run)

    def mark_alert(self, key: AlertKey, ts: float) -> bool:
        """Remember that alert `key` was sent; False when some process already sent it."""

        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT INTO budget_alerts (scope, kind, period_key, sent_ts) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (key.scope, key.kind, key.period_key, ts),
            )
            return cur.rowcount == 1

        return self.db.run_sync(run)
