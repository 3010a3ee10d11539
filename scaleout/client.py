"""One Redis connection pool per process, every call short, and a breaker in front of it.

    shared = Shared(url)
    value = await shared.call(lambda r: r.get("k"))   # raises Unavailable while Redis is out
    shared.status()      # {"status": "ok" | "degraded", "latency_ms", "last_error", "degraded_since"}

Every call has a short deadline (CALL_TIMEOUT). A call that fails raises Unavailable, and its
caller applies its feature's fallback. The breaker then stops calls for BREAKER_SECONDS
(they raise Unavailable at once, without touching the network, so a dead or hung Redis costs
each request nothing): at once when Redis refused or dropped the connection, after
TIMEOUTS_TO_OPEN timeouts in a row when it is only slow. Not at the first timeout: the
deadline runs on this process's event loop, and a burst of requests on a busy loop can
overrun it for one call with a healthy Redis. The next call after the pause tries again (the
process's maintenance loop makes one every quarter second), and one success closes the
breaker: nothing has to be restarted when Redis comes back.

Blocking reads (a joined reader's XREAD) go through a second pool whose socket timeout is
longer than the block; they are not subject to the short deadline but do feed the breaker.

Errors that are answers (a Lua error, XADD's "ID equal or smaller") are not failures of
Redis: they are raised to the caller as redis.ResponseError and leave the breaker alone.
Except the answers that mean "not now" (OUT_OF_SERVICE: out of memory under `noeviction`,
still loading its data after a restart, a read-only replica after a failover, a script
running too long): those count as Redis being unavailable.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any, Awaitable, Callable, TypeVar

try:
    import redis.asyncio as aioredis
except ImportError:  # pragma: no cover - depends on the install
    raise ImportError("REDIS_URL is set but the redis package is not installed: pip install -r requirements-redis.txt") from None
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ClusterDownError, OutOfMemoryError, ReadOnlyError, RedisError, ResponseError, TryAgainError
from redis.exceptions import TimeoutError as RedisTimeoutError

T = TypeVar("T")

# Redis answers these calls in well under a millisecond on a private network, a few ms across
# a region. What takes a second is an outage, or this process's event loop far behind: on a
# saturated machine (2 shared cores, tests and benchmarks) calls to a healthy Redis overran
# deadlines of 0.25 to 0.75 s, so these leave room for that and little more.
SOCKET_TIMEOUT = 1.0  # connecting, and each read
CALL_TIMEOUT = 1.5  # the whole call, the wait for a pooled connection included
BREAKER_SECONDS = 3.0
TIMEOUTS_TO_OPEN = 3
MAX_CONNECTIONS = 64
# Blocking reads: one connection per joined reader while it waits, for at most this long.
BLOCKING_MAX_CONNECTIONS = 256
MAX_BLOCK_SECONDS = 1.0

# Error answers that say Redis cannot serve writes right now, rather than that the request was wrong.
OUT_OF_SERVICE = ("OOM", "LOADING", "READONLY", "MASTERDOWN", "BUSY", "NOREPLICAS", "TRYAGAIN")

__all__ = ["Shared", "Unavailable", "ResponseError", "out_of_service"]


def out_of_service(error: object) -> bool:
    """True for an error answer that means Redis cannot serve now (OUT_OF_SERVICE): raised
    by redis-py (which names some of them with a class and drops the prefix), or returned
    as text by a script's redis.pcall."""
    if isinstance(error, (OutOfMemoryError, ReadOnlyError, TryAgainError, ClusterDownError)):
        return True
    text = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
    return text.startswith(OUT_OF_SERVICE)


class Unavailable(Exception):
    """Redis could not be used for this call (down, slow, or the breaker is open)."""


class Shared:
    def __init__(self, url: str, clock: Callable[[], float] = time.monotonic, tls_verify: bool = True) -> None:
        # Stale connections after a Redis restart fail once with a connection error: one
        # immediate retry on a fresh connection. Timeouts are never retried (that is the
        # slow case the deadline is for).
        retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        self._tls = {"ssl_cert_reqs": "none"} if url.startswith("rediss://") and not tls_verify else {}
        self.pool = aioredis.BlockingConnectionPool.from_url(
            url,
            **self._tls,
            max_connections=MAX_CONNECTIONS,
            timeout=CALL_TIMEOUT,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            retry=retry,
            protocol=2,  # the replies' shapes are RESP2's on every redis-py >= 5
        )
        self.redis = aioredis.Redis(connection_pool=self.pool)
        self._block_url = url
        self._blocking: aioredis.Redis | None = None
        self._clock = clock
        self.open_until = 0.0
        self.last_error: str | None = None
        self.degraded_since: float | None = None  # time.time() of the first failure of this outage
        self.failures = 0
        self.latency_ms: float | None = None  # smoothed, of successful calls

    # -- state -----------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """False while the breaker is open."""
        return self._clock() >= self.open_until

    @property
    def healthy(self) -> bool:
        """True when the last call succeeded (no outage under way)."""
        return self.degraded_since is None

    def status(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.healthy else "degraded",
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 3),
            "last_error": self.last_error,
            "degraded_since": _iso(self.degraded_since),
        }

    def _ok(self, started: float) -> None:
        ms = (time.perf_counter() - started) * 1000
        self.latency_ms = ms if self.latency_ms is None else self.latency_ms * 0.8 + ms * 0.2
        self.degraded_since = None
        self.failures = 0

    def _failed(self, exc: BaseException) -> Unavailable:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:200]
        if self.degraded_since is None:
            self.degraded_since = time.time()
        slow = isinstance(exc, (RedisTimeoutError, asyncio.TimeoutError)) or "No connection available" in str(exc)
        if not slow or self.failures >= TIMEOUTS_TO_OPEN:
            self.open_until = self._clock() + BREAKER_SECONDS
        return Unavailable(self.last_error)

    def check(self) -> None:
        """Raise Unavailable at once while the breaker is open."""
        if self._clock() < self.open_until:
            raise Unavailable(self.last_error or "breaker open")

    # -- calls -----------------------------------------------------------------------------

    async def call(self, fn: Callable[[aioredis.Redis], Awaitable[T]], timeout: float = CALL_TIMEOUT) -> T:
        """Run `fn(redis)` under the deadline and the breaker."""
        self.check()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                result = await fn(self.redis)
        except ResponseError as exc:
            if out_of_service(exc):
                raise self._failed(exc) from None
            self._ok(started)  # Redis answered
            raise
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            raise self._failed(exc) from None
        self._ok(started)
        return result

    async def blocking(self, fn: Callable[[aioredis.Redis], Awaitable[T]], block_seconds: float) -> T:
        """A blocking read on its own pool, allowed `block_seconds` plus the usual deadline."""
        self.check()
        if self._blocking is None:
            self._blocking = aioredis.Redis(
                connection_pool=aioredis.BlockingConnectionPool.from_url(
                    self._block_url,
                    **self._tls,
                    max_connections=BLOCKING_MAX_CONNECTIONS,
                    timeout=CALL_TIMEOUT,
                    socket_timeout=max(block_seconds, MAX_BLOCK_SECONDS) + SOCKET_TIMEOUT,
                    socket_connect_timeout=SOCKET_TIMEOUT,
                    retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
                    protocol=2,
                )
            )
        try:
            async with asyncio.timeout(block_seconds + CALL_TIMEOUT + 1.0):
                result = await fn(self._blocking)
        except ResponseError as exc:
            if out_of_service(exc):
                raise self._failed(exc) from None
            raise
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            if "No connection available" in str(exc):
                # Every blocking connection is taken by other readers: this reader's trouble,
                # not Redis's; the breaker stays as it is.
                raise Unavailable(str(exc)) from None
            raise self._failed(exc) from None
        self.degraded_since = None
        return result

    async def aclose(self) -> None:
        for client in (self.redis, self._blocking):
            if client is not None:
                try:
                    await client.aclose()
                    await client.connection_pool.disconnect()
                except (RedisError, OSError):
                    pass


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

