"""The stores moved onto the storage seam, each run on SQLite and on a real PostgreSQL through the
`sql_engine` fixture: the audit trail, client keys and routers keep and return the same things on
both, a name clash is `NameTaken` on both, and a second store on the same database (another
replica) sees what the first wrote."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from sidecar.infra.audit import AuditTrail
from sidecar.infra.client_keys import ClientKeyRecord, NameTaken, SqlClientKeyStore
from sidecar.infra.routers import SqlRouterStore
from sidecar.infra.sql import SqlEngine


def test_audit_trail(sql_engine: Callable[[], SqlEngine]) -> None:
    async def main() -> None:
        engine = sql_engine()
        try:
            audit = AuditTrail(engine, clock=lambda: 1_700_000_000.25)
            await audit.record("key_set", "openai", "ok", "validated")
            await audit.record("key_validated", "xai", "invalid", "sk-proj-abcdefghijklmnop0123 refused")
            other = AuditTrail(engine)  # another replica on the same database
            rows = await other.rows()
            assert [(r.event, r.provider, r.outcome) for r in rows] == [
                ("key_validated", "xai", "invalid"),
                ("key_set", "openai", "ok"),
            ]
            assert rows[1].ts == "2023-11-14T22:13:20.250Z"
            assert "sk-proj-abcdefghijklmnop0123" not in (rows[0].detail or "")
            assert [r.event for r in await other.query(event="key_set")] == ["key_set"]
            assert await other.query(since="2030-01-01") == []
        finally:
            await engine.aclose()

    anyio.run(main)


def _key(key_id: str, name: str, **fields: object) -> ClientKeyRecord:
    values: dict[str, object] = {
        "id": key_id, "name": name, "hash": f"h-{key_id}", "prefix": "sk-sc-ab", "allow": ("openai:*",),
        "router": None, "daily_usd": 0.1 + 0.2, "monthly_usd": None,
        "limits": {"requests_per_minute": 30}, "enabled": True, "created": f"2026-12-01T00:00:0{key_id}Z",
    }  # fmt: skip
    values.update(fields)
    return ClientKeyRecord(**values)  # type: ignore[arg-type]


def test_client_keys(sql_engine: Callable[[], SqlEngine]) -> None:
    async def main() -> None:
        engine = sql_engine()
        try:
            store = SqlClientKeyStore(engine)
            first, second = _key("1", "alice"), _key("2", "bob", limits=None, enabled=False)
            await store.insert(first)
            await store.insert(second)
            with pytest.raises(NameTaken):
                await store.insert(_key("3", "alice"))
            with pytest.raises(NameTaken):
                await store.update(second.changed(name="alice"))
            await store.update(second.changed(router="cheap"))
            await store.touch({"1": "2026-12-01T10:00:00Z"})
            replica = SqlClientKeyStore(engine)
            assert await replica.all() == [
                first.changed(last_used="2026-12-01T10:00:00Z"),
                second.changed(router="cheap"),
            ]
            assert (await replica.all())[0].daily_usd == 0.1 + 0.2  # 8-byte floats on both engines
            assert await replica.delete("2") is True
            assert await replica.delete("2") is False
            assert [r.id for r in await store.all()] == ["1"]
        finally:
            await engine.aclose()

    anyio.run(main)


def test_routers(sql_engine: Callable[[], SqlEngine]) -> None:
    async def main() -> None:
        engine = sql_engine()
        try:
            store = SqlRouterStore(engine)
            await store.put("cheap", {"candidates": ["openai:gpt-4o-mini"], "limits": {"rpm": 5}}, 1.0)
            await store.put("fast", {"candidates": ["xai:grok"]}, 2.0)
            await store.put("cheap", {"candidates": ["anthropic:haiku"]}, 3.0)
            replica = SqlRouterStore(engine)
            assert await replica.all() == {
                "cheap": {"candidates": ["anthropic:haiku"]},
                "fast": {"candidates": ["xai:grok"]},
            }
            assert await replica.delete("fast") is True
            assert await replica.delete("fast") is False
            assert list(await store.all()) == ["cheap"]
        finally:
            await engine.aclose()

    anyio.run(main)
