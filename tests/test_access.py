"""Abuse and access: the access token, the start-up warning, limits, headers, CORS, the API key.

Every check runs against a real server (LiveApp: uvicorn in a thread; or the Procfile's
command as a subprocess where stdout matters).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from typing import Any, Iterator

import httpx
import pytest

from app import create_app
from agent.config import Settings
from tests.conftest import upstream_env
from tests.support.harness import ServerProcess, post_stream, wait_until
from tests.support.servers import BUFFERED_PATH, HEALTH_PATH, STREAM_PATH, FakeUpstream, LiveApp, Plan
from web import gate as gate_module
from web.gate import AccessGuard
from web.limits import RateLimiter, StreamSlots

TOKEN = "tok-0123456789-abcdef"
BODY = {"message": "hello", "mode": "chat"}


def post(url: str, path: str = STREAM_PATH, body: Any = BODY, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(url + path, json=body, headers=headers or {}, timeout=10)


# -- APP_ACCESS_TOKEN ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded() -> Iterator[LiveApp]:
    with LiveApp({"APP_ACCESS_TOKEN": TOKEN}) as live:
        yield live


@pytest.mark.parametrize("path", [STREAM_PATH, BUFFERED_PATH])
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ''", "Bearer wrong", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN.upper()}"],
    ids=["missing", "empty", "scheme-only", "quotes", "wrong", "prefix", "longer", "basic", "no-scheme", "wrong-case"],
)
def test_token_required(guarded: LiveApp, path: str, authorization: str | None) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    response = post(guarded.url, path, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"
    assert TOKEN not in response.text


@pytest.mark.parametrize("path", [STREAM_PATH, BUFFERED_PATH])
@pytest.mark.parametrize("authorization", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER  {TOKEN}"])
def test_token_accepted(guarded: LiveApp, path: str, authorization: str) -> None:
    response = post(guarded.url, path, headers={"authorization": authorization})
    assert response.status_code == 200, response.text


def test_token_guards_every_api_route_but_health(guarded: LiveApp) -> None:
    assert httpx.get(guarded.url + HEALTH_PATH, timeout=10).status_code == 200
    assert httpx.get(guarded.url + "/api/anything", timeout=10).status_code == 401
    assert httpx.get(guarded.url + STREAM_PATH, timeout=10).status_code == 401  # even the 405
    # The page and the API description stay public.
    assert httpx.get(guarded.url + "/openapi.json", timeout=10).status_code == 200
    assert httpx.get(guarded.url + "/", timeout=10).status_code != 401


def test_token_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check goes through hmac.compare_digest on fixed-length digests: its time does not
    depend on where the first wrong byte is, nor on the length of the token sent."""
    calls: list[tuple[bytes, bytes]] = []
    real = gate_module.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(gate_module.hmac, "compare_digest", spy)
    guard = AccessGuard(None, access_token=TOKEN)
    for sent, expected in [(TOKEN, True), ("x", False), (TOKEN + "x" * 100, False), ("", False)]:
        scope = {"headers": [(b"authorization", b"Bearer " + sent.encode())]}
        assert guard._authorized(scope) is expected
    assert len(calls) == 4
    assert {len(a) for a, _ in calls} == {len(b) for _, b in calls} == {32}


def test_no_token_configured_means_open() -> None:
    with LiveApp({}) as live:
        assert post(live.url).status_code == 200


# -- the start-up warning ------------------------------------------------------------------------


def warnings_in(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("level") == "warning" and "APP_ACCESS_TOKEN" in line.get("message", "")]


def test_warning_when_real_model_without_token(fake_upstream: FakeUpstream) -> None:
    with ServerProcess(upstream_env(fake_upstream, LOG_LEVEL="info")) as server:
        assert wait_until(lambda: bool(warnings_in(server.json_lines())), 5), server.stdout_text()
    with ServerProcess(upstream_env(fake_upstream, LOG_LEVEL="info", APP_ACCESS_TOKEN=TOKEN)) as server:
        time.sleep(0.3)
        lines = server.json_lines()
        assert any(line.get("message") == "started" for line in lines), server.stdout_text()
        assert not warnings_in(lines)


def test_no_warning_for_offline_model() -> None:
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(level=logging.DEBUG)
    logger = logging.getLogger("scenario_agent")
    logger.addHandler(handler)
    try:
        with LiveApp({"LOG_LEVEL": "info"}):
            pass
    finally:
        logger.removeHandler(handler)
    assert any(isinstance(r.msg, dict) and r.msg.get("message") == "started" for r in records)
    assert not [r for r in records if r.levelno >= logging.WARNING]


# -- rate limit and client addresses ---------------------------------------------------------------


def assert_rate_limited(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limited"
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    return retry_after


def test_rate_limit_per_client() -> None:
    with LiveApp({"RATE_LIMIT_PER_MINUTE": "3"}) as live:
        for _ in range(3):
            assert post(live.url).status_code == 200
        retry_after = assert_rate_limited(post(live.url))
        assert 15 <= retry_after <= 20  # one token back at 3 a minute
        assert_rate_limited(post(live.url, BUFFERED_PATH))
        # Health is never limited.
        for _ in range(10):
            assert httpx.get(live.url + HEALTH_PATH, timeout=10).status_code == 200


def test_forwarded_for_ignored_without_trusted_hops() -> None:
    # FORWARDED_TRUSTED_HOPS=0 (the default): X-Forwarded-For cannot dodge the limit. uvicorn's
    # own proxy headers are off here, as they should be (web/client_address.py).
    with LiveApp({"RATE_LIMIT_PER_MINUTE": "3"}, proxy_headers=False) as live:
        for index in range(3):
            assert post(live.url, headers={"x-forwarded-for": f"203.0.113.{index}"}).status_code == 200
        assert_rate_limited(post(live.url, headers={"x-forwarded-for": "198.51.100.77"}))


def test_forwarded_for_with_one_trusted_hop_counts_separately() -> None:
    with LiveApp({"RATE_LIMIT_PER_MINUTE": "3", "FORWARDED_TRUSTED_HOPS": "1"}, proxy_headers=False) as live:
        first = {"x-forwarded-for": "203.0.113.1"}
        for _ in range(3):
            assert post(live.url, headers=first).status_code == 200
        assert_rate_limited(post(live.url, headers=first))
        # Another client behind the same proxy has its own allowance, as does the proxy itself.
        for _ in range(3):
            assert post(live.url, headers={"x-forwarded-for": "203.0.113.2"}).status_code == 200
        assert post(live.url).status_code == 200
        # The client is the address the trusted proxy appended last; what it wrote itself is not used.
        assert_rate_limited(post(live.url, headers={"x-forwarded-for": "192.0.2.9, 203.0.113.1"}))


def test_rate_limiter_refills_and_bounds_memory() -> None:
    async def scenario() -> None:
        now = [0.0]
        limiter = RateLimiter(6, clock=lambda: now[0], max_clients=100)
        assert [await limiter.check("a") for _ in range(6)] == [0] * 6
        assert await limiter.check("a") == 10  # one token every 10 s
        now[0] += 10
        assert await limiter.check("a") == 0
        assert await limiter.check("a") > 0
        # A flood from many addresses keeps the table bounded and does not reset "a".
        for index in range(5000):
            await limiter.check(f"10.0.{index // 256}.{index % 256}")
            assert len(limiter) <= 100
        assert await limiter.check("a") > 0
        assert await RateLimiter(0).check("x") == 0  # 0 turns it off

    asyncio.run(scenario())


def test_stream_slots_count_runs_not_calls() -> None:
    async def scenario() -> None:
        slots = StreamSlots(2)
        assert await slots.active() == 0
        assert await slots.acquire("a") and await slots.acquire("b")
        assert await slots.acquire("a")  # the same run: no second slot
        assert not await slots.acquire("c")
        assert await slots.active() == 2
        await slots.release("a")
        await slots.release("a")  # idempotent: one slot freed, not two
        assert await slots.active() == 1
        assert await slots.acquire("c")
        assert not await slots.acquire("d")
        # Runs admitted together cannot pass the limit between them.
        many = StreamSlots(10)
        results = await asyncio.gather(*(many.acquire(f"run-{i}") for i in range(50)))
        assert results.count(True) == 10 and await many.active() == 10

    asyncio.run(scenario())


# -- concurrent streams and output tokens ------------------------------------------------------------


def test_max_concurrent_streams() -> None:
    with FakeUpstream(Plan(tokens=["slow "] * 4, interval_ms=500)) as fake:
        with LiveApp(upstream_env(fake, MAX_CONCURRENT_STREAMS="2")) as live:
            results: list[int] = []

            def stream() -> None:
                results.append(post_stream(live.url, BODY)[0])

            threads = [threading.Thread(target=stream) for _ in range(2)]
            for thread in threads:
                thread.start()
            assert wait_until(lambda: live.health()["active_streams"] == 2, 5)
            for path in (STREAM_PATH, BUFFERED_PATH):
                response = post(live.url, path)
                assert response.status_code == 503
                assert response.json()["error"]["code"] == "too_many_streams"
                assert int(response.headers["retry-after"]) >= 1
            assert httpx.get(live.url + HEALTH_PATH, timeout=10).status_code == 200
            for thread in threads:
                thread.join(15)
            assert results == [200, 200]
            assert live.wait_no_streams(5) == 0
            # A refused request held no slot: capacity is back.
            fake.default = Plan(tokens=["ok"])
            assert post(live.url).status_code == 200


@pytest.mark.parametrize("env, expected", [({}, 2048), ({"MAX_OUTPUT_TOKENS": "123"}, 123)])
def test_max_output_tokens_sent_upstream(fake_upstream: FakeUpstream, env: dict[str, str], expected: int) -> None:
    with LiveApp(upstream_env(fake_upstream, **env)) as live:
        assert post(live.url).status_code == 200
        assert post(live.url, BUFFERED_PATH).status_code == 200
    assert [r["max_tokens"] for r in fake_upstream.requests] == [expected, expected]


# -- security headers -------------------------------------------------------------------------------


def security_headers_ok(response: httpx.Response, frame_ancestors: str = "'self'") -> None:
    csp = response.headers["content-security-policy"]
    directives = {d.strip().split(" ")[0]: d.strip() for d in csp.split(";")}
    assert directives["default-src"] == "default-src 'self'"
    assert directives["frame-ancestors"] == f"frame-ancestors {frame_ancestors}"
    assert directives["object-src"] == "object-src 'none'"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-request-id"]


def test_security_headers_on_page_and_api(offline_app: LiveApp) -> None:
    url = offline_app.url
    page = httpx.get(url + "/", timeout=10)
    security_headers_ok(page)
    assert page.headers["x-frame-options"] == "SAMEORIGIN"
    for response in (
        httpx.get(url + "/openapi.json", timeout=10),
        httpx.get(url + HEALTH_PATH, timeout=10),
        post(url),
        post(url, BUFFERED_PATH),
        post(url, body={"message": ""}),
        httpx.get(url + "/api/missing", timeout=10),
        httpx.get(url + "/missing.html", timeout=10),
    ):
        security_headers_ok(response)


def test_frame_ancestors_configurable() -> None:
    ancestors = "'self' https://embed.example https://*.partner.example"
    with LiveApp({"FRAME_ANCESTORS": ancestors}) as live:
        for response in (httpx.get(live.url + "/", timeout=10), post(live.url)):
            security_headers_ok(response, ancestors)
            assert "x-frame-options" not in response.headers  # it could only contradict the CSP


@pytest.mark.parametrize("value", ["'self'; script-src *", "a\r\nx-injected: 1", "a, b"])
def test_frame_ancestors_cannot_inject(value: str) -> None:
    """A value that would end the directive (or the header) stops the app from being built
    (the Gate, outermost, is built by create_app)."""
    with pytest.raises(ValueError, match="FRAME_ANCESTORS"):
        create_app(Settings.from_env({"FRAME_ANCESTORS": value}))


# -- CORS ------------------------------------------------------------------------------------------


def preflight(url: str, origin: str) -> httpx.Response:
    return httpx.options(
        url + STREAM_PATH,
        headers={"origin": origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type, authorization"},
        timeout=10,
    )


def test_cors_off_by_default(offline_app: LiveApp) -> None:
    response = preflight(offline_app.url, "https://a.example")
    assert "access-control-allow-origin" not in response.headers
    # And the request itself is refused (tests/test_hardening.py: Origin and Host).
    response = post(offline_app.url, headers={"origin": "https://a.example"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden_origin"
    assert "access-control-allow-origin" not in response.headers


def test_cors_for_listed_origins_only() -> None:
    with LiveApp({"ALLOWED_ORIGINS": "https://a.example, https://b.example", "APP_ACCESS_TOKEN": TOKEN}) as live:
        for origin in ("https://a.example", "https://b.example"):
            response = preflight(live.url, origin)  # no token needed for a preflight
            assert response.status_code == 200
            assert response.headers["access-control-allow-origin"] == origin
            assert "POST" in response.headers["access-control-allow-methods"]
            allowed = response.headers["access-control-allow-headers"].lower()
            assert "authorization" in allowed and "content-type" in allowed
            simple = post(live.url, headers={"origin": origin, "authorization": f"Bearer {TOKEN}"})
            assert simple.status_code == 200
            assert simple.headers["access-control-allow-origin"] == origin
            assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
        for origin in ("https://evil.example", "https://a.example.evil.example", "null"):
            response = preflight(live.url, origin)
            assert response.status_code >= 400
            assert "access-control-allow-origin" not in response.headers
            simple = post(live.url, headers={"origin": origin, "authorization": f"Bearer {TOKEN}"})
            assert simple.status_code == 403 and simple.json()["error"]["code"] == "forbidden_origin"
            assert "access-control-allow-origin" not in simple.headers
        # An error answer to a listed origin is readable by its page too.
        denied = post(live.url, headers={"origin": "https://a.example"})
        assert denied.status_code == 401
        assert denied.headers["access-control-allow-origin"] == "https://a.example"


def test_allowed_origins_star_allows_every_origin() -> None:
    """ALLOWED_ORIGINS=* means any page may call the API: the preflight and the request itself."""
    with LiveApp({"ALLOWED_ORIGINS": "*"}) as live:
        for origin in ("https://a.example", "https://evil.example", "http://localhost:3000"):
            response = preflight(live.url, origin)
            assert response.status_code == 200
            assert response.headers["access-control-allow-origin"] == "*"
            simple = post(live.url, headers={"origin": origin})
            assert simple.status_code == 200, simple.text
            assert simple.headers["access-control-allow-origin"] == "*"
            assert "event: done" in simple.text


# -- Host and Origin without a socket: the names a deployment answers to -------------------------------


async def _ok_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def guard_status(guard: AccessGuard, host: str | None, server: tuple[str, int], origin: str | None = None) -> int:
    """The status the guard answers a POST to the stream with `Host: host`, over a connection
    that arrived on `server` (uvicorn's scope["server"]: the socket's local address)."""
    headers = [(b"host", host.encode())] if host is not None else []
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    scope = {"type": "http", "method": "POST", "path": STREAM_PATH, "scheme": "http", "server": server, "client": ("203.0.113.9", 40000), "headers": headers}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(guard(scope, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


# A container (Docker's bridge), a LAN address under --host 0.0.0.0, a cloud VM, loopback.
SERVER_ADDRESSES = [("172.17.0.2", 8000), ("192.168.1.20", 8000), ("10.0.0.5", 8000), ("2001:db8::5", 8000), ("127.0.0.1", 8000), ("::1", 8000)]


@pytest.mark.parametrize("server", SERVER_ADDRESSES, ids=[a for a, _ in SERVER_ADDRESSES])
def test_rebound_names_are_refused_on_every_address(server: tuple[str, int]) -> None:
    guard = AccessGuard(_ok_app, access_token=None, platform_hosts=())
    for host in ("rebind.evil.example", "rebind.evil.example:8000", "evil", "localhost.evil.example", "127.0.0.1.nip.io", ""):
        assert guard_status(guard, host, server) == 403, host
    address = server[0]
    literal = f"[{address}]" if ":" in address else address
    # The address the connection arrived on, any other address (a DNS name cannot be rebound to
    # look like one), and loopback names.
    for host in (f"{literal}:8000", literal, "203.0.113.50", "[2001:db8::77]:8000", "localhost:8000", "app.localhost", "127.0.0.1", "[::1]:8000"):
        assert guard_status(guard, host, server) == 200, host
    # No Host at all (HTTP/1.0): nothing to check.
    assert guard_status(guard, None, server) == 200


def test_the_machines_own_name_is_accepted_and_looked_up_once_when_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def gethostname() -> str:
        calls.append(1)
        return "Box-7F3A"

    monkeypatch.setattr(gate_module.socket, "gethostname", gethostname)
    guard = AccessGuard(_ok_app, access_token=None, platform_hosts=())
    assert calls == []  # not when built
    assert guard_status(guard, "localhost:8000", ("172.17.0.2", 8000)) == 200
    assert calls == []  # nor for a name decided without it
    assert guard_status(guard, "box-7f3a:8000", ("172.17.0.2", 8000)) == 200
    assert guard_status(guard, "evil.example", ("172.17.0.2", 8000)) == 403
    assert calls == [1]


def test_platform_names_from_the_environment() -> None:
    env = {
        "RENDER_EXTERNAL_HOSTNAME": "my-app.onrender.com",
        "FLY_APP_NAME": "my-fly-app",
        "HEROKU_APP_DEFAULT_DOMAIN_NAME": "my-heroku-app-0123abcd.herokuapp.com",
        "RAILWAY_PUBLIC_DOMAIN": "my-app.up.railway.app",
        "RAILWAY_PRIVATE_DOMAIN": "my-app.railway.internal",
    }
    names = gate_module.platform_host_names(env)
    assert set(names) == {
        "my-app.onrender.com", "my-fly-app.fly.dev", "my-fly-app.internal", "my-fly-app.flycast",
        "my-heroku-app-0123abcd.herokuapp.com", "my-app.up.railway.app", "my-app.railway.internal",
    }
    assert gate_module.platform_host_names({}) == ()
    # A value that is not a host name adds nothing.
    assert gate_module.platform_host_names({"RENDER_EXTERNAL_HOSTNAME": "a b", "FLY_APP_NAME": "x/y", "RAILWAY_PUBLIC_DOMAIN": " "}) == ()
    guard = AccessGuard(_ok_app, access_token=None, platform_hosts=names)
    for host in ("my-app.onrender.com", "MY-FLY-APP.fly.dev:443", "my-app.up.railway.app.", "my-heroku-app-0123abcd.herokuapp.com"):
        assert guard_status(guard, host, ("10.0.0.5", 10000), origin=None) == 200, host
    assert guard_status(guard, "other-app.onrender.com", ("10.0.0.5", 10000)) == 403


def test_platform_names_are_read_when_the_guard_is_built_not_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLY_APP_NAME", "late-app")
    guard = AccessGuard(_ok_app, access_token=None)
    monkeypatch.setenv("FLY_APP_NAME", "later-app")
    assert guard_status(guard, "late-app.fly.dev", ("172.19.0.3", 8080)) == 200
    assert guard_status(guard, "later-app.fly.dev", ("172.19.0.3", 8080)) == 403  # read once


def test_allowed_hosts_add_names_and_star_turns_the_check_off() -> None:
    listed = AccessGuard(_ok_app, access_token=None, allowed_hosts=("app.example", "www.app.example"), platform_hosts=("my-app.onrender.com",))
    for host in ("app.example", "www.app.example:443", "my-app.onrender.com", "localhost"):
        assert guard_status(listed, host, ("10.0.0.5", 8000)) == 200, host
    assert guard_status(listed, "evil.example", ("10.0.0.5", 8000)) == 403
    open_guard = AccessGuard(_ok_app, access_token=None, allowed_hosts=Settings.from_env({"ALLOWED_HOSTS": "*"}).allowed_hosts, platform_hosts=())
    for server in (("10.0.0.5", 8000), ("127.0.0.1", 8000)):
        assert guard_status(open_guard, "rebind.evil.example", server) == 200


def test_origin_star_lets_any_origin_through_the_guard() -> None:
    guard = AccessGuard(_ok_app, access_token=None, allowed_origins=Settings.from_env({"ALLOWED_ORIGINS": "*"}).allowed_origins, platform_hosts=())
    for origin in ("https://evil.example", "null", "http://127.0.0.1:1"):
        assert guard_status(guard, "localhost:8000", ("127.0.0.1", 8000), origin=origin) == 200
    # The Host check still applies: a rebound name is refused whatever the origin setting.
    assert guard_status(guard, "rebind.evil.example", ("127.0.0.1", 8000), origin="http://rebind.evil.example") == 403


# -- the API key appears nowhere --------------------------------------------------------------------

SECRET = "sk-LEAKCHECK-9f8e7d6c5b4a3928171605f4e3d2c1b0"


def test_api_key_never_leaks() -> None:
    """Every fault, both endpoints, bad input, a disconnect, at debug level: the key is in no
    response body or header, and in nothing the process prints. The fake upstream echoes the
    Authorization header it received in its error bodies, as real servers do."""
    collected: list[str] = []
    with FakeUpstream() as fake:
        env = upstream_env(fake, OPENAI_API_KEY=SECRET, LOG_LEVEL="debug", UPSTREAM_IDLE_TIMEOUT_SECONDS="1", UPSTREAM_MAX_RETRIES="0")
        plans = [Plan(status=s, echo_auth=True) for s in (400, 401, 403, 404, 429, 500, 502, 503)]
        plans += [Plan(status=429, headers={"retry-after": "3"}, echo_auth=True)]
        plans += [Plan(fault=f, fault_after=1, echo_auth=True) for f in ("reset", "stall", "malformed", "missing_fields", "no_done", "error_payload", "refuse")]
        plans += [Plan()]
        with ServerProcess(env, ("--log-level", "debug")) as server:
            for path in (STREAM_PATH, BUFFERED_PATH):
                for plan in plans:
                    fake.push(plan)
                    response = httpx.post(server.url + path, json=BODY, timeout=15)
                    collected.append(f"{response.status_code} {dict(response.headers)} {response.text}")
                    if path == STREAM_PATH:
                        assert response.status_code == 200
            assert not fake.plans
            for content, headers in [
                (b"{", {}),
                (b"\xff", {}),
                (b"message=x", {"content-type": "application/x-www-form-urlencoded"}),
                (json.dumps({"message": ""}).encode(), {}),
                (json.dumps({"message": "hi", "key": "value"}).encode(), {}),
            ]:
                response = httpx.post(server.url + STREAM_PATH, content=content, headers={"content-type": "application/json", **headers}, timeout=10)
                collected.append(f"{response.status_code} {dict(response.headers)} {response.text}")
            for url in (HEALTH_PATH, "/openapi.json", "/", "/api/nope"):
                response = httpx.get(server.url + url, timeout=10)
                collected.append(f"{response.status_code} {dict(response.headers)} {response.text}")
            # A client that leaves mid-answer.
            fake.push(Plan(tokens=["x "] * 50, interval_ms=20))
            sock = socket.create_connection(("127.0.0.1", server.port))
            payload = json.dumps(BODY).encode()
            sock.sendall(b"POST %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (STREAM_PATH.encode(), len(payload), payload))
            time.sleep(0.2)
            sock.close()
            assert fake.wait_idle(5)
            server.terminate()
            server.wait(15)
            output = server.stdout_text() + server.stderr_text()
    # The test means something: the key was sent upstream and came back in error bodies.
    assert all(h.get("authorization") == f"Bearer {SECRET}" for h in fake.request_headers)
    assert len(fake.requests) >= 2 * len(plans)
    assert "scenario_agent.request" in output and '"level": "debug"' in output
    everything = "\n".join(collected) + "\n" + output
    for fragment in (SECRET, SECRET[3:], SECRET[-12:], SECRET[:16]):
        assert fragment not in everything, f"the API key ({fragment}) leaked"
