"""The operator learns why the upstream failed; the client never sees the upstream's text
(upstream/errors.py, OpenAICompatible): one log record per failure, keys redacted, context
too long mapped, Retry-After bounded, and one observe(status, error_code) per request."""

from __future__ import annotations

import asyncio
import json
import logging
import math

import httpx
import pytest

from agent.config import Settings
from agent.errors import AgentError
from agent.model import Finish
from agent.prompts import build_prompt
from tests.conftest import upstream_env
from tests.support.fake_upstream import FakeUpstream, Plan, chunked
from tests.support.models import answer
from tests.support.raw_server import LLAMA_CPP_HEAD, LLAMA_CPP_OVER_CONTEXT, answering_once, serve
from tests.support.servers import BUFFERED_PATH, STREAM_PATH, LiveApp, free_port, parse_frames
from upstream.errors import is_context_too_long, redact, retry_after
from upstream.openai_compat import OpenAICompatible
from upstream.transport import StreamingTransport
from web.health import DEGRADED_AFTER, UpstreamHealth

KEY = "sk-test-SECRET-key-0123456789"
SSE = {"content-type": "text/event-stream", "transfer-encoding": "chunked"}


class Records(logging.Handler):
    """The dict messages logged on scenario_agent.upstream while in use."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.msg if isinstance(record.msg, dict) else {"message": record.getMessage()})

    def __enter__(self) -> "Records":
        logger = logging.getLogger("scenario_agent.upstream")
        self._level = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger("scenario_agent.upstream")
        logger.removeHandler(self)
        logger.setLevel(self._level)

    def errors(self) -> list[dict]:
        return [m for m in self.messages if m.get("message") == "upstream error"]


def run(base_url: str, count: int = 1, observed: list | None = None, close_after: int | None = None,
        transport: str = "httpx") -> list[tuple[list, str | None]]:
    """`count` answers from one OpenAICompatible instance: [(items, error code)], over httpx's
    transport or ours ("ours": upstream/transport.py, what the app uses without a proxy)."""
    settings = Settings.from_env({"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": KEY, "UPSTREAM_MAX_RETRIES": "0",
                                  "UPSTREAM_CONNECT_TIMEOUT_SECONDS": "2"})

    async def one(model: OpenAICompatible) -> tuple[list, str | None]:
        items: list = []
        stream = model.stream(build_prompt("chat", "hi", None, ()), 64)
        try:
            async for item in stream:
                items.append(item)
                if close_after is not None and len(items) >= close_after:
                    await stream.aclose()  # type: ignore[attr-defined]
                    break
        except AgentError as exc:
            return items, exc.code
        return items, None

    async def main() -> list[tuple[list, str | None]]:
        async with httpx.AsyncClient(transport=StreamingTransport() if transport == "ours" else None) as client:
            observe = (lambda status, code: observed.append((status, code))) if observed is not None else None
            model = OpenAICompatible(settings, client, observe=observe)
            return [await one(model) for _ in range(count)]

    return asyncio.run(main())


# -- the log record -----------------------------------------------------------------------------


def test_a_refusal_is_logged_with_status_type_code_param_and_message_with_the_key_redacted():
    error = {"message": f"Incorrect API key provided: {KEY}. Bearer {KEY} 0123456789abcdef0123456789abcdef", "type": "invalid_request_error",
             "param": "model", "code": "model_not_found"}
    with FakeUpstream() as fake, Records() as records:
        fake.push(Plan(status=400, error=error))
        [(items, code)] = run(fake.base_url)
    assert code == "upstream_rejected"
    [record] = records.errors()
    assert record["upstream_status"] == "400" and record["error_code"] == "upstream_rejected"
    assert (record["upstream_type"], record["upstream_code"], record["upstream_param"]) == ("invalid_request_error", "model_not_found", "model")
    assert record["upstream_message"].startswith("Incorrect API key provided: [redacted]")
    text = json.dumps(record)
    assert "SECRET" not in text and "0123456789abcdef0123456789abcdef" not in text


def test_a_mid_stream_error_payload_is_logged_too():
    with FakeUpstream() as fake, Records() as records:
        fake.push(Plan(tokens=["a", "b"], fault="error_payload", fault_after=1, echo_auth=True))
        [(items, code)] = run(fake.base_url)
    assert items == ["a"] and code == "upstream_unavailable"
    [record] = records.errors()
    assert record["upstream_status"] == "200" and record["upstream_type"] == "server_error" and "overloaded" in record["upstream_message"]
    assert "SECRET" not in json.dumps(record)


def test_a_connection_failure_is_logged_without_a_response():
    with Records() as records:
        [(items, code)] = run(f"http://127.0.0.1:{free_port()}/v1")
    assert code == "upstream_unavailable"
    [record] = records.errors()
    assert record["upstream_status"] == "connect_error" and record["exception"]


def test_the_client_never_sees_the_upstreams_text():
    error = {"message": f"Traceback (most recent call last): File app.py, key {KEY}", "type": "internal_server_error", "param": None, "code": None}
    with FakeUpstream() as fake:
        fake.push(Plan(status=500, error=error), Plan(status=400, error=dict(error, message="bad request: the secret prompt")))
        with LiveApp(upstream_env(fake)) as live:
            raw = httpx.post(live.url + STREAM_PATH, json={"message": "hi", "mode": "chat"}, timeout=20).content
            raw += httpx.post(live.url + STREAM_PATH, json={"message": "hi", "mode": "chat"}, timeout=20).content
    codes = [d["code"] for k, d in parse_frames(raw) if k == "error"]
    assert codes == ["upstream_unavailable", "upstream_rejected"]
    assert b"Traceback" not in raw and b"SECRET" not in raw and b"secret prompt" not in raw


def test_redact():
    assert redact(f"key {KEY} and Bearer abc.def and api_key=hunter2 end") == "key [redacted] and [redacted] and [redacted] end"
    assert redact("see /site-packages/llama_cpp/server/app.py line 376") == "see /site-packages/llama_cpp/server/app.py line 376"
    assert redact("x" * 10_000).endswith("...") and len(redact("x" * 10_000)) < 600
    assert redact(KEY, secret=KEY) == "[redacted]"


# -- context too long ----------------------------------------------------------------------------


@pytest.mark.parametrize("error", [
    {"message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.",
     "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"},
    {"message": "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens", "type": "BadRequestError", "param": None, "code": 400},
    {"code": 400, "message": "the request exceeds the available context size, try increasing it", "type": "exceed_context_size_error"},
    {"message": "prompt is too long: 210000 tokens > 200000 maximum", "type": "invalid_request_error"},
])
def test_prompt_too_long_answers_are_context_too_long(error):
    assert is_context_too_long(error)
    with FakeUpstream() as fake, Records() as records:
        fake.push(Plan(status=400, error=error))
        [(items, code)] = run(fake.base_url)
    assert code == "context_too_long"
    assert records.errors()[0]["error_code"] == "context_too_long"


def test_other_refusals_are_not_context_too_long():
    assert not is_context_too_long({"message": "model 'x' not found", "code": "model_not_found"})
    assert not is_context_too_long({"message": "Invalid API key", "code": "invalid_api_key"})


def test_context_too_long_reaches_the_client_as_non_retryable():
    with FakeUpstream() as fake:
        fake.push(Plan(status=400, error={"message": "maximum context length exceeded", "type": "invalid_request_error", "code": "context_length_exceeded"}))
        with LiveApp(upstream_env(fake)) as live:
            frames = parse_frames(httpx.post(live.url + STREAM_PATH, json={"message": "hi", "mode": "chat"}, timeout=20).content)
    [error] = [d for k, d in frames if k == "error"]
    assert error["code"] == "context_too_long" and error["retryable"] is False
    assert "Shorten" in error["message"]


# -- an empty 200: a prompt over the context, or a server that died --------------------------------
#
# llama-cpp-python answers a prompt over its context with HTTP 200 and an empty body that ends
# cleanly (the zero-size chunk); a server process that dies sends HTTP 200 and its head, then
# the connection closes without it. Only the first is context_too_long; the second is an
# interrupted answer, and the server is not healthy.


def over_raw(handler, count: int, transport: str) -> tuple[list[tuple[list, str | None]], UpstreamHealth]:  # type: ignore[no-untyped-def]
    """`count` chat answers from one OpenAICompatible instance whose upstream is a raw server
    running `handler`, its outcomes observed by a fresh UpstreamHealth."""

    async def check(url: str, state: dict) -> tuple[list[tuple[list, str | None]], UpstreamHealth]:
        health = UpstreamHealth()
        settings = Settings.from_env({"OPENAI_BASE_URL": url + "/v1", "OPENAI_API_KEY": KEY, "UPSTREAM_MAX_RETRIES": "0"})
        async with httpx.AsyncClient(transport=StreamingTransport() if transport == "ours" else None) as client:
            model = OpenAICompatible(settings, client, observe=health.observe)
            return [await answer(model) for _ in range(count)], health

    return asyncio.run(serve(handler)(check))


ROLE_CHUNK = b'data: {"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"role": "assistant"}, "logprobs": null, "finish_reason": null}]}\n\n'
TOKEN_CHUNK = b'data: {"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"content": "In"}, "logprobs": null, "finish_reason": null}]}\n\n'


@pytest.mark.parametrize("transport", ["httpx", "ours"])
def test_a_clean_empty_200_is_context_too_long_and_the_server_stays_healthy(transport):
    with Records() as records:
        results, health = over_raw(answering_once(LLAMA_CPP_OVER_CONTEXT), 1, transport)
    assert results == [([], "context_too_long")]
    assert "empty body" in records.errors()[0]["problem"]
    assert health.consecutive_failures == 0 and not health.degraded and health.last_success_at is not None


@pytest.mark.parametrize("transport", ["httpx", "ours"])
@pytest.mark.parametrize("body", [b"", chunked(ROLE_CHUNK, TOKEN_CHUNK, end=False)], ids=["before-any-byte", "mid-answer"])
def test_a_200_cut_before_its_zero_size_chunk_is_interrupted_and_degrades_health(body, transport):
    results, health = over_raw(answering_once(LLAMA_CPP_HEAD + body), DEGRADED_AFTER, transport)
    expected_items = ["In"] if body else []
    assert results == [(expected_items, "upstream_interrupted")] * DEGRADED_AFTER
    assert health.consecutive_failures == DEGRADED_AFTER and health.degraded
    assert health.last_error_code == "upstream_interrupted" and health.last_success_at is None


def test_an_empty_body_read_until_the_close_is_interrupted_it_cannot_show_a_clean_end():
    # No Content-Length, no chunked: the close is the body's only end, and a crash looks the same.
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
    results, health = over_raw(answering_once(head), 1, "ours")
    assert results == [([], "upstream_interrupted")] and health.consecutive_failures == 1


@pytest.mark.parametrize("transport", ["httpx", "ours"])
def test_an_empty_body_of_content_length_zero_ended_by_its_framing_is_context_too_long(transport):
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 0\r\n\r\n"
    results, health = over_raw(answering_once(head), 1, transport)
    assert results == [([], "context_too_long")] and health.consecutive_failures == 0


BODY_ENDINGS = {
    "complete": (chunked(ROLE_CHUNK, TOKEN_CHUNK, b"data: [DONE]\n\n"), None),
    "empty, ended cleanly": (chunked(), "context_too_long"),
    "empty, cut": (b"", "upstream_interrupted"),
    "cut mid-answer": (chunked(ROLE_CHUNK, TOKEN_CHUNK, end=False), "upstream_interrupted"),
    "ended without [DONE]": (chunked(ROLE_CHUNK, TOKEN_CHUNK), "upstream_interrupted"),
    "an error payload": (chunked(b'data: {"error": {"message": "boom", "code": 500}}\n\n'), "upstream_unavailable"),
    "not JSON": (chunked(b"data: {oops\n\n"), "upstream_invalid_response"),
}


@pytest.mark.parametrize("transport", ["httpx", "ours"])
@pytest.mark.parametrize("ending", BODY_ENDINGS)
def test_every_ending_of_a_200_body_is_observed_once_with_its_code_and_logged_once_if_it_failed(ending, transport):
    body, code = BODY_ENDINGS[ending]

    async def check(url: str, state: dict) -> tuple[str | None, list]:
        observed: list = []
        settings = Settings.from_env({"OPENAI_BASE_URL": url + "/v1", "OPENAI_API_KEY": KEY, "UPSTREAM_MAX_RETRIES": "0"})
        async with httpx.AsyncClient(transport=StreamingTransport() if transport == "ours" else None) as client:
            model = OpenAICompatible(settings, client, observe=lambda status, error: observed.append((status, error)))
            _, got = await answer(model)
        return got, observed

    with Records() as records:
        got, observed = asyncio.run(serve(answering_once(LLAMA_CPP_HEAD + body))(check))
    assert got == code and observed == [("200", code)]
    assert [r["error_code"] for r in records.errors()] == ([code] if code else [])


def test_a_body_with_bytes_but_no_done_is_still_interrupted():
    with FakeUpstream() as fake:
        fake.push(Plan(raw=chunked(b": ping - 2026-12-01 21:36:31\n\n"), headers=SSE))
        [(items, code)] = run(fake.base_url)
    assert code == "upstream_interrupted"


# -- Retry-After ---------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    ("3", 3.0), ("0", 0.0), ("2.5", 2.5), ("7200", 3600.0), ("3600", 3600.0),
    ("inf", None), ("Infinity", None), ("1e308", None), ("nan", None), ("-1", None), ("-inf", None),
    ("Wed, 21 Oct 2026 07:28:00 GMT", None), ("", None), (None, None),
])
def test_retry_after_is_finite_and_bounded(raw, expected):
    assert retry_after(raw) == expected


@pytest.mark.parametrize("value", ["inf", "1e308", "nan", "-5"])
def test_a_hostile_retry_after_gives_valid_json_on_both_routes(value):
    with FakeUpstream() as fake:
        fake.push(Plan(status=429, headers={"retry-after": value}), Plan(status=429, headers={"retry-after": value}))
        with LiveApp(upstream_env(fake)) as live:
            raw = httpx.post(live.url + STREAM_PATH, json={"message": "hi", "mode": "chat"}, timeout=20).content
            buffered = httpx.post(live.url + BUFFERED_PATH, json={"message": "hi", "mode": "chat"}, timeout=20)
    assert b"Infinity" not in raw and b"NaN" not in raw
    [error] = [d for k, d in parse_frames(raw) if k == "error"]
    assert error["code"] == "upstream_rate_limited" and error.get("retry_after") is None
    assert buffered.status_code != 500
    body = json.loads(buffered.text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert "Infinity" not in buffered.text
    assert body["error"]["code"] == "upstream_rate_limited" and "retry-after" not in buffered.headers


def test_a_sane_retry_after_is_passed_on():
    with FakeUpstream() as fake:
        fake.push(Plan(status=429, headers={"retry-after": "7"}))
        [(items, code)] = run(fake.base_url)
    assert code == "upstream_rate_limited"


# -- observe -------------------------------------------------------------------------------------


def test_observe_is_called_once_per_upstream_request_with_its_outcome():
    observed: list = []
    with FakeUpstream() as fake:
        fake.push(
            Plan(tokens=["a"]),
            Plan(status=429, headers={"retry-after": "1"}),
            Plan(status=503),
            Plan(tokens=["a", "b"], fault="no_done", fault_after=1),
            Plan(reject_param="max_tokens", tokens=["ok"]),
            Plan(tokens=["a", "b", "c"], fault="malformed", fault_after=1),
        )
        results = run(fake.base_url, count=5, observed=observed)
        assert [code for _, code in results] == [None, "upstream_rate_limited", "upstream_unavailable", "upstream_interrupted", None]
        assert observed == [("200", None), ("429", "upstream_rate_limited"), ("503", "upstream_unavailable"), ("200", "upstream_interrupted"),
                            ("400", "upstream_rejected"), ("200", None)]
        observed.clear()
        [(items, code)] = run(fake.base_url, observed=observed)
        assert code == "upstream_invalid_response" and observed == [("200", "upstream_invalid_response")]


def test_observe_reports_a_refused_connection_and_a_close_by_this_side():
    observed: list = []
    run(f"http://127.0.0.1:{free_port()}/v1", observed=observed)
    assert observed == [("connect_error", "upstream_unavailable")]
    observed.clear()
    with FakeUpstream() as fake:
        fake.push(Plan(tokens=[f"t{i}" for i in range(50)], interval_ms=5))
        [(items, code)] = run(fake.base_url, observed=observed, close_after=2)
    assert code is None and items == ["t0", "t1"]
    assert observed == [("200", None)]


def test_observe_reports_a_timeout_without_a_response():
    observed: list = []
    with FakeUpstream() as fake:
        fake.push(Plan(tokens=["a"], first_delay_ms=3000))
        settings = Settings.from_env({"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": KEY, "UPSTREAM_MAX_RETRIES": "0",
                                      "UPSTREAM_IDLE_TIMEOUT_SECONDS": "0.3"})

        async def main() -> str | None:
            async with httpx.AsyncClient() as client:
                model = OpenAICompatible(settings, client, observe=lambda s, c: observed.append((s, c)))
                try:
                    async for _ in model.stream(build_prompt("chat", "hi", None, ()), 64):
                        pass
                except AgentError as exc:
                    return exc.code
            return None

        assert asyncio.run(main()) == "upstream_timeout"
    # The head came (200), then silence past the idle timeout.
    assert observed == [("200", "upstream_timeout")]


def test_an_observer_that_raises_does_not_end_the_answer():
    def broken(status: str, code: str | None) -> None:
        raise RuntimeError("observer bug")

    with FakeUpstream() as fake:
        settings = Settings.from_env({"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": KEY, "UPSTREAM_MAX_RETRIES": "0"})

        async def main() -> list:
            async with httpx.AsyncClient() as client:
                model = OpenAICompatible(settings, client, observe=broken)
                return [item async for item in model.stream(build_prompt("chat", "hi", None, ()), 64)]

        items = asyncio.run(main())
    assert isinstance(items[-1], Finish) and math.isfinite(len(items))
