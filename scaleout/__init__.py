"""Scale-out: the run log, the limits and the budget shared by every process through Redis.

Used only when REDIS_URL is set; nothing imports this package otherwise, and importing it has
no side effect (the connection is made by `connect`, in the app's lifespan):

    state = await connect(settings, metrics)     # never fails for a Redis that is down
    state.limiter    RateLimiter   (scaleout/limits.py; web/limits.py's interface, async)
    state.slots      StreamSlots
    state.budget     TokenBudget, or None without TOKEN_BUDGET_PER_DAY
    state.log        RedisRunLog   (runs/log.py's SharedLog)
    await state.status()   for health: {"status", "latency_ms", "processes", "policy", ...}
    await state.aclose()

One maintenance task per process keeps the shared state alive: the process's heartbeat
(every second; readers of its runs on other processes watch it), the Stop requests for its
runs (every quarter second), the leases of its stream slots and budget reservations (every
3 s), and the budget settlements made while Redis was out. Its calls double as the breaker's
probe: when Redis comes back, the next one succeeds and the shared mode resumes by itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from scaleout.client import Shared, Unavailable
from scaleout.limits import REFRESH_SECONDS, RateLimiter, StreamSlots, TokenBudget
from scaleout.run_log import BEAT_SECONDS, CANCEL_POLL_SECONDS, RedisRunLog

log = logging.getLogger("scenario_agent")

__all__ = ["SharedState", "connect", "Unavailable"]

# Test hook: shifts this process's wall clock (time.time) by this many seconds, to show that
# no shared decision depends on it (every window and day comes from Redis's TIME).
CLOCK_OFFSET_ENV = "SCALEOUT_TEST_CLOCK_OFFSET_SECONDS"

# What each feature does while Redis is out: health shows it, /metrics counts each fallback.
POLICY = {
    "run_log": "streams go on unslowed; their frames wait in this process (up to RUN_LOG_MAX_BYTES a run) and are written once Redis is back",
    "join": "503 shared_state_unavailable",
    "stop": "503 shared_state_unavailable (the Stop reached no one)",
    "rate_limit": "local share: RATE_LIMIT_PER_MINUTE / EXPECTED_INSTANCES per process",
    "concurrency": "local share: MAX_CONCURRENT_STREAMS / EXPECTED_INSTANCES per process",
}


class SharedState:
    def __init__(self, shared: Shared, limiter: RateLimiter, slots: StreamSlots, budget: TokenBudget | None, run_log: RedisRunLog) -> None:
        self.shared = shared
        self.limiter = limiter
        self.slots = slots
        self.budget = budget
        self.log = run_log
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._maintain(), name="scaleout maintenance")

    async def status(self) -> dict[str, Any]:
        """For health: never waits on Redis (the numbers are the maintenance loop's last)."""
        body = self.shared.status()
        body["processes"] = self.log.live_processes if self.shared.healthy else None
        policy = dict(POLICY)
        if self.budget is not None:
            policy["budget"] = (
                "fail open: admitted, settled into Redis once it is back" if self.budget.fail_open else "fail closed: 503 budget_unavailable"
            )
        body["policy"] = policy
        body["fallbacks"] = {
            "rate_limit": self.limiter.fallbacks,
            "concurrency": self.slots.fallbacks,
            "budget": self.budget.fallbacks if self.budget is not None else 0,
            "run_log": self.log.fallbacks,
        }
        return body

    async def _maintain(self) -> None:
        loop = asyncio.get_running_loop()
        next_beat = next_refresh = 0.0
        while True:
            now = loop.time()
            try:
                if now >= next_beat:
                    next_beat = now + BEAT_SECONDS
                    if await self.log.beat():
                        log.warning({"message": "Redis lost its data: this process's stream slots written again"})
                        await self.slots.refresh(restore=True)
                    if self.budget is not None and self.budget.pending:
                        await self.budget.flush_pending()
                await self.log.poll_cancels()
                if now >= next_refresh:
                    next_refresh = now + REFRESH_SECONDS
                    await self.slots.refresh()
                    if self.budget is not None:
                        await self.budget.refresh()
            except Unavailable:
                pass  # the breaker is open; health says degraded; the next tick tries again
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scale-out maintenance failed")
            await asyncio.sleep(CANCEL_POLL_SECONDS)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.log.aclose()
        try:
            await self.log.forget_process()
        except Unavailable:
            pass
        await self.shared.aclose()


def _offset_clock(seconds: float) -> None:
    real = time.time

    def shifted() -> float:
        return real() + seconds

    time.time = shifted  # type: ignore[assignment]


async def connect(settings: Any, metrics: Any, prefix: str = "sa:") -> SharedState:
    """The shared state for REDIS_URL, its maintenance task started. A Redis that is down now
    is not an error: the state starts degraded, with each feature's fallback, and recovers."""
    offset = os.environ.get(CLOCK_OFFSET_ENV, "").strip()
    if offset:
        _offset_clock(float(offset))
    shared = Shared(settings.redis_url, tls_verify=settings.redis_tls_verify)
    instances = settings.expected_instances
    state = SharedState(
        shared,
        RateLimiter(shared, metrics, settings.rate_limit_per_minute, instances, prefix),
        StreamSlots(shared, metrics, settings.max_concurrent_streams, instances, prefix),
        TokenBudget(shared, metrics, settings.token_budget_per_day, settings.budget_fail_open, prefix) if settings.token_budget_per_day else None,
        RedisRunLog(shared, metrics, max_bytes=settings.run_log_max_bytes, retention_seconds=settings.run_retention_seconds, prefix=prefix),
    )
    try:
        await state.log.beat()
    except Unavailable as exc:
        log.warning({"message": "Redis is unreachable at start: shared state degraded until it answers", "error": str(exc)})
    state.start()
    return state
