"""The coordination seam's Redis engine: `RedisCoordinator`, the rules of `core.counters` as Lua
scripts that every replica of a gateway runs against one Redis.

Each script is atomic on the server and timed by the server's clock (`TIME`), so two replicas
together never pass a limit that one alone enforces and skewed clocks agree. One Redis (a primary,
with replicas or Sentinel if wanted), not a Redis Cluster: a script touches every key of a request
at once, which Cluster allows only within one hash slot. When Redis cannot be reached, each call
refuses or falls back to this process's `LocalCoordinator`, as `infra.coordination` describes.

Imported only when a configuration names Redis (so is `redis.asyncio`).

Must not know: the protocol, providers, which service asks, SQL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from sidecar import logs
from sidecar.core.counters import (
    Admission,
    BudgetLine,
    BudgetRefusal,
    Lease,
    Reservation,
    Window,
    ceil_ms,
    units_usd,
    usd_units,
)
from sidecar.errors import SidecarError
from sidecar.infra.coordination import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_PREFIX,
    DEFAULT_TIMEOUT_S,
    POOL_WAIT_S,
    UNAVAILABLE_RETRY_S,
    LocalCoordinator,
    OnUnavailable,
)
from sidecar.infra.unique_ids import new_id

if TYPE_CHECKING:
    from redis.asyncio import Redis

_log = logs.get_logger("coordination")


# Every script reads the server's clock, so replicas with skewed clocks agree. Numbers written back
# are formatted explicitly: Lua's default number-to-string (%.14g) would round large levels.
_NOW: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS[1..n]: bucket hashes {level, ts}; ARGV[1]: n; ARGV[3i-1..3i+1]: limit, window_ms, amount.
# With a lease: KEYS[n+1] its holders zset (id -> expiry ms), then ARGV: limit, id, ttl ms.
_ACQUIRE: Final = (
    _NOW
    + """
local n = tonumber(ARGV[1])
local levels = {}
local worst, refusing = 0, 0
for i = 1, n do
  local key = KEYS[i]
  local limit, window, amount = tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1])
  local state = redis.call('HMGET', key, 'level', 'ts')
  local level, ts = tonumber(state[1]) or limit, tonumber(state[2]) or now
  if now > ts then level = math.min(limit, level + (now - ts) * limit / window) end
  levels[i] = level
  local need = math.min(amount, limit)
  if level < need then
    local wait = (need - level) * window / limit
    if wait > worst then worst, refusing = wait, i end
  end
end
local holders = KEYS[n+1]
if holders then
  redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
  if redis.call('ZCARD', holders) >= tonumber(ARGV[3*n+2]) then return {0, '0', n+1} end
end
if refusing > 0 then return {0, string.format('%.3f', worst), refusing} end
for i = 1, n do
  local key = KEYS[i]
  local limit, window, amount = tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1])
  local level = levels[i] - math.min(amount, limit)
  redis.call('HSET', key, 'level', string.format('%.17g', level), 'ts', string.format('%d', now))
  redis.call('PEXPIRE', key, string.format('%d', math.ceil((limit - level) * window / limit) + 1000))
end
if holders then
  local ttl = tonumber(ARGV[3*n+4])
  redis.call('ZADD', holders, string.format('%d', now + ttl), ARGV[3*n+3])
  redis.call('PEXPIRE', holders, string.format('%d', ttl + 1000))
end
return {1, '0', 0}
"""
)

# KEYS[1]: a lease's holders zset; ARGV: holder id, ttl ms. Only a holder still there and not
# lapsed is renewed (a renewal that arrives after the release takes nothing back).
_RENEW: Final = (
    _NOW
    + """
local expiry = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
if not expiry or expiry <= now then return 0 end
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], 'XX', string.format('%d', now + ttl), ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl + 1000 then
  redis.call('PEXPIRE', KEYS[1], string.format('%d', ttl + 1000))
end
return 1
"""
)

# KEYS[i]: bucket hash; ARGV[3i-2..3i]: limit, window_ms, extra charge (negative refunds); never
# refuses.
_ADJUST: Final = (
    _NOW
    + """
for i, key in ipairs(KEYS) do
  local limit, window, extra = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  local state = redis.call('HMGET', key, 'level', 'ts')
  local level, ts = tonumber(state[1]) or limit, tonumber(state[2]) or now
  if now > ts then level = math.min(limit, level + (now - ts) * limit / window) end
  level = math.min(limit, level - extra)
  redis.call('HSET', key, 'level', string.format('%.17g', level), 'ts', string.format('%d', now))
  redis.call('PEXPIRE', key, string.format('%d', math.ceil((limit - level) * window / limit) + 1000))
end
return 1
"""
)

# Per budget line three keys: KEYS[3i-2] counters hash {spent, reserved}, KEYS[3i-1] holds zset
# (id -> expiry ms), KEYS[3i] hold amounts hash (id -> units).
_PURGE: Final = """
local function purge(c, z, h)
  local dead = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  for _, rid in ipairs(dead) do
    local a = redis.call('HGET', h, rid)
    if a then
      redis.call('HINCRBY', c, 'reserved', '-' .. a)
      redis.call('HDEL', h, rid)
    end
    redis.call('ZREM', z, rid)
  end
end
local function floor(c, committed)
  local spent = tonumber(redis.call('HGET', c, 'spent')) or 0
  if tonumber(committed) > spent then
    redis.call('HSET', c, 'spent', committed)
    return tonumber(committed)
  end
  return spent
end
"""

# ARGV: id, amount units, ttl ms, then per line: limit units, committed units, expire-at ms.
_RESERVE: Final = (
    _NOW
    + _PURGE
    + """
local id, amount, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local n = #KEYS / 3
for i = 1, n do
  local c, z, h = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  purge(c, z, h)
  local limit = tonumber(ARGV[3+3*i-2])
  local spent = floor(c, ARGV[3+3*i-1])
  local reserved = tonumber(redis.call('HGET', c, 'reserved')) or 0
  local total = spent + reserved
  if total >= limit or total + amount > limit then
    return {0, i, string.format('%d', spent), string.format('%d', reserved)}
  end
end
for i = 1, n do
  local c, z, h = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  redis.call('HINCRBY', c, 'reserved', ARGV[2])
  redis.call('ZADD', z, string.format('%d', now + ttl), id)
  redis.call('HSET', h, id, ARGV[2])
  for _, key in ipairs({c, z, h}) do redis.call('PEXPIREAT', key, ARGV[3+3*i]) end
end
return {1, 0, '0', '0'}
"""
)

# ARGV: id, actual units ('' to release), then per line: committed units, expire-at ms.
_SETTLE: Final = (
    _NOW
    + _PURGE
    + """
local id, actual = ARGV[1], ARGV[2]
local n = #KEYS / 3
for i = 1, n do
  local c, z, h = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  local a = redis.call('HGET', h, id)
  if a then
    redis.call('HINCRBY', c, 'reserved', '-' .. a)
    redis.call('HDEL', h, id)
    redis.call('ZREM', z, id)
  end
  if actual ~= '' then
    floor(c, ARGV[2+2*i-1])
    redis.call('HINCRBY', c, 'spent', actual)
    redis.call('PEXPIREAT', c, ARGV[2+2*i])
  end
end
return 1
"""
)

# ARGV per line: committed units. Returns spent, reserved per line (purged, floored; read-only
# apart from the purge and the floor, which any later call would do too).
_FIGURES: Final = (
    _NOW
    + _PURGE
    + """
local out = {}
for i = 1, #KEYS / 3 do
  local c, z, h = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  purge(c, z, h)
  local spent = floor(c, ARGV[i])
  local reserved = tonumber(redis.call('HGET', c, 'reserved')) or 0
  out[#out + 1] = string.format('%d', spent)
  out[#out + 1] = string.format('%d', reserved)
end
return out
"""
)


def describe_url(url: str) -> str:
    """`host:port` of a Redis URL: what messages and logs may show (never the password)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path or "a unix socket"
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


class RedisCoordinator:
    """`Coordinator` on Redis (see the module doc)."""

    engine = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        on_unavailable: OnUnavailable = "refuse",
        local: LocalCoordinator | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        from redis.asyncio import BlockingConnectionPool, Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.where = describe_url(url)
        self.prefix = prefix
        self.on_unavailable: OnUnavailable = on_unavailable
        self.local = local or LocalCoordinator()
        # One retry: a pooled connection broken by a Redis restart is replaced at once; a Redis
        # that is really gone costs at most two short timeouts, not redis-py's default backoff.
        # A bounded pool: a burst of requests waits its turn for one of `max_connections`
        # connections instead of opening hundreds at once (which, on a busy machine, ran into
        # the connect timeout and read as an outage).
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=POOL_WAIT_S,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        self.client: Redis = Redis.from_pool(pool)
        self._scripts = {
            name: self.client.register_script(body)
            for name, body in (
                ("acquire", _ACQUIRE),
                ("renew", _RENEW),
                ("adjust", _ADJUST),
                ("reserve", _RESERVE),
                ("settle", _SETTLE),
                ("figures", _FIGURES),
            )
        }
        self._down = False

    # -- plumbing --------------------------------------------------------------------------------

    def _unavailable_errors(self) -> tuple[type[BaseException], ...]:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        return (RedisConnectionError, RedisTimeoutError, OSError)

    async def _call(self, name: str, keys: list[str], args: list[str | int | float]) -> Any:
        try:
            result = await self._scripts[name](keys=keys, args=args)
        except self._unavailable_errors() as exc:
            if not self._down:
                self._down = True
                _log.warning("redis unreachable", redis=self.where, error=type(exc).__name__)
            raise _Unavailable from exc
        if self._down:
            self._down = False
            _log.info("redis reachable again", redis=self.where)
        return result

    def _refusal(self) -> SidecarError:
        return SidecarError(
            "coordination_unavailable",
            f"The shared counters (Redis at {self.where}) cannot be reached, so requests with limits or "
            "budgets are refused until it is back.",
            retry_after_s=UNAVAILABLE_RETRY_S,
        )

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _line_keys(self, lines: Sequence[BudgetLine]) -> list[str]:
        return [self._key(line.key) + suffix for line in lines for suffix in ("", ":holds", ":amounts")]

    @staticmethod
    def _window_args(charges: Sequence[tuple[Window, float]]) -> list[str | int | float]:
        return [
            repr(value)
            for window, amount in charges
            for value in (float(window.limit), window.window_s * 1000.0, float(amount))
        ]

    # -- windows ---------------------------------------------------------------------------------

    async def acquire(self, charges: Sequence[tuple[Window, float]], lease: Lease | None = None) -> Admission:
        if not charges and lease is None:
            return Admission(True)
        keys = [self._key(window.key) for window, _ in charges]
        args: list[str | int | float] = [len(charges), *self._window_args(charges)]
        lease_id = None
        if lease is not None:
            lease_id = new_id()
            keys.append(self._key(lease.key))
            args += [lease.limit, lease_id, ceil_ms(lease.ttl_s)]
        try:
            allowed, wait_ms, index = await self._call("acquire", keys, args)
        except _Unavailable:
            if self.on_unavailable == "local":
                return await self.local.acquire(charges, lease)
            raise self._refusal() from None
        if int(allowed):
            return Admission(True, lease_id=lease_id)
        index = int(index)
        if lease is not None and index == len(charges) + 1:
            return Admission(False, 0.0, lease.key)
        return Admission(False, float(wait_ms) / 1000.0, charges[index - 1][0].key)

    async def release_lease(self, lease: Lease, lease_id: str) -> None:
        # A place taken while Redis was away is held locally, even once Redis is back: release it
        # wherever it is (the other release finds nothing). One held under Redis that cannot be
        # released now lapses there by its TTL.
        await self.local.release_lease(lease, lease_id)
        with contextlib.suppress(*self._unavailable_errors()):
            await self.client.zrem(self._key(lease.key), lease_id)

    async def renew_lease(self, lease: Lease, lease_id: str) -> bool:
        if await self.local.renew_lease(lease, lease_id):  # taken while Redis was away
            return True
        try:
            renewed = await self._call("renew", [self._key(lease.key)], [lease_id, ceil_ms(lease.ttl_s)])
        except _Unavailable:
            return True  # not known to be lost: the next renewal tries again
        return bool(int(renewed))

    async def adjust(self, charges: Sequence[tuple[Window, float]]) -> None:
        if not charges:
            return
        keys = [self._key(window.key) for window, _ in charges]
        try:
            await self._call("adjust", keys, self._window_args(charges))
        except _Unavailable:
            await self.local.adjust(charges)

    # -- budgets ---------------------------------------------------------------------------------

    async def reserve(
        self, lines: Sequence[BudgetLine], amount_usd: float, ttl_s: float
    ) -> Reservation | BudgetRefusal:
        if not lines:
            return Reservation(new_id(), (), amount_usd)
        rid = new_id()
        args: list[str | int | float] = [rid, usd_units(amount_usd), ceil_ms(ttl_s)]
        for line in lines:
            args += [usd_units(line.limit_usd), usd_units(line.committed_usd), ceil_ms(line.expires_at)]
        try:
            ok, index, spent, reserved = await self._call("reserve", self._line_keys(lines), args)
        except _Unavailable:
            if self.on_unavailable == "local":
                return await self.local.reserve(lines, amount_usd, ttl_s)
            raise self._refusal() from None
        if int(ok):
            return Reservation(rid, tuple(lines), amount_usd)
        line = lines[int(index) - 1]
        return BudgetRefusal(
            line.key, line.limit_usd, units_usd(int(spent)), units_usd(int(reserved)), amount_usd
        )

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        await self._finish(reservation, str(usd_units(actual_usd)))

    async def release(self, reservation: Reservation) -> None:
        await self._finish(reservation, "")

    async def _finish(self, reservation: Reservation, actual: str) -> None:
        if not reservation.lines:
            return
        args: list[str | int | float] = [reservation.id, actual]
        for line in reservation.lines:
            args += [usd_units(line.committed_usd), ceil_ms(line.expires_at)]
        try:
            await self._call("settle", self._line_keys(reservation.lines), args)
        except _Unavailable:
            # The request has happened; the hold lapses by its TTL and the ledger's floor heals
            # the spend. A local fallback reservation (same id) is settled there.
            self.local.settle_sync(reservation, float(units_usd(int(actual))) if actual else None)

    async def figures(self, lines: Sequence[BudgetLine]) -> list[tuple[float, float]]:
        if not lines:
            return []
        args: list[str | int | float] = [usd_units(line.committed_usd) for line in lines]
        try:
            flat = await self._call("figures", self._line_keys(lines), args)
        except _Unavailable:
            if self.on_unavailable == "local":
                return await self.local.figures(lines)
            raise self._refusal() from None
        values = [units_usd(int(v)) for v in flat]
        return list(zip(values[::2], values[1::2], strict=True))

    # -- life ------------------------------------------------------------------------------------

    async def health(self) -> dict[str, object]:
        try:
            await self.client.ping()
        except self._unavailable_errors() as exc:
            return {"engine": self.engine, "ok": False, "at": self.where, "error": type(exc).__name__}
        return {"engine": self.engine, "ok": True, "at": self.where}

    async def aclose(self) -> None:
        await self.client.aclose()


class _Unavailable(Exception):
    """Redis could not be reached for one call (internal: mapped by each public method)."""
