"""The daily token budget is a cap: the two measured ways around it, against a counting upstream.

- 40 clients that each leave after the first frame are charged at least the prompt tokens
  the upstream really read for them (before reservations, they were charged only the deltas
  they received: 40 tokens for 686,720 read).
- 50 parallel requests carrying 60 KiB of history each, with TOKEN_BUDGET_PER_DAY=20000: the
  upstream never produces more than the budget plus one MAX_OUTPUT_TOKENS (before, all 50
  were admitted at once and spent 43 times the budget).

The app runs as the Procfile's process (tests/support/harness.py). The upstream here is a
small OpenAI-compatible server that counts what it produces: the prompt tokens of every
request it reads, and every completion token it writes, stopping at the request's token limit
as real servers do. It counts tokens as a BPE tokenizer counts English prose on average: one
per 4 characters, and 4 of chat framing per message. The app's estimate (one per 3
characters) is an over-count of that, as it is of real tokenizers.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import httpx
import pytest

from tests.support.harness import ServerProcess, wait_until
from tests.support.servers import STREAM_PATH, iter_frames

MAX_OUTPUT_TOKENS = 512


def real_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(math.ceil(len(m.get("content") or "") / 4) + 4 for m in messages)


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
    body = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "counting", "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class CountingUpstream:
    """Streams `answer_tokens` tokens (at most the request's limit), `interval_ms` apart, and counts."""

    def __init__(self, answer_tokens: int, interval_ms: float = 0.0) -> None:
        self.answer_tokens = answer_tokens
        self.interval = interval_ms / 1000
        self.prompt_tokens: list[int] = []  # one entry per request read
        self.completion_tokens = 0  # tokens written, whoever read them
        self.open_answers = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def produced(self) -> int:
        return sum(self.prompt_tokens) + self.completion_tokens

    def __enter__(self) -> "CountingUpstream":
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True, name="counting-upstream")
        self._thread.start()
        assert ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # One request per connection ("connection: close"): every request is counted on its own.
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            headers = dict(line.split(":", 1) for line in head.decode("latin-1").split("\r\n")[1:] if ":" in line)
            length = int(next(v for k, v in headers.items() if k.strip().lower() == "content-length"))
            request = json.loads(await reader.readexactly(length))
        except (asyncio.IncompleteReadError, ConnectionError, StopIteration, ValueError):
            writer.close()
            return
        prompt = real_tokens(request.get("messages", []))
        self.prompt_tokens.append(prompt)  # read, so paid for, whatever happens next
        limit = request.get("max_completion_tokens") or request.get("max_tokens") or self.answer_tokens
        tokens = min(self.answer_tokens, int(limit))
        gone = asyncio.Event()

        async def watch() -> None:
            try:
                while await reader.read(65536):
                    pass
            except ConnectionError:
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        self.open_answers += 1
        sent = 0
        try:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")

            def send(data: bytes) -> None:
                writer.write(b"%x\r\n%s\r\n" % (len(data), data))

            send(chunk({"role": "assistant", "content": ""}))
            for index in range(tokens):
                if gone.is_set():
                    return
                if self.interval:
                    try:
                        await asyncio.wait_for(gone.wait(), self.interval)
                        return
                    except asyncio.TimeoutError:
                        pass
                send(chunk({"content": "tok "}))
                sent += 1
                self.completion_tokens += 1
                if index % 64 == 0:
                    await writer.drain()
            send(chunk({}, "length" if tokens < self.answer_tokens else "stop"))
            usage = {"prompt_tokens": prompt, "completion_tokens": sent, "total_tokens": prompt + sent}
            send(b"data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": usage}).encode() + b"\n\n")
            send(b"data: [DONE]\n\n")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            self.open_answers -= 1
            watcher.cancel()
            writer.close()


def long_history(kib: int) -> list[dict[str, str]]:
    """`kib` KiB of English prose in 20 turns (the history may hold 64 KiB)."""
    sentence = "The incident review covered the timeline, the alerts that fired late, and what the on-call engineer saw first. "
    turn = (sentence * (kib * 1024 // 20 // len(sentence) + 1))[: kib * 1024 // 20]
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": turn} for i in range(20)]


def env_for(upstream: CountingUpstream, **extra: str) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": upstream.base_url,
        "OPENAI_API_KEY": "sk-test-counting",
        "OPENAI_MODEL": "counting",
        "UPSTREAM_MAX_RETRIES": "0",
        "MAX_OUTPUT_TOKENS": str(MAX_OUTPUT_TOKENS),
        **extra,
    }


def settled(server: ServerProcess) -> dict[str, Any]:
    """The budget once no run holds a reservation (every run has ended and settled)."""
    assert wait_until(lambda: server.health()["budget"]["reserved"] == 0 and server.health()["active_streams"] == 0, 15), server.health()
    return server.health()["budget"]


@pytest.fixture
def slow_upstream() -> Iterator[CountingUpstream]:
    with CountingUpstream(answer_tokens=400, interval_ms=10) as upstream:
        yield upstream


def test_clients_leaving_after_the_first_frame_are_charged_the_prompt(slow_upstream: CountingUpstream) -> None:
    body = {"message": "What did we decide about the alerts?", "mode": "chat", "history": long_history(60)}
    # Half a second of detached grace: the run reaches the upstream and reads part of the answer,
    # then is cancelled, so no usage ever arrives and the charge is the app's own count.
    env = env_for(slow_upstream, TOKEN_BUDGET_PER_DAY="10000000", RUN_DETACHED_GRACE_SECONDS="0.5")
    with ServerProcess(env) as server:

        def leave_after_first_frame(_: int) -> str:
            with httpx.Client(timeout=15) as client:
                with client.stream("POST", server.url + STREAM_PATH, json=body) as response:
                    assert response.status_code == 200, response.read()
                    for _, kind, _ in iter_frames(response):
                        return kind
            return ""

        with ThreadPoolExecutor(20) as pool:
            first = list(pool.map(leave_after_first_frame, range(40)))
        assert first == ["start"] * 40
        budget = settled(server)
    assert len(slow_upstream.prompt_tokens) == 40  # every request reached the upstream
    assert slow_upstream.completion_tokens < 40 * 400  # and every answer was cut short
    read = sum(slow_upstream.prompt_tokens)
    assert read > 40 * 15_000  # the test means something: 60 KiB of history each
    assert budget["used"] >= read, (budget["used"], read)
    assert budget["used"] >= slow_upstream.produced  # what it wrote too (by the estimate's margin)


def test_parallel_admission_cannot_spend_past_the_budget() -> None:
    limit = 20_000
    with CountingUpstream(answer_tokens=MAX_OUTPUT_TOKENS) as upstream:  # every answer as long as allowed
        with ServerProcess(env_for(upstream, TOKEN_BUDGET_PER_DAY=str(limit), MAX_CONCURRENT_STREAMS="100")) as server:

            def burst(history_kib: int) -> list[tuple[int, str]]:
                body = {"message": "Summarize the review.", "mode": "chat", "history": long_history(history_kib)}
                barrier = threading.Barrier(50)

                def post(_: int) -> tuple[int, str]:
                    barrier.wait(10)
                    response = httpx.post(server.url + STREAM_PATH, json=body, timeout=60)
                    if response.status_code == 200:
                        return 200, "done" if "event: done" in response.text else response.text[-200:]
                    return response.status_code, response.json()["error"]["code"]

                with ThreadPoolExecutor(50) as pool:
                    return list(pool.map(post, range(50)))

            # The measured burst: 50 at once, 60 KiB of history each. One reservation (the prompt
            # estimate, above 20,000 tokens, plus MAX_OUTPUT_TOKENS) can never fit: 422, not a wait.
            started = time.monotonic()
            results = burst(60)
            assert set(results) == {(422, "request_over_budget")}, results
            assert upstream.produced <= limit + MAX_OUTPUT_TOKENS, upstream.produced
            # Smaller histories, where several reservations fit: some are admitted, and what the
            # upstream produces still stays under the cap.
            results = burst(6)
            assert set(results) <= {(200, "done"), (429, "budget_exhausted")}, results
            admitted = results.count((200, "done"))
            assert 1 <= admitted < 50, results
            budget = settled(server)
            elapsed = time.monotonic() - started
    assert len(upstream.prompt_tokens) == admitted
    assert upstream.produced <= limit + MAX_OUTPUT_TOKENS, (upstream.produced, admitted)
    # Every answer ended with the server's usage: the charge is exactly what was produced.
    assert budget["used"] == upstream.produced
    assert elapsed < 20
