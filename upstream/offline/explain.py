"""Explain: the whole scenario for someone about to run it, in light markdown."""

from __future__ import annotations

from upstream.offline import text as t
from upstream.offline.chat import focused
from upstream.offline.data import phrase


def explain(scenario: dict | None, message: str = "") -> str:
    if scenario is None:
        hint = phrase("start_hint").format(samples=phrase("samples"))
        return t.safe(f"**There is no scenario loaded yet**, so there is nothing to explain.\n\n{hint}\n")
    # "Explain step 2", "in one sentence": answer what was asked, not the whole scenario.
    answer = focused(message, scenario)
    if answer:
        return t.safe(answer) + "\n"
    sections = [_overview(scenario), _roles(scenario), _steps(scenario), _objectives(scenario),
                _extras(scenario), _closing(scenario)]
    return t.safe("\n\n".join(section for section in sections if section)) + "\n"


def _overview(scenario: dict) -> str:
    title = t.title(scenario)
    difficulty = t.one_line(scenario.get("difficulty"))
    counts = t.join_words([t.plural(len(t.roles(scenario)), "role"), t.plural(len(t.steps(scenario)), "step"),
                           t.plural(len(t.objectives(scenario)), "objective")])
    kind = f"{t.article(difficulty)} {difficulty} scenario" if difficulty else "a scenario"
    paragraphs = [f"## {title}", f"\"{title}\" is {kind} with {counts}."]
    summary = t.one_line(scenario.get("summary"))
    if summary:
        paragraphs[-1] += f" In short: {t.sentence(summary)}"
    setting = t.one_line(scenario.get("setting"))
    if setting:
        paragraphs.append(f"**Setting:** {t.sentence(setting)}")
    level = t.difficulty_level(difficulty)
    if level is not None:
        paragraphs.append(f"**Difficulty:** {difficulty}. {phrase('difficulty_hints')[level]}")
    elif difficulty:
        paragraphs.append(f"**Difficulty** is marked as \"{difficulty}\".")
    else:
        paragraphs.append("No difficulty is set; treat it as intermediate until you decide.")
    return "\n\n".join(paragraphs)


def bullet(name: str, description: str) -> str:
    if name and description:
        return f"- **{name}**: {t.sentence(description)}"
    return f"- {t.sentence(name or description)}"


def _roles(scenario: dict) -> str:
    roles = t.roles(scenario)
    if not roles:
        return "No roles are defined yet; add some so every participant knows who they are."
    return "\n".join([f"### Roles ({len(roles)})"] + [bullet(role.name, role.description) for role in roles])


def _steps(scenario: dict) -> str:
    steps = t.steps(scenario)
    if not steps:
        return "No steps are defined yet, so the session has no set structure."
    lines = ["### How it unfolds, step by step"]
    for number, step in enumerate(steps, 1):
        lines.append(bullet(f"Step {number}, {step.name}" if step.name else f"Step {number}", step.description))
    minutes = t.duration(scenario)
    if minutes:
        per_step = max(1, round(minutes / len(steps)))
        lines.append(f"\nWith {t.one_line(minutes)} minutes in total, that is roughly {per_step} minutes per step "
                     "if you keep an even pace.")
    return "\n".join(lines)


def _objectives(scenario: dict) -> str:
    objectives = t.objectives(scenario)
    if not objectives:
        return "No objectives are listed, so agree with the group what success looks like before you start."
    return "\n".join(["### What success looks like (the objectives)"]
                     + [f"- {t.sentence(objective)}" for objective in objectives])


def _extras(scenario: dict) -> str:
    extras = [key for key in scenario if key not in t.CORE_KEYS]
    if not extras:
        return ""
    return "\n".join(["### Other details"]
                     + [f"- **{t.label(key)}**: {t.summarise(scenario[key])}" for key in extras])


def _closing(scenario: dict) -> str:
    first_step = next((step.name for step in t.steps(scenario) if step.name), "")
    start = f", starting with \"{first_step}\"" if first_step else ""
    return ("To run it, brief everyone on the setting, hand out the roles, walk through the steps "
            f"in order{start}, and debrief against the objectives. Ask me to change anything "
            "(for example \"add a role Scribe\" or \"make it harder\"), or ask about any role or step.")
