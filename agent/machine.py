"""The agent's state machine: every state and transition in one table, one lookup.

    received --route--> routed --open--> streaming --finish--> finalizing --complete--> done
                                              ^                     |
                                              +--open-- repairing <-+ repair  (the block did not apply:
                                                                                 ask the model once more)
        any non-terminal state --fail--> failed      (upstream error, invalid scenario, shutdown)
        any non-terminal state --cancel--> cancelled (the client went away)

Per-token work never touches the machine: tokens flow inside `streaming`, so the
trace stays a handful of entries however long the answer is.
"""

from __future__ import annotations

import time

RECEIVED, ROUTED, STREAMING, FINALIZING, REPAIRING = "received", "routed", "streaming", "finalizing", "repairing"
DONE, FAILED, CANCELLED = "done", "failed", "cancelled"
TERMINAL = frozenset({DONE, FAILED, CANCELLED})

TRANSITIONS: dict[tuple[str, str], str] = {
    (RECEIVED, "route"): ROUTED,
    (ROUTED, "open"): STREAMING,
    (STREAMING, "finish"): FINALIZING,
    (FINALIZING, "complete"): DONE,
    (FINALIZING, "repair"): REPAIRING,
    (REPAIRING, "open"): STREAMING,
}
for _state in (RECEIVED, ROUTED, STREAMING, FINALIZING, REPAIRING):
    TRANSITIONS[(_state, "fail")] = FAILED
    TRANSITIONS[(_state, "cancel")] = CANCELLED
del _state


class IllegalTransition(Exception):
    """An event that the current state has no transition for. The machine is unchanged."""

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"illegal event {event!r} in state {state!r}")
        self.state = state
        self.event = event


class Machine:
    """One request's state, plus a trace of (seconds since start, event, from, to)."""

    def __init__(self, clock=time.perf_counter) -> None:
        self.state = RECEIVED
        self._clock = clock
        self._t0 = clock()
        self.trace: list[tuple[float, str, str, str]] = []

    def fire(self, event: str) -> str:
        try:
            new_state = TRANSITIONS[(self.state, event)]
        except KeyError:
            raise IllegalTransition(self.state, event) from None
        self.trace.append((round(self._clock() - self._t0, 6), event, self.state, new_state))
        self.state = new_state
        return new_state

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL
