"""The rate limit, the stream slots and the token budget, shared by every process on one Redis.

Each is one Lua script per decision, atomic in Redis, and each reads the time from Redis's
own TIME, never from the app server's clock: two servers whose clocks disagree still share
one window. Each has a stated policy for when Redis cannot be reached (the breaker in
client.py is open), counted with `metrics.record_fallback(feature)` and shown in health:

- rate limit and stream slots: this process enforces its share of the limit,
  limit / EXPECTED_INSTANCES (at least 1), in its own memory, until Redis answers again;
- budget: refuses new runs (503 budget_unavailable) by default; with BUDGET_FAIL_OPEN=true it
  admits them, and their spending is settled into Redis once it is back.

The interfaces are web/limits.py's and web/budget.py's (the round's contract), all async.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from typing import Any

from scaleout.client import Shared, Unavailable
from web.errors import ApiError
from web.limits import RateLimiter as LocalRateLimiter

log = logging.getLogger("scenario_agent")

# -- the rate limit ------------------------------------------------------------------------
#
# A sliding log per client: the times of its admitted requests in the last window, in a
# sorted set. A request is admitted when fewer than `limit` remain in the window ending now,
# so no window of 60 s, wherever it starts, ever holds more than `limit` admissions: no
# doubling at a window's edge (fixed windows let `limit` through at 0:59 and again at 1:00),
# and no second burst after a full bucket refills (GCRA with a burst of `limit` lets 2 x limit
# - 1 through in the first minute). Memory is one entry per admitted request of the last
# minute; the key expires with its newest entry.
RATE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""


class RateLimiter:
    """At most `per_minute` admissions per client in any 60 s, over every process."""

    def __init__(self, shared: Shared, metrics: Any, per_minute: int, expected_instances: int = 1, prefix: str = "sa:", window_ms: int = 60_000) -> None:
        self.shared = shared
        self.metrics = metrics
        self.per_minute = per_minute
        self.window_ms = window_ms
        self.prefix = prefix
        self._script = shared.redis.register_script(RATE_SCRIPT)
        # Redis out: this process's share, as a token bucket in memory (web/limits.py).
        self.local_limit = max(1, per_minute // max(1, expected_instances)) if per_minute > 0 else 0
        self.local = LocalRateLimiter(self.local_limit)
        self.fallbacks = 0

    async def check(self, client: str) -> int:
        if self.per_minute <= 0:
            return 0  # rate limiting is off
        try:
            wait_ms = await self.shared.call(
                lambda r: self._script(keys=[f"{self.prefix}rate:{client}"], args=[self.per_minute, self.window_ms, secrets.token_hex(6)], client=r)
            )
        except Unavailable:
            self.fallbacks += 1
            self.metrics.record_fallback("rate_limit")
            return await self.local.check(client)
        return 0 if not wait_ms else max(1, math.ceil(int(wait_ms) / 1000))


# -- stream slots --------------------------------------------------------------------------
#
# One sorted set of leases: member run id, score the lease's expiry (Redis time, ms). Expired
# leases are dropped by every acquisition, so a process killed with runs open frees their
# slots one lease after its last refresh, with nothing to clean by hand. The owner refreshes
# its leases every REFRESH seconds while the runs live (SharedState's maintenance loop).
SLOT_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
return 1
"""

# ARGV[2] 'XX': only leases still held are extended (a run released meanwhile is not brought
# back); 'NX' after Redis lost its data: this process's runs are written back.
SLOT_REFRESH = """
local t = redis.call('TIME')
local expiry = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], ARGV[2], expiry, ARGV[i])
end
return #ARGV - 2
"""

SLOT_ACTIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""

LEASE_MS = 10_000
REFRESH_SECONDS = 3.0


class StreamSlots:
    """At most `limit` runs at once over every process."""

    def __init__(self, shared: Shared, metrics: Any, limit: int, expected_instances: int = 1, prefix: str = "sa:", lease_ms: int = LEASE_MS) -> None:
        self.shared = shared
        self.metrics = metrics
        self.limit = limit
        self.lease_ms = lease_ms
        self.key = f"{prefix}slots"
        self._acquire = shared.redis.register_script(SLOT_ACQUIRE)
        self._refresh = shared.redis.register_script(SLOT_REFRESH)
        self._active = shared.redis.register_script(SLOT_ACTIVE)
        # Every run this process holds a slot for, shared or local: the leases to refresh, and
        # the count the local share is checked against while Redis is out.
        self.held: set[str] = set()
        self._released_in_flight: set[str] | None = None
        self.local_limit = max(1, limit // max(1, expected_instances)) if limit > 0 else 0
        self.fallbacks = 0

    async def acquire(self, run_id: str) -> bool:
        try:
            ok = await self.shared.call(lambda r: self._acquire(keys=[self.key], args=[self.limit, self.lease_ms, run_id], client=r))
        except Unavailable:
            self.fallbacks += 1
            self.metrics.record_fallback("concurrency")
            ok = run_id in self.held or len(self.held) < self.local_limit
        if ok:
            self.held.add(run_id)
        return bool(ok)

    async def release(self, run_id: str) -> None:
        if run_id not in self.held:
            return
        self.held.discard(run_id)
        if self._released_in_flight is not None:
            self._released_in_flight.add(run_id)
        try:
            await self.shared.call(lambda r: r.zrem(self.key, run_id))
        except Unavailable:
            pass  # the lease ends by itself, LEASE_MS after its last refresh

    async def active(self) -> int:
        """Runs holding a slot over every process; this process's own while Redis is out."""
        try:
            return int(await self.shared.call(lambda r: self._active(keys=[self.key], client=r)))
        except Unavailable:
            return len(self.held)

    async def refresh(self, restore: bool = False) -> None:
        """Extend this process's leases (SharedState calls it every REFRESH_SECONDS); with
        `restore`, write them again after Redis lost its data."""
        if not self.held:
            return
        members = sorted(self.held)
        self._released_in_flight = set()
        try:
            mode = "NX" if restore else "XX"
            await self.shared.call(lambda r: self._refresh(keys=[self.key], args=[self.lease_ms, mode, *members], client=r), timeout=2.0)
            # A release whose ZREM overtook this refresh: make sure it stays released.
            gone = self._released_in_flight & set(members)
            if gone:
                await self.shared.call(lambda r: r.zrem(self.key, *gone))
        finally:
            self._released_in_flight = None


# -- the token budget ----------------------------------------------------------------------
#
# Keys (one day is floor(Redis time / 86400), UTC):
#   <prefix>budget         hash: u:<day> tokens used, r:<day> tokens reserved by open runs
#   <prefix>budget:leases  sorted set: run id -> its reservation's lease expiry (ms)
#   <prefix>budget:runs    hash: run id -> "<day>:<tokens>" it reserved
# A reservation whose owner stopped refreshing it (a killed process) is charged in full when
# its lease ends: what the run may have cost at most, so a crash never lets the day's
# spending exceed the budget, and never holds reserved tokens for the rest of the day.
# The counters' key expires at the end of the next day: a day nobody used leaves nothing.
BUDGET_COMMON = """
local t = redis.call('TIME')
local secs = tonumber(t[1])
local now = secs * 1000 + math.floor(tonumber(t[2]) / 1000)
local day = math.floor(secs / 86400)
local function charge_expired()
  local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
  for _, id in ipairs(dead) do
    local v = redis.call('HGET', KEYS[3], id)
    if v then
      local d, n = string.match(v, '^(%d+):(%d+)$')
      redis.call('HINCRBY', KEYS[1], 'u:' .. d, n)
      local r = tonumber(redis.call('HGET', KEYS[1], 'r:' .. d) or '0') - tonumber(n)
      redis.call('HSET', KEYS[1], 'r:' .. d, math.max(0, r))
      redis.call('HDEL', KEYS[3], id)
    end
  end
  if #dead > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) end
end
"""

# ARGV: limit, tokens, run id, lease ms. Returns {0, day} or {retry-after seconds, day}.
BUDGET_RESERVE = BUDGET_COMMON + """
charge_expired()
local limit = tonumber(ARGV[1])
local tokens = tonumber(ARGV[2])
local used = tonumber(redis.call('HGET', KEYS[1], 'u:' .. day) or '0')
local reserved = tonumber(redis.call('HGET', KEYS[1], 'r:' .. day) or '0')
if used + reserved + tokens > limit then
  if used + tokens <= limit then
    return {2, day}  -- it fits once open runs settle: soon, not tomorrow
  end
  return {math.max(1, (day + 1) * 86400 - secs), day}
end
redis.call('HINCRBY', KEYS[1], 'r:' .. day, tokens)
redis.call('HSET', KEYS[3], ARGV[3], day .. ':' .. tokens)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
redis.call('HDEL', KEYS[1], 'u:' .. (day - 2), 'r:' .. (day - 2))
redis.call('EXPIREAT', KEYS[1], (day + 2) * 86400)
redis.call('EXPIREAT', KEYS[2], (day + 2) * 86400)
redis.call('EXPIREAT', KEYS[3], (day + 2) * 86400)
return {0, day}
"""

# ARGV: run id, used tokens, tokens already charged for it. A run whose reservation is gone
# (its lease ran out and it was charged in full) is charged only what it used beyond that;
# a run admitted while Redis was out (fail open) has nothing charged yet and is charged all.
BUDGET_SETTLE = BUDGET_COMMON + """
local used = tonumber(ARGV[2])
local v = redis.call('HGET', KEYS[3], ARGV[1])
if v then
  local d, n = string.match(v, '^(%d+):(%d+)$')
  local r = tonumber(redis.call('HGET', KEYS[1], 'r:' .. d) or '0') - tonumber(n)
  redis.call('HSET', KEYS[1], 'r:' .. d, math.max(0, r))
  redis.call('HINCRBY', KEYS[1], 'u:' .. d, used)
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  local extra = used - tonumber(ARGV[3])
  if extra > 0 then redis.call('HINCRBY', KEYS[1], 'u:' .. day, extra) end
end
redis.call('EXPIREAT', KEYS[1], (day + 2) * 86400)
return 1
"""

BUDGET_REFRESH = BUDGET_COMMON + """
local expiry = now + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[2], 'XX', expiry, ARGV[i])
end
return 1
"""

BUDGET_SNAPSHOT = BUDGET_COMMON + """
charge_expired()
return {day, secs, redis.call('HGET', KEYS[1], 'u:' .. day) or '0', redis.call('HGET', KEYS[1], 'r:' .. day) or '0'}
"""


def _midnight_iso(day: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((day + 1) * 86400))


class TokenBudget:
    """`limit` tokens per UTC day over every process: reserved at admission, settled at the end."""

    MAX_PENDING = 10_000  # settlements kept while Redis is out

    def __init__(self, shared: Shared, metrics: Any, limit: int, fail_open: bool = False, prefix: str = "sa:", lease_ms: int = LEASE_MS) -> None:
        if limit <= 0:
            raise ValueError("TOKEN_BUDGET_PER_DAY must be a positive whole number (or unset: no budget)")
        self.shared = shared
        self.metrics = metrics
        self.limit = limit
        self.fail_open = fail_open
        self.lease_ms = lease_ms
        self.keys = [f"{prefix}budget", f"{prefix}budget:leases", f"{prefix}budget:runs"]
        self._reserve = shared.redis.register_script(BUDGET_RESERVE)
        self._settle = shared.redis.register_script(BUDGET_SETTLE)
        self._refresh = shared.redis.register_script(BUDGET_REFRESH)
        self._snapshot = shared.redis.register_script(BUDGET_SNAPSHOT)
        self.open: set[str] = set()  # runs with a reservation in Redis, leases to refresh
        self.pending: list[tuple[str, int, int]] = []  # (run id, used, charged) to settle once Redis is back
        self._last: dict[str, Any] | None = None
        self.fallbacks = 0

    @property
    def policy(self) -> str:
        return "fail_open" if self.fail_open else "fail_closed"

    async def reserve(self, run_id: str, tokens: int) -> int:
        try:
            wait, _day = await self.shared.call(lambda r: self._reserve(keys=self.keys, args=[self.limit, int(tokens), run_id, self.lease_ms], client=r))
        except Unavailable:
            self.fallbacks += 1
            self.metrics.record_fallback("budget")
            if self.fail_open:
                return 0  # admitted; settled into Redis once it is back
            raise ApiError(
                503,
                "budget_unavailable",
                "The shared token budget cannot be checked right now, so no new answer is started. Try again in a few seconds.",
                {"retry-after": "5"},
            ) from None
        if int(wait) == 0:
            self.open.add(run_id)
        return int(wait)

    async def settle(self, run_id: str, reserved: int, used: int) -> None:
        had_reservation = run_id in self.open
        self.open.discard(run_id)
        charged = int(reserved) if had_reservation else 0
        try:
            await self._settle_one(run_id, int(used), charged)
        except Unavailable:
            if len(self.pending) < self.MAX_PENDING:
                self.pending.append((run_id, int(used), charged))
            else:
                log.warning({"message": "budget settlement dropped: Redis out and the backlog full", "run_id": run_id, "used": used})

    async def _settle_one(self, run_id: str, used: int, charged: int) -> None:
        await self.shared.call(lambda r: self._settle(keys=self.keys, args=[run_id, max(0, used), max(0, charged)], client=r))

    async def flush_pending(self) -> None:
        """Settlements made while Redis was out, once it answers (the maintenance loop)."""
        while self.pending:
            run_id, used, charged = self.pending[0]
            await self._settle_one(run_id, used, charged)
            self.pending.pop(0)

    async def refresh(self) -> None:
        if self.open:
            members = sorted(self.open)
            await self.shared.call(lambda r: self._refresh(keys=self.keys, args=[self.lease_ms, *members], client=r), timeout=2.0)

    async def snapshot(self) -> dict[str, Any]:
        try:
            day, secs, used, reserved = await self.shared.call(lambda r: self._snapshot(keys=self.keys, client=r))
        except Unavailable:
            stale = dict(self._last or {"limit": self.limit, "used": None, "reserved": None, "remaining": None, "resets_at": None})
            stale["shared"] = False
            return stale
        used, reserved = int(used), int(reserved)
        self._last = {
            "limit": self.limit,
            "used": used,
            "reserved": reserved,
            "remaining": max(0, self.limit - used - reserved),
            "resets_at": _midnight_iso(int(day)),
            "shared": True,
        }
        return dict(self._last)
