"""The offline model's content, read from `data/*.json` on first use (never at import).

`topics.json` holds one create template per topic; `phrases.json` the word lists and
phrasings the other modules use. Both are read once per process and then shared: callers
must treat what they get as read-only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parent / "data"


def _load(name: str) -> dict[str, Any]:
    return json.loads((DATA_DIR / name).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Topic:
    """Plausible content for one family of scenarios; `{topic}` in any text is filled in."""

    key: str
    label: str
    kind: str
    keywords: tuple[str, ...]
    weak_keywords: tuple[str, ...]
    default_topic: str
    summary: str
    setting: str
    roles: tuple[dict[str, str], ...]
    steps: tuple[dict[str, str], ...]
    objectives: tuple[str, ...]
    complication: dict[str, str]
    tags: tuple[str, ...]
    duration: int
    materials: tuple[str, ...]

    @property
    def generic(self) -> bool:
        """The fallback template: it has no keywords of its own."""
        return not (self.keywords or self.weak_keywords)


@cache
def phrases() -> dict[str, Any]:
    """Word lists and phrasings (see data/phrases.json)."""
    return _load("phrases.json")


@cache
def topics() -> tuple[Topic, ...]:
    """The create templates in priority order; the last one is the generic fallback."""
    entries = _load("topics.json")["topics"]
    tuple_fields = ("keywords", "weak_keywords", "roles", "steps", "objectives", "tags", "materials")
    return tuple(Topic(**{key: tuple(value) if key in tuple_fields else value for key, value in entry.items()})
                 for entry in entries)


def phrase(name: str) -> Any:
    return phrases()[name]
