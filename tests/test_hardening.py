"""Hardening: nobody locks others out, cross-site and rebound requests are refused, the rate
limit cannot be dodged with a forged X-Forwarded-For nor by walking an IPv6 /64, and every
response carries the security headers.

Over real sockets (the Procfile's command where stdout matters, LiveApp otherwise); the few
checks of scope fields that a loopback socket cannot produce (a server reached on a public
address) call the middleware directly with a synthetic scope.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from typing import Any, Iterator

import httpx
import pytest
from starlette.requests import Request
from starlette.routing import Route

from agent.config import Settings
from tests.conftest import upstream_env
from tests.support.harness import ServerProcess, assert_well_formed, parse_raw_response, post_stream, wait_until
from tests.support.servers import BUFFERED_PATH, HEALTH_PATH, STREAM_PATH, FakeUpstream, LiveApp, Plan
from web.client_address import client_address
from web.gate import AccessGuard, Gate
from web.limits import RateLimiter

BODY = {"message": "hello", "mode": "chat"}


def half_sent_body(port: int, declared: int = 100, sent: int = 11) -> socket.socket:
    """A connection that sent its head and `sent` bytes of a `declared`-byte body, then waits."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = b"POST %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % (STREAM_PATH.encode(), declared)
    sock.sendall(head + b'{"message":'[:sent].ljust(sent, b" "))
    return sock


def read_answer(sock: socket.socket, timeout: float) -> bytes:
    """Everything until the server closes (or the timeout)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            piece = sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not piece:
            break
        data += piece
    return data


def security_headers_ok(headers: Any) -> None:
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert len(headers["x-request-id"]) == 32  # 128 random bits: a stream's request id is its run id


# -- 1. slot exhaustion: half-sent bodies ---------------------------------------------------------


def test_half_sent_bodies_do_not_lock_anyone_out() -> None:
    """100 connections that sent 11 bytes of a 100-byte body, against MAX_CONCURRENT_STREAMS=10:
    they hold no slot (a normal client gets its stream while they are open), each gets 408
    body_timeout with `connection: close` after BODY_READ_TIMEOUT_SECONDS, and 100 more that
    leave mid-body are one log line each, with no traceback."""
    deadline = 2.0
    env = {"MAX_CONCURRENT_STREAMS": "10", "BODY_READ_TIMEOUT_SECONDS": str(deadline), "LOG_LEVEL": "info"}
    with ServerProcess(env) as server:
        opened = time.monotonic()
        sockets = [half_sent_body(server.port) for _ in range(100)]
        try:
            time.sleep(0.3)
            assert server.health()["active_streams"] == 0
            status, _, frames = post_stream(server.url, BODY, timeout=10)
            normal_done = time.monotonic() - opened
            assert status == 200, frames
            assert assert_well_formed(frames) is None
            assert normal_done < deadline, f"the normal client waited {normal_done:.2f} s"
            answers = [read_answer(sock, deadline + 10) for sock in sockets]
            answered = time.monotonic() - opened
        finally:
            for sock in sockets:
                sock.close()
        for raw in answers:
            status, headers, body = parse_raw_response(raw)
            assert status == 408, raw[:200]
            assert json.loads(body)["error"]["code"] == "body_timeout"
            assert headers["connection"] == "close"
            security_headers_ok(headers)
        assert deadline - 0.2 < answered < deadline + 10
        assert server.health()["active_streams"] == 0

        # 100 more that leave before the deadline.
        leavers = [half_sent_body(server.port) for _ in range(100)]
        time.sleep(0.3)
        for sock in leavers:
            sock.close()

        def left() -> list[dict[str, Any]]:
            return [line for line in server.json_lines() if line.get("error_code") == "client_disconnected"]

        assert wait_until(lambda: len(left()) == 100, 10), len(left())
        assert all(line["client_disconnected"] is True and line["path"] == STREAM_PATH for line in left())
        # The server still serves.
        status, _, frames = post_stream(server.url, BODY, timeout=10)
        assert status == 200 and assert_well_formed(frames) is None
        output = server.stdout_text() + server.stderr_text()
        log = server.json_lines()
    assert "Traceback" not in output and "ClientDisconnect" not in output, output[-3000:]
    assert len([line for line in log if line.get("error_code") == "body_timeout"]) == 100


def test_bodies_that_finish_together_cannot_all_take_a_slot() -> None:
    """Six requests whose bodies complete at the same moment, with two slots: two streams, four 503s."""
    with FakeUpstream(Plan(tokens=["slow "] * 4, interval_ms=300)) as fake:
        with LiveApp(upstream_env(fake, MAX_CONCURRENT_STREAMS="2")) as live:
            payload = json.dumps(BODY).encode()
            sockets = []
            for _ in range(6):
                sock = socket.create_connection(("127.0.0.1", live.port), timeout=10)
                head = b"POST %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % (STREAM_PATH.encode(), len(payload))
                sock.sendall(head + payload[:-1])
                sockets.append(sock)
            try:
                time.sleep(0.3)
                assert live.health()["active_streams"] == 0  # reading bodies holds no slot
                for sock in sockets:
                    sock.sendall(payload[-1:])
                statuses = []
                for sock in sockets:
                    sock.settimeout(10)
                    head = b""
                    while b"\r\n\r\n" not in head:
                        piece = sock.recv(65536)
                        assert piece, head
                        head += piece
                    statuses.append(int(head.split(b" ", 2)[1]))
            finally:
                for sock in sockets:
                    sock.close()
            assert sorted(statuses) == [200, 200, 503, 503, 503, 503], statuses
            assert live.wait_no_streams(5) == 0


# -- 2. Origin and Host ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live() -> Iterator[LiveApp]:
    with LiveApp() as live:
        yield live


def assert_refused(response: httpx.Response, code: str) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == code
    security_headers_ok(response.headers)


def test_cross_site_text_plain_post_is_refused(live: LiveApp) -> None:
    """What a page on another site can make the user's browser send without a preflight."""
    for path in (STREAM_PATH, BUFFERED_PATH):
        response = httpx.post(live.url + path, content=json.dumps(BODY), headers={"content-type": "text/plain;charset=UTF-8", "origin": "https://evil.example"}, timeout=10)
        assert_refused(response, "forbidden_origin")
    for origin in ("null", "file://", f"http://127.0.0.1:{live.port + 1}", f"http://localhost:{live.port}", "http://127.0.0.1"):
        response = httpx.post(live.url + STREAM_PATH, json=BODY, headers={"origin": origin}, timeout=10)
        assert_refused(response, "forbidden_origin")


def test_same_origin_is_accepted(live: LiveApp) -> None:
    for host in (f"127.0.0.1:{live.port}", f"localhost:{live.port}"):
        response = httpx.post(live.url + STREAM_PATH, json=BODY, headers={"origin": f"http://{host}", "host": host}, timeout=10)
        assert response.status_code == 200, response.text
        assert "event: done" in response.text
    # No Origin at all (curl, scripts, same-origin GETs) is not a cross-site request.
    assert httpx.post(live.url + BUFFERED_PATH, json=BODY, timeout=10).status_code == 200


def test_listed_origin_is_accepted() -> None:
    with LiveApp({"ALLOWED_ORIGINS": "https://a.example"}) as live:
        response = httpx.post(live.url + STREAM_PATH, content=json.dumps(BODY), headers={"content-type": "text/plain", "origin": "https://a.example"}, timeout=10)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://a.example"
        assert_refused(httpx.post(live.url + STREAM_PATH, json=BODY, headers={"origin": "https://b.example"}, timeout=10), "forbidden_origin")


def test_rebound_host_is_refused_on_loopback(live: LiveApp) -> None:
    """DNS rebinding: evil.example resolves to 127.0.0.1, so the browser sends Host: evil.example
    (and, being same-origin for it, Origin http://evil.example:port)."""
    host = f"evil.example:{live.port}"
    for headers in ({"host": host}, {"host": host, "origin": f"http://{host}"}):
        assert_refused(httpx.post(live.url + STREAM_PATH, json=BODY, headers=headers, timeout=10), "forbidden_host")
        assert_refused(httpx.get(live.url + HEALTH_PATH, headers=headers, timeout=10), "forbidden_host")
    # Loopback names are fine; the page's static files stay open to any name.
    for name in ("localhost", "127.0.0.1", "127.1.2.3", "app.localhost"):
        assert httpx.get(live.url + HEALTH_PATH, headers={"host": f"{name}:{live.port}"}, timeout=10).status_code == 200, name
    page = httpx.get(live.url + "/", headers={"host": host}, timeout=10)
    assert page.status_code == 200
    security_headers_ok(page.headers)


def test_allowed_hosts_on_loopback() -> None:
    """A reverse proxy on the same machine that passes the public name on."""
    with LiveApp({"ALLOWED_HOSTS": "app.example"}) as live:
        ok = httpx.post(live.url + STREAM_PATH, json=BODY, headers={"host": "app.example", "origin": "http://app.example"}, timeout=10)
        assert ok.status_code == 200, ok.text
        assert_refused(httpx.post(live.url + STREAM_PATH, json=BODY, headers={"host": "evil.example"}, timeout=10), "forbidden_host")


async def call(app: Any, scope: dict[str, Any], body: bytes = b"") -> tuple[int, dict[str, str], bytes, list[dict[str, Any]]]:
    """One request through a pure ASGI app in memory (not for streams): status, headers, body, messages."""
    messages: list[dict[str, Any]] = []
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(scope, receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body"), messages


def http_scope(path: str, headers: dict[str, str], server: tuple[str, int], scheme: str = "http", method: str = "POST") -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "scheme": scheme,
        "server": server,
        "client": ("203.0.113.9", 40000),
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }


async def _ok_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize(
    "server, headers, scheme, expected",
    [
        # A PaaS deploy (bound to 0.0.0.0, reached on a private address), known as app.example
        # (the platform's variable): its own name, never a rebound one.
        (("10.0.0.5", 8000), {"host": "evil.example"}, "http", 403),
        (("10.0.0.5", 8000), {"host": "app.example"}, "http", 200),
        (("10.0.0.5", 8000), {"host": "app.example", "origin": "https://app.example", "x-forwarded-proto": "https"}, "http", 200),
        (("10.0.0.5", 8000), {"host": "app.example:8443", "origin": "https://app.example:8443"}, "https", 200),
        (("10.0.0.5", 8000), {"host": "app.example", "origin": "https://evil.example", "x-forwarded-proto": "https"}, "http", 403),
        (("10.0.0.5", 8000), {"host": "app.example", "origin": "http://app.example", "x-forwarded-proto": "https"}, "http", 403),
        (("10.0.0.5", 8000), {"host": "app.example", "origin": "https://app.example", "x-forwarded-proto": "https, http"}, "http", 200),
        (("10.0.0.5", 8000), {"host": "app.example", "origin": "https://app.example"}, "http", 200),  # a proxy ended TLS and said nothing
        (("10.0.0.5", 8000), {"host": "app.example", "origin": "http://app.example"}, "https", 403),  # an http page calling the https server
        # Loopback: loopback names, and the deploy's own.
        (("127.0.0.1", 8000), {"host": "evil.example"}, "http", 403),
        (("::1", 8000), {"host": "evil.example"}, "http", 403),
        (("::1", 8000), {"host": "[::1]:8000", "origin": "http://[::1]:8000"}, "http", 200),
        (("::ffff:127.0.0.1", 8000), {"host": "evil.example"}, "http", 403),
    ],
)
def test_guard_refuses_rebound_names_whatever_address_the_connection_arrived_on(server: tuple[str, int], headers: dict[str, str], scheme: str, expected: int) -> None:
    guard = AccessGuard(_ok_app, access_token=None, platform_hosts=("app.example",))
    status, _, _, _ = asyncio.run(call(guard, http_scope(STREAM_PATH, headers, server, scheme)))
    assert status == expected


# -- the Procfile's lab setting ------------------------------------------------------------------------


def test_the_procfile_runs_with_the_lab_off_unless_the_platform_turns_it_on() -> None:
    """The Procfile loads deploy.env (LAB_ENABLED=false); a variable the platform sets wins."""
    with ServerProcess({}) as server:
        assert server.health()["lab"] is False
        refused = httpx.post(server.url + STREAM_PATH + "?lab=blocking", json=BODY, timeout=10)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "lab_disabled"
        assert httpx.post(server.url + STREAM_PATH, json=BODY, timeout=10).status_code == 200
    with ServerProcess({"LAB_ENABLED": "true"}) as server:
        assert server.health()["lab"] is True
    assert Settings.from_env({}).lab_enabled is True  # the demo (make run) keeps it


# -- 3. the forwarded address ------------------------------------------------------------------------


def test_forged_forwarded_for_cannot_dodge_the_rate_limit() -> None:
    """The README's advice before: FORWARDED_ALLOW_IPS=* (uvicorn then takes the left-most entry,
    which the client writes). Now: FORWARDED_TRUSTED_HOPS=1, the right-most entry, whatever
    uvicorn is told. 80 requests with `X-Forwarded-For: <random>, <real>`: 60 pass, 20 are 429
    (plus at most one per second of refill while they run)."""
    env = {"RATE_LIMIT_PER_MINUTE": "60", "FORWARDED_TRUSTED_HOPS": "1", "FORWARDED_ALLOW_IPS": "*"}
    with ServerProcess(env) as server, httpx.Client(timeout=10) as client:
        started = time.monotonic()
        statuses = []
        for _ in range(80):
            forged = f"198.51.{uuid.uuid4().int % 256}.{uuid.uuid4().int % 256}"
            # An invalid body: counted by the limiter, answered 422 at once (no run to wait for).
            response = client.post(server.url + BUFFERED_PATH, json={"message": ""}, headers={"x-forwarded-for": f"{forged}, 203.0.113.7"})
            statuses.append(response.status_code)
        elapsed = time.monotonic() - started
        passed, limited = statuses.count(422), statuses.count(429)
        assert passed + limited == 80, statuses
        assert elapsed < 10
        assert 60 <= passed <= 60 + int(elapsed) + 1, (passed, limited, elapsed)
        # Another client behind the same router has its own bucket.
        response = client.post(server.url + BUFFERED_PATH, json={"message": ""}, headers={"x-forwarded-for": "203.0.113.8"})
        assert response.status_code == 422


@pytest.mark.parametrize(
    "headers, hops, expected",
    [
        ([], 0, "192.0.2.1"),
        ([(b"x-forwarded-for", b"203.0.113.5")], 0, "192.0.2.1"),
        ([], 1, "192.0.2.1"),  # a direct connection (no proxy wrote the header)
        ([(b"x-forwarded-for", b"203.0.113.5")], 1, "203.0.113.5"),
        ([(b"x-forwarded-for", b"6.6.6.6, 203.0.113.5")], 1, "203.0.113.5"),
        ([(b"x-forwarded-for", b"6.6.6.6,203.0.113.5 ")], 1, "203.0.113.5"),
        ([(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"203.0.113.5")], 1, "203.0.113.5"),
        ([(b"x-forwarded-for", b"6.6.6.6, 203.0.113.5, 10.0.0.2")], 2, "203.0.113.5"),  # CDN, then router
        ([(b"x-forwarded-for", b"203.0.113.5")], 2, "203.0.113.5"),
        ([(b"x-forwarded-for", b", ")], 1, "192.0.2.1"),
        ([(b"x-forwarded-for", b"1," * 100_000 + b"x" * 500)], 1, "x" * 64),
    ],
)
def test_client_address(headers: list[tuple[bytes, bytes]], hops: int, expected: str) -> None:
    assert client_address({"client": ("192.0.2.1", 5000), "headers": headers}, hops) == expected
    assert client_address({"client": None, "headers": []}, hops) == "unknown"


@pytest.mark.parametrize(
    "peer, headers, hops, expected",
    [
        # Every address of one /64 is one client: the low 64 bits are the client's to choose.
        ("2001:db8:1:2::1", [], 0, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:eeee:dddd:cccc", [], 0, "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", [], 0, "2001:db8:1:3::/64"),
        ("::ffff:192.0.2.7", [], 0, "192.0.2.7"),
        ("fe80::1%eth0", [], 0, "fe80::/64"),
        ("192.0.2.1", [(b"x-forwarded-for", b"2001:db8:aa:bb:1:2:3:4")], 1, "2001:db8:aa:bb::/64"),
        ("192.0.2.1", [(b"x-forwarded-for", b"[2001:db8:aa:bb::9]:443")], 1, "2001:db8:aa:bb::/64"),
        ("192.0.2.1", [(b"x-forwarded-for", b"2001:db8:aa:bb::9, ::ffff:203.0.113.5")], 1, "203.0.113.5"),
        ("192.0.2.1", [(b"x-forwarded-for", b"not:an:address")], 1, "not:an:address"),
        ("::1", [], 0, "::/64"),
    ],
)
def test_ipv6_clients_are_counted_by_their_64(peer: str, headers: list[tuple[bytes, bytes]], hops: int, expected: str) -> None:
    assert client_address({"client": (peer, 5000), "headers": headers}, hops) == expected


def test_one_ipv6_64_shares_one_rate_limit_bucket() -> None:
    """A client that walks its /64 (a new address per request) still meets the limit; a
    neighbouring /64 has its own bucket."""

    async def statuses() -> tuple[list[int], int]:
        limiter = RateLimiter(3, clock=lambda: 0.0)
        waits = []
        for index in range(5):
            scope = {"client": (f"2001:db8:1:2::{index + 1:x}", 5000), "headers": []}
            waits.append(await limiter.check(client_address(scope, 0)))
        other = await limiter.check(client_address({"client": ("2001:db8:1:3::1", 5000), "headers": []}, 0))
        return waits, other

    waits, other = asyncio.run(statuses())
    assert waits[:3] == [0, 0, 0] and all(w > 0 for w in waits[3:])
    assert other == 0


def test_forwarded_hops_setting() -> None:
    assert Settings.from_env({}).forwarded_trusted_hops == 0
    assert Settings.from_env({"FORWARDED_TRUSTED_HOPS": "1"}).forwarded_trusted_hops == 1


# -- 4. security headers on every response ---------------------------------------------------------------


def preflight(url: str, origin: str) -> httpx.Response:
    return httpx.options(url + STREAM_PATH, headers={"origin": origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type"}, timeout=10)


def test_preflights_carry_the_security_headers() -> None:
    with LiveApp({"ALLOWED_ORIGINS": "https://a.example"}) as live:
        allowed = preflight(live.url, "https://a.example")
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://a.example"
        security_headers_ok(allowed.headers)
        refused = preflight(live.url, "https://evil.example")
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
        security_headers_ok(refused.headers)


async def _boom(request: Request) -> Any:
    raise RuntimeError("a bug in a route")


def test_a_500_is_json_with_the_security_headers() -> None:
    """A route that raises: Starlette's ServerErrorMiddleware answers, inside the Gate."""
    live = LiveApp({"LOG_LEVEL": "info"})
    starlette_app = getattr(live.app, "app", live.app)  # inside the Gate
    starlette_app.router.routes.insert(0, Route("/api/test/boom", _boom, methods=["GET", "POST"]))
    with live:
        for method in ("GET", "POST"):
            response = httpx.request(method, live.url + "/api/test/boom", timeout=10)
            assert response.status_code == 500
            assert response.json()["error"]["code"] == "internal"
            security_headers_ok(response.headers)
        # And the server is fine.
        assert httpx.post(live.url + BUFFERED_PATH, json=BODY, timeout=10).status_code == 200


def test_gate_answers_json_500_when_the_app_raises_before_a_response() -> None:
    async def raises(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("outside Starlette's error middleware")

    gate = Gate(raises, frame_ancestors="'self'")
    messages: list[dict[str, Any]] = []

    async def run() -> None:
        async def send(message: dict[str, Any]) -> None:
            messages.append(message)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        await gate(http_scope("/api/x", {"host": "127.0.0.1"}, ("127.0.0.1", 1)), receive, send)

    with pytest.raises(RuntimeError):
        asyncio.run(run())  # re-raised: uvicorn logs the traceback of a bug
    start = messages[0]
    assert start["status"] == 500
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    security_headers_ok(headers)
    assert json.loads(messages[1]["body"])["error"]["code"] == "internal"


# -- 5. the Gate's send wrapper forwards body frames untouched ---------------------------------------------


def test_gate_forwards_body_messages_as_they_are() -> None:
    bodies = [{"type": "http.response.body", "body": b"frame %d" % i, "more_body": True} for i in range(3)]

    async def streams(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for message in bodies:
            await send(message)

    status, _, _, messages = asyncio.run(call(Gate(streams, frame_ancestors="'self'"), http_scope("/api/x", {}, ("127.0.0.1", 1))))
    assert status == 200
    assert messages[1:] == bodies and all(a is b for a, b in zip(messages[1:], bodies))
    assert all(set(m) == {"type", "body", "more_body"} for m in messages[1:])
