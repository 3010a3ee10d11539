"""Frame encoding (agent/events.py) and the upstream's two-stage decoder (upstream/sse.py), with the WHATWG examples."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.events import PING, Chat, Done, Start, encode, encode_generic
from tests.support.reads import as_reads
from upstream.sse import EventDataDecoder, EventDecoder, LineDecoder, ServerSentEvent


def decode(chunks: list[bytes]) -> list[ServerSentEvent]:
    lines, events, out = LineDecoder(), EventDecoder(), []
    for chunk in chunks:
        for line in lines.feed(chunk):
            if (event := events.decode(line)) is not None:
                out.append(event)
    for line in lines.flush():
        if (event := events.decode(line)) is not None:
            out.append(event)
    return out


def test_encode_is_one_event_line_and_one_data_line_with_the_same_type():
    frame = encode(Chat("two\nlines\r\u2028 and é 😀"))
    assert frame.endswith(b"\n\n")
    lines = frame[:-2].split(b"\n")
    assert lines[0] == b"event: chat"
    assert len(lines) == 2 and lines[1].startswith(b"data: ")
    data = json.loads(lines[1][6:])
    assert data == {"type": "chat", "content": "two\nlines\r\u2028 and é 😀", "streaming": True}
    assert "é".encode() in frame  # not \u-escaped: smaller frames


@settings(max_examples=300)
@given(st.text())
def test_the_chat_frame_template_gives_the_bytes_of_the_generic_encoding(text):
    event = {"type": "chat", "content": text, "streaming": True}
    assert encode(Chat(text)) == b"event: chat\ndata: %s\n\n" % json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
    assert encode(Chat(text)) == encode_generic(Chat(text))


def test_encoded_frames_round_trip_through_the_decoder():
    events = [Start("r1", "chat", "m", "p"), Chat("a\n\nb"), Done("stop", None, {})]
    raw = b"".join(encode(e) for e in events) + PING
    decoded = decode([raw])
    assert [(e.event, json.loads(e.data)) for e in decoded] == [(e.type, e.to_dict()) for e in events]


def test_whatwg_stock_example_multiline_data():
    raw = b"data: YHOO\ndata: +2\ndata: 10\n\n"
    assert decode([raw]) == [ServerSentEvent("message", "YHOO\n+2\n10")]


def test_whatwg_comment_then_events_with_ids():
    raw = b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n"
    events = decode([raw])
    assert [e.data for e in events] == ["first event", "second event", " third event"]
    assert [e.id for e in events] == ["1", "", ""]


def test_whatwg_empty_data_fields():
    raw = b"data\n\ndata\ndata\n\ndata:\n"
    # The last block has no blank line after it, so it is never dispatched.
    assert [e.data for e in decode([raw])] == ["", "\n"]


def test_whatwg_space_after_colon_is_optional():
    assert [e.data for e in decode([b"data:test\n\ndata: test\n\n"])] == ["test", "test"]


def test_event_field_retry_and_unknown_fields():
    events = decode([b"event: add\nretry: 300\nfoo: bar\ndata: x\n\nretry: soon\ndata: y\n\n"])
    assert [(e.event, e.data, e.retry) for e in events] == [("add", "x", 300), ("message", "y", None)]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending(newline):
    raw = b"data: a" + newline + b"data: b" + newline + newline + b"data: c" + newline + newline
    assert [e.data for e in decode([raw])] == ["a\nb", "c"]


def test_crlf_split_between_chunks_is_one_line_end():
    assert [e.data for e in decode([b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"])] == ["a", "b"]


def test_utf8_character_split_across_chunks_at_every_byte():
    raw = 'data: {"content": "é€😀"}\n\n'.encode()
    for cut in range(1, len(raw)):
        for cut2 in range(cut, len(raw)):
            events = decode([raw[:cut], raw[cut:cut2], raw[cut2:]])
            assert [e.data for e in events] == ['{"content": "é€😀"}']


def test_leading_bom_is_dropped_once():
    assert [e.data for e in decode([b"\xef\xbb\xbfdata: x\n\n"])] == ["x"]


@settings(max_examples=300)
@given(st.lists(st.sampled_from([b"data: a", b"\r", b"\n", b"\r\n", b": c", "é".encode(), b"x" * 50]), max_size=40), st.data())
def test_any_chunking_gives_the_same_lines(pieces, data):
    raw = b"".join(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=20)))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])]

    def lines(parts: list[bytes]) -> list[str]:
        decoder, out = LineDecoder(), []
        for part in parts:
            out += decoder.feed(part)
        return out + decoder.flush()

    assert lines(chunks) == lines([raw])


# -- EventDataDecoder: the two stages, with the shortcut for a read that is one data event ----------

SSE_PIECES = [b"data: a\n\n", b'data: {"x":1}\n\n', b"data: \n\n", b"data:b\n\n", b"data: a\n", b"data: a\r\n\r\n",
              b"event: e\n", b"id: 7\n", b"retry: 5\n", b": ping\n\n", b"\n", b"\r", "data: é\n\n".encode(),
              b"\xef\xbb\xbfdata: bom\n\n", b"data: a\ndata: b\n\n", b"x" * 30]


@settings(max_examples=400)
@given(st.lists(st.sampled_from(SSE_PIECES), max_size=30), st.lists(st.integers(0, 3), max_size=30), st.data())
def test_event_data_decoder_gives_what_the_two_stages_give_on_any_reads(pieces, merges, data):
    reads = as_reads(pieces, merges, lambda n: data.draw(st.integers(1, n - 1)))
    stages = [event.data for event in decode(reads)]
    decoder = EventDataDecoder()
    got = [text for read in reads for text in decoder.feed(read)]
    # `decode` also flushes an unterminated last line, which dispatches nothing on its own.
    assert got == stages


def test_event_data_decoder_takes_the_usual_read_without_the_stages():
    decoder = EventDataDecoder()
    assert decoder.feed(b"data: first\n\n") == ["first"]  # the first read: the stages (a BOM may lead)
    decoder.lines.feed = decoder.events.decode = None  # the stages are not called for the usual read
    assert decoder.feed(b'data: {"choices":[]}\n\n') == ['{"choices":[]}']
    decoder.lines, decoder.events = LineDecoder(), EventDecoder()
    decoder.lines.feed(b"data: warm\n\n")  # past the start
    assert decoder.lines.idle and decoder.events.idle
    assert decoder.feed(b"event: x\n") == [] and not decoder.events.idle  # a field waits: the stages again
    assert decoder.feed(b"data: y\n\n") == ["y"] and decoder.events.idle
