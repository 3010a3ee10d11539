"""LiveRun: one run's producer, its log, and who is reading it.

    live = LiveRun(run, run_id, log, grace=15.0, on_end=...)
    live.attach(); live.start()      # the first reader, then the producer task
    async for seq, event, frame in live.log.read(after, deliver): ...
    live.detach()                    # a reader left; the last one starts the grace
    live.stop(errors.cancelled())    # Stop (DELETE), or shutdown: at once

The producer drains `Run.events()` into the log, each event as its frame (runs/frames.py),
and mirrors each frame to a shared backend when there is one. With one reader that keeps up,
it writes each frame with that reader's write (runs/log.py, the reader in hand); otherwise
each reader sends at its own pace, and the producer waits only for one that lags far behind.
With none, the model is read at the model's pace.

Disconnect is not cancel. When the last reader leaves, the run keeps reading the model for
`grace` seconds; a reader that joins in that time continues it. When nobody does, the run
is stopped: the upstream is closed at once (the `finally` in Run.events), and the log ends
with `error` (cancelled) and `done` for anyone who joins later. With a grace of 0 the last
reader's leaving stops the run at once, as if the response were the run.

Whatever stops a run, its log ends with `done`, and `on_end(live)` is called exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from agent import errors
from agent.events import Event
from agent.run import Run
from runs.frames import frame
from runs.log import LogWriter, MemoryLog

log = logging.getLogger("scenario_agent.runs")


class LiveRun:
    def __init__(
        self,
        run: Run,
        run_id: str,
        log_: MemoryLog,
        *,
        grace: float,
        on_end: Callable[["LiveRun"], None],
        shared: LogWriter | None = None,
        keep_events: bool = False,
    ) -> None:
        self.run = run
        self.id = run_id
        self.log = log_
        self.grace = grace
        self.on_end = on_end
        self.shared = shared
        # Readers that need the event objects (the buffered answer, the lab) read runs that keep
        # them; a joinable run's readers need only the frames, so its log holds only those.
        self.keep_events = keep_events
        self.readers = 0
        self.seq = 0  # the last event's sequence number
        self.finished = False
        # Why the run was stopped from outside (None: it ran to its own end).
        self.stopped_by: errors.AgentError | None = None
        self.detached = False  # stopped because nobody read it for `grace` seconds
        self._task: asyncio.Task[None] | None = None
        self._grace_timer: asyncio.TimerHandle | None = None
        self._watch_shared: asyncio.Task[None] | None = None

    # -- readers ------------------------------------------------------------------------------

    def attach(self) -> None:
        self.readers += 1
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None

    def detach(self) -> None:
        self.readers -= 1
        if self.readers > 0 or self.finished:
            return
        if self.grace <= 0:
            self._stop_detached()
        else:
            self._grace_timer = asyncio.get_running_loop().call_later(self.grace, self._stop_detached)

    def _stop_detached(self) -> None:
        self._grace_timer = None
        if self.readers == 0 and not self.finished:
            self.detached = True
            self.stop(errors.cancelled())

    # -- the producer -------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        self._task = asyncio.create_task(self._produce(), name=f"run {self.id}")
        if self.shared is not None:
            self._watch_shared = asyncio.create_task(self._stop_when_asked(self.shared))

    def stop(self, error: errors.AgentError) -> None:
        """End the run now with `error` then `done` (Stop, detached grace, shutdown)."""
        if self.finished or self.stopped_by is not None:
            return
        self.stopped_by = error
        if error.code != "cancelled":
            self.run.stop_code = error.code  # the machine records a failure, not a client cancel
        if self._task is not None:
            self._task.cancel()

    async def _stop_when_asked(self, shared: LogWriter) -> None:
        await shared.cancel_requested.wait()
        self.stop(errors.cancelled())

    async def wait(self) -> None:
        """Until the producer has ended (its upstream released, its log closed)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _produce(self) -> None:
        events = self.run.events()
        try:
            async for event in events:
                self._append(event)
                if self.log.in_hand is not None:
                    await self.log.hand_off()  # the reader's write, in this task (runs/log.py)
                elif self.log.over_high_water():
                    await self.log.caught_up()
        except asyncio.CancelledError:
            if self.stopped_by is None:
                raise  # not ours: the loop is going away
            task = asyncio.current_task()
            assert task is not None
            task.uncancel()
            self._close_with(self.stopped_by)
        except Exception:
            log.exception("run %s: the producer failed", self.id)
            self._close_with(errors.internal())
        finally:
            # Stopped mid-answer, the generator is suspended at an await: close it so its
            # finally releases the upstream now (a no-op when it already ended).
            await events.aclose()
            await self._end()

    def _append(self, event: Event) -> None:
        self.seq += 1
        data = frame(self.id, self.seq, event, first=self.seq == 1)
        self.log.append(event if self.keep_events else None, data)
        if self.shared is not None:
            self.shared.append(self.seq, data)

    def _close_with(self, error: errors.AgentError) -> None:
        """A stopped run's last frames: `error`, then `done`."""
        for event in self.run.stop_events(error):
            self._append(event)

    async def _end(self) -> None:
        self.finished = True
        if self._grace_timer is not None:
            self._grace_timer.cancel()
        self.log.close()
        if self._watch_shared is not None:
            self._watch_shared.cancel()
        if self.shared is not None:
            try:
                await self.shared.close()
            except Exception:  # the shared store's trouble must not lose the run's end
                log.warning("run %s: the shared log could not be closed", self.id, exc_info=True)
        self.on_end(self)
