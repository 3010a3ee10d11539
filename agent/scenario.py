"""Scenarios: parsing the model's block safely, checking it, and saying what changed.

A scenario is a JSON object. The known fields (published as JSON Schema in
docs/scenario.schema.json, which tests/test_scenario.py checks against this module):

    title        non-empty string (required)
    summary, setting, difficulty   strings
    roles        list of objects: string "name" (required), string "description" (optional)
    steps        list of objects: string "title" (required), string "description" (optional)
    objectives   list of strings

Any other key, and any other key inside a role or step, is kept as it is.

Contracts:
- `parse_json` / `parse_json_object` turn ANY failure on model text (deep nesting, lone
  surrogates, huge or non-finite numbers, NaN/Infinity, duplicate keys, trailing text...)
  into `InvalidScenario` with a reason a user can act on. Nothing else escapes them.
- `validate_created` checks a new scenario against the schema above.
- `validate_modified` checks a modified scenario against the one the user had: no
  top-level key dropped or changed in JSON type unless the user asked to remove it, and
  known fields that followed the schema keep following it. Fields an imported scenario
  had in other shapes (steps as plain strings, say) are not forced into the schema.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from typing import Any, Iterable

MAX_SCENARIO_BYTES = 64 * 1024
MAX_DEPTH = 32
# RFC 8259 section 6: integers beyond +-(2**53 - 1) are not exchanged exactly by
# JavaScript clients (the page), so a model's 10**100000 is refused, not rounded.
MAX_SAFE_INTEGER = 2**53 - 1

STRING_FIELDS = ("title", "summary", "setting", "difficulty")
ITEM_FIELDS = {"roles": "name", "steps": "title"}  # list field -> its required string key
KNOWN_FIELDS = (*STRING_FIELDS, "roles", "steps", "objectives")


class InvalidScenario(ValueError):
    """Why a value is not an acceptable scenario, in words a user can act on.

    `line` and `column` (1-based) are set when the reason is a JSON syntax error.
    """

    line: int | None = None
    column: int | None = None


# ---------------------------------------------------------------------------
# Parsing model text
# ---------------------------------------------------------------------------

class _Refused(Exception):
    """Raised inside json's hooks; carries the reason out of the C scanner."""


def _refuse_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON value")


def _checked_int(digits: str) -> int:
    # Checked on the text before int() so that 10**100000 digits never reach int()
    # (which refuses more than 4300 digits with a ValueError of its own).
    if len(digits.lstrip("-")) > 16 or abs(int(digits)) > MAX_SAFE_INTEGER:
        raise _Refused(f"the number {_clip(digits, 24)} is too large (integers must stay within ±{MAX_SAFE_INTEGER})")
    return int(digits)


def _checked_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {_clip(text, 24)} is too large to represent")
    return value


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Duplicate keys are refused, not "last wins": a model that writes "roles" twice
    # has lost one of them, and silently keeping one would drop data unnoticed.
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f'the key "{_clip(key, 40)}" appears twice in one object')
            seen.add(key)
    return value


_DECODER = json.JSONDecoder(
    object_pairs_hook=_unique_object,
    parse_int=_checked_int,
    parse_float=_checked_float,
    parse_constant=_refuse_constant,
)

# The characters that matter for nesting: quotes, escapes and brackets.
_JSON_SPECIAL = re.compile(r'["\\\[\]{}]')
_SURROGATE = re.compile("[\ud800-\udfff]")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def text_depth(text: str) -> int:
    """The deepest bracket nesting of JSON text, brackets inside strings ignored.

    One pass over the special characters (linear in the text, whatever its shape: a
    string regex with backtracking would be quadratic on runs of unterminated quotes).
    """
    level = deepest = 0
    in_string = False
    escaped_at = -1
    for match in _JSON_SPECIAL.finditer(text):
        index = match.start()
        if index == escaped_at:
            continue
        char = text[index]
        if in_string:
            if char == '"':
                in_string = False
            elif char == "\\":
                escaped_at = index + 1
        elif char == '"':
            in_string = True
        elif char == "[" or char == "{":
            level += 1
            if level > deepest:
                deepest = level
        elif char == "]" or char == "}":
            level -= 1
    return deepest


def parse_json(text: str, max_bytes: int = MAX_SCENARIO_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """One JSON value from model text, or InvalidScenario; never any other exception.

    A leading byte-order mark is stripped. Refused: empty text, text over max_bytes,
    nesting over max_depth (measured before parsing, so 3000-deep input costs one
    linear scan and no recursion), NaN/Infinity, non-finite or unsafe numbers,
    duplicate keys, lone surrogates (escaped or raw), trailing text.
    """
    if not isinstance(text, str):
        raise InvalidScenario("the block is not text")
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise InvalidScenario("the block is empty")
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise InvalidScenario(f"it is larger than {max_bytes // 1024} KiB")
    if _SURROGATE.search(text):
        raise InvalidScenario("it contains a lone surrogate character (not valid Unicode)")
    if text_depth(text) > max_depth:
        raise InvalidScenario(f"it is nested deeper than {max_depth} levels")
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        error = InvalidScenario(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
        error.line, error.column = exc.lineno, exc.colno
        raise error from None
    except _Refused as exc:
        raise InvalidScenario(f"not acceptable JSON: {exc}") from None
    except (RecursionError, ValueError, OverflowError, MemoryError, TypeError) as exc:
        # Belt and braces: the checks above should leave none of these reachable.
        raise InvalidScenario(f"not valid JSON ({type(exc).__name__})") from None
    if has_lone_surrogate(value):
        raise InvalidScenario('it contains a lone surrogate escape such as "\\ud800" (not valid Unicode)')
    return value


def parse_json_object(text: str, max_bytes: int = MAX_SCENARIO_BYTES, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """`parse_json`, and the value must be an object."""
    value = parse_json(text, max_bytes, max_depth)
    if not isinstance(value, dict):
        raise InvalidScenario(f"it is a JSON {json_type(value)}, not a JSON object")
    return value


def parse_json_array(text: str, max_bytes: int = MAX_SCENARIO_BYTES, max_depth: int = MAX_DEPTH) -> list[Any]:
    """`parse_json`, and the value must be an array."""
    value = parse_json(text, max_bytes, max_depth)
    if not isinstance(value, list):
        raise InvalidScenario(f"it is a JSON {json_type(value)}, not a JSON array")
    return value


def has_lone_surrogate(value: Any) -> bool:
    """True if any key or string in a JSON value holds an unpaired UTF-16 surrogate, which
    UTF-8 cannot encode (a prompt, a log line or a frame would fail). Walked without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def pick_block(blocks: Iterable[Any], max_bytes: int = MAX_SCENARIO_BYTES) -> dict[str, Any]:
    """The scenario: the first fenced block (```scenario, ```json or any non-patch fence)
    whose text parses as a JSON object. A block whose closing fence never came counts
    when its text is complete JSON. Raises InvalidScenario with the first block's reason
    when none parses, or "no scenario block" when there is none.

    `blocks` are splitter Blocks (anything with `.info` and `.text`).
    """
    first_reason: str | None = None
    for block in blocks:
        if getattr(block, "info", "") == "patch":
            continue
        if getattr(block, "overflow", False):
            first_reason = first_reason or f"it is larger than {max_bytes // 1024} KiB"
            continue
        try:
            return parse_json_object(block.text, max_bytes)
        except InvalidScenario as exc:
            first_reason = first_reason or str(exc)
    raise InvalidScenario(first_reason or "no scenario block in the answer")


# ---------------------------------------------------------------------------
# Checking values
# ---------------------------------------------------------------------------

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


def json_type(value: Any) -> str:
    """The JSON type name of a parsed value: object, array, string, number, boolean, null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _check_bounds(value: Any, max_bytes: int, max_depth: int) -> None:
    if not isinstance(value, dict):
        raise InvalidScenario("it is not a JSON object")
    if depth(value) > max_depth:
        raise InvalidScenario(f"it is nested deeper than {max_depth} levels")
    try:
        size = len(json.dumps(value, ensure_ascii=False, allow_nan=False).encode())
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise InvalidScenario(f"it is not plain JSON ({_clip(str(exc), 80)})") from None
    if size > max_bytes:
        raise InvalidScenario(f"it is larger than {max_bytes // 1024} KiB")


def validate(value: Any, max_bytes: int = MAX_SCENARIO_BYTES, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """A JSON object with a non-empty string title, within the depth and size bounds."""
    if not isinstance(value, dict):
        raise InvalidScenario("it is not a JSON object")
    title = value.get("title")
    if not isinstance(title, str) or not title.strip():
        raise InvalidScenario("it has no title")
    _check_bounds(value, max_bytes, max_depth)
    return value


def parse_block(text: str, max_bytes: int = MAX_SCENARIO_BYTES) -> dict[str, Any]:
    """The scenario from the text of one fenced block: `parse_json_object`, then `validate`."""
    if not isinstance(text, str) or not text.lstrip("\ufeff").strip():
        raise InvalidScenario("no scenario block in the answer")
    return validate(parse_json_object(text, max_bytes), max_bytes)


def field_problem(key: str, value: Any) -> str | None:
    """Why `value` does not follow the schema of known field `key`, or None when it does."""
    if key == "title":
        if not isinstance(value, str) or not value.strip():
            return "the title must be a non-empty string"
    elif key in STRING_FIELDS:
        if not isinstance(value, str):
            return f"{key} must be a string, not a JSON {json_type(value)}"
    elif key in ITEM_FIELDS:
        required = ITEM_FIELDS[key]
        noun = key[:-1]
        if not isinstance(value, list):
            return f"{key} must be a list of objects, not a JSON {json_type(value)}"
        for number, item in enumerate(value, 1):
            if not isinstance(item, dict):
                return f'{noun} {number} must be an object with a string "{required}", not a JSON {json_type(item)}'
            if not isinstance(item.get(required), str):
                return f'{noun} {number} needs a string "{required}"'
            if "description" in item and not isinstance(item["description"], str):
                return f'{noun} {number}: "description" must be a string'
    elif key == "objectives":
        if not isinstance(value, list):
            return f"objectives must be a list of strings, not a JSON {json_type(value)}"
        for number, item in enumerate(value, 1):
            if not isinstance(item, str):
                return f"objective {number} must be a string, not a JSON {json_type(item)}"
    return None


def validate_created(value: Any, max_bytes: int = MAX_SCENARIO_BYTES, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """A new scenario: bounds, a title, and every known field in the schema's shape."""
    validate(value, max_bytes, max_depth)
    problems = [p for key in KNOWN_FIELDS if key in value and (p := field_problem(key, value[key]))]
    if problems:
        raise InvalidScenario("; ".join(problems))
    return value


def validate_modified(
    old: dict[str, Any],
    new: Any,
    removals: set[str] | frozenset[str] = frozenset(),
    max_bytes: int = MAX_SCENARIO_BYTES,
    max_depth: int = MAX_DEPTH,
) -> dict[str, Any]:
    """A modified scenario, checked against the user's `old` one.

    - Every top-level key of `old` is still there with the same JSON type, unless it is
      in `removals` (the keys the user asked to remove: see `requested_removals`).
    - A known field that followed the schema in `old`, or that is new, follows it in `new`.
      One that did not (an imported scenario's steps as plain strings) is only held to
      its JSON type, so such a scenario stays editable.
    """
    _check_bounds(new, max_bytes, max_depth)
    dropped = [key for key in old if key not in new and key not in removals]
    if dropped:
        raise InvalidScenario(
            f"it dropped {_keys(dropped)}, which the request did not ask to remove"
        )
    retyped = [
        f"{key} ({json_type(old[key])} → {json_type(new[key])})"
        for key in old
        if key in new and key not in removals and json_type(old[key]) != json_type(new[key])
    ]
    if retyped:
        raise InvalidScenario(f"it changed the type of {', '.join(retyped)}")
    problems = []
    for key in KNOWN_FIELDS:
        if key not in new:
            continue
        was_in_shape = key not in old or field_problem(key, old[key]) is None
        if was_in_shape and (problem := field_problem(key, new[key])):
            problems.append(problem)
    if problems:
        raise InvalidScenario("; ".join(problems))
    return new


def _keys(keys: list[str]) -> str:
    quoted = [f'"{_clip(k, 40)}"' for k in keys]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


# ---------------------------------------------------------------------------
# What the user asked to remove
# ---------------------------------------------------------------------------

_REMOVE_VERB = re.compile(
    r"\b(?:remove|removing|drop|dropping|delete|deleting|erase|strip|clear|"
    r"get\s+rid\s+of|take\s+out|do\s+away\s+with|without|no\s+more|no\s+longer\s+need)\b",
    re.I,
)
# Where a removal clause ends: a sentence mark, or a word that starts another instruction.
_CLAUSE_END = re.compile(r"[.;!?\n]|\b(?:but|keep|except|then|instead|rename|add|change|make|set|replace)\b", re.I)
# "remove the title from step 3": what follows the preposition says the target is nested.
_PREPOSITION = re.compile(r"\b(?:from|of|in|inside|within|under|on|for)\b", re.I)
# Used with match(text, pos, endpos), which anchors at pos (so no "^").
_WHOLE_DOCUMENT = re.compile(r"\s*(?:the\s+|this\s+|my\s+|our\s+)?(?:scenario|it|document|exercise|drill|json|whole\s+thing)\b", re.I)
_NESTED_TARGET = re.compile(r"\b(?:step|role|objective|item|entry)s?\b", re.I)
_SYNONYMS = {
    "objectives": ("objectives", "goals", "objective list", "list of objectives"),
    "roles": ("roles", "role list", "list of roles", "characters"),
    "steps": ("steps", "step list", "list of steps"),
    "summary": ("summary", "overview"),
    "difficulty": ("difficulty", "difficulty level"),
    "setting": ("setting",),
    "title": ("title", "name of the scenario"),
}
# A name is matched word by word: a word is a run of letters and digits, any other mark
# (not a space, "_" or "-") is a word of its own, and spaces, "_" and "-" between words
# are interchangeable ("first aid" names first_aid and first-aid).
_WORD = re.compile(r"[^\W_]+|[^\w\s-]")
# Around a name: not a letter, digit, "_" or "-" ("pre-briefing" does not name "briefing").
_JOINED = re.compile(r"[\w-]")
# A key spelled in more words than this is not looked for: it bounds the work per word of
# the message (no real request names a 16-word key).
_MAX_NAME_WORDS = 16


class _Names:
    """The names of a scenario's top-level keys, as a trie of words. A word after the first
    is keyed with a leading space when something separates it from the word before ("aid"
    in "first aid"), without one when it follows at once ("b" in "a.b"). Finding every name
    in a message costs at most _MAX_NAME_WORDS lookups per message word, whatever the keys."""

    __slots__ = ("next", "keys")

    def __init__(self) -> None:
        self.next: dict[str, _Names] = {}
        self.keys: set[str] | None = None

    def add(self, name: str, key: str) -> None:
        words = list(_WORD.finditer(name))
        if not words or len(words) > _MAX_NAME_WORDS:
            return
        node, end = self, None
        for word in words:
            text = word.group().lower()
            step = text if end is None or word.start() == end else " " + text
            node = node.next.setdefault(step, _Names())
            end = word.end()
        if node.keys is None:
            node.keys = set()
        node.keys.add(key)


def _names_of(scenario: dict[str, Any]) -> _Names:
    names = _Names()
    for key in scenario:
        if not isinstance(key, str) or not key.strip():
            continue
        spelled = re.sub(r"[_\-]+", " ", key).strip()
        for name in {key, spelled, *_SYNONYMS.get(key, ())}:
            names.add(name, key)
    return names


def _clauses(message: str) -> tuple[list[int], list[int]]:
    """The removal clauses: their starts (each verb's end) and ends, in order. A clause runs
    to the first sentence mark or word that starts another instruction, and stops at a
    preposition; one whose preposition leads to a nested target ("remove the title from step
    3") is left out. Each end is found from positions of one pass of each pattern, never by
    scanning the rest of the message again per verb; both lists only grow, since each end is
    "the first X at or after the clause's start"."""
    verbs = [match.end() for match in _REMOVE_VERB.finditer(message)]
    if not verbs:
        return [], []
    ends = [match.start() for match in _CLAUSE_END.finditer(message)]
    preps = [(match.start(), match.end()) for match in _PREPOSITION.finditer(message)]
    prep_starts = [start for start, _ in preps]
    nested: dict[int, bool] = {}  # by preposition: it leads to a nested target
    starts: list[int] = []
    clause_ends: list[int] = []
    for start in verbs:
        at = bisect.bisect_left(ends, start)
        end = ends[at] if at < len(ends) else len(message)
        at = bisect.bisect_left(prep_starts, start)
        if at < len(preps) and preps[at][0] < end:
            prep_start, prep_end = preps[at]
            if prep_start not in nested:
                # "remove the roles from the scenario" removes the roles; "remove the title
                # from step 3" names a nested field: not a key.
                nested[prep_start] = not _WHOLE_DOCUMENT.match(message, prep_end, end) and bool(
                    _NESTED_TARGET.search(message[prep_end: prep_end + 40])
                )
            if nested[prep_start]:
                continue
            end = prep_start
        starts.append(start)
        clause_ends.append(end)
    return starts, clause_ends


def requested_removals(message: str, scenario: dict[str, Any] | None) -> set[str]:
    """Top-level keys of `scenario` that `message` asks to remove.

    "remove the objectives", "drop the setting and the summary", "delete difficulty",
    "rewrite it without the roles". A mention after a preposition that names something
    inside the scenario ("remove the title from step 3") is not a removal of the key,
    nor is a singular item ("remove step 4" removes an item, not `steps`).

    A key counts when one of its names lies wholly inside a removal clause (see `_clauses`),
    with no letter, digit, "_" or "-" joined to it (the clause's own edges count as free).
    Linear in the message plus the keys: one pass of each pattern over the message, and
    one walk of the keys' names (a trie) from each word that starts inside a clause.
    """
    if not isinstance(message, str) or not isinstance(scenario, dict) or not scenario:
        return set()
    starts, clause_ends = _clauses(message)
    if not starts:
        return set()
    clause_at = {start: end for start, end in zip(starts, clause_ends)}
    names = _names_of(scenario)
    words = [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(message)]
    size = len(message)
    found: dict[int, set[str]] = {}
    last = -1  # the last clause starting at or before the current word
    for first, (start, end, text) in enumerate(words):
        while last + 1 < len(starts) and starts[last + 1] <= start:
            last += 1
        if last < 0 or start >= clause_ends[last]:
            continue  # no clause holds this word (clause ends only grow)
        node = names.next.get(text)
        index = first
        free_before: bool | None = None
        while node is not None:
            if node.keys is not None and id(node) not in found:
                if free_before is None:
                    free_before = start == 0 or not _JOINED.match(message, start - 1)
                free_after = end == size or not _JOINED.match(message, end)
                if _inside(start, end, free_before, free_after, starts, clause_ends, last, clause_at):
                    found[id(node)] = node.keys
            index += 1
            if index == len(words) or index - first >= _MAX_NAME_WORDS:
                break
            next_start, next_end, next_text = words[index]
            node = node.next.get(next_text if next_start == end else " " + next_text)
            end = next_end
    return set().union(*found.values()) if found else set()


def _inside(start: int, end: int, free_before: bool, free_after: bool,
            starts: list[int], clause_ends: list[int], last: int, clause_at: dict[int, int]) -> bool:
    """Whether a name at [start, end) lies inside a clause, `last` being the last clause that
    starts at or before it. A clause is read as a text of its own: its first and last
    characters have nothing before or after them, so a name joined to the verb before it
    counts only at the clause's very start, one joined to what follows only at its very end."""
    if not free_before:
        clause_end = clause_at.get(start)
        return clause_end is not None and end <= clause_end and (free_after or end == clause_end)
    if free_after:
        return end <= clause_ends[last]  # the latest clause ends furthest
    at = bisect.bisect_left(clause_ends, end, 0, last + 1)
    return at <= last and clause_ends[at] == end


# ---------------------------------------------------------------------------
# What changed, as pointers and in words
# ---------------------------------------------------------------------------

def _pointer(path: tuple[str | int, ...]) -> str:
    # JSON Pointer (RFC 6901): "~" and "/" inside a key are escaped.
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def split_pointer(pointer: str) -> list[str]:
    """The reference tokens of an RFC 6901 pointer ("" is the whole document).

    Raises ValueError with a reason for a pointer that does not start with "/" or has
    a "~" not followed by 0 or 1.
    """
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ValueError("a path must start with '/' (or be '' for the whole document)")
    tokens = pointer[1:].split("/")
    for token in tokens:
        if "~" in token and re.search(r"~(?![01])", token):
            raise ValueError(f"'~' must be followed by 0 or 1 (in '{_clip(token, 40)}')")
    return [t.replace("~1", "/").replace("~0", "~") for t in tokens]


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


def described_diff(old: Any, new: Any) -> list[dict[str, str]]:
    """`diff`, each change with its words: [{op, path, text}]."""
    return [{**change, "text": describe_change(change, old, new)} for change in diff(old, new)]


_MISSING = object()


def _lookup(doc: Any, tokens: list[str]) -> Any:
    """The value at tokens, or _MISSING (never raises)."""
    node = doc
    for token in tokens:
        if isinstance(node, dict):
            node = node.get(token, _MISSING)
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return _MISSING
        if node is _MISSING:
            return node
    return node


_NOUNS = {"roles": "role", "steps": "step", "objectives": "objective"}


def _label(tokens: list[str], doc: Any) -> str:
    """Words for the item a path names: "role Journalist", "step 4", "the setting"."""
    if not tokens:
        return "the scenario"
    head = tokens[0]
    if len(tokens) >= 2 and head in _NOUNS:
        noun = _NOUNS[head]
        index = tokens[1]
        if head == "roles":
            name = _lookup(doc, ["roles", index, "name"])
            if isinstance(name, str) and name.strip():
                return f"role {_clip(name.strip(), 60)}"
        if index == "-":
            return f"a new {noun}"
        if index.isdigit():
            return f"{noun} {int(index) + 1}"
    if len(tokens) == 1:
        return f"the {head}"
    return "/".join(tokens)


def _short(value: Any) -> str | None:
    """A value short enough to quote in a change's words, else None."""
    if isinstance(value, str) and 0 < len(value.strip()) <= 40 and "\n" not in value:
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def describe(op: str, tokens: list[str], before: Any, value: Any = _MISSING, from_tokens: list[str] | None = None) -> str:
    """Words for one change: `op` at `tokens`, `before` the document it applies to,
    `value` the new value (add/replace/copy), `from_tokens` the source (move/copy)."""
    if op == "test":
        return f"checked {_label(tokens, before)}"
    if op in ("move", "copy") and from_tokens is not None:
        verb = "moved" if op == "move" else "copied"
        source = _label(from_tokens, before)
        if len(tokens) == 2 and tokens[0] in _NOUNS and from_tokens[:1] == tokens[:1]:
            where = "the end" if tokens[1] == "-" else f"position {int(tokens[1]) + 1}" if tokens[1].isdigit() else tokens[1]
            return f"{verb} {source} to {where}"
        return f"{verb} {source} to {_label(tokens, before)}"
    if not tokens:
        return "replaced the whole scenario" if op == "replace" else f"{op} the scenario"
    head = tokens[0]
    if len(tokens) == 1:
        if op == "add" and isinstance(before, dict) and head in before:
            op = "replace"  # add on an existing member replaces it (RFC 6902 4.1)
        if op == "remove":
            return f"removed the {head}"
        if op == "add":
            return f"added the {head}"
        if head == "title":
            return "renamed the title"
        short = _short(value)
        if head in STRING_FIELDS and short is not None:
            return f"changed the {head} to {short}"
        if head in STRING_FIELDS:
            return f"rewrote the {head}"
        return f"changed the {head}"
    if head in _NOUNS and len(tokens) == 2:
        noun = _NOUNS[head]
        if op == "remove":
            return f"removed {_label(tokens, before)}"
        if op == "add":
            if head == "roles" and isinstance(value, dict) and isinstance(value.get("name"), str) and value["name"].strip():
                return f"added role {_clip(value['name'].strip(), 60)}"
            if head == "steps" and isinstance(value, dict) and isinstance(value.get("title"), str) and value["title"].strip():
                return f"added step {_clip(value['title'].strip(), 60)}"
            if head == "objectives" and _short(value) is not None:
                return f"added objective {_short(value)}"
            return f"added {noun}"
        return f"changed {_label(tokens, before)}"
    if head in ("roles", "steps") and len(tokens) == 3:
        field = tokens[2]
        item = _label(tokens[:2], before)
        if op == "replace" and field == ITEM_FIELDS[head] and _short(value) is not None:
            return f"renamed {item} to {_short(value)}"
        if op == "remove":
            return f"removed the {field} of {item}"
        if op == "add" and _lookup(before, tokens) is _MISSING:
            return f"added a {field} to {item}"
        return f"changed the {field} of {item}"
    where = "/".join(tokens)
    return {"add": f"added {where}", "remove": f"removed {where}"}.get(op, f"changed {where}")


def describe_change(change: dict[str, str], old: Any, new: Any) -> str:
    """Words for one `diff` change: "renamed the title", "added role Journalist", "removed step 4"."""
    try:
        tokens = split_pointer(change.get("path", ""))
    except ValueError:
        return f"{change.get('op', 'changed')} {change.get('path')}"
    op = change.get("op", "replace")
    if op == "replace" and not tokens and old is None:
        return "created the scenario"
    value = _lookup(new, tokens) if op != "remove" else _MISSING
    return describe(op, tokens, old, value)
