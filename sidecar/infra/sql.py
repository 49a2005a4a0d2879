"""Engine-neutral SQL for the storage seam: one way to write a statement or a migration that runs on
SQLite (`infra.db`) and on PostgreSQL (`infra.pg`).

- Statements are written once, SQLite-style, with `?` placeholders, in the subset both engines
  share: `INSERT … ON CONFLICT (…) DO UPDATE SET x = excluded.x` and `ON CONFLICT DO NOTHING`
  (never `INSERT OR IGNORE`/`REPLACE`), `coalesce`, `||`, `RETURNING`. `to_postgres` turns the
  placeholders into psycopg's `%s` (and doubles a literal `%`), leaving string literals, quoted
  names and comments alone.
- Where the engines really differ (types, identity columns, date functions, triggers), a statement
  or a migration is a `Dialects(sqlite=…, postgres=…)` pair; each engine takes its own text.
- Writes go as a batch of `Stmt`s run in one transaction (`SqlEngine.write`), which is the shape
  every write of the ledger, budgets, audit trail and client keys already has; reads are single
  statements (`fetchall`, `fetchone`).

`SqliteEngine` puts `SqlEngine` over the existing `infra.db.Database` (its connection, its lock,
its migrations), so SQLite stays what it is today.

Must not know: what the components store, the protocol, which engine is configured.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Sequence
from typing import Literal, Protocol

import msgspec

from sidecar.infra.db import Database

Engine = Literal["sqlite", "postgresql"]


class Dialects(msgspec.Struct, frozen=True):
    """The same statement or migration written for each engine."""

    sqlite: str
    postgres: str

    def text(self, engine: Engine) -> str:
        return self.sqlite if engine == "sqlite" else self.postgres


Sql = str | Dialects


def text_for(sql: Sql, engine: Engine) -> str:
    return sql if isinstance(sql, str) else sql.text(engine)


Row = tuple[object, ...]


class Stmt(msgspec.Struct, frozen=True):
    """One statement of a write batch: run once with `params`, or once per row of `many`."""

    sql: Sql
    params: Sequence[object] = ()
    many: Sequence[Sequence[object]] | None = None


class Conflict(Exception):
    """A write broke a uniqueness or other integrity constraint (e.g. a name already taken),
    whichever engine ran it; the batch was rolled back."""


class Retry(Exception):
    """A batch lost a race with another writer (PostgreSQL's deadlock or serialisation failure);
    nothing of it was kept and running it again is right."""


class SqlEngine(Protocol):
    """What a storage component needs of a database, whichever engine it is."""

    engine: Engine

    def register(self, component: str, migrations: Sequence[Sql]) -> None:
        """Declare a component's append-only migrations; they run before its next statement."""
        ...

    async def fetchall(self, sql: Sql, params: Sequence[object] = ()) -> list[Row]: ...

    async def fetchone(self, sql: Sql, params: Sequence[object] = ()) -> Row | None: ...

    async def write(self, statements: Sequence[Stmt]) -> list[int]:
        """Run `statements` in one transaction; each one's row count (summed over `many`).
        Raises `Conflict` on an integrity violation (nothing of the batch is kept)."""
        ...

    async def aclose(self) -> None: ...


@functools.lru_cache(maxsize=512)
def to_postgres(sql: str) -> str:
    """`?` placeholders to `%s`, a literal `%` to `%%`; quoted text and comments untouched."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in ("'", '"'):
            end = i + 1
            while end < n:
                if sql[end] == ch:
                    if end + 1 < n and sql[end + 1] == ch:  # '' or "" inside a quoted run
                        end += 2
                        continue
                    break
                end += 1
            out.append(sql[i : end + 1].replace("%", "%%"))
            i = end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif ch == "$" and (tag_end := _dollar_tag_end(sql, i)) is not None:
            tag = sql[i:tag_end]
            close = sql.find(tag, tag_end)
            close = n if close < 0 else close + len(tag)
            out.append(sql[i:close].replace("%", "%%"))
            i = close
        elif ch == "?":
            out.append("%s")
            i += 1
        elif ch == "%":
            out.append("%%")
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _dollar_tag_end(sql: str, start: int) -> int | None:
    """The end of a `$tag$` (or `$$`) opening at `start`, else None (e.g. a `$1` parameter)."""
    end = start + 1
    while end < len(sql) and (sql[end].isalnum() or sql[end] == "_"):
        end += 1
    if end < len(sql) and sql[end] == "$" and not sql[start + 1 : end].isdigit():
        return end + 1
    return None


class SqliteEngine:
    """`SqlEngine` on the state directory's SQLite database (`infra.db.Database`)."""

    engine: Engine = "sqlite"

    def __init__(self, db: Database) -> None:
        self.db = db

    def register(self, component: str, migrations: Sequence[Sql]) -> None:
        self.db.register(component, [text_for(m, "sqlite") for m in migrations])

    async def fetchall(self, sql: Sql, params: Sequence[object] = ()) -> list[Row]:
        text = text_for(sql, "sqlite")
        return await self.db.run(lambda conn: [tuple(r) for r in conn.execute(text, params).fetchall()])

    async def fetchone(self, sql: Sql, params: Sequence[object] = ()) -> Row | None:
        text = text_for(sql, "sqlite")

        def one(conn: sqlite3.Connection) -> Row | None:
            row = conn.execute(text, params).fetchone()
            return None if row is None else tuple(row)

        return await self.db.run(one)

    async def write(self, statements: Sequence[Stmt]) -> list[int]:
        def run(conn: sqlite3.Connection) -> list[int]:
            counts: list[int] = []
            conn.execute("BEGIN IMMEDIATE")
            try:
                for stmt in statements:
                    text = text_for(stmt.sql, "sqlite")
                    cur = (
                        conn.executemany(text, stmt.many)
                        if stmt.many is not None
                        else conn.execute(text, stmt.params)
                    )
                    counts.append(cur.rowcount)
                conn.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise Conflict(str(exc)) from exc
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            return counts

        return await self.db.run(run)

    async def aclose(self) -> None:
        self.db.close()
