"""The run log on Redis: the SharedLog of runs/log.py, so a run can be joined from any process.

Keys (prefix `sa:` by default):

    log:<run id>       a Redis Stream; one entry per flushed batch of the run's frames
    procs              sorted set: process token -> its heartbeat's expiry (ms, Redis time)
    epoch              a random mark: when it changes, Redis lost its data (BEAT_SCRIPT)
    cancels            sorted set: run ids asked to stop (by any process) -> when (ms)
    idem:<sha256>      string: an Idempotency-Key's request fingerprint and run id

An entry's id is `<seq of its last frame>-0`, explicit, from the run's own sequence: Redis
refuses an id not greater than the stream's last one, so a second writer for the same run
fails (its batch is refused) instead of interleaving, and ids can never repeat. Its fields:
`f` the seq of its first frame, `n` each frame's length, `d` the frames, `o` the owner's
process token, `e` present when the batch ends with `done`.

Writes never slow the producer: `append` only queues. One flusher per process sends every
run's queued frames in one command (FLUSH_SCRIPT: one XADD per run inside it), FLUSH_SECONDS
after the first frame queued, or at once for a run's first frame, its `done`, or when it has
FLUSH_FRAMES waiting.
While Redis is out the frames stay queued (up to RUN_LOG_MAX_BYTES per run) and go out, in
order, once it is back; past that bound the run's log is started again from the frames kept,
so a join from before them gets 409, never a gap.

Readers use blocking XREAD (on the client's blocking pool). When no entry arrives for
BLOCK_SECONDS, the reader checks the owner's heartbeat: a process refreshes its token in
`procs` every BEAT_SECONDS with a PROC_TTL_MS expiry. An owner gone before `done` (killed,
lost its network) gives the reader `error` run_lost then `done`, never a hang. So does a gap
in the sequence (the log restarted under it) or a Redis that stays out for OUTAGE_SECONDS.

Stop from any process: the run id goes into `cancels`; every process that writes runs asks
`cancels` about its own runs every CANCEL_POLL_SECONDS (one ZMSCORE), so a Stop reaches the
owner well within a second, even one sent before the owner's first flush.

A join for a run that holds a stream slot (limits.StreamSlots) but whose first frames are not
in Redis yet (its own client can see them a moment before the flush) waits up to
FIRST_WAIT_MS for them rather than answering "unknown".

Retention: a running log's expiry is set to RUN_RETENTION_SECONDS + RUNNING_TTL_EXTRA_MS by
its first flush and again every TTL_REFRESH_SECONDS, so a killed owner's log is still there
for joiners to replay and get `run_lost`, then goes by itself; a closed log expires
RUN_RETENTION_SECONDS after `done`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections import deque
from typing import Any, AsyncIterator

from scaleout.client import Shared, Unavailable, out_of_service
from web.errors import ApiError

log = logging.getLogger("scenario_agent")

FLUSH_SECONDS = 0.05
FLUSH_FRAMES = 64
BLOCK_SECONDS = 0.5
FIRST_WAIT_MS = 1000  # a join for an admitted run whose first flush has not landed yet
BEAT_SECONDS = 1.0
PROC_TTL_MS = 3000
CANCEL_POLL_SECONDS = 0.25
OUTAGE_SECONDS = 5.0
RUNNING_TTL_EXTRA_MS = 300_000
TTL_REFRESH_SECONDS = 60.0
CLOSED_WRITER_KEEP_SECONDS = 60.0  # a closed run's frames still queued for a Redis that is out
_DONE = b"\nevent: done\n"

# One flush. ARGV[1]: the owner's token; then for each run with frames waiting (KEYS[i]) three
# ARGV from 2 + (i-1)*3: "<entry id> <first seq> <done 0|1> <expiry ms, 0: leave it> <MAXLEN, 0:
# no trim> <restart 0|1: delete the log first>" (no entry id: no frames, only the expiry), the
# frames' lengths, the frames. One command however many runs have frames waiting; each run's
# XADD is checked on its own: {1 or its error, ...}.
FLUSH_SCRIPT = """
local out = {}
local token = ARGV[1]
for i = 1, #KEYS do
  local b = 2 + (i - 1) * 3
  local key = KEYS[i]
  local id, first, done, ttl, maxlen, restart = string.match(ARGV[b], '^(%S*) (%d+) (%d) (%d+) (%d+) (%d)$')
  local result = 1
  if restart == '1' then redis.call('DEL', key) end
  if id ~= '' then
    local reply
    if maxlen ~= '0' then
      if done == '1' then
        reply = redis.pcall('XADD', key, 'MAXLEN', maxlen, id, 'f', first, 'n', ARGV[b + 1], 'd', ARGV[b + 2], 'o', token, 'e', '1')
      else
        reply = redis.pcall('XADD', key, 'MAXLEN', maxlen, id, 'f', first, 'n', ARGV[b + 1], 'd', ARGV[b + 2], 'o', token)
      end
    elseif done == '1' then
      reply = redis.pcall('XADD', key, id, 'f', first, 'n', ARGV[b + 1], 'd', ARGV[b + 2], 'o', token, 'e', '1')
    else
      reply = redis.pcall('XADD', key, id, 'f', first, 'n', ARGV[b + 1], 'd', ARGV[b + 2], 'o', token)
    end
    if type(reply) == 'table' and reply.err then result = reply.err end
  end
  if ttl ~= '0' and result == 1 then redis.call('PEXPIRE', key, ttl) end
  out[i] = result
end
return out
"""

# Refresh this process's heartbeat; forget processes dead for a minute; count the live ones.
# KEYS[2], the epoch, is a random mark written by the first process to find it missing: a
# different epoch from one beat to the next means Redis lost its data (a restart without
# persistence, a failover to an empty replica), and what this process keeps there (its logs'
# expiries, its slots' leases) must be written again. {live processes, epoch}
BEAT_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
redis.call('SET', KEYS[2], ARGV[3], 'NX')
return {redis.call('ZCOUNT', KEYS[1], now, '+inf'), redis.call('GET', KEYS[2])}
"""

# Is the owner's heartbeat current, and is the log still there? {alive, exists}
ALIVE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
local alive = 0
if expiry and tonumber(expiry) > now then alive = 1 end
return {alive, redis.call('EXISTS', KEYS[2])}
"""

# A Stop: noted for a minute whatever the run's state (its owner may not have written its
# first frames yet); 1 when the run's log exists.
CANCEL_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
return redis.call('EXISTS', KEYS[2])
"""

# The first caller's (fingerprint, run id) wins; later callers get it back.
CLAIM_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'NX', 'PX', ARGV[3]) then
  return {ARGV[2], 0}
end
local v = redis.call('GET', KEYS[1])
local sep = string.find(v, ' ', 1, true)
local fp, id = string.sub(v, 1, sep - 1), string.sub(v, sep + 1)
if fp == ARGV[1] then return {id, 0} end
return {id, 1}
"""


def _is_done(frame: bytes) -> bool:
    return frame.find(_DONE, 0, 160) != -1


class RedisLogWriter:
    """The producer's side for one run (runs/log.py's LogWriter)."""

    def __init__(self, owner: "RedisRunLog", run_id: str) -> None:
        self.owner = owner
        self.run_id = run_id
        self.key = owner.log_key(run_id)
        self.cancel_requested = asyncio.Event()
        self.pending: list[tuple[int, bytes]] = []
        self.pending_bytes = 0
        self.entries: deque[tuple[int, int]] = deque()  # (last seq, bytes) of entries in Redis
        self.stored_bytes = 0
        self.closed = False
        self.broken = False  # Redis refused an entry (another writer): nothing more is sent
        self.restart = False  # the queue outgrew the bound while Redis was out: start the log again
        self.ttl_due = 0.0  # monotonic time the key's expiry must be set again (0: at the next flush)
        self.closed_at: float | None = None
        self.flushed = asyncio.Event()  # set when nothing of a closed writer is left to send

    def append(self, seq: int, frame: bytes) -> None:
        if self.broken or self.closed:
            return
        pending = self.pending
        pending.append((seq, frame))
        self.pending_bytes += len(frame)
        done = frame.find(_DONE, 0, 160) != -1
        if self.pending_bytes > self.owner.max_bytes:
            self._shed()
        # Once per batch (its first frame arms the flush timer), or when it must go at once:
        # the run's first frame (it is joinable from other processes as soon as its own client
        # has seen it start), its `done`, or a full batch.
        if len(pending) == 1 or done or seq == 1 or len(pending) >= FLUSH_FRAMES:
            self.owner._queued(self, urgent=done or seq == 1 or len(pending) >= FLUSH_FRAMES)

    def _shed(self) -> None:
        """Redis has been out long enough for the queue to pass the log's bound: keep the
        newest frames within it and start the stored log again from them."""
        while len(self.pending) > 1 and self.pending_bytes > self.owner.max_bytes:
            self.pending_bytes -= len(self.pending.pop(0)[1])
        self.restart = True
        self.entries.clear()
        self.stored_bytes = 0

    async def close(self) -> None:
        """Send what is queued, with the log's retention; waits at most about a second for Redis."""
        if self.closed:
            return
        self.closed = True
        self.closed_at = time.monotonic()
        self.owner._queued(self, urgent=True)
        try:
            async with asyncio.timeout(1.0):
                await self.flushed.wait()
        except TimeoutError:
            pass  # Redis is out: the flusher keeps the frames and sends them when it is back

    # -- the flusher's side --------------------------------------------------------------------

    def _take(self, now: float) -> tuple[list[Any], list[tuple[int, bytes]]] | None:
        """This run's part of the next flush: (FLUSH_SCRIPT's ARGV for it, the frames taken),
        or None when it has nothing to send."""
        if self.broken or (not self.pending and not (self.closed and not self.flushed.is_set())):
            return None
        taken = self.pending
        self.pending = []
        self.pending_bytes = 0
        entry_id = lengths = data = b""
        first = done = maxlen = 0
        if taken:
            data = b"".join(frame for _, frame in taken)
            self.entries.append((taken[-1][0], len(data)))
            self.stored_bytes += len(data)
            trimmed = False
            while len(self.entries) > 1 and self.stored_bytes > self.owner.max_bytes:
                self.stored_bytes -= self.entries.popleft()[1]
                trimmed = True
            maxlen = len(self.entries) if trimmed else 0
            entry_id = b"%d-0" % taken[-1][0]
            first = taken[0][0]
            lengths = b",".join([b"%d" % len(frame) for _, frame in taken])
            done = 1 if _is_done(taken[-1][1]) else 0
        ttl = 0
        if self.closed:
            ttl = self.owner.retention_ms
        elif now >= self.ttl_due:
            ttl = self.owner.retention_ms + RUNNING_TTL_EXTRA_MS
            self.ttl_due = now + TTL_REFRESH_SECONDS
        meta = b"%s %d %d %d %d %d" % (entry_id, first, done, ttl, maxlen, 1 if self.restart else 0)
        return [meta, lengths, data], taken

    def _sent(self, result: Any, taken: list[tuple[int, bytes]]) -> bool:
        """The flush's answer for this run; False when its frames must be sent again."""
        if result != 1 and out_of_service(result):
            self._failed(taken)  # out of memory, a replica...: kept for the next flush
            return False
        self.restart = False
        if result != 1:
            # An id not above the stream's last one: another writer has this run. Stop
            # writing; that writer's log stays whole.
            self.broken = True
            log.warning({"message": "run log write refused by Redis", "run_id": self.run_id, "error": str(result)[:200]})
        if self.closed and not self.pending:
            self.flushed.set()
        return True

    def _failed(self, taken: list[tuple[int, bytes]]) -> None:
        self.ttl_due = 0.0
        if taken:
            size = sum(len(frame) for _, frame in taken)
            self.entries.pop()
            self.stored_bytes -= size
            self.pending[:0] = taken
            self.pending_bytes += size
            if self.pending_bytes > self.owner.max_bytes:
                self._shed()


class RedisRunLog:
    """runs/log.py's SharedLog on Redis; one per process."""

    def __init__(self, shared: Shared, metrics: Any, *, max_bytes: int, retention_seconds: float, prefix: str = "sa:", token: str | None = None) -> None:
        self.shared = shared
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.retention_ms = max(1, int(retention_seconds * 1000))
        self.prefix = prefix
        self.token = token or secrets.token_hex(8)  # this process, in `procs` and in each entry
        self.procs_key = f"{prefix}procs"
        self.slots_key = f"{prefix}slots"  # limits.StreamSlots': a run holding a slot is live
        self.epoch_key = f"{prefix}epoch"
        self.epoch: bytes | None = None
        self.cancels_key = f"{prefix}cancels"
        self._beat = shared.redis.register_script(BEAT_SCRIPT)
        self._alive = shared.redis.register_script(ALIVE_SCRIPT)
        self._claim = shared.redis.register_script(CLAIM_SCRIPT)
        self._cancel = shared.redis.register_script(CANCEL_SCRIPT)
        self._flush_script = shared.redis.register_script(FLUSH_SCRIPT)
        self.writers: dict[str, RedisLogWriter] = {}
        self._dirty: dict[RedisLogWriter, None] = {}  # insertion-ordered set
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._again = False
        self.live_processes: int | None = None
        self.flushes = 0
        self.entries_written = 0
        self.fallbacks = 0

    def log_key(self, run_id: str) -> str:
        return f"{self.prefix}log:{run_id}"

    @property
    def available(self) -> bool:
        """False while Redis is out: a new stream should then go without `id:` lines."""
        return self.shared.available

    # -- writing ---------------------------------------------------------------------------

    def writer(self, run_id: str) -> RedisLogWriter:
        writer = RedisLogWriter(self, run_id)
        self.writers[run_id] = writer
        return writer

    def _queued(self, writer: RedisLogWriter, urgent: bool) -> None:
        """A frame is waiting. The flush timer runs from the first frame waiting, also while a
        flush is under way (a frame never waits a flush's round trip plus a whole period)."""
        self._dirty[writer] = None
        if urgent:
            self._fire()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._fire()

    def _fire(self) -> None:
        """Flush now; or when the flush under way ends; or, Redis being out, after the breaker's pause."""
        pause = self.shared.open_until - time.monotonic()
        if pause > 0:
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(pause, self._on_timer)
            return
        if self._flushing is not None:
            self._again = True
            return
        if self._dirty:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            await self._flush_once()
        finally:
            self._flushing = None
            again, self._again = self._again, False
            if self._dirty:
                if again:
                    self._fire()
                elif self._timer is None:
                    self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._on_timer)
            self._forget_closed()

    async def _flush_once(self) -> None:
        writers = list(self._dirty)
        self._dirty.clear()
        now = time.monotonic()
        plan: list[tuple[RedisLogWriter, list[tuple[int, bytes]]]] = []
        keys: list[str] = []
        args: list[Any] = [self.token]
        for writer in writers:
            part = writer._take(now)
            if part is not None:
                plan.append((writer, part[1]))
                keys.append(writer.key)
                args.extend(part[0])
        if not plan:
            return
        try:
            results = await self.shared.call(lambda r: self._flush_script(keys=keys, args=args, client=r), timeout=2.0)
        except Unavailable:
            self.fallbacks += 1
            self.metrics.record_fallback("run_log")
            for writer, taken in plan:
                writer._failed(taken)
                self._dirty[writer] = None
            return
        self.flushes += 1
        refused = False
        for (writer, taken), result in zip(plan, results):
            if writer._sent(result, taken):
                self.entries_written += 1 if taken else 0
            else:
                refused = True
                self._dirty[writer] = None
        if refused:
            self.fallbacks += 1
            self.metrics.record_fallback("run_log")

    def _forget_closed(self) -> None:
        now = time.monotonic()
        for run_id, writer in list(self.writers.items()):
            if writer.closed and (writer.flushed.is_set() or writer.broken or now - (writer.closed_at or now) > CLOSED_WRITER_KEEP_SECONDS):
                writer.flushed.set()
                del self.writers[run_id]
                self._dirty.pop(writer, None)

    # -- the process's heartbeat and its cancel list (SharedState's maintenance loop) ----------

    async def beat(self) -> bool:
        """Refresh this process's heartbeat; True when Redis lost its data since the last beat."""
        count, epoch = await self.shared.call(
            lambda r: self._beat(keys=[self.procs_key, self.epoch_key], args=[self.token, PROC_TTL_MS, secrets.token_hex(8)], client=r)
        )
        self.live_processes = int(count)
        wiped = self.epoch is not None and epoch != self.epoch
        self.epoch = epoch
        if wiped:
            for writer in self.writers.values():
                writer.ttl_due = 0.0  # its log was created again by its next XADD, without expiry
        return wiped

    async def poll_cancels(self) -> None:
        ids = [run_id for run_id, writer in self.writers.items() if not writer.closed]
        if not ids:
            return
        scores = await self.shared.call(lambda r: r.zmscore(self.cancels_key, ids))
        asked = [run_id for run_id, score in zip(ids, scores) if score is not None]
        for run_id in asked:
            self.writers[run_id].cancel_requested.set()
        if asked:
            await self.shared.call(lambda r: r.zrem(self.cancels_key, *asked))

    async def forget_process(self) -> None:
        """At shutdown: leave `procs` at once (a reader's run_lost then comes without the TTL)."""
        await self.shared.call(lambda r: r.zrem(self.procs_key, self.token))

    # -- reading ---------------------------------------------------------------------------

    async def join(self, run_id: str, after: int) -> AsyncIterator[bytes] | None:
        from runs.log import LogTruncated

        key = self.log_key(run_id)

        async def ends(r: Any) -> Any:
            pipe = r.pipeline(transaction=False)
            pipe.xrange(key, "-", "+", count=1)
            pipe.xrevrange(key, "+", "-", count=1)
            pipe.zscore(self.slots_key, run_id)
            return await pipe.execute()

        try:
            first, last, admitted = await self.shared.call(ends)
            if not last and admitted is not None:
                # Admitted (it holds a stream slot) but its first frames are not written yet:
                # its own client may have seen them a moment before the flush. Wait for them.
                await self.shared.blocking(lambda r: r.xread({key: "0-0"}, count=1, block=FIRST_WAIT_MS), FIRST_WAIT_MS / 1000)
                first, last, admitted = await self.shared.call(ends)
        except Unavailable:
            self.metrics.record_fallback("join")
            raise ApiError(
                503,
                "shared_state_unavailable",
                "Runs on other servers cannot be joined right now (the shared store is unreachable). Try again in a few seconds.",
                {"retry-after": "5"},
            ) from None
        if not last:
            return None
        first_seq = int(first[0][1][b"f"])
        if after + 1 < first_seq:
            raise LogTruncated(first_seq)
        last_fields = last[0][1]
        last_seq = int(last[0][0].split(b"-")[0])
        if b"e" in last_fields and after >= last_seq:
            return _empty()
        return self._read(run_id, after, last_fields[b"o"].decode())

    async def _read(self, run_id: str, after: int, owner: str) -> AsyncIterator[bytes]:
        key = self.log_key(run_id)
        expected = after + 1
        cursor = f"{after}-0"
        block_ms = int(BLOCK_SECONDS * 1000)
        outage_since: float | None = None
        while True:
            try:
                reply = await self.shared.blocking(lambda r: r.xread({key: cursor}, count=256, block=block_ms), BLOCK_SECONDS)
                if not reply:
                    alive, exists = await self.shared.call(lambda r: self._alive(keys=[self.procs_key, key], args=[owner], client=r))
                    if alive and exists:
                        outage_since = None
                        continue
                    # The owner is gone: take what it flushed before it went, then end.
                    reply = await self.shared.call(lambda r: r.xread({key: cursor}, count=256))
                    if not reply:
                        self.metrics.record_run_lost()
                        for lost in lost_frames(run_id, expected):
                            yield lost
                        return
                outage_since = None
            except Unavailable:
                now = time.monotonic()
                outage_since = outage_since or now
                if now - outage_since > OUTAGE_SECONDS:
                    self.metrics.record_run_lost()
                    for lost in lost_frames(run_id, expected):
                        yield lost
                    return
                await asyncio.sleep(0.25)
                continue
            for entry_id, fields in reply[0][1]:
                cursor = entry_id
                owner = fields.get(b"o", owner.encode()).decode()
                seq = int(fields[b"f"])
                if seq > expected:  # frames missing: the log was started again under this reader
                    self.metrics.record_run_lost()
                    for lost in lost_frames(run_id, expected):
                        yield lost
                    return
                data = fields[b"d"]
                offset = 0
                for length in fields[b"n"].split(b","):
                    size = int(length)
                    if seq >= expected:
                        yield data[offset:offset + size]
                        expected = seq + 1
                    offset += size
                    seq += 1
                if b"e" in fields:
                    return

    async def cancel(self, run_id: str) -> bool:
        writer = self.writers.get(run_id)
        if writer is not None:
            writer.cancel_requested.set()
            return True
        # Redis out: Unavailable is raised (the Stop did not reach anyone; the caller says so).
        known = await self.shared.call(lambda r: self._cancel(keys=[self.cancels_key, self.log_key(run_id)], args=[run_id], client=r))
        return bool(known)

    async def claim_key(self, key: str, fingerprint: str, run_id: str) -> tuple[str, bool]:
        name = f"{self.prefix}idem:{hashlib.sha256(key.encode()).hexdigest()}"
        fp = hashlib.sha256(fingerprint.encode()).hexdigest()
        try:
            owner, conflict = await self.shared.call(lambda r: self._claim(keys=[name], args=[fp, run_id, self.retention_ms], client=r))
        except Unavailable:
            # Redis out: this process's own table (runs/registry.py) is all that is checked.
            self.metrics.record_fallback("run_log")
            return run_id, False
        return owner.decode(), bool(conflict)

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._dirty and self._flushing is None:
            self._fire()
        if self._flushing is not None:
            try:
                async with asyncio.timeout(1.0):
                    await asyncio.shield(self._flushing)
            except (TimeoutError, Exception):
                pass


def lost_frames(run_id: str, expected: int) -> tuple[bytes, bytes]:
    """`error` run_lost then `done`, numbered on from the last frame the reader got."""
    from agent import errors
    from agent.events import Done
    from runs.frames import frame

    timings = {"ttft_ms": None, "first_reasoning_ms": None, "total_ms": None}
    return frame(run_id, expected, errors.run_lost().event(), first=expected == 1), frame(run_id, expected + 1, Done("error", None, timings, 0))


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator that yields nothing
