"""A team gateway: two spawned `llm-sidecar` replicas (each serving the gateway, each with a state
directory of its own, as on two machines) on one real PostgreSQL and one real Redis, in front of a
fake OpenAI upstream, called with the official `openai` SDK.

- a client key made through one replica works on the other;
- 200 concurrent requests split between them: a per-key budget and a per-router requests-per-
  minute limit hold as one replica alone would hold them; every answered request has exactly one
  ledger row; `usage_summary` from either replica agrees;
- kill -9 of one replica mid-stream: committed rows stay, the other keeps serving, the dead one's
  budget reservations lapse;
- Redis and PostgreSQL restarted mid-load: what the README's "Running it for a team" promises;
- `llm-sidecar gateway` in team mode exits 2 naming an unreachable database, and `/health` reports
  the database and Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
import openai
import psycopg
import pytest

from tests.conftest import ServerFactory
from tests.fakes.openai_compat import FakeOpenAICompat, openrouter_model
from tests.harness import SIDECAR, Sidecar
from tests.servers import RedisServer, free_port

MODEL = "openai:gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Say something short about the sea."}]


def team_config(redis_url: str, extra: str = "") -> str:
    return (
        "[storage]\nconnect_timeout_s = 2\n\n"
        f'[coordination]\nurl = "{redis_url}"\ntimeout_s = 1\n\n'
        "[retry]\nmax_attempts = 1\n\n[timeouts]\ntotal_s = 4\n\n"
        '[routers.shared]\nmodels = ["openai:gpt-4o-mini"]\nlimits = { requests_per_minute = 30 }\n' + extra
    )


class Replica:
    def __init__(
        self, pg_url: str, redis_url: str, fake: FakeOpenAICompat, extra: str = "", **more_env: str
    ) -> None:
        env = {
            "SIDECAR_DATABASE_URL": pg_url,
            "OPENAI_BASE_URL": fake.api_base,
            "OPENAI_API_KEY": "sk-test-valid",
            **more_env,
        }
        self.sc = Sidecar(env, config=team_config(redis_url, extra))
        self.url: str = self.sc.result("gateway_start", {"port": 0}, timeout=30)["url"]

    def client(self, key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key=key, base_url=self.url + "/v1", max_retries=0, timeout=30)

    def summary(self, **params: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.sc.result("usage_summary", params, timeout=30)
        return result


@contextmanager
def replicas(
    pg_url: str, redis_url: str, fake: FakeOpenAICompat, n: int = 2, extra: str = ""
) -> Iterator[list[Replica]]:
    made: list[Replica] = []
    try:
        for _ in range(n):
            made.append(Replica(pg_url, redis_url, fake, extra))
        yield made
    finally:
        for r in made:
            r.sc.stop()


def ledger_rows(pg_url: str, where: str = "TRUE") -> list[tuple[Any, ...]]:
    with psycopg.connect(pg_url) as conn:
        return conn.execute(
            f"SELECT uid, client, outcome, cost_usd, pid FROM ledger WHERE {where}"
        ).fetchall()


async def call(client: openai.AsyncOpenAI, model: str = MODEL, *, close: bool = True, **extra: Any) -> str:
    """`ok`, or the error code the gateway answered with (the client is closed after, unless
    it is shared by several calls)."""
    try:
        await client.chat.completions.create(model=model, messages=MESSAGES, **extra)  # type: ignore[arg-type,call-overload]
        return "ok"
    except openai.APIStatusError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        return str(body.get("code") or exc.status_code)
    finally:
        if close:
            await client.close()


@pytest.fixture
def fake() -> Iterator[FakeOpenAICompat]:
    with FakeOpenAICompat("openai") as upstream:
        yield upstream


def test_two_replicas_share_keys_budgets_limits_and_the_ledger(
    postgres_url: str, redis_url: str, fake: FakeOpenAICompat
) -> None:
    with replicas(postgres_url, redis_url, fake) as (a, b):
        made = a.sc.result("client_key_create", {"name": "team"})
        # Made through A, used through B (B has never read it).
        assert asyncio.run(call(b.client(made["key"]), max_tokens=64)) == "ok"
        assert b.summary()["total"]["requests"] == 1  # B's row committed (a summary flushes first)
        assert a.summary()["total"]["requests"] == 1  # and A reads it from the shared ledger
        (first,) = ledger_rows(postgres_url)
        one_cost = float(first[3])
        assert one_cost > 0

        # A budget with room for about ten requests, 200 of them at once through both replicas.
        limit = one_cost * 10
        a.sc.result("client_key_update", {"name": "team", "daily_usd": limit})
        budgeted = made["key"]
        unlimited = a.sc.result("client_key_create", {"name": "crowd"})["key"]
        time.sleep(2.2)  # B's table of keys is re-read within 2 s

        async def burst() -> tuple[list[str], list[str]]:
            spend = [call((a, b)[i % 2].client(budgeted), max_tokens=64) for i in range(200)]
            routed = [
                call((a, b)[i % 2].client(unlimited), model="router:shared", max_tokens=64)
                for i in range(200)
            ]
            results = await asyncio.gather(*spend, *routed)
            return results[:200], results[200:]

        started = time.monotonic()
        spent_results, routed_results = asyncio.run(burst())
        elapsed = time.monotonic() - started

        ok = spent_results.count("ok")
        assert set(spent_results) <= {"ok", "budget_exceeded"}, set(spent_results)
        assert 1 <= ok <= 11, f"{ok} requests passed a budget with room for 10 (one may finish past it)"
        routed_ok = routed_results.count("ok")
        assert set(routed_results) <= {"ok", "rate_limited"}, set(routed_results)
        # 30 a minute, refilling continuously: what one replica alone would let through.
        assert 1 <= routed_ok <= 30 + int(elapsed / 2) + 1, (routed_ok, elapsed)

        # One ledger row per answered request, written by both replicas; refusals before sending
        # are rows too (outcome `refused`), never duplicates.
        a.summary(), b.summary()  # flush both ledgers, then read from each
        summary_a, summary_b = a.summary(client="team"), b.summary(client="team")
        rows = ledger_rows(postgres_url, "client = 'team'")
        assert len({r[0] for r in rows}) == len(rows)
        assert sum(1 for r in rows if r[2] == "ok") == ok + 1
        assert len({r[4] for r in rows}) == 2  # both processes wrote
        spent = sum(float(r[3] or 0) for r in rows)
        assert spent <= limit + one_cost * 1.01
        assert summary_a["total"] == summary_b["total"]
        assert summary_a["total"]["cost_usd"] == pytest.approx(spent)
        crowd_rows = ledger_rows(postgres_url, "client = 'crowd' AND outcome = 'ok'")
        assert len(crowd_rows) == routed_ok


PROVIDER_LIMITS = "\n[providers.openai.limits]\nrequests_per_minute = 20\nmax_concurrent = 4\n"


def test_a_providers_client_side_limits_hold_across_replicas(
    postgres_url: str, redis_url: str, fake: FakeOpenAICompat
) -> None:
    """`[providers.openai.limits]` on both replicas: 80 concurrent requests split between them
    reach the provider no more often than one replica alone would let them (20 a minute,
    refilling one every 3 s), and the shared `max_concurrent` places are given back."""
    with replicas(postgres_url, redis_url, fake, extra=PROVIDER_LIMITS) as (a, b):
        key = a.sc.result("client_key_create", {"name": "crowd"})["key"]
        time.sleep(2.2)  # B's table of keys is re-read within 2 s

        async def burst() -> list[str]:
            return await asyncio.gather(*(call((a, b)[i % 2].client(key), max_tokens=16) for i in range(80)))

        before = _chat_requests(fake)
        started = time.monotonic()
        results = asyncio.run(burst())
        elapsed = time.monotonic() - started
        sent = _chat_requests(fake) - before
        ok = results.count("ok")
        assert set(results) <= {"ok", "rate_limited"}, set(results)
        assert sent == ok
        # Each replica alone would have sent 20 (40 together); the shared window sends 20 in all,
        # plus what refilled while the burst ran. Fewer than 20 would mean places were not released.
        assert 20 <= ok <= 20 + int(elapsed / 3) + 1, (ok, elapsed)
        a.summary(), b.summary()  # flush both ledgers
        rows = ledger_rows(postgres_url, "client = 'crowd' AND outcome = 'ok'")
        assert len(rows) == ok  # one row per answered request, whichever replica answered it


def test_a_routers_usd_per_day_holds_across_replicas(
    postgres_url: str, redis_url: str, redis_server: RedisServer, fake: FakeOpenAICompat
) -> None:
    with replicas(postgres_url, redis_url, fake) as (a, b):
        key = a.sc.result("client_key_create", {"name": "router-user"})["key"]
        time.sleep(2.2)
        assert asyncio.run(call(a.client(key), max_tokens=16)) == "ok"
        a.summary()
        (row,) = ledger_rows(postgres_url, "client = 'router-user'")
        one_cost = float(row[3])
        # Room for two and a half requests a day: the third passes (spent is below the limit
        # before it), the fourth is refused, whichever replica each goes through.
        settings = {"models": [MODEL], "limits": {"usd_per_day": one_cost * 2.5}}
        a.sc.result("router_set", {"name": "daily", "settings": settings})
        time.sleep(2.2)  # B re-reads stored routers within 2 s
        results = []
        for i in range(6):
            results.append(asyncio.run(call((a, b)[i % 2].client(key), "router:daily", max_tokens=16)))
            time.sleep(0.1)
        assert results == ["ok"] * 3 + ["budget_exceeded"] * 3, results
        # Refused by the router's own limit, each is still one ledger row (outcome `refused`).
        a.summary(), b.summary()
        outcomes = sorted(r[2] for r in ledger_rows(postgres_url, "client = 'router-user'"))
        assert outcomes == ["ok"] * 4 + ["refused"] * 3, outcomes
        with psycopg.connect(postgres_url) as conn:
            routers = conn.execute(
                "SELECT router, count(*) FROM ledger GROUP BY router ORDER BY router"
            ).fetchall()
        assert routers == [("daily", 6), (None, 1)]
        groups = {g.get("key"): g["requests"] for g in b.summary(group_by="router")["groups"]}
        assert groups == {"daily": 6, None: 1}
        # Redis loses the day's counter (restarted without persistence): each replica's next read
        # of the ledger (within 2 s) puts the router's spend back, so it still refuses.
        redis_server.flush()
        time.sleep(2.2)
        for replica in (a, b):
            assert asyncio.run(call(replica.client(key), "router:daily", max_tokens=16)) == "budget_exceeded"
        assert len([r for r in fake.requests if r.path.endswith("/chat/completions")]) == 4


def test_prices_refreshed_through_one_replica_reach_the_other(
    postgres_url: str, redis_url: str, fake: FakeOpenAICompat
) -> None:
    with FakeOpenAICompat("openrouter") as openrouter:
        openrouter.openrouter_models = [
            openrouter_model("openai/gpt-4o-mini", "OpenAI: GPT-4o-mini", "0.000002", "0.000008"),
        ]
        env = {"OPENROUTER_BASE_URL": openrouter.api_base, "OPENROUTER_API_KEY": "sk-or-v1-test-valid"}
        a = Replica(postgres_url, redis_url, fake, **env)
        b = Replica(postgres_url, redis_url, fake, **env)
        try:

            def price_on(replica: Replica) -> tuple[float, str]:
                models = replica.sc.result("list_models", {"provider": "openrouter"})["models"]
                mini = next(m for m in models if m["id"] == "openai/gpt-4o-mini")
                return mini["input_per_mtok"], mini["price_source"]

            assert price_on(b)[1] == "catalog"
            assert a.sc.result("refresh_pricing")["applied"] == 1
            assert price_on(a) == (2.0, "refreshed")
            # B was not restarted: it re-reads the shared prices every few seconds.
            deadline = time.monotonic() + 30
            while price_on(b) != (2.0, "refreshed"):
                assert time.monotonic() < deadline, price_on(b)
                time.sleep(0.5)
        finally:
            a.sc.stop()
            b.sc.stop()


def _chat_requests(fake: FakeOpenAICompat) -> int:
    return sum(1 for r in fake.requests if r.path.endswith("/chat/completions"))


def test_kill_9_of_one_replica_mid_stream(postgres_url: str, redis_url: str) -> None:
    with (
        FakeOpenAICompat("openai", chunk_delay_s=0.1) as slow,
        replicas(postgres_url, redis_url, slow) as (a, b),
    ):
        key = a.sc.result("client_key_create", {"name": "held", "daily_usd": 1.0})["key"]
        other = a.sc.result("client_key_create", {"name": "free"})["key"]
        assert asyncio.run(call(a.client(other))) == "ok"
        a.summary()  # flushes A's ledger: this row is committed
        committed = {r[0] for r in ledger_rows(postgres_url)}
        assert len(committed) == 1

        # Tighten the budget so that three running streams through A hold all of it.
        held_client = a.client(key)

        async def open_streams() -> list[Any]:
            return [
                await held_client.chat.completions.create(
                    model=MODEL, messages=MESSAGES, max_tokens=4000, stream=True
                )  # type: ignore[arg-type,call-overload]
                for _ in range(3)
            ]

        async def close_streams(streams: list[Any]) -> None:
            # Closed on the loop that opened them: left to the garbage collector, they would try
            # to close on a loop already gone, inside whichever test runs then.
            for stream in streams:
                with contextlib.suppress(Exception):
                    await stream.close()
            await held_client.close()

        hold = _estimate_hold(b)
        b.sc.result("client_key_update", {"name": "held", "daily_usd": hold * 3})
        time.sleep(2.2)

        loop = asyncio.new_event_loop()
        streams: list[Any] = []
        try:
            streams = loop.run_until_complete(open_streams())
            assert len(streams) == 3
            os.kill(a.sc.proc.pid, signal.SIGKILL)
            a.sc.proc.wait(timeout=10)
        finally:
            loop.run_until_complete(asyncio.wait_for(close_streams(streams), 15))
            loop.close()
        # The other replica keeps serving; the dead one's holds block the key until they lapse.
        assert asyncio.run(call(b.client(other))) == "ok"
        assert asyncio.run(call(b.client(key), max_tokens=4000)) == "budget_exceeded"
        deadline = time.monotonic() + 30
        outcome = "budget_exceeded"
        while outcome == "budget_exceeded" and time.monotonic() < deadline:
            time.sleep(1.0)
            outcome = asyncio.run(call(b.client(key), max_tokens=4000))
        assert outcome == "ok", "the dead replica's reservations never lapsed"
        b.summary()
        assert committed <= {r[0] for r in ledger_rows(postgres_url)}  # nothing committed was lost


def _estimate_hold(replica: Replica) -> float:
    """What one request with max_tokens=4000 holds, from the catalog's estimate."""
    result = replica.sc.result(
        "estimate_cost", {"model": MODEL, "messages": MESSAGES, "max_tokens": 4000}, timeout=10
    )
    return float(result["cost_usd_max"])


def test_redis_and_postgresql_restarted_mid_load(
    server_factory: ServerFactory, fake: FakeOpenAICompat
) -> None:
    pg = server_factory.postgres()
    redis = server_factory.redis()
    url = pg.create_database("team")
    with replicas(url, redis.url(), fake) as (a, b):
        limited = a.sc.result(
            "client_key_create", {"name": "limited", "limits": {"requests_per_minute": 600}}
        )["key"]
        free = a.sc.result("client_key_create", {"name": "free"})["key"]
        time.sleep(2.2)

        def round_of(n: int = 6) -> tuple[list[str], list[str]]:
            async def run() -> tuple[list[str], list[str]]:
                lim = await asyncio.gather(*(call((a, b)[i % 2].client(limited)) for i in range(n)))
                fr = await asyncio.gather(*(call((a, b)[i % 2].client(free)) for i in range(n)))
                return list(lim), list(fr)

            return asyncio.run(run())

        assert round_of() == (["ok"] * 6, ["ok"] * 6)
        # Redis away: a request that needs a shared limit is refused (503), the others are served.
        redis.stop()
        lim, fr = round_of()
        assert set(lim) == {"coordination_unavailable"} and fr == ["ok"] * 6
        redis.start()
        assert round_of() == (["ok"] * 6, ["ok"] * 6)

        # PostgreSQL away: every request is served from what the replicas hold; their rows wait.
        pg.stop()
        assert round_of() == (["ok"] * 6, ["ok"] * 6)
        health = httpx2.get(a.url + "/health", timeout=10).json()
        assert health["status"] == "degraded" and health["database"]["ok"] is False
        assert health["database"]["ledger_rows_waiting"] > 0
        pg.start()
        a.summary(), b.summary()  # flush both ledgers
        rows = ledger_rows(url, "outcome = 'ok'")
        assert len(rows) == 12 + 6 + 12 + 12  # every answered request, none lost, none twice
        assert len({r[0] for r in rows}) == len(rows)
        # Health comes back once the replica's next try of the database succeeds (it backs off
        # up to 2 s between tries while the database is away).
        deadline = time.monotonic() + 15
        while (status := httpx2.get(b.url + "/health", timeout=10).json()["status"]) != "ok":
            assert time.monotonic() < deadline, status
            time.sleep(0.25)


def test_gateway_cli_in_team_mode(postgres_url: str, redis_url: str) -> None:
    home = tempfile.mkdtemp(prefix="sidecar-team-")
    with open(os.path.join(home, "config.toml"), "w") as f:
        f.write(team_config(redis_url))
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env.update({"SIDECAR_HOME": home, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"})

    # A database that cannot be reached: exit 2, naming it (host, port, database; no password).
    dead = f"postgresql://sidecar:hunter2secret@127.0.0.1:{free_port()}/teamdb"
    out = subprocess.run(
        [SIDECAR, "gateway", "--port", "0"], env={**env, "SIDECAR_DATABASE_URL": dead},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert "cannot start" in out.stderr and "teamdb" in out.stderr and "hunter2secret" not in out.stderr

    proc = subprocess.Popen(
        [SIDECAR, "gateway", "--port", "0"], env={**env, "SIDECAR_DATABASE_URL": postgres_url},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        url, lines = None, []
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            record = json.loads(line)  # JSON lines only
            if record.get("event") == "gateway listening":
                url = record["url"]
        assert url is not None, lines
        health = httpx2.get(url + "/health", timeout=10).json()
        assert health["status"] == "ok"
        assert health["database"]["engine"] == "postgresql" and health["database"]["ok"] is True
        assert health["coordination"]["engine"] == "redis" and health["coordination"]["ok"] is True
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert re.search(r"migrated|gateway", "".join(lines))
