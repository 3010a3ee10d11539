"""Scenarios: validating the model's block and listing what changed.

A scenario is a JSON object with a non-empty string `title`; usually also summary,
setting, difficulty, roles [{name, description}], steps [{title, description}] and
objectives [str]. Any other key is kept as it is.
"""

from __future__ import annotations

import json
from typing import Any

MAX_SCENARIO_BYTES = 64 * 1024
MAX_DEPTH = 32


class InvalidScenario(ValueError):
    """Why a value is not an acceptable scenario, in words a user can act on."""


def depth(value: Any) -> int:
    """Nesting depth of a JSON value: a scalar is 0, {} or [] is 1."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            level += 1
            deepest = max(deepest, level)
            stack.extend((child, level) for child in item)
    return deepest


def validate(value: Any, max_bytes: int = MAX_SCENARIO_BYTES, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidScenario("it is not a JSON object")
    title = value.get("title")
    if not isinstance(title, str) or not title.strip():
        raise InvalidScenario("it has no title")
    if depth(value) > max_depth:
        raise InvalidScenario(f"it is nested deeper than {max_depth} levels")
    if len(json.dumps(value, ensure_ascii=False).encode()) > max_bytes:
        raise InvalidScenario(f"it is larger than {max_bytes // 1024} KiB")
    return value


def parse_block(text: str, max_bytes: int = MAX_SCENARIO_BYTES) -> dict[str, Any]:
    """The scenario from the text of a fenced block."""
    if not text.strip():
        raise InvalidScenario("no scenario block in the answer")
    if len(text.encode()) > max_bytes:
        raise InvalidScenario(f"it is larger than {max_bytes // 1024} KiB")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidScenario(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    return validate(value, max_bytes)


def _pointer(path: tuple[str | int, ...]) -> str:
    # JSON Pointer (RFC 6901): "~" and "/" inside a key are escaped.
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def diff(old: Any, new: Any) -> list[dict[str, str]]:
    """What changed from old to new: [{op: add|remove|replace, path: JSON pointer}], in document order."""
    changes: list[dict[str, str]] = []
    _diff(old, new, (), changes)
    return changes


def _diff(old: Any, new: Any, path: tuple[str | int, ...], out: list[dict[str, str]]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in old:
            if key not in new:
                out.append({"op": "remove", "path": _pointer(path + (key,))})
        for key, value in new.items():
            if key not in old:
                out.append({"op": "add", "path": _pointer(path + (key,))})
            else:
                _diff(old[key], value, path + (key,), out)
    elif isinstance(old, list) and isinstance(new, list):
        for index in range(min(len(old), len(new))):
            _diff(old[index], new[index], path + (index,), out)
        for index in range(len(old), len(new)):
            out.append({"op": "add", "path": _pointer(path + (index,))})
        for index in range(len(new), len(old)):
            out.append({"op": "remove", "path": _pointer(path + (index,))})
    elif old != new or type(old) is not type(new):
        out.append({"op": "replace", "path": _pointer(path)})
