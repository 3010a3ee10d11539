"""Soak: many requests mixing normal streams, aborts, upstream faults and bad input against
one server process (the Procfile's command), then: no stream open on either side, no
upstream connection left after shutdown, memory growth under 20 MB, and every stream read
to its end finished with `done`.

Size: env SOAK_REQUESTS (default 300, about 20 s; part of the normal run).
    SOAK_REQUESTS=3000 python3 -m pytest -q -s tests/test_soak.py
The figures are printed and written to tests/artifacts/soak-<N>.json.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import httpx

from tests.conftest import upstream_env
from tests.support.harness import ServerProcess, assert_well_formed, chat_text, wait_until
from tests.support.servers import BUFFERED_PATH, STREAM_PATH, FakeUpstream, Plan, iter_frames, parse_frames

REQUESTS = int(os.environ.get("SOAK_REQUESTS", "300"))
WORKERS = 8
MAX_SECONDS = max(120, REQUESTS * 0.25)  # a hard bound on the whole run
RSS_LIMIT_KB = 20 * 1024
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

TOKENS = [f"w{i} " for i in range(20)]

# What the fake upstream does for each kind of request (chosen by a marker in the message).
PLANS: dict[str, Callable[[], Plan]] = {
    "normal": lambda: Plan(tokens=TOKENS),
    "buffered": lambda: Plan(tokens=TOKENS),
    "abort_mid": lambda: Plan(tokens=TOKENS * 5, interval_ms=10),
    "abort_before": lambda: Plan(tokens=TOKENS, first_delay_ms=3000),
    "f401": lambda: Plan(status=401),
    "f429": lambda: Plan(status=429, headers={"retry-after": "2"}),
    "f500": lambda: Plan(status=500),
    "f503": lambda: Plan(status=503),
    "reset": lambda: Plan(tokens=TOKENS, fault="reset", fault_after=3),
    "malformed": lambda: Plan(tokens=TOKENS, fault="malformed", fault_after=2),
    "missing_fields": lambda: Plan(tokens=TOKENS, fault="missing_fields", fault_after=2),
    "no_done": lambda: Plan(tokens=TOKENS, fault="no_done", fault_after=4),
    "error_payload": lambda: Plan(tokens=TOKENS, fault="error_payload", fault_after=1),
    "refuse": lambda: Plan(fault="refuse"),
    "stall": lambda: Plan(tokens=TOKENS, fault="stall", fault_after=2),
}
FAULT_CODES = {
    "f401": ("upstream_auth", 0), "f429": ("upstream_rate_limited", 0), "f500": ("upstream_unavailable", 0),
    "f503": ("upstream_unavailable", 0), "reset": ("upstream_interrupted", 3), "malformed": ("upstream_invalid_response", 2),
    "missing_fields": ("upstream_invalid_response", 2), "no_done": ("upstream_interrupted", 4),
    "error_payload": ("upstream_unavailable", 1), "refuse": ("upstream_unavailable", 0), "stall": ("upstream_timeout", 2),
}
BAD_INPUTS: list[tuple[bytes, dict[str, str], int]] = [
    (b'{"message": ', {}, 400),
    (b'{"message": "caf\xe9"}', {}, 400),
    (b"message=hi", {"content-type": "application/x-www-form-urlencoded"}, 415),
    (json.dumps({"message": ""}).encode(), {}, 422),
    (json.dumps({"message": "hi", "extra": 1}).encode(), {}, 422),
    (json.dumps({"message": "x" * 9000}).encode(), {}, 422),
    (json.dumps({"message": "hi", "scenario": [1]}).encode(), {}, 422),
    (json.dumps({"message": "x" * 300_000}).encode(), {}, 413),
]


def mix(count: int, seed: int) -> list[str]:
    """A shuffled list of request kinds: ~45% normal, 10% buffered, 15% aborts, 15% faults, 15% bad input."""
    rng = random.Random(seed)
    faults = [k for k in FAULT_CODES if k != "stall"]
    kinds: list[str] = []
    for index in range(count):
        roll = rng.random()
        if roll < 0.45:
            kinds.append("normal")
        elif roll < 0.55:
            kinds.append("buffered")
        elif roll < 0.70:
            kinds.append(rng.choice(["abort_mid", "abort_mid", "abort_before"]))
        elif roll < 0.85:
            # Stalls cost UPSTREAM_IDLE_TIMEOUT_SECONDS each: keep them to about 1%.
            kinds.append("stall" if rng.random() < 0.07 else rng.choice(faults))
        else:
            kinds.append(f"bad{rng.randrange(len(BAD_INPUTS))}")
    return kinds


def selector(request: dict) -> Plan | None:
    message = request["messages"][-1]["content"]
    kind = message.split("soak:", 1)[1].split(" ", 1)[0] if "soak:" in message else ""
    factory = PLANS.get(kind)
    return factory() if factory else None


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []
        self.streams_completed = 0
        self.streams_with_done = 0

    def ok(self, kind: str) -> None:
        with self.lock:
            self.outcomes[kind] += 1

    def fail(self, message: str) -> None:
        with self.lock:
            self.failures.append(message)


def run_one(client: httpx.Client, url: str, kind: str, stats: Stats) -> None:
    body = {"message": f"soak:{kind} please", "mode": "chat"}
    if kind.startswith("bad"):
        content, headers, status = BAD_INPUTS[int(kind[3:])]
        response = client.post(url + STREAM_PATH, content=content, headers={"content-type": "application/json", **headers})
        if response.status_code != status or "code" not in response.json().get("error", {}):
            stats.fail(f"{kind}: {response.status_code} {response.text[:200]}")
            return
    elif kind == "buffered":
        response = client.post(url + BUFFERED_PATH, json=body)
        if response.status_code != 200 or response.json()["response"] != "".join(TOKENS):
            stats.fail(f"{kind}: {response.status_code} {response.text[:200]}")
            return
    elif kind.startswith("abort"):
        # Its own connection, dropped mid-answer.
        with httpx.Client(timeout=30) as own:
            with own.stream("POST", url + STREAM_PATH, json=body) as response:
                for _, frame, _ in iter_frames(response):
                    if kind == "abort_before" and frame == "start":
                        break
                    if kind == "abort_mid" and frame == "chat":
                        break
    else:
        response = client.post(url + STREAM_PATH, json=body)
        frames = parse_frames(response.content)
        with stats.lock:
            stats.streams_completed += 1
            if frames and frames[-1][0] == "done":
                stats.streams_with_done += 1
        try:
            error = assert_well_formed(frames)
        except AssertionError as exc:
            stats.fail(f"{kind}: malformed stream {exc}")
            return
        if kind == "normal":
            if error is not None or chat_text(frames) != "".join(TOKENS):
                stats.fail(f"{kind}: {error} {chat_text(frames)[:80]!r}")
                return
        else:
            code, kept = FAULT_CODES[kind]
            if error is None or error["code"] != code or chat_text(frames) != "".join(TOKENS[:kept]):
                stats.fail(f"{kind}: {error} {chat_text(frames)[:80]!r}")
                return
    stats.ok(kind)


def drive(url: str, kinds: list[str], stats: Stats, deadline: float) -> None:
    queue = list(reversed(kinds))
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < deadline:
                with lock:
                    if not queue:
                        return
                    kind = queue.pop()
                try:
                    run_one(client, url, kind, stats)
                except Exception as exc:  # noqa: BLE001 - counted as a failure
                    stats.fail(f"{kind}: {exc!r}")

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(1.0, deadline - time.monotonic()))
    assert not queue, f"{len(queue)} requests not sent before the time limit"


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_soak() -> None:
    started = time.monotonic()
    deadline = started + MAX_SECONDS
    warmup = max(50, REQUESTS // 10)
    kinds = mix(REQUESTS, seed=REQUESTS)
    stats = Stats()
    with FakeUpstream() as fake:
        fake.selector = selector
        env = upstream_env(fake, LOG_LEVEL="info", UPSTREAM_IDLE_TIMEOUT_SECONDS="1", UPSTREAM_MAX_RETRIES="0", MAX_CONCURRENT_STREAMS="100")
        with ServerProcess(env) as server:
            drive(server.url, kinds[:warmup], stats, deadline)
            assert wait_until(lambda: server.health()["active_streams"] == 0, 10)
            rss_start, fds_start = server.rss_kb(), open_fds(server.pid)

            drive(server.url, kinds[warmup:], stats, deadline)
            assert wait_until(lambda: server.health()["active_streams"] == 0, 10), server.health()
            assert fake.wait_idle(10), f"{fake.open_streams} upstream streams still open"
            rss_end, fds_end = server.rss_kb(), open_fds(server.pid)
            idle_upstream_connections = fake.open_connections
            health = server.health()

            server.terminate()
            returncode = server.wait(30)
            log_lines = [line for line in server.json_lines() if line.get("logger") == "scenario_agent.request"]
        assert wait_until(lambda: fake.open_connections == 0, 5), fake.open_connections
    elapsed = time.monotonic() - started

    figures = {
        "requests": REQUESTS,
        "seconds": round(elapsed, 1),
        "requests_per_second": round(REQUESTS / elapsed, 1),
        "outcomes": dict(sorted(stats.outcomes.items())),
        "failures": len(stats.failures),
        "streams_read_to_end": stats.streams_completed,
        "streams_ended_with_done": stats.streams_with_done,
        "rss_after_warmup_mb": round(rss_start / 1024, 1),
        "rss_at_end_mb": round(rss_end / 1024, 1),
        "rss_growth_mb": round((rss_end - rss_start) / 1024, 1),
        "open_fds_after_warmup": fds_start,
        "open_fds_at_end": fds_end,
        "active_streams_at_end": health["active_streams"],
        "upstream_open_streams_at_end": 0,
        "upstream_idle_keepalive_connections_at_end": idle_upstream_connections,
        "upstream_connections_after_shutdown": fake.open_connections,
        "upstream_requests": len(fake.requests),
        "log_lines": len(log_lines),
        "exit_status": returncode,
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"soak-{REQUESTS}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print("\nsoak figures:", json.dumps(figures))

    assert not stats.failures, stats.failures[:20]
    assert sum(stats.outcomes.values()) == REQUESTS
    assert stats.streams_with_done == stats.streams_completed
    assert health["active_streams"] == 0
    assert rss_end - rss_start < RSS_LIMIT_KB, figures
    assert fds_end - fds_start < 20, figures  # no sockets piling up in the server
    assert idle_upstream_connections <= WORKERS * 2, figures  # keep-alive pool, not one per request
    assert len(log_lines) >= REQUESTS  # one per request (plus health checks)
    assert returncode in (0, -15)
