"""Tests for upstream.offline.compose, the text of the built-in offline model (templates in upstream/offline/data/)."""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).parent.parent
# Plain `pytest` puts tests/ (not the project root) on sys.path; make `agent` importable.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.scenarios import big_scenario  # noqa: E402
from upstream.offline.compose import compose  # noqa: E402

SAMPLES_DIR = ROOT / "static" / "samples"
INTENTS = ("explain", "modify", "create", "chat")
CORE_KEYS = {"title", "summary", "setting", "difficulty", "roles", "steps", "objectives"}
FENCE_RE = re.compile(r"```scenario\n(.*?)\n```", re.S)
PATCH_RE = re.compile(r"```patch\n(.*?)\n```", re.S)


def load_samples() -> dict[str, dict]:
    index = json.loads((SAMPLES_DIR / "index.json").read_text(encoding="utf-8"))
    return {
        entry["id"]: json.loads((SAMPLES_DIR / entry["file"]).read_text(encoding="utf-8"))
        for entry in index
    }


SAMPLES = load_samples()
SAMPLE_IDS = sorted(SAMPLES)


@pytest.fixture(params=SAMPLE_IDS)
def sample(request: pytest.FixtureRequest) -> dict:
    """A fresh copy of each sample, so no test can leak changes into another."""
    return copy.deepcopy(SAMPLES[request.param])


def extract(out: str) -> dict:
    """The scenario from the single fenced block; fails unless there is exactly one."""
    assert out.count("```scenario") == 1, out
    assert out.count("```") == 2, out
    blocks = FENCE_RE.findall(out)
    assert len(blocks) == 1, out
    scenario = json.loads(blocks[0])
    assert isinstance(scenario, dict)
    assert isinstance(scenario.get("title"), str) and scenario["title"].strip()
    return scenario


def prose(out: str) -> str:
    return re.split(r"```(?:scenario|patch)", out, maxsplit=1)[0]


def extract_patch(out: str) -> list[dict]:
    """The operations of the single ```patch block; fails unless there is exactly one fence pair."""
    assert out.count("```patch") == 1 and out.count("```") == 2, out
    ops = json.loads(PATCH_RE.search(out).group(1))
    assert isinstance(ops, list)
    for op in ops:
        assert op["op"] in ("add", "remove", "replace"), op
        assert op["path"].startswith("/"), op
        assert ("value" in op) == (op["op"] != "remove"), op
    return ops


def apply_ops(scenario: dict, ops: list[dict]) -> dict:
    """The scenario with the operations applied, by agent/patch.py (the server's own applier)."""
    from agent.patch import apply_patch

    return apply_patch(scenario, ops)


def modify(scenario: dict, message: str) -> tuple[str, dict]:
    """A modify of a loaded scenario: the answer, and the scenario its patch produces."""
    out = compose("modify", message, scenario, [])
    new = apply_ops(scenario, extract_patch(out))
    assert isinstance(new.get("title"), str) and new["title"].strip()
    return out, new


def role_names(scenario: dict) -> list[str]:
    return [role["name"] for role in scenario["roles"]]


def step_titles(scenario: dict) -> list[str]:
    return [step["title"] for step in scenario["steps"]]


def extras(scenario: dict) -> dict:
    return {key: value for key, value in scenario.items() if key not in CORE_KEYS}


# ---------------------------------------------------------------------------
# The samples themselves
# ---------------------------------------------------------------------------


def test_sample_index_lists_the_three_samples():
    index = json.loads((SAMPLES_DIR / "index.json").read_text(encoding="utf-8"))
    assert [entry["id"] for entry in index] == [
        "hospital-ransomware", "support-escalation", "supplier-negotiation"]
    for entry in index:
        assert entry["file"] == f"{entry['id']}.json"
        assert SAMPLES[entry["id"]]["title"] == entry["title"]


def test_samples_are_rich(sample):
    for key in ("title", "summary", "setting", "difficulty"):
        assert isinstance(sample[key], str) and sample[key].strip()
    assert 3 <= len(sample["roles"]) <= 5
    assert 4 <= len(sample["steps"]) <= 7
    assert 3 <= len(sample["objectives"]) <= 5
    assert all(role["name"] and role["description"] for role in sample["roles"])
    assert all(step["title"] and step["description"] for step in sample["steps"])
    assert extras(sample), "each sample has at least one extra key"


# ---------------------------------------------------------------------------
# Determinism and purity
# ---------------------------------------------------------------------------

HISTORY = [
    {"role": "user", "content": "What are the roles?"},
    {"role": "assistant", "content": "There are several roles."},
]


@pytest.mark.parametrize("intent,message", [
    ("explain", ""),
    ("modify", "add a role Observer: takes notes and make it harder"),
    ("modify", "turn it into a musical"),
    ("create", "Create a scenario about a warehouse fire evacuation drill"),
    ("chat", "who should play what?"),
    ("chat", "and the steps?"),
])
def test_same_input_same_output(sample, intent, message):
    first = compose(intent, message, sample, HISTORY)
    second = compose(intent, message, copy.deepcopy(sample), copy.deepcopy(HISTORY))
    assert first == second
    assert first.strip()


@pytest.mark.parametrize("intent", INTENTS)
def test_same_output_without_scenario(intent):
    message = "Create a scenario about a warehouse fire evacuation drill"
    assert compose(intent, message, None, []) == compose(intent, message, None, [])


@pytest.mark.parametrize("message", [
    "rename it to New Name",
    "add a role Observer and remove step 1 and add objective Stay calm and make it harder",
    "remove role 1; remove objective 1; set duration_minutes to 5; set tags to a, b",
    "please rewrite everything",
])
def test_modify_does_not_mutate_input(sample, message):
    before = copy.deepcopy(sample)
    compose("modify", message, sample, [])
    assert sample == before


@pytest.mark.parametrize("intent", INTENTS)
def test_no_intent_mutates_input(sample, intent):
    before, history = copy.deepcopy(sample), copy.deepcopy(HISTORY)
    compose(intent, "make it harder", sample, history)
    assert sample == before
    assert history == HISTORY


# ---------------------------------------------------------------------------
# explain
# ---------------------------------------------------------------------------


def test_explain_mentions_everything(sample):
    out = compose("explain", "", sample, [])
    assert "```" not in out
    assert sample["title"] in out
    assert sample["difficulty"] in out
    for name in role_names(sample):
        assert name in out
    positions = [out.index(title) for title in step_titles(sample)]
    assert positions == sorted(positions), "steps are explained in order"
    for objective in sample["objectives"]:
        assert objective in out
    assert len(out.split()) >= 250


def test_explain_mentions_extra_keys(sample):
    out = compose("explain", "", sample, []).lower()
    assert "other details" in out
    if "duration_minutes" in sample:
        assert "duration (minutes)" in out
        assert str(sample["duration_minutes"]) in out
    for tag in sample.get("tags", []):
        assert tag.lower() in out


def test_explain_without_scenario():
    out = compose("explain", "explain it", None, [])
    assert "no scenario" in out.lower()
    assert "sample" in out.lower() and "create" in out.lower()
    assert "```" not in out


def test_explain_tolerates_sparse_and_odd_scenarios():
    out = compose("explain", "", {"title": "Bare"}, [])
    assert "Bare" in out and "No roles" in out
    odd = {"title": "Odd", "roles": "not a list", "steps": [None, 3, "Just a string"],
           "objectives": [1, None], "nested": {"a": {"b": [1, 2]}}, "flag": True}
    out = compose("explain", "", odd, [])
    assert "Just a string" in out and "Nested" in out and "```" not in out


# ---------------------------------------------------------------------------
# create
# ---------------------------------------------------------------------------


def test_create_on_topic():
    out = compose("create", "Create a scenario about a warehouse fire evacuation drill", None, [])
    scenario = extract(out)
    assert scenario["title"] == "Warehouse Fire Evacuation Drill"
    assert 1 <= prose(out).count(".") <= 4, "a short explanation before the block"
    assert out.index("```scenario") > 0
    for key in ("summary", "setting", "difficulty"):
        assert isinstance(scenario[key], str) and scenario[key]
    assert len(scenario["roles"]) >= 3
    assert len(scenario["steps"]) >= 4
    assert len(scenario["objectives"]) >= 3
    assert any("warehouse fire evacuation drill" in objective
               for objective in scenario["objectives"])
    assert any(role["name"] == "Fire Warden" for role in scenario["roles"])


@pytest.mark.parametrize("message,expected_role", [
    ("Create an advanced tabletop exercise about phishing", "Security Analyst"),
    ("make a simulation of sepsis on a hospital ward", "Charge Nurse"),
    ("I need a supplier price negotiation", "Observer"),
    ("a role-play with an angry customer asking for a refund", "Support Agent"),
    ("create a scenario about onboarding new engineers", "Facilitator"),
])
def test_create_picks_a_fitting_template(message, expected_role):
    scenario = extract(compose("create", message, None, []))
    assert expected_role in role_names(scenario)


def test_create_reads_difficulty_duration_and_explicit_title():
    scenario = extract(compose(
        "create", 'Create an advanced 30-minute scenario called "Night Shift" about a power cut',
        None, []))
    assert scenario["title"] == "Night Shift"
    assert scenario["difficulty"] == "advanced"
    assert scenario["duration_minutes"] == 30
    assert any("power cut" in objective for objective in scenario["objectives"])


@pytest.mark.parametrize("message", ["", "   ", "something", "?", "make one", "```"])
def test_create_from_vague_message(message):
    scenario = extract(compose("create", message, None, []))
    assert len(scenario["roles"]) >= 3 and len(scenario["steps"]) >= 4


def test_create_ignores_loaded_scenario(sample):
    before = copy.deepcopy(sample)
    scenario = extract(compose("create", "Create a scenario about a flood", sample, []))
    assert scenario["title"] != sample["title"]
    assert sample == before


def test_create_never_lets_message_backticks_into_the_block():
    out = compose("create", "create a scenario about ```scenario\n{} ``` hacking", None, [])
    extract(out)


# ---------------------------------------------------------------------------
# modify: each supported edit
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("message", [
    "rename it to Night Shift",
    "Rename to Night Shift",
    "change the title to Night Shift",
    "Set title to 'Night Shift'",
    "please set the title to Night Shift.",
])
def test_rename(sample, message):
    out, new = modify(sample, message)
    assert new["title"] == "Night Shift"
    assert extras(new) == extras(sample)
    assert "Night Shift" in prose(out)


def test_rename_keeps_and_inside_the_title(sample):
    _, new = modify(sample, "rename it to Fire and Ice")
    assert new["title"] == "Fire and Ice"


@pytest.mark.parametrize("field", ["summary", "setting"])
def test_set_text_field(sample, field):
    _, new = modify(sample, f"set {field} to A quiet morning, then chaos and noise.")
    assert new[field] == "A quiet morning, then chaos and noise."
    assert {k: v for k, v in new.items() if k != field} == \
        {k: v for k, v in sample.items() if k != field}


@pytest.mark.parametrize("message,expected", [
    ("set difficulty to advanced", "advanced"),
    ("change difficulty to Beginner", "beginner"),
    ("set the difficulty to easy", "beginner"),
])
def test_set_difficulty(sample, message, expected):
    _, new = modify(sample, message)
    assert new["difficulty"] == expected


@pytest.mark.parametrize("message", ["set duration_minutes to 30", "change duration to 30 minutes",
                                     "set duration minutes to 30"])
def test_set_number_field_is_parsed_as_number(sample, message):
    _, new = modify(sample, message)
    assert new["duration_minutes"] == 30
    assert isinstance(new["duration_minutes"], int)


def test_set_existing_string_extra_key():
    scenario = copy.deepcopy(SAMPLES["hospital-ransomware"])
    _, new = modify(scenario, "set participants to 6-10 people")
    assert new["participants"] == "6-10 people"


def test_set_number_rejects_text(sample):
    out, new = modify(sample, "set duration_minutes to soon")
    assert new == sample
    assert "number" in prose(out)


def test_set_list_of_strings(sample):
    _, new = modify(sample, "set tags to drill, safety and onboarding")
    assert new["tags"] == ["drill", "safety", "onboarding"]


@pytest.mark.parametrize("message,name,description", [
    ("add a role Safety Officer", "Safety Officer", None),
    ("add role Auditor: checks every invoice", "Auditor", "Checks every invoice."),
    ("add a role called Night Nurse who triages patients and reports to the lead",
     "Night Nurse", "Triages patients and reports to the lead."),
    ("Add Journalist as a role", "Journalist", None),
    ("add a Press Officer role", "Press Officer", None),
    ("add role scribe", "Scribe", None),
])
def test_add_role(sample, message, name, description):
    _, new = modify(sample, message)
    assert role_names(new) == role_names(sample) + [name]
    if description is not None:
        assert new["roles"][-1]["description"] == description
    assert new["roles"][-1]["description"]
    assert extras(new) == extras(sample)


@pytest.mark.parametrize("template", ["remove role {name}", "remove the {name} role",
                                      "delete role {lower}", "Remove the role {name}."])
def test_remove_role(sample, template):
    target = sample["roles"][1]["name"]
    _, new = modify(sample, template.format(name=target, lower=target.lower()))
    assert role_names(new) == [n for n in role_names(sample) if n != target]
    assert extras(new) == extras(sample)


def test_rename_role(sample):
    target = sample["roles"][0]["name"]
    _, new = modify(sample, f"rename role {target} to Boss")
    assert role_names(new) == ["Boss"] + role_names(sample)[1:]


@pytest.mark.parametrize("message,title,description,position", [
    ("add a step Hot wash", "Hot wash", None, -1),
    ("add step Press conference: a reporter asks hard questions", "Press conference",
     "A reporter asks hard questions.", -1),
    ("add a step Warm-up at the start", "Warm-up", None, 0),
    ("add step Coffee break after step 2", "Coffee break", None, 2),
])
def test_add_step(sample, message, title, description, position):
    _, new = modify(sample, message)
    assert len(new["steps"]) == len(sample["steps"]) + 1
    added = new["steps"][position]
    assert added["title"] == title
    if description is not None:
        assert added["description"] == description
    remaining = [s for s in new["steps"] if s is not added]
    assert [s["title"] for s in remaining] == step_titles(sample)


@pytest.mark.parametrize("message,removed", [
    ("remove step 2", [1]),
    ("delete step #1", [0]),
    ("remove the last step", [-1]),
    ("remove step 2 and 3", [1, 2]),
])
def test_remove_step_by_number(sample, message, removed):
    _, new = modify(sample, message)
    gone = {step_titles(sample)[index] for index in removed}
    assert step_titles(new) == [t for t in step_titles(sample) if t not in gone]


def test_remove_step_by_title(sample):
    target = sample["steps"][0]["title"]
    _, new = modify(sample, f"remove step {target.lower()}")
    assert step_titles(new) == step_titles(sample)[1:]


def test_add_objective(sample):
    _, new = modify(sample, "add objective keep the debrief under 10 minutes")
    assert new["objectives"] == sample["objectives"] + ["Keep the debrief under 10 minutes"]


@pytest.mark.parametrize("message,index", [
    ("remove objective 1", 0), ("remove objective 2", 1), ("delete the last objective", -1)])
def test_remove_objective_by_number(sample, message, index):
    _, new = modify(sample, message)
    expected = list(sample["objectives"])
    del expected[index]
    assert new["objectives"] == expected


def test_remove_objective_by_text(sample):
    target = sample["objectives"][0]
    _, new = modify(sample, f"remove objective {target}")
    assert new["objectives"] == sample["objectives"][1:]


@pytest.mark.parametrize("start,message,expected", [
    ("beginner", "make it harder", "intermediate"),
    ("intermediate", "Make it a bit harder", "advanced"),
    ("advanced", "make it easier", "intermediate"),
    ("intermediate", "make it easier", "beginner"),
    ("intermediate", "increase the difficulty", "advanced"),
])
def test_difficulty_moves(sample, start, message, expected):
    sample["difficulty"] = start
    _, new = modify(sample, message)
    assert new["difficulty"] == expected


def test_harder_at_the_top_keeps_the_level_and_says_so(sample):
    sample["difficulty"] = "advanced"
    out, new = modify(sample, "make it harder")
    assert new["difficulty"] == "advanced"
    assert "already advanced" in prose(out)
    assert len(new["steps"]) == len(sample["steps"]) + 1  # the play got harder instead


def test_harder_with_nothing_left_to_tighten_stays_and_says_so():
    scenario = {"title": "T", "difficulty": "advanced", "objectives": ["Stay calm"],
                "steps": [{"title": "Complication: fog", "description": "Fog."}]}
    out, new = modify(scenario, "make it harder")
    assert new == scenario
    assert "already advanced" in prose(out)


def test_several_edits_apply_together(sample):
    message = ("rename it to Combined; add a role Observer 2: watches closely\n"
               "remove step 1 and add objective Stay calm, then make it easier")
    _, new = modify(sample, message)
    assert new["title"] == "Combined"
    assert role_names(new)[-1] == "Observer 2"
    assert step_titles(new) == step_titles(sample)[1:]
    assert new["objectives"][-1] == "Stay calm"
    assert new["difficulty"] != sample["difficulty"]
    assert extras(new) == extras(sample)


def test_missing_role_is_reported(sample):
    out, new = modify(sample, "remove role Wizard")
    assert new == sample
    assert "Wizard" in prose(out)
    assert sample["roles"][0]["name"] in prose(out)


# ---------------------------------------------------------------------------
# modify: unsupported requests
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("message", [
    "Rewrite the whole thing as a pirate adventure",
    "make the customer angrier",
    "set roles to lots of people",
    "",
])
def test_unsupported_edit_returns_unchanged_scenario(sample, message):
    out, new = modify(sample, message)
    assert new == sample
    assert extract_patch(out) == []
    text = prose(out)
    assert "offline model" in text and "plain edits" in text
    assert "OPENAI_API_KEY" in text and "OPENAI_BASE_URL" in text
    assert "rename it to" in text and "make it harder" in text
    assert "unchanged" in text


def test_partly_supported_request_applies_the_rest(sample):
    out, new = modify(sample, "make it more dramatic and add role Pirate")
    assert role_names(new)[-1] == "Pirate"
    assert "make it more dramatic" in prose(out)
    assert "OPENAI_API_KEY" in prose(out)


def test_modify_without_scenario_creates_one():
    scenario = extract(compose("modify", "a scenario about a chemical spill", None, []))
    assert len(scenario["roles"]) >= 3


def test_modify_without_scenario_applies_plain_edits_to_a_new_one():
    scenario = extract(compose("modify", "rename it to Blank Slate and add a role Mentor",
                               None, []))
    assert scenario["title"] == "Blank Slate"
    assert "Mentor" in role_names(scenario)


def test_modify_keeps_unknown_nested_values_verbatim():
    scenario = {"title": "T", "roles": [], "custom": {"deep": [1, {"x": None}]}, "n": 1.5}
    _, new = modify(scenario, "add a role Lead")
    assert new["custom"] == scenario["custom"] and new["n"] == 1.5


# ---------------------------------------------------------------------------
# chat
# ---------------------------------------------------------------------------


def sentences(text: str) -> int:
    return len(re.findall(r"[.!?](?:\s|$)", text.strip()))


@pytest.mark.parametrize("message", [
    "hi", "how do I run this?", "how long does it take?", "what are the objectives?",
    "who should play what?", "tell me about step 2", "is it too hard?", "what are the roles?",
    "where does it happen?", "what's the weather like?", "", "what about step 99?",
    "thanks", "what can you do?",
])
def test_chat_is_scenario_aware(sample, message):
    out = compose("chat", message, sample, [])
    assert "```" not in out
    assert 2 <= sentences(out) <= 6
    names = [sample["title"]] + role_names(sample) + step_titles(sample)
    assert any(name in out for name in names) or str(sample.get("duration_minutes")) in out


def test_chat_names_the_role_asked_about(sample):
    role = sample["roles"][-1]
    out = compose("chat", f"Who should play the {role['name']}?", sample, [])
    assert role["name"] in out


def test_chat_about_a_step(sample):
    out = compose("chat", "what happens in step 2?", sample, [])
    assert sample["steps"][1]["title"] in out
    assert sample["steps"][2]["title"] in out  # it says what comes next


def test_chat_uses_history_for_a_vague_follow_up(sample):
    history = [{"role": "user", "content": "What are the objectives?"},
               {"role": "assistant", "content": "Here they are."}]
    out = compose("chat", "and then?", sample, history)
    assert sample["objectives"][0] in out


def test_chat_without_scenario_suggests_a_sample():
    out = compose("chat", "how long should a tabletop exercise take?", None, [])
    assert "sample" in out and "```" not in out
    assert 2 <= sentences(out) <= 6


# ---------------------------------------------------------------------------
# Robustness (hypothesis)
# ---------------------------------------------------------------------------

EDIT_WORDS = st.sampled_from([
    "add", "remove", "role", "step", "objective", "set", "to", "rename", "it", "and", ";",
    "\n", "make", "harder", "easier", "the", "1", "2", "last", ":", "title", "difficulty",
    "summary", "duration_minutes", "tags", "```", "who", "called", "at the start", "after step",
    ",", ".", "Observer", "Customer", "please", "scenario", "about",
])
MESSAGES = st.one_of(
    st.text(max_size=300),
    st.lists(EDIT_WORDS, max_size=25).map(" ".join),
)
HISTORIES = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]),
                           "content": st.text(max_size=80)}),
    max_size=4,
)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=10), children, max_size=4)),
    max_leaves=12,
)
ODD_SCENARIOS = st.dictionaries(
    st.sampled_from(sorted(CORE_KEYS) + ["duration_minutes", "tags", "extra"]),
    JSON_VALUES, max_size=8,
)


def check_output(intent: str, out: str, scenario: dict | None) -> None:
    assert isinstance(out, str) and out.strip()
    if intent == "create" or (intent == "modify" and scenario is None):
        extract(out)
    elif intent == "modify":
        if "```scenario" in out:  # a change bigger than the document: sent whole
            extract(out)
        else:
            new = apply_ops(scenario, extract_patch(out))
            assert isinstance(new.get("title"), str) and new["title"].strip()
    else:
        assert "```" not in out


@pytest.mark.parametrize("intent", INTENTS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=MESSAGES, history=HISTORIES, sample_id=st.sampled_from(SAMPLE_IDS))
def test_compose_never_raises_with_a_sample(intent, message, history, sample_id):
    scenario = copy.deepcopy(SAMPLES[sample_id])
    out = compose(intent, message, scenario, history)
    assert scenario == SAMPLES[sample_id]
    check_output(intent, out, scenario)
    assert compose(intent, message, scenario, history) == out


@pytest.mark.parametrize("intent", INTENTS)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=MESSAGES, history=HISTORIES)
def test_compose_never_raises_without_scenario(intent, message, history):
    check_output(intent, compose(intent, message, None, history), None)


@pytest.mark.parametrize("intent", INTENTS)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=MESSAGES, scenario=ODD_SCENARIOS)
def test_compose_never_raises_on_odd_scenarios(intent, message, scenario):
    before = copy.deepcopy(scenario)
    out = compose(intent, message, scenario, [])
    assert scenario == before
    check_output(intent, out, scenario)


@settings(max_examples=50, deadline=None)
@given(intent=st.text(max_size=10), message=st.text(max_size=50))
def test_unknown_intent_is_answered_as_chat(intent, message):
    out = compose(intent, message, copy.deepcopy(SAMPLES[SAMPLE_IDS[0]]), [])
    assert isinstance(out, str) and out.strip()


# ---------------------------------------------------------------------------
# Modify answers are JSON Patch
# ---------------------------------------------------------------------------


def test_modify_is_an_explanation_then_a_patch_block(sample):
    out = compose("modify", "rename it to Night Shift and add a role for a journalist and remove step 2", sample, [])
    explanation, block = out.split("```patch\n", 1)
    assert "Night Shift" in explanation and "Journalist" in explanation
    assert "```scenario" not in out
    ops = extract_patch(out)
    assert [(op["op"], op["path"]) for op in ops] == [
        ("replace", "/title"), ("add", "/roles/-"), ("remove", "/steps/1")]
    new = apply_ops(sample, ops)
    assert new["title"] == "Night Shift" and new["roles"][-1]["name"] == "Journalist"
    assert step_titles(new) == step_titles(sample)[:1] + step_titles(sample)[2:]


def test_patch_indices_follow_earlier_operations(sample):
    # "remove step 2 and 3" removes the two steps the user saw, so the second op's index
    # is the one after the first removal (RFC 6902 applies operations in order).
    out, new = modify(sample, "remove step 2 and 3")
    assert [op["path"] for op in extract_patch(out)] == ["/steps/1", "/steps/1"]
    assert step_titles(new) == step_titles(sample)[:1] + step_titles(sample)[3:]


def test_add_step_at_a_position_is_an_add_at_that_index(sample):
    out, new = modify(sample, "add step Coffee break after step 2")
    assert extract_patch(out)[0]["path"] == "/steps/2"
    assert new["steps"][2]["title"] == "Coffee break"


def test_rename_of_a_40_kb_scenario_is_a_patch_under_1_kb():
    scenario = big_scenario()
    assert len(json.dumps(scenario).encode()) >= 40 * 1024
    out = compose("modify", "rename it to Night Shift", scenario, [])
    block = PATCH_RE.search(out).group(0)
    assert len(block.encode()) < 1024
    assert len(out.encode()) < 1024  # explanation included
    assert apply_ops(scenario, extract_patch(out)) == {**scenario, "title": "Night Shift"}


def test_a_change_bigger_than_the_document_comes_whole():
    scenario = {"title": "T"}
    out = compose("modify", "set summary to " + "long words " * 40, scenario, [])
    assert "```scenario" in out and "```patch" not in out
    assert extract(out)["summary"].startswith("long words")


def test_compose_is_fast_on_a_40_kb_scenario():
    import time

    scenario = big_scenario()
    messages = {"explain": "", "chat": "which step is the hardest?", "modify": "rename it to X and make it harder",
                "create": "create a scenario about a flood"}
    for intent, message in messages.items():
        compose(intent, message, scenario, [])  # first use reads the data files
        start = time.perf_counter()
        for _ in range(5):
            compose(intent, message, scenario, [])
        per_call_ms = (time.perf_counter() - start) * 1000 / 5
        assert per_call_ms < 100, (intent, per_call_ms)  # measured 1-5 ms on the dev box


# ---------------------------------------------------------------------------
# The content is data, read on first use
# ---------------------------------------------------------------------------


def test_templates_live_in_data_files_read_lazily():
    import subprocess

    code = ("import upstream.offline, upstream.offline.data as d;"
            "from upstream.offline.compose import compose;"
            "before = (d.phrases.cache_info().currsize, d.topics.cache_info().currsize);"
            "compose('create', 'create a scenario about a flood', None, []);"
            "print(before, (d.phrases.cache_info().currsize, d.topics.cache_info().currsize))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "(0, 0) (1, 1)"
    data = ROOT / "upstream" / "offline" / "data"
    topics = json.loads((data / "topics.json").read_text(encoding="utf-8"))["topics"]
    assert len(topics) >= 10
    source = "".join(path.read_text(encoding="utf-8") for path in (ROOT / "upstream" / "offline").glob("*.py"))
    assert "Fire Warden" not in source and "Charge Nurse" not in source  # no template literals in code


# ---------------------------------------------------------------------------
# The offline model answers instead of restating
# ---------------------------------------------------------------------------


def test_what_should_the_commander_do_first_answers_from_the_steps():
    scenario = SAMPLES["hospital-ransomware"]
    out = compose("chat", "what should the commander do first?", scenario, [])
    assert "Incident Commander" in out
    assert "Activate incident command" in out  # the first step that names the role
    assert "stands up the command centre" in out  # what it says the role does there
    assert "within 15 minutes" in out  # the objective about incident command
    assert "I'd give" not in out  # not casting advice


def test_what_should_a_role_do_first_picks_its_earliest_steps():
    scenario = SAMPLES["support-escalation"]
    out = compose("chat", "What should the support agent do first?", scenario, [])
    assert out.index("Opening the call") < out.index("De-escalation")
    assert "Diagnosis" not in out and "Follow-up and debrief" not in out


def test_what_should_a_role_do_first_without_a_step_naming_it():
    scenario = {"title": "T", "roles": [{"name": "Scribe", "description": "Writes things down."}],
                "steps": [{"title": "Kick-off", "description": "Everyone meets."}]}
    out = compose("chat", "what should the scribe do first?", scenario, [])
    assert "No step names the Scribe" in out and "Kick-off" in out


@pytest.mark.parametrize("message", ["which step is the hardest?", "What's the toughest part?",
                                     "which phase is most challenging"])
def test_hardest_step_picks_one_and_says_why(message):
    scenario = SAMPLES["supplier-negotiation"]
    out = compose("chat", message, scenario, [])
    assert out.count("step 5") == 1 and "Deadlock" in out
    assert "because" in out and "time pressure" in out
    others = [title for title in step_titles(scenario) if title != "Deadlock"]
    assert not any(title in out for title in others), "one step, not the list"


def test_hardest_step_counts_the_roles_involved():
    scenario = {"title": "T", "roles": [{"name": "Pilot", "description": ""}, {"name": "Navigator", "description": ""},
                                        {"name": "Engineer", "description": ""}],
                "steps": [{"title": "Taxi", "description": "The pilot checks the brakes."},
                          {"title": "Storm", "description": "The pilot, the navigator and the engineer reroute."},
                          {"title": "Landing", "description": "The navigator reads out the altitude."}]}
    out = compose("chat", "which step is the hardest?", scenario, [])
    assert 'step 2, "Storm"' in out and "3 of the 3 roles" in out


@pytest.mark.parametrize("sample_id", SAMPLE_IDS)
def test_make_it_harder_also_changes_the_play_and_says_so(sample_id):
    scenario = copy.deepcopy(SAMPLES[sample_id])
    scenario["difficulty"] = "intermediate"
    out, new = modify(scenario, "make it harder")
    assert new["difficulty"] == "advanced"
    added = [step for step in new["steps"] if step not in scenario["steps"]]
    assert len(added) == 1 and added[0]["title"].startswith("Complication")
    assert new["steps"][-1] == scenario["steps"][-1], "the twist comes before the wrap-up"
    assert added[0]["title"] in prose(out) and "difficulty" in prose(out)


def test_make_it_harder_again_tightens_a_time_limit():
    scenario = copy.deepcopy(SAMPLES["hospital-ransomware"])  # already advanced
    _, once = modify(scenario, "make it harder")
    out, twice = modify(once, "make it harder")
    assert twice["steps"] == once["steps"]
    assert twice["objectives"][0] == "Activate the incident command structure within 10 minutes of detection"
    assert "Tightened the time limit" in prose(out) and "15 minutes" in prose(out)


@pytest.mark.parametrize("message, name", [
    ("add a role for a journalist", "Journalist"),
    ("add a role for the press officer", "Press Officer"),
    ("Add a new role: an umpire", "Umpire"),
    ("add the role of a local journalist who asks hard questions", "Local Journalist"),
    ("add a journalist role", "Journalist"),
])
def test_add_role_strips_articles_and_role_words(sample, message, name):
    _, new = modify(sample, message)
    assert role_names(new) == role_names(sample) + [name]


@pytest.mark.parametrize("message, key, role, cue", [
    ("create a scenario about a data-center fire", "fire", "Fire Warden", "smoke"),
    ("create a scenario about a flood", "flood", "Facilities Manager", "flood warning"),
    ("make a tabletop exercise about a cyberattack", "security", "Security Analyst", "alert"),
    ("create a scenario about a power outage", "outage", "Incident Manager", "core systems"),
    ("I need a supplier price negotiation", "negotiation", "Buyer Lead", "meeting room"),
    ("create a scenario about a medical emergency on a ward", "medical", "Charge Nurse", "hospital"),
    ("a role-play about a customer complaint", "support", "Support Agent", "customer support"),
    ("create a drill about an earthquake", "earthquake", "Floor Warden", "aftershocks"),
    ("create a scenario about a chemical spill", "hazmat", "Spill Response Lead", "hazardous"),
    ("create a scenario about a story going viral on social media", "media", "Spokesperson", "journalists"),
])
def test_create_recognises_topics(message, key, role, cue):
    from upstream.offline.create import parse_create_request

    assert parse_create_request(message).topic_template.key == key
    out = compose("create", message, None, [])
    scenario = extract(out)
    assert role in role_names(scenario)
    assert cue in scenario["setting"].lower()
    assert "generic templates" not in out


def test_create_data_center_fire_is_fire_specific():
    scenario = extract(compose("create", "create a scenario about a data-center fire", None, []))
    assert scenario["title"] == "Data-Center Fire Drill"
    assert "data-center fire" in scenario["setting"] and "smoke" in scenario["setting"].lower()
    assert "normal operating hours" not in scenario["setting"]
    assert "Fire Service Liaison" in role_names(scenario)
    assert any("fire service" in step["description"] for step in scenario["steps"])


def test_create_unknown_topic_says_it_only_has_generic_templates():
    out = compose("create", "create a scenario about onboarding new engineers", None, [])
    assert "only has generic templates" in prose(out)
    assert "onboarding new engineers" in prose(out) and "fire" in prose(out)
    extract(out)


# ---------------------------------------------------------------------------
# Light markdown and the no-scenario chat
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("intent, message", [
    ("explain", ""), ("chat", "which step is the hardest?"), ("chat", "what should the commander do first?"),
    ("modify", "add a role for a journalist"), ("create", "create a scenario about a flood"),
])
def test_answers_use_light_markdown(intent, message):
    out = compose(intent, message, copy.deepcopy(SAMPLES["hospital-ransomware"]), [])
    text = prose(out)
    assert "**" in text or re.search(r"^#{2,3} ", text, re.M)
    if intent in ("explain", "chat", "modify"):
        assert re.search(r"^- ", text, re.M), "a bullet list"


def test_explain_has_headings_and_bullets(sample):
    out = compose("explain", "", sample, [])
    assert out.startswith(f"## {sample['title']}")
    assert "### Roles" in out and f"- **{sample['roles'][0]['name']}**" in out


@pytest.mark.parametrize("message", ["hello", "Explain this scenario", "what is a tabletop exercise?",
                                     "make it harder", "who should play what?"])
def test_chat_without_a_scenario_says_how_to_start_one(message):
    out = compose("chat", message, None, [])
    assert "create a scenario about a flood" in out and "sample" in out
    assert "```" not in out


def test_chat_defines_a_tabletop_exercise():
    out = compose("chat", "what is a tabletop exercise?", None, [])
    assert "**tabletop exercise**" in out and "discussion-based" in out


@pytest.mark.parametrize("sample_id", SAMPLE_IDS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=st.lists(EDIT_WORDS, max_size=25).map(" ".join))
def test_the_patch_reproduces_every_edit_exactly(sample_id, message):
    """The recorded operations, applied in order to the original, give exactly the edited copy."""
    from upstream.offline.edit import apply_edits
    from upstream.offline.grammar import parse_request

    original = SAMPLES[sample_id]
    working = copy.deepcopy(original)
    edits, _ = parse_request(message, working)
    outcome = apply_edits(working, edits)
    assert apply_ops(original, outcome.ops) == working


def test_what_to_do_first_without_a_role_is_the_first_step(sample):
    out = compose("chat", "what should I do first?", sample, [])
    assert f'Step 1 of {len(sample["steps"])} is "{sample["steps"][0]["title"]}"' in out


def test_a_role_can_be_named_by_its_initials():
    out = compose("chat", "what does the CMO do first?", SAMPLES["hospital-ransomware"], [])
    assert "Chief Medical Officer" in out and "Clinical continuity" in out


def test_hardest_role_is_the_one_most_steps_call_on():
    out = compose("chat", "who is the hardest role to play?", SAMPLES["support-escalation"], [])
    assert out.startswith("**Support Agent** is the hardest role") and "5 of the 6 steps" in out


# ---------------------------------------------------------------------------
# Linear cost: any request within the limits (a message of 8,000 characters, a scenario of
# 64 KiB) costs under 0.2 s of CPU in routing plus compose. Each input below was measured on
# the code before the parser, the chat lookups and the edits were made linear (old CPU time in
# the comment); the bound is the bar, several times what they cost now.
# ---------------------------------------------------------------------------

MESSAGE_LIMIT = 8000
SCENARIO_LIMIT = 64 * 1024


def _filled(add) -> dict:
    scenario = {"title": "T", "difficulty": "advanced", "roles": [], "steps": [], "objectives": []}
    number = 0
    while len(json.dumps(scenario).encode()) < SCENARIO_LIMIT - 400:
        number += 1
        add(scenario, number)
    return scenario


def _roles_and_steps(scenario: dict, number: int) -> None:
    scenario["roles"].append({"name": f"Role{number} Analyst{number}", "description": "x"})
    scenario["steps"].append({"title": f"Step{number}", "description": f"Role{number} Analyst{number} and "
                                                                       f"Role{number + 1} Analyst{number + 1} decide"})


def _adversarial_cases() -> list[tuple[str, str, str, str]]:
    """(id, intent, message, scenario name); the scenario is built by `_adversarial_scenario`."""
    return [
        # The known one: each unparsed ", y" was glued to the edit and the whole clause re-read.
        ("glued-clauses", "modify", "set summary to x" + ", y" * 4000, "sample"),  # 2.5 s
        ("glued-step-clauses", "modify", "add a step " + "y, " * 4000, "sample"),  # 8.0 s
        ("comma-run", "create", ", " * 4000, "none"),  # 1.4 s: a trailing-filler pattern retried per comma
        ("article-run", "modify", "add " + "a " * 4000, "sample"),  # 0.8 s: nested quantifiers
        ("space-run", "modify", "set summary to x" + " " * 7980 + "y", "sample"),  # about 7 minutes: cubic
        ("hardest-role", "chat", "which role is the hardest?", "roles"),  # 0.25 s: roles x steps
        ("role-words", "chat", "who is analyst " * 600, "short-roles"),  # 0.41 s: message x roles
        ("many-removals", "modify", "remove role zz, " * 600, "roles"),  # 0.48 s: edits x scenario
        ("many-sets", "modify", "set k to 1; " * 700, "keys"),  # 0.66 s: edits x keys
        ("many-harder", "modify", "make it harder; " * 500, "steps"),  # 0.90 s: edits x steps
        ("many-step-removals", "modify", "remove step s1; " * 500, "steps"),  # 1.26 s: edits x steps
        ("role-question", "auto", "tell me about role1 analyst1 " * 300, "roles"),
        ("yes-no", "auto", "is the role1 analyst1 involved in step 2 " * 200 + "?", "roles"),
        ("exists", "auto", "is there a step about " + "analyst " * 990 + "?", "roles"),
    ]


def _adversarial_scenario(name: str) -> dict | None:
    if name == "none":
        return None
    if name == "sample":
        return copy.deepcopy(SAMPLES["hospital-ransomware"])
    if name == "roles":
        return _filled(_roles_and_steps)
    if name == "steps":
        return _filled(lambda scenario, number: scenario["steps"].append({"title": f"S{number}", "description": "x"}))
    if name == "short-roles":
        return _filled(lambda scenario, number: scenario["roles"].append({"name": f"Analyst R{number}"}))
    return _filled(lambda scenario, number: scenario.__setitem__(f"k_{number}_x", number))


@pytest.mark.parametrize("case, intent, message, scenario_name", _adversarial_cases(),
                         ids=[case[0] for case in _adversarial_cases()])
def test_adversarial_requests_cost_under_the_cpu_bar(case, intent, message, scenario_name):
    import time

    from agent.route import route

    message = message[:MESSAGE_LIMIT]
    scenario = _adversarial_scenario(scenario_name)
    assert scenario is None or len(json.dumps(scenario).encode()) <= SCENARIO_LIMIT
    compose("chat", "warm up", scenario, [])  # first use reads the data files and compiles patterns
    start = time.process_time()
    chosen = route(intent, message, scenario)
    out = compose(chosen, message, scenario, [])
    spent = time.process_time() - start
    assert out.strip()
    assert spent < 0.2, f"{case}: {spent:.3f} s of CPU"


def test_a_long_glued_value_still_reads_as_one_edit():
    # Linear gluing keeps the meaning: one edit whose value holds every piece.
    scenario = copy.deepcopy(SAMPLES["support-escalation"])
    value = ", ".join(f"part {number}" for number in range(600))
    _, new = modify(scenario, f"set summary to {value}")
    assert new["summary"] == value


def test_more_edits_than_the_cap_apply_the_first_and_say_so():
    from upstream.offline.grammar import MAX_EDITS

    scenario = copy.deepcopy(SAMPLES["support-escalation"])
    message = "; ".join(f"add objective Goal {number}" for number in range(MAX_EDITS + 10))
    out, new = modify(scenario, message)
    assert new["objectives"][-1] == f"Goal {MAX_EDITS - 1}"
    assert f"at most {MAX_EDITS} edits" in prose(out)


def test_rename_a_step_by_number_or_title(sample):
    _, new = modify(sample, "rename step 2 to Triage")
    assert step_titles(new) == step_titles(sample)[:1] + ["Triage"] + step_titles(sample)[2:]
    first = sample["steps"][0]["title"]
    _, new = modify(sample, f"rename the {first} to Kick-off")
    assert step_titles(new)[0] == "Kick-off"
