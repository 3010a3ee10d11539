"""Small text helpers and tolerant read-only views of a scenario, shared by the offline modules.

Nothing here raises on odd input: a scenario may hold any JSON, and whatever comes back is
streamed to a user.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from upstream.offline.data import phrase

CORE_KEYS = ("title", "summary", "setting", "difficulty", "roles", "steps", "objectives")


def difficulties() -> tuple[str, ...]:
    return tuple(phrase("difficulties"))


# ---------------------------------------------------------------------------
# Strings
# ---------------------------------------------------------------------------


def safe(text: str) -> str:
    """Break runs of backticks so prose can never open or close a code fence."""
    return re.sub(r"`{3,}", "'", text)


def one_line(value: Any, limit: int = 0) -> str:
    """Render a scalar as a single trimmed line, optionally shortened."""
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float) and value.is_integer() and math.isfinite(value):
        text = str(int(value))
    else:
        text = str(value)
    text = " ".join(text.split())
    if limit and len(text) > limit:
        text = text[: limit - 1].rstrip(" ,;:.") + "…"
    return text


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def join_words(items: list[str], conjunction: str = "and") -> str:
    """Join items as English: "A", "A and B", "A, B and C"."""
    items = [item for item in items if item]
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def short_list(items: list[str], limit: int = 5) -> str:
    """Join at most `limit` items, then say how many were left out."""
    if len(items) <= limit:
        return join_words(items)
    return f"{', '.join(items[:limit])} and {len(items) - limit} more"


def sentence(text: str) -> str:
    """Capitalise the first letter and make sure the text ends like a sentence."""
    text = text.strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?…" else text + "."


def first_sentence(text: str, limit: int = 220) -> str:
    match = re.match(r"(.+?[.!?])(?:\s|$)", text)
    return one_line(match.group(1) if match else text, limit)


def quote(text: str, limit: int = 80) -> str:
    return f'"{one_line(text, limit)}"'


def clean_value(text: str) -> str:
    """Tidy a value taken from the user's message: no backtick runs, no wrapping quotes."""
    text = " ".join(re.sub(r"`{3,}", "", text).split())
    for left, right in (('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’"), ("«", "»")):
        if len(text) >= 2 and text.startswith(left) and text.endswith(right):
            text = text[1:-1].strip()
    return text


def clean_name(text: str) -> str:
    """A name or title: a cleaned value without trailing punctuation."""
    return clean_value(clean_value(text).rstrip(" .,;:!?"))


_SMALL_WORDS = {"a", "an", "the", "of", "for", "and", "or", "to", "in", "on", "at", "with", "about", "by",
                "from", "vs", "via", "into"}


def title_case(text: str) -> str:
    """Title-case a phrase, keeping small words lowercase and acronyms intact."""
    result = []
    for index, word in enumerate(text.split()):
        if index and word.lower() in _SMALL_WORDS:
            result.append(word.lower())
        elif any(ch.isupper() for ch in word[1:]):
            result.append(word)  # acronyms and brand names such as "HR" or "iPhone"
        else:
            result.append("-".join(part[:1].upper() + part[1:] for part in word.split("-")))
    return " ".join(result)


def smart_title(text: str) -> str:
    """Capitalise an all-lowercase name ("observer" -> "Observer"); keep others."""
    return title_case(text) if text == text.lower() else text


def lower_first(text: str) -> str:
    """"Leads the team" -> "leads the team", but keep "CISO"-style words."""
    if text[:1].isupper() and text[1:2].islower():
        return text[0].lower() + text[1:]
    return text


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:['’-][a-z0-9]+)*", text.lower())


def norm_text(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


_TRAILING_FILLERS = ("please", "thanks", "thank you", "too", "as well", "for me", "for us")


def strip_trailing_filler(text: str, fillers: tuple[str, ...] = _TRAILING_FILLERS) -> str:
    """"add a Scribe too, please!" -> "add a Scribe": trailing punctuation and polite words off.

    Plain string operations rather than a regular expression: a pattern such as
    `[\\s,]*(?:please)?[\\s!?]*$` retries its whole tail at every comma of a long run, which
    is quadratic in the run's length.
    """
    text = text.rstrip(" \t\n,!?")
    for _ in range(3):
        lowered = text.lower()
        for filler in fillers:
            if lowered.endswith(filler) and (len(lowered) == len(filler) or not lowered[-len(filler) - 1].isalnum()):
                text = text[: -len(filler)].rstrip(" \t\n,!?")
                break
        else:
            break
    return text


class Cues:
    """A text's words, ready for many `has` questions: the set and the joined text are built once."""

    def __init__(self, text_words: list[str]) -> None:
        self.vocabulary = set(text_words)
        self.padded = " " + " ".join(text_words) + " "

    def has(self, cues: list[str]) -> bool:
        """Whether any cue occurs: single words by word, phrases by words in a row."""
        return any((" " in cue and f" {cue} " in self.padded) or cue in self.vocabulary for cue in cues)


def has_cue(text_words: list[str], cues: list[str]) -> bool:
    """Whether any cue occurs: single words by word, phrases by words in a row."""
    return Cues(text_words).has(cues)


# ---------------------------------------------------------------------------
# Read-only views of a scenario
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """A role or step reduced to its label and description."""

    name: str
    description: str


def items(value: Any, label_key: str) -> list[Item]:
    found: list[Item] = []
    if not isinstance(value, list):
        return found
    for entry in value:
        if isinstance(entry, dict):
            label = entry.get(label_key) or entry.get("name") or entry.get("title") or ""
            item = Item(one_line(label), one_line(entry.get("description")))
        else:
            item = Item(one_line(entry), "")
        if item.name or item.description:
            found.append(item)
    return found


def roles(scenario: dict) -> list[Item]:
    return items(scenario.get("roles"), "name")


def steps(scenario: dict) -> list[Item]:
    return items(scenario.get("steps"), "title")


def objectives(scenario: dict) -> list[str]:
    value = scenario.get("objectives")
    if not isinstance(value, list):
        return []
    return [text for text in (one_line(item) for item in value) if text]


def title(scenario: dict) -> str:
    return one_line(scenario.get("title")) or "Untitled scenario"


def difficulty_level(value: Any) -> int | None:
    """Index into difficulties() for a difficulty label, or None if unknown."""
    return phrase("difficulty_synonyms").get(one_line(value).lower())


def duration(scenario: dict) -> float | None:
    """Minutes, from duration_minutes or a similar numeric key, if present."""
    for key, value in scenario.items():
        if "duration" in str(key).lower() or "minutes" in str(key).lower():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if math.isfinite(value) and value > 0:
                    return float(value)
    return None


def label(key: Any) -> str:
    """Human label for a key: "duration_minutes" -> "Duration (minutes)"."""
    text = " ".join(re.sub(r"[_\-]+", " ", str(key)).split())
    match = re.fullmatch(r"(.+?) (minutes|hours|days|seconds|eur|usd)", text, re.I)
    if match:
        return f"{match.group(1).capitalize()} ({match.group(2).lower()})"
    return text.capitalize() or "Unnamed field"


def summarise(value: Any, depth: int = 0) -> str:
    """One-line summary of an arbitrary JSON value."""
    if value is None:
        return "not set"
    if isinstance(value, (bool, int, float)):
        return one_line(value)
    if isinstance(value, str):
        return one_line(value, 200 if depth == 0 else 120) or "(empty)"
    if isinstance(value, list):
        if not value:
            return "none"
        if all(isinstance(item, (str, int, float, bool)) or item is None for item in value):
            parts = [summarise(item, depth + 1) for item in value[:6]]
            separator = "; " if any("," in part for part in parts) else ", "
            extra = f" and {len(value) - 6} more" if len(value) > 6 else ""
            return separator.join(parts) + extra
        labels = [item.name for item in items(value, "name") if item.name][:5]
        count = "1 entry" if len(value) == 1 else f"{len(value)} entries"
        return f"{count}: {', '.join(labels)}" if labels and depth == 0 else count
    if isinstance(value, dict):
        if not value:
            return "empty"
        if depth > 0:
            return plural(len(value), "field")
        keys = list(value)
        parts = [f"{label(key).lower()}: {summarise(value[key], depth + 1)}" for key in keys[:5]]
        extra = f"; and {len(keys) - 5} more" if len(keys) > 5 else ""
        return "; ".join(parts) + extra
    return one_line(value, 120)


def mentions(item_text: str, name: str) -> bool:
    """Whether a text mentions a role: its full name, or its head noun ("commander" of "Incident
    Commander"), stemmed so that "command" and "counsel's" count too."""
    pattern = _mention_pattern(name)
    return bool(pattern and pattern.search(item_text.lower()))


@lru_cache(maxsize=512)
def _mention_pattern(name: str) -> re.Pattern[str] | None:
    # One compiled pattern per role name: a 40 KB scenario asks it of every step.
    generic = set(phrase("generic_role_words"))
    distinctive = [word for word in words(name) if len(word) > 3 and word not in generic]
    choices = [re.escape(name.lower()) + r"(?!\w)"] if name.strip() else []
    if distinctive:
        head = distinctive[-1]
        choices.append(re.escape(head[: max(5, len(head) - 3)]))
    return re.compile(r"(?<!\w)(?:" + "|".join(choices) + ")") if choices else None


# ---------------------------------------------------------------------------
# Fenced blocks
# ---------------------------------------------------------------------------


def _fence_safe(dumped: str) -> str:
    # A backtick run inside a string value (only the caller's scenario can hold one) is
    # written as \u0060 escapes: the JSON decodes to the same value and the fence holds.
    if "```" in dumped:
        dumped = re.sub(r"`{3,}", lambda match: "\\u0060" * len(match.group(0)), dumped)
    return dumped


# A block ends at its closing fence: whatever follows it is the caller's. An answer that ends
# with its block therefore ends there, with no blank lines left in the prose.


def scenario_block(scenario: dict) -> str:
    """The fenced ```scenario block with the pretty JSON."""
    dumped = json.dumps(scenario, indent=2, ensure_ascii=False, default=str)
    return f"```scenario\n{_fence_safe(dumped)}\n```"


def patch_block(ops: list[dict[str, Any]]) -> str:
    """The fenced ```patch block: a JSON array of RFC 6902 operations, one per line."""
    lines = [_fence_safe(json.dumps(op, ensure_ascii=False, default=str)) for op in ops]
    body = "[\n  " + ",\n  ".join(lines) + "\n]" if lines else "[]"
    return f"```patch\n{body}\n```"


def pointer(*parts: str | int) -> str:
    """An RFC 6901 JSON Pointer: "~" and "/" inside a key are escaped."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


# ---------------------------------------------------------------------------
# Which of many names a text mentions, without a loop over names x text
# ---------------------------------------------------------------------------

# Names are looked up as runs of up to this many words; a longer name is known by its first words.
_MAX_NAME_WORDS = 8
# A stem ("commander" -> "comman") is looked up as a word's prefix of at most this length.
_MAX_STEM = 24


def bare(word: str) -> str:
    """A word without a possessive ending: "ciso's" -> "ciso"."""
    return word[:-2] if word.endswith(("'s", "’s")) else word


class Mentions:
    """An index of names (roles, steps) answering "which of them does this text mention?".

    Building it reads every name once; a lookup reads the text's words once, with a bounded
    number of dictionary probes per word. A text of n words against k names therefore costs
    O(n + k), where a regular expression per name would cost O(n x k): the difference between
    microseconds and seconds for a long message against a 64 KiB scenario.

    A name counts as mentioned when its words occur in a row (`full`), or, with `stems`, when a
    word starts with the stem of the name's last distinctive word, as `mentions` does
    ("command" and "counsel's" for "Incident Commander" and "Legal Counsel").
    """

    def __init__(self, names: list[str], stems: bool = False) -> None:
        self._full: dict[tuple[str, ...], list[int]] = {}
        self._stems: dict[str, list[int]] = {}
        generic = set(phrase("generic_role_words"))
        for index, name in enumerate(names):
            key = tuple(bare(word) for word in words(name))[:_MAX_NAME_WORDS]
            if key:
                self._full.setdefault(key, []).append(index)
            if stems:
                distinctive = [word for word in key if len(word) > 3 and word not in generic]
                if distinctive:
                    head = distinctive[-1]
                    stem = head[: max(5, len(head) - 3)][:_MAX_STEM]
                    self._stems.setdefault(stem, []).append(index)
        self._lengths = sorted({len(key) for key in self._full})
        self._stem_lengths = sorted({len(stem) for stem in self._stems})

    def find(self, text_words: list[str]) -> list[int]:
        """Indices of the names the text mentions, in index order."""
        found: set[int] = set()
        text_words = [bare(word) for word in text_words]
        count = len(text_words)
        for length in self._lengths:
            for start in range(count - length + 1):
                hit = self._full.get(tuple(text_words[start:start + length]))
                if hit:
                    found.update(hit)
        if self._stems:
            for word in set(text_words):
                for part in {word, *re.split(r"['’-]", word)}:
                    for length in self._stem_lengths:
                        if length > len(part):
                            break
                        hit = self._stems.get(part[:length])
                        if hit:
                            found.update(hit)
        return sorted(found)
