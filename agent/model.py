"""What the agent needs of a model: `stream(prompt, max_tokens)` yields deltas, then one `Finish`.

A delta is a `str` of answer text, or a `Thinking` (a str subclass) of reasoning text.
Backends live in `upstream/`; the agent imports only this interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Protocol

from agent.prompts import Prompt


class Thinking(str):
    """A reasoning ("thinking") delta: never part of the answer, the history or a scenario block."""

    __slots__ = ()


@dataclass(frozen=True)
class Finish:
    """The end of a model's answer: why it stopped, and the token counts if the server sent them."""

    reason: str
    usage: dict[str, Any] | None


class Model(Protocol):
    provider: str
    model: str

    def stream(self, prompt: Prompt, max_tokens: int) -> AsyncIterator[str | Thinking | Finish]: ...
