"""A daily token budget: a cap on what the real model may spend per UTC day.

    budget = TokenBudget(limit=200_000)
    wait = await budget.reserve(run_id, estimate + max_output)  # 0: reserved; else Retry-After s
    await budget.settle(run_id, reserved, used)   # when the run ends: charge `used`, free the rest
    await budget.snapshot()   # {"limit", "used", "reserved", "remaining", "resets_at"} for health

A run reserves, before the model is called, the most its answer can cost: the prompt's
estimate (agent.prompts.estimate_tokens, an over-count) plus MAX_OUTPUT_TOKENS. The
reservation counts against the limit until the run settles, so runs admitted together cannot
spend more than the limit between them: a reservation that does not fit beside today's spend
and the other runs' reservations is refused. Settling charges what the run really used and
frees the rest. The day's total can then pass the limit only by what a run spends beyond its
reservation (a repair round's second answer is charged, never refused mid-run) and by the
prompt estimate's own error.

The count is in this process's memory: each uvicorn worker (WEB_CONCURRENCY) and each
instance has its own budget of `limit`, and a restart starts the day's count again from
zero. With N workers the service as a whole may spend up to N times the limit (scaleout/
shares one budget through Redis).

The methods are coroutines so that a shared implementation can replace this one; here none
of them awaits anything, so each runs whole, without another request in between.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any, Callable

# Retry-After when a reservation would fit once the runs holding reservations settle: they
# end within a few seconds to a few minutes, and most of a reservation comes back (an answer
# rarely uses all of MAX_OUTPUT_TOKENS).
RETRY_WHILE_RESERVED_SECONDS = 5


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
        # run id -> tokens it holds. Reservations outlive a UTC midnight: a run admitted at
        # 23:59 still spends, and is charged to the day it ends in.
        self._reservations: dict[str, int] = {}
        self._reserved = 0

    def _roll(self) -> float:
        """The clock's time, after starting a new count if a UTC day has begun since the last look."""
        now = self._clock()
        today = _utc_day(now)
        if today != self._day:
            self._day, self._used = today, 0
        return now

    def _seconds_to_midnight(self, now: float) -> int:
        return max(1, math.ceil(_midnight_after(self._day).timestamp() - now))

    @property
    def used(self) -> int:
        """Tokens charged today (settled runs)."""
        self._roll()
        return self._used

    @property
    def reserved(self) -> int:
        """Tokens held by runs that have not settled."""
        return self._reserved

    async def reserve(self, run_id: str, tokens: int) -> int:
        """Hold `tokens` for the run: 0 when they fit under today's limit, else Retry-After seconds.

        They fit when today's spend, every held reservation and `tokens` together stay within
        the limit. Refused: the seconds until the next UTC midnight, or a few seconds when the
        reservations held now are what stands in the way (they come back as their runs end).
        A request whose reservation alone is above the limit never fits (the caller can tell
        from `tokens > limit`). Reserving twice under one id adds up.
        """
        now = self._roll()
        tokens = max(0, int(tokens))
        if self._used + self._reserved + tokens <= self.limit:
            self._reservations[run_id] = self._reservations.get(run_id, 0) + tokens
            self._reserved += tokens
            return 0
        if self._reserved and self._used + tokens <= self.limit:
            return RETRY_WHILE_RESERVED_SECONDS
        return self._seconds_to_midnight(now)

    async def settle(self, run_id: str, reserved: int, used: int) -> None:
        """Charge `used` tokens to today and free everything the run holds.

        `reserved` is what the caller reserved for the run; a shared store needs it, this one
        keeps its own record and frees that (so a settle can never free more than was held, nor
        leave part of a reservation behind). A settle with nothing reserved (a repair round's
        answer, or a second settle) only charges. Negative or missing counts charge nothing.
        """
        self._roll()
        held = self._reservations.pop(run_id, 0)
        self._reserved -= held
        if used and used > 0:
            self._used += int(used)

    async def snapshot(self) -> dict[str, Any]:
        self._roll()
        return {
            "limit": self.limit,
            "used": self._used,
            "reserved": self._reserved,
            "remaining": max(0, self.limit - self._used - self._reserved),
            "resets_at": _midnight_after(self._day).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
