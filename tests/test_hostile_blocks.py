"""Hostile model output: every kind of bad block is an InvalidScenario with a reason, never a crash.

Each case is what a model (or a user prompting one) can put in a fenced block. The parser
must refuse it cheaply with a reason a user can act on; nothing else may escape
(a RecursionError or UnicodeEncodeError here used to end a run without `done`).
"""

import json
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
