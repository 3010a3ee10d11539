"""The streaming lab: the same run, delivered through a deliberately broken path.

`POST /api/agent/scenario/stream?lab=<mode>` takes the same body, admits the same way and
iterates the same `Run.events()` (same model, same tokens) as the real stream; only the
delivery differs. Each mode re-creates one cause of "long pause, then a dump of text":

    blocking    the whole run is awaited, then the response (headers included) goes out at once
    accumulate  headers and `start` at once; the answer's text collected and sent as one `chat`
                frame at the end, followed by the other frames it held back and `done`
    buffer-4k   frames held until at least 4 KiB are waiting, then sent as one body message,
                like a proxy with response buffering on (nginx's default)
    gzip        `Content-Encoding: gzip` through `zlib.compressobj` with no flush per frame, as a
                compression middleware does: bytes leave only when deflate's buffers fill

A `Sink` per mode turns events into body bytes; `LabWriter` writes a run through it, as one
more reader of the run with web/stream.py's policy (disconnect, shutdown, send timeout). The
real path (web/stream.py's EventStreamWriter) does not know this module exists; app.py picks
this writer only when `lab` is in the query string and LAB_ENABLED is on.

docs/streaming-lab.md has each mode's measured timeline and the fix.
"""

from __future__ import annotations

import zlib
from typing import Callable
from urllib.parse import parse_qsl

from starlette.types import Receive, Scope, Send

from agent.events import Chat, Event, Start, encode
from web.errors import ApiError
from web.stream import STREAM_HEADERS, Entry

BUFFER_BYTES = 4096


class Sink:
    """One mode's delivery. `feed(event)` returns the bytes to send now (b"" for none);
    `finish()` the rest, sent as the last body message. `holds_headers`: the response
    itself (status and headers) waits until the run is over."""

    holds_headers = False
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def feed(self, event: Event) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        raise NotImplementedError


class Blocking(Sink):
    """Cause 1, a blocking call: nothing leaves until the whole answer is in."""

    holds_headers = True

    def __init__(self) -> None:
        self._frames: list[bytes] = []

    def feed(self, event: Event) -> bytes:
        self._frames.append(encode(event))
        return b""

    def finish(self) -> bytes:
        return b"".join(self._frames)


class Accumulate(Sink):
    """Cause 2, `text += delta` before sending: `start` at once, then one `chat` frame with the
    whole text, then the frames held back behind it (scenario_delta, scenario, error, done)."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._held: list[bytes] = []

    def feed(self, event: Event) -> bytes:
        if event.__class__ is Start:
            return encode(event)
        if event.__class__ is Chat:
            self._text.append(event.content)
        else:
            self._held.append(encode(event))
        return b""

    def finish(self) -> bytes:
        chat = encode(Chat("".join(self._text))) if self._text else b""
        return chat + b"".join(self._held)


class Buffer4k(Sink):
    """A buffering proxy: frames wait until at least BUFFER_BYTES are pending, then go as one write."""

    def __init__(self, size: int = BUFFER_BYTES) -> None:
        self.size = size
        self._pending: list[bytes] = []
        self._bytes = 0

    def feed(self, event: Event) -> bytes:
        frame = encode(event)
        self._pending.append(frame)
        self._bytes += len(frame)
        if self._bytes < self.size:
            return b""
        return self.finish()

    def finish(self) -> bytes:
        out = b"".join(self._pending)
        self._pending, self._bytes = [], 0
        return out


class Gzip(Sink):
    """A compression middleware: each frame goes into deflate with no Z_SYNC_FLUSH, so bytes
    leave only when `compress()` returns some (its buffers filled); `finish` flushes the rest."""

    headers = ((b"content-encoding", b"gzip"), (b"vary", b"accept-encoding"))

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(wbits=31)  # 31: gzip header and trailer

    def feed(self, event: Event) -> bytes:
        return self._deflate.compress(encode(event))

    def finish(self) -> bytes:
        return self._deflate.flush()


SINKS: dict[str, Callable[[], Sink]] = {"blocking": Blocking, "accumulate": Accumulate, "buffer-4k": Buffer4k, "gzip": Gzip}
MODES = tuple(SINKS)


def lab_mode(query_string: bytes) -> str | None:
    """The mode in the stream request's query string (`scope["query_string"]`); None when it
    has no `lab` parameter. `lab` is the route's one query parameter (docs/openapi.json), so,
    like an unknown body field, any other is a 422 (`unknown_query_parameter`, `field` names
    it). An unknown mode, an empty one or more than one is a 422 (`invalid_lab_mode`).

    The real stream's requests have no query string: for them this is one test of an empty
    bytes object (the query is parsed only when there is one)."""
    if not query_string:
        return None
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    for name, _ in pairs:
        if name != "lab":
            raise ApiError(422, "unknown_query_parameter", f"Unknown query parameter {name!r}: the only one is 'lab' ({', '.join(MODES)}).", field=name)
    values = [value for _, value in pairs]
    if not values:
        return None
    if len(values) == 1 and values[0] in SINKS:
        return values[0]
    raise ApiError(422, "invalid_lab_mode", f"'lab' must be one of: {', '.join(MODES)} (given: {', '.join(values)!r}).", field="lab")


class LabWriter:
    """A reader of the run (web/stream.py's ReaderResponse) that writes through `SINKS[mode]`.
    No heartbeat: a broken path would not send one."""

    heartbeat = False
    from_producer = False  # its deliveries wait on purpose: the run must not wait with them

    def __init__(self, mode: str) -> None:
        self.sink = SINKS[mode]()
        self.headers = [*STREAM_HEADERS, *self.sink.headers, (b"x-lab-mode", mode.encode())]
        self._started = False  # http.response.start sent

    async def _send(self, send: Send, body: bytes, more_body: bool) -> None:
        if not self._started:
            await send({"type": "http.response.start", "status": 200, "headers": self.headers})
            self._started = True
        if body or not more_body:
            await send({"type": "http.response.body", "body": body, "more_body": more_body})

    async def begin(self, send: Send) -> None:
        if not self.sink.holds_headers:
            await self._send(send, b"", more_body=True)

    async def write(self, send: Send, entry: Entry) -> None:
        event = entry[1]
        assert event is not None  # the lab reads only runs of this process
        body = self.sink.feed(event)
        if body:
            await self._send(send, body, more_body=True)

    async def end(self, send: Send) -> None:
        await self._send(send, self.sink.finish(), more_body=False)
