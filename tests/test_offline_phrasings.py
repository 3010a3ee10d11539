"""Everyday phrasings on the built-in offline model, routed in auto mode as the page sends them.

The held-out set below was written before the offline model learnt these phrasings. Each
message is routed (agent/route.py) and answered (upstream/offline/compose.py) the way a run
does it, and the answer is checked by what it says, never by which template produced it:
an add request really adds the role with a real description, a role question talks about
that role, a yes/no question starts with the answer.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any, Callable

import pytest

from agent.patch import apply_patch
from agent.route import route
from agent.splitter import CHAT, Splitter
from tests.support.scenarios import sample
from upstream.offline.compose import compose

PLACEHOLDER = re.compile(r"added on request|agree their goals|describe what happens", re.I)


def answer(message: str, scenario_name: str | None) -> tuple[str, str, dict | None]:
    """(intent, the answer's text, the scenario its block gives: patched or created, else None)."""
    scenario = sample(scenario_name) if scenario_name else None
    intent = route("auto", message, scenario)
    out = compose(intent, message, copy.deepcopy(scenario), [])
    patch = re.search(r"```patch\n(.*?)\n```", out, re.S)
    whole = re.search(r"```scenario\n(.*?)\n```", out, re.S)
    result = None
    if patch:
        result = apply_patch(scenario, json.loads(patch.group(1)))
    elif whole:
        result = json.loads(whole.group(1))
    return intent, out, result


def prose(out: str) -> str:
    return re.split(r"```", out, maxsplit=1)[0].strip()


def first_words(out: str) -> str:
    """The opening of the answer without markdown emphasis."""
    return prose(out).replace("*", "").lstrip()


def names(scenario: dict) -> list[str]:
    return [role["name"] for role in scenario["roles"]]


def titles(scenario: dict) -> list[str]:
    return [step["title"] for step in scenario["steps"]]


def added_role(before: str, result: dict, name: str, cues: tuple[str, ...]) -> None:
    """The role was appended once, with a description of its own (not a placeholder)."""
    original = sample(before)
    assert names(result) == names(original) + [name], names(result)
    description = result["roles"][-1]["description"]
    assert not PLACEHOLDER.search(description), description
    assert len(description) >= 40, description
    assert any(cue in description.lower() for cue in cues), description


# ---------------------------------------------------------------------------
# The held-out set: (scenario, message, intent, check of the answer)
# ---------------------------------------------------------------------------

Check = Callable[[str, "dict | None"], None]


def _journalist(before: str) -> Check:
    def check(out: str, result: dict | None) -> None:
        assert result is not None, out
        added_role(before, result, "Journalist", ("press", "news", "story", "report", "publish", "question"))
    return check


def _removed_role(before: str, name: str) -> Check:
    def check(out: str, result: dict | None) -> None:
        assert names(result) == [role for role in names(sample(before)) if role != name]
        assert name in prose(out)
    return check


def _step_removed(before: str, number: int) -> Check:
    def check(out: str, result: dict | None) -> None:
        expected = titles(sample(before))
        gone = expected.pop(number - 1)
        assert titles(result) == expected and gone in prose(out)
    return check


def _field(key: str, value: Any) -> Check:
    def check(out: str, result: dict | None) -> None:
        assert result is not None and result[key] == value, out
    return check


def _count_matches_patch(out: str, result: dict | None) -> None:
    ops = json.loads(re.search(r"```patch\n(.*?)\n```", out, re.S).group(1))
    claimed = re.search(r"I applied (\d+) changes?", out)
    assert ops and claimed and int(claimed.group(1)) == len(ops), out


def _harder(before: str) -> Check:
    def check(out: str, result: dict | None) -> None:
        _count_matches_patch(out, result)
        assert result != sample(before)
    return check


def _easier(out: str, result: dict | None) -> None:
    _count_matches_patch(out, result)
    assert result["difficulty"] == "beginner"


def _objective_added(words: str) -> Check:
    def check(out: str, result: dict | None) -> None:
        added = result["objectives"][-1]
        assert words in added.lower() and not added.lower().startswith("about"), added
        assert len(result["objectives"]) == len(sample("hospital-ransomware")["objectives"]) + 1
    return check


def _step_added(words: str) -> Check:
    def check(out: str, result: dict | None) -> None:
        original = titles(sample("hospital-ransomware"))
        assert len(titles(result)) == len(original) + 1
        step = next(step for step in result["steps"] if step["title"] not in original)
        assert words in f"{step['title']} {step['description']}".lower(), step
        assert not PLACEHOLDER.search(step["description"]), step
    return check


def _renamed_role(out: str, result: dict | None) -> None:
    assert "Client" in names(result) and "Customer" not in names(result), names(result)


def _two_roles(out: str, result: dict | None) -> None:
    assert names(result)[-2:] == ["Journalist", "Regulator"], names(result)
    for role in result["roles"][-2:]:
        assert not PLACEHOLDER.search(role["description"]) and len(role["description"]) >= 40, role


def _created(*words: str) -> Check:
    def check(out: str, result: dict | None) -> None:
        assert result is not None and result["roles"] and result["steps"], out
        text = json.dumps(result).lower()
        for word in words:
            assert word in text, (word, result["title"])
    return check


def _explains(name: str) -> Check:
    def check(out: str, result: dict | None) -> None:
        scenario = sample(name)
        assert scenario["title"] in out
        for entry in scenario["roles"] + scenario["steps"]:
            assert (entry.get("name") or entry.get("title")) in out
    return check


def _one_sentence(*anchors: str) -> Check:
    def check(out: str, result: dict | None) -> None:
        text = prose(out)
        assert len(re.findall(r"[.!?](?:\s|$)", text)) == 1, text
        assert len(text) < 400, text
        assert any(anchor in text for anchor in anchors), text
    return check


def _about(*needles: str, absent: tuple[str, ...] = (), limit: int = 1200) -> Check:
    """A focused answer: it says these things, not those, and is no whole-scenario explanation."""
    def check(out: str, result: dict | None) -> None:
        assert "```" not in out and len(out) < limit, out
        for needle in needles:
            assert needle in out, (needle, out)
        for needle in absent:
            assert needle not in out, (needle, out)
    return check


def _yes_no(word: str, *needles: str) -> Check:
    def check(out: str, result: dict | None) -> None:
        assert re.match(rf"{word}\b", first_words(out)), out
        for needle in needles:
            assert needle.lower() in out.lower(), (needle, out)
        assert "```" not in out
    return check


H, SUP, NEG = "hospital-ransomware", "support-escalation", "supplier-negotiation"

PHRASINGS: list[tuple[str | None, str, str, Check]] = [
    # modify
    (H, "Can you add a journalist?", "modify", _journalist(H)),
    (H, "please include a journalist role", "modify", _journalist(H)),
    (SUP, "could you add a journalist to the roles?", "modify", _journalist(SUP)),
    (NEG, "bring in a journalist", "modify", _journalist(NEG)),
    (SUP, "get rid of the Observer", "modify", _removed_role(SUP, "Observer")),
    (H, "drop step 2", "modify", _step_removed(H, 2)),
    (H, "call it Night Shift Ransomware", "modify", _field("title", "Night Shift Ransomware")),
    (SUP, "change the difficulty to beginner", "modify", _field("difficulty", "beginner")),
    (H, "make it harder", "modify", _harder(H)),
    (NEG, "make it a bit easier", "modify", _easier),
    (H, "add an objective about keeping a decision log", "modify", _objective_added("decision log")),
    (H, "add a step where the backup generator fails", "modify", _step_added("generator")),
    (SUP, "rename the Customer to Client", "modify", _renamed_role),
    (SUP, "add a journalist and a regulator", "modify", _two_roles),
    # create
    (None, "Can you make me a scenario about a flood at a warehouse?", "create", _created("flood", "warehouse")),
    (None, "I need a tabletop exercise on phishing", "create", _created("phishing")),
    (H, "start a new scenario about an earthquake at a school", "create", _created("earthquake", "school")),
    (None, "let's do a role-play with an angry customer", "create", _created("customer")),
    # explain
    (H, "Explain this scenario", "explain", _explains(H)),
    (SUP, "walk me through it", "explain", _explains(SUP)),
    (NEG, "summarize this in one sentence", "chat", _one_sentence("aluminium", "Aluminium")),
    # questions about roles
    (H, "Tell me about the CISO", "chat", _about("CISO", "technical response", absent=("Chief Medical Officer",))),
    (H, "what does the Chief Medical Officer do?", "chat", _about("Chief Medical Officer", "patient safety")),
    (SUP, "who is the customer?", "chat", _about("Customer", "Dana Okafor")),
    (NEG, "What's the Finance Analyst's job?", "chat", _about("Finance Analyst", "cost model")),
    (H, "is the CISO involved in step 3?", "chat", _yes_no("Yes", "CISO", "Containment decisions")),
    (SUP, "does the Observer take part in step 1?", "chat", _yes_no("No", "Observer", "Opening the call")),
    # questions about steps
    (H, "what does step 3 involve?", "chat", _about("Containment decisions", "isolating the clinical network")),
    (SUP, "what happens in the last step?", "chat", _about("Follow-up and debrief")),
    (NEG, "how does the deadlock step work?", "chat", _about("Deadlock", "allocation")),
    (H, "explain step 5", "chat", _about("Ransom demand and data leak", absent=("### Roles",))),
    # questions about objectives
    (H, "what are the objectives?", "chat", _about("Activate the incident command structure", "downtime procedures")),
    (SUP, "how will we know if we succeeded?", "chat", _about("Lower the customer's frustration")),
    (NEG, "what's the second objective?", "chat", _about("Uncover at least two interests",
                                                         absent=("Prepare a clear target",))),
    # yes/no questions
    (H, "should we pay the ransom?", "chat", _yes_no("No", "ransom", "Ransom demand and data leak")),
    (H, "is this suitable for beginners?", "chat", _yes_no("No", "advanced")),
    (SUP, "Is there a step about escalation?", "chat", _yes_no("Yes", "Warm escalation")),
    (NEG, "can we run it in 30 minutes?", "chat", _yes_no("No", "75 minutes")),
]


@pytest.mark.parametrize("scenario_name, message, intent, check", PHRASINGS,
                         ids=[message for _, message, _, _ in PHRASINGS])
def test_everyday_phrasing_gets_the_intended_intent_and_an_on_topic_answer(scenario_name, message, intent, check):
    routed, out, result = answer(message, scenario_name)
    assert routed == intent, (message, routed)
    check(out, result)


def test_the_held_out_set_covers_thirty_phrasings_and_every_intent():
    assert len({message for _, message, _, _ in PHRASINGS}) >= 30
    assert {intent for _, _, intent, _ in PHRASINGS} == {"explain", "modify", "create", "chat"}


# ---------------------------------------------------------------------------
# What a change answer claims, and what it saves
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", [H, SUP, NEG])
@pytest.mark.parametrize("difficulty", ["beginner", "intermediate", "advanced"])
@pytest.mark.parametrize("message", ["make it harder", "make it easier", "make it harder and add a role Scribe"])
def test_the_count_of_changes_is_the_count_of_patch_operations(name, difficulty, message):
    scenario = sample(name)
    scenario["difficulty"] = difficulty
    out = compose("modify", message, scenario, [])
    ops = json.loads(re.search(r"```patch\n(.*?)\n```", out, re.S).group(1))
    claimed = re.search(r"I applied (\d+) changes?", out)
    assert (int(claimed.group(1)) if claimed else 0) == len(ops), out
    done = re.search(r"\*\*Done:\*\*.*?\n\n", out, re.S)
    bullets = done.group(0).count("\n- ") if done else 0
    assert bullets == len(ops), out  # one line per change made, none for a change not made


def test_a_change_already_made_is_not_counted():
    scenario = sample(SUP)
    out = compose("modify", "set difficulty to intermediate and add a role Scribe", scenario, [])
    assert "I applied 1 change " in out and 'already "intermediate"' in out


@pytest.mark.parametrize("name, cues", [
    ("Journalist", ("press", "news", "story", "publish")),
    ("Regulator", ("rule", "regulat", "complian", "report")),
    ("Mediator", ("neutral", "both sides", "agreement")),
    ("Insurance Adjuster", ("insur", "claim", "cover")),
    ("HR Manager", ("staff", "employee", "people")),
    ("Night Porter", ("night porter",)),
])
def test_an_added_role_gets_a_description_of_its_own(name, cues):
    scenario = sample(H)
    out = compose("modify", f"add a role {name}", scenario, [])
    result = apply_patch(scenario, json.loads(re.search(r"```patch\n(.*?)\n```", out, re.S).group(1)))
    role = result["roles"][-1]
    assert role["name"] == name
    assert not PLACEHOLDER.search(role["description"]), role
    assert any(cue in role["description"].lower() for cue in cues), role


def test_an_added_step_without_a_description_gets_one_of_its_own():
    scenario = sample(H)
    out = compose("modify", "add a step Press conference", scenario, [])
    result = apply_patch(scenario, json.loads(re.search(r"```patch\n(.*?)\n```", out, re.S).group(1)))
    step = result["steps"][-1]
    assert step["title"] == "Press Conference" or step["title"] == "Press conference"
    assert not PLACEHOLDER.search(step["description"]) and "press conference" in step["description"].lower(), step


def chat_text(out: str) -> str:
    """What the page shows as the answer's prose: the splitter's chat pieces."""
    splitter = Splitter()
    pieces = splitter.feed(out) + splitter.flush()
    return "".join(text for kind, text in pieces if kind == CHAT)


@pytest.mark.parametrize("intent, message, name", [
    ("modify", "rename it to Blue Harbor", H),
    ("modify", "make it harder", SUP),
    ("modify", "turn it into a musical", NEG),
    ("modify", "rename it to Blank Slate", None),
    ("modify", "a scenario about a flood", None),
    ("create", "create a scenario about a flood", None),
    ("explain", "Explain this scenario", H),
    ("chat", "who should play the CISO?", H),
])
def test_answers_end_without_blank_lines(intent, message, name):
    out = compose(intent, message, sample(name) if name else None, [])
    shown = chat_text(out)
    assert shown.strip() and not shown.endswith("\n\n"), repr(shown[-40:])
    assert "\n\n\n" not in shown, repr(shown)


# ---------------------------------------------------------------------------
# The default pace
# ---------------------------------------------------------------------------


def test_the_default_pace_streams_visibly_without_making_people_wait():
    from agent.config import Settings
    from upstream.offline import _TOKEN

    delay = Settings().offline_token_delay_ms / 1000
    explain = len(_TOKEN.findall(compose("explain", "Explain this scenario", sample(H), [])))
    # The streaming lab's default question, in create mode.
    lab = len(_TOKEN.findall(compose("create", "a fire drill in a school", None, [])))
    chat = len(_TOKEN.findall(compose("chat", "who should play the CISO?", sample(H), [])))
    assert explain * delay <= 6.0, explain * delay  # 18 s at 25 ms a token
    assert lab * delay <= 5.0, lab * delay
    # Slow enough to be seen: the lab still compares paths over seconds, a short chat
    # answer still arrives word by word rather than at once.
    assert lab * delay >= 2.0, lab * delay
    assert chat * delay >= 0.2, chat * delay
