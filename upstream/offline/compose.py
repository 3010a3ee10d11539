"""The text of the built-in offline model's answer: deterministic, no network, no key.

For the same `(intent, message, scenario, history)`, `compose` returns the same text;
`upstream.offline.OfflineModel` streams it word by word like a real model's deltas.

Output contract (light markdown in all prose: bold, headings, "- " bullets; never a
triple backtick outside the one block):

* explain, chat: prose only.
* create: prose, then one ```scenario block holding a JSON object with a non-empty title.
* modify with a scenario: prose, then one ```patch block holding a JSON array of RFC 6902
  operations that, applied in order to the scenario, give the edited scenario (`[]` when
  nothing could be changed). A change larger than the document comes as a ```scenario block.
* modify without one: prose, then a ```scenario block (there is nothing to patch).

The content (topic templates, phrasings, word lists) lives in `data/`, read on first use.
"""

from __future__ import annotations

from upstream.offline.chat import chat
from upstream.offline.create import create
from upstream.offline.edit import modify
from upstream.offline.explain import explain

__all__ = ["compose"]

# The request limit (MAX_MESSAGE_CHARS in agent/config.py), applied again here so that a direct
# caller gets the same bound. Every routine below is linear in the message and the scenario.
MAX_MESSAGE_CHARS = 8000


def compose(intent: str, message: str, scenario: dict | None, history: list[dict]) -> str:
    """The complete answer for one turn. `scenario` and `history` are never mutated.

    Malformed input (a non-string message, odd scenario values, junk history entries) is
    tolerated rather than raised on, because the caller streams whatever comes back.
    Any intent other than explain, create or modify is answered as chat.
    """
    text = message if isinstance(message, str) else ""
    text = text.replace("\r\n", "\n").replace("\r", "\n")[:MAX_MESSAGE_CHARS]
    current = scenario if isinstance(scenario, dict) else None
    kind = intent.strip().lower() if isinstance(intent, str) else ""
    if kind == "explain":
        return explain(current, text)
    if kind == "create":
        return create(text)
    if kind == "modify":
        return modify(text, current)
    return chat(text, current, _turns(history))


def _turns(history: object) -> list[dict[str, str]]:
    """Keep only well-formed turns; history is advisory, so junk is dropped."""
    turns: list[dict[str, str]] = []
    for turn in history if isinstance(history, list) else []:
        if isinstance(turn, dict) and isinstance(turn.get("content"), str):
            role = turn.get("role") if turn.get("role") in ("user", "assistant") else "user"
            turns.append({"role": role, "content": turn["content"]})
    return turns
