"""OpenAICompatible.stream over both upstream transports: upstream/transport.py's (h11 framing), and httpx's
own (what the app uses when a proxy variable is set). The same deltas, the same Finish and
the same error codes from either, against the fake model server on loopback."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from agent.config import Settings
from agent.model import Finish
from upstream.openai_compat import OpenAICompatible
from upstream.transport import StreamingTransport
from tests.support.fake_upstream import FakeUpstream, Plan
from tests.support.models import answer

TRANSPORTS = {"ours": StreamingTransport, "httpx": lambda: None}


def run_stream(base_url: str, transport: str) -> tuple[list, str | None]:
    """Everything the model's stream yielded, and the error code it ended with (or None)."""
    settings = Settings.from_env({"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-test", "UPSTREAM_MAX_RETRIES": "0"})

    async def main() -> tuple[list, str | None]:
        async with httpx.AsyncClient(transport=TRANSPORTS[transport]()) as client:
            return await answer(OpenAICompatible(settings, client))

    return asyncio.run(main())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_deltas_then_finish_with_usage(transport: str) -> None:
    with FakeUpstream() as fake:
        fake.push(Plan(tokens=["Hel", "lo é", "!"]))
        items, code = run_stream(fake.base_url, transport)
    assert code is None
    assert items[:3] == ["Hel", "lo é", "!"]
    assert len(items) == 4 and isinstance(items[3], Finish) and items[3].reason == "stop"
    assert items[3].usage is not None and items[3].usage["completion_tokens"] >= 1


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("fault, code", [("no_done", "upstream_interrupted"), ("reset", "upstream_interrupted"),
                                         ("malformed", "upstream_invalid_response")])
def test_a_fault_after_two_tokens_keeps_them_and_ends_with_one_code(transport: str, fault: str, code: str) -> None:
    with FakeUpstream() as fake:
        fake.push(Plan(tokens=["a", "b", "c", "d"], fault=fault, fault_after=2))
        items, got = run_stream(fake.base_url, transport)
    assert items == ["a", "b"]
    assert got == code


WIRE_SHAPES = {
    "role-only first chunk (llama-cpp-python, vLLM)": Plan(tokens=["a", "b"], first_chunk="role_only"),
    "Azure's choices: [] first chunk": Plan(tokens=["a", "b"], first_chunk="azure"),
    "no first chunk": Plan(tokens=["a", "b"], first_chunk="none"),
    "keep-alive comments (OpenRouter)": Plan(tokens=["a", "b"], comments=[": OPENROUTER PROCESSING", ": OPENROUTER PROCESSING"]),
    "data: without a space": Plan(tokens=["a", "b"], data_no_space=True),
}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("shape", WIRE_SHAPES)
def test_every_first_chunk_and_framing_shape_gives_the_same_deltas(transport: str, shape: str) -> None:
    with FakeUpstream() as fake:
        fake.push(WIRE_SHAPES[shape])
        items, code = run_stream(fake.base_url, transport)
    assert code is None, shape
    assert items[:2] == ["a", "b"] and items[2] == Finish("stop", items[2].usage) and len(items) == 3


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("reason", ["length", "content_filter"])
def test_finish_reasons_and_no_usage_chunk_are_passed_on(transport: str, reason: str) -> None:
    with FakeUpstream() as fake:
        fake.push(Plan(tokens=["a"], finish_reason=reason, usage=False))
        items, code = run_stream(fake.base_url, transport)
    assert code is None and items == ["a", Finish(reason, None)]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_thinking_and_reasoning_tokens_over_both_transports(transport: str) -> None:
    with FakeUpstream() as fake:
        fake.push(Plan(reasoning=["hm", "m"], tokens=["ok"], reasoning_field="reasoning", reasoning_details=True, reasoning_tokens=2))
        items, code = run_stream(fake.base_url, transport)
    assert code is None
    assert [type(i).__name__ for i in items] == ["Thinking", "Thinking", "str", "Finish"]
    assert items[:3] == ["hm", "m", "ok"]
    assert items[3].usage["completion_tokens_details"] == {"reasoning_tokens": 2}
