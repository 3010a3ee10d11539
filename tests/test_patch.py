"""JSON Patch: reading the operations as they stream, applying them, and their words."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.patch import (
    OperationReader,
    PatchError,
    PatchSyntaxError,
    apply_operation,
    apply_patch,
    describe_operation,
)

PATCH = """Here you go
[
  {"op": "replace", "path": "/title", "value": "Blue \\"Harbor\\" }] {["},
  {"op": "add", "path": "/roles/-", "value": {"name": "Journalist", "description": "asks [hard] {questions}"}},
  {"op": "remove", "path": "/steps/3"}
]
"""
OPS = [
    {"op": "replace", "path": "/title", "value": 'Blue "Harbor" }] {['},
    {"op": "add", "path": "/roles/-", "value": {"name": "Journalist", "description": "asks [hard] {questions}"}},
    {"op": "remove", "path": "/steps/3"},
]


def read(chunks: list[str]) -> list[list[dict]]:
    """The operations each chunk completed."""
    reader = OperationReader()
    batches = [reader.feed(chunk) for chunk in chunks]
    reader.close()
    return batches


def test_each_operation_arrives_the_moment_its_closing_brace_does():
    reader = OperationReader()
    first_end = PATCH.index("},\n") + 1
    assert reader.feed(PATCH[: first_end - 1]) == []
    assert reader.feed(PATCH[first_end - 1: first_end]) == [OPS[0]]
    assert reader.feed(PATCH[first_end:]) == OPS[1:]
    assert reader.done
    reader.close()


def chunkings(text: str):
    return st.lists(st.integers(0, len(text)), max_size=40).map(
        lambda cuts: [text[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(text)])]
    )


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_any_chunking_gives_the_same_operations(data):
    chunks = data.draw(chunkings(PATCH))
    assert sum(read(chunks), []) == OPS


def outcome(chunks: list[str]):
    reader = OperationReader()
    ops = []
    try:
        for chunk in chunks:
            ops += reader.feed(chunk)
        reader.close()
    except PatchSyntaxError as exc:
        return ops + exc.operations, (exc.reason, exc.line, exc.column)
    return ops, None


BROKEN = [
    '[{"op": "remove", "path": "/a"}\n {"op": "remove", "path": "/b"}]',
    '[{"op": "remove", "path": "/a"},\n  {"op": remove}]',
    '[{"op": "remove", "path": "/a"}, 7]',
    '[{"op": "add", "path": "/a", "value": [1, 2}]',
    '[{"op": "remove", "path": "/a"}',
    '[{"op": "remove", "path": "/a"}] and more',
    'x\n  {"op": "remove"}',
]


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_any_chunking_gives_the_same_error_at_the_same_place(data):
    text = data.draw(st.sampled_from(BROKEN))
    assert outcome(data.draw(chunkings(text))) == outcome([text])


@pytest.mark.parametrize("text, ops, error", [
    (BROKEN[0], 1, ("expected ',' or ']' after operation 1, found '{'", 2, 2)),
    (BROKEN[1], 1, ("operation 2: not valid JSON: Expecting value", 2, 10)),
    (BROKEN[2], 1, ("operation 2 is not a JSON object (found '7')", 1, 34)),
    (BROKEN[3], 0, ("'}' does not match '['", 1, 44)),
    (BROKEN[4], 1, ("the patch ended before its closing ']'", 1, 32)),
    (BROKEN[5], 1, ("there is text after the end of the array", 1, 34)),
    (BROKEN[6], 0, ("expected '[' to start the array of operations, found '{'", 2, 3)),
    ("", 0, ("the block holds no '[' (a patch is a JSON array of operations)", 1, 1)),
    ('[{"op": "add"', 0, ("operation 1 ended before its closing '}'", 1, 14)),
    ("[{}, ]", 1, ("expected an operation after ',', found ']'", 1, 6)),
])
def test_syntax_errors_name_the_line_and_column(text, ops, error):
    got_ops, got_error = outcome([text])
    assert (len(got_ops), got_error) == (ops, error)


def test_the_error_message_reads_well():
    with pytest.raises(PatchSyntaxError) as caught:
        OperationReader().feed(BROKEN[0])
    assert str(caught.value) == (
        "the patch is not a JSON array of operations: expected ',' or ']' after operation 1, found '{' (line 2, column 2)"
    )


def test_the_reader_is_linear_in_the_text():
    import time

    op = '{"op": "add", "path": "/objectives/-", "value": "' + 'x\\"[{' * 20 + '"},'
    text = "[" + op * 500 + '{"op": "remove", "path": "/x"}]'
    started = time.perf_counter()
    reader = OperationReader(max_bytes=10**7)
    count = sum(len(reader.feed(text[i: i + 4])) for i in range(0, len(text), 4))
    assert count == 501 and time.perf_counter() - started < 2.0


def test_the_reader_is_bounded():
    reader = OperationReader()
    reader.feed('[{"op": "add", "path": "/x", "value": "')
    with pytest.raises(PatchSyntaxError, match="larger than 64 KiB"):
        for _ in range(100):
            reader.feed("x" * 1000)
    with pytest.raises(PatchSyntaxError, match="larger than 64 KiB"):
        reader.close()  # spent: the same error again
    with pytest.raises(PatchSyntaxError, match="nested deeper than 32 levels"):
        OperationReader().feed('[{"v": ' + "[" * 40)


# --- applying -----------------------------------------------------------------------

DOC = {
    "title": "Harbor",
    "roles": [{"name": "Commander", "description": "leads"}],
    "steps": [{"title": f"Step {i}", "description": "d"} for i in range(5)],
    "a/b": {"m~n": 1},
    "objectives": ["calm"],
}


def test_apply_patch_applies_the_three_operations_and_leaves_the_caller_alone():
    before = json.dumps(DOC)
    ops = [
        {"op": "replace", "path": "/title", "value": "Blue Harbor"},
        {"op": "add", "path": "/roles/-", "value": {"name": "Journalist", "description": "asks"}},
        {"op": "remove", "path": "/steps/3"},
    ]
    result = apply_patch(DOC, ops)
    assert json.dumps(DOC) == before
    assert result == {
        **DOC,
        "title": "Blue Harbor",
        "roles": [*DOC["roles"], {"name": "Journalist", "description": "asks"}],
        "steps": [DOC["steps"][i] for i in (0, 1, 2, 4)],
    }
    result["roles"][1]["name"] = "changed"
    assert ops[1]["value"]["name"] == "Journalist"  # values are copied in, not shared


@pytest.mark.parametrize("op, check", [
    ({"op": "add", "path": "/steps/0", "value": {"title": "First"}}, lambda d: d["steps"][0] == {"title": "First"} and len(d["steps"]) == 6),
    ({"op": "add", "path": "/steps/5", "value": {"title": "Last"}}, lambda d: d["steps"][5] == {"title": "Last"}),
    ({"op": "add", "path": "/setting", "value": "port"}, lambda d: d["setting"] == "port"),
    ({"op": "add", "path": "/title", "value": "X"}, lambda d: d["title"] == "X"),  # add on a member replaces it
    ({"op": "replace", "path": "/steps/4/title", "value": "End"}, lambda d: d["steps"][4]["title"] == "End"),
    ({"op": "replace", "path": "/a~1b/m~0n", "value": 2}, lambda d: d["a/b"] == {"m~n": 2}),
    ({"op": "remove", "path": "/objectives/0"}, lambda d: d["objectives"] == []),
    ({"op": "move", "from": "/steps/0", "path": "/steps/-"}, lambda d: d["steps"][-1]["title"] == "Step 0" and len(d["steps"]) == 5),
    ({"op": "move", "from": "/steps/4", "path": "/steps/0"}, lambda d: [s["title"][-1] for s in d["steps"]] == list("40123")),
    ({"op": "move", "from": "/title", "path": "/name"}, lambda d: "title" not in d and d["name"] == "Harbor"),
    ({"op": "move", "from": "/steps", "path": "/steps"}, lambda d: len(d["steps"]) == 5),
    ({"op": "copy", "from": "/roles/0", "path": "/roles/-"}, lambda d: d["roles"][1] == d["roles"][0] and d["roles"][1] is not d["roles"][0]),
    ({"op": "test", "path": "/objectives", "value": ["calm"]}, lambda d: d == DOC),
    ({"op": "test", "path": "/a~1b/m~0n", "value": 1.0}, lambda d: d == DOC),
    ({"op": "replace", "path": "", "value": {"title": "New"}}, lambda d: d == {"title": "New"}),
])
def test_each_operation(op, check):
    assert check(apply_patch(DOC, [op]))


@pytest.mark.parametrize("ops, message", [
    ([{"op": "test", "path": "/title", "value": "Harbor"}, {"op": "replace", "path": "/steps/9/title", "value": "x"}],
     "operation 2 (replace /steps/9/title): index 9 is out of range (the list has 5 items)"),
    ([{"op": "add", "path": "/steps/7", "value": {}}],
     "operation 1 (add /steps/7): index 7 is out of range (the list has 5 items; an add may use 0 to 5 or -)"),
    ([{"op": "remove", "path": "/steps/-"}],
     "operation 1 (remove /steps/-): '-' (the end of the list /steps) names no existing item"),
    ([{"op": "remove", "path": "/steps/01"}], "operation 1 (remove /steps/01): '01' is not a list index (/steps is a list)"),
    ([{"op": "remove", "path": "/steps/" + "9" * 5000}], "is not a list index"),
    ([{"op": "replace", "path": "/setting", "value": "x"}],
     'operation 1 (replace /setting): the document has no member "setting" to replace (use add)'),
    ([{"op": "remove", "path": "/roles/0/age"}], 'operation 1 (remove /roles/0/age): /roles/0 has no member "age"'),
    ([{"op": "add", "path": "/title/x", "value": 1}], "operation 1 (add /title/x): /title is a string, not an object or a list"),
    ([{"op": "add", "path": "/nope/x", "value": 1}], 'operation 1 (add /nope/x): the document has no member "nope"'),
    ([{"op": "test", "path": "/title", "value": "Other"}], 'operation 1 (test /title): the value at /title is "Harbor", not "Other"'),
    ([{"op": "test", "path": "/a~1b/m~0n", "value": True}], "the value at /a~1b/m~0n is 1, not True"),
    ([{"op": "move", "from": "/roles", "path": "/roles/0/sub"}],
     "operation 1 (move /roles/0/sub): /roles cannot be moved into its own child /roles/0/sub"),
    ([{"op": "move", "from": "/missing", "path": "/x"}], 'operation 1 (move /x): the document has no member "missing"'),
    ([{"op": "copy", "path": "/x"}], 'operation 1 (copy /x): a copy needs a "from" string'),
    ([{"op": "add", "path": "/x"}], 'operation 1 (add /x): a add needs a "value"'),
    ([{"op": "rename", "path": "/x"}], "operation 1 (/x): \"op\" is 'rename': use add, remove, replace, move, copy or test"),
    ([{"path": "/x"}], 'operation 1 (/x): "op" is missing'),
    ([{"op": "remove"}], 'operation 1 (remove): it has no "path" string'),
    ([{"op": "remove", "path": "title"}], "operation 1 (remove title): \"path\" a path must start with '/'"),
    ([{"op": "remove", "path": "/a~2b"}], "'~' must be followed by 0 or 1"),
    ([{"op": "remove", "path": ""}], "operation 1 (remove ): the whole document cannot be removed"),
    (["remove /x"], "operation 1: an operation must be a JSON object, not a JSON string"),
])
def test_failing_operations_say_which_where_and_why(ops, message):
    before = json.dumps(DOC)
    with pytest.raises(PatchError) as caught:
        apply_patch(DOC, ops)
    assert message in str(caught.value)
    assert caught.value.index == len(ops) - 1
    assert json.dumps(DOC) == before  # atomic: the caller's document is untouched


def test_apply_operation_works_in_place_on_a_working_copy():
    working = json.loads(json.dumps(DOC))
    assert apply_operation(working, {"op": "remove", "path": "/objectives"}, 0) is working
    assert "objectives" not in working


# --- words ------------------------------------------------------------------------


@pytest.mark.parametrize("op, words", [
    ({"op": "replace", "path": "/title", "value": "Blue"}, "renamed the title"),
    ({"op": "add", "path": "/roles/-", "value": {"name": "Journalist"}}, "added role Journalist"),
    ({"op": "remove", "path": "/steps/3"}, "removed step 4"),
    ({"op": "remove", "path": "/roles/0"}, "removed role Commander"),
    ({"op": "add", "path": "/difficulty", "value": "hard"}, "added the difficulty"),
    ({"op": "replace", "path": "/roles/0/name", "value": "Captain"}, "renamed role Commander to Captain"),
    ({"op": "replace", "path": "/steps/1/title", "value": "Muster"}, "renamed step 2 to Muster"),
    ({"op": "replace", "path": "/steps/1/description", "value": "x"}, "changed the description of step 2"),
    ({"op": "add", "path": "/steps/-", "value": {"title": "Debrief"}}, "added step Debrief"),
    ({"op": "add", "path": "/objectives/-", "value": "stay safe"}, "added objective stay safe"),
    ({"op": "remove", "path": "/objectives"}, "removed the objectives"),
    ({"op": "move", "from": "/steps/4", "path": "/steps/0"}, "moved step 5 to position 1"),
    ({"op": "copy", "from": "/roles/0", "path": "/roles/-"}, "copied role Commander to the end"),
    ({"op": "test", "path": "/title", "value": "Harbor"}, "checked the title"),
    ({"op": "replace", "path": "/a~1b/m~0n", "value": 2}, "changed a/b/m~n"),
])
def test_describe_operation(op, words):
    assert describe_operation(op, DOC) == words


def test_describe_operation_of_a_difficulty_change():
    assert describe_operation({"op": "replace", "path": "/difficulty", "value": "hard"}, {"difficulty": "easy"}) == "changed the difficulty to hard"


@given(st.text(alphabet='[]{}",:\\ \nab1', max_size=50), st.data())
@settings(max_examples=500, deadline=None)
def test_any_chunking_of_any_text_gives_the_same_operations_and_error(text, data):
    assert outcome(data.draw(chunkings(text))) == outcome([text])


# --- one streamed patch -------------------------------------------------------------

from agent.patch import PatchPreview  # noqa: E402
from agent.scenario import InvalidScenario  # noqa: E402


def test_patch_preview_applies_each_operation_as_it_arrives_then_validates_the_result():
    preview = PatchPreview(DOC)
    applied = []
    for index in range(0, len(PATCH), 5):
        applied += preview.feed(PATCH[index: index + 5])
    scenario, changes = preview.finish()
    assert applied == list(enumerate(OPS))
    assert scenario == apply_patch(DOC, [op for _, op in applied])
    assert changes == [
        {"op": "replace", "path": "/title", "text": "renamed the title"},
        {"op": "add", "path": "/roles/-", "text": "added role Journalist"},
        {"op": "remove", "path": "/steps/3", "text": "removed step 4"},
    ]
    assert DOC["title"] == "Harbor" and len(DOC["steps"]) == 5


def test_patch_preview_refuses_a_failing_operation_a_dropped_key_and_an_unclosed_array():
    preview = PatchPreview(DOC)
    with pytest.raises(PatchError, match=r"operation 2 \(replace /steps/9/title\): index 9 is out of range"):
        preview.feed('[{"op": "test", "path": "/title", "value": "Harbor"}, {"op": "replace", "path": "/steps/9/title", "value": "x"}]')

    preview = PatchPreview(DOC)
    preview.feed('[{"op": "remove", "path": "/objectives"}]')
    with pytest.raises(InvalidScenario, match='dropped "objectives"'):
        preview.finish()
    allowed = PatchPreview(DOC)
    allowed.feed('[{"op": "remove", "path": "/objectives"}]')
    assert "objectives" not in allowed.finish({"objectives"})[0]

    preview = PatchPreview(DOC)
    preview.feed('[{"op": "remove", "path": "/objectives"}')
    with pytest.raises(PatchSyntaxError, match="ended before its closing"):
        preview.finish({"objectives"})


def test_an_empty_patch_changes_nothing():
    preview = PatchPreview(DOC)
    preview.feed("[]")
    assert preview.finish() == (DOC, [])


# --- the prompt's example is never an answer ------------------------------------------------

def test_the_prompts_example_cannot_apply_to_any_scenario_as_it_stands():
    from pathlib import Path

    from agent.intents import INTENTS
    from agent.patch import EXAMPLE_PATCH_OPS

    system = INTENTS["modify"].system_prompt
    shown = system.split("```patch\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(shown) == list(EXAMPLE_PATCH_OPS)  # the prompt shows the constant
    samples = sorted(p for p in Path(__file__).resolve().parents[1].glob("static/samples/*.json") if p.name != "index.json")
    assert samples
    for sample in [*samples, None]:
        scenario = json.loads(sample.read_text()) if sample else DOC
        with pytest.raises(PatchError, match=r"operation 1 \(test /title\): the value at /title is"):
            apply_patch(scenario, list(EXAMPLE_PATCH_OPS))


def test_an_answer_that_is_the_prompts_example_is_refused_saying_so():
    from agent.patch import EXAMPLE_PATCH_OPS, EXAMPLE_REASON

    text = json.dumps(list(EXAMPLE_PATCH_OPS), indent=1)
    for chunk in (len(text), 7):
        preview = PatchPreview(DOC)
        with pytest.raises(InvalidScenario) as caught:
            for start in range(0, len(text), chunk):
                preview.feed(text[start: start + chunk])
            preview.finish()
        assert str(caught.value) == EXAMPLE_REASON == "the patch is the prompt's example, not the requested change"
        assert preview.count == 0 and preview.working == DOC  # nothing applied
    # The same change written for the user's scenario applies.
    preview = PatchPreview(DOC)
    preview.feed(json.dumps([{"op": "test", "path": "/title", "value": "Harbor"}, *EXAMPLE_PATCH_OPS[1:]]))
    scenario, changes = preview.finish()
    assert scenario["title"] == "Night Shift" and [c["text"] for c in changes] == ["renamed the title", "added role Journalist"]
