"""Decoding an OpenAI-compatible stream into deltas (upstream/decode.py: ChatStreamDecoder)."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import AgentError
from agent.model import Finish
from upstream.decode import ChatStreamDecoder, _loads


def chunk(content=None, finish=None):
    return {"choices": [{"index": 0, "delta": {} if content is None else {"content": content}, "finish_reason": finish}]}


def wire(*payloads) -> bytes:
    return b"".join(b"data: " + (p if isinstance(p, bytes) else json.dumps(p).encode()) + b"\n\n" for p in payloads)


def collect(raw: bytes, size: int = 0) -> tuple[list, ChatStreamDecoder]:
    """Feed `raw` in pieces of `size` bytes (all at once for 0): (everything returned, decoder)."""
    decoder = ChatStreamDecoder()
    step = size or len(raw) or 1
    out = []
    for i in range(0, len(raw), step):
        out += decoder.feed(raw[i:i + step])
    return out, decoder


def test_deltas_then_finish_with_usage():
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    raw = wire(chunk(""), chunk("Hel"), chunk("lo é"), chunk(finish="stop"), {"choices": [], "usage": usage}, b"[DONE]")
    for size in (0, 1, 7):
        out, decoder = collect(raw, size)
        assert out == ["Hel", "lo é", Finish("stop", usage)]
        assert decoder.done and decoder.error is None


def test_length_finish_and_no_usage():
    assert collect(wire(chunk("a"), chunk(finish="length"), b"[DONE]"))[0] == ["a", Finish("length", None)]


def test_comments_and_crlf_are_fine():
    raw = b": keep-alive\r\n\r\n" + wire(chunk("a")).replace(b"\n", b"\r\n") + b"data: [DONE]\r\n\r\n"
    assert collect(raw)[0] == ["a", Finish("stop", None)]


def test_bytes_after_done_are_ignored():
    out, decoder = collect(wire(chunk("a"), b"[DONE]", chunk("late")))
    assert out == ["a", Finish("stop", None)] and decoder.done


def test_a_body_without_done_is_neither_done_nor_an_error():
    # The caller (OpenAICompatible.stream) reports that as upstream_interrupted.
    out, decoder = collect(wire(chunk("a")))
    assert out == ["a"] and not decoder.done and decoder.error is None


@pytest.mark.parametrize("raw, code", [
    (wire(chunk("a"), b"{not json"), "upstream_invalid_response"),
    (wire(chunk("a"), {"id": "x"}), "upstream_invalid_response"),
    (wire(chunk("a"), {"choices": [{"delta": "oops"}]}), "upstream_invalid_response"),
    (wire(chunk("a"), {"error": {"message": "slow down", "code": 429}}), "upstream_rate_limited"),
    (wire(chunk("a"), {"error": {"message": "boom", "code": 500}}), "upstream_unavailable"),
])
def test_a_fault_is_an_error_after_the_good_deltas_of_the_same_read(raw, code):
    for size in (0, 5):
        out, decoder = collect(raw + wire(chunk("never")), size)
        assert out == ["a"], size  # the delta before the fault is kept, nothing after it
        assert isinstance(decoder.error, AgentError) and decoder.error.code == code
        assert not decoder.done


def test_whitespace_around_the_json_is_allowed_and_trailing_junk_is_not():
    spaced = b"data:  " + json.dumps(chunk("a")).encode() + b" \t\n\n"
    assert collect(spaced + wire(b"[DONE]"))[0] == ["a", Finish("stop", None)]
    out, decoder = collect(b"data: " + json.dumps(chunk("a")).encode() + b" x\n\n")
    assert out == [] and decoder.error is not None and decoder.error.code == "upstream_invalid_response"


# llama-cpp-python 0.3.36, captured (shared/wire/llama-cpp-python/direct-max_tokens-5.txt):
# spaces after colons, a role-only first chunk, no usage chunk, finish "length".
LLAMA_CPP_CAPTURE = "".join(
    'data: {"id": "chatcmpl-ef905964", "model": "SmolLM2-135M-Instruct.Q4_1.gguf", "created": 1796160527, "object": "chat.completion.chunk", '
    f'"choices": [{{"index": 0, "delta": {delta}, "logprobs": null, "finish_reason": {finish}}}]}}\n\n'
    for delta, finish in [('{"role": "assistant"}', "null"), ('{"content": "In"}', "null"), ('{"content": " a"}', "null"),
                          ('{"content": " world"}', "null"), ('{"content": " where"}', "null"), ('{"content": " dragons"}', "null"),
                          ("{}", '"length"')]
).encode() + b"data: [DONE]\n\n"


def test_a_real_llama_cpp_python_capture():
    for size in (0, 1, 13):
        out, decoder = collect(LLAMA_CPP_CAPTURE, size)
        assert out == ["In", " a", " world", " where", " dragons", Finish("length", None)]


def test_azure_first_chunk_and_data_without_a_space():
    azure = {"choices": [], "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}
    raw = wire(azure, chunk("")).replace(b"data: ", b"data:") + wire(chunk("a"), chunk(finish="content_filter"), b"[DONE]")
    assert collect(raw)[0] == ["a", Finish("content_filter", None)]


def test_keep_alive_comments_anywhere():
    raw = b": OPENROUTER PROCESSING\n\n" + wire(chunk("a")) + b": ping - 2026-12-01 21:36:31.601766+00:00\n\n" + wire(chunk("b"), b"[DONE]")
    for size in (0, 3):
        assert collect(raw, size)[0] == ["a", "b", Finish("stop", None)]


def test_non_ascii_deltas_pass_as_they_are_and_a_lone_surrogate_escape_is_replaced():
    # Each read one chunk, as from the network: the hot path takes non-ASCII text straight when
    # the JSON has no \u escape (UTF-8 text holds no lone surrogate); an escape is checked.
    decoder = ChatStreamDecoder()
    reads = [wire(chunk("⟦1⟧ é")), b'data: {"choices":[{"delta":{"content":"\xc3\xa9\\ud800"}}]}\n\n',
             b'data: {"choices":[{"delta":{"content":"\\ud83d\\ude00 ok"}}]}\n\n', wire(chunk(finish="stop")), b"data: [DONE]\n\n"]
    out = [item for read in reads for item in decoder.feed(read)]
    assert out[:3] == ["⟦1⟧ é", "é" + "\ufffd" * 3, "\U0001F600 ok"]  # the surrogate's 3 UTF-8 bytes, each replaced
    assert all(isinstance(item, str) and item.encode("utf-8") for item in out[:3])
    assert decoder.error is None and decoder.done


# -- the one fast path kept here: _loads against json.loads ---------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
AROUND = st.sampled_from(["", " ", "\n", "\t ", "\r\n", "x", "]", " 1", "\u00a0"])


def loads_outcome(loads, text):  # type: ignore[no-untyped-def]
    try:
        return "value", json.dumps(loads(text))  # dumps: NaN and -0.0 compare as text
    except ValueError:
        return "error", None


@settings(max_examples=600)
@given(st.one_of(st.text(max_size=40),
                 st.tuples(AROUND, JSON_VALUES, AROUND, st.booleans()).map(
                     lambda t: t[0] + json.dumps(t[1], ensure_ascii=t[3], separators=(",", ":") if t[3] else (", ", ": ")) + t[2])))
def test_loads_gives_what_json_loads_gives_on_any_text(text):
    assert loads_outcome(_loads, text) == loads_outcome(json.loads, text)


@settings(max_examples=300)
@given(st.text(max_size=30), st.booleans())
def test_any_delta_text_reaches_the_output_whole_and_well_formed(text, escaped):
    # Non-ASCII as UTF-8 or as \u escapes (lone surrogates included): what comes out is the
    # text, with only a lone surrogate replaced, and always encodable as UTF-8. (A first delta
    # "a" settles that there is no inline <think>, which would take leading whitespace.)
    raw = b"data: " + json.dumps(chunk(text), ensure_ascii=escaped).encode("utf-8", "surrogatepass") + b"\n\n"
    out, decoder = collect(wire(chunk("a")) + raw + wire(b"[DONE]"))
    expected = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    assert "".join(out[:-1]) == "a" + expected and decoder.error is None
    assert all(item.encode("utf-8") for item in out[:-1])
