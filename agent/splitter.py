"""Split a modify/create answer into prose (`chat`) and the fenced scenario (`scenario_delta`).

The model writes a short explanation, then the scenario in a fenced block:

    Renamed the exercise.
    ```scenario
    {"title": ...}
    ```

Deltas arrive in arbitrary pieces, so a fence marker may be split across them
("``", "`scen", "ario\\n{"). Text is passed on the moment it cannot be part of a
marker; only a suffix that could still grow into one is held back until the next
delta decides it. The output therefore never depends on how the text was chunked
(tests/test_splitter.py checks that with hypothesis).

Only the first block is the scenario; anything after its closing fence is prose.
```json is accepted as an opening fence as well: models often write it.
"""

from __future__ import annotations

CHAT, SCENARIO = "chat", "scenario_delta"
OPENERS = ("```scenario", "```json")
CLOSER = "```"

_PROSE, _INFO, _BLOCK, _AFTER = "prose", "info", "block", "after"


def _held_suffix(text: str, markers: tuple[str, ...]) -> int:
    """Length of the longest suffix of text that is a proper prefix of a marker."""
    longest = max(len(m) for m in markers) - 1
    for size in range(min(longest, len(text)), 0, -1):
        tail = text[-size:]
        if any(m.startswith(tail) for m in markers):
            return size
    return 0


class Splitter:
    def __init__(self) -> None:
        self._state = _PROSE
        self._pending = ""
        self.block: list[str] = []  # the scenario text, kept for parsing at the end
        self.found_block = False
        self.block_closed = False

    def feed(self, delta: str) -> list[tuple[str, str]]:
        """Route one delta; returns (event type, text) pieces, in order, possibly none."""
        out: list[tuple[str, str]] = []
        text = self._pending + delta
        self._pending = ""
        while text:
            if self._state == _AFTER:
                out.append((CHAT, text))
                break
            if self._state == _PROSE:
                text = self._prose(text, out)
            elif self._state == _INFO:
                text = self._info(text)
            else:
                text = self._block(text, out)
        return out

    def flush(self) -> list[tuple[str, str]]:
        """End of the answer: whatever was held back is what it looked like."""
        rest, self._pending = self._pending, ""
        if not rest or self._state == _INFO:
            return []
        if self._state == _BLOCK:
            return self._emit_block(rest)
        return [(CHAT, rest)]

    def _prose(self, text: str, out: list[tuple[str, str]]) -> str:
        hits = [(i, m) for m in OPENERS if (i := text.find(m)) >= 0]
        if hits:
            index, marker = min(hits)
            if index:
                out.append((CHAT, text[:index]))
            self._state = _INFO
            self.found_block = True
            return text[index + len(marker):]
        hold = _held_suffix(text, OPENERS)
        if hold < len(text):
            out.append((CHAT, text[: len(text) - hold]))
        self._pending = text[len(text) - hold:] if hold else ""
        return ""

    def _info(self, text: str) -> str:
        # The rest of the opening fence's line (e.g. a space or "json") is not content.
        newline = text.find("\n")
        if newline < 0:
            return ""
        self._state = _BLOCK
        return text[newline + 1:]

    def _block(self, text: str, out: list[tuple[str, str]]) -> str:
        index = text.find(CLOSER)
        if index >= 0:
            if index:
                out.extend(self._emit_block(text[:index]))
            self._state = _AFTER
            self.block_closed = True
            return text[index + len(CLOSER):]
        hold = _held_suffix(text, (CLOSER,))
        if hold < len(text):
            out.extend(self._emit_block(text[: len(text) - hold]))
        self._pending = text[len(text) - hold:] if hold else ""
        return ""

    def _emit_block(self, text: str) -> list[tuple[str, str]]:
        self.block.append(text)
        return [(SCENARIO, text)]

    @property
    def scenario_text(self) -> str:
        return "".join(self.block)
