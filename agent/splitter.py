"""Split a modify/create answer into prose (`chat`) and fenced blocks (`scenario_delta`).

The model writes a short explanation, then a fenced block:

    Renamed the exercise.
    ```patch
    [{"op": "replace", "path": "/title", "value": "Blue Harbor"}]
    ```

Fences:
- An opening fence is a run of three or more backticks, then an info string up to the
  end of the line. Its first word, lower-cased, is `Block.info`: "scenario", "json",
  "patch", "" for a bare fence, or any other word. The info line is not content.
  A run whose info line holds a backtick (inline code such as ```x```), or runs past
  MAX_INFO characters, is not a fence: that whole line stays prose.
- A closing fence is a run of three or more backticks at the start of a line (only
  spaces before it), or anywhere outside a JSON string. A backtick run inside a JSON
  string ("`code` ```x```") therefore does not end a block; a JSON string cannot hold
  a raw newline, so a fence on its own line always does, JSON or not.
- Every block is recorded, in order, in `Splitter.blocks`; prose continues after each
  one. A block whose closing fence never came is recorded (closed=False) too.
  `Splitter.current` is the open block while inside one.

Deltas arrive in arbitrary pieces, so a fence may be split across them ("``",
"`scen", "ario\\n{"). Text is passed on the moment it cannot be part of a fence; only
a suffix that could still grow into one is held back until the next delta decides it
(and an opening fence's info line, which is never passed on). The output therefore
never depends on how the text was chunked (tests/test_splitter.py checks that with
hypothesis).

Bounds: a block keeps at most MAX_BLOCK_BYTES (64 KiB, UTF-8) of text. The piece
that passes the bound sets `Block.overflow`; from then on the block's text is
neither kept nor emitted (the answer is refused anyway, so a runaway block costs
neither memory nor frames). Fence tracking goes on, so prose after it still flows.
At most MAX_BLOCKS blocks are recorded in `Splitter.blocks`; later ones are split out
the same way (their text still comes as SCENARIO pieces) but not kept, so a delta of
"```\n```\n" repeated does not pile up blocks. Work is linear in the text, however
it is chunked and however many fences it holds: a backtick run streamed a tick at a
time is counted, never re-read.

Pieces are `Piece`s: 2-tuples (kind, text), kind CHAT or SCENARIO, that also carry
`.block` (the Block a SCENARIO piece belongs to; None for CHAT). One `feed` returns
at most one piece per stretch of prose or block text: adjacent pieces of one kind and
block are joined.
"""

from __future__ import annotations

import re

CHAT, SCENARIO = "chat", "scenario_delta"
OPENERS = ("```scenario", "```json", "```patch", "```")  # documentation: any ``` run opens
FENCE = "```"
MAX_INFO = 128
MAX_BLOCK_BYTES = 64 * 1024
MAX_BLOCKS = 32

_PROSE, _RUN, _INFO, _CODELINE, _BLOCK = "prose", "run", "info", "codeline", "block"
# Inside a block: characters that change the string/line state or may start a fence.
_BLOCK_SPECIAL = re.compile(r'["\\`\n]')
_TICKS = re.compile("`*")


class Block:
    """One fenced block: `info` (first word of the info string, lower-case), `text`
    (its content, without the fences), `closed` (its closing fence came), `overflow`
    (its text passed MAX_BLOCK_BYTES and was cut there)."""

    __slots__ = ("info", "closed", "overflow", "size", "_parts")

    def __init__(self, info: str, text: str = "", closed: bool = False, overflow: bool = False) -> None:
        self.info = info
        self.closed = closed
        self.overflow = overflow
        self.size = len(text.encode("utf-8", "surrogatepass"))
        self._parts = [text] if text else []

    @property
    def text(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def _take(self, text: str) -> str:
        """Keep text within the bound; returns the part kept."""
        if self.overflow:
            return ""
        size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        if self.size + size > MAX_BLOCK_BYTES:
            self.overflow = True
            return ""
        self.size += size
        self._parts.append(text)
        return text

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Block):
            return NotImplemented
        return (self.info, self.text, self.closed, self.overflow) == (other.info, other.text, other.closed, other.overflow)

    def __repr__(self) -> str:
        return f"Block(info={self.info!r}, text={self.text!r}, closed={self.closed}, overflow={self.overflow})"


class Piece(tuple):
    """(kind, text), with `.block`: the Block a SCENARIO piece's text belongs to."""

    block: Block | None

    def __new__(cls, kind: str, text: str, block: Block | None = None) -> "Piece":
        piece = super().__new__(cls, (kind, text))
        piece.block = block
        return piece


def _run_end(text: str, start: int) -> int:
    """Where the run of backticks at `start` ends (`start` itself when there is none)."""
    match = _TICKS.match(text, start)  # "`*" always matches
    return match.end() if match else start


class _Out:
    """The pieces of one `feed` or `flush`, adjacent texts of the same kind and block joined
    as they come (a delta full of fences would otherwise give one piece, and one frame, per
    fence)."""

    __slots__ = ("pieces", "kind", "block", "texts")

    def __init__(self) -> None:
        self.pieces: list[Piece] = []
        self.kind = ""
        self.block: Block | None = None
        self.texts: list[str] = []

    def add(self, kind: str, text: str, block: Block | None = None) -> None:
        if kind != self.kind or block is not self.block:
            self.done()
            self.kind, self.block = kind, block
        self.texts.append(text)

    def done(self) -> list[Piece]:
        if self.texts:
            self.pieces.append(Piece(self.kind, "".join(self.texts), self.block))
            self.texts = []
        return self.pieces


class Splitter:
    def __init__(self) -> None:
        self._state = _PROSE
        # Held text, re-read at the front of the next delta: at most two backticks in prose,
        # or an opening fence's info line (at most MAX_INFO characters).
        self._pending = ""
        # A backtick run that reached the end of the text so far, held as a count (in the
        # opening run, or inside a block), and the opening run's length while its info line
        # is read. Counts, not text: a run streamed a tick at a time is never re-read.
        self._ticks = 0
        self._fence = 0
        self.blocks: list[Block] = []
        self.current: Block | None = None
        # Inside a block: in a JSON string, after a backslash in one, at a line's start.
        self._in_string = False
        self._escape = False
        self._line_start = True

    # -- compatibility with the one-block splitter ---------------------------------

    @property
    def found_block(self) -> bool:
        return bool(self.blocks)

    @property
    def block_closed(self) -> bool:
        return bool(self.blocks) and self.blocks[0].closed

    @property
    def scenario_text(self) -> str:
        """The first block's text (use agent.scenario.pick_block to choose among blocks)."""
        return self.blocks[0].text if self.blocks else ""

    # -- feeding -------------------------------------------------------------------

    def feed(self, delta: str) -> list[Piece]:
        """Route one delta; returns pieces, in order, possibly none.

        Each state reads from a position and returns the next one: the text is never
        sliced into a new remainder per step, so a delta costs time linear in its length
        however many fences it holds."""
        out = _Out()
        text = self._pending + delta if self._pending else delta
        self._pending = ""
        position, end = 0, len(text)
        while position < end:
            state = self._state
            if state == _PROSE:
                position = self._prose(text, position, out)
            elif state == _BLOCK:
                position = self._block(text, position, out)
            elif state == _RUN:
                position = self._run(text, position)
            elif state == _INFO:
                position = self._info(text, position, out)
            else:
                position = self._codeline(text, position, out)
        return out.done()

    def flush(self) -> list[Piece]:
        """End of the answer: whatever was held back is what it looked like."""
        rest, self._pending = self._pending, ""
        out = _Out()
        state = self._state
        if state in (_PROSE, _CODELINE):
            if rest:
                out.add(CHAT, rest)
        elif state == _RUN:
            # An opening fence with no line after it: nothing was inside; it was prose.
            out.add(CHAT, FENCE[0] * self._ticks)
        elif state == _INFO:
            out.add(CHAT, FENCE[0] * self._fence + rest)
        elif state == _BLOCK:
            assert self.current is not None
            # Only a backtick run is ever held inside a block: the answer's last line.
            if self._ticks >= 3 and (self._line_start or not self._in_string):
                self.current.closed = True
            elif self._ticks:
                self._emit(FENCE[0] * self._ticks, out)
            self.current = None
        self._state = _PROSE
        self._ticks = self._fence = 0
        return out.done()

    # -- states: each reads text from `position` and returns where it stopped -------

    def _prose(self, text: str, position: int, out: _Out) -> int:
        index = text.find(FENCE, position)
        if index < 0:
            # Hold a trailing "`" or "``": it could start a fence in the next delta.
            end = len(text)
            hold = 0
            while hold < 2 and end - hold > position and text[end - hold - 1] == "`":
                hold += 1
            if end - hold > position:
                out.add(CHAT, text[position: end - hold])
            self._pending = text[end - hold:] if hold else ""
            return end
        if index > position:
            out.add(CHAT, text[position:index])
        self._state = _RUN
        self._ticks = 0
        return index

    def _run(self, text: str, position: int) -> int:
        # An opening run of >= 3 backticks (counted in _ticks) continues at position.
        end = _run_end(text, position)
        self._ticks += end - position
        if end == len(text):
            return end  # it may still grow
        self._fence, self._ticks = self._ticks, 0
        self._state = _INFO
        return end

    def _info(self, text: str, position: int, out: _Out) -> int:
        # The info line starts at position (the part read so far was held in _pending and
        # is re-read at the front of the text); it is at most MAX_INFO characters.
        window = text[position: position + MAX_INFO]
        newline = window.find("\n")
        tick = window.find("`")
        if tick >= 0 and (newline < 0 or tick < newline):
            return self._not_a_fence(text, position, position + tick, out)
        if newline >= 0:
            info = window[:newline].strip()
            self._open(info.split()[0].lower() if info else "")
            return position + newline + 1
        if len(window) >= MAX_INFO:
            return self._not_a_fence(text, position, position + MAX_INFO, out)
        self._pending = window
        return len(text)

    def _not_a_fence(self, text: str, position: int, upto: int, out: _Out) -> int:
        out.add(CHAT, FENCE[0] * self._fence + text[position:upto])
        self._fence = 0
        self._state = _CODELINE
        return upto

    def _codeline(self, text: str, position: int, out: _Out) -> int:
        # The rest of a line that held inline code: prose, no fences.
        newline = text.find("\n", position)
        if newline < 0:
            out.add(CHAT, text[position:])
            return len(text)
        out.add(CHAT, text[position: newline + 1])
        self._state = _PROSE
        return newline + 1

    def _open(self, info: str) -> None:
        block = Block(info)
        if len(self.blocks) < MAX_BLOCKS:
            self.blocks.append(block)
        self.current = block
        self._fence = 0
        self._state = _BLOCK
        self._in_string = self._escape = False
        self._line_start = True

    def _close(self) -> None:
        assert self.current is not None
        # Prose resumes after the run (CommonMark would want the line empty).
        self.current.closed = True
        self.current = None
        self._state = _PROSE

    def _closes(self, length: int) -> bool:
        return length >= 3 and (self._line_start or not self._in_string)

    def _block(self, text: str, position: int, out: _Out) -> int:
        start = position  # text[start:position] is content not yet emitted
        if self._ticks:
            # A run held at the end of the last delta goes on here, or ends here.
            end = _run_end(text, position)
            self._ticks += end - position
            if end == len(text):
                return end
            length, self._ticks = self._ticks, 0
            if self._closes(length):
                self._close()
                return end
            self._line_start = False
            self._emit(FENCE[0] * (length - (end - position)), out)  # the ticks held before
            position = end
        elif self._escape:
            self._escape = False
            if text[position] != "\n":
                position += 1
        while True:
            match = _BLOCK_SPECIAL.search(text, position)
            stop = match.start() if match else len(text)
            if self._line_start and position < stop and text[position:stop].strip(" \t\r"):
                self._line_start = False
            if match is None:
                self._emit(text[start:], out)
                return len(text)
            char = match.group()
            if char == "\n":
                # A raw newline cannot be inside a JSON string: whatever came before, a
                # new line starts outside one (this keeps non-JSON blocks closable).
                self._in_string = False
                self._line_start = True
                position = stop + 1
            elif char == '"':
                self._in_string = not self._in_string
                self._line_start = False
                position = stop + 1
            elif char == "\\":
                self._line_start = False
                if not self._in_string:
                    position = stop + 1
                elif stop + 1 == len(text):
                    self._escape = True
                    self._emit(text[start:], out)
                    return len(text)
                elif text[stop + 1] == "\n":
                    position = stop + 1
                else:
                    position = stop + 2
            else:
                end = _run_end(text, stop)
                if end == len(text):
                    # A run at the end may grow: hold its length (it changes no state).
                    self._emit(text[start:stop], out)
                    self._ticks = end - stop
                    return end
                if self._closes(end - stop):
                    self._emit(text[start:stop], out)
                    self._close()
                    return end
                self._line_start = False
                position = end

    def _emit(self, text: str, out: _Out) -> None:
        if not text:
            return
        block = self.current
        assert block is not None
        kept = block._take(text)
        if kept:
            out.add(SCENARIO, kept, block)
