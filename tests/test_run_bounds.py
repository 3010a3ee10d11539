"""The run logs' bounds, measured on the server process: 100 detached runs kept for late joiners.

Each run streams 300 deltas of about 1 KB (about 400 KB of frames), its reader leaves after
two frames, and the run goes on alone (detached) to its end, then is kept for the retention.
Unbounded, that is about 40 MB of logs. RUN_LOGS_TOTAL_BYTES=4 MiB holds the server's RSS
growth under 24 MB, and the oldest logs are the ones given up (a join to them is 409 or 204,
the newest is whole).
"""

from __future__ import annotations

import concurrent.futures
import time

import httpx

from tests.conftest import upstream_env
from tests.support.fake_upstream import FakeUpstream, Plan
from tests.support.harness import ServerProcess
from tests.support.servers import STREAM_PATH

RUNS = 100
TOKENS = 300
TOKEN = "x" * 1000 + " "


def rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def start_and_leave(url: str) -> str:
    with httpx.Client(timeout=30) as client, client.stream("POST", url + STREAM_PATH, json={"message": "hi"}) as response:
        location = response.headers["content-location"]
        frames = 0
        for piece in response.iter_raw():
            frames += piece.count(b"\n\n")
            if frames >= 2:
                break
    return location


def test_a_hundred_detached_runs_stay_within_the_total_bound():
    with FakeUpstream(Plan(tokens=[TOKEN] * TOKENS, interval_ms=1)) as fake:
        env = upstream_env(fake, RUN_DETACHED_GRACE_SECONDS="30", RUN_RETENTION_SECONDS="120",
                           RUN_LOG_MAX_BYTES=str(1024 * 1024), RUN_LOGS_TOTAL_BYTES=str(4 * 1024 * 1024), LOG_LEVEL="warning",
                           MAX_OUTPUT_TOKENS="50000")  # the local output limit counts characters: 1 KB deltas need room
        with ServerProcess(env) as server:
            start_and_leave(server.url)  # warm: imports, pools
            time.sleep(0.5)
            before = rss_kb(server.pid)
            with concurrent.futures.ThreadPoolExecutor(10) as pool:
                locations = list(pool.map(lambda _: start_and_leave(server.url), range(RUNS)))
            deadline = time.monotonic() + 60
            while len(fake.emitted) < (RUNS + 1) * TOKENS and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(fake.emitted) == (RUNS + 1) * TOKENS, "every detached run read its model to the end"
            time.sleep(0.5)
            grown_mb = (rss_kb(server.pid) - before) / 1024
            oldest = httpx.get(server.url + locations[0], timeout=30)
            newest = httpx.get(server.url + locations[-1], timeout=30)
    assert grown_mb < 24, f"RSS grew {grown_mb:.1f} MB for about 40 MB of frames"
    assert oldest.status_code in (204, 409)
    assert newest.status_code == 200 and newest.content.count(b"\nevent: ") == TOKENS + 2
