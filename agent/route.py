"""Pick the intent without asking the model: an explicit mode wins, `auto` looks at the words.

Routing locally keeps the time to first token equal to the upstream's: no extra LLM call.

In `auto` mode:
- A message that asks for a scenario creates one: an imperative such as create, make, build,
  generate, design, write, draft, set up or run, followed by "a/an/new ... scenario" (or exercise,
  drill, role-play, simulation, tabletop...), or a topic phrase ("a scenario about X",
  "drill on X", "new scenario", "from scratch").
- With no scenario loaded, anything else is chat: "hello", "Explain this scenario" and
  "what is a tabletop exercise?" must not invent a scenario. (The chat answer says how to
  start one.) A bare imperative of a strong create verb ("create one about floods") still creates.
- With a scenario loaded: create as above, else explain, else modify, else chat. A question
  ("how do I add a role?", "what should I change?") is chat or explain, never an edit.
- Editing verbs beyond add/remove/set ("reword step 2", "rephrase the summary", "shorten the
  setting", "expand the objectives", "get rid of the Observer") are modify: the unambiguous ones
  anywhere, the ones that are also nouns or adjectives ("fix", "cut", "correct") only where a
  clause starts.
- Explain explains the whole scenario. A request about one part of it ("tell me about the CISO",
  "explain step 2", "describe the setting") or for a short answer ("summarize this in one
  sentence") is chat, which answers what was asked.

Every routine here reads the message in one pass (or a fixed number of passes) and the
scenario's names once: a message of 8,000 characters against a 64 KiB scenario costs well under
a millisecond per pattern, never (message x names).
"""

from __future__ import annotations

import re
from typing import Any

INTENTS = ("explain", "modify", "create", "chat")

_NOUN = (r"(?:scenarios?|exercises?|drills?|role[- ]?plays?|roleplays?|simulations?|sims?|tabletops?|"
         r"war[- ]?games?|case\s+stud(?:y|ies)|training\s+sessions?)")
# Polite openings stripped before looking for the imperative verb.
_FILLER = re.compile(
    r"^(?:(?:please|pls|hey|hi|hello|ok(?:ay)?|so|now|also|then|great|thanks|cool)\b[\s,!.]*|"
    r"(?:can|could|would|will)\s+(?:you|we)\s+(?:please\s+)?|"
    r"i(?:'d|\s+would)\s+like\s+(?:you\s+|us\s+)?to\s+|i\s+(?:want|need)\s+(?:you\s+|us\s+)?to\s+|"
    r"(?:let'?s|let\s+us|help\s+me|go\s+ahead\s+and|time\s+to)\s+)",
    re.I,
)
_VERB = (r"(?:create|make|build|generate|design|write|draft|set\s*up|put\s+together|come\s+up\s+with|"
         r"prepare|plan|produce|devise|invent|start|run|do|give\s+(?:me|us)|try|simulate|organi[sz]e)")
_STRONG_VERB = r"(?:create|generate|design|draft|build)"
_WANT = r"(?:i(?:'d|\s+would)?\s+(?:want|need|like)|give\s+(?:me|us)|how\s+about|what\s+about|let'?s\s+have)"
_INDEFINITE = r"(?:an?|another|new|one|some|my\s+own|a\s+new)"
# verb + "a/an/new" + up to four words + the noun: "set up a fire drill", "write a new scenario".
_ASK = re.compile(rf"^(?:{_VERB}|{_WANT})\b(?:\s+(?:me|us))?\s+{_INDEFINITE}\s+(?:[\w'-]+\s+){{0,4}}?{_NOUN}\b", re.I)
# A topic phrase anywhere: "a scenario about a flood", "drill on X", "exercise for our IT team".
_TOPIC = re.compile(
    rf"(?<!this )(?<!the )(?<!my )(?<!our )(?<!current )(?<!that )\b{_NOUN}\s+"
    r"(?:about|on|for|involving|around|covering|regarding|where|in\s+which|with|based\s+on|dealing\s+with)\s+\w",
    re.I,
)
_FRESH = re.compile(rf"\b(?:new|another|fresh|different)\s+{_NOUN}\b|\bfrom\s+scratch\b|\bstart\s+(?:over|again)\b", re.I)
_LOOSE = re.compile(rf"^{_STRONG_VERB}\b", re.I)
# A question asks for advice, not for an artefact: a wh-word first ("how do I create a scenario?"),
# or an auxiliary first in a message that ends with "?" ("do we need a drill?", but "do a drill").
_WH_QUESTION = re.compile(r"^(?!(?:how|what)\s+about\b)(?:what|what's|whats|how|why|when|where|which|who|whose)\b", re.I)
_AUX_QUESTION = re.compile(r"^(?:is|are|does|do|did|should|shall|can\s+i|could\s+i|may\s+i|would\s+it|was|were|"
                           r"am\s+i)\b.*\?$", re.I)


def _is_question(text: str) -> bool:
    return bool(_WH_QUESTION.match(text) or _AUX_QUESTION.match(text))

_EXPLAIN = re.compile(r"\b(explain|describe|summari[sz]e|overview|walk me through|what is this|what's this|"
                      r"tell me about|break down)\b", re.I)
_MODIFY = re.compile(
    r"\b(add|remove|delete|drop|rename|change|set|update|replace|edit|modify|make it|make the|increase|decrease|"
    r"shorten|lengthen|swap|insert|include|create|generate|write|"
    # Editing verbs that are seldom anything else.
    r"reword|rephrase|rewrite|re-write|simplify|condense|tweak|revise|reorder|re-order|rearrange|restructure|"
    r"streamline|capitali[sz]e|retitle|flesh out|beef up|tone down|tone up|spell out|get rid of)\b",
    re.I,
)
# Verbs that edit only as a clause's first word: elsewhere they are often nouns or adjectives
# ("that's correct", "a quick fix", "good call").
_EDIT_START = re.compile(
    r"(?:expand|tighten|trim|polish|clarify|soften|sharpen|move|merge|split|combine|fix|correct|adjust|translate|"
    r"turn|cut|shift|extend|improve|refine|rework|redo|enrich|elaborate|raise|lower|reduce|boost|introduce|"
    r"append|bring\s+in|put\s+in|take\s+out|lose|ditch|scrap|punch\s+up|spice\s+up|call\s+it|name\s+it|"
    r"title\s+it|convert|expand\s+on|pad\s+out|cut\s+down|break\s+up|swap|switch|mention)\b",
    re.I,
)
# Where a clause starts: after a comma, a semicolon, a sentence end, "and" or "then".
_CLAUSE = re.compile(r"[,;.!?]+\s*|\s+(?:and|then|also)\s+", re.I)
# A request for a short answer: chat gives it; explain would walk through everything.
_BRIEF = re.compile(r"\b(?:in\s+(?:one|a|a\s+single)\s+(?:sentence|line|paragraph)|briefly|in\s+brief|"
                    r"in\s+a\s+nutshell|tl;?dr|in\s+a\s+few\s+words|one-liner|short\s+version)\b", re.I)
# One part of the scenario named by number or by kind.
_PART = re.compile(r"\b(?:(?:step|phase|stage|objective|goal)\s*#?\s*\d{1,3}|"
                   r"(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|last|final|next)\s+"
                   r"(?:step|phase|stage|objective|goal|role)|setting|objectives|goals)\b", re.I)
_WORD = re.compile(r"[a-z0-9]+(?:['’-][a-z0-9]+)*")
# Words too common in role names to identify one ("Chief Medical Officer" is not "the officer").
_GENERIC_ROLE_WORDS = frozenset({"and", "chief", "director", "head", "junior", "lead", "manager", "member", "officer",
                                 "senior", "support", "team", "the", "of", "or", "side"})
# Names are compared as runs of at most this many words.
_MAX_NAME_WORDS = 6


def _strip_filler(text: str) -> str:
    for _ in range(4):
        stripped = _FILLER.sub("", text, count=1).strip()
        if stripped == text:
            break
        text = stripped
    return text


def asks_for_scenario(message: str, loose: bool = False) -> bool:
    """Whether the message asks for a new scenario. `loose` also accepts a bare strong verb
    ("create one about floods"), which only makes sense when no scenario is loaded."""
    text = " ".join(message.split())
    if _is_question(text):
        # "how do I create a scenario?" asks for advice; "what about a drill on X?" is excluded above.
        return False
    core = _strip_filler(text)
    if _ASK.match(core) or _TOPIC.search(text) or _FRESH.search(text):
        return True
    return loose and bool(_LOOSE.match(core))


def _edits(text: str) -> bool:
    """Whether a (non-question) message asks to change the scenario."""
    if _MODIFY.search(text):
        return True
    return any(_EDIT_START.match(_strip_filler(clause)) for clause in _CLAUSE.split(text) if clause)


def _words(text: str) -> list[str]:
    return [word[:-2] if word.endswith(("'s", "’s")) else word for word in _WORD.findall(text.lower())]


def _names(scenario: dict[str, Any], key: str, label: str) -> list[str]:
    items = scenario.get(key)
    if not isinstance(items, list):
        return []
    names = []
    for item in items:
        name = item.get(label) if isinstance(item, dict) else None
        if isinstance(name, str):
            names.append(name)
    return names


def names_a_part(text: str, scenario: dict[str, Any]) -> bool:
    """Whether the message is about one part of the scenario: a step or objective by number,
    the setting, a role or step by name ("the CISO", "the commander", "the deadlock step").

    One pass over the message's words per name length (at most six), one over the names."""
    if _PART.search(text):
        return True
    message = _words(text)
    present = set(message)
    wanted: set[tuple[str, ...]] = set()
    for name in _names(scenario, "roles", "name") + _names(scenario, "steps", "title"):
        name_words = tuple(_words(name))[:_MAX_NAME_WORDS]
        if name_words and len(" ".join(name_words)) >= 4:
            wanted.add(name_words)
    for name in _names(scenario, "roles", "name"):
        # A role by one distinctive word of its name: "the commander" for "Incident Commander".
        if any(len(word) >= 4 and word not in _GENERIC_ROLE_WORDS and word in present for word in _words(name)):
            return True
    for length in sorted({len(name) for name in wanted}):
        for start in range(len(message) - length + 1):
            if tuple(message[start:start + length]) in wanted:
                return True
    return False


def route(mode: str, message: str, scenario: dict[str, Any] | None) -> str:
    """The intent for a request: `mode` itself unless it is "auto"."""
    if mode != "auto":
        return mode
    if scenario is None:
        return "create" if asks_for_scenario(message, loose=True) else "chat"
    if asks_for_scenario(message):
        return "create"
    text = " ".join(message.split())
    question = _is_question(text)
    if not question and _edits(text):
        return "modify"
    if _EXPLAIN.search(text):
        return "chat" if _BRIEF.search(text) or names_a_part(text, scenario) else "explain"
    return "chat"
