"""Modify: apply the plain edits of `grammar.py` and answer with a JSON Patch.

Each edit changes a working copy and records the RFC 6902 operation that made the change, at
the moment it makes it, so the operations applied in order to the user's scenario give exactly
the working copy (indices are those of the moment, as RFC 6902 applies them). The answer is a
short markdown explanation, then one ```patch block; a patch that would be larger than the
document itself is sent as a whole ```scenario block instead. Without a loaded scenario there is
nothing to patch, so the answer carries a new scenario.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from upstream.offline import text as t
from upstream.offline.create import choose_topic, create, default_scenario
from upstream.offline.data import phrase
from upstream.offline.grammar import MAX_EDITS, TOO_MANY, Edit, parse_request


@dataclass
class Outcome:
    """What happened: done and failed for the explanation, ops for the patch."""

    # One line per change made, each with exactly one operation in `ops`, so the count the
    # answer gives is the patch's. Edits that needed no change are `unchanged`, not done.
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    ops: list[dict[str, Any]] = field(default_factory=list)
    _labels: dict[tuple[int, str], tuple[Any, str]] = field(default_factory=dict, repr=False)

    def op(self, op: str, path: str, *value: Any) -> None:
        entry: dict[str, Any] = {"op": op, "path": path}
        if value:
            # A deep copy: later edits may change the working copy the value came from.
            entry["value"] = copy.deepcopy(value[0])
        previous = self.ops[-1] if self.ops else None
        if (op == "add" and previous is not None and previous["op"] == "add" and previous.get("value") == []
                and path in (previous["path"] + "/-", previous["path"] + "/0")):
            # The list was created for this very item: one operation adds the list with it.
            previous["value"] = [entry["value"]]
            return
        self.ops.append(entry)

    def label(self, entry: Any, label_key: str) -> str:
        """An entry's normalised label, worked out once per entry and message: finding an item
        by name reads every label, and a message may hold many such edits."""
        key = (id(entry), label_key)
        cached = self._labels.get(key)
        if cached is None or cached[0] is not entry:
            # "*": the whole text of a plain entry (an objective), not a label cut at 80 characters.
            text = t.one_line(entry) if label_key == "*" else _entry_label(entry, label_key)
            cached = self._labels[key] = (entry, t.norm_text(text))
        return cached[1]

    def forget(self, entry: Any) -> None:
        """An entry's label changed."""
        for label_key in ("name", "title", ""):
            self._labels.pop((id(entry), label_key), None)


def modify(message: str, scenario: dict | None) -> str:
    if scenario is None:
        return _modify_without_scenario(message)
    working = copy.deepcopy(scenario)
    edits, unparsed = parse_request(message, working)
    outcome = apply_edits(working, edits)
    if TOO_MANY in unparsed:
        unparsed.remove(TOO_MANY)
        outcome.failed.append(f"I apply at most {MAX_EDITS} edits per message, so I stopped after the first "
                              f"{MAX_EDITS}; send the rest in another message.")
    if not (isinstance(working.get("title"), str) and working["title"].strip()):
        # A scenario must have a title; the result is useless to the caller without one.
        _put(working, outcome, "title", "Untitled scenario")
        outcome.done.append("Gave the scenario the placeholder title \"Untitled scenario\", because it had none.")
    return _response(outcome, unparsed, working, message)


def _modify_without_scenario(message: str) -> str:
    """No scenario to patch: apply pure edits to a fresh one, otherwise create from the message."""
    base = default_scenario()
    edits, unparsed = parse_request(message, base)
    if edits and not unparsed:
        outcome = apply_edits(base, edits)
        lines = ["**There's no scenario loaded yet**, so I started from a new general scenario and applied "
                 "your edits:"]
        lines += [f"- {line}" for line in outcome.done + outcome.unchanged + outcome.failed]
        return f"{t.safe(chr(10).join(lines))}\n{t.scenario_block(base)}"
    return create(message, preface="**There's no scenario loaded yet**, so I created a new one.")


def _response(outcome: Outcome, unparsed: list[str], scenario: dict, message: str) -> str:
    parts: list[str] = []
    if outcome.done:
        count = t.plural(len(outcome.done), "change")
        parts.append("\n".join([f"**Done:** I applied {count} with the built-in offline model."]
                               + [f"- {line}" for line in outcome.done]))
    if outcome.unchanged:
        parts.append("\n".join(["**Already so:**"] + [f"- {line}" for line in outcome.unchanged]))
    if outcome.failed:
        parts.append("\n".join(["**Some edits could not be applied:**"] + [f"- {line}" for line in outcome.failed]))
    if unparsed or not (outcome.done or outcome.failed or outcome.unchanged):
        parts.append(_beyond_me(unparsed, message, partial=bool(outcome.done)))
    patch = t.patch_block(outcome.ops)
    whole = t.scenario_block(scenario)
    if outcome.ops and len(patch) > len(whole):
        # Most of the document changed: the whole scenario is the shorter answer.
        parts.append("The change touches most of the scenario, so I sent it whole.")
        return f"{t.safe(_paragraphs(parts))}\n{whole}"
    if outcome.ops:
        parts.append(f"Everything else stays as it was ({t.plural(len(outcome.ops), 'patch operation')}).")
    else:
        parts.append("The scenario is unchanged.")
    return f"{t.safe(_paragraphs(parts))}\n{patch}"


def _paragraphs(parts: list[str]) -> str:
    return "\n\n".join(parts)


def _beyond_me(unparsed: list[str], message: str, partial: bool) -> str:
    """The clear "beyond me" answer: what it could not do, what it can, and where to go instead."""
    if unparsed:
        quoted = t.join_words([t.quote(text, 90) for text in unparsed[:3]])
        opening = (f"**That is beyond me.** The built-in offline model only handles plain edits, and I couldn't "
                   f"turn {quoted} into one.")
    elif message.strip():
        opening = ("**That is beyond me.** The built-in offline model only handles plain edits, and I couldn't "
                   "find one in your request.")
    else:
        opening = "Tell me what to change: the built-in offline model handles plain edits only."
    if partial:
        opening += " I applied the parts I understood."
    lines = [opening, "", "It understands requests like:"]
    lines += [f"- {example}" for example in phrase("supported_edits")]
    lines += ["", "Several edits can be joined with \"and\", \";\" or new lines. " + phrase("real_model_hint")]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Applying edits: each change to the working copy records its operation
# ---------------------------------------------------------------------------


def _put(doc: dict, outcome: Outcome, key: str, value: Any) -> None:
    """Set a top-level key: `replace` if it exists, `add` if not."""
    outcome.op("replace" if key in doc else "add", t.pointer(key), value)
    doc[key] = value


def _find_named(entries: list[Any], ref: str, label_key: str, outcome: Outcome) -> int | None:
    """Index of the entry whose name matches ref: exact first, then a unique partial match."""
    wanted = t.norm_text(ref)
    if not wanted:
        return None
    labels = [outcome.label(entry, label_key) for entry in entries]
    for index, entry_label in enumerate(labels):
        if entry_label == wanted:
            return index
    partial = [index for index, entry_label in enumerate(labels)
               if entry_label and len(wanted) >= 3 and (wanted in entry_label or entry_label in wanted)]
    return partial[0] if len(partial) == 1 else None


def _entry_label(entry: Any, label_key: str) -> str:
    if isinstance(entry, dict):
        return t.one_line(entry.get(label_key) or entry.get("name") or entry.get("title"), 80)
    return t.one_line(entry, 80)


def _list_field(doc: dict, key: str, outcome: Outcome, create: bool) -> list | None:
    value = doc.get(key)
    if isinstance(value, list):
        return value
    if value is None and create:
        _put(doc, outcome, key, [])
        return doc[key]
    if value is None:
        outcome.failed.append(f"The scenario has no {key} yet.")
    else:
        outcome.failed.append(f"\"{key}\" is not a list, so I left it alone.")
    return None


def _coerce(key: str, raw: str, current: Any) -> tuple[bool, Any]:
    """Convert text to the type the field already has; (False, reason) if impossible."""
    if key == "difficulty":
        level = t.difficulty_level(raw.rstrip(" ."))
        return True, t.difficulties()[level] if level is not None else raw.rstrip(" .")
    if isinstance(current, bool):
        lowered = raw.lower().rstrip(" .")
        if lowered in ("yes", "true", "on", "1"):
            return True, True
        if lowered in ("no", "false", "off", "0"):
            return True, False
        return False, f"\"{key}\" is a yes/no field, and \"{t.one_line(raw, 40)}\" is neither."
    number = re.match(r"[-+]?\d{1,15}(?:\.\d{1,10})?", raw)
    if isinstance(current, (int, float)):
        if not number:
            return False, f"\"{key}\" needs a number, and \"{t.one_line(raw, 40)}\" isn't one."
        return True, _to_number(number.group(0))
    if isinstance(current, list):
        parts = [part.strip(" .") for part in re.split(r"\s*,\s*|\s+and\s+", raw)]
        return True, [part for part in parts if part]
    if current is None and number and number.group(0) == raw.strip():
        return True, _to_number(raw.strip())
    return True, raw


def _to_number(text: str) -> int | float:
    return float(text) if "." in text else int(text)


def _apply_set(doc: dict, edit: Edit, outcome: Outcome) -> None:
    key = edit.args["key"]
    current = doc.get(key, phrase("known_extras").get(key))
    ok, value = _coerce(key, edit.args["value"], current)
    if not ok:
        outcome.failed.append(value)
        return
    old = doc.get(key)
    shown = t.quote(value, 120) if isinstance(value, str) else t.summarise(value)
    name = t.label(key).lower()
    if old == value and type(old) is type(value):
        outcome.unchanged.append(f"The {name} was already {shown}, so nothing changed there.")
        return
    _put(doc, outcome, key, value)
    outcome.done.append(f"Added the {name}: {shown}." if old is None else f"Changed the {name} to {shown}.")


def _apply_title(doc: dict, edit: Edit, outcome: Outcome) -> None:
    old = t.one_line(doc.get("title"))
    _put(doc, outcome, "title", edit.args["value"])
    outcome.done.append(f"Renamed the scenario from \"{old}\" to \"{edit.args['value']}\"." if old
                        else f"Set the title to \"{edit.args['value']}\".")


def _apply_difficulty_move(doc: dict, edit: Edit, outcome: Outcome) -> None:
    levels = t.difficulties()
    current = t.difficulty_level(doc.get("difficulty"))
    level = 1 if current is None else current
    harder = edit.kind == "harder"
    target = min(2, level + 1) if harder else max(0, level - 1)
    if current is None:
        target = 2 if harder else 0  # an unknown label counts as intermediate
    if current is not None and target == level:
        if harder:
            before = len(outcome.done)
            if _harden(doc, outcome):
                # Said on the change itself: the level stays, and that line is the one change made.
                outcome.done[before] = (f"The difficulty is already {levels[level]}, the hardest level I know, so I "
                                        f"made the play harder instead. {outcome.done[before]}")
                return
        extreme = "hardest" if harder else "easiest"
        outcome.failed.append(f"The difficulty is already {levels[level]}, the {extreme} level I know, so I left it.")
        return
    old = t.one_line(doc.get("difficulty")) or "unset"
    _put(doc, outcome, "difficulty", levels[target])
    outcome.done.append(f"Changed the difficulty from {old} to {levels[target]}.")
    if harder:
        _harden(doc, outcome)


def _harden(doc: dict, outcome: Outcome) -> bool:
    """Make the play itself harder: a complication step if there is none yet, else a tighter time limit."""
    return _add_complication(doc, outcome) or _tighten_time_limit(doc, outcome)


def _add_complication(doc: dict, outcome: Outcome) -> bool:
    steps = doc.get("steps")
    if steps is not None and not isinstance(steps, list):
        return False
    if any(outcome.label(step, "title").startswith("complication") for step in steps or []):
        return False
    about = " ".join(t.one_line(doc.get(key)) for key in ("title", "summary", "setting", "tags"))
    step = dict(choose_topic(about).complication)
    steps = _list_field(doc, "steps", outcome, create=True)
    assert steps is not None
    # Before the wrap-up step, where a twist still has consequences.
    position = len(steps) - 1 if len(steps) >= 2 else len(steps)
    outcome.op("add", t.pointer("steps", position if position < len(steps) else "-"), step)
    steps.insert(position, step)
    outcome.done.append(f"Added a complication step, \"{step['title']}\", as step {position + 1} of {len(steps)}: "
                        f"{t.lower_first(step['description'])}")
    return True


_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                 "nine": 9, "ten": 10, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40,
                 "forty-five": 45, "sixty": 60, "ninety": 90}
_TIME_LIMIT = re.compile(rf"\b(within|in|under|inside|by)\s+(the\s+first\s+)?(\d{{1,4}}|{'|'.join(_NUMBER_WORDS)})"
                         r"\s+(minutes?|hours?|days?)\b", re.I)


def _tighten_time_limit(doc: dict, outcome: Outcome) -> bool:
    objectives = doc.get("objectives")
    if not isinstance(objectives, list):
        return False
    for index, objective in enumerate(objectives):
        match = _TIME_LIMIT.search(objective) if isinstance(objective, str) else None
        if not match:
            continue
        amount_text, unit = match.group(3), match.group(4).lower()
        amount = int(amount_text) if amount_text.isdigit() else _NUMBER_WORDS[amount_text.lower()]
        tighter = round(amount * 2 / 3)
        if tighter < 1 or tighter == amount:
            if not unit.startswith("hour"):
                continue
            tighter, unit = amount * 40, "minutes"  # 1 hour -> 40 minutes
        new_unit = unit if tighter != 1 else unit.rstrip("s")
        if tighter != 1 and not new_unit.endswith("s"):
            new_unit += "s"
        start, end = match.span(3)
        new = objective[:start] + str(tighter) + " " + new_unit + objective[match.end(4):]
        outcome.op("replace", t.pointer("objectives", index), new)
        objectives[index] = new
        outcome.done.append(f"Tightened the time limit in objective {index + 1} from {amount_text} "
                            f"{match.group(4)} to {tighter} {new_unit}: {t.quote(new, 160)}.")
        return True
    return False


def _apply_add_role(doc: dict, edit: Edit, outcome: Outcome) -> None:
    roles = _list_field(doc, "roles", outcome, create=True)
    if roles is None:
        return
    name, description = edit.args["name"], edit.args["description"]
    wanted = t.norm_text(name)
    existing = next((index for index, role in enumerate(roles) if outcome.label(role, "name") == wanted), None)
    if existing is not None:
        if description and isinstance(roles[existing], dict):
            role = roles[existing]
            outcome.op("replace" if "description" in role else "add", t.pointer("roles", existing, "description"),
                       t.sentence(description))
            role["description"] = t.sentence(description)
            outcome.done.append(f"Updated the description of the role \"{name}\".")
        else:
            outcome.failed.append(f"There is already a role called \"{name}\", so I didn't add another.")
        return
    text = t.sentence(description) if description else role_description(name, doc)
    role = {"name": name, "description": text}
    outcome.op("add", t.pointer("roles", "-"), role)
    roles.append(role)
    outcome.done.append(f"Added the role \"{name}\" ({t.lower_first(text).rstrip('.')}).")


def _lower_name(name: str) -> str:
    """"Night Porter" -> "night porter", "HR Manager" -> "HR manager": mid-sentence, acronyms kept."""
    return " ".join(word if word.isupper() and len(word) > 1 else word.lower() for word in name.split())


def role_description(name: str, scenario: dict) -> str:
    """A description for a role added by name only: what such a person does in an exercise.

    The role's own words pick the entry in data/phrases.json ("role_descriptions"): the
    distinctive ones first ("HR" in "HR Manager"), then the generic heads ("manager"). A name
    none of them knows gets a sentence built around the name itself.
    """
    lowered = name.lower()
    table = phrase("role_descriptions")
    for cues, text in table:
        if lowered in cues:
            return text
    generic = set(phrase("generic_role_words"))
    name_words = [t.bare(word) for word in reversed(t.words(name))]
    for word in [word for word in name_words if word not in generic] + [w for w in name_words if w in generic]:
        for cues, text in table:
            if word in cues:
                return text
    return phrase("role_description_default").format(name=_lower_name(name), title=t.title(scenario))


def _target_index(entries: list[Any], edit: Edit, label_key: str, outcome: Outcome) -> int | None:
    """Where the edit's target is now: by identity if pinned, else by number or name."""
    if "target" in edit.args:
        return next((index for index, entry in enumerate(entries) if entry is edit.args["target"]), None)
    number = edit.args.get("number")
    if number is not None:
        if number == -1 and entries:
            return len(entries) - 1
        return number - 1 if 1 <= number <= len(entries) else None
    return _find_named(entries, edit.args.get("ref", ""), label_key, outcome)


def _apply_remove_named(doc: dict, edit: Edit, outcome: Outcome, key: str, label_key: str, noun: str) -> None:
    entries = _list_field(doc, key, outcome, create=False)
    if entries is None:
        return
    index = _target_index(entries, edit, label_key, outcome)
    if index is None:
        known = _known(entries, label_key)
        what = edit.args.get("ref") or f"number {edit.args.get('number')}"
        suffix = f" The {key} are: {known}." if known else f" There are no {key}."
        outcome.failed.append(f"I couldn't find the {noun} {t.quote(str(what))}.{suffix}")
        return
    outcome.op("remove", t.pointer(key, index))
    removed = entries.pop(index)
    outcome.done.append(f"Removed the {noun} {t.quote(_entry_label(removed, label_key))}.")


def _apply_rename_role(doc: dict, edit: Edit, outcome: Outcome) -> None:
    roles = _list_field(doc, "roles", outcome, create=False)
    if roles is None:
        return
    index = _find_named(roles, edit.args["old"], "name", outcome)
    if index is None or not isinstance(roles[index], dict):
        known = _known(roles, "name")
        outcome.failed.append(f"I couldn't find the role {t.quote(edit.args['old'])}. The roles are: {known or 'none'}.")
        return
    old = _entry_label(roles[index], "name")
    outcome.op("replace" if "name" in roles[index] else "add", t.pointer("roles", index, "name"), edit.args["new"])
    roles[index]["name"] = edit.args["new"]
    outcome.forget(roles[index])
    outcome.done.append(f"Renamed the role \"{old}\" to \"{edit.args['new']}\".")


def _known(entries: list[Any], label_key: str) -> str:
    """The first few labels and how many more: never a walk through a whole long list."""
    shown = [t.quote(_entry_label(entry, label_key), 60) for entry in entries[:5]]
    return f"{', '.join(shown)} and {len(entries) - 5} more" if len(entries) > 5 else t.join_words(shown)


def _apply_rename_step(doc: dict, edit: Edit, outcome: Outcome) -> None:
    steps = _list_field(doc, "steps", outcome, create=False)
    if steps is None:
        return
    index = _target_index(steps, edit, "title", outcome)
    if index is None or not isinstance(steps[index], dict):
        what = edit.args.get("ref") or f"number {edit.args.get('number')}"
        known = _known(steps, "title") or "none"
        outcome.failed.append(f"I couldn't find the step {t.quote(str(what))}. The steps are: {known}.")
        return
    old = _entry_label(steps[index], "title")
    outcome.op("replace" if "title" in steps[index] else "add", t.pointer("steps", index, "title"), edit.args["new"])
    steps[index]["title"] = edit.args["new"]
    outcome.forget(steps[index])
    outcome.done.append(f"Renamed step {index + 1} from \"{old}\" to \"{edit.args['new']}\".")


def _apply_add_step(doc: dict, edit: Edit, outcome: Outcome) -> None:
    steps = _list_field(doc, "steps", outcome, create=True)
    if steps is None:
        return
    title, description = edit.args["title"], edit.args["description"]
    entry = {"title": title, "description": t.sentence(description) if description else
             phrase("step_description_default").format(step=_lower_name(title))}
    index, relation = edit.args["index"], edit.args["relation"]
    if index is None or index == -1:
        position = len(steps)
    else:
        position = index + 1 if relation == "after" else index
    position = max(0, min(len(steps), position))
    outcome.op("add", t.pointer("steps", position if position < len(steps) else "-"), entry)
    steps.insert(position, entry)
    outcome.done.append(f"Added the step \"{title}\" as step {position + 1} of {len(steps)}.")


def _apply_add_objective(doc: dict, edit: Edit, outcome: Outcome) -> None:
    objectives = _list_field(doc, "objectives", outcome, create=True)
    if objectives is None:
        return
    text = edit.args["text"]
    wanted = t.norm_text(text)
    if any(outcome.label(item, "*") == wanted for item in objectives):
        outcome.failed.append(f"The objective {t.quote(text)} is already there.")
        return
    outcome.op("add", t.pointer("objectives", "-"), text)
    objectives.append(text)
    outcome.done.append(f"Added the objective {t.quote(text)}.")


def _pin_numbered_targets(doc: dict, edits: list[Edit]) -> None:
    """Resolve "remove step 2" against the numbering the user was looking at.

    Without this, "remove step 2 and 3" would remove the original steps 2 and 4,
    because removing step 2 renumbers everything after it.
    """
    keys = {"remove_step": "steps", "remove_objective": "objectives", "remove_role": "roles"}
    for edit in edits:
        key = keys.get(edit.kind)
        number = edit.args.get("number")
        entries = doc.get(key) if key else None
        if number is None or not isinstance(entries, list):
            continue
        if number == -1 and entries:
            edit.args["target"] = entries[-1]
        elif 1 <= number <= len(entries):
            edit.args["target"] = entries[number - 1]


def apply_edits(doc: dict, edits: list[Edit]) -> Outcome:
    """Apply the edits to doc in place; the outcome's ops, applied in order, make the same change."""
    outcome = Outcome()
    _pin_numbered_targets(doc, edits)
    for edit in edits:
        kind = edit.kind
        if kind == "title":
            _apply_title(doc, edit, outcome)
        elif kind == "set":
            _apply_set(doc, edit, outcome)
        elif kind in ("harder", "easier"):
            _apply_difficulty_move(doc, edit, outcome)
        elif kind == "add_role":
            _apply_add_role(doc, edit, outcome)
        elif kind == "rename_role":
            _apply_rename_role(doc, edit, outcome)
        elif kind == "rename_step":
            _apply_rename_step(doc, edit, outcome)
        elif kind == "remove_role":
            _apply_remove_named(doc, edit, outcome, "roles", "name", "role")
        elif kind == "add_step":
            _apply_add_step(doc, edit, outcome)
        elif kind == "remove_step":
            _apply_remove_named(doc, edit, outcome, "steps", "title", "step")
        elif kind == "add_objective":
            _apply_add_objective(doc, edit, outcome)
        elif kind == "remove_objective":
            _apply_remove_named(doc, edit, outcome, "objectives", "", "objective")
    return outcome

