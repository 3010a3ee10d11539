#!/usr/bin/env python3
"""What the run log costs per event, and how fast a join gets its first replayed frame.

    python3 bench/runlog.py [--events 20000] [--readers 50]

1. Per event, in one event loop with no sockets: a run's events written to a do-nothing
   `send` the way a response did before runs had logs (iterate `Run.events()`, encode, send),
   against the way they go now (the producer task appends each frame to the MemoryLog and,
   the reader being alone and caught up, writes it with the reader's write), and against the
   slow path (the reader task wakes and sends it: two readers, or one behind). `--readers`
   runs that many at once, as at C=50. The difference is the run log's hop; bench/run.py's C=50 figure is the whole token
   path it is compared with (docs/performance.md).
2. A join's time to its first replayed frame for a finished run of 2,000 events, over a
   real socket: the app under uvicorn on 127.0.0.1, a fake upstream, GET with Last-Event-ID.
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import time
from typing import AsyncIterator

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from agent.config import Settings  # noqa: E402
from agent.events import encode  # noqa: E402
from agent.model import Finish  # noqa: E402
from agent.request import AgentRequest  # noqa: E402
from agent.run import Run  # noqa: E402
from runs.registry import Runs, new_run_id  # noqa: E402


class Deltas:
    """A model that yields its deltas at once, one loop turn apart (as reads from a socket are)."""

    provider, model = "bench", "bench"

    def __init__(self, n: int) -> None:
        self.n = n

    async def stream(self, prompt: object, max_tokens: int) -> AsyncIterator[str | Finish]:
        for i in range(self.n):
            await asyncio.sleep(0)
            yield f"tok{i % 97} "
        yield Finish("stop", {"prompt_tokens": 1, "completion_tokens": self.n, "total_tokens": self.n + 1})


async def _noop_send(message: dict) -> None:
    return None


def _run(n: int) -> Run:
    return Run(AgentRequest("hi", None, (), "chat"), Deltas(n), "bench", n + 10)


async def direct(n: int, readers: int) -> None:
    async def one() -> None:
        async for event in _run(n).events():
            await _noop_send({"type": "http.response.body", "body": encode(event), "more_body": True})

    await asyncio.gather(*(one() for _ in range(readers)))


async def through_log(n: int, readers: int, in_hand: bool = True) -> None:
    runs = Runs(Settings(run_detached_grace_seconds=0))

    async def one() -> None:
        run_id = new_run_id()
        live = runs.open(_run(n), run_id, joinable=True, on_end=lambda live: None)
        live.attach()
        live.start()
        async def write(entry: tuple) -> None:
            await _noop_send({"type": "http.response.body", "body": entry[2], "more_body": True})

        # As web/stream.py reads: frames the reader is behind on, then the producer writes with
        # `write` while this reader is alone and caught up (runs/log.py, the reader in hand).
        async for entry in live.log.read(0, write if in_hand else None):
            await write(entry)
        live.detach()

    await asyncio.gather(*(one() for _ in range(readers)))


def cpu_per_event(fn, n: int, readers: int, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        asyncio.run(fn(n, readers))
        best = min(best, (time.process_time() - started) / (n * readers))
    return best


def join_first_frame(events: int) -> float:
    import httpx

    from tests.support.fake_upstream import FakeUpstream, Plan
    from tests.support.servers import STREAM_PATH, LiveApp

    with FakeUpstream(Plan(tokens=[f"w{i} " for i in range(events - 2)])) as fake:
        env = {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "sk-bench", "RUN_DETACHED_GRACE_SECONDS": "15"}
        with LiveApp(env) as live, httpx.Client(timeout=30) as client:
            response = client.post(live.url + STREAM_PATH, json={"message": "hi"})
            location = response.headers["content-location"]
            run_id = location.split("/")[-2]
            best = float("inf")
            for _ in range(20):
                started = time.perf_counter()
                with client.stream("GET", live.url + location, headers={"last-event-id": f"{run_id}-0"}) as joined:
                    for _piece in joined.iter_raw():
                        best = min(best, time.perf_counter() - started)
                        break
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=4000, help="events per run")
    parser.add_argument("--readers", type=int, default=50, help="runs at once")
    parser.add_argument("--join-events", type=int, default=2000)
    a = parser.parse_args()
    before = cpu_per_event(direct, a.events, a.readers)
    after = cpu_per_event(through_log, a.events, a.readers)
    woken = cpu_per_event(functools.partial(through_log, in_hand=False), a.events, a.readers)
    print(f"per event, {a.readers} runs at once, best of 5 (CPU):")
    print(f"  events -> send directly                    {before * 1e6:6.2f} us")
    print(f"  producer -> log, the producer writes       {after * 1e6:6.2f} us  (+{(after - before) * 1e6:.2f} us)")
    print(f"  producer -> log -> reader task wakes       {woken * 1e6:6.2f} us  (+{(woken - before) * 1e6:.2f} us)")
    first = join_first_frame(a.join_events)
    print(f"join of a finished {a.join_events}-event run, Last-Event-ID: 0, first frame: {first * 1000:.2f} ms (best of 20)")


if __name__ == "__main__":
    main()
