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

Bound: a block keeps at most MAX_BLOCK_BYTES (64 KiB, UTF-8) of text. The piece
that passes the bound sets `Block.overflow`; from then on the block's text is
neither kept nor emitted (the answer is refused anyway, so a runaway block costs
neither memory nor frames). Fence tracking goes on, so prose after it still flows.

Pieces are `Piece`s: 2-tuples (kind, text), kind CHAT or SCENARIO, that also carry
`.block` (the Block a SCENARIO piece belongs to; None for CHAT).
"""

from __future__ import annotations

import re

CHAT, SCENARIO = "chat", "scenario_delta"
OPENERS = ("```scenario", "```json", "```patch", "```")  # documentation: any ``` run opens
FENCE = "```"
MAX_INFO = 128
MAX_BLOCK_BYTES = 64 * 1024

_PROSE, _RUN, _INFO, _CODELINE, _BLOCK = "prose", "run", "info", "codeline", "block"
# Inside a block: characters that change the string/line state or may start a fence.
_BLOCK_SPECIAL = re.compile(r'["\\`\n]')


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


def _run_length(text: str, start: int) -> int:
    end = start
    while end < len(text) and text[end] == "`":
        end += 1
    return end - start


def _trailing_ticks(text: str) -> int:
    return len(text) - len(text.rstrip("`"))


class Splitter:
    def __init__(self) -> None:
        self._state = _PROSE
        self._pending = ""  # held text: a possible fence, or an opening fence's info line
        self._fence = ""  # the opening run while its info line is read
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
        """Route one delta; returns pieces, in order, possibly none."""
        out: list[Piece] = []
        text = self._pending + delta
        self._pending = ""
        while text:
            state = self._state
            if state == _PROSE:
                text = self._prose(text, out)
            elif state == _BLOCK:
                text = self._block(text, out)
            elif state == _RUN:
                text = self._run(text, out)
            elif state == _INFO:
                text = self._info(text, out)
            else:
                text = self._codeline(text, out)
        return out

    def flush(self) -> list[Piece]:
        """End of the answer: whatever was held back is what it looked like."""
        rest, self._pending = self._pending, ""
        out: list[Piece] = []
        state = self._state
        if state in (_PROSE, _CODELINE):
            if rest:
                out.append(Piece(CHAT, rest))
        elif state in (_RUN, _INFO):
            # An opening fence with no line after it: nothing was inside; it was prose.
            text = self._fence + rest
            if text:
                out.append(Piece(CHAT, text))
        elif state == _BLOCK:
            assert self.current is not None
            # Only a backtick run is ever held inside a block: the answer's last line.
            if len(rest) >= 3 and (self._line_start or not self._in_string):
                self.current.closed = True
            elif rest:
                self._emit(rest, out)
            self.current = None
        self._state = _PROSE
        self._fence = ""
        return out

    # -- states --------------------------------------------------------------------

    def _prose(self, text: str, out: list[Piece]) -> str:
        index = text.find(FENCE)
        if index < 0:
            hold = min(_trailing_ticks(text), 2)
            if hold < len(text):
                out.append(Piece(CHAT, text[: len(text) - hold]))
            self._pending = text[len(text) - hold:] if hold else ""
            return ""
        if index:
            out.append(Piece(CHAT, text[:index]))
        self._state = _RUN
        return text[index:]

    def _run(self, text: str, out: list[Piece]) -> str:
        # text starts with a run of >= 3 backticks; it may still grow.
        length = _run_length(text, 0)
        if length == len(text):
            self._pending = text
            return ""
        self._fence = text[:length]
        self._state = _INFO
        return text[length:]

    def _info(self, text: str, out: list[Piece]) -> str:
        # self._pending holds the info read so far (re-fed at the front of text).
        # The info read so far is held and re-fed whole, so text starts at the info's start.
        room = MAX_INFO
        window = text[:room]
        newline = window.find("\n")
        tick = window.find("`")
        if tick >= 0 and (newline < 0 or tick < newline):
            return self._not_a_fence(text, tick, out)
        if newline >= 0:
            info = text[:newline].strip()
            self._open(info.split()[0].lower() if info else "")
            return text[newline + 1:]
        if len(text) >= room:
            return self._not_a_fence(text, room, out)
        self._pending = text
        return ""

    def _not_a_fence(self, text: str, upto: int, out: list[Piece]) -> str:
        out.append(Piece(CHAT, self._fence + text[:upto]))
        self._fence = ""
        self._state = _CODELINE
        return text[upto:]

    def _codeline(self, text: str, out: list[Piece]) -> str:
        # The rest of a line that held inline code: prose, no fences.
        newline = text.find("\n")
        if newline < 0:
            out.append(Piece(CHAT, text))
            return ""
        out.append(Piece(CHAT, text[: newline + 1]))
        self._state = _PROSE
        return text[newline + 1:]

    def _open(self, info: str) -> None:
        block = Block(info)
        self.blocks.append(block)
        self.current = block
        self._fence = ""
        self._state = _BLOCK
        self._in_string = self._escape = False
        self._line_start = True

    def _block(self, text: str, out: list[Piece]) -> str:
        start = 0  # text[start:position] is content not yet emitted
        position = 0
        if self._escape:
            self._escape = False
            if text[0] != "\n":
                position = 1
        while True:
            match = _BLOCK_SPECIAL.search(text, position)
            stop = match.start() if match else len(text)
            if self._line_start and position < stop and text[position:stop].strip(" \t\r"):
                self._line_start = False
            if match is None:
                self._emit(text[start:], out)
                return ""
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
                    return ""
                elif text[stop + 1] == "\n":
                    position = stop + 1
                else:
                    position = stop + 2
            else:
                length = _run_length(text, stop)
                if stop + length == len(text):
                    # A run at the end may grow: hold it (it changes no state).
                    self._emit(text[start:stop], out)
                    self._pending = text[stop:]
                    return ""
                if length >= 3 and (self._line_start or not self._in_string):
                    self._emit(text[start:stop], out)
                    assert self.current is not None
                    # Prose resumes after the run (CommonMark would want the line empty).
                    self.current.closed = True
                    self.current = None
                    self._state = _PROSE
                    return text[stop + length:]
                self._line_start = False
                position = stop + length

    def _emit(self, text: str, out: list[Piece]) -> None:
        if not text:
            return
        block = self.current
        assert block is not None
        kept = block._take(text)
        if kept:
            out.append(Piece(SCENARIO, kept, block))
