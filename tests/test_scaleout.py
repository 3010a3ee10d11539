"""scaleout/ against a real redis-server (tests/support/redis_server.py), in one process.

Two `Shared` clients in one test stand for two app processes: they share nothing but Redis.
The multi-process tests over real sockets are in test_scaleout_processes.py.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import pytest

from agent.events import Chat, Done, Start
from runs.frames import frame
from runs.log import LogTruncated
from scaleout import client as client_module
from scaleout import connect
from scaleout.client import Shared, Unavailable
from scaleout.limits import RateLimiter, StreamSlots, TokenBudget
from scaleout.run_log import RedisRunLog
from tests.support.redis_server import RedisServer, available, redis_server  # noqa: F401  (fixture)
from tests.support.servers import free_port
from web.errors import ApiError

pytestmark = pytest.mark.skipif(not available(), reason="redis-server is not installed (apt-get install -y redis-server)")


class Metrics:
    """The one method scaleout calls on web/metrics.py's Metrics."""

    def __init__(self) -> None:
        self.fallbacks: dict[str, int] = {}

        self.runs_lost = 0

    def record_fallback(self, feature: str) -> None:
        self.fallbacks[feature] = self.fallbacks.get(feature, 0) + 1

    def record_run_lost(self) -> None:
        self.runs_lost += 1


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def frames_of(run_id: str, n: int) -> list[bytes]:
    """A run's frames: start, n - 2 chat deltas, done."""
    out = [frame(run_id, 1, Start(run_id, "chat", "m", "offline"), first=True)]
    out += [frame(run_id, seq, Chat(f"token {seq} ✓")) for seq in range(2, n)]
    out.append(frame(run_id, n, Done("stop", None, {"ttft_ms": 1, "first_reasoning_ms": None, "total_ms": 2}, 0)))
    return out


async def drain(iterator: Any, timeout: float = 5.0) -> list[bytes]:
    out = []

    async def go() -> None:
        async for item in iterator:
            out.append(item)

    await asyncio.wait_for(go(), timeout)
    return out


@pytest.fixture
def redis(redis_server: RedisServer) -> RedisServer:
    redis_server.flush()
    return redis_server


# -- the client and its breaker -----------------------------------------------------------


def test_breaker_fails_fast_then_recovers_by_itself() -> None:
    port = free_port()
    now = [1000.0]

    async def scenario() -> None:
        shared = Shared(f"redis://127.0.0.1:{port}/0", clock=lambda: now[0])
        t0 = time.perf_counter()
        with pytest.raises(Unavailable):
            await shared.call(lambda r: r.ping())
        assert time.perf_counter() - t0 < 1.0  # refused, or the short deadline
        assert shared.status()["status"] == "degraded" and not shared.available
        t0 = time.perf_counter()
        for _ in range(100):
            with pytest.raises(Unavailable):
                await shared.call(lambda r: r.ping())
        assert time.perf_counter() - t0 < 0.05  # open breaker: no network at all
        server = RedisServer(port).start()
        try:
            now[0] += client_module.BREAKER_SECONDS + 0.01
            assert await shared.call(lambda r: r.ping()) is True
            assert shared.status()["status"] == "ok" and shared.status()["latency_ms"] is not None
        finally:
            server.kill()
        await shared.aclose()

    run(scenario())


def test_a_slow_redis_opens_the_breaker_only_after_timeouts_in_a_row() -> None:
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts, never answers: every read times out

    async def scenario() -> None:
        shared = Shared(f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        for attempt in range(1, client_module.TIMEOUTS_TO_OPEN + 1):
            assert shared.available, attempt  # one slow call is not an outage yet
            with pytest.raises(Unavailable):
                await shared.call(lambda r: r.ping(), timeout=0.2)
        assert not shared.available and shared.status()["status"] == "degraded"
        await shared.aclose()

    try:
        run(scenario())
    finally:
        silent.close()


# -- the rate limit --------------------------------------------------------------------------


def test_rate_limit_is_shared_and_never_more_than_n_in_any_window(redis: RedisServer) -> None:
    async def scenario() -> None:
        a, b = Shared(redis.url), Shared(redis.url)
        metrics = Metrics()
        limit_a = RateLimiter(a, metrics, 5, window_ms=1000)
        limit_b = RateLimiter(b, metrics, 5, window_ms=1000)
        admitted: list[float] = []
        started = time.monotonic()
        i = 0
        while time.monotonic() - started < 2.6:  # two and a half windows of requests every 20 ms
            limiter = limit_a if i % 2 else limit_b
            if await limiter.check("203.0.113.7") == 0:
                admitted.append(time.monotonic())
            i += 1
            await asyncio.sleep(0.02)
        # Every 1 s window, wherever it starts, holds at most 5 (a little slack for the
        # difference between this clock and Redis's).
        for t in admitted:
            assert sum(1 for u in admitted if t <= u < t + 0.98) <= 5, admitted
        assert 10 <= len(admitted) <= 15, admitted
        # Another client has its own log.
        assert await limit_a.check("198.51.100.1") == 0
        assert metrics.fallbacks == {}
        await a.aclose()
        await b.aclose()

    run(scenario())


def test_rate_limit_retry_after_comes_from_the_oldest_admission(redis: RedisServer) -> None:
    async def scenario() -> None:
        shared = Shared(redis.url)
        limiter = RateLimiter(shared, Metrics(), 2)
        assert [await limiter.check("c") for _ in range(2)] == [0, 0]
        wait = await limiter.check("c")
        assert 59 <= wait <= 60
        off = RateLimiter(shared, Metrics(), 0)
        assert [await off.check("c") for _ in range(5)] == [0] * 5
        await shared.aclose()

    run(scenario())


# -- stream slots ----------------------------------------------------------------------------


def test_slots_are_shared_and_a_dead_holders_lease_ends(redis: RedisServer) -> None:
    async def scenario() -> None:
        a, b = Shared(redis.url), Shared(redis.url)
        slots_a = StreamSlots(a, Metrics(), 2, lease_ms=400)
        slots_b = StreamSlots(b, Metrics(), 2, lease_ms=400)
        assert await slots_a.acquire("r1") and await slots_b.acquire("r2")
        assert not await slots_a.acquire("r3") and not await slots_b.acquire("r3")
        assert await slots_a.active() == 2
        await slots_b.release("r2")
        assert await slots_a.acquire("r3")
        # B keeps its lease alive; A "dies" (stops refreshing): its two slots end with the lease.
        assert not await slots_b.acquire("r4")
        started = time.monotonic()
        while not await slots_b.acquire("r4"):
            assert time.monotonic() - started < 1.5
            await asyncio.sleep(0.05)
        assert time.monotonic() - started <= 0.6
        for _ in range(8):  # refreshed every 100 ms, a 400 ms lease holds on
            await slots_b.refresh()
            await asyncio.sleep(0.1)
        assert await slots_b.active() == 1
        assert await slots_b.acquire("r5") and not await slots_a.acquire("r6")
        await a.aclose()
        await b.aclose()

    run(scenario())


# -- the token budget --------------------------------------------------------------------------


def test_budget_parallel_reservations_never_exceed_and_settle_exactly(redis: RedisServer) -> None:
    async def scenario() -> None:
        a, b = Shared(redis.url), Shared(redis.url)
        budget_a = TokenBudget(a, Metrics(), 1000)
        budget_b = TokenBudget(b, Metrics(), 1000)
        waits = await asyncio.gather(*((budget_a if i % 2 else budget_b).reserve(f"r{i}", 100) for i in range(50)))
        admitted = [i for i, wait in enumerate(waits) if wait == 0]
        assert len(admitted) == 10
        assert all(wait == 2 for wait in waits if wait)  # fits once open runs settle: soon
        snap = await budget_a.snapshot()
        assert (snap["used"], snap["reserved"], snap["remaining"]) == (0, 1000, 0)
        await asyncio.gather(*((budget_a if i % 2 else budget_b).settle(f"r{i}", 100, 80) for i in admitted))
        snap = await budget_b.snapshot()
        assert (snap["used"], snap["reserved"], snap["remaining"]) == (800, 0, 200)
        assert snap["resets_at"].endswith("T00:00:00Z")
        assert await budget_a.reserve("x", 300) > 60  # can never fit today: until midnight
        await a.aclose()
        await b.aclose()

    run(scenario())


def test_budget_reservation_of_a_dead_owner_is_charged_in_full_when_its_lease_ends(redis: RedisServer) -> None:
    async def scenario() -> None:
        shared = Shared(redis.url)
        budget = TokenBudget(shared, Metrics(), 1000, lease_ms=200)
        assert await budget.reserve("dead", 300) == 0
        await asyncio.sleep(0.3)
        snap = await budget.snapshot()
        assert (snap["used"], snap["reserved"]) == (300, 0)
        # Its owner was only slow after all: what it used beyond the charge is added.
        await budget.settle("dead", 300, 350)
        assert (await budget.snapshot())["used"] == 350
        await shared.aclose()

    run(scenario())


def test_budget_fails_closed_by_default_and_open_when_asked() -> None:
    async def scenario() -> None:
        server = RedisServer()
        shared = Shared(server.url)  # nothing listens yet
        metrics = Metrics()
        closed = TokenBudget(shared, metrics, 1000)
        with pytest.raises(ApiError) as refused:
            await closed.reserve("r", 100)
        assert refused.value.status == 503 and refused.value.code == "budget_unavailable"
        assert refused.value.headers["retry-after"] == "5"
        opened = TokenBudget(shared, metrics, 1000, fail_open=True)
        assert await opened.reserve("r", 100) == 0
        await opened.settle("r", 100, 70)
        assert opened.pending == [("r", 70, 0)]
        assert metrics.fallbacks == {"budget": 2}
        snap = await opened.snapshot()
        assert snap["shared"] is False
        server.start()
        try:
            shared.open_until = 0  # as after the breaker's pause
            await opened.flush_pending()
            assert opened.pending == []
            assert (await opened.snapshot())["used"] == 70
        finally:
            server.kill()
            await shared.aclose()

    run(scenario())


# -- the run log -------------------------------------------------------------------------------


def two_run_logs(redis: RedisServer, metrics_b: Metrics | None = None) -> tuple[Shared, Shared, RedisRunLog, RedisRunLog]:
    """Two processes' clients of one Redis, each with its run log, as two app processes have them."""
    a, b = Shared(redis.url), Shared(redis.url)
    logs = (RedisRunLog(a, Metrics(), max_bytes=1 << 20, retention_seconds=60),
            RedisRunLog(b, metrics_b or Metrics(), max_bytes=1 << 20, retention_seconds=60))
    return a, b, *logs


def test_join_from_another_process_is_byte_identical_at_every_cut(redis: RedisServer) -> None:
    run_id = "a" * 32
    frames = frames_of(run_id, 40)

    async def scenario() -> None:
        a, b, log_a, log_b = two_run_logs(redis)
        await log_a.beat()
        assert await log_b.join(run_id, 0) is None  # unknown
        writer = log_a.writer(run_id)
        for seq, data in enumerate(frames[:10], 1):
            writer.append(seq, data)
        await asyncio.sleep(0.2)
        live = [asyncio.create_task(drain(await log_b.join(run_id, k))) for k in (0, 1, 7)]
        for seq, data in enumerate(frames[10:], 11):
            writer.append(seq, data)
            await asyncio.sleep(0.002)
        await writer.close()
        got = await asyncio.gather(*live)
        assert got[0] == frames and got[1] == frames[1:] and got[2] == frames[7:]
        for k in (0, 5, 39):
            assert await drain(await log_b.join(run_id, k)) == frames[k:]
        assert await drain(await log_b.join(run_id, 40)) == []  # after done: nothing, at once
        # The closed log expires with the retention.
        ttl = await b.call(lambda r: r.pttl(log_a.log_key(run_id)))
        assert 50_000 < ttl <= 60_000
        await a.aclose()
        await b.aclose()

    run(scenario())


def test_a_second_writer_for_the_same_run_is_refused_never_interleaved(redis: RedisServer) -> None:
    run_id = "b" * 32
    frames = frames_of(run_id, 8)

    async def scenario() -> None:
        a, b, log_a, log_b = two_run_logs(redis)
        await log_a.beat()
        first = log_a.writer(run_id)
        for seq, data in enumerate(frames[:5], 1):
            first.append(seq, data)
        await asyncio.sleep(0.15)
        second = log_b.writer(run_id)
        for seq in range(1, 4):
            second.append(seq, frame(run_id, seq, Chat("intruder")))
        await asyncio.sleep(0.15)
        assert second.broken and not first.broken
        for seq, data in enumerate(frames[5:], 6):
            first.append(seq, data)
        await first.close()
        assert await drain(await log_b.join(run_id, 0)) == frames
        await a.aclose()
        await b.aclose()

    run(scenario())


def test_a_log_over_its_bound_is_trimmed_and_an_early_join_is_refused(redis: RedisServer) -> None:
    run_id = "c" * 32
    frames = frames_of(run_id, 200)

    async def scenario() -> None:
        shared = Shared(redis.url)
        log = RedisRunLog(shared, Metrics(), max_bytes=2000, retention_seconds=60)
        await log.beat()
        writer = log.writer(run_id)
        for seq, data in enumerate(frames, 1):
            writer.append(seq, data)
            if seq % 10 == 0:
                await asyncio.sleep(0.06)  # several entries
        await writer.close()
        with pytest.raises(LogTruncated) as truncated:
            await log.join(run_id, 0)
        first = truncated.value.first_seq
        assert 100 < first < 200
        stored = await shared.call(lambda r: r.xrange(log.log_key(run_id)))
        assert sum(len(fields[b"d"]) for _, fields in stored) <= 2000 + 10 * max(map(len, frames))
        assert await drain(await log.join(run_id, first - 1)) == frames[first - 1:]
        await shared.aclose()

    run(scenario())


def test_a_dead_owner_gives_run_lost_then_done_never_a_hang(redis: RedisServer) -> None:
    run_id = "d" * 32
    frames = frames_of(run_id, 20)

    async def scenario() -> None:
        metrics_b = Metrics()
        a, b, log_a, log_b = two_run_logs(redis, metrics_b)
        await log_a.beat()
        writer = log_a.writer(run_id)
        for seq, data in enumerate(frames[:6], 1):
            writer.append(seq, data)
        await asyncio.sleep(0.15)
        reader = asyncio.create_task(drain(await log_b.join(run_id, 2), timeout=10))
        await asyncio.sleep(0.3)
        assert not reader.done()  # the owner is alive: the reader waits
        await log_a.forget_process()  # as its heartbeat's expiry would
        started = time.monotonic()
        got = await reader
        assert time.monotonic() - started < 1.5
        assert got[:4] == frames[2:6]
        assert len(got) == 6
        assert got[4].startswith(b"id: %s-7\nevent: error\n" % run_id.encode()) and b'"code":"run_lost"' in got[4]
        assert got[5].startswith(b"id: %s-8\nevent: done\n" % run_id.encode()) and b'"finish_reason":"error"' in got[5]
        assert metrics_b.runs_lost == 1
        await a.aclose()
        await b.aclose()

    run(scenario())


def test_stop_from_another_process_reaches_the_owner_within_a_second(redis: RedisServer) -> None:
    async def scenario() -> None:
        settings = _settings(redis.url)
        a = await connect(settings, Metrics())
        b = await connect(settings, Metrics())
        try:
            running = a.log.writer("e" * 32)
            running.append(1, frames_of("e" * 32, 3)[0])
            await asyncio.sleep(0.1)
            started = time.monotonic()
            assert await b.log.cancel("e" * 32) is True
            await asyncio.wait_for(running.cancel_requested.wait(), 1.0)
            assert time.monotonic() - started < 1.0
            # A Stop sent before the owner's first flush still reaches it.
            early = a.log.writer("f" * 32)
            assert await b.log.cancel("f" * 32) is False  # nothing stored yet: unknown here
            await asyncio.wait_for(early.cancel_requested.wait(), 1.0)
            # Stopping a finished run is a no-op that says the run is known.
            done = a.log.writer("9" * 32)
            for seq, data in enumerate(frames_of("9" * 32, 3), 1):
                done.append(seq, data)
            await done.close()
            assert await b.log.cancel("9" * 32) is True
            assert await b.log.cancel("0" * 32) is False
        finally:
            await a.aclose()
            await b.aclose()

    run(scenario())


def test_idempotency_key_first_claim_wins_atomically(redis: RedisServer) -> None:
    async def scenario() -> None:
        a, b, log_a, log_b = two_run_logs(redis)
        claims = await asyncio.gather(*((log_a if i % 2 else log_b).claim_key("key-1", "body-1", f"run{i}") for i in range(20)))
        winners = {owner for owner, _ in claims}
        assert len(winners) == 1 and not any(conflict for _, conflict in claims)
        owner = winners.pop()
        assert await log_a.claim_key("key-1", "another body", "run99") == (owner, True)
        assert await log_b.claim_key("key-2", "body-1", "run7") == ("run7", False)
        await a.aclose()
        await b.aclose()

    run(scenario())


def test_a_joined_reader_lags_the_producer_by_well_under_100_ms_and_writes_are_batched(redis: RedisServer) -> None:
    runs = 20
    per_run = 100

    async def scenario() -> None:
        a, b, log_a, log_b = two_run_logs(redis)
        await log_a.beat()
        redis.command("CONFIG", "RESETSTAT")
        sent: dict[bytes, float] = {}
        lags: list[float] = []
        ids = [f"{i:032x}" for i in range(runs)]
        writers = [log_a.writer(run_id) for run_id in ids]
        all_frames = {run_id: frames_of(run_id, per_run) for run_id in ids}
        for writer, run_id in zip(writers, ids):
            writer.append(1, all_frames[run_id][0])
            sent[all_frames[run_id][0]] = time.monotonic()
        await asyncio.sleep(0.1)

        async def read(run_id: str) -> None:
            async for data in await log_b.join(run_id, 0):
                if data in sent:
                    lags.append(time.monotonic() - sent[data])

        readers = [asyncio.create_task(read(run_id)) for run_id in ids[:5]]
        for seq in range(2, per_run + 1):
            for writer, run_id in zip(writers, ids):
                data = all_frames[run_id][seq - 1]
                sent[data] = time.monotonic()
                writer.append(seq, data)
            await asyncio.sleep(0.01)  # 100 frames a second per run
        await asyncio.gather(*(writer.close() for writer in writers))
        await asyncio.wait_for(asyncio.gather(*readers), 5)
        calls = redis.command_calls()
        assert len(lags) >= 5 * (per_run - 5)
        assert statistics.median(lags) < 0.1 and max(lags) < 1.0, (statistics.median(lags), max(lags))
        # Writing: one command per flush for every run (its XADDs inside the script).
        frames_total = runs * per_run
        assert calls.get("xadd", 0) < frames_total / 2
        sent_by_writer = calls.get("evalsha", 0)
        assert sent_by_writer / frames_total < 0.05, calls
        await a.aclose()
        await b.aclose()

    run(scenario())


def test_frames_queued_while_redis_is_out_are_written_in_order_once_it_is_back() -> None:
    run_id = "7" * 32
    frames = frames_of(run_id, 30)
    server = RedisServer().start()

    async def scenario() -> None:
        a, b = Shared(server.url), Shared(server.url)
        metrics = Metrics()
        log_a = RedisRunLog(a, metrics, max_bytes=1 << 20, retention_seconds=60)
        log_b = RedisRunLog(b, Metrics(), max_bytes=1 << 20, retention_seconds=60)
        await log_a.beat()
        writer = log_a.writer(run_id)
        for seq, data in enumerate(frames[:10], 1):
            writer.append(seq, data)
        await asyncio.sleep(0.15)
        server.kill()  # its memory, with the first ten frames, is gone
        for seq, data in enumerate(frames[10:20], 11):
            writer.append(seq, data)
            await asyncio.sleep(0.01)
        assert metrics.fallbacks.get("run_log", 0) >= 1
        assert not log_a.available
        server.start()
        await asyncio.sleep(client_module.BREAKER_SECONDS + 0.3)
        for seq, data in enumerate(frames[20:], 21):
            writer.append(seq, data)
        await writer.close()
        await log_a.beat()
        with pytest.raises(LogTruncated) as truncated:
            await log_b.join(run_id, 0)
        assert truncated.value.first_seq == 11
        assert await drain(await log_b.join(run_id, 10)) == frames[10:]
        await a.aclose()
        await b.aclose()

    try:
        run(scenario())
    finally:
        server.kill()


def test_a_gap_under_a_reader_ends_it_with_run_lost(redis: RedisServer) -> None:
    run_id = "8" * 32
    frames = frames_of(run_id, 12)

    async def scenario() -> None:
        a, b, log_a, log_b = two_run_logs(redis)
        await log_a.beat()
        writer = log_a.writer(run_id)
        for seq, data in enumerate(frames[:3], 1):
            writer.append(seq, data)
        await asyncio.sleep(0.15)
        reader = asyncio.create_task(drain(await log_b.join(run_id, 0)))
        await asyncio.sleep(0.1)
        writer.restart = True  # as when Redis lost the log and the queue outgrew its bound
        for seq, data in enumerate(frames[6:], 7):
            writer.append(seq, data)
        await writer.close()
        got = await reader
        assert got[:3] == frames[:3] and len(got) == 5
        assert got[3].startswith(b"id: %s-4\nevent: error\n" % run_id.encode()) and b"run_lost" in got[3]
        assert got[4].startswith(b"id: %s-5\nevent: done\n" % run_id.encode())
        await a.aclose()
        await b.aclose()

    run(scenario())


# -- the shared state as the app gets it --------------------------------------------------------


def _settings(url: str, **env: str) -> Any:
    from agent.config import Settings

    return Settings.from_env({"REDIS_URL": url, **env})


def test_connect_with_redis_down_starts_degraded_falls_back_to_shares_and_recovers() -> None:
    server = RedisServer()

    async def scenario() -> None:
        metrics = Metrics()
        settings = _settings(server.url, RATE_LIMIT_PER_MINUTE="6", MAX_CONCURRENT_STREAMS="4", EXPECTED_INSTANCES="2", TOKEN_BUDGET_PER_DAY="1000")
        state = await connect(settings, metrics)
        try:
            status = (await state.status())
            assert status["status"] == "degraded" and status["processes"] is None
            assert "fail closed" in status["policy"]["budget"] and "EXPECTED_INSTANCES" in status["policy"]["rate_limit"]
            # Local shares: 6 / 2 requests, 4 / 2 slots.
            assert [await state.limiter.check("c") for _ in range(4)][:3] == [0, 0, 0]
            assert await state.limiter.check("c") > 0
            assert [await state.slots.acquire(f"r{i}") for i in range(3)] == [True, True, False]
            assert metrics.fallbacks["rate_limit"] == 5 and metrics.fallbacks["concurrency"] == 3
            assert (await state.status())["fallbacks"]["rate_limit"] == 5
            with pytest.raises(ApiError) as refused:
                await state.log.join("1" * 32, 0)
            assert (refused.value.status, refused.value.code) == (503, "shared_state_unavailable")
            with pytest.raises(Unavailable):
                await state.log.cancel("1" * 32)  # a Stop that reached no one is not a success
            assert await state.log.claim_key("k", "body", "2" * 32) == ("2" * 32, False)  # this process's table only
            server.start()
            deadline = time.monotonic() + client_module.BREAKER_SECONDS + 3
            while (await state.status())["status"] != "ok":
                assert time.monotonic() < deadline, (await state.status())
                await asyncio.sleep(0.1)
            assert (await state.status())["processes"] == 1
            assert await state.limiter.check("c") == 0  # shared again: a fresh log in Redis
            assert await state.slots.active() == 0  # the local ones were never in Redis
        finally:
            await state.aclose()

    try:
        run(scenario())
    finally:
        server.kill()


def test_after_redis_lost_its_data_slots_and_log_expiries_are_written_again() -> None:
    server = RedisServer().start()
    run_id = "6" * 32
    frames = frames_of(run_id, 4)

    async def scenario() -> None:
        state = await connect(_settings(server.url, MAX_CONCURRENT_STREAMS="5"), Metrics())
        try:
            assert await state.slots.acquire(run_id)
            writer = state.log.writer(run_id)
            writer.append(1, frames[0])
            await asyncio.sleep(0.2)
            server.restart()  # no persistence: everything is gone
            deadline = time.monotonic() + client_module.BREAKER_SECONDS + 3
            while await state.slots.active() != 1:  # the next heartbeat sees the new epoch
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            writer.append(2, frames[1])
            await asyncio.sleep(0.2)
            ttl = await state.shared.call(lambda r: r.pttl(state.log.log_key(run_id)))
            assert ttl > 0  # never a log without expiry, though the key was made again
        finally:
            await state.aclose()

    try:
        run(scenario())
    finally:
        server.kill()


def test_redis_out_of_memory_is_an_outage_not_an_error(redis: RedisServer) -> None:
    run_id = "5" * 32
    frames = frames_of(run_id, 6)

    async def scenario() -> None:
        shared = Shared(redis.url)
        metrics = Metrics()
        log = RedisRunLog(shared, metrics, max_bytes=1 << 20, retention_seconds=60)
        writer = log.writer(run_id)
        redis.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
        redis.command("CONFIG", "SET", "maxmemory", "1")  # every write is refused with OOM
        try:
            for seq, data in enumerate(frames[:3], 1):
                writer.append(seq, data)
            await asyncio.sleep(0.2)
            assert writer.pending and not writer.broken  # kept, not given up
            assert metrics.fallbacks["run_log"] >= 1
            shared.open_until = 0
            # A script whose first write is refused: the feature's fallback, never a 500.
            assert await log.claim_key("k", "body", "4" * 32) == ("4" * 32, False)
            assert metrics.fallbacks["run_log"] >= 2 and not shared.available
        finally:
            redis.command("CONFIG", "SET", "maxmemory", "0")
        shared.open_until = 0
        for seq, data in enumerate(frames[3:], 4):
            writer.append(seq, data)
        await writer.close()
        assert await drain(await log.join(run_id, 0)) == frames
        await shared.aclose()

    run(scenario())


def test_rediss_urls_can_skip_verifying_a_self_signed_certificate() -> None:
    checked = Shared("rediss://user:secret@store.example:6380/0")
    unchecked = Shared("rediss://user:secret@store.example:6380/0", tls_verify=False)
    plain = Shared("redis://127.0.0.1:6379/0", tls_verify=False)
    assert checked.pool.connection_kwargs.get("ssl_cert_reqs", "required") == "required"
    assert unchecked.pool.connection_kwargs["ssl_cert_reqs"] == "none"
    assert "ssl_cert_reqs" not in plain.pool.connection_kwargs


def test_flushes_keep_their_pace_without_urgent_frames_on_uvloop(redis: RedisServer) -> None:
    """The app runs on uvloop, whose timers report their time in whole milliseconds: the
    flusher must not take a timer that has fired for one still pending (it would stop
    flushing until the next run's first frame or `done`)."""
    uvloop = pytest.importorskip("uvloop")
    run_id = "3" * 32
    frames = frames_of(run_id, 302)

    async def scenario() -> None:
        a, b, log_a, log_b = two_run_logs(redis)
        await log_a.beat()
        writer = log_a.writer(run_id)
        writer.append(1, frames[0])
        await asyncio.sleep(0.1)
        sent: dict[bytes, float] = {}
        lags: list[float] = []

        async def read() -> None:
            async for data in await log_b.join(run_id, 1):
                if data in sent:
                    lags.append(time.monotonic() - sent[data])

        reader = asyncio.create_task(read())
        for seq in range(2, 302):  # chat frames only: none of them is urgent
            sent[frames[seq - 1]] = time.monotonic()
            writer.append(seq, frames[seq - 1])
            await asyncio.sleep(0.01)
        writer.append(302, frames[301])
        await asyncio.wait_for(reader, 5)
        assert len(lags) == 300
        assert max(lags) < 0.5, max(lags)
        await writer.close()
        await a.aclose()
        await b.aclose()

    uvloop.run(scenario())
