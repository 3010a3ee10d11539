"""The prose/scenario splitter: the same text gives the same output however it is chunked."""

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.splitter import CHAT, SCENARIO, Splitter

ANSWER = 'Renamed the drill and added a role.\n\n```scenario\n{"title": "Blue `Harbor`", "roles": []}\n```\nAnything else?'


def run(chunks: list[str]) -> tuple[str, str, str]:
    splitter = Splitter()
    pieces = []
    for chunk in chunks:
        pieces += splitter.feed(chunk)
    pieces += splitter.flush()
    assert all(text for _, text in pieces), "no empty frames"
    chat = "".join(t for k, t in pieces if k == CHAT)
    block = "".join(t for k, t in pieces if k == SCENARIO)
    return chat, block, splitter.scenario_text


def chunkings(text: str):
    return st.lists(st.integers(0, len(text)), max_size=30).map(
        lambda cuts: [text[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(text)])]
    )


def test_whole_answer_in_one_delta():
    chat, block, scenario = run([ANSWER])
    assert chat == "Renamed the drill and added a role.\n\n\nAnything else?"
    assert block == scenario == '{"title": "Blue `Harbor`", "roles": []}\n'


def test_fence_split_one_character_at_a_time():
    assert run(list(ANSWER)) == run([ANSWER])


@given(st.data())
@settings(max_examples=300)
def test_every_chunking_gives_the_same_output(data):
    text = data.draw(st.sampled_from([
        ANSWER,
        "No block at all, just `code` and `` ticks ``.",
        "```json\n{\"title\": \"t\"}\n```",
        "Text ```scenario \n{}\n``` after ```scenario\nnot a second block\n```",
        "Ends inside the block ```scenario\n{\"title\": \"x\"",
        "Ends with ticks ``",
        "`" * 7 + "scenario\n{}\n" + "`" * 4,
    ]))
    chunks = data.draw(chunkings(text))
    assert "".join(chunks) == text
    assert run(chunks) == run([text])


@given(st.text(alphabet="`scenarioj \n{}x", max_size=60), st.data())
@settings(max_examples=300)
def test_arbitrary_text_chunking_invariance_and_no_text_lost(text, data):
    chunks = data.draw(chunkings(text))
    chat, block, _ = run(chunks)
    assert (chat, block) == run([text])[:2]
    assert len(chat) + len(block) <= len(text)


def test_prose_is_never_held_longer_than_a_possible_fence():
    splitter = Splitter()
    assert splitter.feed("Hello wor") == [(CHAT, "Hello wor")]
    assert splitter.feed("ld ``") == [(CHAT, "ld ")]  # "``" could start a fence
    assert splitter.feed("x") == [(CHAT, "``x")]


# --- every fence kind, recorded blocks ------------------------------------------

from agent.splitter import MAX_BLOCK_BYTES, Block  # noqa: E402

PATCH_ANSWER = (
    'Renamed it.\n```patch\n[{"op": "replace", "path": "/title", "value": "A ```b``` c"}]\n```\n'
    "Then a bare one:\n```\n{\"title\": \"bare\"}\n```\nand ```python\nprint('x')\n``` done"
)


def blocks_of(chunks: list[str]) -> list[Block]:
    splitter = Splitter()
    for chunk in chunks:
        splitter.feed(chunk)
    splitter.flush()
    return splitter.blocks


def test_every_block_is_recorded_in_order_with_its_info():
    assert blocks_of([PATCH_ANSWER]) == [
        Block("patch", '[{"op": "replace", "path": "/title", "value": "A ```b``` c"}]\n', True),
        Block("", '{"title": "bare"}\n', True),
        Block("python", "print('x')\n", True),
    ]
    chat, block, _ = run([PATCH_ANSWER])
    assert chat == "Renamed it.\n\nThen a bare one:\n\nand  done"
    assert block == "".join(b.text for b in blocks_of([PATCH_ANSWER]))


def test_a_backtick_run_inside_a_json_string_does_not_close_the_block():
    (block,) = blocks_of(['```json\n{"title": "use ```code``` here"}\n```\n'])
    assert block == Block("json", '{"title": "use ```code``` here"}\n', True)


def test_a_fence_on_its_own_line_closes_even_after_an_unbalanced_quote():
    (block,) = blocks_of(['```\nsay "hi\n```\nprose'])
    assert block == Block("", 'say "hi\n', True)


def test_closing_fence_mid_line_outside_a_string_and_at_the_very_end():
    assert blocks_of(['```scenario\n{"title": "t"}```after']) == [Block("scenario", '{"title": "t"}', True)]
    assert blocks_of(['```scenario\n{"title": "t"}\n```']) == [Block("scenario", '{"title": "t"}\n', True)]


def test_a_block_whose_closing_fence_never_came_is_recorded_open():
    splitter = Splitter()
    pieces = splitter.feed('Here:\n```json\n{"title": "x"}')
    assert splitter.current is splitter.blocks[0] and splitter.current.info == "json"
    assert [p.block for p in pieces] == [None, splitter.blocks[0]]
    splitter.flush()
    assert splitter.current is None
    assert splitter.blocks == [Block("json", '{"title": "x"}', False)]


def test_inline_triple_backticks_are_prose():
    chat, block, _ = run(["Use ```x``` inline, then ```json at the end of a line? no: ```y``` too\nok"])
    assert block == ""
    assert chat == "Use ```x``` inline, then ```json at the end of a line? no: ```y``` too\nok"


def test_an_opener_with_nothing_after_it_is_prose():
    assert run(["Ends with ```scenario"]) == ("Ends with ```scenario", "", "")
    assert run(["Ends with ````"]) == ("Ends with ````", "", "")


def test_current_is_set_only_inside_a_block():
    splitter = Splitter()
    splitter.feed("a ```patch")
    assert splitter.current is None  # the info line is not finished
    splitter.feed("\n[")
    assert splitter.current is not None and splitter.current.info == "patch"
    splitter.feed("]\n```")
    assert splitter.current is not None  # "```" could still be "````" ...
    splitter.feed("\n")
    assert splitter.current is None and splitter.blocks[0].closed


def test_a_block_stops_growing_past_64_kib_and_prose_still_flows():
    splitter = Splitter()
    pieces = splitter.feed("```json\n")
    for _ in range(2000):
        pieces += splitter.feed("x" * 1000)
    pieces += splitter.feed("\n```\nafter")
    pieces += splitter.flush()
    (block,) = splitter.blocks
    assert block.overflow and block.closed
    assert block.size <= MAX_BLOCK_BYTES and len(block.text) <= MAX_BLOCK_BYTES
    # Deltas stop with the text: nothing past the bound is emitted.
    assert sum(len(t) for k, t in pieces if k == SCENARIO) == len(block.text)
    assert "".join(t for k, t in pieces if k == CHAT) == "\nafter"


FENCED_TEXTS = [
    PATCH_ANSWER,
    "```patch\n[{\"op\": \"add\", \"path\": \"/roles/-\", \"value\": {\"name\": \"a\\\"``` b\"}}]\n```",
    "````\n{\"title\": \"four\"}\n````x",
    "inline ```a``` then\n```json\n{\"t\": \"\\\\\"}\n```\n",
    "```scenario\n{\"title\": \"never closed\"",
    "```json\n{}\n``",
    "x ``` y\n z\n```",
]


@given(st.data())
@settings(max_examples=300)
def test_every_chunking_of_every_fence_kind_gives_the_same_blocks(data):
    text = data.draw(st.sampled_from(FENCED_TEXTS))
    chunks = data.draw(chunkings(text))
    assert run(chunks) == run([text])
    assert blocks_of(chunks) == blocks_of([text])


@given(st.text(alphabet='`patchjson \n{}"\\x', max_size=80), st.data())
@settings(max_examples=400)
def test_arbitrary_fence_soup_chunking_invariance(text, data):
    chunks = data.draw(chunkings(text))
    assert run(chunks)[:2] == run([text])[:2]
    assert blocks_of(chunks) == blocks_of([text])
