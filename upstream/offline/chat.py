"""Chat: answer a question from what the scenario holds, or, with none loaded, say how to start one.

Some questions get a direct answer first: a yes/no question ("should we pay the ransom?", "is
the CISO involved in step 3?", "can we run it in 30 minutes?") starts with yes or no, and a
request for one sentence gets one. Otherwise a message is classified into a topic (a role, a
step, an objective, "hardest", "casting", "duration", ...) and each topic has one answer built
from the scenario. No answer contains a code fence.

Names are found with `text.Mentions`, an index read once per message, so a long message
against a scenario with thousands of roles and steps stays linear in both.
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


# Longer text is cut here before it is read: nobody asks a question this long, and every
# routine below is linear in it anyway.
MAX_QUESTION_CHARS = 8000

_YES_NO = re.compile(r"^(?:is|are|was|were|does|do|did|should|shall|can|could|will|would|may|might|must|"
                     r"has|have|had)\b", re.I)


def chat(message: str, scenario: dict | None, history: list[dict[str, str]]) -> str:
    text = " ".join(message[:MAX_QUESTION_CHARS].split())
    if scenario is not None:
        direct = direct_answer(text, scenario)
        if direct:
            return t.safe(direct) + "\n"
    topic = chat_topic(text, scenario)
    prefix = ""
    earlier = [turn["content"] for turn in history if turn["role"] == "user"]
    if topic in ("", "overview") and earlier and text:
        # A vague follow-up ("and then?") continues the previous question's topic.
        previous = chat_topic(" ".join(earlier[-1][:MAX_QUESTION_CHARS].split()), scenario)
        if previous not in ("", "overview", "greeting", "thanks"):
            topic, prefix = previous, "Picking up your earlier question."
    elif history and _FOLLOW_UP.match(text):
        prefix = "Following on from that."
    body = _without_scenario(topic) if scenario is None else _with_scenario(topic, scenario)
    return t.safe(f"{prefix} {body}".strip()) + "\n"


def direct_answer(text: str, scenario: dict) -> str:
    """The answer to a question that needs one, before any general topic: a yes/no question
    answered yes or no first, a request for one sentence in one sentence. "" otherwise."""
    text_words = t.words(text)
    if not text_words:
        return ""
    if t.has_cue(text_words, phrase("brevity_cues")):
        return one_sentence(scenario)
    if _YES_NO.match(text):
        return _yes_no(text, text_words, scenario)
    return ""


def focused(text: str, scenario: dict) -> str:
    """An answer about the one part of the scenario a message names ("explain step 2", "tell
    me about the CISO", "in one sentence"), or "" when it asks about the whole."""
    text = " ".join(text[:MAX_QUESTION_CHARS].split())
    direct = direct_answer(text, scenario)
    if direct:
        return direct
    topic = chat_topic(text, scenario)
    if topic.partition(":")[0] in ("role", "cast", "first", "step", "objective"):
        return _with_scenario(topic, scenario)
    return ""


def chat_topic(text: str, scenario: dict | None) -> str:
    """Classify a message; "role:N", "cast:N", "first:N", "step:N" and "objective:N" point at one item (0-based)."""
    lowered = text.lower()
    text_words = t.words(text)
    if not text_words:
        return "overview"
    topics = phrase("chat_topics")
    cues = t.Cues(text_words)
    if scenario is not None:
        if cues.has(phrase("hardest_cues")):
            return "hardest_role" if {"role", "roles", "character", "characters"} & set(text_words) else "hardest"
        objective = _mentioned_objective(lowered, scenario)
        if objective is not None:
            return f"objective:{objective}"
        step = _mentioned_step(lowered, text_words, scenario)
        role = _mentioned_role(text_words, t.roles(scenario))
        if role is not None and cues.has(topics[1][1]):
            return f"cast:{role}"
        if step is None and cues.has(phrase("first_cues")) and (role is not None or t.steps(scenario)):
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
    for name, words in topics:
        if cues.has(words):
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


def _mentioned_objective(lowered: str, scenario: dict) -> int | None:
    """"the second objective", "objective 2", "goal #3" (0-based), or None."""
    objectives = t.objectives(scenario)
    match = re.search(r"\b(?:objective|goal|aim)\s*#?\s*(\d{1,3})\b", lowered)
    number = int(match.group(1)) if match else None
    if match is None:
        match = re.search(rf"\b({'|'.join(ORDINALS)})\s+(?:objective|goal|aim)\b", lowered)
        number = ORDINALS[match.group(1)] if match else None
    if number is None or not objectives:
        return None
    if number == -1:
        return len(objectives) - 1
    return number - 1 if 1 <= number <= len(objectives) else None


def _mentioned_step(lowered: str, text_words: list[str], scenario: dict) -> int | None:
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
    # Step titles of four letters or more, found in one pass over the message.
    named = t.Mentions([step.name if len(step.name) >= 4 else "" for step in steps]).find(text_words)
    return named[0] if named else None


def _mentioned_role(text_words: list[str], roles: list[t.Item]) -> int | None:
    """Role named in the text: the full name, else one distinctive word of exactly one role,
    else the initials of exactly one ("the CMO" for "Chief Medical Officer").

    Each test reads the message's words once against an index of the roles, so a long
    message against many roles stays linear."""
    full = t.Mentions([role.name for role in roles]).find(text_words)
    if full:
        return full[0]
    present = {t.bare(word) for word in text_words}
    generic = set(phrase("generic_role_words"))
    hits: set[int] = set()
    initials: set[int] = set()
    for index, role in enumerate(roles):
        name_words = t.words(role.name)
        if any(len(word) >= 4 and word not in generic and word in present for word in name_words):
            hits.add(index)
        if len(name_words) >= 2 and "".join(word[0] for word in name_words) in present:
            initials.add(index)
    if len(hits) == 1:
        return hits.pop()
    return initials.pop() if len(initials) == 1 else None


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
    if kind == "objective":
        number = int(ref) + 1
        return (f"**Objective {number} of {len(objectives)}:** {t.sentence(objectives[int(ref)])} "
                "In the debrief, ask the group what evidence shows it was met, and what got in the way.")
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


def _roles_per_step(roles: list[t.Item], steps: list[t.Item]) -> list[list[int]]:
    """For each step, the roles it mentions (as `t.mentions` reads a mention), from one index of
    the roles: one pass over each step instead of one per role and step."""
    index = t.Mentions([role.name for role in roles], stems=True)
    return [index.find(t.words(f"{step.name} {step.description}")) for step in steps]


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
    mentioned = _roles_per_step(roles, steps)
    for index, step in enumerate(steps):
        text_words = t.words(f"{step.name} {step.description}")
        involved = [roles[i].name for i in mentioned[index] if roles[i].name]
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
    counts = [0] * len(roles)
    for found in _roles_per_step(roles, steps):
        for index in found:
            counts[index] += 1
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


# ---------------------------------------------------------------------------
# Direct answers: one sentence when asked for one, yes or no first when asked
# ---------------------------------------------------------------------------


def one_sentence(scenario: dict) -> str:
    """The scenario in one sentence: its title and the first sentence of its summary."""
    title = t.title(scenario)
    summary = t.first_sentence(t.one_line(scenario.get("summary")), 300).rstrip(" .!?…")
    if summary:
        if re.match(r"(?:a|an|the)\s", summary, re.I):
            return f"**{title}** is {summary[0].lower()}{summary[1:]}."
        return f"**{title}**: {t.lower_first(summary)}."
    difficulty = t.one_line(scenario.get("difficulty"))
    what = f"{t.article(difficulty)} {difficulty} scenario" if difficulty else "a scenario"
    return (f"**{title}** is {what} with {t.plural(len(t.roles(scenario)), 'role')} and "
            f"{t.plural(len(t.steps(scenario)), 'step')}.")


_NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                 "eight": 8, "nine": 9, "ten": 10, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30,
                 "forty": 40, "fifty": 50, "sixty": 60, "ninety": 90}
_NUMBER = rf"(?:\d{{1,4}}|{'|'.join(_NUMBER_WORDS)})"
_ASKED_TIME = re.compile(rf"\b(?P<n>{_NUMBER}|half\s+an)\s*-?\s*(?P<u>minutes?|mins?|hours?|hrs?)\b", re.I)
_ASKED_PEOPLE = re.compile(rf"\b(?P<n>{_NUMBER})\s+(?:people|persons|players|participants|of\s+us|staff|colleagues)\b",
                           re.I)
_EXISTS = re.compile(
    r"^(?:is|are)\s+there\s+(?:(?:a|an|any|some|one)\s+)?|^(?:does|do|did)\s+(?:it|this|this\s+scenario|"
    r"the\s+scenario|the\s+exercise|we)\s+(?:have|include|cover|mention|feature|contain)\s+(?:(?:a|an|any|some)\s+)?",
    re.I)
_KINDS = {"step": "steps", "steps": "steps", "phase": "steps", "phases": "steps", "stage": "steps", "stages": "steps",
          "role": "roles", "roles": "roles", "character": "roles", "characters": "roles",
          "objective": "objectives", "objectives": "objectives", "goal": "objectives", "goals": "objectives"}
_STOP = {"a", "an", "the", "any", "some", "about", "for", "on", "with", "where", "that", "which", "who", "covering",
         "involving", "in", "of", "to", "and", "or", "it", "this", "there", "is", "are", "does", "do", "we", "our",
         "step", "steps", "role", "roles", "objective", "objectives", "goal", "goals", "phase", "stage", "part",
         "scenario", "exercise", "one", "someone", "somebody", "anything", "something", "dealing", "when"}
_BEGINNERS = {"beginner", "beginners", "newcomer", "newcomers", "novice", "novices", "new", "first-timers",
              "first-timer", "junior", "juniors", "inexperienced", "trainee", "trainees", "students", "interns"}
_EXPERTS = {"expert", "experts", "experienced", "senior", "seniors", "veteran", "veterans", "seasoned", "professionals"}


def _yes_no(text: str, text_words: list[str], scenario: dict) -> str:
    """A yes/no question about the scenario, answered yes or no first, or "" when the scenario
    cannot say (the general topics answer it then)."""
    roles, steps = t.roles(scenario), t.steps(scenario)
    lowered = text.lower()
    step = _mentioned_step(lowered, text_words, scenario)
    role = _mentioned_role(text_words, roles)
    if role is not None and step is not None:
        return _involved(roles[role], step, steps)
    for answer in (_fits_time(lowered, scenario, steps), _fits_people(lowered, roles),
                   _suits_level(text_words, scenario), _exists(text, scenario), _needs(text, roles, role),
                   _dilemma(text_words, steps)):
        if answer:
            return answer
    return ""


def _involved(role: t.Item, index: int, steps: list[t.Item]) -> str:
    step = steps[index]
    where = f"step {index + 1}, \"{step.name}\""
    if t.mentions(f"{step.name} {step.description}", role.name):
        return f"**Yes.** The {role.name} is part of {where}: {_focus(step.description, role)}"
    others = [t.quote(steps[i].name, 60) for i in sorted(_steps_with(role, steps))]
    elsewhere = (f" The {role.name} comes in at {t.short_list(others, 3)}." if others
                 else f" No step names the {role.name} directly.")
    gist = t.first_sentence(step.description, 200)
    return f"**No.** {where[0].upper()}{where[1:]}, does not involve the {role.name}" + (
        f": {t.lower_first(gist)}" if gist else ".") + elsewhere


def _planned_minutes(scenario: dict, steps: list[t.Item]) -> tuple[int, bool]:
    minutes = t.duration(scenario)
    if minutes:
        return round(minutes), True
    return max(1, len(steps)) * 10 + 15, False


def _amount(word: str) -> int:
    word = word.lower()
    return int(word) if word.isdigit() else _NUMBER_WORDS.get(word, 0)


def _fits_time(lowered: str, scenario: dict, steps: list[t.Item]) -> str:
    match = _ASKED_TIME.search(lowered)
    if not match:
        return ""
    unit = match.group("u").lower()
    amount = 0.5 if match.group("n").startswith("half") else _amount(match.group("n"))
    asked = round(amount * 60) if unit.startswith("h") else round(amount)
    if asked <= 0:
        return ""
    planned, recorded = _planned_minutes(scenario, steps)
    basis = (f"it is planned for {planned} minutes" if recorded
             else f"with {t.plural(len(steps), 'step')} I'd plan about {planned} minutes")
    if asked >= planned:
        spare = asked - planned
        rest = f", leaving {spare} minutes to spare for a longer debrief." if spare >= 5 else "."
        return f"**Yes.** {basis[0].upper()}{basis[1:]}, so {asked} minutes is enough{rest}"
    per_step = max(1, round(asked * 0.85 / max(1, len(steps))))
    return (f"**No, not as it stands:** {basis}. To fit {asked} minutes, give each of the "
            f"{t.plural(len(steps), 'step')} about {per_step} minutes and keep the debrief short, or drop a step "
            "(\"remove step <number>\").")


def _fits_people(lowered: str, roles: list[t.Item]) -> str:
    match = _ASKED_PEOPLE.search(lowered)
    if not match or not roles:
        return ""
    people = _amount(match.group("n"))
    if people <= 0:
        return ""
    count = len(roles)
    if people >= count:
        extra = people - count
        spare = (f" The {t.plural(extra, 'extra person')} can observe and take notes for the debrief." if extra
                 else "")
        return f"**Yes.** It has {t.plural(count, 'role')}, so {people} people can take one each.{spare}"
    return (f"**No, not without doubling up:** it has {t.plural(count, 'role')} for {people} people. Let the "
            "facilitator play a counterpart, or drop a role (\"remove role <name>\").")


def _suits_level(text_words: list[str], scenario: dict) -> str:
    level = t.difficulty_level(scenario.get("difficulty"))
    if level is None:
        return ""
    present = set(text_words)
    padded = " " + " ".join(text_words) + " "
    label = t.difficulties()[level]
    hint = phrase("difficulty_hints")[level]
    title = t.title(scenario)
    if any(f" too {word} " in padded for word in ("hard", "difficult", "complex", "challenging")):
        if level == 2:
            return (f"**Yes, for newcomers.** \"{title}\" is set to {label}. {hint} "
                    "Ask me to \"make it easier\" if your group is new to this.")
        return f"**No.** \"{title}\" is set to {label}. {hint} Ask me to \"make it harder\" if it proves too easy."
    if " too easy " in padded or " too simple " in padded:
        if level == 0:
            return (f"**Yes, for experienced people.** \"{title}\" is set to {label}. {hint} "
                    "Ask me to \"make it harder\" for them.")
        return f"**No.** \"{title}\" is set to {label}. {hint}"
    if present & _BEGINNERS:
        if level == 0:
            return f"**Yes.** \"{title}\" is set to {label}. {hint}"
        if level == 1:
            return f"**Yes, with some coaching.** \"{title}\" is set to {label}. {hint}"
        return (f"**No, not as it stands.** \"{title}\" is set to {label}. {hint} "
                "Ask me to \"make it easier\" to bring it down a level.")
    if present & _EXPERTS:
        if level == 2:
            return f"**Yes.** \"{title}\" is set to {label}. {hint}"
        return (f"**No, it may feel easy to them.** \"{title}\" is set to {label}. {hint} "
                "Ask me to \"make it harder\" to add a complication.")
    return ""


def _exists(text: str, scenario: dict) -> str:
    """"Is there a step about escalation?": the best-matching item, or no."""
    match = _EXISTS.match(text)
    if not match:
        return ""
    rest = t.words(text[match.end():])
    kind = next((_KINDS[word] for word in rest[:2] if word in _KINDS), "")
    wanted = [word for word in dict.fromkeys(t.bare(word) for word in rest) if word not in _STOP]
    if not wanted:
        return ""
    stems = {word[: max(5, len(word) - 3)] if len(word) > 5 else word for word in wanted}
    lists = {"steps": t.steps(scenario), "roles": t.roles(scenario),
             "objectives": [t.Item(text, "") for text in t.objectives(scenario)]}
    best: tuple[int, str, int] | None = None
    for list_name in ([kind] if kind in lists else ["steps", "roles", "objectives"]):
        for index, item in enumerate(lists[list_name]):
            score = 2 * _hits(item.name, stems) + _hits(item.description, stems)
            if score and (best is None or score > best[0]):
                best = (score, list_name, index)
    what = " ".join(wanted)
    noun = {"steps": "step", "roles": "role", "objectives": "objective"}
    if best is None:
        looked = noun.get(kind, "step, role or objective")
        suggestion = {"roles": f"add a role {t.title_case(what)}: <what they do>",
                      "objectives": f"add objective <something about {what}>"}.get(
            kind, f"add a step {t.title_case(what)}: <what happens>")
        return f"**No.** No {looked} of \"{t.title(scenario)}\" mentions {what}. You can add one: \"{suggestion}\"."
    _, list_name, index = best
    item = lists[list_name][index]
    if list_name == "objectives":
        return f"**Yes.** Objective {index + 1}: {t.sentence(item.name)}"
    gist = t.first_sentence(item.description, 240)
    label = f"Step {index + 1}, \"{item.name}\"" if list_name == "steps" else f"The role \"{item.name}\""
    return f"**Yes.** {label}" + (f": {gist}" if gist else ".")


_NEEDS = re.compile(r"^(?:do|does|should|must)\s+(?:we|i|you|it|this|the\s+scenario)\s+(?:really\s+)?"
                    r"(?:need|want|require)\s+(?:(?:a|an|the|one|any)\s+)?(?P<what>[\w\s'-]{2,40}?)\s*\??$", re.I)
# Roles that help any session and need no part in the story.
_SUPPORT_ROLES = {"observer", "facilitator", "scribe", "timekeeper", "note-taker", "notetaker", "moderator"}


def _needs(text: str, roles: list[t.Item], named: int | None) -> str:
    """"do we need an observer?": yes if the scenario has one or it is a support role."""
    match = _NEEDS.match(text)
    if not match:
        return ""
    if named is not None:
        role = roles[named]
        description = f": {t.lower_first(t.first_sentence(role.description, 200))}" if role.description else "."
        return f"**Yes.** The scenario has one, the **{role.name}**{description}"
    what = " ".join(t.words(match.group("what")))
    if what.rstrip("s") in _SUPPORT_ROLES:
        return (f"**Yes, it helps.** {t.article(what).capitalize()} {what} stays out of the action, keeps notes and "
                f"time, and gives the debrief something concrete to work with. Add one with "
                f"\"add a role {t.title_case(what)}\".")
    return ""


def _hits(text: str, stems: set[str]) -> int:
    """How many of the stems start a word of the text (one pass over its words)."""
    found = set()
    for word in set(t.words(text)):
        word = t.bare(word)
        for stem in stems:
            if word.startswith(stem):
                found.add(stem)
    return len(found)


def _dilemma(text_words: list[str], steps: list[t.Item]) -> str:
    """"should we pay the ransom?": the usual advice, yes or no first, and where the scenario asks it."""
    question = t.Cues(text_words)
    for cues, verdict, advice in phrase("dilemmas"):
        asked = [cue for cue in cues if question.has([cue])]
        if not asked:
            continue
        # The step that asks it: a cue in the title counts twice, ties go to the earlier step.
        best, where = 0, ""
        for index, step in enumerate(steps):
            score = 2 * t.has_cue(t.words(step.name), asked) + t.has_cue(t.words(step.description), asked)
            if score > best:
                best, where = score, f" In this scenario it comes up in step {index + 1}, \"{step.name}\"."
        return f"**{verdict}** {advice}{where}"
    return ""
