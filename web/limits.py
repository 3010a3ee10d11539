"""Per-client rate limiting: a token bucket per client address, in memory.

The client address is web/client_address.py's: the socket's peer, or, with
FORWARDED_TRUSTED_HOPS set, the X-Forwarded-For entry the trusted proxy appended (never
one the client wrote itself).
"""

from __future__ import annotations

import math
import time


class RateLimiter:
    """At most `per_minute` requests per client per minute, with bursts up to that number.

    `check` returns 0 when the request may go ahead, else the seconds to wait (Retry-After).
    Memory is bounded: at most MAX_CLIENTS buckets are kept. Beyond that, a sweep forgets
    the fullest buckets first (a full bucket is the same as none; a client that has used
    up its bucket is the last to be forgotten, so flooding the table from many addresses
    does not reset it). A sweep frees a tenth of the table, so its cost is spread over
    many requests.
    """

    MAX_CLIENTS = 10_000

    def __init__(self, per_minute: int, clock=time.monotonic, max_clients: int | None = None) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self.max_clients = max_clients or self.MAX_CLIENTS
        # client -> (tokens, time they were counted)
        self._buckets: dict[str, tuple[float, float]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, client: str) -> int:
        if self.capacity <= 0:
            return 0  # rate limiting is off
        now = self._clock()
        tokens, last = self._buckets.get(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + max(0.0, now - last) * self.rate)
        if tokens < 1:
            self._buckets[client] = (tokens, now)
            return max(1, math.ceil((1 - tokens) / self.rate))
        self._buckets[client] = (tokens - 1, now)
        if len(self._buckets) > self.max_clients:
            self._sweep(now)
        return 0

    def _sweep(self, now: float) -> None:
        target = self.max_clients - max(1, self.max_clients // 10)
        excess = len(self._buckets) - target
        if excess <= 0:
            return
        level = {c: t + max(0.0, now - last) * self.rate for c, (t, last) in self._buckets.items()}
        for client in sorted(level, key=level.__getitem__, reverse=True)[:excess]:
            del self._buckets[client]
