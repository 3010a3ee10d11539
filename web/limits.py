"""This process's limits: requests per client, open streams, and how long a request head may take.

    limiter = RateLimiter(per_minute=60)
    wait = await limiter.check(client)      # 0: admitted; else Retry-After seconds
    slots = StreamSlots(limit=100)
    if await slots.acquire(run_id): ...     # False: at the limit
    await slots.release(run_id)             # when the run ends
    await slots.active()                    # for health and /metrics

The client key is web/client_address.py's: the socket's peer, or, with FORWARDED_TRUSTED_HOPS
set, the X-Forwarded-For entry the trusted proxy appended (never one the client wrote
itself), an IPv6 address as its /64.

The methods are coroutines so that the shared implementations (scaleout/, in Redis) can
replace these; here none of them awaits anything, so each check-and-count runs whole.

`HeadDeadlineProtocol` is uvicorn's HTTP protocol with a deadline on the request head; the
Procfile selects it with `--http web.limits:HeadDeadlineProtocol` (see its doc below).
"""

from __future__ import annotations

import math
import time
from typing import Any

# A connection that has not sent a whole request head this many seconds after it opened (or
# after the first byte of its next request) is closed. Real clients send a head in one
# packet; a router in front sends it whole.
HEAD_TIMEOUT_SECONDS = 10.0


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

    async def check(self, client: str) -> int:
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


class StreamSlots:
    """At most `limit` runs open at once in this process (MAX_CONCURRENT_STREAMS).

    A slot belongs to a run id: acquiring twice for one run takes one slot, and releasing is
    idempotent, so a run released from two places (its end and a cancel) frees one slot.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: set[str] = set()

    async def acquire(self, run_id: str) -> bool:
        if run_id in self._held:
            return True
        if len(self._held) >= self.limit:
            return False
        self._held.add(run_id)
        return True

    async def release(self, run_id: str) -> None:
        self._held.discard(run_id)

    async def active(self) -> int:
        return len(self._held)


# -- the request head's deadline ---------------------------------------------------------------------


class _HeadDeadline:
    """Closes a connection whose request head has not arrived within `head_timeout` seconds.

    uvicorn arms no timer when a connection opens: its keep-alive timeout starts only after a
    byte has arrived or a response has ended, so a connection that never sends a byte stays
    open until the client closes it, and one that sends a byte now and then re-arms the
    keep-alive timeout each time. Such connections cost a file descriptor each, and with
    `--limit-concurrency` they counted against the limit until every request got a 503.

    The deadline runs from the connection's opening, and, on a kept-alive connection, from the
    first byte of each later request (the wait between requests is the keep-alive timeout's).
    It ends when the head is complete: a body and the response are the app's to bound
    (BODY_READ_TIMEOUT_SECONDS, the stream's own timeouts). The head is complete when uvicorn
    starts a request cycle, which both of its HTTP/1.1 implementations do from the parsed head.
    """

    head_timeout = HEAD_TIMEOUT_SECONDS
    _head_timer: Any = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle  # type: ignore[attr-defined]
        between_requests = cycle is None or cycle.response_complete
        super().data_received(data)  # type: ignore[misc]
        if self.cycle is not cycle:  # type: ignore[attr-defined]
            self._cancel_head_timer()  # a new request's head was parsed
        elif between_requests and self._head_timer is None and not self.transport.is_closing():  # type: ignore[attr-defined]
            self._arm_head_timer()  # the first bytes of the next request's head

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)  # type: ignore[attr-defined]

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():  # type: ignore[attr-defined]
            self.transport.close()  # type: ignore[attr-defined]


def _head_deadline_protocol() -> type:
    # uvicorn's "auto" choice (httptools when installed, else h11), with the deadline.
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    return type("HeadDeadlineProtocol", (_HeadDeadline, AutoHTTPProtocol), {"__module__": __name__})


def __getattr__(name: str) -> Any:
    # Built on first use (uvicorn imports it by name), so importing this module does not
    # import uvicorn's protocol modules.
    if name == "HeadDeadlineProtocol":
        cls = _head_deadline_protocol()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
