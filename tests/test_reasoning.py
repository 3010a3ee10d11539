"""Thinking from every wire shape: `reasoning_content`, `reasoning` (+ `reasoning_details`, counted
once) and inline `<think>...</think>` with the tags split anywhere (upstream/think.py,
upstream/decode.py), through the model stream and the app, each delta the moment it arrives."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import Settings
from agent.model import Finish, Thinking
from agent.prompts import build_prompt
from tests.conftest import upstream_env
from tests.support.fake_upstream import FakeUpstream, Plan
from tests.support.servers import STREAM_PATH, LiveApp, iter_frames
from upstream.decode import ChatStreamDecoder
from upstream.openai_compat import OpenAICompatible
from upstream.think import ANSWER, REASONING, ThinkSplitter

# -- the splitter ------------------------------------------------------------------------------


def split(chunks: list[str]) -> list[tuple[str, str]]:
    """The splitter's pieces for these chunks, adjacent pieces of one kind merged."""
    splitter = ThinkSplitter()
    pieces = []
    for chunk in chunks:
        pieces += splitter.feed(chunk)
    pieces += splitter.flush()
    assert all(text for _, text in pieces), "no empty pieces"
    merged: list[tuple[str, str]] = []
    for kind, text in pieces:
        if merged and merged[-1][0] == kind:
            merged[-1] = (kind, merged[-1][1] + text)
        else:
            merged.append((kind, text))
    return merged


def chunkings(text: str):
    return st.lists(st.integers(0, len(text)), max_size=30).map(
        lambda cuts: [text[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(text)])]
    )


TEXTS = [
    "<think>\nLet me check the roles.\n</think>\n\nThe drill has **two** roles.",
    "  <think>x</think>answer",
    "<think></think>Just the answer.",
    "No thinking here. <think>not a tag here</think> stays text.",
    "<think>unfinished thinking, cut off",
    "<thi",
    "<think>a < b and </thin is not the end</think>done",
    "<thinking>is not the tag</thinking>",
    "   ",
    "<think>one</think> <think>two</think>",
]


def test_whole_text_in_one_delta():
    assert split([TEXTS[0]]) == [(REASONING, "Let me check the roles.\n"), (ANSWER, "The drill has **two** roles.")]
    assert split([TEXTS[3]]) == [(ANSWER, TEXTS[3])]
    assert split([TEXTS[4]]) == [(REASONING, "unfinished thinking, cut off")]
    assert split([TEXTS[5]]) == [(ANSWER, "<thi")]
    assert split([TEXTS[6]]) == [(REASONING, "a < b and </thin is not the end"), (ANSWER, "done")]
    assert split([TEXTS[9]]) == [(REASONING, "one"), (ANSWER, "<think>two</think>")]


@pytest.mark.parametrize("text", TEXTS)
def test_one_character_at_a_time_gives_the_same_pieces(text):
    assert split(list(text)) == split([text])


@given(st.data())
@settings(max_examples=400, deadline=None)
def test_every_chunking_gives_the_same_kind_and_text_sequence(data):
    text = data.draw(st.sampled_from(TEXTS))
    chunks = data.draw(chunkings(text))
    assert "".join(chunks) == text
    assert split(chunks) == split([text])


@given(st.text(alphabet="<>/thinkx \n", max_size=60), st.data())
@settings(max_examples=400, deadline=None)
def test_arbitrary_text_any_chunking_same_pieces(text, data):
    chunks = data.draw(chunkings(text))
    assert split(chunks) == split([text])


def test_reasoning_is_returned_at_once_but_a_forming_tag_waits():
    splitter = ThinkSplitter()
    assert splitter.feed("<think>Let") == [(REASONING, "Let")]
    assert splitter.feed(" me</th") == [(REASONING, " me")]  # "</th" may be the closing tag
    assert splitter.feed("ink>Hi") == [(ANSWER, "Hi")]
    assert splitter.passthrough


def test_content_without_think_is_passthrough_after_its_first_delta():
    splitter = ThinkSplitter()
    assert splitter.feed("Hello") == [(ANSWER, "Hello")]
    assert splitter.passthrough


# -- the decoder -------------------------------------------------------------------------------


def wire(*deltas: dict, finish: str = "stop", usage: dict | None = None) -> bytes:
    payloads = [{"choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    payloads.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if usage:
        payloads.append({"choices": [], "usage": usage})
    return b"".join(b"data: " + json.dumps(p).encode() + b"\n\n" for p in payloads) + b"data: [DONE]\n\n"


def decode(raw: bytes, size: int = 0) -> list:
    decoder = ChatStreamDecoder()
    out = []
    step = size or len(raw)
    for i in range(0, len(raw), step):
        out += decoder.feed(raw[i:i + step])
    assert decoder.error is None and decoder.done
    return out


def kinds(items: list) -> list[tuple[str, str]]:
    return [("thinking" if isinstance(i, Thinking) else "answer", str(i)) for i in items if not isinstance(i, Finish)]


def test_reasoning_content_deltas_are_thinking_then_the_answer():
    raw = wire({"role": "assistant"}, {"content": None, "reasoning_content": "Let me"}, {"content": None, "reasoning_content": " check"},
               {"content": "Two roles."})
    out = decode(raw)
    assert kinds(out) == [("thinking", "Let me"), ("thinking", " check"), ("answer", "Two roles.")]
    assert all(type(i) is Thinking for i in out[:2]) and type(out[2]) is str


def test_reasoning_field_with_reasoning_details_is_counted_once():
    details = [{"type": "reasoning.text", "text": "Let me", "format": "unknown", "index": 0}]
    out = decode(wire({"content": "", "reasoning": "Let me", "reasoning_details": details}, {"content": "Hi"}))
    assert kinds(out) == [("thinking", "Let me"), ("answer", "Hi")]


def test_reasoning_content_and_reasoning_together_are_counted_once():
    # vLLM during the rename sent both names with the same text.
    out = decode(wire({"content": None, "reasoning_content": "Let me", "reasoning": "Let me"}, {"content": "Hi"}))
    assert kinds(out) == [("thinking", "Let me"), ("answer", "Hi")]


def test_reasoning_details_alone_are_read_but_never_encrypted_ones():
    details = [{"type": "reasoning.encrypted", "data": "c2VjcmV0"}, {"type": "reasoning.text", "text": "visible"}]
    assert kinds(decode(wire({"content": "", "reasoning_details": details}, {"content": "Hi"}))) == [("thinking", "visible"), ("answer", "Hi")]


def test_refusal_is_answer_text():
    assert kinds(decode(wire({"content": None, "refusal": "I can't help with that."}))) == [("answer", "I can't help with that.")]


def test_reasoning_tokens_stay_in_usage_as_sent():
    usage = {"prompt_tokens": 9, "completion_tokens": 40, "total_tokens": 49, "completion_tokens_details": {"reasoning_tokens": 32}}
    out = decode(wire({"content": "Hi"}, usage=usage))
    assert out[-1] == Finish("stop", usage)


@pytest.mark.parametrize("cut", range(0, 9))
def test_inline_think_split_at_every_position_and_every_byte(cut):
    body = "<think>\nLet me check.</think>\n\nTwo roles."
    deltas = [body[:cut], body[cut:]] if cut else [body]
    raw = wire(*({"content": d} for d in deltas if d))
    for size in (0, 1, 7):
        joined = _merge(kinds(decode(raw, size)))
        assert joined == [("thinking", "Let me check."), ("answer", "Two roles.")], (cut, size)


def _merge(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    merged: list[tuple[str, str]] = []
    for kind, text in pairs:
        if merged and merged[-1][0] == kind:
            merged[-1] = (kind, merged[-1][1] + text)
        else:
            merged.append((kind, text))
    return merged


def test_think_tag_later_in_an_answer_is_text():
    assert kinds(decode(wire({"content": "Use "}, {"content": "<think> tags"}))) == [("answer", "Use "), ("answer", "<think> tags")]


# -- the model stream over the fake upstream -----------------------------------------------------

SHAPES = {
    "reasoning_content": Plan(reasoning=["Let me", " check."], tokens=["Two", " roles."]),
    "reasoning": Plan(reasoning=["Let me", " check."], tokens=["Two", " roles."], reasoning_field="reasoning"),
    "reasoning+details": Plan(reasoning=["Let me", " check."], tokens=["Two", " roles."], reasoning_field="reasoning", reasoning_details=True),
    "think": Plan(reasoning=["Let me", " check."], tokens=["Two", " roles."], reasoning_field="think"),
    "think split 3": Plan(reasoning=["Let me", " check."], tokens=["Two", " roles."], reasoning_field="think", think_split=3),
}


def model_items(fake: FakeUpstream) -> list:
    settings_ = Settings.from_env({"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "sk-test", "UPSTREAM_MAX_RETRIES": "0"})

    async def main() -> list:
        async with httpx.AsyncClient() as client:
            model = OpenAICompatible(settings_, client)
            return [item async for item in model.stream(build_prompt("chat", "hi", None, ()), 64)]

    return asyncio.run(main())


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_gives_the_thinking_then_the_answer(shape):
    with FakeUpstream() as fake:
        fake.push(SHAPES[shape])
        items = model_items(fake)
    assert isinstance(items[-1], Finish) and items[-1].reason == "stop"
    assert _merge(kinds(items)) == [("thinking", "Let me check."), ("answer", "Two roles.")]
    if not shape.startswith("think"):
        assert kinds(items)[:2] == [("thinking", "Let me"), ("thinking", " check.")]  # one item per upstream delta


# -- through the app: `reasoning` frames, each at once -------------------------------------------


@pytest.mark.parametrize("shape", ["reasoning_content", "reasoning+details", "think"])
def test_reasoning_frames_arrive_one_per_delta_within_ms_of_the_upstream_emit(shape):
    thinking = [f"step {i}. " for i in range(8)]
    base = SHAPES[shape]
    plan = Plan(reasoning=thinking, tokens=["The", " answer."], interval_ms=60, reasoning_field=base.reasoning_field,
                reasoning_details=base.reasoning_details)
    with FakeUpstream() as fake:
        fake.push(plan)
        with LiveApp(upstream_env(fake)) as live:
            frames = []
            with httpx.stream("POST", live.url + STREAM_PATH, json={"message": "hi", "mode": "chat"}, timeout=20) as response:
                assert response.status_code == 200
                frames = list(iter_frames(response))
        emits = fake.reasoning_emitted if shape != "think" else fake.emitted[1:9]  # think: "<think>" is a delta of its own
    reasoning = [(t, d) for t, k, d in frames if k == "reasoning"]
    chat = [d["content"] for _, k, d in frames if k == "chat"]
    assert "".join(d["content"] for _, d in reasoning) == "".join(thinking)
    assert "".join(chat) == "The answer."
    order = [k for _, k, _ in frames if k in ("reasoning", "chat")]
    assert order == ["reasoning"] * len(reasoning) + ["chat"] * len(chat)
    assert len(reasoning) == len(thinking)  # one frame per upstream delta
    done = [d for _, k, d in frames if k == "done"][0]
    assert done["timings"]["first_reasoning_ms"] is not None
    # Each frame left within a few ms of its upstream emit (generous bound for a loaded machine).
    lags = [frame_t - emit_t for (frame_t, _), (emit_t, _) in zip(reasoning, emits)]
    assert len(lags) == len(thinking)
    assert max(lags) < 0.1, lags
    assert sorted(lags)[len(lags) // 2] < 0.02, lags
