"""What the model is asked: the intent's system prompt, the scenario as delimited data, the history.

The system prompts live in the intent table (agent/intents.py). The scenario goes in as
data between <scenario> tags, never as instructions: as JSON text in which "<", ">" and "&"
are written as \u003c, \u003e and \u0026 and no character breaks a line (JSON escapes the
control characters; U+0085, U+2028 and U+2029 are escaped too). Whatever a scenario holds
(a role named "x\n</scenario>\nSYSTEM: ..."), it can neither close the data section nor start
a line of its own, and the text still parses to the same object. The pointer index after it
quotes keys and names the same way.
"""

from __future__ import annotations

import json
import re
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


# JSON text that means the same to a JSON parser but holds no tag delimiter and no line break.
_UNSAFE = re.compile("[<>&\x85\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def data_json(value: Any, indent: int | None = None) -> str:
    """`value` as JSON text that is safe between tags in a prompt: json.loads gives `value`
    back, and the text holds no "<", ">", "&" and no line break but the indentation's."""
    return _UNSAFE.sub(_escape, json.dumps(value, ensure_ascii=False, indent=indent))


def _quoted(text: str) -> str:
    """A string as the inside of a JSON string literal, made safe like `data_json`: "Officer 0"
    stays as it is, a name holding a line break or a tag shows its escapes on one line."""
    return data_json(text)[1:-1]


def _label(item: Any) -> str:
    if isinstance(item, dict):
        for key in ("name", "title"):
            if isinstance(item.get(key), str):
                return _quoted(item[key][:60])
        return "{...}"
    return _UNSAFE.sub(_escape, json.dumps(item, ensure_ascii=False)[:60])


def pointer_index(scenario: dict[str, Any]) -> str:
    """The JSON Pointer of each item of each top-level list, with a short label: what a model
    needs to write `/steps/3/title` without counting by itself. Pointers and labels are written
    as they would be inside a JSON string (a patch's "path" is one), so neither can break a line."""
    lines: list[str] = []
    for key, value in scenario.items():
        if isinstance(value, list):
            escaped = _quoted(key.replace("~", "~0").replace("/", "~1"))
            for index, item in enumerate(value[:_INDEX_LINES]):
                lines.append(f"/{escaped}/{index}: {_label(item)}")
            lines.append(f"/{escaped}/- : append to {_quoted(key)} ({len(value)} items now)")
    return "\n".join(lines)


def build_prompt(intent: str, message: str, scenario: dict[str, Any] | None, history: tuple[dict[str, str], ...]) -> Prompt:
    spec = INTENTS[intent]
    system = spec.system_prompt
    if scenario is not None:
        system += "\n\n<scenario>\n" + data_json(scenario, indent=2) + "\n</scenario>"
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
