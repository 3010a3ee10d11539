"""The plain edits the offline model understands: a small grammar over one message.

`parse_request(message, scenario)` splits a message into clauses and reads each one as an
`Edit` ("rename it to X", "add a role for a journalist", "remove step 2", "make it harder"),
returning the edits and the clauses it could not read. Applying them is `edit.py`'s job.

Everyday phrasings count too: "can you add a journalist?", "please include a journalist
role", "bring in a mediator", "get rid of the Observer", "rename the Customer to Client",
"add a step where the generator fails", "add an objective about keeping a log".

Cost: linear in the message. Whitespace is collapsed before any pattern runs, no pattern
nests repetitions that can split the same text two ways (article runs are possessive), the
pieces glued back to a free-text edit are re-read once per run rather than once per piece,
and lookups into the scenario go through `Scope`'s dictionaries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
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


_Parser = Callable[[str, "Scope"], "Edit | None"]

# A message holds at most this many edits; the rest is left for another message. Applying an
# edit may look through a whole list of the scenario, so the cap keeps a message of thousands
# of tiny clauses from costing (clauses x scenario size).
MAX_EDITS = 40
# When the clauses after a free-text edit do not all belong to it, it is extended one clause
# at a time, at most this many times (each try re-reads the joined text).
MAX_STEPWISE_JOINS = 8
# In the unparsed list when the message held more edits than MAX_EDITS (the rest was not read).
TOO_MANY = "\x00too many edits"

_HARD_SPLIT = re.compile(r"[\n;]+")
# Whitespace is collapsed before this runs, so each alternative reads a bounded text.
_SOFT_SPLIT = re.compile(
    r"(,? and then |,? and also |,? and |, ?then | then |, ?also |, |(?<=[.!?]) )",
    re.I,
)
_LEADING_FILLER = re.compile(
    r"^(?:please|pls|also|then|and|now|finally|next|ok(?:ay)?|so|just|"
    r"(?:can|could|would|will)\s+you(?:\s+please)?|i\s+want\s+you\s+to|"
    r"i(?:'d|\s+would)\s+like\s+(?:you\s+)?to|i\s+want\s+to|let'?s|let\s+us|go\s+ahead\s+and|"
    r"we\s+(?:also\s+)?(?:need|want)\s+to|i\s+need\s+you\s+to)"
    r"\b[\s,:]*",
    re.I,
)
_VERB_REMOVE = r"(?:remove|delete|drop|cut|skip|get\s+rid\s+of|take\s+out|lose|ditch|scrap)"
# Verbs that add something: "add", "include", "bring in a journalist", "put in a step".
_VERB_ADD = r"(?:add|include|insert|introduce|append|create|bring\s+in|put\s+in|throw\s+in|add\s+in)"
# Possessive (`*+`): once the articles are read they are never given back one by one, which
# would retry everything after them for each split of a long run of articles ("a a a a ...").
_ART = r"(?:(?:a|an|the|one|another|new|extra|more|additional|second|third)\s+)*+"
# "... to the roles", "... to the scenario": where the new item goes, which is already clear.
_TO_THE_LIST = re.compile(r"\s+(?:to|into|in|for)\s+(?:the|this|our|my)\s+(?:roles?|cast|team|scenario|exercise|"
                          r"list|line-?up|game|drill|simulation|role-?play|mix|steps|objectives|goals)$", re.I)


class Scope:
    """The scenario a message is parsed against, with the lookups parsers need, each built once.

    A parser asks "is there a role called X?" or "which key is 'duration'?" for every clause;
    answering from a dictionary keeps a long message against a large scenario linear.
    """

    def __init__(self, scenario: dict) -> None:
        self.scenario = scenario
        self._keys: dict[str, str] | None = None
        self._prefixed: dict[str, list[str]] | None = None
        self._names: dict[str, set[str]] | None = None

    def key(self, lowered: str) -> str | None:
        """The scenario's own key whose lower case is `lowered`."""
        if self._keys is None:
            self._keys = {}
            for key in self.scenario:
                self._keys.setdefault(str(key).lower(), str(key))
        return self._keys.get(lowered)

    def prefixed(self, lowered: str) -> list[str]:
        """Keys that start with `lowered` + "_" ("duration" -> ["duration_minutes"])."""
        if self._prefixed is None:
            self._prefixed = {}
            for key in self.scenario:
                text = str(key)
                lower = text.lower()
                # A field named in a message is at most 41 characters long (see _parse_set).
                for index, char in enumerate(lower[:48]):
                    if char == "_":
                        self._prefixed.setdefault(lower[:index], []).append(text)
        return self._prefixed.get(lowered, [])

    def names(self, kind: str) -> set[str]:
        """Normalised names of the roles, steps or objectives."""
        if self._names is None:
            self._names = {
                "roles": {t.norm_text(item.name) for item in t.roles(self.scenario)},
                "steps": {t.norm_text(item.name) for item in t.steps(self.scenario)},
                "objectives": {t.norm_text(text) for text in t.objectives(self.scenario)},
            }
        return self._names[kind]


def _clean_clause(clause: str) -> str:
    text = clause.strip()
    for _ in range(5):
        stripped = _LEADING_FILLER.sub("", text).strip()
        if stripped == text:
            break
        text = stripped
    return t.strip_trailing_filler(text).strip()


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.I | re.S)


def _match(pattern: str, text: str) -> re.Match[str] | None:
    return _compiled(pattern).fullmatch(text)


# The first words an edit can start with; any other clause is an edit only as "field: value"
# (or "field should be value"). Checking this first lets a piece that is no edit, the common
# case in a long message, skip the dozen parsers.
_OPENING_WORDS = frozenset({
    "rename", "retitle", "re-title", "change", "make", "increase", "raise", "bump", "up", "decrease", "lower",
    "reduce", "drop", "set", "update", "modify", "switch", "edit", "call", "name", "title", "new", "add", "include",
    "insert", "introduce", "append", "create", "bring", "put", "throw", "remove", "delete", "cut", "skip", "get",
    "take", "lose", "ditch", "scrap",
})
_FIELD_VALUE = re.compile(r"[:=]|\b(?:should|must)\s+be\b|\btitle\s+is\b", re.I)


def _may_be_an_edit(text: str) -> bool:
    first = text.split(" ", 1)[0].lower()
    return first in _OPENING_WORDS or bool(_FIELD_VALUE.search(text[:80]))


def _parse_rename_role(text: str, scope: Scope) -> Edit | None:
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


def _parse_title(text: str, scope: Scope) -> Edit | None:
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


def _parse_difficulty(text: str, scope: Scope) -> Edit | None:
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


def _parse_add_role(text: str, scope: Scope) -> Edit | None:
    name, description = "", ""
    match = _match(rf"{_VERB_ADD}\s+{_ART}(?:role|character|participant|player|person)\b\s*"
                   r"(?:(?:called|named|for|of)\b\s*|[:\-]\s*)?(?P<rest>.+)", text)
    if match:
        name, description = _split_name_description(_TO_THE_LIST.sub("", match.group("rest")))
    else:
        match = (
            _match(rf"{_VERB_ADD}\s+(?P<n>.+?)\s+as\s+(?:a\s+|an\s+|another\s+|new\s+)*+(?:role|character|"
                   r"participant)\b(?:\s*[:,\-]\s*|\s+(?:who|that|which)\s+)?(?P<d>.*)", text)
            or _match(rf"{_VERB_ADD}\s+(?:a\s+|an\s+|the\s+|another\s+|new\s+)*+(?P<n>.+?)\s+role\b"
                      r"(?:\s*[:,\-]\s*|\s+(?:who|that|which)\s+)?(?P<d>.*)", text)
        )
        if match:
            name, description = match.group("n"), _TO_THE_LIST.sub("", match.group("d"))
    name = _role_name(name)
    if not match or not name:
        return None
    description = t.clean_value(description)
    return Edit("add_role", {"name": name, "description": description}, text, extendable=True, carry="add role")


def _parse_remove_role(text: str, scope: Scope) -> Edit | None:
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


def _parse_add_step(text: str, scope: Scope) -> Edit | None:
    match = _match(rf"{_VERB_ADD}\s+{_ART}(?P<adj>(?:final|last|first|opening|closing)\s+)?"
                   r"(?:step|phase|stage)\b\s*(?:(?:called|named|titled)\b\s*|[:\-]\s*)?"
                   r"(?P<rest>.+)",
                   text)
    if match:
        rest, index, relation = _parse_position(match.group("rest"))
        event = re.match(r"(?:where|in\s+which|during\s+which|when|in\s+case)\s+(?P<e>.+)", rest, re.I | re.S)
        topic = re.match(r"(?:about|on|for|covering|with)\s+(?P<e>.+)", rest, re.I | re.S)
        if event:
            return _event_step(event.group("e"), index, relation, text)
        title, description = _split_step(topic.group("e") if topic else rest)
        adjective = (match.group("adj") or "").strip().lower()
        if index is None and adjective:
            index = 0 if adjective in ("first", "opening") else -1
    else:
        match = _match(rf"{_VERB_ADD}\s+(?:a\s+|an\s+|another\s+|new\s+)*+(?P<t>.+?)\s+(?:step|phase|stage)"
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


def _event_step(event: str, index: int | None, relation: str, text: str) -> Edit | None:
    """"add a step where the generator fails": the event is the step's title and opens its description."""
    event = t.clean_name(event)
    title = re.sub(r"^(?:the|a|an)\s+", "", event, flags=re.I)
    if not title:
        return None
    title = title[:1].upper() + title[1:]
    description = f"{t.sentence(event)} {phrase('event_step_follow_up')}"
    args = {"title": title, "description": description, "index": index, "relation": relation}
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


def _parse_remove_step(text: str, scope: Scope) -> Edit | None:
    return _parse_remove_indexed(text, r"step|phase|stage", "remove_step", "remove step")


def _parse_remove_objective(text: str, scope: Scope) -> Edit | None:
    return _parse_remove_indexed(text, r"objective|goal|aim", "remove_objective",
                                 "remove objective")


def _parse_add_objective(text: str, scope: Scope) -> Edit | None:
    match = (
        _match(rf"{_VERB_ADD}\s+{_ART}(?:learning\s+)?(?:objective|goal|aim)s?\b\s*"
               r"(?:(?:that|to|of|:|about|on|for|regarding|covering|around)\b\s*|[:\-]\s*)?(?P<t>.+)", text)
        or _match(rf"{_VERB_ADD}\s+(?P<t>.+?)\s+(?:as|to\s+the)\s+(?:an?\s+|another\s+|new\s+)?"
                  r"(?:objective|goal)s?", text)
    )
    if not match:
        return None
    value = t.clean_value(match.group("t")).rstrip(" .;,")
    if not value:
        return None
    return Edit("add_objective", {"text": value[:1].upper() + value[1:]}, text, extendable=True)


def _resolve_field(name: str, scope: Scope) -> str | None:
    """Map a field name from the message to a top-level key, or None if unknown."""
    norm = re.sub(r"[\s\-]+", "_", name.strip().lower()).strip("_")
    norm = re.sub(r"^(?:the_|its_|scenario_|scenario's_)", "", norm)
    if not norm:
        return None
    own = scope.key(norm)
    if own is not None:
        return own
    target = phrase("field_synonyms").get(norm, norm)
    if target in ("title", "summary", "setting", "difficulty"):
        return target
    own = scope.key(target)
    if own is not None:
        return own
    prefixed = scope.prefixed(norm)
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


def _parse_set(text: str, scope: Scope) -> Edit | None:
    match = (
        _match(r"(?:set|change|update|make|modify|switch|edit)\s+(?P<f>[^\W\d][\w\s'\-]{0,40}?)\s*"
               r"(?:to\s+be\b|to|=|:|into|as)\s*(?P<v>.+)", text)
        or _match(r"(?P<f>[^\W\d][\w\s'\-]{0,40}?)\s*(?:[:=]|should\s+be|must\s+be)\s*(?P<v>.+)",
                  text)
    )
    if not match:
        return None
    key = _resolve_field(match.group("f"), scope)
    if key is None or not _settable(key, scope.scenario):
        return None
    raw = t.clean_value(match.group("v"))
    if not raw:
        return None
    if key == "title":
        return Edit("title", {"value": t.clean_name(raw)}, text, extendable=True)
    return Edit("set", {"key": key, "value": raw}, text, extendable=True)


def _parse_generic_remove(text: str, scope: Scope) -> Edit | None:
    """"remove the Observer": accept it when the name matches exactly one item."""
    match = _match(rf"{_VERB_REMOVE}\s+(?:the\s+)?(?P<ref>.+)", text)
    if not match:
        return None
    ref = t.clean_name(match.group("ref")).lower()
    wanted = t.norm_text(ref)
    if wanted in scope.names("roles"):
        return Edit("remove_role", {"ref": ref}, text, carry="remove")
    if wanted in scope.names("steps"):
        return Edit("remove_step", {"ref": ref}, text, carry="remove")
    if wanted in scope.names("objectives"):
        return Edit("remove_objective", {"ref": ref}, text, carry="remove")
    return None


def _parse_rename_named(text: str, scope: Scope) -> Edit | None:
    """"rename the Customer to Client", "rename step 2 to Triage": an existing role or step by name or number."""
    match = _match(r"(?:rename|retitle|call|change\s+the\s+name\s+of)\s+(?:the\s+)?(?P<old>.+?)(?:'s\s+name)?"
                   r"\s+(?:to|into|as)\s+(?P<new>.+)", text)
    if not match:
        return None
    old, new = t.clean_name(match.group("old")), t.clean_name(match.group("new"))
    if not old or not new:
        return None
    step = re.fullmatch(r"(?:step|phase|stage)\s*(?:number\s+|no\.?\s*|#\s*)?(?P<n>\d{1,4})", old, re.I)
    if step:
        return Edit("rename_step", {"number": int(step.group("n")), "new": new}, text)
    wanted = t.norm_text(old)
    if wanted in scope.names("roles"):
        return Edit("rename_role", {"old": old, "new": new}, text)
    if wanted in scope.names("steps"):
        return Edit("rename_step", {"ref": old, "new": new}, text)
    return None


def is_person(name: str) -> bool:
    """Whether a name reads as a person ("journalist", "press officer"), not a thing ("twist")."""
    parts = t.words(name)
    if not parts or len(parts) > 5:
        return False
    head = t.bare(parts[-1])
    if head in phrase("not_person_words"):
        return False
    if head in phrase("person_words") or head.rstrip("s") in phrase("person_words"):
        return True
    return len(head) > 4 and head.endswith(tuple(phrase("person_suffixes"))) and not head.endswith("list")


def _parse_add_person(text: str, scope: Scope) -> Edit | None:
    """"add a journalist", "include a journalist role", "bring in a mediator who keeps both sides talking"."""
    match = _match(rf"{_VERB_ADD}\s+{_ART}(?P<rest>.+)", text)
    if not match:
        return None
    rest = _TO_THE_LIST.sub("", match.group("rest"))
    name, description = _split_name_description(rest)
    name = _role_name(name)
    # "a journalist and a regulator" is two roles: the clause splitter hands them over one by one.
    if not name or re.search(r"\band\b|,", name, re.I) or not is_person(name):
        return None
    return Edit("add_role", {"name": name, "description": t.clean_value(description)}, text, extendable=True,
                carry="add role")


# Order matters: specific phrasings first, the catch-all "set X to Y" and the
# name-only remove last, so "rename role A to B" is never read as a new title.
_PARSERS: tuple[_Parser, ...] = (
    _parse_rename_role,
    _parse_difficulty,
    _parse_title,
    _parse_rename_named,
    _parse_add_step,
    _parse_add_objective,
    _parse_add_role,
    _parse_add_person,
    _parse_remove_step,
    _parse_remove_objective,
    _parse_remove_role,
    _parse_set,
    _parse_generic_remove,
)


def _parse_clause(clause: str, scope: Scope) -> Edit | None:
    text = _clean_clause(clause)
    if not text or not _may_be_an_edit(text):
        return None
    for parser in _PARSERS:
        edit = parser(text, scope)
        if edit is not None:
            edit.source = clause.strip()
            return edit
    return None


def parse_request(message: str, scenario: dict) -> tuple[list[Edit], list[str]]:
    """Split a message into edits; return (edits, clauses that parsed as nothing).

    Newlines and ";" always separate edits. " and ", commas, "then" and
    sentence ends only might: a piece that parses as nothing is glued back to
    the free-text edit before it, so values may contain them.

    Linear in the message: each piece is read once on its own, and the pieces glued to an
    edit are read once more, together (`_Glue`), rather than once per piece added.
    At most MAX_EDITS edits are returned.
    """
    scope = Scope(scenario)
    edits: list[Edit] = []
    unparsed: list[str] = []
    for chunk in _HARD_SPLIT.split(message):
        chunk = " ".join(chunk.split())
        if not chunk:
            continue
        pieces = _SOFT_SPLIT.split(chunk)
        state = _Glue(scope, edits, unparsed)
        for position in range(0, len(pieces), 2):
            piece = pieces[position]
            if len(edits) >= MAX_EDITS:
                break
            if piece.strip():
                state.feed(pieces[position - 1] if position else "", piece)
        state.finish()
        if len(edits) >= MAX_EDITS:
            del edits[MAX_EDITS:]
            unparsed.append(TOO_MANY)
            break
    return edits, [text.strip() for text in unparsed if text.strip()]


class _Glue:
    """The pieces of one chunk, read in order, with unparsed pieces glued where they belong.

    A piece that is an edit by itself is one. Pieces that are not, after a free-text edit
    ("set summary to fire", "and rescue"), are held (`held`) and read together with that
    edit once the run of them ends: one re-read for the whole run. If the whole run does not
    read as the same edit, they are glued one at a time (at most MAX_STEPWISE_JOINS re-reads,
    each of a text that grows by one piece), and what is left is handed to the edit's
    `carry` ("remove step 2 and 3") or reported as not understood.
    """

    def __init__(self, scope: Scope, edits: list[Edit], unparsed: list[str]) -> None:
        self.scope, self.edits, self.unparsed = scope, edits, unparsed
        self.last: Edit | None = None
        # Not understood yet: a list of texts (separators included), joined when reported.
        self.pending: list[str] = []
        self.held: list[tuple[str, str]] = []
        self.joins = 0

    def feed(self, separator: str, piece: str) -> None:
        edit = _parse_clause(piece, self.scope)
        if edit is not None:
            self._settle()
            self._report()
            self._add(edit)
            return
        if self.pending:
            self.pending += [separator, piece]
        elif self.last is not None and self.last.extendable:
            self.held.append((separator, piece))
        else:
            self._unglued(separator, piece, stepwise=0)

    def finish(self) -> None:
        self._settle()
        self._report()

    def _report(self) -> None:
        if self.pending:
            self.unparsed.append("".join(self.pending))
            self.pending = []

    def _add(self, edit: Edit) -> None:
        self.edits.append(edit)
        self.last = edit

    def _settle(self) -> None:
        """Glue the held pieces to the last edit: all at once if they read as one edit with it."""
        held, self.held = self.held, []
        if not held:
            return
        last = self.last
        assert last is not None
        joined = _parse_clause(last.source + "".join(separator + piece for separator, piece in held), self.scope)
        if joined is not None and joined.kind == last.kind:
            self.edits[-1] = self.last = joined
            return
        for separator, piece in held:
            self._unglued(separator, piece, stepwise=MAX_STEPWISE_JOINS)
            if len(self.edits) >= MAX_EDITS:
                return

    def _unglued(self, separator: str, piece: str, stepwise: int) -> None:
        """A piece that is no edit by itself and was not glued as part of a run."""
        if self.pending:
            self.pending += [separator, piece]
            return
        last = self.last
        if last is not None and last.extendable and self._budget(stepwise):
            joined = _parse_clause(last.source + separator + piece, self.scope)
            if joined is not None and joined.kind == last.kind:
                self.edits[-1] = self.last = joined
                return
        if last is not None and last.carry:
            carried = _parse_clause(f"{last.carry} {piece}", self.scope)
            if carried is not None:
                carried.carry = last.carry
                self._add(carried)
                return
        self.pending = [piece]

    def _budget(self, stepwise: int) -> bool:
        if self.joins >= stepwise:
            return False
        self.joins += 1
        return True
