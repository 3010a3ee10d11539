"""Decoding an OpenAI-compatible stream into deltas (agent/llm.py decode_chat_stream)."""

import asyncio
import json

import pytest

from agent.errors import AgentError
from agent.llm import Finish, decode_chat_stream


def chunk(content=None, finish=None):
    return {"choices": [{"index": 0, "delta": {} if content is None else {"content": content}, "finish_reason": finish}]}


def wire(*payloads) -> bytes:
    return b"".join(b"data: " + (p if isinstance(p, bytes) else json.dumps(p).encode()) + b"\n\n" for p in payloads)


def collect(raw: bytes, size: int = 0):
    async def chunks():
        step = size or len(raw) or 1
        for i in range(0, len(raw), step):
            yield raw[i:i + step]

    async def run():
        return [item async for item in decode_chat_stream(chunks())]

    return asyncio.run(run())


def test_deltas_then_finish_with_usage():
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    raw = wire(chunk(""), chunk("Hel"), chunk("lo é"), chunk(finish="stop"), {"choices": [], "usage": usage}, b"[DONE]")
    for size in (0, 1, 7):
        assert collect(raw, size) == ["Hel", "lo é", Finish("stop", usage)]


def test_length_finish_and_no_usage():
    assert collect(wire(chunk("a"), chunk(finish="length"), b"[DONE]")) == ["a", Finish("length", None)]


def test_comments_and_crlf_are_fine():
    raw = b": keep-alive\r\n\r\n" + wire(chunk("a")).replace(b"\n", b"\r\n") + b"data: [DONE]\r\n\r\n"
    assert collect(raw) == ["a", Finish("stop", None)]


@pytest.mark.parametrize("raw, code", [
    (wire(chunk("a")), "upstream_interrupted"),
    (wire(chunk("a"), b"{not json"), "upstream_invalid_response"),
    (wire(chunk("a"), {"id": "x"}), "upstream_invalid_response"),
    (wire({"choices": [{"delta": "oops"}]}), "upstream_invalid_response"),
    (wire({"error": {"message": "slow down", "code": 429}}), "upstream_rate_limited"),
    (wire({"error": {"message": "boom", "code": 500}}), "upstream_unavailable"),
])
def test_faults_raise_typed_errors_after_the_good_deltas(raw, code):
    seen = []

    async def chunks():
        yield raw

    async def run():
        async for item in decode_chat_stream(chunks()):
            seen.append(item)

    with pytest.raises(AgentError) as info:
        asyncio.run(run())
    assert info.value.code == code
    assert seen in ([], ["a"])
