"""Several uvicorn workers (WEB_CONCURRENCY), as the Procfile runs them on a PaaS.

The Procfile's command gives no --workers, so uvicorn takes WEB_CONCURRENCY (Heroku's Python
buildpack sets it by itself: 2 on the smallest dynos). Which worker serves a connection is
read from /proc: the worker process that holds the connection's socket.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import upstream_env
from tests.support.harness import ServerProcess, assert_well_formed, wait_until
from tests.support.servers import STREAM_PATH, FakeUpstream, Plan, iter_frames

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads which worker holds a connection from Linux's /proc")

BODY = {"message": "hello", "mode": "chat"}


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def established_inodes(port: int) -> set[str]:
    """Socket inodes of ESTABLISHED TCP connections whose local port is `port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":
                inodes.add(fields[9])
    return inodes


def connections_by_worker(server: ServerProcess) -> dict[int, int]:
    """{worker pid: open client connections it holds}."""
    inodes = established_inodes(server.port)
    counts: dict[int, int] = {}
    for child in children(server.pid):
        held = 0
        try:
            for fd in Path(f"/proc/{child}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    held += 1
        except OSError:
            continue
        if held:
            counts[child] = held
    return counts


class Reader(threading.Thread):
    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.frames: list[tuple[str, dict]] = []
        self.error: BaseException | None = None
        self.ended_at = 0.0

    def run(self) -> None:
        try:
            with httpx.Client(timeout=30) as client:
                with client.stream("POST", self.url + STREAM_PATH, json=BODY) as response:
                    for _, kind, data in iter_frames(response):
                        self.frames.append((kind, data))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        self.ended_at = time.monotonic()

    def chats(self) -> int:
        return sum(1 for kind, _ in self.frames if kind == "chat")


def open_streams_on_both_workers(server: ServerProcess) -> list[Reader]:
    """Open streams (at least 4) until both workers hold some: the kernel picks the worker that accepts."""
    assert wait_until(lambda: len(children(server.pid)) >= 2, 15), "uvicorn did not start two workers"
    readers: list[Reader] = []
    while len(readers) < 16:
        reader = Reader(server.url)
        reader.start()
        readers.append(reader)
        assert wait_until(lambda: all(r.chats() >= 1 for r in readers), 10), [r.chats() for r in readers]
        if len(readers) >= 4 and len(connections_by_worker(server)) >= 2:
            break
    workers = connections_by_worker(server)
    assert len(workers) == 2, f"all {len(readers)} streams went to one worker: {workers}"
    assert sum(workers.values()) == len(readers)
    return readers


def test_two_workers_serve_streams_and_end_them_on_sigterm() -> None:
    grace = 5.0
    with FakeUpstream(Plan(tokens=["tick "] * 200, interval_ms=100)) as fake:
        env = upstream_env(fake, WEB_CONCURRENCY="2", LOG_LEVEL="info", SHUTDOWN_GRACE_SECONDS=str(grace))
        with ServerProcess(env) as server:
            readers = open_streams_on_both_workers(server)
            assert fake.open_streams == len(readers)

            sent_at = time.monotonic()
            server.terminate()  # SIGTERM to uvicorn's supervisor, which passes it to each worker
            for reader in readers:
                reader.join(grace + 10)
                assert not reader.is_alive(), "a stream was still open after the grace period"
                assert reader.error is None, repr(reader.error)
                assert reader.ended_at - sent_at < grace + 2, reader.ended_at - sent_at
            returncode = server.wait(grace + 15)
            stderr = server.stderr_text()
        assert fake.wait_idle(5)

    for reader in readers:
        error = assert_well_formed(reader.frames)
        assert error is not None and error["code"] == "server_shutdown", reader.frames[-3:]
        assert error["retryable"] is True
        assert reader.chats() >= 1
    assert returncode in (0, -signal.SIGTERM), (returncode, stderr[-2000:])
    assert "Traceback" not in stderr and "Exception in ASGI application" not in stderr, stderr[-2000:]
    assert "timeout graceful shutdown exceeded" not in stderr
    assert stderr.count("Finished server process") == 2, stderr[-2000:]
    assert "Stopping parent process" in stderr


def test_each_worker_counts_for_itself() -> None:
    """Numbers are per worker: health, from whichever worker answers, shows only that worker's streams."""
    with FakeUpstream(Plan(tokens=["tick "] * 100, interval_ms=100)) as fake:
        with ServerProcess(upstream_env(fake, WEB_CONCURRENCY="2")) as server:
            readers = open_streams_on_both_workers(server)
            per_worker = set(connections_by_worker(server).values())
            seen = {server.health()["active_streams"] for _ in range(20)}
            server.terminate()
            server.wait(20)
    assert seen <= per_worker, (seen, per_worker)
    assert max(seen) < len(readers)
