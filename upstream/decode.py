"""Upstream bytes to model deltas: the Chat Completions stream, decoded.

Wire format read by `ChatStreamDecoder` (every shape in the wire corpus, shared/wire/README.md beside this repository):
    data: {"choices":[{"delta":{"role":"assistant"},"finish_reason":null}], ...}        role only
    data: {"choices":[],"prompt_filter_results":[...]}                                   Azure, first
    data: {"choices":[{"delta":{"content":"Hel"},"finish_reason":null}], ...}           answer text
    data: {"choices":[{"delta":{"reasoning_content":"Let me"}, ...}]}                   thinking
    data: {"choices":[{"delta":{"content":"","reasoning":"Let me","reasoning_details":[...]}}]}
    data: {"choices":[{"delta":{"content":"<think>\\nLet me"}, ...}]}                    inline thinking
    data: {"choices":[{"delta":{"refusal":"I can't"}, ...}]}                            answer text
    data: {"choices":[{"delta":{},"finish_reason":"stop"}], ...}
    data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,...}}
    data: [DONE]
An `{"error": {...}}` payload may arrive instead of a chunk.

Answer text is yielded as `str`, thinking as `agent.model.Thinking`, one item per delta (a
delta over MAX_DELTA_CHARS is cut into pieces of at most that), then one `Finish`.
"""

from __future__ import annotations

import json
from typing import Any

from agent import errors
from agent.model import Finish, Thinking
from upstream.errors import payload_error
from upstream.sse import EventDataDecoder, StreamTooLarge
from upstream.think import REASONING, ThinkSplitter

# No frame downstream carries more text than this (characters): a server that sends a
# 50 MB delta gets it forwarded in pieces, each encoded and sent on its own.
MAX_DELTA_CHARS = 16 * 1024

_raw_decode = json.JSONDecoder().raw_decode


def _loads(text: str) -> Any:
    """json.loads, minus its two whitespace-skipping regex passes when there is no whitespace
    around the value (the usual chunk): about 1 µs less per token (bench/hops.py), the same
    result (tests/test_upstream_decode.py checks it against json.loads on any text)."""
    try:
        value, end = _raw_decode(text)
    except ValueError:
        return json.loads(text)  # leading whitespace, or not JSON: json.loads decides
    return value if end == len(text) else json.loads(text)


class _Invalid(Exception):
    """A chunk of the wrong shape (its text says which)."""


class ChatStreamDecoder:
    """Upstream bytes to text and thinking deltas, then a Finish: pushed, so it needs no event loop.

    `feed(chunk)` returns what the chunk completed. The Finish comes with `data: [DONE]`
    and sets `done`. A bad or error payload sets `error` (an AgentError) instead, after the
    deltas before it are returned, so text the client already has stays valid; `problem`
    then says what was wrong and `upstream_error` holds an error payload's object, for the
    log. After either, later bytes are ignored. A body that ends with neither was cut off;
    `empty` says whether it held no bytes at all.
    """

    def __init__(self) -> None:
        self._sse = EventDataDecoder()
        self._reason = "stop"
        self._usage: dict[str, Any] | None = None
        # Inline <think> is looked for until the content shows it is not there (usually its
        # first delta); then None, and content goes straight out.
        self._think: ThinkSplitter | None = ThinkSplitter()
        self.empty = True
        self.done = False
        self.error: errors.AgentError | None = None
        self.problem: str | None = None
        self.upstream_error: Any = None

    def feed(self, chunk: bytes) -> list[str | Thinking | Finish]:
        out: list[str | Thinking | Finish] = []
        if self.done or self.error is not None:
            return out
        self.empty = self.empty and not chunk
        try:
            for data in self._sse.feed(chunk):
                if data == "[DONE]":
                    return self._finish(out)
                payload = _loads(data)
                if payload.__class__ is not dict or "error" in payload or payload.get("usage"):
                    self._unusual(payload)
                choices = payload["choices"]
                if not choices:
                    continue  # the usage chunk, or Azure's prompt_filter_results
                choice = choices[0]
                if choice.get("finish_reason"):
                    self._reason = _string(choice["finish_reason"], "a finish_reason")
                delta = choice.get("delta")
                if delta is None:
                    continue  # e.g. Azure's content_filter_offsets chunks
                if delta.__class__ is not dict:
                    raise _Invalid("a delta that is not an object")
                content = delta.get("content")
                if len(delta) > 1 or content is None:
                    self._other_fields(delta, out)
                if content:
                    if self._think is not None:
                        self._inline(_string(content, "content"), out)
                    else:
                        _append(out, _string(content, "content"), str)
        except errors.AgentError as exc:
            self.error = exc
            self.problem = "an error payload in the stream"
        except (StreamTooLarge, _Invalid) as exc:
            self._invalid(str(exc))
        except RecursionError:
            self._invalid("a chunk nested too deep to decode")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            self._invalid("a chunk that is not valid JSON of the chunk shape")
        return out

    def _finish(self, out: list[str | Thinking | Finish]) -> list[str | Thinking | Finish]:
        """`data: [DONE]`: what the inline-think splitter held, then the Finish."""
        if self._think is not None:
            self._pieces(self._think.flush(), out)
        self.done = True
        out.append(Finish(self._reason, self._usage))
        return out

    def _unusual(self, payload: Any) -> None:
        """A chunk that is not an object, an error payload (raised), or one with usage (kept)."""
        if payload.__class__ is not dict:
            raise _Invalid("a chunk that is not a JSON object")
        if "error" in payload:
            self.upstream_error = payload["error"]
            raise payload_error(payload["error"])
        if payload["usage"].__class__ is not dict:
            raise _Invalid("usage that is not an object")
        self._usage = payload["usage"]

    def _invalid(self, problem: str) -> None:
        self.error = errors.upstream_invalid_response()
        self.problem = problem

    def _other_fields(self, delta: dict[str, Any], out: list[str | Thinking | Finish]) -> None:
        """Thinking (`reasoning_content`, `reasoning`, else `reasoning_details`), then a refusal."""
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if not reasoning and "reasoning_details" in delta:
            # OpenRouter sends `reasoning_details` with `reasoning` (the same text twice):
            # read only when there is no plain field.
            reasoning = _details_text(delta["reasoning_details"])
        if reasoning:
            if reasoning.__class__ is not str:
                raise _Invalid("reasoning that is not a string")
            _append(out, reasoning, Thinking)
        refusal = delta.get("refusal")
        if refusal:
            if refusal.__class__ is not str:
                raise _Invalid("a refusal that is not a string")
            _append(out, refusal, str)  # shown as the answer: it is what the model said

    def _inline(self, content: str, out: list[str | Thinking | Finish]) -> None:
        splitter = self._think
        assert splitter is not None
        self._pieces(splitter.feed(content), out)
        if splitter.passthrough:
            self._think = None

    @staticmethod
    def _pieces(pieces: list[tuple[str, str]], out: list[str | Thinking | Finish]) -> None:
        for kind, text in pieces:
            _append(out, text, Thinking if kind == REASONING else str)


def _string(value: Any, what: str) -> str:
    if value.__class__ is not str:
        raise _Invalid(f"{what} that is not a string")
    return value


def _details_text(details: Any) -> str | None:
    """The readable text of OpenRouter's `reasoning_details` (never its encrypted items)."""
    if details.__class__ is not list:
        return None
    parts = []
    for item in details:
        if item.__class__ is dict:
            text = item.get("text") if item.get("type") == "reasoning.text" else item.get("summary") if item.get("type") == "reasoning.summary" else None
            if text.__class__ is str:
                parts.append(text)
    return "".join(parts) or None


def _append(out: list[str | Thinking | Finish], text: str, kind: type[str]) -> None:
    """`text` as one item of `kind`, or several of at most MAX_DELTA_CHARS, well-formed."""
    if not text.isascii():
        text = _well_formed(text)
    if len(text) <= MAX_DELTA_CHARS:
        out.append(text if kind is str else kind(text))
        return
    for start in range(0, len(text), MAX_DELTA_CHARS):
        out.append(kind(text[start:start + MAX_DELTA_CHARS]))


def _well_formed(text: str) -> str:
    """json.loads turns a "\\ud800" escape into a lone surrogate, which UTF-8 cannot encode;
    it would break the frame encoder downstream. Replace it, as a decoder would."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
