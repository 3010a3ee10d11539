"""Abuse and access: the access token, the start-up warning, limits, headers, CORS, the API key.

Every check runs against a real server (LiveApp: uvicorn in a thread; or the Procfile's
command as a subprocess where stdout matters).
"""

from __future__ import annotations

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
from web.limits import RateLimiter

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
    now = [0.0]
    limiter = RateLimiter(6, clock=lambda: now[0], max_clients=100)
    assert [limiter.check("a") for _ in range(6)] == [0] * 6
    assert limiter.check("a") == 10  # one token every 10 s
    now[0] += 10
    assert limiter.check("a") == 0
    assert limiter.check("a") > 0
    # A flood from many addresses keeps the table bounded and does not reset "a".
    for index in range(5000):
        limiter.check(f"10.0.{index // 256}.{index % 256}")
        assert len(limiter) <= 100
    assert limiter.check("a") > 0
    assert RateLimiter(0).check("x") == 0  # 0 turns it off


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
