"""Every event a run yields, its fields, and its frame bytes: the one home of the stream's vocabulary.

Like h11's `_events.py`, one frozen dataclass per event type, its fields documented once, in
its docstring. A run yields these objects;
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
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

# Compact and not ASCII-escaped: smaller frames. JSON escapes every control character,
# CR and LF included, so the encoded data is always a single SSE line.
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

# A comment line: keeps proxies from closing an idle stream; clients ignore it.
PING = b": ping\n\n"


@dataclass(slots=True, frozen=True)
class Event:
    """Base of every event: its fields are the JSON keys after `type`, in frame order."""

    type: ClassVar[str]
    # The field names, in frame order (filled in for each class below, from its dataclass fields).
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


@dataclass(slots=True, frozen=True)
class Start(Event):
    """First frame: which intent the request was routed to, and which model answers.

    Fields:
        request_id: the run's id (128 random bits, hex); frames' `id:` lines start with it.
        intent: explain, modify, create or chat.
        model: the model's name, as configured.
        provider: the backend ("openai-compatible", "offline").
    """

    type = "start"
    request_id: str
    intent: str
    model: str
    provider: str


@dataclass(slots=True, frozen=True)
class Reasoning(Event):
    """One thinking delta, as the model produced it.

    Fields:
        content: the thinking text ("" when withheld).
        withheld: with SEND_REASONING=false, true on the one frame that says the model is
            thinking (its text is not sent); left out otherwise.
    """

    type = "reasoning"
    optional = frozenset({"withheld"})
    content: str
    withheld: bool | None = None


@dataclass(slots=True, frozen=True)
class Chat(Event):
    """One delta of the answer's prose.

    Fields:
        content: the text.
        streaming: always true (front ends read it).
    """

    type = "chat"
    content: str
    streaming: bool = field(default=True, init=False)


@dataclass(slots=True, frozen=True)
class ScenarioDelta(Event):
    """Raw text inside the answer's fenced block (a scenario or a patch), as it streams.

    Fields:
        content: the text.
    """

    type = "scenario_delta"
    content: str


@dataclass(slots=True, frozen=True)
class ScenarioPatch(Event):
    """One JSON Patch operation, applied to the run's working copy the moment it was complete.
    A preview: the `scenario` frame replaces it; an `error` or `repair` drops it.

    Fields:
        op: the operation (RFC 6902), as the model wrote it.
        index: its position in the patch, from 0.
    """

    type = "scenario_patch"
    op: dict[str, Any]
    index: int


@dataclass(slots=True, frozen=True)
class Scenario(Event):
    """The validated result.

    Fields:
        scenario: the whole scenario.
        changes: what changed from the request's scenario, as JSON pointers.
    """

    type = "scenario"
    scenario: dict[str, Any]
    changes: list[dict[str, Any]]


@dataclass(slots=True, frozen=True)
class Repair(Event):
    """The model's block did not apply; it is asked once more. Drop any preview.

    Fields:
        attempt: the repair round, from 1.
        reason: why the block did not apply.
    """

    type = "repair"
    attempt: int
    reason: str


@dataclass(slots=True, frozen=True)
class Error(Event):
    """Why the run failed (agent/errors.py makes every code's event).

    Fields:
        code: what happened, for programs.
        message: what happened and what to do, for the person using the page.
        retryable: whether the same request may succeed if sent again.
        retry_after: seconds to wait first, when known; left out otherwise.
        detail: the technical reason, for a developer reading the frames; left out when None.
    """

    type = "error"
    optional = frozenset({"retry_after", "detail"})
    code: str
    message: str
    retryable: bool
    retry_after: float | None = None
    detail: str | None = None


@dataclass(slots=True, frozen=True)
class Done(Event):
    """Always the last frame.

    Fields:
        finish_reason: stop, length, content_filter or error.
        usage: the server's token counts, or counted ones marked `"estimated": true`.
        timings: ttft_ms, first_reasoning_ms, total_ms.
        repairs: repair rounds used.
    """

    type = "done"
    finish_reason: str
    usage: dict[str, Any] | None
    timings: dict[str, Any]
    repairs: int = 0


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls for cls in (Start, Reasoning, Chat, ScenarioDelta, ScenarioPatch, Scenario, Repair, Error, Done)
}
for _cls in EVENT_TYPES.values():
    _cls.fields = tuple(f.name for f in fields(_cls))

# The frame of every token, filled in: the bytes the generic encoding gives for a Chat
# event, without building its dict and running the encoder over it (tests/test_sse.py
# holds the two equal on any text).
_CHAT_FRAME = b'event: chat\ndata: {"type":"chat","content":%s,"streaming":true}\n\n'


def encode(event: Event) -> bytes:
    """One frame: `event: <type>\\ndata: <one-line JSON>\\n\\n`. The JSON carries the same type."""
    if isinstance(event, Chat):
        return _CHAT_FRAME % _dumps(event.content).encode()
    return encode_generic(event)


def encode_generic(event: Event) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (event.type.encode(), _dumps(event.to_dict()).encode())
