"""The storage seam's statement layer on both engines, and PostgreSQL's own duties, on a real
server: the same migrations and `?` statements on SQLite and PostgreSQL; replicas starting at once
apply each migration exactly once (advisory lock); an unreachable server is `storage_unavailable`
(no password in the message) found within the pool wait, not the connect timeout, while a pool
whose connections are all busy is `overloaded`; a restarted server is used again without a new
engine."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import psycopg
import pytest

from sidecar.errors import SidecarError
from sidecar.infra.db import Database
from sidecar.infra.pg import POOL_WAIT_S, PgBlocking, PgEngine
from sidecar.infra.sql import Conflict, Dialects, SqlEngine, Stmt
from tests.conftest import ServerFactory
from tests.servers import free_port

NOTES_MIGRATIONS = (
    Dialects(
        sqlite="CREATE TABLE notes (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, cost REAL NOT NULL, "
        "hits INTEGER NOT NULL DEFAULT 0)",
        postgres="CREATE TABLE notes (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name TEXT NOT NULL "
        "UNIQUE, cost DOUBLE PRECISION NOT NULL, hits INTEGER NOT NULL DEFAULT 0)",
    ),
    "CREATE INDEX notes_cost ON notes (cost)",
)
UPSERT = (
    "INSERT INTO notes (name, cost, hits) VALUES (?, ?, 1) "
    "ON CONFLICT (name) DO UPDATE SET cost = notes.cost + excluded.cost, hits = notes.hits + 1"
)


async def _exercise(engine: SqlEngine) -> None:
    engine.register("notes", NOTES_MIGRATIONS)
    counts = await engine.write(
        [
            Stmt(UPSERT, ("alpha?", 0.25)),
            Stmt(UPSERT, many=[("beta%", 1.5), ("alpha?", 0.5)]),
            Stmt("INSERT INTO notes (name, cost) VALUES (?, ?) ON CONFLICT DO NOTHING", ("beta%", 9.0)),
        ]
    )
    assert counts == [1, 2, 0]
    rows = await engine.fetchall(
        "SELECT name, cost, hits FROM notes WHERE name LIKE 'a%' OR name = ? ORDER BY name", ("beta%",)
    )
    assert rows == [("alpha?", 0.75, 2), ("beta%", 1.5, 1)]
    assert await engine.fetchone("SELECT count(*) FROM notes WHERE cost > ?", (100,)) == (0,)
    # A batch is one transaction: the failing statement takes the first one back with it.
    with pytest.raises(Conflict, match=r"(?i)not null|null value"):
        await engine.write(
            [
                Stmt(UPSERT, ("gamma", 1.0)),
                Stmt("INSERT INTO notes (name, cost) VALUES (?, NULL)", ("delta",)),
            ]
        )
    assert await engine.fetchone("SELECT count(*) FROM notes") == (2,)
    with pytest.raises(Conflict):  # a name taken, in either engine's words
        await engine.write([Stmt("UPDATE notes SET name = ? WHERE name = ?", ("alpha?", "beta%"))])
    # Registering again with one more migration applies only the new one.
    engine.register("notes", (*NOTES_MIGRATIONS, "ALTER TABLE notes ADD COLUMN tag TEXT"))
    await engine.write([Stmt("UPDATE notes SET tag = ? WHERE name = ?", ("t", "alpha?"))])
    assert await engine.fetchall("SELECT component, version FROM schema_versions") == [("notes", 3)]


def test_the_same_statements_run_on_both_engines(sql_engine: Callable[[], SqlEngine]) -> None:
    async def main() -> None:
        engine = sql_engine()
        try:
            await _exercise(engine)
        finally:
            await engine.aclose()

    anyio.run(main)


def test_postgresql_reports_its_health(postgres_url: str) -> None:
    async def main() -> None:
        engine = PgEngine(postgres_url)
        assert await engine.health() == {"engine": "postgresql", "ok": True, "at": engine.where}
        await engine.aclose()
        down = PgEngine(f"postgresql://x@127.0.0.1:{free_port()}/gone", connect_timeout_s=1.0)
        assert (await down.health())["ok"] is False
        await down.aclose()

    anyio.run(main)


_REPLICA = """
import json, sys, time, anyio
from sidecar.infra.pg import POOL_WAIT_S, PgBlocking, PgEngine

url, start_at = sys.argv[1], float(sys.argv[2])
async def main():
    engine = PgEngine(url)
    engine.register("demo", (
        "CREATE TABLE applied (n INTEGER NOT NULL, pid INTEGER NOT NULL);"
        "INSERT INTO applied VALUES (1, pg_backend_pid()); SELECT pg_sleep(0.3)",
        "CREATE TABLE again (n INTEGER); INSERT INTO applied VALUES (2, pg_backend_pid())",
    ))
    engine.register("other", ("CREATE TABLE other (x INTEGER)", "INSERT INTO other VALUES (1)"))
    while time.time() < start_at:
        await anyio.sleep(0.002)
    await engine.open()
    print(json.dumps(await engine.fetchall("SELECT component, version FROM schema_versions ORDER BY component")))
    await engine.aclose()
anyio.run(main)
"""


def test_replicas_starting_at_once_apply_each_migration_exactly_once(postgres_url: str) -> None:
    start_at = time.time() + 3.0  # every process has imported psycopg and is waiting by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _REPLICA, postgres_url, str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out))
    assert outputs == [[["demo", 2], ["other", 2]]] * 3

    async def check() -> None:
        engine = PgEngine(postgres_url)
        applied = await engine.fetchall("SELECT n, pid FROM applied ORDER BY n")
        assert [n for n, _ in applied] == [1, 2]
        assert await engine.fetchall("SELECT x FROM other") == [(1,)]
        await engine.aclose()

    anyio.run(check)


def test_an_unreachable_server_is_storage_unavailable_without_the_password() -> None:
    url = f"postgresql://team:s3cret-pw@127.0.0.1:{free_port()}/ledger"

    async def main() -> None:
        engine = PgEngine(url, connect_timeout_s=2.0)
        started = time.monotonic()
        with pytest.raises(SidecarError) as refused:
            await engine.open()
        assert time.monotonic() - started < 15
        assert refused.value.kind == "storage_unavailable"
        assert "127.0.0.1" in refused.value.message and "/ledger" in refused.value.message
        assert "s3cret" not in refused.value.message
        await engine.aclose()

    anyio.run(main)


def test_a_busy_pool_is_overloaded_at_once_and_the_server_is_not_called_away(postgres_url: str) -> None:
    async def main() -> None:
        engine = PgEngine(postgres_url, max_size=2, pool_wait_s=0.5)
        await engine.open()
        outcomes: list[str] = []

        async def slow() -> None:
            await engine.fetchone("SELECT pg_sleep(4)")
            outcomes.append("slow done")

        def sleeping() -> int:
            with psycopg.connect(postgres_url, autocommit=True) as watcher:
                row = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep%'"
                ).fetchone()
            return int(row[0]) if row else 0

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow)
            tg.start_soon(slow)
            for _ in range(200):  # until both connections are busy with the slow statements (bounded)
                if await anyio.to_thread.run_sync(sleeping) == 2:
                    break
                await anyio.sleep(0.02)
            started = time.monotonic()
            with pytest.raises(SidecarError) as busy:
                await engine.fetchone("SELECT 1")
            waited = time.monotonic() - started
            assert busy.value.kind == "overloaded" and busy.value.retry_after_s
            assert "pool_max" in busy.value.message
            assert waited < 5  # the pool wait (0.5 s), not the connect timeout (10 s)
            assert (await engine.health())["ok"] is False  # health asks like any call: busy too
        assert outcomes == ["slow done", "slow done"]
        # Not marked away: the next call is served at once.
        assert await engine.fetchone("SELECT 1") == (1,)
        assert (await engine.health())["ok"] is True
        await engine.aclose()

    anyio.run(main)


def test_a_stopped_server_is_storage_unavailable_within_the_pool_wait(server_factory: ServerFactory) -> None:
    """The connect timeout stays at its default (10 s); a stopped server is found in about the pool
    wait (2 s), on both PostgreSQL faces; callers queued meanwhile are refused at once."""
    server = server_factory.postgres()
    url = server.url()

    async def main() -> None:
        engine = PgEngine(url)
        await engine.open()
        blocking = PgBlocking(url)
        assert blocking.run_sync(lambda conn: conn.execute("SELECT 1").fetchone()) == (1,)
        await anyio.to_thread.run_sync(server.stop)
        started = time.monotonic()
        with pytest.raises(SidecarError) as down:
            await engine.fetchone("SELECT 1")
        assert down.value.kind == "storage_unavailable"
        assert time.monotonic() - started < 8

        results: list[tuple[str, float]] = []
        ended: list[float] = []

        def blocking_call() -> None:
            began = time.monotonic()
            try:
                blocking.run_sync(lambda conn: conn.execute("SELECT 1").fetchone())
                results.append(("ok", 0.0))
            except SidecarError as exc:
                results.append((exc.kind, time.monotonic() - began))
            ended.append(time.monotonic())

        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(anyio.to_thread.run_sync, blocking_call)
        assert {kind for kind, _ in results} == {"storage_unavailable"}
        # One of them found it away within the pool wait (2 s); the others, queued behind it, were
        # refused as soon as it had, not each after a wait of its own (which would end at 4, 6, … s).
        # So they all end together: waits of their own would spread the ends by a pool wait each.
        assert max(ended) - min(ended) < POOL_WAIT_S, (results, ended)
        assert max(took for _, took in results) < 3 * POOL_WAIT_S, results
        await anyio.to_thread.run_sync(server.start)
        assert await engine.fetchone("SELECT 1") == (1,)
        await engine.aclose()
        blocking.close()

    anyio.run(main)


def test_a_restart_under_load_gives_answers_or_storage_unavailable_and_keeps_data(
    server_factory: ServerFactory,
) -> None:
    server = server_factory.postgres(durable=True)
    outcomes: dict[str, int] = {}

    async def main() -> None:
        engine = PgEngine(server.url(), max_size=8, connect_timeout_s=2.0)
        engine.register("notes", NOTES_MIGRATIONS)
        await engine.open()
        stop = anyio.Event()

        async def load(worker: int) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    await engine.write([Stmt(UPSERT, (f"w{worker}", 0.001))])
                    await engine.fetchone("SELECT hits FROM notes WHERE name = ?", (f"w{worker}",))
                    outcome = "ok"
                except SidecarError as exc:
                    outcome = exc.kind
                    await anyio.sleep(0.05)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1

        async with anyio.create_task_group() as tg:
            for worker in range(16):
                tg.start_soon(load, worker)
            await anyio.sleep(0.5)
            await anyio.to_thread.run_sync(server.restart)
            await anyio.sleep(1.0)
            before_stop = outcomes.get("ok", 0)
            await anyio.sleep(1.0)
            stop.set()
        assert outcomes["ok"] > before_stop  # served again after the restart
        assert await engine.fetchone("SELECT count(*) FROM notes") == (16,)
        # Stopped outright: refused at once as such; started again: the same engine serves, and
        # what was committed before is there.
        await anyio.to_thread.run_sync(server.stop)
        with pytest.raises(SidecarError) as down:
            await engine.fetchall("SELECT name FROM notes")
        assert down.value.kind == "storage_unavailable"
        assert (await engine.health())["ok"] is False
        await anyio.to_thread.run_sync(server.start)
        assert await engine.fetchone("SELECT count(*) FROM notes") == (16,)
        assert (await engine.health())["ok"] is True
        await engine.aclose()

    anyio.run(main)
    # Queries in flight when the server shut down were refused as such (or, when the pool had a
    # fresh connection for them in time, answered); nothing else escaped.
    assert set(outcomes) <= {"ok", "storage_unavailable"}, outcomes


def test_driver_lines_reach_stderr_as_json_only() -> None:
    # psycopg_pool logs each failed connection attempt through the standard library.
    code = (
        "import anyio\n"
        "from sidecar.infra.pg import POOL_WAIT_S, PgBlocking, PgEngine\n"
        "async def main():\n"
        "    engine = PgEngine(__import__('sys').argv[1], connect_timeout_s=1.5)\n"
        "    try:\n"
        "        await engine.open()\n"
        "    except Exception as exc:\n"
        "        print(type(exc).__name__, exc.kind)\n"
        "anyio.run(main)\n"
    )
    url = f"postgresql://team:s3cret-pw@127.0.0.1:{free_port()}/ledger"
    proc = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "SidecarError storage_unavailable"
    lines = proc.stderr.splitlines()
    events = [json.loads(line) for line in lines]  # every line is JSON
    assert any(e.get("driver", "").startswith("psycopg") for e in events)
    assert "s3cret" not in proc.stderr


def test_the_configuration_picks_the_engine(tmp_path: Path, postgres_url: str) -> None:
    from sidecar.config import ConfigError, Storage
    from sidecar.infra.storage import open_engine

    sqlite = Database(tmp_path / "sidecar.db")
    assert open_engine(Storage(), {}, sqlite).engine == "sqlite"
    with pytest.raises(ConfigError, match="SIDECAR_DATABASE_URL must be a postgresql://"):
        open_engine(Storage(), {"SIDECAR_DATABASE_URL": "mysql://x"}, sqlite)

    async def main() -> None:
        # The environment wins over the file.
        engine = open_engine(
            Storage(url="postgresql://nobody@127.0.0.1:1/none"),
            {"SIDECAR_DATABASE_URL": postgres_url},
            sqlite,
        )
        assert engine.engine == "postgresql"
        assert await engine.fetchone("SELECT current_database()") == (postgres_url.rsplit("/", 1)[1],)
        await engine.aclose()

    anyio.run(main)
