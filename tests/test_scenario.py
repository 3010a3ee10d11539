"""Validating the model's scenario block, and the list of changes."""

import json

import pytest

from agent.scenario import InvalidScenario, depth, diff, parse_block, validate


def test_parse_block_accepts_a_scenario_and_keeps_unknown_keys():
    assert parse_block('{"title": "T", "x-custom": {"a": [1]}}\n') == {"title": "T", "x-custom": {"a": [1]}}


@pytest.mark.parametrize("text, reason", [
    ("", "no scenario block"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"summary": "no title"}', "no title"),
    ('{"title": "   "}', "no title"),
    ('{"title": 5}', "no title"),
    ('{"title": "t", "pad": "' + "x" * 70_000 + '"}', "larger than 64 KiB"),
])
def test_parse_block_rejects_with_a_reason(text, reason):
    with pytest.raises(InvalidScenario, match=reason):
        parse_block(text)


def test_depth_limit():
    nested: dict = {"title": "t"}
    node = nested
    for _ in range(40):
        node["child"] = {}
        node = node["child"]
    assert depth(nested) == 41
    with pytest.raises(InvalidScenario, match="deeper than 32"):
        validate(nested)


def test_diff_lists_added_removed_and_replaced_paths_in_document_order():
    old = {"title": "A", "roles": [{"name": "x", "description": "d"}], "objectives": ["o1", "o2"], "gone": 1}
    new = {"title": "B", "roles": [{"name": "x", "description": "d"}, {"name": "y"}], "objectives": ["o1"], "a/b": 2}
    assert diff(old, new) == [
        {"op": "remove", "path": "/gone"},
        {"op": "replace", "path": "/title"},
        {"op": "add", "path": "/roles/1"},
        {"op": "remove", "path": "/objectives/1"},
        {"op": "add", "path": "/a~1b"},
    ]


def test_diff_of_equal_documents_is_empty():
    doc = {"title": "T", "steps": [{"title": "s", "description": "d"}]}
    assert diff(doc, json.loads(json.dumps(doc))) == []


def test_diff_sees_type_changes():
    assert diff({"n": 1}, {"n": "1"}) == [{"op": "replace", "path": "/n"}]
    assert diff({"n": 1}, {"n": True}) == [{"op": "replace", "path": "/n"}]


# --- picking the block ------------------------------------------------------------

from pathlib import Path  # noqa: E402

import jsonschema  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from agent.scenario import (  # noqa: E402
    described_diff,
    describe_change,
    pick_block,
    requested_removals,
    validate_created,
    validate_modified,
)
from agent.splitter import Block, Splitter  # noqa: E402


def blocks(answer: str) -> list[Block]:
    splitter = Splitter()
    splitter.feed(answer)
    splitter.flush()
    return splitter.blocks


@pytest.mark.parametrize("answer", [
    '```scenario\n{"title": "T"}\n```',
    'Here it is:\n```json\n{"title": "T"}\n```\nDone.',
    '```\n{"title": "T"}\n```',
    '```JSON\n{"title": "T"}',  # the closing fence never came: still a complete object
    '```python\nprint(1)\n```\nand\n```json\n{"title": "T"}\n```',  # the first block that parses
    '```json\n[1, 2]\n```\n```scenario\n{"title": "T"}\n```',
])
def test_pick_block_takes_the_first_fenced_json_object(answer):
    assert pick_block(blocks(answer)) == {"title": "T"}


@pytest.mark.parametrize("answer, reason", [
    ("no fence at all", "no scenario block"),
    ('```patch\n{"title": "T"}\n```', "no scenario block"),  # a patch is not a scenario
    ('```json\n{"title": "T", \n```', "not valid JSON"),
    ('```json\n{"title": "cut off', "not valid JSON"),
    ('```json\n{"title": "T"}\nand then some prose', "Extra data"),
])
def test_pick_block_refuses_with_the_first_blocks_reason(answer, reason):
    with pytest.raises(InvalidScenario, match=reason):
        pick_block(blocks(answer))


def test_pick_block_refuses_an_overflowed_block():
    with pytest.raises(InvalidScenario, match="larger than 64 KiB"):
        pick_block(blocks("```json\n{\"title\": \"" + "x" * 70_000 + "\"}\n```"))


# --- the schema of known fields ---------------------------------------------------

SCHEMA = json.loads((Path(__file__).parent.parent / "docs" / "scenario.schema.json").read_text())
GOOD = {
    "title": "Harbor Drill", "summary": "s", "setting": "a port", "difficulty": "hard",
    "roles": [{"name": "Commander", "description": "leads"}, {"name": "Scribe"}],
    "steps": [{"title": "Alarm", "description": "it rings", "minutes": 5}],
    "objectives": ["keep calm"], "x-custom": {"any": [1, None]},
}
BAD = [
    ({**GOOD, "title": ""}, "no title"),
    ({k: v for k, v in GOOD.items() if k != "title"}, "no title"),
    ({**GOOD, "summary": {"text": "s"}}, "summary must be a string, not a JSON object"),
    ({**GOOD, "difficulty": 3}, "difficulty must be a string"),
    ({**GOOD, "roles": {"name": "x"}}, "roles must be a list of objects"),
    ({**GOOD, "roles": ["Commander"]}, "role 1 must be an object"),
    ({**GOOD, "roles": [{"name": "a"}, {"description": "no name"}]}, 'role 2 needs a string "name"'),
    ({**GOOD, "steps": [{"title": 1}]}, 'step 1 needs a string "title"'),
    ({**GOOD, "steps": [{"title": "t", "description": ["x"]}]}, '"description" must be a string'),
    ({**GOOD, "objectives": "all of them"}, "objectives must be a list of strings"),
    ({**GOOD, "objectives": ["a", 2]}, "objective 2 must be a string"),
]


def test_the_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def schema_accepts(value) -> bool:
    return jsonschema.Draft202012Validator(SCHEMA).is_valid(value)


def validator_accepts(value) -> bool:
    try:
        validate_created(value)
    except InvalidScenario:
        return False
    return True


def test_validate_created_accepts_the_schemas_example():
    assert validate_created(GOOD) is GOOD
    assert schema_accepts(GOOD)


@pytest.mark.parametrize("value, reason", BAD)
def test_validate_created_and_the_schema_refuse_the_same_values(value, reason):
    with pytest.raises(InvalidScenario, match=reason):
        validate_created(value)
    assert not schema_accepts(value)


JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(" a", max_size=3))
JSON_VALUE = st.recursive(JSON_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["name", "title", "description", "x"]), inner, max_size=3)
), max_leaves=8)
ITEM = st.one_of(JSON_VALUE, st.fixed_dictionaries({}, optional={
    "name": st.one_of(st.text(max_size=3), JSON_LEAF), "title": st.one_of(st.text(max_size=3), JSON_LEAF),
    "description": st.one_of(st.text(max_size=3), JSON_LEAF), "x": JSON_VALUE,
}))
FIELD = {
    "title": st.one_of(st.text(" \tab", max_size=3), JSON_LEAF),
    "summary": st.one_of(st.text(max_size=3), JSON_VALUE), "setting": JSON_VALUE, "difficulty": JSON_VALUE,
    "roles": st.one_of(st.lists(ITEM, max_size=3), JSON_VALUE), "steps": st.one_of(st.lists(ITEM, max_size=3), JSON_VALUE),
    "objectives": st.one_of(st.lists(st.one_of(st.text(max_size=3), JSON_LEAF), max_size=3), JSON_VALUE),
    "other": JSON_VALUE,
}


@given(st.fixed_dictionaries({}, optional=FIELD))
@settings(max_examples=400, deadline=None)
def test_the_schema_and_the_validator_agree_on_generated_scenarios(value):
    assert schema_accepts(value) == validator_accepts(value), value


# --- modify: nothing dropped or retyped unless asked ------------------------------

USER = {"title": "Harbor", "summary": "a drill", "setting": "port", "roles": [{"name": "A", "description": "d"}],
        "steps": [{"title": "s", "description": "d"}], "objectives": ["o"], "custom": 3}


def test_validate_modified_accepts_an_edit_that_keeps_everything():
    new = {**USER, "title": "Blue Harbor", "roles": [*USER["roles"], {"name": "Journalist", "description": "asks"}]}
    assert validate_modified(USER, new, set()) is new


def test_validate_modified_refuses_the_small_models_answer_naming_the_keys():
    # What a real small model returned: roles, steps and setting gone, summary an object.
    new = {"title": "Harbor", "summary": {"text": "a drill"}, "objectives": ["o"], "custom": 3}
    with pytest.raises(InvalidScenario) as caught:
        validate_modified(USER, new, set())
    assert str(caught.value) == 'it dropped "setting", "roles" and "steps", which the request did not ask to remove'
    with pytest.raises(InvalidScenario, match=r"changed the type of summary \(string → object\)"):
        validate_modified(USER, {**USER, "summary": {"text": "a drill"}}, set())


def test_validate_modified_allows_the_removals_the_user_asked_for():
    new = {k: v for k, v in USER.items() if k not in ("objectives", "setting")}
    assert validate_modified(USER, new, {"objectives", "setting"}) is new
    with pytest.raises(InvalidScenario, match='dropped "setting"'):
        validate_modified(USER, new, {"objectives"})


def test_validate_modified_keeps_known_fields_in_shape():
    with pytest.raises(InvalidScenario, match='role 2 needs a string "name"'):
        validate_modified(USER, {**USER, "roles": [*USER["roles"], {"title": "x"}]}, set())
    with pytest.raises(InvalidScenario, match="objective 1 must be a string"):
        validate_modified({"title": "t"}, {"title": "t", "objectives": [{"o": 1}]}, set())  # a new field follows the schema


def test_an_imported_scenario_in_other_shapes_stays_editable():
    imported = {"title": "Old", "steps": ["Alarm", "Muster"], "roles": "everyone", "difficulty": 3}
    edited = {"title": "Old", "steps": ["Alarm", "Muster", "Debrief"], "roles": "everyone, plus a journalist", "difficulty": 4}
    assert validate_modified(imported, edited, set()) is edited
    with pytest.raises(InvalidScenario, match=r"steps \(array → string\)"):
        validate_modified(imported, {**edited, "steps": "Alarm, Muster"}, set())


def test_validate_modified_still_bounds_the_result():
    with pytest.raises(InvalidScenario, match="not a JSON object"):
        validate_modified(USER, [USER], set())
    with pytest.raises(InvalidScenario, match="larger than 64 KiB"):
        validate_modified(USER, {**USER, "custom": "x" * 70_000}, set())


@pytest.mark.parametrize("message, removed", [
    ("remove the objectives", {"objectives"}),
    ("Drop the setting.", {"setting"}),
    ("delete difficulty", {"difficulty"}),
    ("please get rid of the summary and the setting", {"summary", "setting"}),
    ("remove the setting, summary and objectives from the scenario", {"setting", "summary", "objectives"}),
    ("rewrite it without the roles", {"roles"}),
    ("remove the custom field", {"custom"}),
    ("remove step 4", set()),
    ("remove the Journalist role", set()),
    ("remove the title from step 3", set()),
    ("remove the description of role 2", set()),
    ("keep the setting but remove the objectives", {"objectives"}),
    ("rename the title to Blue", set()),
    ("add a step about the setting", set()),
])
def test_requested_removals(message, removed):
    scenario = {**USER, "difficulty": "hard"}
    assert requested_removals(message, scenario) == removed


def test_requested_removals_only_names_keys_the_scenario_has():
    assert requested_removals("remove the objectives", {"title": "t"}) == set()
    assert requested_removals("remove the objectives", None) == set()


# --- changes in words ---------------------------------------------------------------

def test_described_diff_puts_words_into_each_change():
    old = {"title": "A", "difficulty": "easy", "setting": "port",
           "roles": [{"name": "Commander"}], "steps": [{"title": f"s{i}"} for i in range(4)], "objectives": ["a"]}
    new = {"title": "B", "difficulty": "hard",
           "roles": [{"name": "Commander"}, {"name": "Journalist"}], "steps": [{"title": f"s{i}"} for i in range(3)],
           "objectives": ["a", "b"], "summary": "new"}
    assert described_diff(old, new) == [
        {"op": "remove", "path": "/setting", "text": "removed the setting"},
        {"op": "replace", "path": "/title", "text": "renamed the title"},
        {"op": "replace", "path": "/difficulty", "text": "changed the difficulty to hard"},
        {"op": "add", "path": "/roles/1", "text": "added role Journalist"},
        {"op": "remove", "path": "/steps/3", "text": "removed step 4"},
        {"op": "add", "path": "/objectives/1", "text": "added objective b"},
        {"op": "add", "path": "/summary", "text": "added the summary"},
    ]


def test_describe_change_for_nested_and_created_values():
    old = {"title": "A", "roles": [{"name": "Commander", "description": "x"}], "steps": [{"title": "s"}]}
    new = {"title": "A", "roles": [{"name": "Captain", "description": "y"}], "steps": [{"title": "s", "description": "d"}]}
    assert [c["text"] for c in described_diff(old, new)] == [
        "renamed role Commander to Captain",
        "changed the description of role Commander",
        "added a description to step 1",
    ]
    assert describe_change({"op": "replace", "path": ""}, None, {"title": "t"}) == "created the scenario"
    assert describe_change({"op": "replace", "path": "/x~1y/0"}, {"x/y": [1]}, {"x/y": [2]}) == "changed x/y/0"


def test_a_scenario_imported_without_a_title_can_be_modified_without_one():
    imported = {"name": "Old drill", "steps": ["a"]}
    assert validate_modified(imported, {"name": "New drill", "steps": ["a", "b"]}, set())
    with pytest.raises(InvalidScenario, match="title must be a non-empty string"):
        validate_modified(imported, {**imported, "title": " "}, set())  # an added known field follows the schema
