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
