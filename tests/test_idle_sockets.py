"""Connections that never send a request cannot lock anyone out.

uvicorn arms no timer for a connection that has sent nothing, and `--limit-concurrency`
counts every open connection: 400 such sockets used to turn every request, health
included, into uvicorn's 503 for as long as they stayed open. The Procfile now has no
connection limit, and its protocol (web/limits.py: HeadDeadlineProtocol) closes a
connection whose request head has not arrived within HEAD_TIMEOUT_SECONDS (tested here on a
one-second deadline).
"""

from __future__ import annotations

import json
import socket
import time
from typing import Iterator

import httpx
import pytest

from tests.support.harness import ServerProcess, procfile_command, wait_until
from tests.support.servers import HEALTH_PATH, STREAM_PATH, LiveApp
from web import limits

BODY = {"message": "hello", "mode": "chat"}


def open_idle(port: int, count: int) -> list[socket.socket]:
    """`count` connections to the server that send nothing."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sockets.append(sock)
    return sockets


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """True when the server closes the connection (EOF or reset) within `timeout`."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_400_idle_sockets_leave_health_answering_at_once() -> None:
    with ServerProcess({}) as server:
        idle = open_idle(server.port, 400)
        try:
            time.sleep(0.3)  # every connection accepted by now
            started = time.monotonic()
            health = httpx.get(server.url + HEALTH_PATH, timeout=2)
            assert health.status_code == 200, health.text
            assert time.monotonic() - started < 2
            # And real work goes on beside them.
            stream = httpx.post(server.url + STREAM_PATH, json=BODY, timeout=10)
            assert stream.status_code == 200 and "event: done" in stream.text
        finally:
            for sock in idle:
                sock.close()
    # No connection cap, and the protocol with the head deadline: uvicorn loaded it (it exits at
    # start on a bad import path); the tests below close connections with it, on a shorter deadline.
    args = procfile_command(8000)
    assert "--limit-concurrency" not in args
    assert args[args.index("--http") + 1] == "web.limits:HeadDeadlineProtocol"
    assert limits.HEAD_TIMEOUT_SECONDS <= 10


# -- the head deadline, shortened to keep the test quick --------------------------------------------------


class QuickDeadline(limits.HeadDeadlineProtocol):  # type: ignore[misc, name-defined]
    head_timeout = 1.0


@pytest.fixture(scope="module")
def quick() -> Iterator[LiveApp]:
    env = {"BODY_READ_TIMEOUT_SECONDS": "5", "OFFLINE_TOKEN_DELAY_MS": "40"}
    with LiveApp(env, http=QuickDeadline, timeout_keep_alive=30) as live:
        yield live


def head(host_port: int, path: str = HEALTH_PATH, method: str = "GET", extra: bytes = b"") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{host_port}\r\n".encode() + extra + b"\r\n"


def read_response(sock: socket.socket, timeout: float = 5) -> bytes:
    """One whole response with a content-length (health, a JSON answer)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, data
        data += piece
    head_part, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head_part.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        piece = sock.recv(65536)
        assert piece
        body += piece
    return head_part + b"\r\n\r\n" + body


def test_a_silent_connection_is_closed_after_the_deadline(quick: LiveApp) -> None:
    sock = socket.create_connection(("127.0.0.1", quick.port), timeout=5)
    started = time.monotonic()
    with sock:
        assert closed_by_server(sock, 5)
    assert 0.8 <= time.monotonic() - started < 3


def test_a_head_sent_a_byte_at_a_time_is_closed_at_the_deadline(quick: LiveApp) -> None:
    """Each byte re-arms uvicorn's keep-alive timeout; the deadline counts from the start."""
    sock = socket.create_connection(("127.0.0.1", quick.port), timeout=5)
    started = time.monotonic()
    closed = False
    with sock:
        for byte in head(quick.port)[:-4]:  # never the blank line that ends the head
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.2)
            if time.monotonic() - started > 4:
                break
        closed = closed or closed_by_server(sock, 3)
    assert closed
    assert time.monotonic() - started < 4


def test_kept_alive_connections_bodies_and_streams_are_not_cut(quick: LiveApp) -> None:
    with socket.create_connection(("127.0.0.1", quick.port), timeout=5) as sock:
        sock.sendall(head(quick.port))
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        # Idle between requests for longer than the head deadline: the keep-alive timeout's to
        # bound (30 s here), not the deadline's.
        time.sleep(1.5)
        sock.sendall(head(quick.port))
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        # A body that takes longer than the head deadline to arrive (BODY_READ_TIMEOUT_SECONDS
        # bounds it): read whole, then answered (422: an empty message, so no run to wait for).
        payload = json.dumps({"message": ""}).encode()
        sock.sendall(head(quick.port, "/api/agent/scenario", "POST", b"content-type: application/json\r\ncontent-length: %d\r\n" % len(payload)))
        for index in range(0, len(payload), 4):
            sock.sendall(payload[index:index + 4])
            time.sleep(0.4)
        answer = read_response(sock, 10)
        assert answer.startswith(b"HTTP/1.1 422") and b"invalid_field" in answer, answer[:300]
        # Then, after a pause shorter than the deadline, the first bytes of a head, then the rest
        # well before the deadline: answered.
        request = head(quick.port)
        sock.sendall(request[:5])
        time.sleep(0.5)
        sock.sendall(request[5:])
        assert read_response(sock).startswith(b"HTTP/1.1 200")
    # A stream that lasts longer than the deadline: once the head is in, no deadline runs.
    started = time.monotonic()
    body = httpx.post(quick.url + STREAM_PATH, json={"message": "Explain what a scenario is, in detail.", "mode": "chat"}, timeout=20).content
    assert b"event: done" in body and b"event: error" not in body
    assert time.monotonic() - started > 1.5 * QuickDeadline.head_timeout


def test_many_silent_connections_are_all_closed(quick: LiveApp) -> None:
    idle = open_idle(quick.port, 50)
    try:
        assert all(closed_by_server(sock, 5) for sock in idle)
    finally:
        for sock in idle:
            sock.close()
    # The server is fine afterwards.
    assert wait_until(lambda: httpx.get(quick.url + HEALTH_PATH, timeout=2).status_code == 200, 2)
