"""Runs: this process's runs by id, kept for late joiners, and the Idempotency-Key table.

    runs = Runs(settings, shared=None)
    live = runs.open(run, joinable=True, on_end=...)   # a new run, with a new id
    runs.get(run_id)                                    # a live run, or a finished one still kept
    runs.key("abc", fingerprint)                        # the run an Idempotency-Key started
    runs.stop_all(errors.server_shutdown())             # shutdown

A finished run's log is kept for RUN_RETENTION_SECONDS, then dropped. When all logs
together pass RUN_LOGS_TOTAL_BYTES, the finished runs kept longest are dropped first; only
then are the oldest frames of live runs given up (runs/log.py).
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from typing import Callable

from agent.config import Settings
from agent.errors import AgentError
from agent.run import Run
from runs.live import LiveRun
from runs.log import MemoryLog, SharedLog, Totals


def new_run_id() -> str:
    """128 random bits, hex: a run id cannot be guessed (a join needs nothing else but the token)."""
    return secrets.token_hex(16)


class Runs:
    def __init__(self, settings: Settings, shared: SharedLog | None = None) -> None:
        self.grace = settings.run_detached_grace_seconds
        self.retention = settings.run_retention_seconds
        self.log_max_bytes = settings.run_log_max_bytes
        self.shared = shared
        self.totals = Totals(settings.run_logs_total_bytes, self._drop_oldest_finished)
        self._joinable: dict[str, LiveRun] = {}
        self._finished: OrderedDict[str, asyncio.TimerHandle] = OrderedDict()  # oldest first
        self._active: set[LiveRun] = set()
        # Idempotency-Key -> (the request's fingerprint, its run's id); dropped with the run.
        self._keys: dict[str, tuple[str, str]] = {}
        self._key_of: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._active)

    def open(self, run: Run, run_id: str, *, joinable: bool, on_end: Callable[[LiveRun], None], key: tuple[str, str] | None = None) -> LiveRun:
        """A new run (not started). Joinable runs can be joined and outlive their first reader
        by the grace; the others (the buffered route, the lab) end when their one reader does."""

        def ended(live: LiveRun) -> None:
            self._active.discard(live)
            if joinable:
                self._finished[run_id] = asyncio.get_running_loop().call_later(self.retention, self._drop, run_id)
            on_end(live)

        shared = self.shared.writer(run_id) if joinable and self.shared is not None else None
        live = LiveRun(run, run_id, MemoryLog(self.log_max_bytes, self.totals), grace=self.grace if joinable else 0.0,
                        on_end=ended, shared=shared, keep_events=not joinable)
        self._active.add(live)
        if joinable:
            self._joinable[run_id] = live
            if key is not None:
                self._keys[key[0]] = (key[1], run_id)
                self._key_of[run_id] = key[0]
        return live

    def get(self, run_id: str) -> LiveRun | None:
        return self._joinable.get(run_id)

    def key(self, key: str, fingerprint: str) -> tuple[str | None, bool]:
        """(the run this Idempotency-Key started, or None; whether the request differs from that one's)."""
        entry = self._keys.get(key)
        if entry is None:
            return None, False
        return entry[1], entry[0] != fingerprint

    def stop_all(self, error: AgentError) -> None:
        for live in list(self._active):
            live.stop(error)

    async def wait_all(self) -> None:
        await asyncio.gather(*(live.wait() for live in list(self._active)), return_exceptions=True)

    def _drop(self, run_id: str) -> None:
        self._finished.pop(run_id, None)
        live = self._joinable.pop(run_id, None)
        if live is not None:
            live.log.release()
        key = self._key_of.pop(run_id, None)
        if key is not None:
            self._keys.pop(key, None)

    def _drop_oldest_finished(self) -> bool:
        if not self._finished:
            return False
        run_id, timer = next(iter(self._finished.items()))
        timer.cancel()
        self._drop(run_id)
        return True
