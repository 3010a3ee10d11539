"""What the model is asked: the intent's system prompt, the scenario as delimited data, the history.

The system prompts live in the intent table (agent/intents.py). The scenario goes in as
data between <scenario> tags, never as instructions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from agent.intents import INTENTS

# Per list, at most this many "pointer: label" lines in the index a patch is written against.
_INDEX_LINES = 200


@dataclass(frozen=True)
class Prompt:
    """What a model is asked. Real models read `messages`; the offline model reads the fields."""

    intent: str
    message: str
    scenario: dict[str, Any] | None
    history: tuple[dict[str, str], ...]
    messages: list[dict[str, str]]
    # Set on a repair round: why the previous answer's block did not apply.
    repair_reason: str | None = None


def estimate_tokens(prompt: Prompt) -> int:
    """The prompt's size in tokens, estimated from its characters: one token per 3 characters,
    rounded up, which over-counts English (about 4 characters a token) and JSON alike. The
    budget reserves this before a run starts, and charges it when the server sends no usage."""
    return -(-sum(len(m["content"]) for m in prompt.messages) // 3) + 4 * len(prompt.messages)


def _label(item: Any) -> str:
    if isinstance(item, dict):
        for key in ("name", "title"):
            if isinstance(item.get(key), str):
                return item[key][:60]
        return "{...}"
    return json.dumps(item, ensure_ascii=False)[:60]


def pointer_index(scenario: dict[str, Any]) -> str:
    """The JSON Pointer of each item of each top-level list, with a short label: what a model
    needs to write `/steps/3/title` without counting by itself."""
    lines: list[str] = []
    for key, value in scenario.items():
        if isinstance(value, list):
            escaped = key.replace("~", "~0").replace("/", "~1")
            for index, item in enumerate(value[:_INDEX_LINES]):
                lines.append(f"/{escaped}/{index}: {_label(item)}")
            lines.append(f"/{escaped}/- : append to {key} ({len(value)} items now)")
    return "\n".join(lines)


def build_prompt(intent: str, message: str, scenario: dict[str, Any] | None, history: tuple[dict[str, str], ...]) -> Prompt:
    spec = INTENTS[intent]
    system = spec.system_prompt
    if scenario is not None:
        system += "\n\n<scenario>\n" + json.dumps(scenario, ensure_ascii=False, indent=2) + "\n</scenario>"
        if spec.indexed_scenario:
            index = pointer_index(scenario)
            if index:
                system += "\n\nList items and their pointers:\n" + index
    else:
        system += "\n\nThere is no current scenario."
    messages = [{"role": "system", "content": system}]
    messages.extend({"role": turn["role"], "content": turn["content"]} for turn in history)
    messages.append({"role": "user", "content": message})
    return Prompt(intent, message, scenario, history, messages)


def build_repair_prompt(prompt: Prompt, answer: str, reason: str) -> Prompt:
    """The same conversation, plus the model's answer and a precise statement of what was wrong."""
    correction = (
        f"Your change could not be applied: {reason}. The scenario is unchanged. "
        "Send the corrected change: a short sentence, then one fenced ```patch block with the whole "
        "corrected JSON array of operations against the scenario as it was (or one complete ```scenario block)."
    )
    messages = [*prompt.messages, {"role": "assistant", "content": answer}, {"role": "user", "content": correction}]
    return replace(prompt, messages=messages, repair_reason=reason)
