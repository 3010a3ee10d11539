"""Server-Sent Events from the upstream: bytes -> lines -> events.

Spec: https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

Decoding happens in two stages, like httpx-sse and openai-python:
  1. `LineDecoder`: bytes -> lines. Lines end in CRLF, LF or CR.
  2. `EventDecoder`: line -> event, dispatched on a blank line.
`EventDataDecoder` runs both and hands out each event's data, with one shortcut: the usual
network read of a model stream is one whole event of one data line (`data: <json>\n\n`),
whose data is known from the bytes alone when neither stage holds anything.
Lines are split on bytes before UTF-8 decoding. CR and LF bytes never occur inside a
multi-byte UTF-8 sequence, so a character split across two network reads is simply
decoded once its line is complete, and no incremental decoder is needed.

Both stages are bounded (MAX_LINE_BYTES, MAX_EVENT_BYTES: StreamTooLarge past them) and
linear in their input, so a hostile upstream costs at most a few MiB and no quadratic CPU.
"""

from __future__ import annotations

from typing import NamedTuple


class ServerSentEvent(NamedTuple):
    # A NamedTuple, not a frozen dataclass: one is built per upstream chunk, and a frozen
    # dataclass's __init__ costs several times more.
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


# Far beyond any real chunk (a few hundred bytes; a 16 KiB delta is a few times that), small
# enough that a hostile or broken upstream cannot grow this process without end.
MAX_LINE_BYTES = 1024 * 1024
MAX_EVENT_BYTES = 1024 * 1024


class StreamTooLarge(ValueError):
    """A line or an event passed its bound (MAX_LINE_BYTES, MAX_EVENT_BYTES)."""


class LineDecoder:
    """Bytes to lines; a CR at the end of one chunk may be the first half of a CRLF.

    Linear in the bytes fed: an unfinished line is kept as a list of parts and joined once,
    when its line end arrives (joining the buffer on every read would be quadratic in a long
    line). A line longer than `max_line` bytes raises StreamTooLarge.
    """

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self._parts: list[bytes] = []  # the unfinished line, CRs already turned into LFs
        self._size = 0
        self._max = max_line
        self._after_cr = False
        self._first = True

    def feed(self, chunk: bytes) -> list[str]:
        if not chunk:
            return []
        if self._after_cr:
            self._after_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]  # the LF of a CRLF whose CR ended the previous chunk
                if not chunk:
                    return []
        self._after_cr = chunk[-1:] == b"\r"
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        # Everything up to the last LF is complete lines: decode them in one go (an LF byte
        # never occurs inside a UTF-8 sequence) and keep the rest for the next chunk.
        end = chunk.rfind(b"\n") + 1
        if not end:
            self._parts.append(chunk)
            self._size += len(chunk)
            if self._size > self._max:
                raise StreamTooLarge("upstream line too long")
            return []
        if self._parts:
            self._parts.append(chunk[:end])
            data = b"".join(self._parts)
            self._parts, self._size = [], 0
        else:
            data = chunk if end == len(chunk) else chunk[:end]
        if end < len(chunk):
            rest = chunk[end:]
            self._parts.append(rest)
            self._size = len(rest)
            if self._size > self._max:
                raise StreamTooLarge("upstream line too long")
        text = data.decode("utf-8", "replace")
        if self._first:
            self._first = False
            if text[:1] == "\ufeff":  # the spec drops one leading BOM
                text = text[1:]
        lines = text.split("\n")
        lines.pop()  # the empty string after the last LF
        # Only a read of more than `max` bytes can hold a line that long: check then.
        if len(data) > self._max and max(map(len, lines)) > self._max:
            raise StreamTooLarge("upstream line too long")
        return lines

    @property
    def idle(self) -> bool:
        """Holding no part of a line, past the stream's start (where a BOM may be), after no CR."""
        return not self._parts and not self._first and not self._after_cr

    def flush(self) -> list[str]:
        """End of stream: an unterminated last line is still a line."""
        rest = b"".join(self._parts)
        self._parts, self._size = [], 0
        return [rest.decode("utf-8", "replace")] if rest else []


class EventDecoder:
    """Lines to events. Returns an event on the blank line that ends it, else None.

    An event whose data passes `max_event` characters (counting one per line for the
    joining newline) raises StreamTooLarge: `data:` lines without a blank line would
    otherwise accumulate without end.
    """

    def __init__(self, max_event: int = MAX_EVENT_BYTES) -> None:
        self._event = ""
        self._data: list[str] = []
        self._size = 0
        self._max = max_event
        self._id: str | None = None
        self._last_id: str | None = None
        self._retry: int | None = None

    @property
    def idle(self) -> bool:
        """Holding no field of an unfinished event (the last event id is kept across events)."""
        return not self._data and not self._event and self._retry is None

    def decode(self, line: str) -> ServerSentEvent | None:
        if not line:
            # Blank line: dispatch. The spec skips events with an empty data buffer.
            if not self._data:
                self._event, self._retry = "", None
                return None
            event = ServerSentEvent(self._event or "message", "\n".join(self._data), self._last_id, self._retry)
            self._event, self._data, self._retry, self._size = "", [], None, 0
            return event
        if line[0] == ":":
            return None  # a comment, such as a heartbeat
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]  # exactly one leading space is part of the syntax
        if name == "data":
            self._data.append(value)
            self._size += len(value) + 1
            if self._size > self._max:
                raise StreamTooLarge("upstream event too large")
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry":
            if value.isdigit():
                self._retry = int(value)
        # Any other field name is ignored, as the spec says.
        return None


class EventDataDecoder:
    """Bytes to the data of each complete event, the two stages above in order.

    The shortcut gives exactly what the stages would (tests/test_sse.py checks it against
    them on any chunking): when both are idle, a read that starts with `data: `, holds no CR
    and no LF but the two that end it, is one event whose data is the rest of its line.
    The bounds hold: a read that long could pass neither stage's limit.
    """

    def __init__(self, max_line: int = MAX_LINE_BYTES, max_event: int = MAX_EVENT_BYTES) -> None:
        self.lines = LineDecoder(max_line)
        self.events = EventDecoder(max_event)
        self._short = min(max_line, max_event)

    def feed(self, chunk: bytes) -> list[str]:
        if (chunk.startswith(b"data: ") and chunk.find(b"\n") == len(chunk) - 2 and chunk.endswith(b"\n\n")
                and b"\r" not in chunk and len(chunk) <= self._short and self.lines.idle and self.events.idle):
            return [chunk[6:-2].decode("utf-8", "replace")]
        out = []
        decode = self.events.decode
        for line in self.lines.feed(chunk):
            event = decode(line)
            if event is not None:
                out.append(event.data)
        return out
