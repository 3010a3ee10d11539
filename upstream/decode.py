"""Upstream bytes to model deltas: the Chat Completions stream, decoded.

Wire format read by `ChatStreamDecoder`:
    data: {"choices":[{"delta":{"content":"Hel"},"finish_reason":null}], ...}
    data: {"choices":[{"delta":{},"finish_reason":"stop"}], ...}
    data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}
    data: [DONE]
An `{"error": {...}}` payload may arrive instead of a chunk.
"""

from __future__ import annotations

import json
from typing import Any

from agent import errors
from agent.model import Finish
from upstream.errors import payload_error
from upstream.sse import EventDecoder, LineDecoder

_raw_decode = json.JSONDecoder().raw_decode


def _loads(text: str) -> Any:
    """json.loads, minus its two whitespace-skipping regex passes when there is no whitespace
    around the value (the usual chunk): fewer calls per token, the same result."""
    try:
        value, end = _raw_decode(text)
    except ValueError:
        return json.loads(text)  # leading whitespace, or not JSON: json.loads decides
    return value if end == len(text) else json.loads(text)


class ChatStreamDecoder:
    """Upstream bytes to text deltas, then a Finish: pushed, so it needs no event loop.

    `feed(chunk)` returns what the chunk completed. The Finish comes with `data: [DONE]`
    and sets `done`. A bad or error payload sets `error` (an AgentError) instead, after the
    deltas before it are returned, so text the client already has stays valid. After either,
    later bytes are ignored. A body that ends with neither was cut off.
    """

    def __init__(self) -> None:
        self._lines = LineDecoder()
        self._events = EventDecoder()
        self._reason = "stop"
        self._usage: dict[str, int] | None = None
        self.done = False
        self.error: errors.AgentError | None = None

    def feed(self, chunk: bytes) -> list[str | Finish]:
        out: list[str | Finish] = []
        if self.done or self.error is not None:
            return out
        for line in self._lines.feed(chunk):
            event = self._events.decode(line)
            if event is None:
                continue
            if event.data == "[DONE]":
                self.done = True
                out.append(Finish(self._reason, self._usage))
                return out
            try:
                payload = _loads(event.data)
                if "error" in payload:
                    raise payload_error(payload["error"])
                if payload.get("usage"):
                    self._usage = payload["usage"]
                choices = payload["choices"]
                if not choices:
                    continue  # the usage chunk
                choice = choices[0]
                content = choice["delta"].get("content")
                if choice.get("finish_reason"):
                    self._reason = choice["finish_reason"]
            except errors.AgentError as exc:
                self.error = exc
                return out
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                self.error = errors.upstream_invalid_response()
                return out
            if content:
                out.append(content if content.isascii() else _well_formed(content))
        return out


def _well_formed(text: str) -> str:
    """json.loads turns a "\\ud800" escape into a lone surrogate, which UTF-8 cannot encode;
    it would break the frame encoder downstream. Replace it, as a decoder would."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


