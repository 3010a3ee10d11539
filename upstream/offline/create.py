"""Create: a new scenario from a topic, using the template of the topic it recognises.

"create a scenario about a data-center fire" -> the fire template with "a data-center fire"
filled in. A topic it does not recognise gets the generic template, and the answer says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from upstream.offline import text as t
from upstream.offline.data import Topic, phrase, topics

# Request phrasings stripped from the front of a create message, in order.
_REQUEST_PREFIXES = (
    r"(?:please|pls|hey|hi|hello|ok|okay|so|now|also|then)\b[\s,!.]*",
    r"(?:can|could|would|will)\s+you\s+(?:please\s+)?",
    r"i(?:'d|\s+would)?\s+(?:want|need|like|love)\s+(?:you\s+)?(?:to\s+)?",
    r"(?:let'?s|let\s+us)\s+",
    r"(?:create|make|build|generate|write|design|draft|produce|prepare|devise|invent|plan|"
    r"give|come\s+up\s+with|put\s+together|set\s+up|run|practi[sc]e|rehearse|simulate|do|try)"
    r"\b\s*(?:me|us)?\s*",
)
_ADJECTIVES = (r"new|short|quick|simple|small|realistic|detailed|fun|interesting|challenging|easy|hard|"
               r"difficult|beginner|intermediate|advanced|basic|complex|full|complete|brief|good|great|"
               r"sample|example")
_DESCRIPTORS = rf"a|an|the|some|one|another|{_ADJECTIVES}"
_GENERIC_NOUNS = (r"scenarios?|exercises?|simulations?|role[- ]?plays?|roleplays?|tabletop(?:\s+exercises?)?|"
                  r"games?|case\s+stud(?:y|ies)|sessions?|situations?|stor(?:y|ies)|"
                  r"training(?:\s+(?:scenario|exercise|session))?")
_CONNECTORS = (r"about|on|for|around|involving|covering|regarding|featuring|of|where|in\s+which|that|with|"
               r"based\s+on|dealing\s+with|focused\s+on|to\s+practi[sc]e|to\s+train|to\s+test")
_VAGUE_TOPICS = {"", "something", "anything", "it", "one", "stuff", "whatever", "a", "an", "the", "this", "that",
                 "thing", "things", "something fun", "anything you like", "me", "us", "scenario", "a scenario",
                 "new", "please", "help", "hi", "hello"}


@dataclass(frozen=True)
class CreateRequest:
    """What a create message asks for, after parsing."""

    topic_template: Topic
    topic: str
    title: str
    difficulty: str
    duration: int
    vague: bool


def create(message: str, preface: str = "") -> str:
    request = parse_create_request(message)
    scenario = build_scenario(request)
    template = request.topic_template
    counts = t.join_words([t.plural(len(scenario["roles"]), "role"), t.plural(len(scenario["steps"]), "step"),
                           t.plural(len(scenario["objectives"]), "objective")])
    heading = f"**New {template.kind.lower()}: {scenario['title']}**"
    explanation = (f"Here is a new {request.difficulty} {template.kind.lower()} about {request.topic}, "
                   f"drafted by the built-in offline model from its {template.label} template. "
                   f"It has {counts}, so you can run it as is or adjust the details.")
    if template.generic:
        known = t.join_words([topic.label for topic in topics() if not topic.generic])
        note = phrase("vague_topic" if request.vague else "unknown_topic").format(topic=request.topic, known=known)
        explanation += f"\n\n{note}"
    closing = ("Ask me to adjust it, for example \"add a role Scribe\", "
               "\"set duration_minutes to 30\" or \"make it harder\".")
    prose = f"{preface}\n\n{heading}\n\n{explanation}" if preface else f"{heading}\n\n{explanation}"
    return f"{t.safe(prose)}\n{t.scenario_block(scenario)}\n{t.safe(closing)}\n"


def choose_topic(text: str) -> Topic:
    """The template whose keywords score highest (keyword 2, weak keyword 1, a phrase twice); ties go first."""
    text_words = t.words(text)
    joined = " " + " ".join(text_words) + " "
    vocabulary = set(text_words)
    templates = topics()
    best, best_score = templates[-1], 0
    for template in templates:
        score = 0
        for keywords, weight in ((template.keywords, 2), (template.weak_keywords, 1)):
            for keyword in keywords:
                if " " in keyword:
                    score += 2 * weight if f" {keyword} " in joined else 0
                elif keyword in vocabulary:
                    score += weight
        if score > best_score:
            best, best_score = template, score
    return best


def parse_create_request(message: str) -> CreateRequest:
    text = t.clean_value(message.split("\n", 1)[0] if message.strip() else "")
    duration_minutes, text = _extract_duration(text)
    explicit_title, text = _extract_explicit_title(text)
    topic = _extract_topic(text)
    template = choose_topic(f"{topic} {explicit_title} {message[:500]}")
    vague = _is_vague(topic)
    if vague:
        topic = explicit_title.lower() if explicit_title else template.default_topic
    return CreateRequest(topic_template=template, topic=topic, title=explicit_title or _topic_title(topic, template),
                         difficulty=_requested_difficulty(message), duration=duration_minutes or template.duration,
                         vague=vague and not explicit_title)


def _extract_duration(text: str) -> tuple[int | None, str]:
    """Find "30 minutes", "a 45-minute", "2 hours" and remove it from the text."""
    match = re.search(
        r"(?:\b(?:lasting|for|of|in|taking|that\s+lasts)\s+)?(?:\b(?:about|around|roughly)\s+)?"
        r"\b(\d{1,3}(?:\.\d)?)\s*-?\s*(min|mins|minute|minutes|h|hr|hrs|hour|hours)\b(?:\s+long)?", text, re.I)
    if not match:
        return None, text
    amount = float(match.group(1))
    minutes = amount * 60 if match.group(2).lower().startswith("h") else amount
    remainder = " ".join((text[: match.start()] + " " + text[match.end():]).split())
    return int(min(600, max(5, round(minutes)))), remainder


def _extract_explicit_title(text: str) -> tuple[str, str]:
    """Handle 'called "Night Shift"' / 'titled X'; return (title, text without it)."""
    match = (re.search(r"\b(?:called|titled|named|entitled)\s+[\"“'‘]([^\"”'’]{1,80})[\"”'’]", text, re.I)
             or re.search(r"\b(?:called|titled|named|entitled)\s+(.{1,80}?)"
                          r"(?=\s+(?:about|on|for|where|with|involving|set\s+in)\b|[,.;:!?]|$)", text, re.I))
    if not match:
        return "", text
    return t.clean_name(match.group(1)), " ".join((text[: match.start()] + " " + text[match.end():]).split())


def _extract_topic(text: str) -> str:
    """Strip the request phrasing ("create a scenario about ...") to leave the topic."""
    text = re.split(r"(?<=[.!?])\s+", text.strip(), maxsplit=1)[0]
    for _ in range(8):  # a handful of passes: "please can you create me ..."
        before = text
        for prefix in _REQUEST_PREFIXES:
            text = re.sub(rf"^{prefix}", "", text, flags=re.I).strip()
        if text == before:
            break
    generic = re.match(rf"^(?:(?:{_DESCRIPTORS})[\s,-]+)*(?:{_GENERIC_NOUNS})\b[\s,:-]*(?:(?:{_CONNECTORS})\b\s*)?",
                       text, re.I)
    # "a medical simulation of sepsis": a few qualifying words, a generic noun and a connector.
    qualified = re.match(rf"^(?:[\w'-]+\s+){{1,3}}?(?:{_GENERIC_NOUNS})\s+(?:{_CONNECTORS})\b\s*", text, re.I)
    if generic:
        text = text[generic.end():]
    elif qualified and text[qualified.end():].strip():
        text = text[qualified.end():]
    else:
        # "an advanced fire drill" -> "a fire drill": drop the adjectives, keep an article.
        leading = re.match(rf"^(?:(?P<art>a|an|the)\s+)?(?:(?:{_ADJECTIVES})\s+)+", text, re.I)
        if leading:
            rest = text[leading.end():]
            art = (leading.group("art") or "").lower()
            text = f"the {rest}" if art == "the" else f"{t.article(rest)} {rest}" if art and rest else rest
    text = re.sub(r"\s+(?:for|aimed\s+at)\s+(?:complete\s+)?(?:beginners|novices|newcomers|experts|first[- ]timers)$",
                  "", text, flags=re.I)
    text = t.strip_trailing_filler(text, ("please", "thanks", "thank you", "for me", "for us"))
    text = t.clean_name(text)
    parts = text.split()
    if len(parts) > 10:
        text = " ".join(parts[:10]).rstrip(" ,;:")
    if text[:1].isupper() and text[1:2].islower():
        text = text[0].lower() + text[1:]  # "Warehouse fire" reads better mid-sentence
    return text


def _is_vague(topic: str) -> bool:
    return topic.lower().strip(" .!?") in _VAGUE_TOPICS or not re.search(r"\w", topic)


def _topic_title(topic: str, template: Topic) -> str:
    parts = re.sub(r"^(?:a|an|the)\s+", "", topic, flags=re.I).split()[:8]
    while len(parts) > 1 and parts[-1].lower() in {"a", "an", "the", "of", "for", "and", "or", "to", "in", "on",
                                                   "at", "with", "about"}:
        parts.pop()
    title = t.title_case(" ".join(parts))
    kind_words = {word.lower().rstrip("s") for word in re.split(r"[\s-]+", template.kind)}
    title_words = {word.lower().rstrip("s") for word in re.split(r"[\s-]+", title)}
    # A one- or two-word topic ("Phishing") makes a thin title; name the format too.
    if len(parts) <= 2 and not kind_words & title_words:
        title = f"{title} {template.kind}"
    return title or f"Team {template.kind}"


def _requested_difficulty(message: str) -> str:
    synonyms = phrase("difficulty_synonyms")
    for word in t.words(message):
        level = synonyms.get(word)
        if level is not None and word not in ("simple", "normal", "standard", "complex"):
            return t.difficulties()[level]
    return t.difficulties()[1]


def build_scenario(request: CreateRequest) -> dict[str, Any]:
    template, topic = request.topic_template, request.topic

    def fill(text: str) -> str:
        return text.replace("{topic}", topic)

    steps = [{"title": step["title"], "description": fill(step["description"])} for step in template.steps]
    if request.difficulty == "advanced":
        # Advanced runs get a mid-exercise twist, inserted before the wrap-up step.
        steps.insert(len(steps) - 1, dict(template.complication))
    kind = template.kind.lower()
    return {
        "title": request.title,
        # The summary leaves the difficulty out, so "make it harder" can't make it stale.
        "summary": t.sentence(f"{t.article(kind).capitalize()} {kind} in which {fill(template.summary)}"),
        "setting": t.sentence(fill(template.setting)),
        "difficulty": request.difficulty,
        "roles": [{"name": role["name"], "description": fill(role["description"])} for role in template.roles],
        "steps": steps,
        "objectives": [fill(objective) for objective in template.objectives],
        "duration_minutes": request.duration,
        "tags": list(template.tags),
        "materials": list(template.materials),
    }


def default_scenario() -> dict[str, Any]:
    """The scenario an empty create request produces (what modify starts from without one)."""
    return build_scenario(parse_create_request(""))
