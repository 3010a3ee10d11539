"""A run's log: its frames in order, bounded in bytes, with readers waiting for the next one.

`MemoryLog` is the log in this process. The producer appends; each reader iterates
`read(after)`: the frames already there, then each new one as it comes, until the log is
closed (after `done`). Appending never awaits, so one reader never slows another; a reader
that falls behind the retained frames gets `LogTruncated`.

The reader in hand: a reader that is alone and has read every frame may hand its write to
the producer (`read(after, deliver)`). The producer then writes each new frame itself
(`hand_off`), in its own task, instead of waking the reader's task for it: one task wake per
token instead of two. It is the same write (the reader's own `deliver`), so the bytes are the
same; the first other reader to attach, the log's close, or a failed write gives the hand
back, and the reader reads on from its place. A reader that leaves while the producer is
writing for it (its client stopped reading) cancels that write only.

Flow control, as a response without a log would hold back its upstream: the producer waits
for the reader in hand's write, and otherwise while an attached reader has more than
HIGH_WATER bytes still to take. A run with no reader (detached) is read at the model's pace.

Bounds: a log keeps at most `max_bytes` of frames, and all logs of the process together at
most `Totals.limit`. Past either, the oldest frames of the log being appended to are dropped,
but never one that an attached reader has still to read: the run keeps streaming live to its
readers, and can no longer be joined from before the first retained frame (a join asking
for it gets 409, never a silent gap). A reader that falls behind by more than twice the
bound (it stopped reading) loses its place: it gets `LogTruncated` and its response ends.

`SharedLog` is what a backend implements so that readers on other processes can join
(scaleout/, on Redis). The producer mirrors every frame to it through a `LogWriter`.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncGenerator, AsyncIterator, Awaitable, Callable, Protocol

# What a frame costs besides its bytes (the list slot, the event object): counted in the bounds.
_OVERHEAD = 64
# Flow control: past this many bytes that an attached reader has still to take, the producer
# waits (web/stream.py: a reader that stops reading is let go after SEND_TIMEOUT_SECONDS).
HIGH_WATER = 64 * 1024
# The producer looks at its readers once per this many bytes appended, not once per frame.
FLOW_STEP = 16 * 1024


# A reader's write of one (seq, event or None, frame): the producer awaits it for the reader in hand.
Deliver = Callable[[tuple[int, Any, bytes]], Awaitable[None]]


class LogTruncated(Exception):
    """The frame after `after` is no longer kept; the first one kept is `first_seq`."""

    def __init__(self, first_seq: int) -> None:
        super().__init__(f"the run's log starts at event {first_seq}")
        self.first_seq = first_seq


class Totals:
    """The byte count of every log of this process, against RUN_LOGS_TOTAL_BYTES.
    `drop_finished()` drops the finished log kept longest (False: none is left); a live log
    over the total calls it before it gives up frames of its own."""

    def __init__(self, limit: int, drop_finished: Callable[[], bool] = lambda: False) -> None:
        self.limit = limit
        self.bytes = 0
        self.drop_finished = drop_finished


class MemoryLog:
    def __init__(self, max_bytes: int, totals: Totals) -> None:
        self.max_bytes = max_bytes
        self.totals = totals
        # (event or None, frame, bytes appended before it) from `first_seq` on. The event object
        # is kept only for runs whose one reader needs more than bytes (the buffered answer, the lab).
        self.entries: list[tuple[Any, bytes, int]] = []
        self.first_seq = 1
        self.bytes = 0
        self.appended = 0  # every frame's cost ever appended (not lowered by trimming)
        self.closed = False
        self._producer: asyncio.Future[None] | None = None  # set while the producer waits for readers
        self._next_flow_check = FLOW_STEP
        # One future per reader waiting for the next frame (not one shared: a reader cancelled
        # while waiting must not cancel the others' wait).
        self._waiting: list[asyncio.Future[None]] = []
        # Each attached reader's next sequence number: frames from the lowest on are kept.
        self._cursors: dict[object, int] = {}
        # The reader in hand (its key and its write); the future it waits on until the hand is
        # given back (its result: a failed write's error, which the reader raises in its own
        # task); and, while the producer writes for a reader, that reader's key and the task.
        self.in_hand: tuple[object, Deliver] | None = None
        self._hand_back: asyncio.Future[BaseException | None] | None = None
        self._writing: tuple[object, asyncio.Task[Any]] | None = None

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.entries) - 1

    def append(self, event: Any, frame: bytes) -> None:
        cost = len(frame) + _OVERHEAD
        self.entries.append((event, frame, self.appended))
        self.appended += cost
        self.bytes += cost
        self.totals.bytes += cost
        if self.bytes > self.max_bytes or self.totals.bytes > self.totals.limit:
            self._trim()
        if self._waiting:
            self._wake()

    def _trim(self) -> None:
        """Drop the oldest frames (never the newest) until both bounds hold again."""
        while self.totals.bytes > self.totals.limit and self.totals.drop_finished():
            pass
        drop = freed = 0
        keep_last = len(self.entries) - 1
        if self._cursors and self.bytes <= 2 * self.max_bytes:
            # Readers that keep up lose nothing: keep what the slowest has still to read.
            keep_last = min(keep_last, min(self._cursors.values()) - self.first_seq)
        while drop < keep_last and (self.bytes - freed > self.max_bytes or self.totals.bytes - freed > self.totals.limit):
            freed += len(self.entries[drop][1]) + _OVERHEAD
            drop += 1
        if drop:
            del self.entries[:drop]
            self.first_seq += drop
            self.bytes -= freed
            self.totals.bytes -= freed

    def _wake(self) -> None:
        waiting, self._waiting = self._waiting, []
        for future in waiting:
            if not future.done():
                future.set_result(None)

    def over_high_water(self) -> bool:
        """The producer's check: whether a reader lags, looked at once per FLOW_STEP bytes (so a
        reader may fall behind by up to HIGH_WATER plus FLOW_STEP before the producer waits)."""
        if self.appended < self._next_flow_check:
            return False
        self._next_flow_check = self.appended + FLOW_STEP
        return self.lagging()

    def lagging(self) -> bool:
        """Whether an attached reader has more than HIGH_WATER bytes still to take."""
        if not self._cursors:
            return False
        index = min(self._cursors.values()) - self.first_seq
        return 0 <= index < len(self.entries) and self.appended - self.entries[index][2] > HIGH_WATER

    async def caught_up(self) -> None:
        """Until no attached reader lags (one caught up, left, or the log was closed)."""
        while self.lagging() and not self.closed:
            self._producer = asyncio.get_running_loop().create_future()
            await self._producer

    def _release_producer(self) -> None:
        if self._producer is not None and not self._producer.done():
            self._producer.set_result(None)
        self._producer = None

    def close(self) -> None:
        """No frame follows (the run ended): readers end once they have read the last one."""
        self.closed = True
        self._wake()
        self._give_back(None)

    def _give_back(self, error: BaseException | None) -> None:
        """The reader in hand reads for itself again (raising `error`: its write failed); when the
        producer is writing for it now, once that write has ended (its frame is then written or
        not, and the reader's place says which)."""
        self.in_hand = None
        if self._writing is None and self._hand_back is not None:
            if not self._hand_back.done():
                self._hand_back.set_result(error)
            self._hand_back = None

    def release(self) -> None:
        """The log is dropped (retention over): give its bytes back to the process total."""
        self.totals.bytes -= self.bytes
        self.bytes = 0
        self.entries = []

    async def hand_off(self) -> None:
        """The producer writes the newest frame with the reader in hand's `deliver`. A write that
        fails gives the hand back with its error; a write cancelled because the reader left (its
        send timed out: `read`'s finally) ends quietly, and the run goes on. Any other cancel
        (a Stop, the loop closing) goes on up; `uncancel` tells them apart, as in asyncio.timeout."""
        assert self.in_hand is not None
        me, deliver = self.in_hand
        seq = self.first_seq + len(self.entries) - 1
        event, data, _ = self.entries[-1]
        task = asyncio.current_task()
        assert task is not None
        self._writing = me, task
        cancelling = task.cancelling()
        error: BaseException | None = None
        try:
            await deliver((seq, event, data))
            self._cursors[me] = seq + 1
        except asyncio.CancelledError:
            if self._writing is not None or task.uncancel() > cancelling:
                raise  # not the reader's leaving
        except Exception as exc:  # noqa: BLE001 - the reader's own write failed: it raises it
            error, self.in_hand = exc, None
        finally:
            self._writing = None
            if self.in_hand is None:  # given back during the write, or by its failure
                self._give_back(error)

    async def read(self, after: int, deliver: Deliver | None = None) -> AsyncGenerator[tuple[int, Any, bytes], None]:
        """(seq, event, frame) for every frame after `after`, live, until the log is closed.
        Raises LogTruncated when a frame it needs was dropped, before or while reading. With
        `deliver`, the reader's write, the producer writes the frames that come while this
        reader is alone and caught up (they are not yielded)."""
        seq, me = after + 1, object()
        if self.in_hand is not None:
            self._give_back(None)  # a second reader: each reads at its own pace again
        try:
            while True:
                if seq < self.first_seq:
                    raise LogTruncated(self.first_seq)
                self._cursors[me] = seq
                if seq <= self.last_seq:
                    event, data, _ = self.entries[seq - self.first_seq]
                    yield seq, event, data
                    seq += 1
                    if self._producer is not None and not self.lagging():
                        self._release_producer()
                elif self.closed:
                    return
                elif deliver is not None and len(self._cursors) == 1:
                    self.in_hand = me, deliver
                    self._hand_back = asyncio.get_running_loop().create_future()
                    error = await self._hand_back
                    if error is not None:
                        raise error
                    seq = self._cursors[me]  # after the frames the producer wrote
                else:
                    future = asyncio.get_running_loop().create_future()
                    self._waiting.append(future)
                    await future
        finally:
            self._cursors.pop(me, None)
            if self.in_hand is not None and self.in_hand[0] is me:
                self._give_back(None)
            if self._writing is not None and self._writing[0] is me:
                # The producer is writing for this reader, which left: a send that timed out, or
                # one to a client gone. That write only is cancelled (hand_off); the run goes on.
                writing, self._writing = self._writing[1], None
                writing.cancel()
            self._release_producer()  # a reader gone may have been the one the producer waited for


class LogWriter(Protocol):
    """The producer's side of a SharedLog, for one run."""

    cancel_requested: asyncio.Event  # set when a Stop for this run came from any process

    def append(self, seq: int, frame: bytes) -> None:
        """Queue one frame; never awaits (the backend batches its writes)."""

    async def close(self) -> None:
        """Write what is queued, mark the log finished, keep it for RUN_RETENTION_SECONDS."""


class SharedLog(Protocol):
    """A backend where runs' frames are kept for readers on any process."""

    def writer(self, run_id: str) -> LogWriter: ...

    async def join(self, run_id: str, after: int) -> AsyncIterator[bytes] | None:
        """Frames after `after` through `done`; None for an unknown or expired run. Raises
        LogTruncated for a frame no longer kept. When the owner's heartbeat expires before
        `done`, it yields a `run_lost` error frame and a `done` frame."""

    async def cancel(self, run_id: str) -> bool:
        """Ask the run's owner, on whichever process, to stop it. False: unknown run."""

    async def claim_key(self, key: str, fingerprint: str, run_id: str) -> tuple[str, bool]:
        """Idempotency-Key: (the run the key belongs to, whether the fingerprint differs).
        The first caller's run wins, atomically."""
