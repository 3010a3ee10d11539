"""Hostile model output: every kind of bad block is an InvalidScenario with a reason, never a crash.

Each case is what a model (or a user prompting one) can put in a fenced block. The parser
must refuse it cheaply with a reason a user can act on; nothing else may escape
(a RecursionError or UnicodeEncodeError here used to end a run without `done`).
"""

import json
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.patch import OperationReader, PatchSyntaxError
from agent.scenario import InvalidScenario, depth, parse_json_object, pick_block
from agent.splitter import Splitter


def refusal(text: str) -> str:
    with pytest.raises(InvalidScenario) as caught:
        parse_json_object(text)
    return str(caught.value)


def test_nesting_3000_deep_is_refused_before_parsing_and_cheaply():
    started = time.perf_counter()
    assert refusal('{"title": "t", "x": ' + "[" * 3000 + "]" * 3000 + "}") == "it is nested deeper than 32 levels"
    assert refusal("[" * 3000) == "it is nested deeper than 32 levels"  # unbalanced too
    assert refusal('{"a":' * 3000 + "1" + "}" * 3000) == "it is nested deeper than 32 levels"
    assert time.perf_counter() - started < 0.5


def test_depth_limit_is_exactly_32_and_brackets_in_strings_do_not_count():
    assert depth(parse_json_object('{"a": ' + "[" * 31 + "]" * 31 + "}")) == 32
    assert refusal('{"a": ' + "[" * 32 + "]" * 32 + "}") == "it is nested deeper than 32 levels"
    assert parse_json_object('{"title": "' + "[{" * 100 + '\\"[["}') == {"title": "[{" * 100 + '"[['}


def test_lone_surrogate_escapes_and_raw_surrogates():
    assert refusal('{"title": "\\ud800"}') == 'it contains a lone surrogate escape such as "\\ud800" (not valid Unicode)'
    assert "lone surrogate" in refusal('{"\\udfff": 1}')  # in a key
    assert "lone surrogate" in refusal('{"title": "\ud800"}')  # a raw one in the text
    # A proper pair is one character, and fine.
    assert parse_json_object('{"title": "\\ud83d\\ude00"}') == {"title": "\U0001F600"}


def test_huge_numbers():
    assert refusal('{"n": 1e999}') == "not acceptable JSON: the number 1e999 is too large to represent"
    assert refusal('{"n": -1e999}') == "not acceptable JSON: the number -1e999 is too large to represent"
    digits = "9" * 5000  # past Python's 4300-digit int() limit
    assert refusal('{"n": ' + digits + "}").startswith("not acceptable JSON: the number 99999999999999999999999… is too large")
    assert refusal('{"n": ' + "1" * 100_000 + "}") == "it is larger than 64 KiB"
    assert "too large" in refusal('{"n": 9007199254740992}')  # 2**53
    assert parse_json_object('{"n": 9007199254740991, "f": 1e300, "m": -0.5}') == {"n": 2**53 - 1, "f": 1e300, "m": -0.5}


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals(literal):
    assert refusal('{"n": ' + literal + "}") == f"not acceptable JSON: {literal} is not a JSON value"


def test_duplicate_keys_are_refused_not_last_wins():
    assert refusal('{"title": "a", "roles": [], "roles": [1]}') == 'not acceptable JSON: the key "roles" appears twice in one object'
    assert "appears twice" in refusal('{"title": "a", "x": {"k": 1, "k": 1}}')


def test_a_leading_bom_is_stripped():
    assert parse_json_object('\ufeff{"title": "t"}') == {"title": "t"}


@pytest.mark.parametrize("text, reason", [
    ("", "the block is empty"),
    ("  \n\t", "the block is empty"),
    ("\ufeff", "the block is empty"),
    ('{"title": "t"} trailing', "not valid JSON: Extra data (line 1, column 16)"),
    ('{"title": "t"}\n{"title": "u"}', "not valid JSON: Extra data (line 2, column 1)"),
    ('{"title": "t",}', "not valid JSON: Expecting property name enclosed in double quotes (line 1, column 15)"),
    ("'title'", "not valid JSON: Expecting value (line 1, column 1)"),
    ('"just a string"', "it is a JSON string, not a JSON object"),
    ('{"title": "a\tb"}', "not valid JSON: Invalid control character"),
])
def test_empty_text_trailing_garbage_and_other_shapes(text, reason):
    assert refusal(text).startswith(reason)


def test_a_huge_block_costs_no_parse():
    started = time.perf_counter()
    assert refusal('{"title": "' + "x" * 10_000_000 + '"}') == "it is larger than 64 KiB"
    assert time.perf_counter() - started < 0.5


def test_quadratic_input_for_a_string_regex_stays_linear():
    # A run of escaped quotes with no closing quote: a backtracking string regex is
    # quadratic on it; the depth scan must not be.
    started = time.perf_counter()
    assert refusal('"' + '\\"' * 30_000).startswith("not valid JSON: Unterminated string")
    assert time.perf_counter() - started < 0.5


HOSTILE_BLOCKS = {
    "deep": "[" * 3000 + "]" * 3000,
    "surrogate": '{"title": "\\ud800"}',
    "huge float": '{"title": "t", "n": 1e999}',
    "huge int": '{"title": "t", "n": ' + "7" * 5000 + "}",
    "nan": '{"title": "t", "n": NaN}',
    "duplicate": '{"title": "t", "title": "u"}',
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_BLOCKS))
def test_hostile_blocks_through_the_splitter_and_pick_block(kind):
    splitter = Splitter()
    for piece in ("Here:\n```scenario\n", HOSTILE_BLOCKS[kind], "\n```\n"):
        splitter.feed(piece)
    splitter.flush()
    with pytest.raises(InvalidScenario):
        pick_block(splitter.blocks)


@pytest.mark.parametrize("kind", sorted(HOSTILE_BLOCKS))
def test_hostile_operations_in_a_patch_are_a_patch_syntax_error(kind):
    reader = OperationReader()
    value = HOSTILE_BLOCKS[kind]
    if not value.startswith("{"):
        value = '{"op": "add", "path": "/x", "value": ' + value + "}"
    with pytest.raises(PatchSyntaxError):
        reader.feed("[" + value + "]")


def test_a_bom_before_a_patch_is_tolerated():
    assert OperationReader().feed('\ufeff[{"op": "remove", "path": "/x"}]') == [{"op": "remove", "path": "/x"}]


@given(st.text(alphabet='{}[]",:\\ \n0123456789.eE+-truefalsnul\ud800\ufeffaé', max_size=60))
@settings(max_examples=1500, deadline=None)
def test_nothing_but_invalid_scenario_ever_escapes(text):
    try:
        value = parse_json_object(text)
    except InvalidScenario:
        return
    assert isinstance(value, dict)
    json.dumps(value, allow_nan=False).encode()  # whatever is accepted is plain, encodable JSON


@given(st.text(alphabet='{}[]",:\\ \n019eE-truefalsnul\ud800xop', max_size=60))
@settings(max_examples=1000, deadline=None)
def test_nothing_but_patch_syntax_errors_escape_the_reader(text):
    reader = OperationReader()
    try:
        ops = reader.feed(text)
        reader.close()
    except PatchSyntaxError:
        return
    assert all(isinstance(op, dict) for op in ops)


# --- patches that grow the document: bounded as each operation applies --------------------
#
# A `copy` from a list into the same list doubles it: 19 such operations (under 1 KB of
# patch) once took 40 s of CPU and 834 MB. The working copy is bounded, not only the text:
# each operation's growth is measured before it applies, and the one that would take the
# scenario past 64 KiB (or 32 levels) is refused with a reason the repair request can name.
# Bar: any patch block within 64 KiB costs under 0.5 s of CPU and 20 MB of memory.

from typing import Any, Callable  # noqa: E402

from agent.patch import PatchError, PatchPreview, apply_operation, apply_patch  # noqa: E402
from tests.support.scenarios import big_scenario  # noqa: E402

PATCH_LIMIT = 64 * 1024
SMALL = {"title": "t", "steps": [{"title": "s", "description": "x" * 100}], "objectives": ["o"], "pad": [0] * 10_000}


def ops_text(ops: list[dict], limit: int = PATCH_LIMIT) -> str:
    """The longest "[op, op, ...]" of `ops` repeated that stays within `limit` bytes."""
    parts = [json.dumps(op, separators=(",", ":")) for op in ops]
    text, count = "[", 0
    while len(text) + len(parts[count % len(parts)]) + 2 <= limit:
        text += ("," if count else "") + parts[count % len(parts)]
        count += 1
    return text + "]"


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def costs(call: Callable[[], Any]) -> tuple[float, int | None, Any]:
    """(CPU seconds, growth of the resident set's high-water mark in bytes or None where
    /proc cannot reset it, result) of one call. The mark is reset first (clear_refs 5), so
    the growth is this call's peak over the memory the process held before it."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        before = _status("VmRSS")
    except OSError:
        before = None
    started = time.process_time()
    result = call()
    seconds = time.process_time() - started
    return seconds, None if before is None else _status("VmHWM") - before, result


def preview(doc: dict, text: str, chunk: int | None = None) -> tuple[PatchPreview, Exception | None]:
    patch = PatchPreview(doc)
    try:
        for start in range(0, len(text), chunk or len(text)):
            patch.feed(text[start: start + (chunk or len(text))])
        patch.finish()
    except InvalidScenario as exc:
        return patch, exc
    return patch, None


def test_a_copy_that_would_pass_64_kib_is_refused_naming_the_operation():
    doc = big_scenario(40 * 1024)
    patch, error = preview(doc, '[{"op": "replace", "path": "/title", "value": "x"}, {"op": "copy", "from": "/steps", "path": "/steps/-"}]')
    assert isinstance(error, PatchError) and error.index == 1
    assert str(error) == "operation 2 (copy /steps/-): it would make the scenario larger than 64 KiB"
    assert patch.count == 1 and len(json.dumps(patch.working).encode()) <= PATCH_LIMIT


def test_doubling_copies_stop_at_the_limit_in_bounded_time_and_memory():
    text = ops_text([{"op": "copy", "from": "/steps", "path": "/steps/-"}], limit=1000)  # the audit's block: under 1 KB
    assert text.count('"copy"') >= 19
    seconds, peak, (patch, error) = costs(lambda: preview({"title": "t", "steps": [{"title": "s", "description": "x" * 100}]}, text))
    assert seconds < 0.5 and (peak is None or peak < 20 * 1024 * 1024), (seconds, peak)
    assert isinstance(error, PatchError) and re.fullmatch(
        r"operation \d+ \(copy /steps/-\): it would make the scenario larger than 64 KiB", str(error))
    assert error.index < 12 and patch.bounds.size == len(json.dumps(patch.working, ensure_ascii=False).encode()) <= PATCH_LIMIT


DEEP = {"title": "t", "chain": json.loads("[" * 30 + "]" * 30), "a": {"b": {}}}

HOSTILE_PATCHES = {
    # name: (document, operations repeated to fill 64 KiB, what ends it: a reason's end, or None: all apply)
    "doubling copies": (SMALL, [{"op": "copy", "from": "/steps", "path": "/steps/-"}], "larger than 64 KiB"),
    "copy then remove, 30 KB each": (SMALL, [{"op": "copy", "from": "/pad", "path": "/x"}, {"op": "remove", "path": "/x"}],
                                     "copies or moves more than 512 KiB in total"),
    "move deeper and back, 30 KB each": (SMALL, [{"op": "move", "from": "/pad", "path": "/steps/0/pad"},
                                                 {"op": "move", "from": "/steps/0/pad", "path": "/pad"}],
                                         "copies or moves more than 512 KiB in total"),
    "copy a chain into itself": (DEEP, [{"op": "copy", "from": "/chain", "path": "/chain/0/0/0/0/0/0/0/0/-"}], "deeper than 32 levels"),
    "move a chain under another": (DEEP, [{"op": "move", "from": "/chain", "path": "/a/b/chain"}], "deeper than 32 levels"),
    "1,800 tests": (SMALL, [{"op": "test", "path": "/steps/0/title", "value": "s"}], None),
    "inserts at the front": (SMALL, [{"op": "add", "path": "/objectives/0", "value": "o"}], None),
    "replace the largest value": (SMALL, [{"op": "replace", "path": "/pad", "value": [1]}, {"op": "replace", "path": "/pad", "value": [0]}], None),
    "test the largest value, failing": (SMALL, [{"op": "test", "path": "/pad", "value": [0] * 10_000 + [1]}], "not [0, 0, 0, 0, 0,"),
    "empty operations": (SMALL, [{}], '"op" is missing'),
}


@pytest.mark.parametrize("chunk", [None, 64])
@pytest.mark.parametrize("case", sorted(HOSTILE_PATCHES))
def test_any_patch_block_within_64_kib_costs_under_the_bar(case, chunk):
    doc, ops, ending = HOSTILE_PATCHES[case]
    text = ops_text(ops)
    assert len(text) <= PATCH_LIMIT
    seconds, peak, (patch, error) = costs(lambda: preview(doc, text, chunk))
    assert seconds < 0.5 and (peak is None or peak < 20 * 1024 * 1024), f"{case}: {seconds:.3f} s, {peak} bytes"
    if ending is None:
        assert error is None or "dropped" in str(error) or "larger than" in str(error), error
    else:
        assert error is not None and ending in str(error), error
    assert len(json.dumps(patch.working).encode()) <= PATCH_LIMIT + 64


def test_the_size_followed_is_exact_after_every_kind_of_operation():
    from agent.patch import Bounds, json_size

    doc = {"title": "Hårbor", "roles": [{"name": "A"}], "steps": [], "objectives": ["o1", "o2"], "n": {"k": 1}}
    ops = [
        {"op": "add", "path": "/steps/-", "value": {"title": "é"}},
        {"op": "add", "path": "/steps/0", "value": {"title": "first"}},
        {"op": "add", "path": "/n/new", "value": [1, 2]},
        {"op": "add", "path": "/n/k", "value": "replaced by add"},
        {"op": "replace", "path": "/objectives/1", "value": "two"},
        {"op": "replace", "path": "/title", "value": "H"},
        {"op": "remove", "path": "/objectives/0"},
        {"op": "remove", "path": "/objectives/0"},
        {"op": "copy", "from": "/roles/0", "path": "/roles/-"},
        {"op": "copy", "from": "/roles", "path": "/objectives/-"},
        {"op": "move", "from": "/roles/1", "path": "/steps/0"},
        {"op": "move", "from": "/n", "path": "/steps/0/n"},
        {"op": "move", "from": "/steps/0/n", "path": "/m"},
        {"op": "move", "from": "/m", "path": "/title"},
        {"op": "remove", "path": "/roles/0"},
        {"op": "test", "path": "/roles", "value": []},
        {"op": "move", "from": "/steps", "path": ""},
    ]
    work = json.loads(json.dumps(doc))
    bounds = Bounds(work)
    for index, op in enumerate(ops):
        work = apply_operation(work, op, index, bounds)
        assert bounds.size == json_size(work), (index, op)


@given(st.lists(st.sampled_from([
    {"op": "add", "path": "/roles/-", "value": {"name": "R"}},
    {"op": "add", "path": "/roles/0", "value": "x"},
    {"op": "add", "path": "/k", "value": {"a": [1, {"b": "ü"}]}},
    {"op": "add", "path": "/k/a/-", "value": None},
    {"op": "remove", "path": "/roles/0"},
    {"op": "remove", "path": "/k"},
    {"op": "remove", "path": "/objectives"},
    {"op": "replace", "path": "/title", "value": "ttt"},
    {"op": "replace", "path": "/roles/0", "value": []},
    {"op": "copy", "from": "/roles", "path": "/roles/-"},
    {"op": "copy", "from": "/k", "path": "/j"},
    {"op": "copy", "from": "/title", "path": "/objectives/0"},
    {"op": "move", "from": "/roles/0", "path": "/objectives/-"},
    {"op": "move", "from": "/k", "path": "/roles/0"},
    {"op": "move", "from": "/objectives", "path": "/o"},
    {"op": "move", "from": "/o", "path": "/objectives"},
    {"op": "move", "from": "/roles", "path": ""},
    {"op": "add", "path": "", "value": {"title": "new", "roles": []}},
]), max_size=25))
@settings(max_examples=400, deadline=None)
def test_the_size_followed_stays_exact_whatever_the_operations(ops):
    from agent.patch import Bounds, json_size

    work: object = {"title": "T", "roles": [{"name": "A"}], "objectives": ["o"]}
    bounds = Bounds(work)
    for index, op in enumerate(ops):
        try:
            work = apply_operation(work, op, index, bounds)
        except PatchError:
            return  # the working copy is dropped on error
        assert bounds.size == json_size(work)


def test_apply_patch_is_bounded_too():
    with pytest.raises(PatchError, match=r"operation 1 \(add /big\): it would make the scenario larger than 1 KiB"):
        apply_patch({"title": "t"}, [{"op": "add", "path": "/big", "value": "x" * 1024}], max_bytes=1024)
    assert apply_patch({"title": "t"}, [{"op": "add", "path": "/big", "value": "x" * 900}], max_bytes=1024)["big"] == "x" * 900
