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
    r"shorten|lengthen|swap|insert|include|create|generate|write)\b",
    re.I,
)


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


def route(mode: str, message: str, scenario: dict[str, Any] | None) -> str:
    """The intent for a request: `mode` itself unless it is "auto"."""
    if mode != "auto":
        return mode
    if scenario is None:
        return "create" if asks_for_scenario(message, loose=True) else "chat"
    if asks_for_scenario(message):
        return "create"
    text = " ".join(message.split())
    if _EXPLAIN.search(text):
        return "explain"
    if _is_question(text):
        return "chat"
    if _MODIFY.search(text):
        return "modify"
    return "chat"
