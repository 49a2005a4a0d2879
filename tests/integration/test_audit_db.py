"""The state database helper (sidecar.infra.db) and the audit trail on a real SQLite file: WAL,
private file modes, per-component append-only migrations, and rows that never hold a key."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from sidecar import redact
from sidecar.infra.audit import AuditTrail
from sidecar.infra.db import Database, state_database

pytestmark = pytest.mark.anyio


def _all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.iterdir() if p.is_file())


async def test_audit_rows_and_wal(tmp_path: Path) -> None:
    db = state_database(tmp_path / "home")
    audit = AuditTrail(db, clock=lambda: 1_700_000_000.25)
    await audit.record("key_set", "openai", "ok", "validated")
    await audit.record("key_validated", "xai", "invalid", "auth_failed")
    rows = await audit.rows()
    assert [(r.event, r.provider, r.outcome, r.detail) for r in rows] == [
        ("key_validated", "xai", "invalid", "auth_failed"),
        ("key_set", "openai", "ok", "validated"),
    ]
    assert rows[0].ts == "2023-11-14T22:13:20.250Z"
    path = tmp_path / "home" / "sidecar.db"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_versions WHERE component = 'audit'").fetchone() == (
            1,
        )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    db.close()


async def test_audit_masks_anything_key_shaped(tmp_path: Path) -> None:
    secret = "an-odd-secret-with-no-known-shape-123"
    redact.remember(secret)
    db = state_database(tmp_path)
    audit = AuditTrail(db)
    await audit.record(
        "key_set", "openai", "error", f"upstream said {secret} and sk-proj-abcdefghijklmnop0123"
    )
    db.close()
    data = _all_bytes(tmp_path)
    assert secret.encode() not in data and b"sk-proj-abcdefghijklmnop0123" not in data


async def test_audit_failure_does_not_raise(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    audit = AuditTrail(Database(blocker / "sidecar.db"))
    await audit.record("key_deleted", "openai", "ok")  # logged and dropped


async def test_migrations_per_component_are_append_only(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.db"
    db = Database(path)
    db.register("ledger", ("CREATE TABLE usage (id INTEGER PRIMARY KEY, n INTEGER);",))
    AuditTrail(db)
    await db.run(lambda c: c.execute("INSERT INTO usage (n) VALUES (1)"))
    db.close()

    again = Database(path)
    again.register(
        "ledger",
        (
            "CREATE TABLE usage (id INTEGER PRIMARY KEY, n INTEGER);",
            "ALTER TABLE usage ADD COLUMN tag TEXT; CREATE INDEX usage_tag ON usage (tag);",
        ),
    )
    AuditTrail(again)
    cols = await again.run(lambda c: [r[1] for r in c.execute("PRAGMA table_info(usage)")])
    assert cols == ["id", "n", "tag"]
    versions = await again.run(lambda c: dict(c.execute("SELECT component, version FROM schema_versions")))
    assert versions == {"audit": 1, "ledger": 2}
    assert await again.run(lambda c: c.execute("SELECT n FROM usage").fetchall()) == [(1,)]
    with pytest.raises(ValueError):
        again.register("ledger", ("CREATE TABLE something_else (x);",))
    again.close()


async def test_failed_migration_rolls_back(tmp_path: Path) -> None:
    db = Database(tmp_path / "sidecar.db")
    db.register("broken", ("CREATE TABLE a (x); CREATE TABLE a (y);",))
    with pytest.raises(sqlite3.OperationalError):
        await db.run(lambda c: None)
    db.close()
    with sqlite3.connect(tmp_path / "sidecar.db") as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        versions = conn.execute("SELECT * FROM schema_versions").fetchall()
    assert "a" not in tables and versions == []
