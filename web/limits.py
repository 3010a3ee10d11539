"""Per-client rate limiting: a token bucket per client address, in memory."""

from __future__ import annotations

import math
import time


class RateLimiter:
    """At most `per_minute` requests per client per minute, with bursts up to that number.

    `check` returns 0 when the request may go ahead, else the seconds to wait (Retry-After).
    """

    MAX_CLIENTS = 10_000  # beyond this, idle clients' buckets are forgotten

    def __init__(self, per_minute: int, clock=time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def check(self, client: str) -> int:
        if self.capacity <= 0:
            return 0  # rate limiting is off
        now = self._clock()
        tokens, last = self._buckets.get(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens < 1:
            self._buckets[client] = (tokens, now)
            return max(1, math.ceil((1 - tokens) / self.rate))
        self._buckets[client] = (tokens - 1, now)
        if len(self._buckets) > self.MAX_CLIENTS:
            self._forget_full(now)
        return 0

    def _forget_full(self, now: float) -> None:
        full = [c for c, (t, last) in self._buckets.items() if t + (now - last) * self.rate >= self.capacity]
        for client in full:
            del self._buckets[client]
