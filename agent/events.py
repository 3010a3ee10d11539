"""Every event a run yields, its fields, and its frame bytes: the one home of the stream's vocabulary.

Like h11's `_events.py`, one small class per event type. A run yields these objects;
`web/stream.py` sends `encode(event)` as one Server-Sent Events frame each, and the
buffered route drains the same objects into one JSON object. The JSON of a frame is
`event.to_dict()`, which always carries `type`.

Order (agent/run.py):

    start -> (reasoning | chat | scenario_delta | scenario_patch | repair)* -> [scenario] -> [error] -> done

`docs/openapi.json` and the page's reducer (`static/reducer.js`) are checked against
`EVENT_TYPES` in tests/test_events.py: a new event type starts here.

Frames: https://html.spec.whatwg.org/multipage/server-sent-events.html
    event: <type>\\n
    data: <one-line JSON>\\n
    \\n
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

# Compact and not ASCII-escaped: smaller frames. JSON escapes every control character,
# CR and LF included, so the encoded data is always a single SSE line.
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

# A comment line: keeps proxies from closing an idle stream; clients ignore it.
PING = b": ping\n\n"


class Event:
    """Base of every event. `fields` lists the JSON keys after `type`, in frame order."""

    __slots__ = ()
    type: ClassVar[str]
    fields: ClassVar[tuple[str, ...]] = ()
    # Fields left out of the JSON when they are None.
    optional: ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        for name in self.fields:
            value = getattr(self, name)
            if value is None and name in self.optional:
                continue
            out[name] = value
        return out

    def __eq__(self, other: object) -> bool:
        return other.__class__ is self.__class__ and other.to_dict() == self.to_dict()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self.fields)})"


class Start(Event):
    """First frame: which intent the request was routed to, and which model answers."""

    __slots__ = ("request_id", "intent", "model", "provider")
    type = "start"
    fields = ("request_id", "intent", "model", "provider")

    def __init__(self, request_id: str, intent: str, model: str, provider: str) -> None:
        self.request_id, self.intent, self.model, self.provider = request_id, intent, model, provider


class Reasoning(Event):
    """One thinking delta, as the model produced it. With SEND_REASONING=false the text is
    withheld: one frame with `content: ""` and `withheld: true` says the model is thinking."""

    __slots__ = ("content", "withheld")
    type = "reasoning"
    fields = ("content", "withheld")
    optional = frozenset({"withheld"})

    def __init__(self, content: str, withheld: bool | None = None) -> None:
        self.content, self.withheld = content, withheld


class Chat(Event):
    """One delta of the answer's prose. `streaming` is always true (front ends read it)."""

    __slots__ = ("content",)
    type = "chat"
    fields = ("content", "streaming")
    streaming = True

    def __init__(self, content: str) -> None:
        self.content = content


class ScenarioDelta(Event):
    """Raw text inside the answer's fenced block (a scenario or a patch), as it streams."""

    __slots__ = ("content",)
    type = "scenario_delta"
    fields = ("content",)

    def __init__(self, content: str) -> None:
        self.content = content


class ScenarioPatch(Event):
    """One JSON Patch operation (RFC 6902), applied to the run's working copy the moment it
    was complete. A preview: the `scenario` frame replaces it; an `error` or `repair` drops it."""

    __slots__ = ("op", "index")
    type = "scenario_patch"
    fields = ("op", "index")

    def __init__(self, op: dict[str, Any], index: int) -> None:
        self.op, self.index = op, index


class Scenario(Event):
    """The validated result, and what changed from the request's scenario (JSON pointers)."""

    __slots__ = ("scenario", "changes")
    type = "scenario"
    fields = ("scenario", "changes")

    def __init__(self, scenario: dict[str, Any], changes: list[dict[str, Any]]) -> None:
        self.scenario, self.changes = scenario, changes


class Repair(Event):
    """The model's block did not apply; it is asked once more. Drop any preview."""

    __slots__ = ("attempt", "reason")
    type = "repair"
    fields = ("attempt", "reason")

    def __init__(self, attempt: int, reason: str) -> None:
        self.attempt, self.reason = attempt, reason


class Error(Event):
    """Why the run failed, for the person using the page (agent/errors.py has every code)."""

    __slots__ = ("code", "message", "retryable", "retry_after")
    type = "error"
    fields = ("code", "message", "retryable", "retry_after")
    optional = frozenset({"retry_after"})

    def __init__(self, code: str, message: str, retryable: bool, retry_after: float | None = None) -> None:
        self.code, self.message, self.retryable, self.retry_after = code, message, retryable, retry_after


class Done(Event):
    """Always the last frame. `finish_reason`: stop, length, content_filter or error.
    `usage` is the server's token counts, or counted ones marked `"estimated": true`.
    `timings`: ttft_ms, first_reasoning_ms, total_ms. `repairs`: repair rounds used."""

    __slots__ = ("finish_reason", "usage", "timings", "repairs")
    type = "done"
    fields = ("finish_reason", "usage", "timings", "repairs")

    def __init__(self, finish_reason: str, usage: dict[str, Any] | None, timings: dict[str, Any], repairs: int = 0) -> None:
        self.finish_reason, self.usage, self.timings, self.repairs = finish_reason, usage, timings, repairs


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls for cls in (Start, Reasoning, Chat, ScenarioDelta, ScenarioPatch, Scenario, Repair, Error, Done)
}

# The frame of every token, filled in: the bytes the generic encoding gives for a Chat
# event, without building its dict and running the encoder over it (tests/test_events.py
# holds the two equal).
_CHAT_FRAME = b'event: chat\ndata: {"type":"chat","content":%s,"streaming":true}\n\n'


def encode(event: Event) -> bytes:
    """One frame: `event: <type>\\ndata: <one-line JSON>\\n\\n`. The JSON carries the same type."""
    if event.__class__ is Chat:
        return _CHAT_FRAME % _dumps(event.content).encode()  # type: ignore[attr-defined]
    return encode_generic(event)


def encode_generic(event: Event) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (event.type.encode(), _dumps(event.to_dict()).encode())
