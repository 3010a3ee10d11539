"""A run's frames: each event's SSE frame with an `id:` line naming the run and its sequence.

    retry: 2000\\n            (the first frame only: how long a browser waits to reconnect)
    id: <run id>-<seq>\\n     (seq counts the run's events from 1)
    event: <type>\\n
    data: <one-line JSON>\\n
    \\n

A reader that lost its connection sends the last id it saw as `Last-Event-ID` (EventSource
does so by itself) and receives the frames after it, byte for byte the frames an
uninterrupted reader got. Heartbeat comments (`: ping`) carry no id: they are not events.
https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
"""

from __future__ import annotations

from agent.events import Event, encode

RETRY_MS = 2000
_FIRST = b"retry: %d\nid: %s-%d\n"
_ID = b"id: %s-%d\n"


def frame(run_id: str, seq: int, event: Event, first: bool = False) -> bytes:
    """The whole frame of the run's `seq`-th event (`first`: it also carries the retry hint)."""
    if first:
        return _FIRST % (RETRY_MS, run_id.encode(), seq) + encode(event)
    return _ID % (run_id.encode(), seq) + encode(event)


def sequence_after(last_event_id: str | None, after: str | None) -> tuple[str | None, int] | None:
    """Where a join starts: (the run named by `Last-Event-ID`, or None; the sequence number
    after which to read) from `Last-Event-ID: <run id>-<seq>` or `?after=<seq>`; (None, 0),
    from the start, when neither is given. None when either is malformed (both are checked;
    Last-Event-ID wins)."""
    if after is not None and _count(after) is None:
        return None
    if last_event_id is not None:  # present but empty is malformed: EventSource never sends it so
        # Taken as sent: the HTTP layer has already dropped the spaces and tabs around a header's
        # value, and str.strip() would also drop what HTTP keeps (U+00A0, U+0085).
        name, sep, seq = last_event_id.rpartition("-")
        count = _count(seq)
        if not sep or not name or count is None:
            return None
        return name, count
    if after is not None:
        count = _count(after)
        return None if count is None else (None, count)
    return None, 0


def _count(text: str) -> int | None:
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        return None
    return int(text)
