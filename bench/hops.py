#!/usr/bin/env python3
"""Our own hops of the token path, timed alone: no sockets, no event loop wake-ups.

    python3 bench/hops.py [--tokens 50000]

Feeds the benchmark upstream's real chunk (one token, HTTP chunk framing included) through
each hop that is our code, in the order a token takes (docs/token-path.md, hops 2-8), and
prints the time per token of each, best of five rounds. What this leaves out (uvloop,
uvicorn, the syscalls, waking the task) is the difference to the whole-server figures of
bench/run.py and bench/icount.py.

A second table times each "usual read" fast path on the token path against the general path
it stands in for, on the same tokens: the figure that says whether the fast path is worth
its lines (tests/test_sse.py and tests/test_upstream_decode.py hold each equal to its slow path).
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
import time
from typing import AsyncIterator

import h11

HERE = os.path.dirname(os.path.abspath(__file__))
# The project root only: bench/ on sys.path would shadow the `upstream` package with bench/upstream.py.
sys.path.insert(0, os.path.dirname(HERE))

from agent.events import Chat, encode, encode_generic  # noqa: E402
from agent.model import Finish  # noqa: E402
from agent.request import AgentRequest  # noqa: E402
from agent.run import Run  # noqa: E402
from upstream.decode import ChatStreamDecoder, _loads  # noqa: E402
from upstream.sse import EventDataDecoder, EventDecoder, LineDecoder  # noqa: E402
from upstream.transport import MAX_INCOMPLETE_EVENT_BYTES, BodyDecoder  # noqa: E402


def _bench_upstream():  # type: ignore[no-untyped-def]
    """bench/upstream.py as a module, loaded by path (its name is the package's)."""
    spec = importlib.util.spec_from_file_location("bench_upstream", os.path.join(HERE, "upstream.py"))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


class DeltaModel:
    """A model that yields prepared deltas at once: Run.events' loop with nothing else in it."""

    provider, model = "bench", "bench"

    def __init__(self, deltas: list[str]) -> None:
        self.deltas = deltas

    async def stream(self, prompt: object, max_tokens: int) -> AsyncIterator[str | Finish]:
        for delta in self.deltas:
            yield delta
        yield Finish("stop", None)


def response_in_body() -> h11.Connection:
    """An h11 client connection as the transport's is when the body starts: request sent,
    a chunked response head received."""
    http = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_INCOMPLETE_EVENT_BYTES)
    http.send(h11.Request(method="POST", target="/v1/chat/completions", headers=[("host", "bench"), ("content-length", "0")]))
    http.send(h11.EndOfMessage())
    http.receive_data(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
    assert type(http.next_event()) is h11.Response
    return http


def dechunk_each(chunks: list[bytes]) -> list[bytes]:
    """upstream/transport.py's per-read step, the shipped code: each read fed to the
    `BodyDecoder` that _ResponseStream.__aiter__ feeds, its body bytes handed out."""
    feed = BodyDecoder(response_in_body()).feed
    return [feed(c) for c in chunks]


def timed(fn, rounds: int = 5) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--tokens", type=int, default=50_000)
    args = a.parse_args(argv)
    n = args.tokens
    token_chunk = _bench_upstream().token_chunk  # the chunk bench/upstream.py writes per token
    chunks = [token_chunk("chatcmpl-bench1", "gpt-4o-mini", i, time.time()) for i in range(n)]
    bodies = [b"".join(dechunk_each(chunks[i:i + 1])) for i in range(n)]
    deltas = [d for b in bodies for d in ChatStreamDecoder().feed(b)]
    assert len(deltas) == n
    events = [Chat(d) for d in deltas]

    def dechunk() -> None:
        dechunk_each(chunks)

    def decode() -> None:
        decoder = ChatStreamDecoder()
        for b in bodies:
            decoder.feed(b)

    def run_events() -> None:
        async def drain() -> None:
            request = AgentRequest(message="hi", scenario=None, history=(), mode="chat")
            # An output limit above the delta count: the local limit would end the run early.
            async for _ in Run(request, DeltaModel(deltas), "bench", 10 * len(deltas)).events():  # type: ignore[arg-type]
                pass
        asyncio.run(drain())

    def frames() -> None:
        for e in events:
            encode(e)

    rows = [
        ("2", "HTTP/1.1 framing removed (h11)", "upstream/transport.py · BodyDecoder.feed", timed(dechunk)),
        ("4", "SSE lines → event → JSON → delta", "upstream/decode.py · ChatStreamDecoder.feed", timed(decode)),
        ("7", "the run's loop builds the event", "agent/run.py · Run.events (a model that yields at once)", timed(run_events)),
        ("8", "frame encoding", "agent/events.py · encode", timed(frames)),
    ]
    print("| hop | what | file · function | µs per token |\n|---|---|---|---|")
    for hop, what, where, seconds in rows:
        print("| %s | %s | %s | %.2f |" % (hop, what, where, seconds / n * 1e6))
    print("\nsum of our hops: %.2f µs per token (%d tokens, best of 5, Python %s)"
          % (sum(r[3] for r in rows) / n * 1e6, n, sys.version.split()[0]))

    datas = [d for b in bodies for d in EventDataDecoder().feed(b)]  # each event's data: the chunk's JSON

    def sse_fast() -> None:
        feed = EventDataDecoder().feed
        for b in bodies:
            feed(b)

    def sse_stages() -> None:
        lines, events = LineDecoder(), EventDecoder()
        for b in bodies:
            for line in lines.feed(b):
                events.decode(line)

    def json_fast() -> None:
        for d in datas:
            _loads(d)

    def json_plain() -> None:
        for d in datas:
            json.loads(d)

    def chat_generic() -> None:
        for e in events:
            encode_generic(e)

    pairs = [
        ("upstream/sse.py · EventDataDecoder: a read that is one data event", sse_fast, "the two stages (LineDecoder, EventDecoder)", sse_stages),
        ("upstream/decode.py · _loads (raw_decode)", json_fast, "json.loads", json_plain),
        ("agent/events.py · the chat frame template", frames, "encode_generic", chat_generic),
    ]
    print("\n| fast path | µs per token | general path | µs per token | saved |\n|---|---|---|---|---|")
    for what, fast, general, slow in pairs:
        f, g = timed(fast) / n * 1e6, timed(slow) / n * 1e6
        print("| %s | %.2f | %s | %.2f | %.2f |" % (what, f, general, g, g - f))
    return 0


if __name__ == "__main__":
    sys.exit(main())
