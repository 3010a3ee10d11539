"""Client faults: a client that disconnects at any point, and a client that stops reading.

Raw sockets give exact control over when the client goes away. "Upstream closed" is
observed on the fake upstream: it records the moment the app closed its answer.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Iterator

import httpx
import pytest

from tests.conftest import upstream_env
from tests.support.harness import server_task_count, wait_until
from tests.support.servers import BUFFERED_PATH, STREAM_PATH, FakeUpstream, LiveApp, Plan

SCENARIO_TOKENS = ["Renamed ", "the ", "exercise.\n", "```scenario\n", '{"title": ', '"Night drill", ', '"steps": ['] + ['"step", '] * 150 + ['"last"]}\n', "```\n"]


def plan_for(request: dict) -> Plan | None:
    """Which fault each request gets, read from a marker in the user's message."""
    message = request["messages"][-1]["content"]
    if "phase:before" in message:
        return Plan(tokens=["late "] * 5, first_delay_ms=10_000)  # nothing for 10 s
    if "phase:mid" in message:
        return Plan(tokens=["tok "] * 400, interval_ms=10)
    if "phase:scenario" in message:
        return Plan(tokens=SCENARIO_TOKENS, interval_ms=10)
    if "phase:headers" in message:
        return Plan(tokens=["tok "] * 400, interval_ms=10)
    return None


def body_for(phase: str) -> bytes:
    if phase == "scenario":
        body = {"message": f"phase:{phase} rename the exercise", "mode": "modify", "scenario": {"title": "Day drill"}}
    else:
        body = {"message": f"phase:{phase} hello", "mode": "chat"}
    return json.dumps(body).encode()


def request_bytes(body: bytes, path: str = STREAM_PATH) -> bytes:
    return b"POST %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (path.encode(), len(body), body)


def read_until(sock: socket.socket, predicate, timeout: float = 5) -> bytes:
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while not predicate(data):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting; got {data[-300:]!r}")
        piece = sock.recv(65536)
        if not piece:
            raise AssertionError(f"server closed early; got {data[-300:]!r}")
        data += piece
    return data


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        fake.selector = plan_for
        yield fake


@pytest.fixture(scope="module")
def live(fake: FakeUpstream) -> Iterator[LiveApp]:
    with LiveApp(upstream_env(fake)) as live:
        yield live


def disconnect_once(live: LiveApp, fake: FakeUpstream, phase: str, abort: bool) -> float | None:
    """One request that the client abandons at `phase`; returns seconds until the upstream was closed."""
    requests_before = len(fake.requests)
    disconnects_before = len(fake.disconnects)
    sock = socket.create_connection(("127.0.0.1", live.port), timeout=5)
    try:
        sock.sendall(request_bytes(body_for(phase)))
        if phase == "headers":
            read_until(sock, lambda d: b"\r\n\r\n" in d)
        elif phase == "before":
            read_until(sock, lambda d: b"event: start" in d)
            assert wait_until(lambda: len(fake.requests) > requests_before and fake.open_streams > 0, 5)
        elif phase == "mid":
            read_until(sock, lambda d: d.count(b"event: chat") >= 3)
        elif phase == "scenario":
            read_until(sock, lambda d: d.count(b"event: scenario_delta") >= 3)
        if abort:  # a TCP reset, as from a killed browser tab, instead of a FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()
    closed_at = time.monotonic()
    if phase == "headers":
        return None  # the upstream request may not have been made yet
    assert wait_until(lambda: len(fake.disconnects) > disconnects_before, 3), f"upstream not closed after a disconnect ({phase})"
    return fake.disconnects[disconnects_before] - closed_at


def test_disconnect_at_each_point_closes_upstream_within_1s(live: LiveApp, fake: FakeUpstream) -> None:
    for phase in ("before", "mid", "scenario"):
        for abort in (False, True):
            delay = disconnect_once(live, fake, phase, abort)
            assert delay is not None and delay < 1.0, (phase, abort, delay)
    assert live.wait_no_streams(5) == 0
    assert fake.wait_idle(5)


def test_200_disconnects_leave_nothing_behind(live: LiveApp, fake: FakeUpstream) -> None:
    assert live.wait_no_streams(5) == 0
    tasks_before = server_task_count(live)
    phases = ("before", "mid", "scenario", "headers")
    delays: list[float] = []
    connections_seen: list[int] = []
    started = time.monotonic()
    for index in range(200):
        delay = disconnect_once(live, fake, phases[index % 4], abort=index % 3 == 0)
        if delay is not None:
            delays.append(delay)
        if index % 50 == 49:
            connections_seen.append(fake.open_connections)
        assert time.monotonic() - started < 120, "200 disconnects took too long"
    assert max(delays) < 1.0, f"slowest upstream close {max(delays):.3f} s"
    # Afterwards: no stream open on either side, no task or connection left behind.
    assert live.wait_no_streams(5) == 0
    assert fake.wait_idle(5), f"{fake.open_streams} upstream streams still open"
    assert wait_until(lambda: server_task_count(live) <= tasks_before, 5), (server_task_count(live), tasks_before)
    assert wait_until(lambda: len(live.server.server_state.connections) == 0, 5), "client connections left open"
    # The app may keep a few idle keep-alive connections to the upstream, but their number
    # does not grow with the number of disconnects.
    assert max(connections_seen) <= 4, connections_seen
    assert fake.open_connections <= connections_seen[0] + 2, (fake.open_connections, connections_seen)


def test_buffered_client_disconnect_closes_upstream(live: LiveApp, fake: FakeUpstream) -> None:
    disconnects_before = len(fake.disconnects)
    sock = socket.create_connection(("127.0.0.1", live.port), timeout=5)
    sock.sendall(request_bytes(body_for("mid"), BUFFERED_PATH))
    assert wait_until(lambda: fake.open_streams > 0, 5)
    time.sleep(0.2)
    sock.close()
    closed_at = time.monotonic()
    assert wait_until(lambda: len(fake.disconnects) > disconnects_before, 3)
    assert fake.disconnects[disconnects_before] - closed_at < 1.0
    assert live.wait_no_streams(5) == 0


def test_client_that_stops_reading_is_dropped_after_send_timeout() -> None:
    """A client that never reads: the server's buffer stays bounded, and after SEND_TIMEOUT_SECONDS
    the stream ends and the upstream is released."""
    total = 25_000 * 8_000  # 200 MB offered by a fast upstream
    with FakeUpstream(Plan(tokens=["x" * 8_000] * 25_000)) as fake:
        # MAX_OUTPUT_TOKENS far above the 200 MB: the local output limit must not end it first.
        with LiveApp(upstream_env(fake, SEND_TIMEOUT_SECONDS="1", HEARTBEAT_SECONDS="15", MAX_OUTPUT_TOKENS="1000000000")) as live:
            tasks_before = server_task_count(live)
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", live.port))
            try:
                sock.sendall(request_bytes(json.dumps({"message": "hi", "mode": "chat"}).encode()))
                started = time.monotonic()
                largest_buffer = 0
                while not fake.disconnects and time.monotonic() - started < 20:
                    for connection in list(live.server.server_state.connections):
                        transport = getattr(connection, "transport", None)
                        if transport is not None and not transport.is_closing():
                            largest_buffer = max(largest_buffer, transport.get_write_buffer_size())
                    time.sleep(0.05)
                assert fake.disconnects, "the upstream was never released"
                released_after = fake.disconnects[0] - started
                # The writes stalled once the socket buffers were full (well under a second on
                # loopback), then SEND_TIMEOUT_SECONDS=1 passed, then the watcher noticed (<= 0.5 s).
                assert 1.0 <= released_after < 8.0, released_after
                # Backpressure reached the upstream: it could not push its whole answer.
                assert fake.bytes_sent < total / 2, fake.bytes_sent
                # What the server process itself holds for the client is bounded (uvicorn pauses
                # at its write buffer's high-water mark, 64 KiB, plus one frame).
                assert largest_buffer <= 256 * 1024, largest_buffer
                assert live.wait_no_streams(5) == 0
                assert fake.wait_idle(5)
                assert wait_until(lambda: server_task_count(live) <= tasks_before, 5)
                assert live.health()["status"] == "ok"
            finally:
                sock.close()
            # Once the client is gone, so is its connection.
            assert wait_until(lambda: len(live.server.server_state.connections) == 0, 5)


def test_with_a_grace_a_client_that_stops_reading_is_let_go_and_its_run_reads_on_to_the_end() -> None:
    """The producer writes for a reader that is alone and caught up (runs/log.py, the reader in
    hand), so it is the one stuck in the write when the client stops reading. After
    SEND_TIMEOUT_SECONDS the reader leaves and that write is cancelled, not waited for: the run
    goes on detached, reads its model to the end, and a join gets every frame once."""
    tokens = 3_000
    with FakeUpstream(Plan(tokens=["y" * 1_000] * tokens)) as fake:
        env = upstream_env(fake, SEND_TIMEOUT_SECONDS="1", HEARTBEAT_SECONDS="15", MAX_OUTPUT_TOKENS="1000000000",
                           RUN_DETACHED_GRACE_SECONDS="30")
        with LiveApp(env) as live:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", live.port))
            try:
                sock.sendall(request_bytes(json.dumps({"message": "hi", "mode": "chat"}).encode()))
                head = b""
                while b"\r\n\r\n" not in head:
                    head += sock.recv(1024)
                location = next(line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                                if line.lower().startswith(b"content-location:"))
                # The client reads nothing more. The whole answer still reaches the server: the
                # write that stalled was cancelled when the send timeout let the reader go.
                assert wait_until(lambda: len(fake.emitted) == tokens, 20), len(fake.emitted)
                assert fake.wait_idle(5)
                with httpx.Client(timeout=20) as client:
                    joined = client.get(live.url + location)
                assert joined.status_code == 200
                events = [line for line in joined.text.split("\n") if line.startswith("event: ")]
                assert events == ["event: start"] + ["event: chat"] * tokens + ["event: done"]
                ids = [int(line.rsplit("-", 1)[1]) for line in joined.text.split("\n") if line.startswith("id: ")]
                assert ids == list(range(1, tokens + 3))
            finally:
                sock.close()


def test_disconnect_during_heartbeat_wait() -> None:
    """A stream waiting on a silent upstream (heartbeats only) notices the client leaving at once."""
    with FakeUpstream(Plan(tokens=["a", "b"], first_delay_ms=10_000)) as fake:
        with LiveApp(upstream_env(fake, HEARTBEAT_SECONDS="0.2")) as live:
            with httpx.Client(timeout=10) as client:
                with client.stream("POST", live.url + STREAM_PATH, json={"message": "hi", "mode": "chat"}) as response:
                    pings = 0
                    for line in response.iter_lines():
                        if line.startswith(": ping"):
                            pings += 1
                            if pings == 2:
                                break
            closed_at = time.monotonic()
            assert wait_until(lambda: bool(fake.disconnects), 3)
            assert fake.disconnects[0] - closed_at < 1.0
            assert live.wait_no_streams(5) == 0
