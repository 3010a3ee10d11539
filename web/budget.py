"""A daily token budget: a cap on what the real model may spend per UTC day.

    budget = TokenBudget(limit=200_000)
    wait = budget.retry_after()   # 0: go ahead; else seconds until the next UTC midnight
    budget.spend(usage["total_tokens"])   # when an answer ends
    budget.snapshot()             # {"limit", "used", "remaining", "resets_at"} for health

The check is made when a request arrives, the spending when its answer ends, so streams
already running always finish: the day's total can end above the limit by what the
streams open at that moment use (at most MAX_CONCURRENT_STREAMS answers of up to
MAX_OUTPUT_TOKENS each, plus their prompts).

The count is in this process's memory: each uvicorn worker (WEB_CONCURRENCY) and each
instance has its own budget of `limit`, and a restart starts the day's count again from
zero. With N workers the service as a whole may spend up to N times the limit.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any, Callable


def _utc_day(timestamp: float) -> dt.date:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).date()


def _midnight_after(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.timezone.utc)


class TokenBudget:
    def __init__(self, limit: int, clock: Callable[[], float] = time.time) -> None:
        if limit <= 0:
            raise ValueError("TOKEN_BUDGET_PER_DAY must be a positive whole number (or unset: no budget)")
        self.limit = limit
        self._clock = clock
        self._day = _utc_day(clock())
        self._used = 0

    def _roll(self) -> float:
        """The clock's time, after starting a new count if a UTC day has begun since the last look."""
        now = self._clock()
        today = _utc_day(now)
        if today != self._day:
            self._day, self._used = today, 0
        return now

    @property
    def used(self) -> int:
        self._roll()
        return self._used

    def retry_after(self) -> int:
        """0 while tokens remain today; once spent, the whole seconds until the next UTC midnight (at least 1)."""
        now = self._roll()
        if self._used < self.limit:
            return 0
        return max(1, math.ceil(_midnight_after(self._day).timestamp() - now))

    def spend(self, tokens: int) -> None:
        """Count an answer's tokens against today's budget (negative or missing counts are ignored)."""
        self._roll()
        if tokens > 0:
            self._used += int(tokens)

    def snapshot(self) -> dict[str, Any]:
        self._roll()
        return {
            "limit": self.limit,
            "used": self._used,
            "remaining": max(0, self.limit - self._used),
            "resets_at": _midnight_after(self._day).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
