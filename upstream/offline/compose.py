"""Response text of the built-in offline model.

The offline model needs no network, no API key and no randomness: for the same
``(intent, message, scenario, history)`` :func:`compose` always returns the
same text. Another module streams that text token by token, so everything here
only builds strings.

Output contract:

* ``explain`` and ``chat`` return plain prose (short paragraphs and ``- ``
  bullets). Plain prose never contains a triple backtick.
* ``create`` and ``modify`` return prose, then exactly one fenced block::

      ```scenario
      <json.dumps(scenario, indent=2, ensure_ascii=False)>
      ```

  optionally followed by one short closing sentence. The block always holds a
  JSON object with a non-empty ``title``.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["compose"]

# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

DIFFICULTIES = ("beginner", "intermediate", "advanced")
CORE_KEYS = ("title", "summary", "setting", "difficulty", "roles", "steps", "objectives")

# Very long input only costs time: nobody types plain edits this long, and the
# clause parser re-reads joined clauses, so it is cheaper to cap the input.
MAX_MESSAGE_CHARS = 8000

_DIFFICULTY_SYNONYMS = {
    "beginner": 0, "beginners": 0, "easy": 0, "basic": 0, "novice": 0, "intro": 0,
    "introductory": 0, "simple": 0, "entry": 0, "entry-level": 0,
    "intermediate": 1, "medium": 1, "moderate": 1, "normal": 1, "standard": 1,
    "advanced": 2, "hard": 2, "difficult": 2, "expert": 2, "experts": 2,
    "challenging": 2, "complex": 2, "tough": 2,
}

_DIFFICULTY_HINTS = (
    "As a beginner scenario it suits first-timers, and the facilitator can pause to coach.",
    "At intermediate level, participants should know the basics but will face real trade-offs.",
    "As an advanced scenario it expects experienced participants and leaves little room "
    "for hesitation.",
)

_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6,
    "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10, "last": -1, "final": -1,
}

# Extra keys that "set X to Y" may create even when the scenario lacks them:
# they are the ones the samples and the create templates use.
_KNOWN_EXTRAS = {"duration_minutes": 0, "tags": [], "materials": []}

_FIELD_SYNONYMS = {
    "name": "title", "scenario_name": "title", "headline": "title",
    "description": "summary", "overview": "summary", "synopsis": "summary",
    "level": "difficulty", "difficulty_level": "difficulty",
    "location": "setting", "place": "setting", "scene": "setting", "context": "setting",
    "duration": "duration_minutes", "length": "duration_minutes", "time": "duration_minutes",
    "time_limit": "duration_minutes", "minutes": "duration_minutes",
    "tag": "tags", "keywords": "tags",
}

_SUPPORTED_EDITS = (
    "rename it to <title>  (or: change the title to <title>)",
    "set <field> to <value>  (summary, setting, difficulty or another existing field)",
    "add a role <name>: <description>  /  remove role <name>",
    "add a step <title>: <description>  /  remove step <number or title>",
    "add objective <text>  /  remove objective <number or text>",
    "make it harder  /  make it easier",
)

_REAL_MODEL_HINT = (
    "For free-form changes, configure a real model by setting OPENAI_API_KEY "
    "(and OPENAI_BASE_URL if you use a compatible server)."
)

_SAMPLES_HINT = (
    "load one of the samples (hospital ransomware, support escalation or supplier negotiation)"
)


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


def compose(intent: str, message: str, scenario: dict | None, history: list[dict]) -> str:
    """Return the complete response the offline model writes for one turn.

    ``intent`` is "explain", "modify", "create" or "chat" (anything else is
    answered as chat). ``scenario`` is never mutated. Malformed input (a
    non-string message, odd scenario values, junk history entries) is
    tolerated rather than raised on, because the caller streams whatever comes
    back to a user.
    """
    text = message if isinstance(message, str) else ""
    text = text.replace("\r\n", "\n").replace("\r", "\n")[:MAX_MESSAGE_CHARS]
    current = scenario if isinstance(scenario, dict) else None
    turns = _normalise_history(history)
    kind = intent.strip().lower() if isinstance(intent, str) else ""
    if kind == "explain":
        return _explain(current)
    if kind == "create":
        return _create(text)
    if kind == "modify":
        return _modify(text, current)
    return _chat(text, current, turns)


# ---------------------------------------------------------------------------
# Small text helpers
# ---------------------------------------------------------------------------


def _safe(text: str) -> str:
    """Break runs of backticks so prose can never open or close a code fence."""
    return re.sub(r"`{3,}", "'", text)


def _one_line(value: Any, limit: int = 0) -> str:
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


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _join_words(items: list[str], conjunction: str = "and") -> str:
    """Join items as English: "A", "A and B", "A, B and C"."""
    items = [item for item in items if item]
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def _short_list(items: list[str], limit: int = 5) -> str:
    """Join at most ``limit`` items, then say how many were left out."""
    if len(items) <= limit:
        return _join_words(items)
    return f"{', '.join(items[:limit])} and {len(items) - limit} more"


def _sentence(text: str) -> str:
    """Capitalise the first letter and make sure the text ends like a sentence."""
    text = text.strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?…" else text + "."


def _first_sentence(text: str, limit: int = 220) -> str:
    match = re.match(r"(.+?[.!?])(?:\s|$)", text)
    return _one_line(match.group(1) if match else text, limit)


def _quote(text: str, limit: int = 80) -> str:
    return f'"{_one_line(text, limit)}"'


def _clean_value(text: str) -> str:
    """Tidy a value taken from the user's message before storing it.

    Backtick runs are removed so user text can never fake a fence inside the
    scenario block, and wrapping quotes are dropped ('rename it to "X"').
    """
    text = " ".join(re.sub(r"`{3,}", "", text).split())
    pairs = (('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’"), ("«", "»"))
    for left, right in pairs:
        if len(text) >= 2 and text.startswith(left) and text.endswith(right):
            text = text[1:-1].strip()
    return text


def _clean_name(text: str) -> str:
    """A name or title: cleaned value without trailing punctuation."""
    text = _clean_value(text).rstrip(" .,;:!?")
    return _clean_value(text)


def _smart_title(text: str) -> str:
    """Capitalise an all-lowercase name ("observer" -> "Observer"); keep others."""
    return _title_case(text) if text == text.lower() else text


def _title_case(text: str) -> str:
    """Title-case a phrase, keeping small words lowercase and acronyms intact."""
    small = {"a", "an", "the", "of", "for", "and", "or", "to", "in", "on", "at",
             "with", "about", "by", "from", "vs", "via", "into"}
    words = text.split()
    result = []
    for index, word in enumerate(words):
        if index and word.lower() in small:
            result.append(word.lower())
        elif any(ch.isupper() for ch in word[1:]):
            result.append(word)  # acronyms and brand names such as "HR" or "iPhone"
        else:
            result.append("-".join(part[:1].upper() + part[1:] for part in word.split("-")))
    return " ".join(result)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:['’-][a-z0-9]+)*", text.lower())


def _normalise_history(history: Any) -> list[dict[str, str]]:
    """Keep only well-formed turns; history is advisory, so junk is dropped."""
    turns: list[dict[str, str]] = []
    if not isinstance(history, list):
        return turns
    for turn in history:
        if isinstance(turn, dict) and isinstance(turn.get("content"), str):
            role = turn.get("role") if turn.get("role") in ("user", "assistant") else "user"
            turns.append({"role": role, "content": turn["content"]})
    return turns


# ---------------------------------------------------------------------------
# Read-only views of a scenario (tolerant of malformed values)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    """A role or step reduced to its label and description."""

    name: str
    description: str


def _items(value: Any, label_key: str) -> list[_Item]:
    items: list[_Item] = []
    if not isinstance(value, list):
        return items
    for entry in value:
        if isinstance(entry, dict):
            label = entry.get(label_key) or entry.get("name") or entry.get("title") or ""
            item = _Item(_one_line(label), _one_line(entry.get("description")))
        else:
            item = _Item(_one_line(entry), "")
        if item.name or item.description:
            items.append(item)
    return items


def _roles(scenario: dict) -> list[_Item]:
    return _items(scenario.get("roles"), "name")


def _steps(scenario: dict) -> list[_Item]:
    return _items(scenario.get("steps"), "title")


def _objectives(scenario: dict) -> list[str]:
    value = scenario.get("objectives")
    if not isinstance(value, list):
        return []
    return [text for text in (_one_line(item) for item in value) if text]


def _title(scenario: dict) -> str:
    return _one_line(scenario.get("title")) or "Untitled scenario"


def _difficulty_level(value: Any) -> int | None:
    """Index into DIFFICULTIES for a difficulty label, or None if unknown."""
    return _DIFFICULTY_SYNONYMS.get(_one_line(value).lower())


def _duration(scenario: dict) -> float | None:
    """Minutes, from duration_minutes or a similar numeric key, if present."""
    for key, value in scenario.items():
        if "duration" in str(key).lower() or "minutes" in str(key).lower():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if math.isfinite(value) and value > 0:
                    return float(value)
    return None


def _label(key: Any) -> str:
    """Human label for a key: "duration_minutes" -> "Duration (minutes)"."""
    words = " ".join(re.sub(r"[_\-]+", " ", str(key)).split())
    match = re.fullmatch(r"(.+?) (minutes|hours|days|seconds|eur|usd)", words, re.I)
    if match:
        return f"{match.group(1).capitalize()} ({match.group(2).lower()})"
    return words.capitalize() or "Unnamed field"


def _summarise(value: Any, depth: int = 0) -> str:
    """One-line summary of an arbitrary JSON value for the "other details" list."""
    if value is None:
        return "not set"
    if isinstance(value, (bool, int, float)):
        return _one_line(value)
    if isinstance(value, str):
        return _one_line(value, 200 if depth == 0 else 120) or "(empty)"
    if isinstance(value, list):
        if not value:
            return "none"
        if all(isinstance(item, (str, int, float, bool)) or item is None for item in value):
            parts = [_summarise(item, depth + 1) for item in value[:6]]
            separator = "; " if any("," in part for part in parts) else ", "
            extra = f" and {len(value) - 6} more" if len(value) > 6 else ""
            return separator.join(parts) + extra
        labels = [item.name for item in _items(value, "name") if item.name][:5]
        count = "1 entry" if len(value) == 1 else f"{len(value)} entries"
        return f"{count}: {', '.join(labels)}" if labels and depth == 0 else count
    if isinstance(value, dict):
        if not value:
            return "empty"
        if depth > 0:
            return _plural(len(value), "field")
        keys = list(value)
        parts = [f"{_label(key).lower()}: {_summarise(value[key], depth + 1)}" for key in keys[:5]]
        extra = f"; and {len(keys) - 5} more" if len(keys) > 5 else ""
        return "; ".join(parts) + extra
    return _one_line(value, 120)


# ---------------------------------------------------------------------------
# explain
# ---------------------------------------------------------------------------


def _explain(scenario: dict | None) -> str:
    if scenario is None:
        return _safe(
            "There is no scenario loaded yet, so there is nothing to explain.\n\n"
            "You can ask me to create one (for example \"create a scenario about a warehouse "
            f"fire evacuation drill\"), or {_SAMPLES_HINT} and ask again."
        )
    sections = [
        _explain_overview(scenario),
        _explain_roles(scenario),
        _explain_steps(scenario),
        _explain_objectives(scenario),
        _explain_extras(scenario),
        _explain_closing(scenario),
    ]
    return _safe("\n\n".join(section for section in sections if section)) + "\n"


def _explain_overview(scenario: dict) -> str:
    title = _title(scenario)
    difficulty = _one_line(scenario.get("difficulty"))
    counts = _join_words([
        _plural(len(_roles(scenario)), "role"),
        _plural(len(_steps(scenario)), "step"),
        _plural(len(_objectives(scenario)), "objective"),
    ])
    kind = f"{_article(difficulty)} {difficulty} scenario" if difficulty else "a scenario"
    paragraphs = [f"\"{title}\" is {kind} with {counts}."]
    summary = _one_line(scenario.get("summary"))
    if summary:
        paragraphs[0] += f" In short: {_sentence(summary)}"
    setting = _one_line(scenario.get("setting"))
    if setting:
        paragraphs.append(f"Setting: {_sentence(setting)}")
    level = _difficulty_level(difficulty)
    if level is not None:
        paragraphs.append(f"Difficulty: {difficulty}. {_DIFFICULTY_HINTS[level]}")
    elif difficulty:
        paragraphs.append(f"Difficulty is marked as \"{difficulty}\".")
    else:
        paragraphs.append("No difficulty is set; treat it as intermediate until you decide.")
    return "\n\n".join(paragraphs)


def _bullet(name: str, description: str) -> str:
    if name and description:
        return f"- {name}: {_sentence(description)}"
    return f"- {_sentence(name or description)}"


def _explain_roles(scenario: dict) -> str:
    roles = _roles(scenario)
    if not roles:
        return "No roles are defined yet; add some so every participant knows who they are."
    lines = [f"Roles ({len(roles)}):"]
    lines += [_bullet(role.name, role.description) for role in roles]
    return "\n".join(lines)


def _explain_steps(scenario: dict) -> str:
    steps = _steps(scenario)
    if not steps:
        return "No steps are defined yet, so the session has no set structure."
    lines = ["How it unfolds, step by step:"]
    for number, step in enumerate(steps, 1):
        name = f"Step {number}, {step.name}" if step.name else f"Step {number}"
        lines.append(_bullet(name, step.description))
    duration = _duration(scenario)
    if duration:
        per_step = max(1, round(duration / len(steps)))
        lines.append(
            f"With {_one_line(duration)} minutes in total, that is roughly {per_step} "
            "minutes per step if you keep an even pace."
        )
    return "\n".join(lines)


def _explain_objectives(scenario: dict) -> str:
    objectives = _objectives(scenario)
    if not objectives:
        return ("No objectives are listed, so agree with the group what success looks like "
                "before you start.")
    lines = ["What success looks like (the objectives):"]
    lines += [f"- {_sentence(objective)}" for objective in objectives]
    return "\n".join(lines)


def _explain_extras(scenario: dict) -> str:
    extras = [key for key in scenario if key not in CORE_KEYS]
    if not extras:
        return ""
    lines = ["Other details:"]
    lines += [f"- {_label(key)}: {_summarise(scenario[key])}" for key in extras]
    return "\n".join(lines)


def _explain_closing(scenario: dict) -> str:
    first_step = next((step.name for step in _steps(scenario) if step.name), "")
    start = f", starting with \"{first_step}\"" if first_step else ""
    return (
        "To run it, brief everyone on the setting, hand out the roles, walk through the steps "
        f"in order{start}, and debrief against the objectives. Ask me to change anything "
        "(for example \"add a role Scribe\" or \"make it harder\"), or ask about any role or step."
    )


# ---------------------------------------------------------------------------
# The fenced scenario block (create and modify)
# ---------------------------------------------------------------------------


def _scenario_block(scenario: dict) -> str:
    """The one fenced block: ```scenario, the pretty JSON, ```.

    If a string value already contains a run of three backticks (it cannot
    come from this module, only from the caller's scenario), those backticks
    are written as \\u0060 escapes: the JSON decodes to the same value, and
    the fence can never be closed early.
    """
    dumped = json.dumps(scenario, indent=2, ensure_ascii=False, default=str)
    if "```" in dumped:
        dumped = re.sub(r"`{3,}", lambda match: "\\u0060" * len(match.group(0)), dumped)
    return f"```scenario\n{dumped}\n```\n"


# ---------------------------------------------------------------------------
# create
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Template:
    """Plausible content for one family of scenarios; ``{topic}`` is filled in."""

    key: str
    label: str
    kind: str
    keywords: tuple[str, ...]
    default_topic: str
    summary: str
    setting: str
    roles: tuple[tuple[str, str], ...]
    steps: tuple[tuple[str, str], ...]
    objectives: tuple[str, ...]
    complication: tuple[str, str]
    tags: tuple[str, ...]
    duration: int
    materials: tuple[str, ...]


_TEMPLATES: tuple[_Template, ...] = (
    _Template(
        key="security",
        label="cyber-security incident",
        kind="Tabletop Exercise",
        keywords=("cyber", "cybersecurity", "security", "ransomware", "phishing", "breach",
                  "hack", "hacker", "hackers", "hacked", "malware", "virus", "ddos", "firewall",
                  "data leak", "incident response", "password", "passwords", "credential",
                  "credentials", "intrusion", "exploit", "vulnerability", "cyberattack", "infosec"),
        default_topic="a ransomware attack",
        summary="the response team detects, contains and recovers from an incident involving "
                "{topic} while keeping the business running and stakeholders informed",
        setting="A mid-sized organisation on a weekday morning. The security team has just raised "
                "an alert connected to {topic}, and key systems may be affected.",
        roles=(
            ("Incident Commander", "Owns the response to {topic}: sets priorities, approves major "
                                   "decisions and keeps the timeline."),
            ("Security Analyst", "Investigates the technical evidence, scopes what is affected and "
                                 "recommends containment options."),
            ("IT Operations Lead", "Runs containment and recovery: isolating systems, restoring "
                                   "from backups and keeping critical services up."),
            ("Communications Lead", "Drafts updates for staff, customers and, if needed, "
                                    "regulators and the press."),
        ),
        steps=(
            ("Detection", "An alert linked to {topic} reaches the team. Participants confirm what "
                          "is known, what is assumed and who needs to be told."),
            ("Triage and scoping", "Work out which systems, data and people are affected and rate "
                                   "the severity."),
            ("Containment", "Choose containment actions and weigh them against business impact: "
                            "what gets isolated, shut down or kept running?"),
            ("Stakeholder communication", "Agree the first internal and external messages and "
                                          "decide whether legal or regulatory notification "
                                          "applies."),
            ("Recovery and lessons learned", "Plan the restoration, confirm the threat is gone "
                                             "and capture what should change before the next "
                                             "incident."),
        ),
        objectives=(
            "Detect and scope the incident involving {topic} early in the exercise",
            "Make and document containment decisions that balance security and business impact",
            "Communicate clearly and on time with stakeholders about {topic}",
            "Identify at least three improvements to the incident response plan",
        ),
        complication=("Complication: the attackers escalate",
                      "The attackers claim to have copied sensitive data and threaten to publish "
                      "it. The team must revisit its decisions under time pressure."),
        tags=("cybersecurity", "incident response", "tabletop"),
        duration=90,
        materials=("Network diagram", "Incident response plan", "Contact and escalation list",
                   "Timeline sheet for the scribe"),
    ),
    _Template(
        key="medical",
        label="clinical",
        kind="Simulation",
        keywords=("medical", "hospital", "patient", "patients", "clinic", "clinical", "nurse",
                  "nurses", "nursing", "doctor", "doctors", "physician", "ward", "surgery",
                  "surgical", "triage", "health", "healthcare", "icu", "pharmacy", "medication",
                  "sepsis", "emergency department", "paramedic", "paramedics", "care home"),
        default_topic="a deteriorating patient on a hospital ward",
        summary="a clinical team manages {topic}, prioritising patient safety, clear handovers "
                "and timely escalation",
        setting="A busy hospital unit during a late shift, with limited senior cover and several "
                "patients needing attention at once. The situation centres on {topic}.",
        roles=(
            ("Charge Nurse", "Coordinates the unit, allocates staff and decides when to escalate."),
            ("Attending Physician", "Leads clinical decision-making for {topic} and signs off on "
                                    "the treatment plan."),
            ("Junior Doctor", "Assesses patients, orders investigations and reports findings "
                              "using SBAR."),
            ("Patient or Family Member", "Played by a participant or an actor; asks questions, "
                                         "shows worry and tests the team's communication."),
        ),
        steps=(
            ("Handover", "The outgoing shift hands over; one detail relevant to {topic} is easy "
                         "to miss."),
            ("Initial assessment", "Assess the patient with a structured ABCDE approach and "
                                   "agree the first actions."),
            ("Escalation", "The situation deteriorates. Decide who to call, when and with what "
                           "information."),
            ("Treatment and coordination", "Carry out the plan, share tasks clearly and keep the "
                                           "documentation up to date."),
            ("Family communication and debrief", "Explain what happened to the patient or family, "
                                                 "then debrief on teamwork and safety."),
        ),
        objectives=(
            "Recognise and prioritise the key risks of {topic} early",
            "Use structured communication (SBAR) for every escalation",
            "Keep the patient and family informed about {topic} in plain language",
            "Document decisions and hand over safely at the end of the scenario",
        ),
        complication=("Complication: a second patient deteriorates",
                      "Another patient on the unit deteriorates at the same time, forcing the team "
                      "to split its attention and re-prioritise."),
        tags=("healthcare", "simulation", "patient safety"),
        duration=60,
        materials=("Patient chart and observation sheet", "SBAR prompt cards",
                   "Vital-signs cards or a simulated monitor"),
    ),
    _Template(
        key="negotiation",
        label="negotiation",
        kind="Negotiation",
        keywords=("negotiation", "negotiations", "negotiate", "negotiating", "negotiator",
                  "sales", "sale", "deal", "deals", "contract", "contracts", "supplier",
                  "suppliers", "vendor", "vendors", "price", "prices", "pricing", "procurement",
                  "purchase", "purchasing", "salary", "bargain", "bargaining", "partnership",
                  "lease", "rent", "buyer", "seller"),
        default_topic="a supplier price increase",
        summary="two parties negotiate {topic}, trading concessions to reach an agreement both "
                "sides can live with",
        setting="A meeting room (or a video call) between two organisations with an existing "
                "relationship. Both sides want an agreement on {topic}, but their priorities "
                "differ and time is limited.",
        roles=(
            ("Buyer Lead", "Leads for the side asking for better terms on {topic} and knows their "
                           "walk-away point."),
            ("Seller Lead", "Represents the other side, protects margin and cares about the "
                            "long-term relationship."),
            ("Finance Advisor", "Supports one side with numbers and checks the cost of each "
                                "concession in real time."),
            ("Observer", "Tracks offers, concessions and tactics, and leads the debrief."),
        ),
        steps=(
            ("Preparation", "Each side reads its confidential brief and sets its target, its "
                            "walk-away point (BATNA) and the items it can trade."),
            ("Opening positions", "Both sides present their opening positions on {topic} without "
                                  "revealing their limits."),
            ("Exploring interests", "Ask open questions to uncover what really matters to the "
                                    "other side beyond price."),
            ("Trading concessions", "Exchange conditional concessions (if you do this, we can do "
                                    "that) and keep a running record of the package."),
            ("Closing and debrief", "Summarise the agreement in writing, confirm next steps, then "
                                    "debrief on tactics and outcomes."),
        ),
        objectives=(
            "Prepare a clear target and walk-away point for {topic} before the first offer",
            "Uncover at least two interests of the other side beyond price",
            "Trade concessions conditionally instead of giving them away",
            "Close with a written summary both sides agree to",
        ),
        complication=("Complication: a competing offer",
                      "One side announces a competing offer that expires today, putting pressure "
                      "on the concessions already made."),
        tags=("negotiation", "role-play", "commercial"),
        duration=60,
        materials=("Confidential brief for each side", "Concession tracking sheet",
                   "Price and volume calculator"),
    ),
    _Template(
        key="support",
        label="customer support",
        kind="Role-Play",
        keywords=("support", "customer", "customers", "client", "clients", "complaint",
                  "complaints", "helpdesk", "help desk", "refund", "refunds", "escalation",
                  "escalate", "call center", "call centre", "service desk", "ticket", "tickets",
                  "angry", "frustrated", "caller", "customer service"),
        default_topic="an escalated customer complaint",
        summary="a support agent handles a frustrated customer contact about {topic}, "
                "de-escalates, finds the real problem and escalates it properly",
        setting="A customer support team handling a live contact about {topic}. The customer has "
                "already tried to get help once and is running out of patience.",
        roles=(
            ("Support Agent", "First point of contact; listens, acknowledges the problem and "
                              "gathers the facts about {topic}."),
            ("Customer", "Frustrated and short on time; has a real grievance and one detail they "
                         "only share if asked well."),
            ("Team Lead", "Takes the escalation, can approve exceptions and coaches the agent "
                          "afterwards."),
            ("Observer", "Scores empathy, accuracy and ownership with a rubric, and leads the "
                         "debrief."),
        ),
        steps=(
            ("Opening the contact", "Greet the customer, confirm who they are and let them "
                                    "explain without interrupting."),
            ("Listening and de-escalation", "Acknowledge the impact, apologise specifically and "
                                            "summarise the problem back."),
            ("Diagnosing the problem", "Ask targeted questions, check the account and separate the "
                                       "symptom from the cause of {topic}."),
            ("Escalation", "Hand over to the team lead with a clear summary so the customer does "
                           "not have to repeat themselves."),
            ("Resolution and follow-up", "Agree a resolution and a follow-up date, then debrief on "
                                         "what worked."),
        ),
        objectives=(
            "De-escalate the customer early in the contact about {topic}",
            "Identify the root cause rather than just the symptom",
            "Escalate with a complete, concise handover summary",
            "End with a clear commitment and a follow-up the customer accepts",
        ),
        complication=("Complication: the customer threatens to leave",
                      "The customer says they are talking to a competitor and demands a manager "
                      "immediately."),
        tags=("customer support", "role-play", "de-escalation"),
        duration=45,
        materials=("Customer account summary", "Escalation policy", "Observer rubric"),
    ),
    _Template(
        key="emergency",
        label="emergency response",
        kind="Drill",
        keywords=("emergency", "fire", "fires", "evacuation", "evacuate", "earthquake", "flood",
                  "flooding", "drill", "drills", "disaster", "storm", "hurricane", "tornado",
                  "spill", "chemical", "lockdown", "power outage", "blackout", "explosion",
                  "ambulance", "rescue", "shelter", "wildfire", "gas leak", "bomb threat"),
        default_topic="a building fire evacuation",
        summary="staff respond to {topic}: raising the alarm, moving people to safety, accounting "
                "for everyone and handing over to the emergency services",
        setting="A workplace during normal operating hours, with staff, visitors and contractors "
                "on site. The exercise simulates {topic} and tests how quickly and safely people "
                "respond.",
        roles=(
            ("Incident Controller", "Takes charge on site, decides between evacuation and "
                                    "shelter-in-place and liaises with the emergency services."),
            ("Fire Warden", "Sweeps an assigned zone, guides people to the nearest safe exit and "
                            "reports the zone clear."),
            ("First Aider", "Treats injuries, helps people who need assistance and briefs "
                            "paramedics."),
            ("Roll-Call Coordinator", "Runs the roll call at the assembly point and reports anyone "
                                      "missing."),
        ),
        steps=(
            ("Alarm raised", "The exercise starts with a report of {topic}. Whoever spots it "
                             "raises the alarm and calls the emergency number."),
            ("Initial response", "The incident controller confirms the situation and orders "
                                 "evacuation or shelter-in-place."),
            ("Evacuation", "Wardens clear their zones using the nearest safe routes, helping "
                           "visitors and people with reduced mobility."),
            ("Roll call and accountability", "At the assembly point, account for everyone and "
                                             "report missing people to the incident controller."),
            ("Handover and debrief", "Brief the emergency services, decide when it is safe to "
                                     "return, then debrief on timings and gaps."),
        ),
        objectives=(
            "Raise the alarm and start the response to {topic} within two minutes",
            "Evacuate or shelter everyone using safe routes",
            "Account for every person on site at the assembly point",
            "Record timings and at least three improvements to the emergency plan for {topic}",
        ),
        complication=("Complication: a blocked exit",
                      "The main exit route is blocked, and one person is reported missing during "
                      "the roll call."),
        tags=("emergency", "drill", "safety"),
        duration=45,
        materials=("Site floor plan with exits and assembly points", "Roll-call lists",
                   "Stopwatch and observer checklist"),
    ),
    _Template(
        key="generic",
        label="general team",
        kind="Scenario",
        keywords=(),
        default_topic="a missed project deadline",
        summary="a small team works through {topic}, making decisions with incomplete "
                "information and reflecting on what they learned",
        setting="A team working under time pressure on {topic}, with incomplete information and "
                "competing priorities.",
        roles=(
            ("Team Lead", "Coordinates the group, makes the final calls and keeps an eye on time."),
            ("Specialist", "Brings the expert knowledge needed for {topic} and flags risks others "
                           "might miss."),
            ("Stakeholder", "Represents the people affected by the outcome; asks hard questions "
                            "and pushes for updates."),
            ("Facilitator", "Runs the session, introduces new information at each step and leads "
                            "the debrief."),
        ),
        steps=(
            ("Briefing", "The facilitator introduces {topic}, the goals and the constraints. "
                         "Everyone reads their role."),
            ("Assessing the situation", "Gather information, list what is known and unknown, and "
                                        "agree on priorities."),
            ("Making a plan", "Decide on a plan, assign owners and agree how progress will be "
                              "tracked."),
            ("New information", "The facilitator introduces an unexpected development and the "
                                "team adapts the plan."),
            ("Outcome and debrief", "Present the outcome, then discuss what went well and what to "
                                    "do differently."),
        ),
        objectives=(
            "Build a shared understanding of {topic} and its constraints",
            "Agree a plan with clear owners and deadlines",
            "Adapt the plan when new information arrives",
            "Identify at least three lessons about {topic} to apply next time",
        ),
        complication=("Complication: a key resource disappears",
                      "A key person or resource becomes unavailable, and the team must re-plan "
                      "with less."),
        tags=("teamwork", "decision-making"),
        duration=60,
        materials=("Role cards", "Whiteboard or shared document", "Timer"),
    ),
)

# Ordered request phrasings stripped from the front of a create message.
_REQUEST_PREFIXES = (
    r"(?:please|pls|hey|hi|hello|ok|okay|so|now|also|then)\b[\s,!.]*",
    r"(?:can|could|would|will)\s+you\s+(?:please\s+)?",
    r"i(?:'d|\s+would)?\s+(?:want|need|like|love)\s+(?:you\s+)?(?:to\s+)?",
    r"(?:let'?s|let\s+us)\s+",
    r"(?:create|make|build|generate|write|design|draft|produce|prepare|devise|invent|plan|"
    r"give|come\s+up\s+with|put\s+together|set\s+up|run|practi[sc]e|rehearse|simulate|do|try)"
    r"\b\s*(?:me|us)?\s*",
)
_ADJECTIVES = (r"new|short|quick|simple|small|realistic|detailed|fun|"
                r"interesting|challenging|easy|hard|difficult|beginner|intermediate|advanced|basic|"
                r"complex|full|complete|brief|good|great|sample|example")
_DESCRIPTORS = rf"a|an|the|some|one|another|{_ADJECTIVES}"
_GENERIC_NOUNS = (r"scenarios?|exercises?|simulations?|role[- ]?plays?|roleplays?|"
                  r"tabletop(?:\s+exercises?)?|games?|case\s+stud(?:y|ies)|sessions?|situations?|"
                  r"stor(?:y|ies)|training(?:\s+(?:scenario|exercise|session))?")
_CONNECTORS = (r"about|on|for|around|involving|covering|regarding|featuring|of|where|in\s+which|"
               r"that|with|based\s+on|dealing\s+with|focused\s+on|to\s+practi[sc]e|to\s+train|"
               r"to\s+test")
_VAGUE_TOPICS = {"", "something", "anything", "it", "one", "stuff", "whatever", "a", "an", "the",
                 "this", "that", "thing", "things", "something fun", "anything you like",
                 "me", "us", "scenario", "a scenario", "new", "please", "help", "hi", "hello"}


@dataclass(frozen=True)
class _CreateRequest:
    """What a create message asks for, after parsing."""

    template: _Template
    topic: str
    title: str
    difficulty: str
    duration: int


def _create(message: str, preface: str = "") -> str:
    request = _parse_create_request(message)
    scenario = _build_scenario(request)
    counts = _join_words([
        _plural(len(scenario["roles"]), "role"),
        _plural(len(scenario["steps"]), "step"),
        _plural(len(scenario["objectives"]), "objective"),
    ])
    explanation = (
        f"Here is a new {request.difficulty} {request.template.kind.lower()} "
        f"about {request.topic}, "
        f"drafted by the built-in offline model from its {request.template.label} template. "
        f"It has {counts}, so you can run it as is or adjust the details."
    )
    closing = ("Ask me to adjust it, for example \"add a role Scribe\", "
               "\"set duration_minutes to 30\" or \"make it harder\".")
    prose = f"{preface} {explanation}".strip()
    return f"{_safe(prose)}\n\n{_scenario_block(scenario)}\n{_safe(closing)}\n"


def _choose_template(text: str) -> _Template:
    """Pick the template whose keywords occur most often; ties go to the first."""
    words = _words(text)
    joined = " " + " ".join(words) + " "
    vocabulary = set(words)
    best, best_score = _TEMPLATES[-1], 0
    for template in _TEMPLATES:
        score = 0
        for keyword in template.keywords:
            if " " in keyword:
                score += 2 if f" {keyword} " in joined else 0
            elif keyword in vocabulary:
                score += 1
        if score > best_score:
            best, best_score = template, score
    return best


def _parse_create_request(message: str) -> _CreateRequest:
    text = _clean_value(message.split("\n", 1)[0] if message.strip() else "")
    duration_minutes, text = _extract_duration(text)
    explicit_title, text = _extract_explicit_title(text)
    topic = _extract_topic(text)
    template = _choose_template(f"{topic} {explicit_title} {message[:500]}")
    if _is_vague(topic):
        topic = explicit_title.lower() if explicit_title else template.default_topic
    title = explicit_title or _topic_title(topic, template)
    return _CreateRequest(
        template=template,
        topic=topic,
        title=title,
        difficulty=_requested_difficulty(message),
        duration=duration_minutes or template.duration,
    )


def _extract_duration(text: str) -> tuple[int | None, str]:
    """Find "30 minutes", "a 45-minute", "2 hours" and remove it from the text."""
    pattern = re.compile(
        r"(?:\b(?:lasting|for|of|in|taking|that\s+lasts)\s+)?(?:\b(?:about|around|roughly)\s+)?"
        r"\b(\d{1,3}(?:\.\d)?)\s*-?\s*(min|mins|minute|minutes|h|hr|hrs|hour|hours)\b(?:\s+long)?",
        re.I,
    )
    match = pattern.search(text)
    if not match:
        return None, text
    amount = float(match.group(1))
    minutes = amount * 60 if match.group(2).lower().startswith("h") else amount
    remainder = " ".join((text[: match.start()] + " " + text[match.end():]).split())
    return int(min(600, max(5, round(minutes)))), remainder


def _extract_explicit_title(text: str) -> tuple[str, str]:
    """Handle 'called "Night Shift"' / 'titled X'; return (title, text without it)."""
    quoted = re.search(
        r"\b(?:called|titled|named|entitled)\s+[\"“'‘]([^\"”'’]{1,80})[\"”'’]", text, re.I)
    if quoted:
        title = _clean_name(quoted.group(1))
        return title, " ".join((text[: quoted.start()] + " " + text[quoted.end():]).split())
    bare = re.search(r"\b(?:called|titled|named|entitled)\s+(.{1,80}?)"
                     r"(?=\s+(?:about|on|for|where|with|involving|set\s+in)\b|[,.;:!?]|$)",
                     text, re.I)
    if bare:
        title = _clean_name(bare.group(1))
        return title, " ".join((text[: bare.start()] + " " + text[bare.end():]).split())
    return "", text


def _extract_topic(text: str) -> str:
    """Strip the request phrasing ("create a scenario about ...") to leave the topic."""
    text = re.split(r"(?<=[.!?])\s+", text.strip(), maxsplit=1)[0]
    for _ in range(8):  # a handful of passes: "please can you create me ..."
        before = text
        for prefix in _REQUEST_PREFIXES:
            text = re.sub(rf"^{prefix}", "", text, flags=re.I).strip()
        if text == before:
            break
    generic = re.match(
        rf"^(?:(?:{_DESCRIPTORS})[\s,-]+)*(?:{_GENERIC_NOUNS})\b[\s,:-]*"
        rf"(?:(?:{_CONNECTORS})\b\s*)?",
        text, re.I)
    # "a medical simulation of sepsis": a few qualifying words, a generic noun and a
    # connector; the topic is what follows the connector.
    qualified = re.match(rf"^(?:[\w'-]+\s+){{1,3}}?(?:{_GENERIC_NOUNS})\s+(?:{_CONNECTORS})\b\s*",
                         text, re.I)
    if generic:
        text = text[generic.end():]
    elif qualified and text[qualified.end():].strip():
        text = text[qualified.end():]
    else:
        # "an advanced fire drill" -> "a fire drill": drop the adjectives, keep an article
        # so the topic reads naturally inside template sentences.
        leading = re.match(rf"^(?:(?P<art>a|an|the)\s+)?(?:(?:{_ADJECTIVES})\s+)+", text, re.I)
        if leading:
            rest = text[leading.end():]
            article = (leading.group("art") or "").lower()
            if article == "the":
                text = f"the {rest}"
            elif article and rest:
                text = f"{_article(rest)} {rest}"
            else:
                text = rest
    text = re.sub(r"\s+(?:for|aimed\s+at)\s+(?:complete\s+)?(?:beginners|novices|newcomers|"
                  r"experts|first[- ]timers)$", "", text, flags=re.I)
    text = re.sub(r"[\s,]*(?:please|thanks|thank\s+you|for\s+me|for\s+us)$", "", text, flags=re.I)
    text = _clean_name(text)
    words = text.split()
    if len(words) > 10:
        text = " ".join(words[:10]).rstrip(" ,;:")
    if text[:1].isupper() and text[1:2].islower():
        text = text[0].lower() + text[1:]  # "Warehouse fire" reads better mid-sentence
    return text


def _is_vague(topic: str) -> bool:
    return topic.lower().strip(" .!?") in _VAGUE_TOPICS or not re.search(r"\w", topic)


def _topic_title(topic: str, template: _Template) -> str:
    words = re.sub(r"^(?:a|an|the)\s+", "", topic, flags=re.I).split()[:8]
    small = {"a", "an", "the", "of", "for", "and", "or", "to", "in", "on", "at", "with", "about"}
    while len(words) > 1 and words[-1].lower() in small:
        words.pop()
    title = _title_case(" ".join(words))
    kind_words = {word.lower().rstrip("s") for word in re.split(r"[\s-]+", template.kind)}
    title_words = {word.lower().rstrip("s") for word in re.split(r"[\s-]+", title)}
    # A one- or two-word topic ("Phishing") makes a thin title; name the format too.
    if len(words) <= 2 and not kind_words & title_words:
        title = f"{title} {template.kind}"
    return title or f"Team {template.kind}"


def _requested_difficulty(message: str) -> str:
    for word in _words(message):
        level = _DIFFICULTY_SYNONYMS.get(word)
        if level is not None and word not in ("simple", "normal", "standard", "complex"):
            return DIFFICULTIES[level]
    return DIFFICULTIES[1]


def _build_scenario(request: _CreateRequest) -> dict[str, Any]:
    template, topic = request.template, request.topic

    def fill(text: str) -> str:
        return text.replace("{topic}", topic)

    steps = [{"title": title, "description": fill(description)}
             for title, description in template.steps]
    if request.difficulty == "advanced":
        # Advanced runs get a mid-exercise twist, inserted before the wrap-up step.
        steps.insert(len(steps) - 1, {"title": template.complication[0],
                                      "description": template.complication[1]})
    kind = template.kind.lower()
    return {
        "title": request.title,
        # The summary leaves the difficulty out, so "make it harder" can't make it stale.
        "summary": _sentence(f"{_article(kind).capitalize()} {kind} in which "
                             f"{fill(template.summary)}"),
        "setting": fill(template.setting),
        "difficulty": request.difficulty,
        "roles": [{"name": name, "description": fill(description)}
                  for name, description in template.roles],
        "steps": steps,
        "objectives": [fill(objective) for objective in template.objectives],
        "duration_minutes": request.duration,
        "tags": list(template.tags),
        "materials": list(template.materials),
    }


def _default_scenario() -> dict[str, Any]:
    """The scenario an empty create request produces (used by modify without one)."""
    return _build_scenario(_parse_create_request(""))


# ---------------------------------------------------------------------------
# modify: parsing plain edits
# ---------------------------------------------------------------------------


@dataclass
class _Edit:
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


_Parser = Callable[[str, dict], "_Edit | None"]

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


def _parse_rename_role(text: str, scenario: dict) -> _Edit | None:
    match = (
        _match(r"(?:rename|change)\s+(?:the\s+)?role\s+(?:of\s+|called\s+|named\s+)?(?P<old>.+?)"
               r"\s+(?:to|into|as)\s+(?P<new>.+)", text)
        or _match(r"(?:rename|change)\s+(?:the\s+)?(?P<old>.+?)\s+role\s+(?:to|into|as)\s+"
                  r"(?P<new>.+)", text)
    )
    if not match:
        return None
    old, new = _clean_name(match.group("old")), _clean_name(match.group("new"))
    if not old or not new:
        return None
    return _Edit("rename_role", {"old": old, "new": new}, text)


def _parse_title(text: str, scenario: dict) -> _Edit | None:
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
            value = _clean_name(match.group("v"))
            return _Edit("title", {"value": value}, text, extendable=True) if value else None
    return None


def _parse_difficulty(text: str, scenario: dict) -> _Edit | None:
    target = (r"(?:it|this|this\s+scenario|"
              r"the\s+(?:scenario|exercise|game|drill|simulation|role-?play))")
    match = _match(
        rf"make\s+(?:{target}\s+)?(?:a\s+)?(?:(?:bit|little|lot|tad)\s+)?"
        r"(?:much\s+|slightly\s+|even\s+|a\s+bit\s+)?(?P<dir>harder|tougher|more\s+(?:difficult|"
        r"challenging|advanced)|easier|simpler|less\s+(?:difficult|challenging|hard))\.?", text)
    if match:
        word = match.group("dir").lower()
        harder = word in ("harder", "tougher") or word.startswith("more")
        return _Edit("harder" if harder else "easier", {}, text)
    match = _match(r"(?P<dir>increase|raise|bump\s+up|up|decrease|lower|reduce|drop)\s+"
                   r"(?:the\s+)?(?:difficulty|level)(?:\s+level)?"
                   r"(?:\s+a\s+(?:bit|notch|level))?\.?",
                   text)
    if match:
        harder = match.group("dir").lower() in ("increase", "raise", "bump up", "up")
        return _Edit("harder" if harder else "easier", {}, text)
    match = _match(rf"make\s+(?:{target}\s+)?(?:an?\s+)?(?P<lvl>beginner|intermediate|advanced|"
                   r"easy|medium|hard|expert|basic)(?:\s+(?:level|scenario|one|difficulty))?\.?",
                   text)
    if match:
        level = DIFFICULTIES[_DIFFICULTY_SYNONYMS[match.group("lvl").lower()]]
        return _Edit("set", {"key": "difficulty", "value": level}, text)
    return None


def _split_name_description(rest: str) -> tuple[str, str]:
    """Split "Name: description" / "Name who does X" into its two parts."""
    match = re.match(r"(?P<n>.+?)\s*(?::|\s[-–—]\s|,\s+|\s+(?:who|that|which)\s+)(?P<d>.+)",
                     rest, re.S)
    if not match:
        return rest, ""
    return match.group("n"), match.group("d")


def _parse_add_role(text: str, scenario: dict) -> _Edit | None:
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
    name = _smart_title(_clean_name(name))
    if not match or not name or name.lower() in ("a", "an", "the", "new", "another"):
        return None
    description = _clean_value(description)
    return _Edit("add_role", {"name": name, "description": description}, text, extendable=True)


def _parse_remove_role(text: str, scenario: dict) -> _Edit | None:
    match = (
        _match(rf"{_VERB_REMOVE}\s+(?:the\s+)?(?:role|character|participant|player)\s+"
               r"(?:of\s+|called\s+|named\s+)?(?P<ref>.+)", text)
        or _match(rf"{_VERB_REMOVE}\s+(?:the\s+)?(?P<ref>.+?)\s+(?:role|character)", text)
    )
    if not match:
        return None
    ref = _clean_name(match.group("ref"))
    number = _parse_ordinal_or_number(ref)
    if number is not None:
        return _Edit("remove_role", {"number": number}, text, carry="remove role")
    return _Edit("remove_role", {"ref": ref}, text, carry="remove role") if ref else None


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


def _parse_add_step(text: str, scenario: dict) -> _Edit | None:
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
    title = _smart_title(_clean_name(title))
    if not title or title.lower() in ("a", "an", "the", "new", "another"):
        return None
    args = {"title": title, "description": _clean_value(description),
            "index": index, "relation": relation}
    return _Edit("add_step", args, text, extendable=True)


def _split_step(rest: str) -> tuple[str, str]:
    match = re.match(r"(?P<t>.+?)\s*(?::|\s[-–—]\s)(?P<d>.+)", rest, re.S)
    return (match.group("t"), match.group("d")) if match else (rest, "")


def _parse_ordinal_or_number(text: str) -> int | None:
    """1-based index from "2", "#2", "number 2", "2nd", "second"; -1 for "last"."""
    text = text.strip().lower()
    match = re.fullmatch(r"(?:number\s+|no\.?\s*|#\s*)?(\d{1,4})(?:st|nd|rd|th)?", text)
    if match:
        return int(match.group(1))
    return _ORDINALS.get(text)


def _parse_remove_indexed(text: str, nouns: str, kind: str, carry: str) -> _Edit | None:
    """Shared grammar of "remove step 2" / "remove the last objective" / "remove step X"."""
    match = _match(rf"{_VERB_REMOVE}\s+(?:the\s+)?(?P<ord>{'|'.join(_ORDINALS)})\s+(?:{nouns})",
                   text)
    if match:
        return _Edit(kind, {"number": _ORDINALS[match.group("ord").lower()]}, text, carry=carry)
    match = _match(rf"{_VERB_REMOVE}\s+(?:the\s+)?(?:{nouns})s?\s*(?:number\s+|no\.?\s*|#\s*)?"
                   r"(?P<n>\d{1,4})(?:st|nd|rd|th)?\.?", text)
    if match:
        return _Edit(kind, {"number": int(match.group("n"))}, text, carry=carry)
    match = (
        _match(rf"{_VERB_REMOVE}\s+(?:the\s+)?(?:{nouns})\s*(?:(?:called|titled|named|about|that\s+"
               r"says)\b\s*|[:\-]\s*)?(?P<ref>.+)", text)
        or _match(rf"{_VERB_REMOVE}\s+(?:the\s+)?(?P<ref>.+?)\s+(?:{nouns})", text)
    )
    if match:
        ref = _clean_name(match.group("ref"))
        number = _parse_ordinal_or_number(ref)
        if number is not None:
            return _Edit(kind, {"number": number}, text, carry=carry)
        return _Edit(kind, {"ref": ref}, text, carry=carry) if ref else None
    return None


def _parse_remove_step(text: str, scenario: dict) -> _Edit | None:
    return _parse_remove_indexed(text, r"step|phase|stage", "remove_step", "remove step")


def _parse_remove_objective(text: str, scenario: dict) -> _Edit | None:
    return _parse_remove_indexed(text, r"objective|goal|aim", "remove_objective",
                                 "remove objective")


def _parse_add_objective(text: str, scenario: dict) -> _Edit | None:
    match = (
        _match(rf"add\s+{_ART}(?:learning\s+)?(?:objective|goal|aim)s?\b\s*"
               r"(?:(?:that|to|of|:)\b\s*|[:\-]\s*)?(?P<t>.+)", text)
        or _match(r"add\s+(?P<t>.+?)\s+(?:as|to\s+the)\s+(?:an?\s+|another\s+|new\s+)?"
                  r"(?:objective|goal)s?", text)
    )
    if not match:
        return None
    value = _clean_value(match.group("t")).rstrip(" .;,")
    if not value:
        return None
    return _Edit("add_objective", {"text": value[:1].upper() + value[1:]}, text, extendable=True)


def _resolve_field(name: str, scenario: dict) -> str | None:
    """Map a field name from the message to a top-level key, or None if unknown."""
    norm = re.sub(r"[\s\-]+", "_", name.strip().lower()).strip("_")
    norm = re.sub(r"^(?:the_|its_|scenario_|scenario's_)", "", norm)
    if not norm:
        return None
    for key in scenario:
        if str(key).lower() == norm:
            return str(key)
    target = _FIELD_SYNONYMS.get(norm, norm)
    if target in ("title", "summary", "setting", "difficulty"):
        return target
    for key in scenario:
        if str(key).lower() == target:
            return str(key)
    prefixed = [str(key) for key in scenario if str(key).lower().startswith(norm + "_")]
    if len(prefixed) == 1:
        return prefixed[0]
    return target if target in _KNOWN_EXTRAS else None


def _settable(key: str, scenario: dict) -> bool:
    """Only scalar keys and lists of strings can be set from one line of text."""
    if key in ("roles", "steps"):
        return False
    value = scenario.get(key, _KNOWN_EXTRAS.get(key))
    if isinstance(value, dict):
        return False
    if isinstance(value, list):
        return all(isinstance(item, str) for item in value)
    return True


def _parse_set(text: str, scenario: dict) -> _Edit | None:
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
    raw = _clean_value(match.group("v"))
    if not raw:
        return None
    if key == "title":
        return _Edit("title", {"value": _clean_name(raw)}, text, extendable=True)
    return _Edit("set", {"key": key, "value": raw}, text, extendable=True)


def _parse_generic_remove(text: str, scenario: dict) -> _Edit | None:
    """"remove the Observer": accept it when the name matches exactly one item."""
    match = _match(rf"{_VERB_REMOVE}\s+(?:the\s+)?(?P<ref>.+)", text)
    if not match:
        return None
    ref = _clean_name(match.group("ref")).lower()
    if any(role.name.lower() == ref for role in _roles(scenario)):
        return _Edit("remove_role", {"ref": ref}, text, carry="remove")
    if any(step.name.lower() == ref for step in _steps(scenario)):
        return _Edit("remove_step", {"ref": ref}, text, carry="remove")
    if any(_norm_text(objective) == _norm_text(ref) for objective in _objectives(scenario)):
        return _Edit("remove_objective", {"ref": ref}, text, carry="remove")
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


def _parse_clause(clause: str, scenario: dict) -> _Edit | None:
    text = _clean_clause(clause)
    if not text:
        return None
    for parser in _PARSERS:
        edit = parser(text, scenario)
        if edit is not None:
            edit.source = clause.strip()
            return edit
    return None


def _parse_request(message: str, scenario: dict) -> tuple[list[_Edit], list[str]]:
    """Split a message into edits; return (edits, clauses that parsed as nothing).

    Newlines and ";" always separate edits. " and ", commas, "then" and
    sentence ends only might: a piece that parses as nothing is glued back to
    the free-text edit before it, so values may contain them.
    """
    edits: list[_Edit] = []
    unparsed: list[str] = []
    for chunk in _HARD_SPLIT.split(message):
        if not chunk.strip():
            continue
        pieces = _SOFT_SPLIT.split(chunk)
        last: _Edit | None = None
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


# ---------------------------------------------------------------------------
# modify: applying edits
# ---------------------------------------------------------------------------


@dataclass
class _Outcome:
    """What happened to the edits: done for the summary, failed for the notes."""

    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _norm_text(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _find_named(entries: list[Any], ref: str, label_key: str) -> int | None:
    """Index of the entry whose name matches ref: exact first, then a unique partial match."""
    wanted = _norm_text(ref)
    if not wanted:
        return None
    labels = []
    for entry in entries:
        if isinstance(entry, dict):
            labels.append(_norm_text(_one_line(entry.get(label_key) or entry.get("name")
                                               or entry.get("title"))))
        else:
            labels.append(_norm_text(_one_line(entry)))
    for index, label in enumerate(labels):
        if label == wanted:
            return index
    partial = [index for index, label in enumerate(labels)
               if label and len(wanted) >= 3 and (wanted in label or label in wanted)]
    return partial[0] if len(partial) == 1 else None


def _entry_label(entry: Any, label_key: str) -> str:
    if isinstance(entry, dict):
        return _one_line(entry.get(label_key) or entry.get("name") or entry.get("title"), 80)
    return _one_line(entry, 80)


def _list_field(scenario: dict, key: str, outcome: _Outcome, create: bool) -> list | None:
    value = scenario.get(key)
    if isinstance(value, list):
        return value
    if value is None and create:
        scenario[key] = []
        return scenario[key]
    if value is None:
        outcome.failed.append(f"The scenario has no {key} yet.")
    else:
        outcome.failed.append(f"\"{key}\" is not a list, so I left it alone.")
    return None


def _coerce(key: str, raw: str, current: Any) -> tuple[bool, Any]:
    """Convert text to the type the field already has; (False, reason) if impossible."""
    if key == "difficulty":
        level = _difficulty_level(raw.rstrip(" ."))
        return True, DIFFICULTIES[level] if level is not None else raw.rstrip(" .")
    if isinstance(current, bool):
        lowered = raw.lower().rstrip(" .")
        if lowered in ("yes", "true", "on", "1"):
            return True, True
        if lowered in ("no", "false", "off", "0"):
            return True, False
        return False, f"\"{key}\" is a yes/no field, and \"{_one_line(raw, 40)}\" is neither."
    number = re.match(r"[-+]?\d{1,15}(?:\.\d{1,10})?", raw)
    if isinstance(current, (int, float)):
        if not number:
            return False, f"\"{key}\" needs a number, and \"{_one_line(raw, 40)}\" isn't one."
        return True, _to_number(number.group(0))
    if isinstance(current, list):
        parts = [part.strip(" .") for part in re.split(r"\s*,\s*|\s+and\s+", raw)]
        return True, [part for part in parts if part]
    if current is None and number and number.group(0) == raw.strip():
        return True, _to_number(raw.strip())
    return True, raw


def _to_number(text: str) -> int | float:
    return float(text) if "." in text else int(text)


def _apply_set(scenario: dict, edit: _Edit, outcome: _Outcome) -> None:
    key = edit.args["key"]
    current = scenario.get(key, _KNOWN_EXTRAS.get(key))
    ok, value = _coerce(key, edit.args["value"], current)
    if not ok:
        outcome.failed.append(value)
        return
    old = scenario.get(key)
    scenario[key] = value
    label = _label(key).lower()
    shown = _quote(value, 120) if isinstance(value, str) else _summarise(value)
    if old is None:
        outcome.done.append(f"Added the {label}: {shown}.")
    elif old == value:
        outcome.done.append(f"The {label} was already {shown}, so nothing changed there.")
    else:
        outcome.done.append(f"Changed the {label} to {shown}.")


def _apply_title(scenario: dict, edit: _Edit, outcome: _Outcome) -> None:
    old = _one_line(scenario.get("title"))
    scenario["title"] = edit.args["value"]
    if old:
        outcome.done.append(f"Renamed the scenario from \"{old}\" to \"{edit.args['value']}\".")
    else:
        outcome.done.append(f"Set the title to \"{edit.args['value']}\".")


def _apply_difficulty_move(scenario: dict, edit: _Edit, outcome: _Outcome) -> None:
    current = _difficulty_level(scenario.get("difficulty"))
    level = 1 if current is None else current
    target = min(2, level + 1) if edit.kind == "harder" else max(0, level - 1)
    if current is not None and target == level:
        extreme = "hardest" if edit.kind == "harder" else "easiest"
        outcome.failed.append(f"The difficulty is already {DIFFICULTIES[level]}, the {extreme} "
                              "level I know, so I left it.")
        return
    if current is None:
        # An unknown label counts as intermediate, so "harder" lands on advanced.
        target = 2 if edit.kind == "harder" else 0
    old = _one_line(scenario.get("difficulty")) or "unset"
    scenario["difficulty"] = DIFFICULTIES[target]
    outcome.done.append(f"Changed the difficulty from {old} to {DIFFICULTIES[target]}.")


def _apply_add_role(scenario: dict, edit: _Edit, outcome: _Outcome) -> None:
    roles = _list_field(scenario, "roles", outcome, create=True)
    if roles is None:
        return
    name, description = edit.args["name"], edit.args["description"]
    existing = _find_exact(roles, name, "name")
    if existing is not None:
        if description and isinstance(roles[existing], dict):
            roles[existing]["description"] = _sentence(description)
            outcome.done.append(f"Updated the description of the role \"{name}\".")
        else:
            outcome.failed.append(f"There is already a role called \"{name}\", so I didn't add "
                                  "another.")
        return
    text = _sentence(description) if description else (
        "Added on request; agree their goals and what they know before the session starts.")
    roles.append({"name": name, "description": text})
    outcome.done.append(f"Added the role \"{name}\".")


def _find_exact(entries: list[Any], ref: str, label_key: str) -> int | None:
    wanted = _norm_text(ref)
    for index, entry in enumerate(entries):
        if _norm_text(_entry_label(entry, label_key)) == wanted:
            return index
    return None


def _apply_remove_named(scenario: dict, edit: _Edit, outcome: _Outcome,
                        key: str, label_key: str, noun: str) -> None:
    entries = _list_field(scenario, key, outcome, create=False)
    if entries is None:
        return
    index = _target_index(entries, edit, label_key)
    if index is None:
        known = _short_list([_quote(_entry_label(entry, label_key), 60) for entry in entries])
        what = edit.args.get("ref") or f"number {edit.args.get('number')}"
        suffix = f" The {key} are: {known}." if known else f" There are no {key}."
        outcome.failed.append(f"I couldn't find the {noun} {_quote(str(what))}.{suffix}")
        return
    removed = entries.pop(index)
    outcome.done.append(f"Removed the {noun} {_quote(_entry_label(removed, label_key))}.")


def _target_index(entries: list[Any], edit: _Edit, label_key: str) -> int | None:
    """Where the edit's target is now: by identity if pinned, else by number or name."""
    if "target" in edit.args:
        for index, entry in enumerate(entries):
            if entry is edit.args["target"]:
                return index
        return None
    number = edit.args.get("number")
    if number is not None:
        if number == -1 and entries:
            return len(entries) - 1
        return number - 1 if 1 <= number <= len(entries) else None
    return _find_named(entries, edit.args.get("ref", ""), label_key)


def _apply_rename_role(scenario: dict, edit: _Edit, outcome: _Outcome) -> None:
    roles = _list_field(scenario, "roles", outcome, create=False)
    if roles is None:
        return
    index = _find_named(roles, edit.args["old"], "name")
    if index is None or not isinstance(roles[index], dict):
        known = _short_list([_quote(_entry_label(role, "name"), 60) for role in roles])
        outcome.failed.append(f"I couldn't find the role {_quote(edit.args['old'])}. "
                              f"The roles are: {known or 'none'}.")
        return
    old = _entry_label(roles[index], "name")
    roles[index]["name"] = edit.args["new"]
    outcome.done.append(f"Renamed the role \"{old}\" to \"{edit.args['new']}\".")


def _apply_add_step(scenario: dict, edit: _Edit, outcome: _Outcome) -> None:
    steps = _list_field(scenario, "steps", outcome, create=True)
    if steps is None:
        return
    title, description = edit.args["title"], edit.args["description"]
    entry = {"title": title, "description": _sentence(description) if description else
             "Added on request; describe what happens and what participants must decide."}
    index, relation = edit.args["index"], edit.args["relation"]
    if index is None or index == -1:
        position = len(steps)
    elif relation == "after":
        position = index + 1
    else:
        position = index
    position = max(0, min(len(steps), position))
    steps.insert(position, entry)
    outcome.done.append(f"Added the step \"{title}\" as step {position + 1} of {len(steps)}.")


def _apply_add_objective(scenario: dict, edit: _Edit, outcome: _Outcome) -> None:
    objectives = _list_field(scenario, "objectives", outcome, create=True)
    if objectives is None:
        return
    text = edit.args["text"]
    if any(_norm_text(_one_line(item)) == _norm_text(text) for item in objectives):
        outcome.failed.append(f"The objective {_quote(text)} is already there.")
        return
    objectives.append(text)
    outcome.done.append(f"Added the objective {_quote(text)}.")


def _pin_numbered_targets(scenario: dict, edits: list[_Edit]) -> None:
    """Resolve "remove step 2" against the numbering the user was looking at.

    Without this, "remove step 2 and 3" would remove the original steps 2 and 4,
    because removing step 2 renumbers everything after it.
    """
    keys = {"remove_step": "steps", "remove_objective": "objectives", "remove_role": "roles"}
    for edit in edits:
        key = keys.get(edit.kind)
        number = edit.args.get("number")
        entries = scenario.get(key) if key else None
        if number is None or not isinstance(entries, list):
            continue
        if number == -1 and entries:
            edit.args["target"] = entries[-1]
        elif 1 <= number <= len(entries):
            edit.args["target"] = entries[number - 1]


def _apply_edits(scenario: dict, edits: list[_Edit]) -> _Outcome:
    outcome = _Outcome()
    _pin_numbered_targets(scenario, edits)
    for edit in edits:
        if edit.kind == "title":
            _apply_title(scenario, edit, outcome)
        elif edit.kind == "set":
            _apply_set(scenario, edit, outcome)
        elif edit.kind in ("harder", "easier"):
            _apply_difficulty_move(scenario, edit, outcome)
        elif edit.kind == "add_role":
            _apply_add_role(scenario, edit, outcome)
        elif edit.kind == "rename_role":
            _apply_rename_role(scenario, edit, outcome)
        elif edit.kind == "remove_role":
            _apply_remove_named(scenario, edit, outcome, "roles", "name", "role")
        elif edit.kind == "add_step":
            _apply_add_step(scenario, edit, outcome)
        elif edit.kind == "remove_step":
            _apply_remove_named(scenario, edit, outcome, "steps", "title", "step")
        elif edit.kind == "add_objective":
            _apply_add_objective(scenario, edit, outcome)
        elif edit.kind == "remove_objective":
            _apply_remove_named(scenario, edit, outcome, "objectives", "", "objective")
    return outcome


# ---------------------------------------------------------------------------
# modify: the response
# ---------------------------------------------------------------------------


def _modify(message: str, scenario: dict | None) -> str:
    if scenario is None:
        return _modify_without_scenario(message)
    working = copy.deepcopy(scenario)
    edits, unparsed = _parse_request(message, working)
    outcome = _apply_edits(working, edits)
    if not (isinstance(working.get("title"), str) and working["title"].strip()):
        # A scenario must have a title; the block is useless to the caller without one.
        working["title"] = "Untitled scenario"
        outcome.done.append("Gave the scenario the placeholder title \"Untitled scenario\", "
                            "because it had none.")
    return _modify_response(outcome, unparsed, working, message)


def _modify_without_scenario(message: str) -> str:
    """No scenario to edit: apply pure edits to a fresh one, otherwise create from the message."""
    base = _default_scenario()
    edits, unparsed = _parse_request(message, base)
    if edits and not unparsed:
        outcome = _apply_edits(base, edits)
        lines = ["There's no scenario loaded yet, so I started from a new general scenario "
                 "and applied your edits:"]
        lines += [f"- {line}" for line in outcome.done + outcome.failed]
        prose = "\n".join(lines)
        return f"{_safe(prose)}\n\n{_scenario_block(base)}"
    return _create(message, preface="There's no scenario loaded yet, so I created a new one.")


def _modify_response(outcome: _Outcome, unparsed: list[str], scenario: dict,
                     message: str) -> str:
    parts: list[str] = []
    if outcome.done:
        count = _plural(len(outcome.done), "change")
        parts.append("\n".join([f"Done: I applied {count} with the built-in offline model."]
                               + [f"- {line}" for line in outcome.done]))
    if outcome.failed:
        parts.append("\n".join(["Some edits could not be applied:"]
                               + [f"- {line}" for line in outcome.failed]))
    if unparsed or not (outcome.done or outcome.failed):
        parts.append(_unsupported_note(unparsed, message, partial=bool(outcome.done)))
    if outcome.done:
        parts.append("Here is the updated scenario; everything else is as before:")
    else:
        parts.append("Here is the scenario, unchanged:")
    prose = "\n\n".join(parts)
    return f"{_safe(prose)}\n\n{_scenario_block(scenario)}"


def _unsupported_note(unparsed: list[str], message: str, partial: bool) -> str:
    if unparsed:
        quoted = _join_words([_quote(text, 90) for text in unparsed[:3]])
        opening = (f"Sorry, the built-in offline model only handles plain edits, and I couldn't "
                   f"turn {quoted} into one.")
    elif message.strip():
        opening = ("Sorry, the built-in offline model only handles plain edits, and I couldn't "
                   "find one in your request.")
    else:
        opening = "Tell me what to change: the built-in offline model handles plain edits only."
    if partial:
        opening += " I applied the parts I understood."
    lines = [opening, "It understands requests like:"]
    lines += [f"- {example}" for example in _SUPPORTED_EDITS]
    lines.append("Several edits can be joined with \"and\", \";\" or new lines. "
                 + _REAL_MODEL_HINT)
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# chat
# ---------------------------------------------------------------------------

_GREETINGS = {"hi", "hello", "hey", "hiya", "howdy", "morning", "afternoon", "evening", "yo",
              "greetings"}
_THANKS = {"thanks", "thank", "thx", "cheers", "ta", "great", "perfect", "awesome", "cool", "nice"}
_FOLLOW_UP = re.compile(r"^(?:and|also|what\s+about|how\s+about|ok(?:ay)?|then|so|but|why|more)\b",
                        re.I)

# Keyword groups for the topic of a chat message, checked in this order.
_CHAT_TOPICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("capabilities", ("what can you do", "help me", "can you do", "who are you", "what are you",
                      "offline model", "which model", "api key")),
    ("casting", ("who should play", "who should be", "cast", "casting", "assign", "allocate",
                 "who plays", "give the role", "pick someone", "choose someone")),
    ("duration", ("how long", "duration", "minutes", "hours", "time", "timing", "length")),
    ("difficulty", ("difficulty", "difficult", "hard", "easy", "level", "beginner",
                    "advanced", "intermediate", "challenging", "too complex")),
    ("objectives", ("objective", "objectives", "goal", "goals", "learn", "outcome", "outcomes",
                    "success", "evaluate", "assess", "measure", "debrief")),
    ("run", ("run", "facilitate", "facilitator", "facilitating", "host", "organise", "organize",
             "prepare", "tips", "advice", "start", "how do i", "how should i", "materials")),
    ("steps", ("step", "steps", "phase", "phases", "flow", "order", "sequence", "agenda",
               "what happens", "stages")),
    ("roles", ("role", "roles", "character", "characters", "who", "players", "participants",
               "people", "how many people")),
    ("setting", ("setting", "where", "location", "place", "context", "background")),
    ("summary", ("what is", "what's", "about", "summary", "overview", "explain", "describe")),
    ("create", ("create", "new scenario", "generate", "another scenario")),
)


def _chat(message: str, scenario: dict | None, history: list[dict[str, str]]) -> str:
    text = " ".join(message.split())
    topic = _chat_topic(text, scenario)
    prefix = ""
    earlier = [turn["content"] for turn in history if turn["role"] == "user"]
    if topic in ("", "overview") and earlier and text:
        # A vague follow-up ("and then?") continues the previous question's topic.
        previous = _chat_topic(" ".join(earlier[-1].split()), scenario)
        if previous not in ("", "overview", "greeting", "thanks"):
            topic, prefix = previous, "Picking up your earlier question."
    elif history and _FOLLOW_UP.match(text):
        prefix = "Following on from that."
    if scenario is None:
        body = _chat_without_scenario(topic)
    else:
        body = _chat_with_scenario(topic, text, scenario)
    return _safe(f"{prefix} {body}".strip()) + "\n"


def _chat_topic(text: str, scenario: dict | None) -> str:
    """Classify a chat message; "role:N" / "step:N" point at one item (0-based)."""
    lowered = text.lower()
    words = _words(text)
    if not words:
        return "overview"
    if scenario is not None:
        step = _mentioned_step(lowered, scenario)
        role = _mentioned_role(lowered, scenario)
        if role is not None and any(cue in lowered for cue in _CHAT_TOPICS[1][1]):
            return f"cast:{role}"
        if step is not None:
            return f"step:{step}"
        missing = re.search(r"\b(?:step|phase|stage)\s*#?\s*(\d{1,3})\b", lowered)
        if missing:
            return f"nostep:{missing.group(1)}"
        if role is not None:
            return f"role:{role}"
        # Only short messages can be a plain edit worth pointing out; skip parsing long ones.
        edits, unparsed = _parse_request(text, scenario) if len(text) < 300 else ([], [text])
        if edits and not unparsed and re.match(r"(?:please\s+)?(?:add|remove|delete|rename|set|"
                                               r"change|make|increase|decrease|drop)\b", lowered):
            return "edit"
    if len(words) <= 4 and words[0] in _GREETINGS:
        return "greeting"
    if len(words) <= 5 and words[0] in _THANKS:
        return "thanks"
    vocabulary = set(words)
    padded = " " + " ".join(words) + " "
    for name, cues in _CHAT_TOPICS:
        for cue in cues:
            if (" " in cue and f" {cue} " in padded) or cue in vocabulary:
                return name
    return ""


def _mentioned_step(lowered: str, scenario: dict) -> int | None:
    steps = _steps(scenario)
    match = re.search(r"\b(?:step|phase|stage)\s*#?\s*(\d{1,3})\b", lowered)
    if match:
        number = int(match.group(1))
        return number - 1 if 1 <= number <= len(steps) else None
    match = re.search(rf"\b({'|'.join(_ORDINALS)})\s+(?:step|phase|stage)\b", lowered)
    if match and steps:
        number = _ORDINALS[match.group(1)]
        if number == -1:
            return len(steps) - 1
        return number - 1 if number <= len(steps) else None
    for index, step in enumerate(steps):
        name = step.name.lower()
        if len(name) >= 4 and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", lowered):
            return index
    return None


_GENERIC_ROLE_WORDS = {"lead", "manager", "director", "officer", "chief", "the", "and", "of",
                       "or", "side", "team", "member", "support", "senior", "junior", "head"}


def _mentioned_role(lowered: str, scenario: dict) -> int | None:
    """Role named in the text: the full name, else one distinctive word of exactly one role."""
    roles = _roles(scenario)
    for index, role in enumerate(roles):
        name = role.name.lower()
        if name and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", lowered):
            return index
    words = set(_words(lowered))
    hits = [index for index, role in enumerate(roles)
            if any(len(word) >= 4 and word not in _GENERIC_ROLE_WORDS and word in words
                   for word in _words(role.name))]
    return hits[0] if len(hits) == 1 else None


# Casting heuristics: (cue words, who should play the role). The role's name is
# checked before its description, because a name like "Chief Medical Officer"
# says more than a description that merely mentions patients.
_CASTING: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"observer", "evaluator", "coach", "scribe", "facilitator", "assessor",
                "neutral"}),
     "a facilitator or senior colleague who can take notes and stay out of the action"),
    (frozenset({"customer", "client", "patient", "caller", "family", "angry", "frustrated",
                "supplier", "stakeholder", "seller", "reporter", "attacker", "actor"}),
     "someone confident at improvising, who can push back convincingly"),
    (frozenset({"analyst", "specialist", "ciso", "engineer", "technical", "finance", "legal",
                "counsel", "doctor", "physician", "nurse", "aider", "medical", "it"}),
     "someone with a real background in that field, so the details stay credible"),
    (frozenset({"commander", "controller", "lead", "leads", "manager", "director", "chief",
                "head", "coo", "ceo", "officer", "warden", "coordinator"}),
     "an experienced person who is comfortable making calls under pressure"),
)


def _casting_advice(role: _Item) -> str:
    """Who should play a role, guessed from words in its name, then its description."""
    for text in (role.name, role.description):
        words = set(_words(text))
        for cues, advice in _CASTING:
            if words & cues:
                return advice
    return "a participant who wants to practise exactly that job"


def _lower_first(text: str) -> str:
    """"Leads the team" -> "leads the team", but keep "CISO" and "Dana"-style names."""
    if text[:1].isupper() and text[1:2].islower() and text.split(" ", 1)[0].lower() not in (
            "i",):
        return text[0].lower() + text[1:]
    return text


def _chat_with_scenario(topic: str, text: str, scenario: dict) -> str:
    title = _title(scenario)
    roles, steps, objectives = _roles(scenario), _steps(scenario), _objectives(scenario)
    role_names = [role.name for role in roles if role.name]
    if topic.startswith(("role:", "cast:")):
        return _chat_about_role(roles[int(topic[5:])], steps, topic.startswith("cast:"))
    if topic.startswith("step:"):
        return _chat_about_step(int(topic[5:]), steps)
    if topic.startswith("nostep:"):
        if not steps:
            return (f"\"{title}\" has no steps yet; add some with "
                    "\"add a step <title>: <description>\".")
        return _chat_steps(steps, missing=int(topic[7:]))
    if topic == "edit":
        return ("That sounds like an edit. Send it as a change request and I'll apply it to "
                f"\"{title}\" and show you the updated scenario; I handle plain edits like "
                "\"add a role Scribe\", \"remove step 2\" or \"make it harder\".")
    if topic == "greeting":
        return (f"Hello! You have \"{title}\" loaded. Ask me about its roles, steps or "
                "objectives, how to run it, or ask me to change it.")
    if topic == "thanks":
        return f"You're welcome. Good luck with \"{title}\"; ask me anytime if you need more."
    if topic == "capabilities":
        return f"{_capabilities()} Right now \"{title}\" is loaded, so just ask away."
    if topic == "casting":
        return _chat_casting(title, roles)
    if topic == "duration":
        return _chat_duration(scenario, steps)
    if topic == "difficulty":
        return _chat_difficulty(scenario, title, steps)
    if topic == "objectives":
        if not objectives:
            return (f"\"{title}\" has no objectives yet. Add two or three with \"add objective "
                    "<text>\" so the debrief has something to measure against.")
        listed = "; ".join(_quote(objective, 160) for objective in objectives[:5])
        return (f"\"{title}\" has {_plural(len(objectives), 'objective')}: {listed}. "
                "Use them as your debrief checklist: for each one, ask the group what evidence "
                "shows it was met.")
    if topic == "run":
        return _chat_run(scenario, roles, steps, objectives)
    if topic == "steps":
        if not steps:
            return (f"\"{title}\" has no steps yet; add some with "
                    "\"add a step <title>: <description>\".")
        return _chat_steps(steps)
    if topic == "roles":
        return _chat_roles(title, roles)
    if topic == "setting":
        setting = _one_line(scenario.get("setting"), 500)
        if not setting:
            return f"\"{title}\" has no setting yet; try \"set setting to <where and when>\"."
        return (f"\"{title}\" takes place here: {_sentence(setting)} Share it with everyone "
                "at the start, but keep "
                "role-specific details in the individual briefs.")
    if topic == "create":
        return ("I can draft a new scenario from a short description, for example \"create a "
                "scenario about a warehouse fire evacuation drill\". The current one, "
                f"\"{title}\", stays as it is until you load the new one.")
    summary = _first_sentence(_one_line(scenario.get("summary")), 320)
    difficulty = _one_line(scenario.get("difficulty"))
    kind = f"{_article(difficulty)} {difficulty} scenario" if difficulty else "a scenario"
    counts = f"{_plural(len(roles), 'role')} and {_plural(len(steps), 'step')}"
    opening = f"You're working on \"{title}\", {kind} with {counts}."
    middle = f" {_sentence(summary)}" if summary else ""
    cast = f" The roles are {_short_list(role_names)}." if role_names else ""
    return (f"{opening}{middle}{cast} Ask me who should play each role, how to run it, how long "
            "it takes or what the objectives are.")


def _chat_about_role(role: _Item, steps: list[_Item], casting: bool) -> str:
    description = _sentence(role.description) if role.description else "It has no description yet."
    name_words = [word for word in _words(role.name)
                  if word not in _GENERIC_ROLE_WORDS and len(word) > 3]
    involved = [step.name for step in steps
                if role.name.lower() in step.description.lower()
                or any(word in _words(step.description) for word in name_words)]
    advice = f"I'd give {role.name} to {_casting_advice(role)}."
    quoted = [_quote(name, 60) for name in involved]
    where = f" The role is most visible in {_short_list(quoted, 3)}." if involved else ""
    if casting:
        return f"{advice} As a reminder, the role: {description}{where}"
    return f"{role.name}: {description}{where} {advice}"


def _chat_about_step(index: int, steps: list[_Item]) -> str:
    step = steps[index]
    description = _sentence(step.description) if step.description else "It has no description yet."
    if index == 0:
        tip = "Keep the opening brisk so players commit to their roles early."
    elif index == len(steps) - 1:
        tip = "It's the last step, so leave at least ten minutes to debrief against the objectives."
    else:
        tip = "Introduce new information here and watch how the team re-prioritises."
    following = (f" After it comes \"{steps[index + 1].name}\"."
                 if index + 1 < len(steps) else "")
    return f"Step {index + 1} of {len(steps)} is \"{step.name}\". {description}{following} {tip}"


def _chat_steps(steps: list[_Item], missing: int | None = None) -> str:
    # "(1) Detection" rather than "1. Detection", so the list reads as one sentence.
    listed = "; ".join(f"({number}) {step.name}" for number, step in enumerate(steps, 1))
    opening = f"There is no step {missing}. " if missing is not None else ""
    return (f"{opening}It runs in {_plural(len(steps), 'step')}: {listed}. Ask about any step by "
            "number and I'll go through what happens there.")


def _chat_casting(title: str, roles: list[_Item]) -> str:
    if not roles:
        return (f"\"{title}\" has no roles yet. Add them with \"add a role <name>: <description>\" "
                "and I can suggest who should play each one.")
    advice = "; ".join(f"{role.name}: {_casting_advice(role)}" for role in roles[:4] if role.name)
    rest = [role.name for role in roles[4:] if role.name]
    more = (f" {_short_list(rest, 3)} can go to anyone keen to try "
            f"{'it' if len(rest) == 1 else 'them'}." if rest else "")
    return (f"For \"{title}\", here is how I'd cast it. {advice}.{more} Put newer people in roles "
            "where they learn by doing, and keep an observer if you have spare people.")


def _chat_roles(title: str, roles: list[_Item]) -> str:
    if not roles:
        return f"\"{title}\" has no roles yet; add one with \"add a role <name>: <description>\"."
    names = [role.name for role in roles if role.name]
    first = roles[0]
    spare = next((role.name for role in roles
                  if set(_words(role.name)) & {"observer", "coach", "scribe", "facilitator"}),
                 roles[-1].name)
    return (f"\"{title}\" has {_plural(len(roles), 'role')}: {_short_list(names, 6)}. "
            f"The first, {first.name}, {_role_gist(first)} "
            f"If you're short of people, {spare} is the easiest role to double up or drop.")


def _role_gist(role: _Item) -> str:
    gist = _first_sentence(role.description, 160).rstrip(".")
    return f"is described as: {_lower_first(gist)}." if gist else "has no description yet."


def _chat_duration(scenario: dict, steps: list[_Item]) -> str:
    duration = _duration(scenario)
    count = max(1, len(steps))
    if duration:
        return (f"Plan for about {_one_line(duration)} minutes. With {_plural(len(steps), 'step')} "
                f"that is roughly {max(1, round(duration * 0.85 / count))} minutes per step if you "
                "keep about 15% of the time for the debrief.")
    estimate = count * 10 + 15
    return (f"No duration is set, but with {_plural(len(steps), 'step')} I'd plan for around "
            f"{estimate} minutes, including a 15-minute debrief. You can record it with \"set "
            f"duration_minutes to {estimate}\".")


def _chat_difficulty(scenario: dict, title: str, steps: list[_Item]) -> str:
    difficulty = _one_line(scenario.get("difficulty"))
    level = _difficulty_level(difficulty)
    if level is None:
        state = (f"The difficulty of \"{title}\" is marked as \"{difficulty}\"." if difficulty
                 else f"No difficulty is set for \"{title}\" yet.")
        return (f"{state} Ask me to \"set difficulty to beginner\", intermediate or advanced "
                "to make it explicit.")
    change = {0: "\"make it harder\"", 1: "\"make it harder\" or \"make it easier\"",
              2: "\"make it easier\""}[level]
    # The step most likely to stretch a group is a mid-scenario inject or complication.
    cues = {"inject", "complication", "deadlock", "escalation", "escalates", "ransom"}
    tough = next((step.name for step in steps[1:-1]
                  if set(_words(f"{step.name} {step.description}")) & cues), "")
    stretch = f" Expect \"{tough}\" to be the hardest part." if tough else ""
    return (f"\"{title}\" is set to {DIFFICULTIES[level]}. {_DIFFICULTY_HINTS[level]}{stretch} "
            f"If that doesn't suit your group, ask me to {change}.")


def _chat_run(scenario: dict, roles: list[_Item], steps: list[_Item], objectives: list[str]) -> str:
    title = _title(scenario)
    setting = _first_sentence(_one_line(scenario.get("setting")), 140)
    brief = f" ({setting.rstrip('.')})" if setting else ""
    first = f", starting with \"{steps[0].name}\"" if steps else ""
    sentences = [
        f"To run \"{title}\", brief everyone on the setting{brief} and hand out the "
        f"{_plural(len(roles), 'role')}.",
        f"Then walk through the {_plural(len(steps), 'step')} in order{first}, introducing each "
        "development only when the group reaches it.",
    ]
    materials = scenario.get("materials")
    if isinstance(materials, list) and materials:
        ready = _short_list([_one_line(item, 60) for item in materials], 4)
        sentences.append(f"Have these ready: {ready}.")
    sentences.append(f"Close with a debrief against the {_plural(len(objectives), 'objective')}, "
                     "and ask an observer to take notes if you can.")
    return " ".join(sentences)


def _capabilities() -> str:
    return ("I'm the built-in offline model: I can explain the loaded scenario, answer questions "
            "about its roles, steps, objectives and timing, create a new scenario from a short "
            "description and apply plain edits such as \"add a role Scribe\" or \"make it "
            f"harder\". {_REAL_MODEL_HINT}")


_GENERAL_ADVICE = {
    "casting": "As a rule, give leading roles to experienced people, counterpart roles "
               "(customers, suppliers, attackers) to confident improvisers, and keep one neutral "
               "observer.",
    "duration": "Most tabletop exercises and role-plays run 45 to 120 minutes: roughly 10 to 15 "
                "minutes per step plus a 15-minute debrief.",
    "objectives": "Good objectives are observable (\"escalate within 10 minutes\" beats "
                  "\"communicate well\"), and three to five are plenty.",
    "difficulty": "Beginner scenarios leave room for coaching, intermediate ones add real "
                  "trade-offs, and advanced ones add time pressure and surprises.",
    "roles": "Three to five roles work best: a lead, one or two specialists, a counterpart who "
             "applies pressure, and an observer.",
    "steps": "Four to seven steps work well: a briefing, a few escalating developments, a "
             "decision point and a debrief.",
    "setting": "A good setting says where and when it happens and what is at stake, in two or "
               "three sentences.",
}


def _chat_without_scenario(topic: str) -> str:
    load = (f"To get going, {_SAMPLES_HINT}, or ask me to create one, for example \"create a "
            "scenario about a warehouse fire evacuation drill\".")
    if topic == "greeting":
        return f"Hello! There's no scenario loaded yet. {load}"
    if topic == "thanks":
        return f"You're welcome. {load}"
    if topic == "capabilities":
        return f"{_capabilities()} There's no scenario loaded yet. {load}"
    if topic == "run":
        return ("In general, a good session has a short briefing, clear roles, a few steps that "
                "each add new information, and a debrief against agreed objectives. There's no "
                f"scenario loaded yet, so I can't be more specific. {load}")
    if topic == "create":
        return ("Sure: describe the situation in a sentence, for example \"create a scenario about "
                "a warehouse fire evacuation drill\", and I'll draft the title, roles, steps and "
                "objectives. Nothing is loaded yet, so it becomes your starting point.")
    general = _GENERAL_ADVICE.get(topic.split(":", 1)[0])
    if general:
        return f"{general} There's no scenario loaded yet, so I can't be more specific. {load}"
    return ("There's no scenario loaded right now, so I can only speak generally: I can explain a "
            f"scenario, answer questions about it, create new ones and apply plain edits. {load}")
