"""Chat: answer a question from what the scenario holds, or, with none loaded, say how to start one.

A message is classified into a topic (a role, a step, "hardest", "casting", "duration", ...)
and each topic has one answer built from the scenario. No answer contains a code fence.
"""

from __future__ import annotations

import re

from upstream.offline import text as t
from upstream.offline.data import phrase
from upstream.offline.grammar import ORDINALS, parse_request

_FOLLOW_UP = re.compile(r"^(?:and|also|what\s+about|how\s+about|ok(?:ay)?|then|so|but|why|more)\b", re.I)
_GLOSSARY_QUESTION = re.compile(
    r"\b(?:what(?:'s|\s+is|\s+are)|define|definition\s+of|meaning\s+of|explain|tell\s+me\s+about)\s+"
    r"(?:an?\s+|the\s+(?:term\s+)?)?(?P<term>[\w\s-]{2,40}?)s?(?:\s+(?:is|means?|exactly))?\s*[?.!]*$", re.I)
_TIME_PHRASE = re.compile(r"\b(?:within|in|under|by)\s+(?:the\s+first\s+)?\S+\s+(?:minutes?|hours?|days?)\b|"
                          r"\b(?:this\s+week|today|immediately|at\s+once|before\s+\S+)\b", re.I)


def chat(message: str, scenario: dict | None, history: list[dict[str, str]]) -> str:
    text = " ".join(message.split())
    topic = chat_topic(text, scenario)
    prefix = ""
    earlier = [turn["content"] for turn in history if turn["role"] == "user"]
    if topic in ("", "overview") and earlier and text:
        # A vague follow-up ("and then?") continues the previous question's topic.
        previous = chat_topic(" ".join(earlier[-1].split()), scenario)
        if previous not in ("", "overview", "greeting", "thanks"):
            topic, prefix = previous, "Picking up your earlier question."
    elif history and _FOLLOW_UP.match(text):
        prefix = "Following on from that."
    body = _without_scenario(topic) if scenario is None else _with_scenario(topic, scenario)
    return t.safe(f"{prefix} {body}".strip()) + "\n"


def chat_topic(text: str, scenario: dict | None) -> str:
    """Classify a message; "role:N", "cast:N", "first:N" and "step:N" point at one item (0-based)."""
    lowered = text.lower()
    text_words = t.words(text)
    if not text_words:
        return "overview"
    topics = phrase("chat_topics")
    if scenario is not None:
        if t.has_cue(text_words, phrase("hardest_cues")):
            return "hardest_role" if {"role", "roles", "character", "characters"} & set(text_words) else "hardest"
        step = _mentioned_step(lowered, scenario)
        role = _mentioned_role(lowered, scenario)
        if role is not None and t.has_cue(text_words, topics[1][1]):
            return f"cast:{role}"
        if step is None and t.has_cue(text_words, phrase("first_cues")) and (role is not None or t.steps(scenario)):
            return f"first:{role}" if role is not None else "step:0"
        if step is not None:
            return f"step:{step}"
        missing = re.search(r"\b(?:step|phase|stage)\s*#?\s*(\d{1,3})\b", lowered)
        if missing:
            return f"nostep:{missing.group(1)}"
        if role is not None:
            return f"role:{role}"
        # Only short messages can be a plain edit worth pointing out; skip parsing long ones.
        edits, unparsed = parse_request(text, scenario) if len(text) < 300 else ([], [text])
        if edits and not unparsed and re.match(r"(?:please\s+)?(?:add|remove|delete|rename|set|change|make|increase|"
                                               r"decrease|drop)\b", lowered):
            return "edit"
    if len(text_words) <= 4 and text_words[0] in phrase("greetings"):
        return "greeting"
    if len(text_words) <= 5 and text_words[0] in phrase("thanks"):
        return "thanks"
    term = _glossary_term(text)
    if term and (scenario is None or term != "scenario"):
        return f"define:{term}"
    for name, cues in topics:
        if t.has_cue(text_words, cues):
            return name
    return ""


def _glossary_term(text: str) -> str:
    match = _GLOSSARY_QUESTION.search(text)
    if not match:
        return ""
    asked = " ".join(t.words(match.group("term")))
    glossary = phrase("glossary")
    for term in glossary:
        if asked == term or asked.rstrip("s") == term or asked.replace(" ", "-") == term:
            return term
    return ""


def _mentioned_step(lowered: str, scenario: dict) -> int | None:
    steps = t.steps(scenario)
    match = re.search(r"\b(?:step|phase|stage)\s*#?\s*(\d{1,3})\b", lowered)
    if match:
        number = int(match.group(1))
        return number - 1 if 1 <= number <= len(steps) else None
    match = re.search(rf"\b({'|'.join(ORDINALS)})\s+(?:step|phase|stage)\b", lowered)
    if match and steps:
        number = ORDINALS[match.group(1)]
        if number == -1:
            return len(steps) - 1
        return number - 1 if number <= len(steps) else None
    for index, step in enumerate(steps):
        name = step.name.lower()
        if len(name) >= 4 and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", lowered):
            return index
    return None


def _mentioned_role(lowered: str, scenario: dict) -> int | None:
    """Role named in the text: the full name, else one distinctive word of exactly one role."""
    roles = t.roles(scenario)
    for index, role in enumerate(roles):
        name = role.name.lower()
        if name and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", lowered):
            return index
    text_words = set(t.words(lowered))
    generic = set(phrase("generic_role_words"))
    hits = [index for index, role in enumerate(roles)
            if any(len(word) >= 4 and word not in generic and word in text_words for word in t.words(role.name))]
    if len(hits) == 1:
        return hits[0]
    # "the CMO" for "Chief Medical Officer": the initials of a name of two words or more.
    initials = [index for index, role in enumerate(roles)
                if len(t.words(role.name)) >= 2 and "".join(word[0] for word in t.words(role.name)) in text_words]
    return initials[0] if len(initials) == 1 else None


# ---------------------------------------------------------------------------
# Answers with a scenario
# ---------------------------------------------------------------------------


def _with_scenario(topic: str, scenario: dict) -> str:
    title = t.title(scenario)
    roles, steps, objectives = t.roles(scenario), t.steps(scenario), t.objectives(scenario)
    kind, _, ref = topic.partition(":")
    no_steps = f"\"{title}\" has no steps yet; add some with \"add a step <title>: <description>\"."
    if kind in ("role", "cast"):
        return _about_role(roles[int(ref)], steps, kind == "cast")
    if kind == "first":
        return _first_moves(roles[int(ref)], steps, objectives)
    if kind == "step":
        return _about_step(int(ref), steps)
    if kind == "nostep":
        return _list_steps(steps, missing=int(ref)) if steps else no_steps
    if kind == "define":
        return phrase("glossary")[ref]
    if topic == "hardest":
        return _hardest_step(roles, steps) if steps else no_steps
    if topic == "hardest_role":
        return _hardest_role(roles, steps) if roles else f"\"{title}\" has no roles yet."
    if topic == "edit":
        return ("That sounds like an edit. Send it as a change request and I'll apply it to "
                f"\"{title}\" and show you the change; I handle plain edits like "
                "\"add a role Scribe\", \"remove step 2\" or \"make it harder\".")
    if topic == "greeting":
        return (f"Hello! You have **{title}** loaded. Ask me about its roles, steps or "
                "objectives, how to run it, or ask me to change it.")
    if topic == "thanks":
        return f"You're welcome. Good luck with \"{title}\"; ask me anytime if you need more."
    if topic == "capabilities":
        return f"{_capabilities()} Right now \"{title}\" is loaded, so just ask away."
    if topic == "casting":
        return _casting(title, roles)
    if topic == "duration":
        return _duration(scenario, steps)
    if topic == "difficulty":
        return _difficulty(scenario, title, steps)
    if topic == "objectives":
        if not objectives:
            return (f"\"{title}\" has no objectives yet. Add two or three with \"add objective "
                    "<text>\" so the debrief has something to measure against.")
        listed = "; ".join(t.quote(objective, 160) for objective in objectives[:5])
        return (f"\"{title}\" has {t.plural(len(objectives), 'objective')}: {listed}. "
                "Use them as your debrief checklist: for each one, ask the group what evidence "
                "shows it was met.")
    if topic == "run":
        return _run(scenario, roles, steps, objectives)
    if topic == "steps":
        return _list_steps(steps) if steps else no_steps
    if topic == "roles":
        return _list_roles(title, roles)
    if topic == "setting":
        setting = t.one_line(scenario.get("setting"), 500)
        if not setting:
            return f"\"{title}\" has no setting yet; try \"set setting to <where and when>\"."
        return (f"\"{title}\" takes place here: {t.sentence(setting)} Share it with everyone at the start, "
                "but keep role-specific details in the individual briefs.")
    if topic == "create":
        return ("I can draft a new scenario from a short description, for example \"create a "
                f"scenario about a flood\". The current one, \"{title}\", stays as it is until you load the new one.")
    summary = t.first_sentence(t.one_line(scenario.get("summary")), 320)
    difficulty = t.one_line(scenario.get("difficulty"))
    what = f"{t.article(difficulty)} {difficulty} scenario" if difficulty else "a scenario"
    role_names = [role.name for role in roles if role.name]
    opening = (f"You're working on **{title}**, {what} with {t.plural(len(roles), 'role')} and "
               f"{t.plural(len(steps), 'step')}.")
    middle = f" {t.sentence(summary)}" if summary else ""
    cast = f" The roles are {t.short_list(role_names)}." if role_names else ""
    return (f"{opening}{middle}{cast} Ask me who should play each role, how to run it, how long "
            "it takes or what the objectives are.")


def _casting_advice(role: t.Item) -> str:
    """Who should play a role, guessed from words in its name, then its description."""
    for text in (role.name, role.description):
        text_words = set(t.words(text))
        for cues, advice in phrase("casting"):
            if text_words & set(cues):
                return advice
    return phrase("casting_default")


def _steps_with(role: t.Item, steps: list[t.Item]) -> list[int]:
    """Indices of the steps that mention the role, full-name mentions first, then in order."""
    full = [index for index, step in enumerate(steps)
            if role.name and role.name.lower() in f"{step.name} {step.description}".lower()]
    partial = [index for index, step in enumerate(steps)
               if index not in full and t.mentions(f"{step.name} {step.description}", role.name)]
    return full + partial


def _about_role(role: t.Item, steps: list[t.Item], casting: bool) -> str:
    description = t.sentence(role.description) if role.description else "It has no description yet."
    involved = sorted(_steps_with(role, steps))
    advice = f"I'd give **{role.name}** to {_casting_advice(role)}."
    where = ""
    if involved:
        where = f" The role is most visible in {t.short_list([t.quote(steps[i].name, 60) for i in involved], 3)}."
    if casting:
        return f"{advice} As a reminder, the role: {description}{where}"
    return f"**{role.name}**: {description}{where} {advice}"


def _first_moves(role: t.Item, steps: list[t.Item], objectives: list[str]) -> str:
    """What a role does first: the earliest steps that mention it, and the objectives that do."""
    involved = sorted(_steps_with(role, steps)[:3])[:2]
    lines = [f"**What the {role.name} does first**", ""]
    if involved:
        for index in involved:
            step = steps[index]
            lines.append(f"- **Step {index + 1}, {step.name}**: {t.first_sentence(_focus(step.description, role), 260)}")
    elif steps:
        lines.append(f"- No step names the {role.name} directly, so start with **step 1, {steps[0].name}**: "
                     f"{t.first_sentence(steps[0].description, 260) or 'it has no description yet.'}")
    else:
        lines.append("- The scenario has no steps yet, so the role's description is all there is to go on.")
    targets = [objective for objective in objectives if t.mentions(objective, role.name)][:2]
    if targets:
        lines.append(f"- Keep in mind the objective{'s' if len(targets) > 1 else ''} "
                     f"{t.join_words([t.quote(objective, 160) for objective in targets])}.")
    if role.description:
        lines += ["", f"The role overall: {t.one_line(role.description, 300)}"]
    return "\n".join(lines)


def _focus(description: str, role: t.Item) -> str:
    """The sentence of a description that names the role, else its first sentence."""
    for part in re.split(r"(?<=[.!?])\s+", description):
        if t.mentions(part, role.name):
            return part
    return description


def _hardest_step(roles: list[t.Item], steps: list[t.Item]) -> str:
    """Pick the step with the most roles involved, a decision, time pressure or an inject, and say why."""
    scored = []
    for index, step in enumerate(steps):
        text = f"{step.name} {step.description}"
        text_words = t.words(text)
        involved = [role.name for role in roles if role.name and t.mentions(text, role.name)]
        pressure = _TIME_PHRASE.search(step.description) if t.has_cue(text_words, phrase("pressure_cues")) else None
        decision = t.has_cue(text_words, phrase("decision_cues"))
        inject = t.has_cue(text_words, phrase("inject_cues"))
        score = 2 * len(involved) + (3 if pressure else 0) + (2 if decision else 0) + (2 if inject else 0)
        scored.append((score, -index, involved, pressure, decision, inject))
    score, negative_index, involved, pressure, decision, inject = max(scored)
    index = -negative_index
    step = steps[index]
    reasons = []
    if len(involved) >= 2:
        reasons.append(f"it involves {len(involved)} of the {len(roles)} roles ({t.short_list(involved, 4)})")
    if decision and pressure:
        reasons.append(f"it asks for a decision under time pressure ({t.quote(pressure.group(0), 40)})")
    elif pressure:
        reasons.append(f"it runs against the clock ({t.quote(pressure.group(0), 40)})")
    elif decision:
        reasons.append("it forces a decision with no obviously right answer")
    if inject:
        reasons.append("new information lands there and upsets the plan")
    why = t.join_words(reasons) or "it is where the scenario asks the most of the group"
    lines = [f"**The hardest step is step {index + 1}, \"{step.name}\"**, because {why}.", ""]
    if step.description:
        lines.append(f"- What happens: {t.first_sentence(step.description, 260)}")
    lines.append("- Tip: give the group a little more time there, and have the facilitator ready to prompt "
                 "if the discussion stalls.")
    return "\n".join(lines)


def _hardest_role(roles: list[t.Item], steps: list[t.Item]) -> str:
    """The role the most steps call on (ties: the first listed), with who should play it."""
    counts = [len(_steps_with(role, steps)) for role in roles]
    index = max(range(len(roles)), key=lambda i: (counts[i], -i))
    role = roles[index]
    if counts[index] == 0:
        return (f"No step names a role directly, so the load is even; **{role.name}**, listed first, usually carries "
                f"the most. I'd give it to {_casting_advice(role)}.")
    named = [t.quote(steps[i].name, 60) for i in sorted(_steps_with(role, steps))]
    return (f"**{role.name}** is the hardest role to play: {counts[index]} of the {len(steps)} steps {'calls' if counts[index] == 1 else 'call'} on it "
            f"({t.short_list(named, 4)}). I'd give it to {_casting_advice(role)}.")


def _about_step(index: int, steps: list[t.Item]) -> str:
    step = steps[index]
    description = t.sentence(step.description) if step.description else "It has no description yet."
    tips = phrase("step_tips")
    tip = tips[0] if index == 0 else tips[2] if index == len(steps) - 1 else tips[1]
    following = f" After it comes \"{steps[index + 1].name}\"." if index + 1 < len(steps) else ""
    return f"**Step {index + 1} of {len(steps)} is \"{step.name}\".** {description}{following} {tip}"


def _list_steps(steps: list[t.Item], missing: int | None = None) -> str:
    # "(1) Detection" rather than "1. Detection", so the list reads as one sentence.
    listed = "; ".join(f"({number}) {step.name}" for number, step in enumerate(steps, 1))
    opening = f"There is no step {missing}. " if missing is not None else ""
    return (f"{opening}It runs in {t.plural(len(steps), 'step')}: {listed}. Ask about any step by "
            "number and I'll go through what happens there.")


def _casting(title: str, roles: list[t.Item]) -> str:
    if not roles:
        return (f"\"{title}\" has no roles yet. Add them with \"add a role <name>: <description>\" "
                "and I can suggest who should play each one.")
    advice = "; ".join(f"**{role.name}**: {_casting_advice(role)}" for role in roles[:4] if role.name)
    rest = [role.name for role in roles[4:] if role.name]
    more = (f" {t.short_list(rest, 3)} can go to anyone keen to try {'it' if len(rest) == 1 else 'them'}."
            if rest else "")
    return (f"For \"{title}\", here is how I'd cast it. {advice}.{more} Put newer people in roles "
            "where they learn by doing, and keep an observer if you have spare people.")


def _list_roles(title: str, roles: list[t.Item]) -> str:
    if not roles:
        return f"\"{title}\" has no roles yet; add one with \"add a role <name>: <description>\"."
    names = [role.name for role in roles if role.name]
    first = roles[0]
    spare = next((role.name for role in roles
                  if set(t.words(role.name)) & {"observer", "coach", "scribe", "facilitator"}), roles[-1].name)
    gist = t.first_sentence(first.description, 160).rstrip(".")
    described = f"is described as: {t.lower_first(gist)}." if gist else "has no description yet."
    return (f"\"{title}\" has {t.plural(len(roles), 'role')}: {t.short_list(names, 6)}. "
            f"The first, **{first.name}**, {described} "
            f"If you're short of people, {spare} is the easiest role to double up or drop.")


def _duration(scenario: dict, steps: list[t.Item]) -> str:
    minutes = t.duration(scenario)
    count = max(1, len(steps))
    if minutes:
        return (f"Plan for about **{t.one_line(minutes)} minutes**. With {t.plural(len(steps), 'step')} "
                f"that is roughly {max(1, round(minutes * 0.85 / count))} minutes per step if you "
                "keep about 15% of the time for the debrief.")
    estimate = count * 10 + 15
    return (f"No duration is set, but with {t.plural(len(steps), 'step')} I'd plan for around "
            f"**{estimate} minutes**, including a 15-minute debrief. You can record it with \"set "
            f"duration_minutes to {estimate}\".")


def _difficulty(scenario: dict, title: str, steps: list[t.Item]) -> str:
    difficulty = t.one_line(scenario.get("difficulty"))
    level = t.difficulty_level(difficulty)
    if level is None:
        state = (f"The difficulty of \"{title}\" is marked as \"{difficulty}\"." if difficulty
                 else f"No difficulty is set for \"{title}\" yet.")
        return f"{state} Ask me to \"set difficulty to beginner\", intermediate or advanced to make it explicit."
    change = {0: "\"make it harder\"", 1: "\"make it harder\" or \"make it easier\"", 2: "\"make it easier\""}[level]
    # The step most likely to stretch a group is a mid-scenario inject or complication.
    cues = set(phrase("inject_cues"))
    tough = next((step.name for step in steps[1:-1] if set(t.words(f"{step.name} {step.description}")) & cues), "")
    stretch = f" Expect \"{tough}\" to be the hardest part." if tough else ""
    return (f"\"{title}\" is set to **{t.difficulties()[level]}**. {phrase('difficulty_hints')[level]}{stretch} "
            f"If that doesn't suit your group, ask me to {change}.")


def _run(scenario: dict, roles: list[t.Item], steps: list[t.Item], objectives: list[str]) -> str:
    title = t.title(scenario)
    setting = t.first_sentence(t.one_line(scenario.get("setting")), 140)
    brief = f" ({setting.rstrip('.')})" if setting else ""
    first = f", starting with \"{steps[0].name}\"" if steps else ""
    sentences = [
        f"To run **{title}**, brief everyone on the setting{brief} and hand out the {t.plural(len(roles), 'role')}.",
        f"Then walk through the {t.plural(len(steps), 'step')} in order{first}, introducing each "
        "development only when the group reaches it.",
    ]
    materials = scenario.get("materials")
    if isinstance(materials, list) and materials:
        sentences.append(f"Have these ready: {t.short_list([t.one_line(item, 60) for item in materials], 4)}.")
    sentences.append(f"Close with a debrief against the {t.plural(len(objectives), 'objective')}, "
                     "and ask an observer to take notes if you can.")
    return " ".join(sentences)


def _capabilities() -> str:
    return ("I'm the **built-in offline model**: I can explain the loaded scenario, answer questions "
            "about its roles, steps, objectives and timing, create a new scenario from a short "
            "description and apply plain edits such as \"add a role Scribe\" or \"make it "
            f"harder\". {phrase('real_model_hint')}")


# ---------------------------------------------------------------------------
# Answers without a scenario: always say how to start one
# ---------------------------------------------------------------------------


def _without_scenario(topic: str) -> str:
    start = phrase("start_hint").format(samples=phrase("samples"))
    kind, _, ref = topic.partition(":")
    if kind == "define":
        return f"{phrase('glossary')[ref]}\n\n{start}"
    if topic == "greeting":
        return f"Hello! **There's no scenario loaded yet.** {start}"
    if topic == "thanks":
        return f"You're welcome. {start}"
    if topic == "capabilities":
        return f"{_capabilities()} There's no scenario loaded yet. {start}"
    if topic == "summary":
        return f"**There's no scenario loaded yet**, so there is nothing to explain. {start}"
    if topic == "run":
        return ("In general, a good session has a short briefing, clear roles, a few steps that "
                "each add new information, and a debrief against agreed objectives. There's no "
                f"scenario loaded yet, so I can't be more specific. {start}")
    if topic == "create":
        return ("Sure: describe the situation in a sentence, for example \"create a scenario about "
                "a warehouse fire evacuation drill\", and I'll draft the title, roles, steps and "
                "objectives. Nothing is loaded yet, so it becomes your starting point.")
    general = phrase("general_advice").get(kind)
    if general:
        return f"{general} There's no scenario loaded yet, so I can't be more specific. {start}"
    return ("**There's no scenario loaded right now**, so I can only speak generally: I can explain a "
            f"scenario, answer questions about it, create new ones and apply plain edits. {start}")
