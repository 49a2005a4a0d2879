"""The budget flow team mode will wire (docs/storage-seam.md, "Budgets across replicas"), run at
the seams on the real servers: two replicas, each with its own PostgreSQL pool, its own Redis
pool and its own ledger writer committing off the request path; 200 requests split between them
(two waves of 100 at once) against one daily budget. Every request reads the committed spend from the ledger
(the floor), reserves its estimate in Redis, settles its real cost and queues its ledger row.
Together they never pass the budget, and every request that ran has exactly one ledger row."""

from __future__ import annotations

import random
import time
import uuid

import anyio
import pytest

from sidecar.core.counters import BudgetLine, Reservation
from sidecar.infra.coordination import open_coordinator
from sidecar.infra.pg import PgEngine
from sidecar.infra.redis_coordination import RedisCoordinator
from sidecar.infra.sql import Stmt

LEDGER = (
    "CREATE TABLE ledger (uid TEXT PRIMARY KEY, day TEXT NOT NULL, replica INTEGER NOT NULL, "
    "cost_usd DOUBLE PRECISION NOT NULL)",
)
DAY = "2026-12-01"
LIMIT = 1.0
ESTIMATE = 0.01


class Replica:
    def __init__(self, number: int, pg_url: str, redis_url: str) -> None:
        self.number = number
        self.db = PgEngine(pg_url, max_size=4)
        self.db.register("ledger", LEDGER)
        coord = open_coordinator(redis_url)
        assert isinstance(coord, RedisCoordinator)
        self.coord = coord
        self.send, self.receive = anyio.create_memory_object_stream[tuple[object, ...]](10_000)
        self.ran = 0
        self.refused = 0

    async def writer(self) -> None:
        """Commits whatever has queued, in batches, a little after the requests (off their path)."""
        async with self.receive:
            async for first in self.receive:
                await anyio.sleep(0.005)
                batch = [first]
                while True:
                    try:
                        batch.append(self.receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                await self.db.write(
                    [Stmt("INSERT INTO ledger VALUES (?, ?, ?, ?) ON CONFLICT (uid) DO NOTHING", many=batch)]
                )

    async def request(self, i: int, rng: random.Random) -> None:
        (committed,) = await self.db.fetchone(
            "SELECT coalesce(sum(cost_usd), 0) FROM ledger WHERE day = ?", (DAY,)
        ) or (0.0,)
        line = BudgetLine(f"budget:*:day:{DAY}", LIMIT, float(committed), time.time() + 86400)  # type: ignore[arg-type]
        held = await self.coord.reserve([line], ESTIMATE, ttl_s=60)
        if not isinstance(held, Reservation):
            self.refused += 1
            return
        self.ran += 1
        await anyio.sleep(rng.uniform(0, 0.01))  # the upstream call
        # Half of the first wave costs half its estimate; the second wave costs what it estimated.
        actual = ESTIMATE / 2 if i < 100 and i % 4 >= 2 else ESTIMATE
        await self.coord.settle(held, actual)
        await self.send.send((uuid.uuid4().hex, DAY, self.number, actual))


def test_two_replicas_hold_one_budget_and_write_one_row_per_request(
    postgres_url: str, redis_url: str
) -> None:
    async def main() -> tuple[list[Replica], list[tuple[object, ...]]]:
        replicas = [Replica(n, postgres_url, redis_url) for n in (1, 2)]
        rng = random.Random(16)
        for replica in replicas:
            await replica.db.open()
        async with anyio.create_task_group() as writers:
            for replica in replicas:
                writers.start_soon(replica.writer)
            for wave in (range(100), range(100, 200)):
                async with anyio.create_task_group() as tg:
                    for i in wave:
                        tg.start_soon(replicas[i % 2].request, i, rng)
            for replica in replicas:
                await replica.send.aclose()
        rows = await replicas[0].db.fetchall(
            "SELECT replica, count(*), sum(cost_usd) FROM ledger GROUP BY replica ORDER BY replica"
        )
        for replica in replicas:
            await replica.db.aclose()
            await replica.coord.aclose()
        return replicas, rows

    replicas, rows = anyio.run(main)
    ran = [r.ran for r in replicas]
    assert sum(ran) + sum(r.refused for r in replicas) == 200
    assert all(n > 0 for n in ran)  # both replicas served
    assert [(replica, count) for replica, count, _ in rows] == [(1, ran[0]), (2, ran[1])]  # one row each
    total = sum(float(cost) for _, _, cost in rows)  # type: ignore[arg-type]
    assert total <= LIMIT + 1e-9
    # The first 100 fit exactly ($1.00 of estimates) and, half of them costing half, spent $0.75;
    # that left room for exactly 25 of the second 100, which spend the rest.
    assert sum(ran) == 125
    assert total == pytest.approx(LIMIT)
