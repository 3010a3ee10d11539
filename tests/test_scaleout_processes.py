"""Scale-out over real sockets: two app processes (uvicorn, as the Procfile runs it) on one real
redis-server, and a counting fake upstream. No mock of Redis.

Two pairs of processes: `pair` (join, Stop, the rate limit with B's clock an hour ahead,
/metrics, a small TOKEN_BUDGET_PER_DAY under 50 parallel requests, then Redis killed and
restarted) and `tight` (MAX_CONCURRENT_STREAMS=2: slots, kill -9 of an owner).
Requests carry their own X-Forwarded-For (FORWARDED_TRUSTED_HOPS=1) so each test is its own
client for the rate limit.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from email.utils import parsedate_to_datetime
from typing import Any, Iterator

import httpx
import pytest

from tests.conftest import upstream_env
from tests.support.fake_upstream import FakeUpstream, Plan
from tests.support.harness import ServerProcess, wait_until
from tests.support.redis_server import RedisServer, available, redis_server  # noqa: F401  (fixture)
from tests.support.servers import HEALTH_PATH, STREAM_PATH, parse_frames

pytestmark = pytest.mark.skipif(not available(), reason="redis-server is not installed (apt-get install -y redis-server)")

PROC_TTL = 3.0  # scaleout/run_log.py PROC_TTL_MS
LEASE = 10.0  # scaleout/limits.py LEASE_MS
BREAKER = 3.0  # scaleout/client.py BREAKER_SECONDS
RATE_N = 5

_addresses = (f"198.18.{i // 250}.{i % 250 + 1}" for i in itertools.count())


def client() -> dict[str, str]:
    """Headers of a new client, as the trusted proxy in front would write them."""
    return {"x-forwarded-for": next(_addresses)}


def plans(request: dict) -> Plan | None:
    """The fake upstream's answer, chosen by a marker in the user's message."""
    text = json.dumps(request.get("messages", []))
    if "[slow]" in text:
        return Plan(tokens=[f"s{i} " for i in range(600)], interval_ms=20)
    if "[paced]" in text:
        return Plan(tokens=[f"p{i} " for i in range(40)], interval_ms=25)
    if "[long]" in text:
        return Plan(tokens=[f"w{i} " for i in range(380)])
    return Plan(tokens=["Hello", " there", "."])


def split(raw: bytes) -> list[bytes]:
    """An event stream's frames, each with its blank line."""
    return [block + b"\n\n" for block in raw.split(b"\n\n")[:-1]]


class Reader(threading.Thread):
    """Reads one streaming response in the background: status, headers, raw bytes, frames' arrival times."""

    def __init__(self, method: str, url: str, *, json_body: Any = None, headers: dict[str, str] | None = None, stop_after_frames: int | None = None) -> None:
        super().__init__(daemon=True)
        self.method, self.url, self.json_body, self.headers = method, url, json_body, headers or {}
        self.stop_after_frames = stop_after_frames
        self.status: int | None = None
        self.response_headers: httpx.Headers | None = None
        self.raw = b""
        self.arrivals: list[float] = []
        self.got_frames = threading.Event()
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            with httpx.Client(timeout=30) as http:
                with http.stream(self.method, self.url, json=self.json_body, headers=self.headers) as response:
                    self.status, self.response_headers = response.status_code, response.headers
                    for piece in response.iter_raw():
                        self.raw += piece
                        self.arrivals.extend([time.monotonic()] * piece.count(b"\n\n"))
                        if self.raw.count(b"\n\n") >= 1:
                            self.got_frames.set()
                        if self.stop_after_frames is not None and self.raw.count(b"\n\n") >= self.stop_after_frames:
                            return  # the client goes away: its connection is closed here
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.got_frames.set()

    @property
    def frames(self) -> list[bytes]:
        return split(self.raw)

    def kinds(self) -> list[str]:
        return [kind for kind, _ in parse_frames(b"".join(self.frames))]

    def finish(self, timeout: float = 20) -> "Reader":
        self.join(timeout)
        assert not self.is_alive(), f"still reading {self.url}"
        assert self.error is None, self.error
        return self


def post(server: ServerProcess, message: str, headers: dict[str, str] | None = None, timeout: float = 30) -> httpx.Response:
    return httpx.post(server.url + STREAM_PATH, json={"message": message}, headers={**client(), **(headers or {})}, timeout=timeout)


def run_id_of(reader: Reader) -> str:
    assert reader.response_headers is not None
    return reader.response_headers["content-location"].split("/")[-2]


def join_url(server: ServerProcess, run_id: str) -> str:
    return f"{server.url}/api/agent/scenario/runs/{run_id}/stream"


def health(server: ServerProcess) -> dict[str, Any]:
    return httpx.get(server.url + HEALTH_PATH, timeout=5).json()


@pytest.fixture(scope="module")
def redis(redis_server: RedisServer) -> RedisServer:
    return redis_server


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        upstream.selector = plans
        yield upstream


def _pair(redis: RedisServer, fake: FakeUpstream, b_env: dict[str, str] | None = None, **env: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    common = upstream_env(fake, REDIS_URL=redis.url, FORWARDED_TRUSTED_HOPS="1", RUN_DETACHED_GRACE_SECONDS="10", LOG_LEVEL="warning", **env)
    servers = (ServerProcess(common), ServerProcess({**common, **(b_env or {})}))
    with ExitStack() as stack:
        with ThreadPoolExecutor(2) as pool:  # both start at once
            started = [pool.submit(server.__enter__) for server in servers]
        failure = None
        for server, future in zip(servers, started):
            if future.exception() is None:
                stack.callback(server.__exit__, None, None, None)
            else:
                failure = future.exception()
        if failure is not None:
            raise failure
        yield servers


BUDGET = 3000
MAX_OUTPUT = 400


@pytest.fixture(scope="module")
def pair(redis: RedisServer, fake: FakeUpstream) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    # B's own clock runs an hour ahead (the test hook shifts time.time in that process only).
    # The budget fails open here, so that streams go on while Redis is killed; failing closed
    # (the default) is in test_scaleout.py.
    yield from _pair(redis, fake, {"SCALEOUT_TEST_CLOCK_OFFSET_SECONDS": "3600"}, RATE_LIMIT_PER_MINUTE=str(RATE_N),
                     TOKEN_BUDGET_PER_DAY=str(BUDGET), MAX_OUTPUT_TOKENS=str(MAX_OUTPUT), BUDGET_FAIL_OPEN="true")


# -- join, Stop, rate limit, metrics -------------------------------------------------------


def test_a_run_started_on_a_and_joined_on_b_gives_the_same_bytes_to_the_end(pair: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = pair
    for k in (0, 1, 6):
        # The POST's reader on A is cut after k frames (its run goes on: detached grace);
        # an uninterrupted reader on A (a local join from the start) is the reference.
        cut = Reader("POST", a.url + STREAM_PATH, json_body={"message": "[paced] go"}, headers=client(), stop_after_frames=max(k, 1))
        assert cut.got_frames.wait(10)
        cut.finish()
        run_id = run_id_of(cut)
        reference = Reader("GET", join_url(a, run_id))
        joined = Reader("GET", join_url(b, run_id), headers={"last-event-id": f"{run_id}-{k}"})
        reference.finish()
        joined.finish()
        assert reference.status == 200 and joined.status == 200
        assert joined.response_headers is not None and joined.response_headers["content-location"].endswith(f"/runs/{run_id}/stream")
        whole = reference.frames
        assert len(whole) == 1 + 40 + 1 and whole[0].startswith(b"retry: 2000\nid: %s-1\n" % run_id.encode())
        assert joined.frames == whole[k:], k
        assert joined.kinds()[-1] == "done"
        assert cut.frames[:k] == whole[:k]
    # After `done`: nothing more, at once; an unknown run: 204.
    after_done = httpx.get(join_url(b, run_id), headers={"last-event-id": f"{run_id}-{len(whole)}"}, timeout=10)
    assert after_done.status_code == 200 and after_done.content == b""
    assert httpx.get(join_url(b, "0" * 32), timeout=10).status_code == 204


def test_a_stop_sent_to_b_closes_the_upstream_on_a_within_a_second(pair: tuple[ServerProcess, ServerProcess], fake: FakeUpstream) -> None:
    a, b = pair
    reader = Reader("POST", a.url + STREAM_PATH, json_body={"message": "[slow] go"}, headers=client())
    assert wait_until(lambda: reader.raw.count(b"\n\n") >= 3, 10)
    run_id = run_id_of(reader)
    closes = len(fake.disconnects)
    sent = time.monotonic()
    assert httpx.delete(f"{b.url}/api/agent/scenario/runs/{run_id}", timeout=5).status_code == 204
    assert wait_until(lambda: len(fake.disconnects) > closes, 3)
    assert fake.disconnects[-1] - sent < 1.0, fake.disconnects[-1] - sent
    reader.finish()
    kinds = reader.kinds()
    assert kinds[-2:] == ["error", "done"] and len(kinds) < 100
    assert parse_frames(reader.frames[-2])[0][1]["code"] == "cancelled"
    # Idempotent, from either process.
    assert httpx.delete(f"{b.url}/api/agent/scenario/runs/{run_id}", timeout=5).status_code == 204
    assert httpx.delete(f"{a.url}/api/agent/scenario/runs/{run_id}", timeout=5).status_code == 204


def test_rate_limit_admits_exactly_n_alternating_processes_whatever_their_clocks(pair: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = pair
    me = client()
    answers = [post(a if i % 2 == 0 else b, "hi", me) for i in range(RATE_N + 4)]
    statuses = [r.status_code for r in answers]
    assert statuses == [200] * RATE_N + [429] * 4, statuses
    # Retry-After from the oldest admission in Redis's time: about a minute on both, although
    # B's own clock is an hour ahead (a window on B's clock would have let B's requests in).
    waits = [int(r.headers["retry-after"]) for r in answers[RATE_N:]]
    assert all(55 <= w <= 60 for w in waits), waits
    date_a = parsedate_to_datetime(answers[0].headers["date"])
    date_b = parsedate_to_datetime(answers[1].headers["date"])
    assert 3590 <= (date_b - date_a).total_seconds() <= 3610  # the hook is live in B
    assert post(b, "hi").status_code == 200  # another client is another count


def test_metrics_parse_with_the_genai_families(pair: tuple[ServerProcess, ServerProcess]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    for server in pair:
        text = httpx.get(server.url + "/metrics", timeout=5).text
        families = {family.name: family for family in text_string_to_metric_families(text)}
        assert families["gen_ai_client_operation_duration_seconds"].type == "histogram"
        assert families["gen_ai_client_operation_time_to_first_chunk_seconds"].type == "histogram"
        usage = families["gen_ai_client_token_usage"]
        assert usage.type == "histogram"
        bounds = sorted({float(s.labels["le"]) for s in usage.samples if s.name.endswith("_bucket") and s.labels["le"] != "+Inf"})
        assert bounds == [4.0 ** i for i in range(14)]  # 1, 4, 16, ... 67108864: the spec's
        token_types = {s.labels.get("gen_ai_token_type") for s in usage.samples}
        assert {"input", "output"} <= token_types
        assert any(name.endswith("fallbacks") for name in families), sorted(families)


# -- the budget ------------------------------------------------------------------------------


def test_budget_holds_over_50_parallel_requests_on_two_processes(pair: tuple[ServerProcess, ServerProcess], fake: FakeUpstream, redis: RedisServer) -> None:
    a, b = pair
    redis.command("DEL", "sa:budget", "sa:budget:leases", "sa:budget:runs")
    requests_before, emitted_before = len(fake.requests), len(fake.emitted)
    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(lambda i: post(a if i % 2 else b, "[long] spend"), range(50)))
    statuses = [r.status_code for r in answers]
    admitted = statuses.count(200)
    refused = [r for r in answers if r.status_code == 429]
    assert admitted >= 2 and refused and admitted + len(refused) == 50, [(r.status_code, r.text[:120]) for r in answers if r.status_code != 200]
    assert all(r.json()["error"]["code"] == "budget_exhausted" for r in refused)
    served = len(fake.requests) - requests_before
    produced = len(fake.emitted) - emitted_before
    states = [health(server)["shared_state"] for server in (a, b)]
    assert all(state["fallbacks"]["budget"] == 0 for state in states), states  # every decision was Redis's
    assert served == admitted and produced == admitted * 380
    assert produced <= BUDGET + MAX_OUTPUT
    # Settled: what the upstream counted (its usage: 7 prompt tokens + 380 per answer).
    assert wait_until(lambda: health(b)["budget"]["reserved"] == 0, 5, 0.1), health(b)
    snapshot = health(a)["budget"]
    assert snapshot["used"] == admitted * (7 + 380), (snapshot, admitted)
    assert snapshot["used"] <= BUDGET and snapshot["limit"] == BUDGET
    redis.command("DEL", "sa:budget", "sa:budget:leases", "sa:budget:runs")  # the day's count, for the next tests


def test_redis_killed_mid_run_streams_finish_new_ones_work_health_degrades_and_it_recovers(pair: tuple[ServerProcess, ServerProcess], redis: RedisServer) -> None:
    a, b = pair
    running = Reader("POST", a.url + STREAM_PATH, json_body={"message": "[paced] before"}, headers=client())
    assert wait_until(lambda: running.raw.count(b"\n\n") >= 3, 10)
    redis.kill()
    running.finish()
    assert running.kinds()[-1] == "done" and "error" not in running.kinds()
    assert len(running.frames) == 42  # every token, though Redis went away under it
    # New streams work on both, on the local shares.
    for server in (a, b):
        answer = post(server, "hi")
        assert answer.status_code == 200, answer.text
        assert [kind for kind, _ in parse_frames(answer.content)][-1] == "done"
    for server in (a, b):
        body = health(server)
        assert body["status"] == "degraded" and body["shared_state"]["status"] == "degraded", body
    # A join needs the shared log: 503 with a clear code.
    refused = httpx.get(join_url(b, run_id_of(running)), timeout=5)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "shared_state_unavailable"
    text = httpx.get(a.url + "/metrics", timeout=5).text
    fallbacks = {line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if "fallbacks_total{" in line}
    assert fallbacks.get('feature="rate_limit"', 0) >= 1 and fallbacks.get('feature="concurrency"', 0) >= 1, fallbacks
    # Redis back (empty: no persistence): the shared mode resumes by itself.
    redis.start()
    assert wait_until(lambda: all(health(s)["shared_state"]["status"] == "ok" for s in (a, b)), BREAKER + 4, 0.2)
    assert wait_until(lambda: health(a)["shared_state"]["processes"] == 2, 3, 0.2)
    source = Reader("POST", a.url + STREAM_PATH, json_body={"message": "[paced] after"}, headers=client())
    assert wait_until(lambda: source.raw.count(b"\n\n") >= 2, 10)
    run_id = run_id_of(source)
    joined = Reader("GET", join_url(b, run_id), headers={"last-event-id": f"{run_id}-1"})
    source.finish()
    joined.finish()
    assert joined.status == 200 and joined.frames == source.frames[1:]


# -- stream slots and a killed owner -------------------------------------------------------


@pytest.fixture(scope="module")
def tight(redis: RedisServer, fake: FakeUpstream) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    yield from _pair(redis, fake, MAX_CONCURRENT_STREAMS="2", RATE_LIMIT_PER_MINUTE="0")


def test_two_slots_over_two_processes_and_a_killed_owner(tight: tuple[ServerProcess, ServerProcess], fake: FakeUpstream) -> None:
    a, b = tight
    on_a = Reader("POST", a.url + STREAM_PATH, json_body={"message": "[slow] a"}, headers=client())
    on_b = Reader("POST", b.url + STREAM_PATH, json_body={"message": "[slow] b"}, headers=client())
    assert wait_until(lambda: on_a.raw.count(b"\n\n") >= 3 and on_b.raw.count(b"\n\n") >= 3, 10)
    for server in (a, b):
        third = post(server, "hi")
        assert third.status_code == 503 and third.json()["error"]["code"] == "too_many_streams"
    # B follows A's run; then A is killed.
    run_id = run_id_of(on_a)
    follower = Reader("GET", join_url(b, run_id), headers={"last-event-id": f"{run_id}-2"})
    assert wait_until(lambda: follower.raw.count(b"\n\n") >= 3, 10)
    a.proc.kill()  # SIGKILL: no shutdown, no release, no last word
    killed = time.monotonic()
    follower.finish(PROC_TTL + 5)
    lost_after = follower.arrivals[-1] - killed
    assert lost_after <= PROC_TTL + 1.0, lost_after
    kinds = follower.kinds()
    assert kinds[-2:] == ["error", "done"] and kinds.count("done") == 1
    assert parse_frames(follower.frames[-2])[0][1]["code"] == "run_lost"
    # The ids go on from the last frame B had: no gap, no repeat.
    seqs = [int(f.split(b"\n")[0].rsplit(b"-", 1)[1]) for f in follower.frames]
    assert seqs == list(range(3, 3 + len(seqs)))
    # A's slot frees by itself within the lease; B's own stream still holds the other.
    freed = None
    while time.monotonic() - killed < LEASE + 3:
        answer = post(b, "hi")
        if answer.status_code == 200:
            freed = time.monotonic() - killed
            break
        assert answer.json()["error"]["code"] == "too_many_streams"
        time.sleep(0.25)
    assert freed is not None and freed <= LEASE + 1.0, freed
    # The slot is really back, not once by chance (the previous answer's slot is released just
    # after its response ends).
    assert wait_until(lambda: post(b, "hi").status_code == 200, 3, 0.1)
    httpx.delete(f"{b.url}/api/agent/scenario/runs/{run_id_of(on_b)}", timeout=5)
    on_b.finish()


