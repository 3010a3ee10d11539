#!/usr/bin/env python3
"""Our own hops of the token path, timed alone: no sockets, no event loop wake-ups.

    python3 bench/hops.py [--tokens 50000]

Feeds the benchmark upstream's real chunk (one token, HTTP chunk framing included) through
each hop that is our code, in the order a token takes (docs/token-path.md, hops 2-8), and
prints the time per token of each, best of five rounds. What this leaves out (uvloop,
uvicorn, the syscalls, waking the task) is the difference to the whole-server figures of
bench/run.py and bench/icount.py.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import AsyncIterator

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from agent.model import Finish
from upstream.decode import ChatStreamDecoder  # noqa: E402
from agent.request import AgentRequest  # noqa: E402
from agent.run import Run  # noqa: E402
from agent.events import encode  # noqa: E402
from upstream.transport import ChunkedBody  # noqa: E402
from upstream import token_chunk  # noqa: E402  (bench/upstream.py: the chunk it writes per token)


class DeltaModel:
    """A model that yields prepared deltas at once: Run.events' loop with nothing else in it."""

    provider, model = "bench", "bench"

    def __init__(self, deltas: list[str]) -> None:
        self.deltas = deltas

    async def stream(self, prompt: object, max_tokens: int) -> AsyncIterator[str | Finish]:
        for delta in self.deltas:
            yield delta
        yield Finish("stop", None)


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
    chunks = [token_chunk("chatcmpl-bench1", "gpt-4o-mini", i, time.time()) for i in range(n)]
    bodies = [ChunkedBody().feed(c) for c in chunks]
    deltas = [d for b in bodies for d in ChatStreamDecoder().feed(b)]
    assert len(deltas) == n
    events = [{"type": "chat", "content": d, "streaming": True} for d in deltas]

    def dechunk() -> None:
        body = ChunkedBody()
        for c in chunks:
            body.feed(c)

    def decode() -> None:
        decoder = ChatStreamDecoder()
        for b in bodies:
            decoder.feed(b)

    def run_events() -> None:
        async def drain() -> None:
            request = AgentRequest(message="hi", scenario=None, history=(), mode="chat")
            async for _ in Run(request, DeltaModel(deltas), "bench", 2048).events():  # type: ignore[arg-type]
                pass
        asyncio.run(drain())

    def frames() -> None:
        for e in events:
            encode(e)

    rows = [
        ("2", "chunked framing removed", "agent/transport.py · ChunkedBody.feed", timed(dechunk)),
        ("4", "SSE lines → event → JSON → delta", "agent/llm.py · ChatStreamDecoder.feed", timed(decode)),
        ("7", "the run's loop builds the event", "agent/run.py · Run.events (a model that yields at once)", timed(run_events)),
        ("8", "frame encoding", "agent/sse.py · encode", timed(frames)),
    ]
    print("| hop | what | file · function | µs per token |\n|---|---|---|---|")
    for hop, what, where, seconds in rows:
        print("| %s | %s | %s | %.2f |" % (hop, what, where, seconds / n * 1e6))
    print("\nsum of our hops: %.2f µs per token (%d tokens, best of 5, Python %s)"
          % (sum(r[3] for r in rows) / n * 1e6, n, sys.version.split()[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
