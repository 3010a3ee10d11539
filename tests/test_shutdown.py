"""Operating it: one JSON log line per request, and a clean SIGTERM.

Both run the Procfile's command (`uvicorn app:app --host ... --port $PORT`) as a real
process against the fake upstream, and read what it prints.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from typing import Any

import httpx
import pytest

from tests.conftest import upstream_env
from tests.support.harness import ServerProcess, assert_well_formed, procfile_command, wait_until
from tests.support.servers import BUFFERED_PATH, HEALTH_PATH, STREAM_PATH, FakeUpstream, Plan, iter_frames, parse_frames

BODY = {"message": "hello", "mode": "chat"}
RUN_FIELDS = {"request_id", "intent", "provider", "model", "status", "state", "error_code", "ttft_ms", "tokens", "duration_ms", "client_disconnected"}


def request_lines(server: ServerProcess) -> list[dict[str, Any]]:
    return [line for line in server.json_lines() if line.get("logger") == "scenario_agent.request"]


def test_procfile_command_is_what_we_run() -> None:
    args = procfile_command(8123)
    assert args[1:4] == ["-m", "uvicorn", "app:app"]
    assert args[args.index("--port") + 1] == "8123"
    assert args[args.index("--host") + 1] == "127.0.0.1"


# -- the request log -----------------------------------------------------------------------------


def test_one_log_line_per_request() -> None:
    with FakeUpstream() as fake:
        with ServerProcess(upstream_env(fake, LOG_LEVEL="info")) as server:
            ids: dict[str, str] = {}  # request id -> what the request was
            assert wait_until(lambda: bool(request_lines(server)), 3)
            startup = {line["request_id"] for line in request_lines(server)}  # ServerProcess's health polls

            def record(kind: str, response: httpx.Response) -> None:
                request_id = response.headers["x-request-id"]
                assert request_id not in ids
                ids[request_id] = kind

            # A normal stream of many tokens: still one line.
            fake.push(Plan(tokens=[f"t{i} " for i in range(200)]))
            response = httpx.post(server.url + STREAM_PATH, json=BODY, timeout=10)
            record("stream", response)
            frames = parse_frames(response.content)
            assert frames[0][1]["request_id"] == response.headers["x-request-id"]
            # The buffered endpoint, an upstream fault, bad input, a wrong path and method.
            record("buffered", httpx.post(server.url + BUFFERED_PATH, json=BODY, timeout=10))
            fake.push(Plan(status=429, headers={"retry-after": "4"}))
            response = httpx.post(server.url + STREAM_PATH, json=BODY, timeout=10)
            record("fault", response)
            assert parse_frames(response.content)[0][1]["request_id"] == response.headers["x-request-id"]
            record("invalid", httpx.post(server.url + STREAM_PATH, json={"message": ""}, timeout=10))
            record("form", httpx.post(server.url + STREAM_PATH, content=b"a=b", headers={"content-type": "application/x-www-form-urlencoded"}, timeout=10))
            record("not_found", httpx.get(server.url + "/api/nope", timeout=10))
            record("method", httpx.get(server.url + STREAM_PATH, timeout=10))
            record("health", httpx.get(server.url + HEALTH_PATH, timeout=10))
            # A client that leaves mid-answer.
            fake.push(Plan(tokens=["x "] * 100, interval_ms=20))
            with httpx.Client(timeout=10) as client:
                with client.stream("POST", server.url + STREAM_PATH, json=BODY) as response:
                    record("disconnect", response)
                    for _, kind, _ in iter_frames(response):
                        if kind == "chat":
                            break
            assert fake.wait_idle(5)
            # Non-API requests are not logged at info.
            assert httpx.get(server.url + "/openapi.json", timeout=10).status_code == 200

            assert wait_until(lambda: len(request_lines(server)) >= len(ids), 5)
            time.sleep(0.2)
            lines = [line for line in request_lines(server) if line["request_id"] not in startup]
            stdout = server.stdout_text()

    # Exactly one line per API request, matched by request id, and nothing else per request.
    assert sorted(line["request_id"] for line in lines) == sorted(ids), lines
    by_kind = {ids[line["request_id"]]: line for line in lines}
    for line in stdout.splitlines():
        assert isinstance(json.loads(line), dict), f"not a JSON log line: {line!r}"
    assert len(stdout.splitlines()) <= len(ids) + len(startup) + 3, "more lines than requests (a line per token?)"

    stream = by_kind["stream"]
    assert RUN_FIELDS <= set(stream), set(stream)
    assert stream["status"] == 200 and stream["state"] == "done" and stream["error_code"] is None
    assert stream["tokens"] == 200 and stream["intent"] == "chat"
    assert stream["provider"] == "openai-compatible" and stream["model"] == "fake-model"
    assert stream["ttft_ms"] is not None and stream["ttft_ms"] <= stream["duration_ms"]
    assert stream["client_disconnected"] is False
    assert by_kind["buffered"]["state"] == "done" and by_kind["buffered"]["status"] == 200
    fault = by_kind["fault"]
    assert fault["state"] == "failed" and fault["error_code"] == "upstream_rate_limited" and fault["tokens"] == 0
    assert by_kind["invalid"]["status"] == 422 and by_kind["invalid"]["error_code"] == "invalid_field"
    assert by_kind["form"]["status"] == 415 and by_kind["form"]["error_code"] == "unsupported_media_type"
    assert by_kind["not_found"]["status"] == 404 and by_kind["not_found"]["error_code"] == "not_found"
    assert by_kind["method"]["status"] == 405 and by_kind["method"]["error_code"] == "method_not_allowed"
    assert by_kind["health"]["status"] == 200 and by_kind["health"]["error_code"] is None
    gone = by_kind["disconnect"]
    assert gone["client_disconnected"] is True and gone["state"] == "cancelled"
    for line in lines:
        assert {"request_id", "method", "path", "status", "error_code", "duration_ms", "client_disconnected"} <= set(line)
        assert line["level"] == "info" and "time" in line


@pytest.mark.parametrize("level", ["debug", "warning"])
def test_log_level(level: str) -> None:
    """LOG_LEVEL=debug adds the state machine's trace (one line per run, not per token);
    warning leaves out the request lines."""
    with FakeUpstream() as fake:
        with ServerProcess(upstream_env(fake, LOG_LEVEL=level)) as server:
            fake.push(Plan(tokens=["a "] * 50))
            response = httpx.post(server.url + STREAM_PATH, json=BODY, timeout=10)
            request_id = response.headers["x-request-id"]
            time.sleep(0.3)
            lines = server.json_lines()
    traces = [line for line in lines if line.get("level") == "debug" and request_id in line.get("message", "") and "trace" in line.get("message", "")]
    if level == "debug":
        assert len(traces) == 1, lines
        for event in ("route", "open", "finish", "complete"):
            assert event in traces[0]["message"]
        assert len([line for line in lines if line.get("request_id") == request_id]) == 1
        assert len(lines) < 20
    else:
        assert not traces
        assert not [line for line in lines if line.get("logger") == "scenario_agent.request"]


# -- SIGTERM ------------------------------------------------------------------------------------------


class Reader(threading.Thread):
    """One open stream, read in a thread: (arrival time, type, data) for every frame."""

    def __init__(self, url: str, path: str = STREAM_PATH) -> None:
        super().__init__(daemon=True)
        self.url, self.path = url, path
        self.frames: list[tuple[float, str, Any]] = []
        self.status = 0
        self.body: Any = None
        self.error: BaseException | None = None
        self.ended_at = 0.0

    def run(self) -> None:
        try:
            with httpx.Client(timeout=30) as client:
                if self.path == BUFFERED_PATH:
                    response = client.post(self.url + self.path, json=BODY)
                    self.status, self.body = response.status_code, response.json()
                else:
                    with client.stream("POST", self.url + self.path, json=BODY) as response:
                        self.status = response.status_code
                        for frame in iter_frames(response):
                            self.frames.append(frame)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        self.ended_at = time.monotonic()

    def chats(self) -> int:
        return sum(1 for _, kind, _ in self.frames if kind == "chat")


def test_sigterm_ends_open_streams_and_exits_cleanly() -> None:
    grace = 5.0
    with FakeUpstream(Plan(tokens=["tick "] * 100, interval_ms=200)) as fake:
        with ServerProcess(upstream_env(fake, LOG_LEVEL="info", SHUTDOWN_GRACE_SECONDS=str(grace))) as server:
            readers = [Reader(server.url) for _ in range(4)] + [Reader(server.url, BUFFERED_PATH)]
            for reader in readers:
                reader.start()
            assert wait_until(lambda: all(r.chats() >= 2 for r in readers[:4]) and fake.open_streams == 5, 10), [r.chats() for r in readers]
            assert server.health()["active_streams"] == 5

            sent_at = time.monotonic()
            server.terminate()
            for reader in readers:
                reader.join(grace + 5)
                assert not reader.is_alive(), "a stream was still open after the grace period"
                assert reader.error is None, repr(reader.error)
                assert reader.ended_at - sent_at < grace, reader.ended_at - sent_at

            # New work is refused once shutdown has begun: 503 server_shutdown in the moment
            # before uvicorn closes its listener, then the connection itself is refused.
            late = 0
            try:
                response = httpx.post(server.url + STREAM_PATH, json=BODY, timeout=5)
                assert response.status_code == 503 and response.json()["error"]["code"] == "server_shutdown"
                assert response.headers["retry-after"] == "2"
                late = 1
            except httpx.ConnectError:
                pass

            def refused() -> bool:
                try:
                    httpx.get(server.url + HEALTH_PATH, timeout=1)
                except httpx.ConnectError:
                    return True
                return False

            assert wait_until(refused, 3), "still accepting connections after SIGTERM"

            returncode = server.wait(grace + 10)
            stderr = server.stderr_text()
            lines = request_lines(server)

        # The upstream requests were closed, not left to run.
        assert fake.wait_idle(5)
        assert len(fake.disconnects) == 5

    for reader in readers[:4]:
        frames = [(kind, data) for _, kind, data in reader.frames]
        error = assert_well_formed(frames)
        assert error is not None and error["code"] == "server_shutdown", frames[-3:]
        assert error["retryable"] is True and error["retry_after"] == 2
        assert reader.chats() >= 2  # the text sent before stays
    buffered = readers[4]
    assert buffered.status == 503 and buffered.body["error"]["code"] == "server_shutdown"

    # Exited by itself: 0, or the SIGTERM uvicorn re-raises after its graceful shutdown.
    assert returncode in (0, -signal.SIGTERM), (returncode, stderr[-2000:])
    assert "timeout graceful shutdown exceeded" not in stderr
    assert "Exception in ASGI application" not in stderr and "Traceback" not in stderr, stderr[-2000:]
    assert "Finished server process" in stderr or "Application shutdown complete" in stderr, stderr[-2000:]
    shutdown_lines = [line for line in lines if line.get("error_code") == "server_shutdown"]
    assert len(shutdown_lines) == 5 + late, lines


def test_sigterm_when_idle_exits_at_once() -> None:
    with ServerProcess({"LOG_LEVEL": "info"}) as server:
        sent_at = time.monotonic()
        server.terminate()
        returncode = server.wait(10)
        assert time.monotonic() - sent_at < 3
        assert returncode in (0, -signal.SIGTERM)


def test_sigterm_with_a_client_that_stopped_reading() -> None:
    """A client that never reads cannot hold up the exit beyond the grace period (plus a margin).

    The stream's closing frames cannot be delivered; after SHUTDOWN_GRACE_SECONDS the app gives
    up on it, but the connection stays open with unsent data until uvicorn stops waiting."""
    grace = 2.0
    with FakeUpstream(Plan(tokens=["x" * 8000] * 5000)) as fake:
        # MAX_OUTPUT_TOKENS high: 5000 deltas of 8000 characters are far past the local output limit.
        env = upstream_env(fake, LOG_LEVEL="info", SHUTDOWN_GRACE_SECONDS=str(grace), SEND_TIMEOUT_SECONDS="30", MAX_OUTPUT_TOKENS="10000000")
        with ServerProcess(env) as server:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", server.port))
            try:
                payload = json.dumps(BODY).encode()
                sock.sendall(b"POST %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (STREAM_PATH.encode(), len(payload), payload))
                assert wait_until(lambda: fake.bytes_sent > 2_000_000, 10)
                time.sleep(0.5)  # the server's writes are now stuck
                sent_at = time.monotonic()
                server.terminate()
                try:
                    returncode = server.wait(15)
                except Exception:  # noqa: BLE001
                    returncode = None
                elapsed = time.monotonic() - sent_at
            finally:
                sock.close()
            if returncode is None:
                server.kill()
            stderr = server.stderr_text()
    assert returncode in (0, -signal.SIGTERM), f"still running {elapsed:.1f} s after SIGTERM: {stderr[-1500:]}"
    assert elapsed < 10  # the Procfile's --timeout-graceful-shutdown 6, plus a margin
    assert "Exception in ASGI application" not in stderr, stderr[-1500:]
