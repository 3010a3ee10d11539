"""The plain edits the offline model understands: a small grammar over one message.

`parse_request(message, scenario)` splits a message into clauses and reads each one as an
`Edit` ("rename it to X", "add a role for a journalist", "remove step 2", "make it harder"),
returning the edits and the clauses it could not read. Applying them is `edit.py`'s job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from upstream.offline import text as t
from upstream.offline.data import phrase

ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6,
    "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10, "last": -1, "final": -1,
}



@dataclass
class Edit:
    """One parsed edit.

    ``extendable`` edits end in free text, so a following clause that parses
    as nothing may belong to them ("set summary to fire and rescue" was split
    at "and"). ``carry`` is the verb phrase to repeat for a bare follow-up
    ("remove step 2 and 3" -> "remove step 3").
    """

    kind: str
    args: dict[str, Any]
    source: str
    extendable: bool = False
    carry: str = ""


_Parser = Callable[[str, dict], "Edit | None"]

_HARD_SPLIT = re.compile(r"\s*[\n;]+\s*")
_SOFT_SPLIT = re.compile(
    r"(,?\s+and\s+then\s+|,?\s+and\s+also\s+|,?\s+and\s+|,\s*then\s+|\s+then\s+|,\s*also\s+|"
    r",\s+|(?<=[.!?])\s+)",
    re.I,
)
_LEADING_FILLER = re.compile(
    r"^(?:please|pls|also|then|and|now|finally|next|ok(?:ay)?|so|just|"
    r"(?:can|could|would|will)\s+you(?:\s+please)?|i\s+want\s+you\s+to|"
    r"i(?:'d|\s+would)\s+like\s+(?:you\s+)?to|i\s+want\s+to|let'?s|let\s+us|go\s+ahead\s+and)"
    r"\b[\s,:]*",
    re.I,
)
_TRAILING_FILLER = re.compile(r"[\s,]*(?:please|thanks|thank\s+you|too|as\s+well)?[\s!?]*$", re.I)
_VERB_REMOVE = r"(?:remove|delete|drop|cut|skip|get\s+rid\s+of|take\s+out)"
_ART = r"(?:(?:a|an|the|one|another|new|extra|more|additional)\s+)*"


def _clean_clause(clause: str) -> str:
    text = clause.strip()
    for _ in range(5):
        stripped = _LEADING_FILLER.sub("", text).strip()
        if stripped == text:
            break
        text = stripped
    return _TRAILING_FILLER.sub("", text).strip()


def _match(pattern: str, text: str) -> re.Match[str] | None:
    return re.fullmatch(pattern, text, re.I | re.S)


def _parse_rename_role(text: str, scenario: dict) -> Edit | None:
    match = (
        _match(r"(?:rename|change)\s+(?:the\s+)?role\s+(?:of\s+|called\s+|named\s+)?(?P<old>.+?)"
               r"\s+(?:to|into|as)\s+(?P<new>.+)", text)
        or _match(r"(?:rename|change)\s+(?:the\s+)?(?P<old>.+?)\s+role\s+(?:to|into|as)\s+"
                  r"(?P<new>.+)", text)
    )
    if not match:
        return None
    old, new = t.clean_name(match.group("old")), t.clean_name(match.group("new"))
    if not old or not new:
        return None
    return Edit("rename_role", {"old": old, "new": new}, text)


def _parse_title(text: str, scenario: dict) -> Edit | None:
    patterns = (
        r"(?:rename|retitle|re-title)(?:\s+(?:it|this|this\s+scenario|the\s+scenario|scenario|"
        r"the\s+exercise|the\s+title|title))?\s*(?:to|as|:)\s*(?P<v>.+)",
        r"(?:change|set|update|make|modify|switch|edit)\s+(?:the\s+|its\s+)?(?:scenario(?:'s)?\s+)?"
        r"(?:title|name)(?:\s+from\s+.+?)?\s*(?:to\s+be\b|to|as|=|:|into)\s*(?P<v>.+)",
        r"(?:call|name|title)\s+(?:it|this|the\s+scenario)\s+(?P<v>.+)",
        r"(?:new\s+)?title\s*(?:[:=]|should\s+be|is)\s*(?P<v>.+)",
        r"(?:rename|retitle)\s+(?:it|this|the\s+scenario)\s+(?P<v>.+)",
    )
    for pattern in patterns:
        match = _match(pattern, text)
        if match:
            value = t.clean_name(match.group("v"))
            return Edit("title", {"value": value}, text, extendable=True) if value else None
    return None


def _parse_difficulty(text: str, scenario: dict) -> Edit | None:
    target = (r"(?:it|this|this\s+scenario|"
              r"the\s+(?:scenario|exercise|game|drill|simulation|role-?play))")
    match = _match(
        rf"make\s+(?:{target}\s+)?(?:a\s+)?(?:(?:bit|little|lot|tad)\s+)?"
        r"(?:much\s+|slightly\s+|even\s+|a\s+bit\s+)?(?P<dir>harder|tougher|more\s+(?:difficult|"
        r"challenging|advanced)|easier|simpler|less\s+(?:difficult|challenging|hard))\.?", text)
    if match:
        word = match.group("dir").lower()
        harder = word in ("harder", "tougher") or word.startswith("more")
        return Edit("harder" if harder else "easier", {}, text)
    match = _match(r"(?P<dir>increase|raise|bump\s+up|up|decrease|lower|reduce|drop)\s+"
                   r"(?:the\s+)?(?:difficulty|level)(?:\s+level)?"
                   r"(?:\s+a\s+(?:bit|notch|level))?\.?",
                   text)
    if match:
        harder = match.group("dir").lower() in ("increase", "raise", "bump up", "up")
        return Edit("harder" if harder else "easier", {}, text)
    match = _match(rf"make\s+(?:{target}\s+)?(?:an?\s+)?(?P<lvl>beginner|intermediate|advanced|"
                   r"easy|medium|hard|expert|basic)(?:\s+(?:level|scenario|one|difficulty))?\.?",
                   text)
    if match:
        level = t.difficulties()[phrase("difficulty_synonyms")[match.group("lvl").lower()]]
        return Edit("set", {"key": "difficulty", "value": level}, text)
    return None


def _split_name_description(rest: str) -> tuple[str, str]:
    """Split "Name: description" / "Name who does X" into its two parts."""
    match = re.match(r"(?P<n>.+?)\s*(?::|\s[-–—]\s|,\s+|\s+(?:who|that|which)\s+)(?P<d>.+)",
                     rest, re.S)
    if not match:
        return rest, ""
    return match.group("n"), match.group("d")


def _role_name(text: str) -> str:
    """"a journalist" -> "Journalist", "the press officer role" -> "Press Officer": no articles, no role words."""
    name = t.clean_name(text)
    for _ in range(3):
        stripped = re.sub(r"^(?:a|an|the|one|another|new|extra|some|additional)\s+", "", name, flags=re.I)
        stripped = re.sub(r"\s+(?:role|character|participant|player|person)$", "", stripped, flags=re.I)
        if stripped == name:
            break
        name = stripped
    if name.lower() in ("a", "an", "the", "new", "another", "role", "someone", "somebody", "person"):
        return ""
    return t.smart_title(name)


def _parse_add_role(text: str, scenario: dict) -> Edit | None:
    name, description = "", ""
    match = _match(rf"add\s+{_ART}(?:role|character|participant|player|person)\b\s*"
                   r"(?:(?:called|named|for|of)\b\s*|[:\-]\s*)?(?P<rest>.+)", text)
    if match:
        name, description = _split_name_description(match.group("rest"))
    else:
        match = (
            _match(r"add\s+(?P<n>.+?)\s+as\s+(?:a\s+|an\s+|another\s+|new\s+)*(?:role|character|"
                   r"participant)\b(?:\s*[:,\-]\s*|\s+(?:who|that|which)\s+)?(?P<d>.*)", text)
            or _match(r"add\s+(?:a\s+|an\s+|the\s+|another\s+|new\s+)*(?P<n>.+?)\s+role\b"
                      r"(?:\s*[:,\-]\s*|\s+(?:who|that|which)\s+)?(?P<d>.*)", text)
        )
        if match:
            name, description = match.group("n"), match.group("d")
    name = _role_name(name)
    if not match or not name:
        return None
    description = t.clean_value(description)
    return Edit("add_role", {"name": name, "description": description}, text, extendable=True)


def _parse_remove_role(text: str, scenario: dict) -> Edit | None:
    match = (
        _match(rf"{_VERB_REMOVE}\s+(?:the\s+)?(?:role|character|participant|player)\s+"
               r"(?:of\s+|called\s+|named\s+)?(?P<ref>.+)", text)
        or _match(rf"{_VERB_REMOVE}\s+(?:the\s+)?(?P<ref>.+?)\s+(?:role|character)", text)
    )
    if not match:
        return None
    ref = t.clean_name(match.group("ref"))
    number = parse_ordinal_or_number(ref)
    if number is not None:
        return Edit("remove_role", {"number": number}, text, carry="remove role")
    return Edit("remove_role", {"ref": ref}, text, carry="remove role") if ref else None


def _parse_position(rest: str) -> tuple[str, int | None, str]:
    """Strip a trailing position ("at the start", "after step 2") from step text.

    Returns (text, index, relation) where relation is "at", "after" or "before"
    and index is 0-based (-1 for the end), or None when no position was given.
    """
    patterns = (
        (r"\s+(?:at\s+the\s+(?:start|beginning|top)|first)$", "at", 0),
        (r"\s+(?:at\s+the\s+end|last)$", "at", -1),
        (r"\s+(?:as\s+(?:the\s+)?step|at\s+position)\s+(?P<n>\d{1,4})$", "at", None),
        (r"\s+(?P<rel>after|before)\s+step\s+(?P<n>\d{1,4})$", "", None),
    )
    for pattern, relation, fixed in patterns:
        match = re.search(pattern, rest, re.I)
        if match:
            index = fixed if fixed is not None else int(match.group("n")) - 1
            relation = relation or match.group("rel").lower()
            return rest[: match.start()], index, relation
    return rest, None, "at"


def _parse_add_step(text: str, scenario: dict) -> Edit | None:
    match = _match(rf"add\s+{_ART}(?P<adj>(?:final|last|first|opening|closing)\s+)?"
                   r"(?:step|phase|stage)\b\s*(?:(?:called|named|titled)\b\s*|[:\-]\s*)?"
                   r"(?P<rest>.+)",
                   text)
    if match:
        rest, index, relation = _parse_position(match.group("rest"))
        title, description = _split_step(rest)
        adjective = (match.group("adj") or "").strip().lower()
        if index is None and adjective:
            index = 0 if adjective in ("first", "opening") else -1
    else:
        match = _match(r"add\s+(?:a\s+|an\s+|another\s+|new\s+)*(?P<t>.+?)\s+(?:step|phase|stage)"
                       r"(?:\s*[:\-]\s*(?P<d>.+))?", text)
        if not match:
            return None
        rest, index, relation = _parse_position(match.group("t"))
        title, description = rest, match.group("d") or ""
    title, position_index, position_relation = _parse_position(title)
    if index is None:
        index, relation = position_index, position_relation
    title = t.smart_title(t.clean_name(title))
    if not title or title.lower() in ("a", "an", "the", "new", "another"):
        return None
    args = {"title": title, "description": t.clean_value(description),
            "index": index, "relation": relation}
    return Edit("add_step", args, text, extendable=True)


def _split_step(rest: str) -> tuple[str, str]:
    match = re.match(r"(?P<t>.+?)\s*(?::|\s[-–—]\s)(?P<d>.+)", rest, re.S)
    return (match.group("t"), match.group("d")) if match else (rest, "")


def parse_ordinal_or_number(text: str) -> int | None:
    """1-based index from "2", "#2", "number 2", "2nd", "second"; -1 for "last"."""
    text = text.strip().lower()
    match = re.fullmatch(r"(?:number\s+|no\.?\s*|#\s*)?(\d{1,4})(?:st|nd|rd|th)?", text)
    if match:
        return int(match.group(1))
    return ORDINALS.get(text)


def _parse_remove_indexed(text: str, nouns: str, kind: str, carry: str) -> Edit | None:
    """Shared grammar of "remove step 2" / "remove the last objective" / "remove step X"."""
    match = _match(rf"{_VERB_REMOVE}\s+(?:the\s+)?(?P<ord>{'|'.join(ORDINALS)})\s+(?:{nouns})",
                   text)
    if match:
        return Edit(kind, {"number": ORDINALS[match.group("ord").lower()]}, text, carry=carry)
    match = _match(rf"{_VERB_REMOVE}\s+(?:the\s+)?(?:{nouns})s?\s*(?:number\s+|no\.?\s*|#\s*)?"
                   r"(?P<n>\d{1,4})(?:st|nd|rd|th)?\.?", text)
    if match:
        return Edit(kind, {"number": int(match.group("n"))}, text, carry=carry)
    match = (
        _match(rf"{_VERB_REMOVE}\s+(?:the\s+)?(?:{nouns})\s*(?:(?:called|titled|named|about|that\s+"
               r"says)\b\s*|[:\-]\s*)?(?P<ref>.+)", text)
        or _match(rf"{_VERB_REMOVE}\s+(?:the\s+)?(?P<ref>.+?)\s+(?:{nouns})", text)
    )
    if match:
        ref = t.clean_name(match.group("ref"))
        number = parse_ordinal_or_number(ref)
        if number is not None:
            return Edit(kind, {"number": number}, text, carry=carry)
        return Edit(kind, {"ref": ref}, text, carry=carry) if ref else None
    return None


def _parse_remove_step(text: str, scenario: dict) -> Edit | None:
    return _parse_remove_indexed(text, r"step|phase|stage", "remove_step", "remove step")


def _parse_remove_objective(text: str, scenario: dict) -> Edit | None:
    return _parse_remove_indexed(text, r"objective|goal|aim", "remove_objective",
                                 "remove objective")


def _parse_add_objective(text: str, scenario: dict) -> Edit | None:
    match = (
        _match(rf"add\s+{_ART}(?:learning\s+)?(?:objective|goal|aim)s?\b\s*"
               r"(?:(?:that|to|of|:)\b\s*|[:\-]\s*)?(?P<t>.+)", text)
        or _match(r"add\s+(?P<t>.+?)\s+(?:as|to\s+the)\s+(?:an?\s+|another\s+|new\s+)?"
                  r"(?:objective|goal)s?", text)
    )
    if not match:
        return None
    value = t.clean_value(match.group("t")).rstrip(" .;,")
    if not value:
        return None
    return Edit("add_objective", {"text": value[:1].upper() + value[1:]}, text, extendable=True)


def _resolve_field(name: str, scenario: dict) -> str | None:
    """Map a field name from the message to a top-level key, or None if unknown."""
    norm = re.sub(r"[\s\-]+", "_", name.strip().lower()).strip("_")
    norm = re.sub(r"^(?:the_|its_|scenario_|scenario's_)", "", norm)
    if not norm:
        return None
    for key in scenario:
        if str(key).lower() == norm:
            return str(key)
    target = phrase("field_synonyms").get(norm, norm)
    if target in ("title", "summary", "setting", "difficulty"):
        return target
    for key in scenario:
        if str(key).lower() == target:
            return str(key)
    prefixed = [str(key) for key in scenario if str(key).lower().startswith(norm + "_")]
    if len(prefixed) == 1:
        return prefixed[0]
    return target if target in phrase("known_extras") else None


def _settable(key: str, scenario: dict) -> bool:
    """Only scalar keys and lists of strings can be set from one line of text."""
    if key in ("roles", "steps"):
        return False
    value = scenario.get(key, phrase("known_extras").get(key))
    if isinstance(value, dict):
        return False
    if isinstance(value, list):
        return all(isinstance(item, str) for item in value)
    return True


def _parse_set(text: str, scenario: dict) -> Edit | None:
    match = (
        _match(r"(?:set|change|update|make|modify|switch|edit)\s+(?P<f>[^\W\d][\w\s'\-]{0,40}?)\s*"
               r"(?:to\s+be\b|to|=|:|into|as)\s*(?P<v>.+)", text)
        or _match(r"(?P<f>[^\W\d][\w\s'\-]{0,40}?)\s*(?:[:=]|should\s+be|must\s+be)\s*(?P<v>.+)",
                  text)
    )
    if not match:
        return None
    key = _resolve_field(match.group("f"), scenario)
    if key is None or not _settable(key, scenario):
        return None
    raw = t.clean_value(match.group("v"))
    if not raw:
        return None
    if key == "title":
        return Edit("title", {"value": t.clean_name(raw)}, text, extendable=True)
    return Edit("set", {"key": key, "value": raw}, text, extendable=True)


def _parse_generic_remove(text: str, scenario: dict) -> Edit | None:
    """"remove the Observer": accept it when the name matches exactly one item."""
    match = _match(rf"{_VERB_REMOVE}\s+(?:the\s+)?(?P<ref>.+)", text)
    if not match:
        return None
    ref = t.clean_name(match.group("ref")).lower()
    if any(role.name.lower() == ref for role in t.roles(scenario)):
        return Edit("remove_role", {"ref": ref}, text, carry="remove")
    if any(step.name.lower() == ref for step in t.steps(scenario)):
        return Edit("remove_step", {"ref": ref}, text, carry="remove")
    if any(t.norm_text(objective) == t.norm_text(ref) for objective in t.objectives(scenario)):
        return Edit("remove_objective", {"ref": ref}, text, carry="remove")
    return None


# Order matters: specific phrasings first, the catch-all "set X to Y" and the
# name-only remove last, so "rename role A to B" is never read as a new title.
_PARSERS: tuple[_Parser, ...] = (
    _parse_rename_role,
    _parse_difficulty,
    _parse_title,
    _parse_add_step,
    _parse_add_objective,
    _parse_add_role,
    _parse_remove_step,
    _parse_remove_objective,
    _parse_remove_role,
    _parse_set,
    _parse_generic_remove,
)


def _parse_clause(clause: str, scenario: dict) -> Edit | None:
    text = _clean_clause(clause)
    if not text:
        return None
    for parser in _PARSERS:
        edit = parser(text, scenario)
        if edit is not None:
            edit.source = clause.strip()
            return edit
    return None


def parse_request(message: str, scenario: dict) -> tuple[list[Edit], list[str]]:
    """Split a message into edits; return (edits, clauses that parsed as nothing).

    Newlines and ";" always separate edits. " and ", commas, "then" and
    sentence ends only might: a piece that parses as nothing is glued back to
    the free-text edit before it, so values may contain them.
    """
    edits: list[Edit] = []
    unparsed: list[str] = []
    for chunk in _HARD_SPLIT.split(message):
        if not chunk.strip():
            continue
        pieces = _SOFT_SPLIT.split(chunk)
        last: Edit | None = None
        pending: str | None = None
        for position in range(0, len(pieces), 2):
            piece = pieces[position]
            separator = pieces[position - 1] if position else ""
            if not piece.strip():
                continue
            edit = _parse_clause(piece, scenario)
            if edit is not None:
                if pending is not None:
                    unparsed.append(pending)
                    pending = None
                edits.append(edit)
                last = edit
                continue
            if pending is not None:
                pending += separator + piece
                continue
            if last is not None and last.extendable:
                joined = _parse_clause(last.source + separator + piece, scenario)
                if joined is not None and joined.kind == last.kind:
                    edits[-1] = last = joined
                    continue
            if last is not None and last.carry:
                carried = _parse_clause(f"{last.carry} {piece}", scenario)
                if carried is not None:
                    carried.carry = last.carry
                    edits.append(carried)
                    last = carried
                    continue
            pending = piece
        if pending is not None:
            unparsed.append(pending)
    return edits, [text.strip() for text in unparsed if text.strip()]

