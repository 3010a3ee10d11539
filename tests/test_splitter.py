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
