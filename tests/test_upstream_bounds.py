"""Hostile and broken upstreams cost bounded memory and time, and end in one clear code
(upstream/sse.py, upstream/decode.py, upstream/openai_compat.py): lines and events capped at
1 MiB with a linear decoder, compressed bodies inflated with a bound, deltas cut to 16 KiB,
wrong shapes as upstream_invalid_response, and `[DONE]` followed by an abrupt close complete."""

from __future__ import annotations

import asyncio
import gzip
import json
import resource
import time
import zlib

import httpx
import pytest

from agent.config import Settings
from agent.errors import AgentError
from agent.model import Finish
from agent.prompts import build_prompt
from tests.conftest import upstream_env
from tests.support.fake_upstream import FakeUpstream, Plan, chunked
from tests.support.models import answer as model_answer
from tests.support.raw_server import read_request, serve
from tests.support.servers import STREAM_PATH, LiveApp, parse_frames
from upstream.decode import MAX_DELTA_CHARS, ChatStreamDecoder
from upstream.openai_compat import MAX_INFLATED_BYTES, OpenAICompatible
from upstream.transport import StreamingTransport
from upstream.sse import MAX_EVENT_BYTES, MAX_LINE_BYTES, EventDecoder, LineDecoder, StreamTooLarge

SSE = {"content-type": "text/event-stream", "transfer-encoding": "chunked"}


def data(payload: dict | str) -> bytes:
    return b"data: " + (payload if isinstance(payload, str) else json.dumps(payload)).encode() + b"\n\n"


def delta(content: object) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}


FINISH = data({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}) + data("[DONE]")


def run(fake: FakeUpstream, transport: str = "httpx", **env: str) -> tuple[list, str | None]:
    """The model's answer over httpx's transport or ours (upstream/transport.py): (items, error code)."""
    settings = Settings.from_env({"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "sk-test", "UPSTREAM_MAX_RETRIES": "0", **env})

    async def main() -> tuple[list, str | None]:
        async with httpx.AsyncClient(transport=StreamingTransport() if transport == "ours" else None) as client:
            return await model_answer(OpenAICompatible(settings, client))

    return asyncio.run(main())


def measured(fake: FakeUpstream, transport: str) -> tuple[list, str | None, float, float]:
    """`run`, with the CPU seconds it took and how far this process's peak RSS grew (MiB)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.process_time()
    items, code = run(fake, transport)
    elapsed = time.process_time() - started
    return items, code, elapsed, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


# -- line and event bounds ---------------------------------------------------------------------


def test_line_decoder_is_linear_in_a_long_line():
    """4 MiB without a line end in 64-byte reads (a decoder allowed that much): the old decoder
    copied its whole buffer on every read, 65,536 reads and about 128 GB copied (1 MiB alone
    took it 0.44 s of CPU); a list of parts is joined once (1 MiB: 0.017 s)."""
    size = 4 * 1024 * 1024
    decoder = LineDecoder(max_line=size)
    piece = b"x" * 64
    started = time.process_time()
    for _ in range(size // 64):
        assert decoder.feed(piece) == []
    lines = decoder.feed(b"\n")
    elapsed = time.process_time() - started
    assert lines == ["x" * size]
    assert elapsed < 0.6, elapsed


def test_a_line_past_the_cap_raises_early_in_small_and_large_reads():
    decoder = LineDecoder()
    with pytest.raises(StreamTooLarge):
        for _ in range(MAX_LINE_BYTES // 4096 + 2):
            decoder.feed(b"y" * 4096)
    with pytest.raises(StreamTooLarge):
        LineDecoder().feed(b"data: " + b"z" * (MAX_LINE_BYTES + 10) + b"\n\n")  # one read, line end included


def test_lines_up_to_the_cap_and_split_crlf_still_work():
    decoder = LineDecoder()
    assert decoder.feed(b"a\r") == ["a"]
    assert decoder.feed(b"\nb\r\nc") == ["b"]
    assert decoder.feed(b"d\n") == ["cd"]
    assert decoder.flush() == []
    assert LineDecoder().feed(b"q" * (MAX_LINE_BYTES - 1) + b"\n") == ["q" * (MAX_LINE_BYTES - 1)]


def test_an_event_without_a_blank_line_is_capped():
    events = EventDecoder()
    with pytest.raises(StreamTooLarge):
        for _ in range(MAX_EVENT_BYTES // 1000 + 2):
            events.decode("data: " + "e" * 1000)


def test_many_bounded_events_are_fine():
    events = EventDecoder()
    for _ in range(3):
        for _ in range(MAX_EVENT_BYTES // 2000):
            events.decode("data: " + "e" * 1000)
        assert events.decode("") is not None  # the size starts again with each event


@pytest.mark.parametrize("body", [
    data(delta("a")) + b"data: " + b"x" * (3 * 1024 * 1024),  # a 3 MiB line with no end
    data(delta("a")) + b"data: x\n" * 700_000,  # 1.4 M characters of data lines with no blank line
], ids=["long line", "long event"])
@pytest.mark.parametrize("transport", ["httpx", "ours"])
def test_an_oversized_line_or_event_from_the_upstream_is_invalid_response(body, transport):
    with FakeUpstream() as fake:
        fake.push(Plan(raw=chunked(*(body[i:i + 65536] for i in range(0, len(body), 65536))), headers=SSE))
        items, code, elapsed, grown_mib = measured(fake, transport)
    assert items == ["a"] and code == "upstream_invalid_response"
    assert elapsed < 3.0 and grown_mib < 40, (elapsed, grown_mib)


# -- compression -------------------------------------------------------------------------------


def test_the_upstream_is_asked_not_to_compress():
    with FakeUpstream() as fake:
        run(fake)
    assert fake.request_headers[0]["accept-encoding"] == "identity"


def answer(*tokens: str) -> bytes:
    return b"".join(data(delta(t)) for t in tokens) + FINISH


@pytest.mark.parametrize("encoding, compress", [
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),
    ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, no zlib header
])
@pytest.mark.parametrize("transport", ["httpx", "ours"])
def test_a_compressed_answer_sent_anyway_is_read(encoding, compress, transport):
    body = compress(answer("Hel", "lo"))
    with FakeUpstream() as fake:
        fake.push(Plan(raw=chunked(body[:7], body[7:]), headers={**SSE, "content-encoding": encoding}))
        items, code = run(fake, transport)
    assert code is None and items[:2] == ["Hel", "lo"] and isinstance(items[2], Finish)


@pytest.mark.parametrize("transport", ["httpx", "ours"])
def test_a_gzip_bomb_stops_at_the_bound_without_growing_the_process(transport):
    # 64 MiB of line ends inflate from about 64 KB: no line, no event, only bytes.
    bomb = gzip.compress(data(delta("a")) + b"\n" * (64 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 200_000
    with FakeUpstream() as fake:
        fake.push(Plan(raw=chunked(*(bomb[i:i + 16384] for i in range(0, len(bomb), 16384))), headers={**SSE, "content-encoding": "gzip"}))
        items, code, elapsed, grown_mib = measured(fake, transport)
    assert items == ["a"] and code == "upstream_invalid_response"
    assert elapsed < 2.0 and grown_mib < 40, (elapsed, grown_mib)
    assert MAX_INFLATED_BYTES == 8 * 1024 * 1024


@pytest.mark.parametrize("encoding, body", [("br", b"\x1b\x00"), ("gzip", b"not gzip at all")])
def test_an_unreadable_encoding_is_invalid_response(encoding, body):
    with FakeUpstream() as fake:
        fake.push(Plan(raw=chunked(body), headers={**SSE, "content-encoding": encoding}))
        items, code = run(fake)
    assert items == [] and code == "upstream_invalid_response"


# -- delta size and shape ----------------------------------------------------------------------


def test_a_huge_delta_is_cut_into_pieces_of_at_most_16_kib():
    text = "ab" * 40_000 + "é" * 10_000
    decoder = ChatStreamDecoder()
    out = decoder.feed(data(delta(text)) + FINISH)
    pieces = out[:-1]
    assert "".join(pieces) == text
    assert len(pieces) == -(-len(text) // MAX_DELTA_CHARS) and all(len(p) <= MAX_DELTA_CHARS for p in pieces)


def test_a_huge_delta_reaches_the_client_in_bounded_frames():
    text = "z" * 200_000
    with FakeUpstream() as fake:
        fake.push(Plan(tokens=[text]))
        with LiveApp(upstream_env(fake, MAX_OUTPUT_TOKENS="100000")) as live:
            raw = httpx.post(live.url + STREAM_PATH, json={"message": "hi", "mode": "chat"}, timeout=30).content
    frames = parse_frames(raw)
    chats = [d["content"] for k, d in frames if k == "chat"]
    assert chats and all(len(c) <= MAX_DELTA_CHARS for c in chats)
    assert text.startswith("".join(chats))  # the local output limit may stop it early; never a huge frame
    assert frames[-1][0] == "done"


@pytest.mark.parametrize("name, payload", [
    ("content is a number", json.dumps(delta(5))),
    ("content is an object", json.dumps(delta({"text": "x"}))),
    ("delta is a string", json.dumps({"choices": [{"delta": "oops"}]})),
    ("delta is a list", json.dumps({"choices": [{"delta": ["x"]}]})),
    ("choices is an object", json.dumps({"choices": {"0": {}}})),
    ("chunk is a list", json.dumps([1, 2])),
    ("chunk is a string", json.dumps("text")),
    ("usage is a number", json.dumps({"choices": [], "usage": 5})),
    ("finish_reason is a number", json.dumps({"choices": [{"delta": {}, "finish_reason": 1}]})),
    ("reasoning is a number", json.dumps({"choices": [{"delta": {"reasoning_content": 5}}]})),
    ("100k deep", "[" * 100_000 + "]" * 100_000),
    ("100k deep object", '{"a":' * 100_000 + "1" + "}" * 100_000),
], ids=lambda v: v if len(v) < 40 else "")
def test_a_chunk_of_the_wrong_shape_is_invalid_response_never_internal(name, payload):
    decoder = ChatStreamDecoder()
    out = decoder.feed(data(delta("ok")) + data(payload) + data(delta("never")))
    assert out == ["ok"], name
    assert decoder.error is not None and decoder.error.code == "upstream_invalid_response", name
    assert decoder.problem


@pytest.mark.parametrize("payload", [json.dumps(delta(5)), "[" * 100_000 + "]" * 100_000], ids=["content 5", "100k deep"])
def test_a_wrong_chunk_through_the_app_is_an_error_frame_then_done(payload):
    with FakeUpstream() as fake:
        fake.push(Plan(raw=chunked(data(delta("ok")), data(payload)), headers=SSE))
        with LiveApp(upstream_env(fake)) as live:
            frames = parse_frames(httpx.post(live.url + STREAM_PATH, json={"message": "hi", "mode": "chat"}, timeout=20).content)
    kinds = [k for k, _ in frames]
    assert kinds[-2:] == ["error", "done"]
    assert [d["code"] for k, d in frames if k == "error"] == ["upstream_invalid_response"]


def test_a_delta_without_a_delta_object_is_skipped():
    # Azure's asynchronous content filter sends chunks with choices but no delta.
    decoder = ChatStreamDecoder()
    out = decoder.feed(data(delta("a")) + data({"choices": [{"index": 0, "finish_reason": None, "content_filter_results": {}}]}) + FINISH)
    assert out == ["a", Finish("stop", None)] and decoder.error is None


# -- [DONE] then an abrupt close ---------------------------------------------------------------

# llama-cpp-python with interrupt_requests=true: `data: [DONE]` and no zero-size chunk, then FIN.
LLAMA_CPP_INTERRUPTED = (
    'data: {"id": "chatcmpl-1", "model": "m.gguf", "created": 1, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant"}, "logprobs": null, "finish_reason": null}]}\n\n',
    'data: {"id": "chatcmpl-1", "model": "m.gguf", "created": 1, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Once"}, "logprobs": null, "finish_reason": null}]}\n\n',
    'data: {"id": "chatcmpl-1", "model": "m.gguf", "created": 1, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": " upon"}, "logprobs": null, "finish_reason": null}]}\n\n',
    "data: [DONE]\n\n",
)


@pytest.mark.parametrize("transport, ending", [
    ("httpx", "no terminator"), ("httpx", "half a terminator"), ("httpx", "junk"),
    ("ours", "no terminator"), ("ours", "half a terminator"), ("ours", "junk"),
])
def test_done_then_an_abrupt_close_is_a_complete_answer(ending, transport):
    body = chunked(*(p.encode() for p in LLAMA_CPP_INTERRUPTED), end=False)
    body += {"no terminator": b"", "half a terminator": b"0\r\n", "junk": b"zz\r\nnot a chunk"}[ending]
    with FakeUpstream() as fake:
        fake.push(Plan(raw=body, headers=SSE))
        started = time.monotonic()
        items, code = run(fake, transport)
        elapsed = time.monotonic() - started
    assert code is None, ending
    assert items == ["Once", " upon", Finish("stop", None)]
    assert elapsed < 1.5


def test_done_then_an_abrupt_close_through_the_app_ends_with_done():
    body = chunked(*(p.encode() for p in LLAMA_CPP_INTERRUPTED), end=False)
    with FakeUpstream() as fake:
        fake.push(Plan(raw=body, headers=SSE))
        with LiveApp(upstream_env(fake)) as live:
            frames = parse_frames(httpx.post(live.url + STREAM_PATH, json={"message": "hi", "mode": "chat"}, timeout=20).content)
    assert "error" not in [k for k, _ in frames]
    assert "".join(d["content"] for k, d in frames if k == "chat") == "Once upon"
    assert frames[-1][0] == "done" and frames[-1][1]["finish_reason"] == "stop"


# -- error bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_huge_error_body_is_read_only_to_its_bound(framing):
    # The SDK reads a whole 4xx/5xx body into memory before it raises. A 429 whose body is 64 MB
    # is cut at 64 KiB by the transport: the same rate_limited error, its Retry-After kept, at
    # once, with a few MB at most in flight (socket buffers) before the connection is closed.
    total = 64 * 1024 * 1024
    block = b"x" * 65536
    sent = {"bytes": 0}

    async def handler(reader, writer, state):
        await read_request(reader)
        length = b"content-length: %d" % total if framing == "content-length" else b"transfer-encoding: chunked"
        writer.write(b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-type: application/json\r\n" + length + b"\r\n\r\n")
        while sent["bytes"] < total:
            writer.write(block if framing == "content-length" else b"10000\r\n" + block + b"\r\n")
            sent["bytes"] += len(block)
            await writer.drain()

    async def check(url, state):
        settings = Settings.from_env({"OPENAI_BASE_URL": url + "/v1", "OPENAI_API_KEY": "sk-test", "UPSTREAM_MAX_RETRIES": "0"})
        async with httpx.AsyncClient(transport=StreamingTransport()) as client:
            started = time.monotonic()
            with pytest.raises(AgentError) as caught:
                async for _ in OpenAICompatible(settings, client).stream(build_prompt("chat", "hi", None, ()), 64):
                    pass
            return caught.value.code, caught.value.retry_after, time.monotonic() - started

    code, retry_after, elapsed = asyncio.run(serve(handler)(check))
    assert (code, retry_after) == ("upstream_rate_limited", 7)
    assert elapsed < 2.0, elapsed
    assert sent["bytes"] < 16 * 1024 * 1024, sent  # was all 64 MB, read into memory


def test_an_error_body_within_the_bound_is_read_whole():
    body = json.dumps({"error": {"message": "x" * 60000, "type": "invalid_request_error", "code": "bad"}}).encode()

    async def handler(reader, writer, state):
        await read_request(reader)
        writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()

    async def check(url, state):
        async with httpx.AsyncClient(transport=StreamingTransport()) as client:
            response = await client.post(url + "/v1/chat/completions", json={})
            return response.status_code, response.content

    assert asyncio.run(serve(handler)(check)) == (400, body)
