"""Inline thinking: `<think>...</think>` at the start of `delta.content`, split off as it streams.

llama.cpp with `--reasoning-format none` and raw DeepSeek-R1 distills put their reasoning in
the content, between `<think>` and `</think>`, before the answer. The tags may be split
across deltas at any character. `ThinkSplitter.feed(text)` returns `(kind, text)` pieces,
`kind` being `REASONING` or `ANSWER`, as soon as they are certain:

- Only a `<think>` that opens the content counts (leading whitespace allowed), as llama.cpp
  and vLLM's reasoning parsers read it; a `<think>` later in an answer is answer text.
- While a tag may still be forming (`<thi`, `</th`), those few characters wait for the next
  delta; everything before them is returned at once.
- Whitespace right after `<think>` and between `</think>` and the answer is dropped (the
  model's own formatting, not content).
- After the block, and when the content does not open with `<think>`, `passthrough` is True:
  the caller can stop calling `feed` and use the text as answer directly (the hot path).

Whatever the chunking, the pieces joined per kind in order are the same (tests/test_reasoning.py).
`flush()` returns what was held back when the stream ends.
"""

from __future__ import annotations

REASONING = "reasoning"
ANSWER = "answer"

_OPEN = "<think>"
_CLOSE = "</think>"

# States
_START = 0  # nothing but whitespace seen yet
_INSIDE = 1  # between <think> and </think>
_AFTER = 2  # after </think>: dropping whitespace before the answer
_ANSWER = 3  # plain answer text from here on


class ThinkSplitter:
    def __init__(self) -> None:
        self._state = _START
        self._held = ""  # a possible tag prefix (or leading whitespace) not yet decided
        self._fresh = True  # inside: nothing returned since <think> (drop leading whitespace)

    @property
    def passthrough(self) -> bool:
        """True once every later delta is plain answer text."""
        return self._state == _ANSWER and not self._held

    def feed(self, text: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        text = self._held + text
        self._held = ""
        while text:
            state = self._state
            if state == _START:
                body = text.lstrip()
                if not body:
                    self._held = text  # only whitespace: it may still precede <think>
                    return out
                if body.startswith(_OPEN):
                    self._state = _INSIDE
                    text = body[len(_OPEN):]
                    continue
                if _OPEN.startswith(body):
                    self._held = text  # "<thi": wait for the rest
                    return out
                self._state = _ANSWER
                out.append((ANSWER, text))
                return out
            if state == _INSIDE:
                if self._fresh:
                    text = text.lstrip()
                    if not text:
                        return out
                end = text.find(_CLOSE)
                if end >= 0:
                    if end:
                        out.append((REASONING, text[:end]))
                    self._state = _AFTER
                    text = text[end + len(_CLOSE):]
                    continue
                keep = _partial_suffix(text, _CLOSE)
                if keep < len(text):
                    out.append((REASONING, text[: len(text) - keep]))
                    self._fresh = False
                if keep:
                    self._held = text[len(text) - keep:]
                return out
            if state == _AFTER:
                text = text.lstrip()
                if text:
                    self._state = _ANSWER
                continue
            out.append((ANSWER, text))
            return out
        return out

    def flush(self) -> list[tuple[str, str]]:
        """End of stream: a held tag prefix or whitespace is text after all."""
        held, self._held = self._held, ""
        if not held:
            return []
        if self._state == _INSIDE:
            return [(REASONING, held)]
        if self._state == _START and not held.strip():
            return []  # an answer of only whitespace
        return [(ANSWER, held)]


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of `text` that is a proper start of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0
