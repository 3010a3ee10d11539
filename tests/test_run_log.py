"""runs/log.py's reader in hand, without a server: a scripted model, a run, readers, whole outcomes.

A reader that is alone and caught up hands its write to the producer, which writes each new
frame in its own task. These scripts check that it is the same stream as the slow path (the
reader's task woken per frame), that a second reader or a failed write gives the hand back
with nothing lost or repeated, and that a reader leaving mid-write cancels that write only,
while a Stop still stops the run.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Awaitable, Callable

from agent import errors
from agent.config import Settings
from agent.model import Finish
from agent.request import AgentRequest
from agent.run import Run
from runs.live import LiveRun
from runs.registry import Runs

RUN_ID = "r" * 32
TOKENS = [f"w{i} " for i in range(12)]
FRAMES = len(TOKENS) + 2  # start, a chat frame per token, done


class PacedModel:
    """Deltas a loop turn or more apart, as a socket's reads are; counts how it was closed."""

    provider, model = "scripted", "scripted-1"

    def __init__(self, tokens: list[str], pause: float = 0.001) -> None:
        self.tokens = tokens
        self.pause = pause
        self.read = 0
        self.closed = False

    async def stream(self, prompt: Any, max_tokens: int):
        try:
            for token in self.tokens:
                await asyncio.sleep(self.pause)
                self.read += 1
                yield token
            yield Finish("stop", None)
        finally:
            self.closed = True


def open_run(model: PacedModel, grace: float = 30.0) -> LiveRun:
    runs = Runs(Settings(run_detached_grace_seconds=grace))
    run = Run(AgentRequest("hi", None, (), "chat"), model, RUN_ID, 1000)
    return runs.open(run, RUN_ID, joinable=True, on_end=lambda live: None)


Write = Callable[[tuple[int, Any, bytes]], Awaitable[None]]


class Reader:
    """What web/stream.py does with a run: attach, read, write each entry (itself, or by the
    producer's hand), detach. `written` is (seq, frame, the task that wrote it)."""

    def __init__(self, live: LiveRun, after: int = 0, *, hand: bool = True, before_write: Write | None = None,
                 on_leave: Callable[[], None] = lambda: None) -> None:
        self.live = live
        self.on_leave = on_leave
        self.after = after
        self.hand = hand
        self.before_write = before_write
        self.written: list[tuple[int, bytes, asyncio.Task[Any] | None]] = []
        live.attach()

    async def write(self, entry: tuple[int, Any, bytes]) -> None:
        if self.before_write is not None:
            await self.before_write(entry)
        self.written.append((entry[0], entry[2], asyncio.current_task()))

    async def run(self) -> None:
        try:
            async for entry in self.live.log.read(self.after, self.write if self.hand else None):
                await self.write(entry)
        finally:
            self.live.detach()
            self.on_leave()

    @property
    def seqs(self) -> list[int]:
        return [seq for seq, _, _ in self.written]

    @property
    def body(self) -> bytes:
        return b"".join(frame for _, frame, _ in self.written)


class Stall:
    """A client that stops reading at frame `seq`: that write waits until `release()` (or ever)."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.reached = asyncio.Event()
        self._released = asyncio.Event()

    async def __call__(self, entry: tuple[int, Any, bytes]) -> None:
        if entry[0] == self.seq and not self._released.is_set():
            self.reached.set()
            await self._released.wait()

    def release(self) -> None:
        self._released.set()


async def stalled_reader(live: LiveRun, stall: Stall, **options: Any) -> tuple[Reader, asyncio.Task[None]]:
    """The run's first reader, started with the run, once the producer is stuck writing for it."""
    reader = Reader(live, before_write=stall, **options)
    live.start()
    task = asyncio.create_task(reader.run())
    await asyncio.wait_for(stall.reached.wait(), 5)
    return reader, task


def untimed(body: bytes) -> bytes:
    """The frames without `done`'s timings, the one part two runs of one answer do not share."""
    return re.sub(rb'"timings":\{[^}]*\}', b"", body)


def kinds(body: bytes) -> list[str]:
    return [line[len("event: "):] for line in body.decode().split("\n") if line.startswith("event: ")]


def test_a_reader_alone_and_caught_up_is_written_by_the_producer_with_the_slow_paths_bytes():
    async def one(hand: bool) -> tuple[Reader, LiveRun]:
        live = open_run(PacedModel(TOKENS))
        reader = Reader(live, hand=hand)
        live.start()
        await reader.run()
        await live.wait()
        return reader, live

    async def main() -> None:
        handed, live = await one(hand=True)
        woken, _ = await one(hand=False)
        assert handed.seqs == list(range(1, FRAMES + 1)) == woken.seqs
        assert untimed(handed.body) == untimed(woken.body)  # frame for frame, ids included
        producer = live._task
        # The first frame may be read before the reader is caught up; every later one is
        # written in the producer's task, none in the reader's.
        assert all(task is producer for _, _, task in handed.written[1:])
        assert all(task is not producer for _, _, task in woken.written)

    asyncio.run(main())


def test_a_second_reader_takes_the_hand_back_and_both_get_every_frame_once_in_order():
    async def main() -> None:
        model = PacedModel(TOKENS, pause=0.005)
        live = open_run(model)
        first = Reader(live)
        live.start()
        first_task = asyncio.create_task(first.run())
        while len(first.written) < 5:
            await asyncio.sleep(0.001)
        second = Reader(live)  # a second tab joins from the start
        await asyncio.gather(first_task, second.run())
        await live.wait()
        assert first.seqs == list(range(1, FRAMES + 1)) == second.seqs
        assert first.body == second.body
        assert kinds(first.body) == ["start"] + ["chat"] * len(TOKENS) + ["done"]
        # Two readers: each writes in its own task again once the second has joined.
        assert any(task is not live._task for _, _, task in first.written[6:])

    asyncio.run(main())


def test_a_hand_given_back_mid_write_waits_for_that_write_and_repeats_nothing():
    async def main() -> None:
        live = open_run(PacedModel(TOKENS, pause=0.002))
        stall = Stall(5)  # the client reads slowly: the fifth frame's write takes a while
        first, first_task = await stalled_reader(live, stall)
        second_task = asyncio.create_task(Reader(live).run())  # gives the hand back mid-write
        await asyncio.sleep(0.02)
        assert first.seqs == [1, 2, 3, 4]  # nothing read past the write still under way
        stall.release()
        await asyncio.gather(first_task, second_task)
        assert first.seqs == list(range(1, FRAMES + 1))

    asyncio.run(main())


def test_a_reader_that_leaves_mid_write_cancels_that_write_only_and_the_run_reads_on():
    async def main() -> None:
        model = PacedModel(TOKENS)
        live = open_run(model, grace=30.0)
        _, task = await stalled_reader(live, Stall(4))  # a client that stopped reading
        task.cancel()  # what web/stream.py does when the send times out
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.wait_for(live.wait(), 5)  # the producer was not left stuck in the write
        assert model.read == len(TOKENS) and model.closed
        assert live.stopped_by is None and live.run.machine.state == "done"
        late = Reader(live)  # a late join gets the whole run, the frame of the cut write included
        await late.run()
        assert late.seqs == list(range(1, FRAMES + 1))
        assert kinds(late.body)[-1] == "done"

    asyncio.run(main())


def test_a_stop_while_the_producer_writes_for_the_reader_still_stops_the_run():
    async def main() -> None:
        model = PacedModel(TOKENS)
        live = open_run(model, grace=30.0)
        stall = Stall(4)
        reader, task = await stalled_reader(live, stall)
        live.stop(errors.cancelled())  # DELETE: the cancel lands in the write, and is not swallowed
        stall.release()
        await asyncio.wait_for(live.wait(), 5)
        await asyncio.wait_for(task, 5)
        assert model.closed and model.read < len(TOKENS)
        assert live.run.machine.state == "cancelled"
        # The cut write wrote nothing, so the reader writes that frame itself: each once, in order.
        assert reader.seqs == list(range(1, reader.seqs[-1] + 1))
        assert kinds(reader.body)[-2:] == ["error", "done"] and b'"code":"cancelled"' in reader.body

    asyncio.run(main())


def test_a_failed_write_is_raised_in_the_readers_task_and_the_run_goes_on():
    async def main() -> None:
        model = PacedModel(TOKENS)
        live = open_run(model, grace=30.0)

        async def breaks_on_six(entry: tuple[int, Any, bytes]) -> None:
            if entry[0] == 6:
                raise ConnectionResetError("the client's socket broke")

        reader = Reader(live, before_write=breaks_on_six)
        live.start()
        outcome = await asyncio.gather(reader.run(), return_exceptions=True)
        assert isinstance(outcome[0], ConnectionResetError)  # as if the reader had written it itself
        assert reader.seqs == [1, 2, 3, 4, 5]
        await asyncio.wait_for(live.wait(), 5)
        assert model.read == len(TOKENS) and live.run.machine.state == "done"

    asyncio.run(main())


def test_a_stop_in_the_same_turn_as_the_readers_leaving_mid_write_still_stops_the_run():
    async def main() -> None:
        model = PacedModel(TOKENS)
        live = open_run(model, grace=30.0)
        # The reader leaves (its write is cancelled), and a Stop comes in the same loop turn,
        # before the producer has run again: two cancels, one CancelledError.
        _, task = await stalled_reader(live, Stall(4), on_leave=lambda: live.stop(errors.cancelled()))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.wait_for(live.wait(), 5)
        assert model.closed and model.read < len(TOKENS)
        assert live.run.machine.state == "cancelled"

    asyncio.run(main())
