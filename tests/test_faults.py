"""Upstream faults: each ends the stream with a typed `error` frame, then `done`, and the server stays healthy.

The model is tests/support/fake_upstream.py, a real HTTP server on loopback told per
request (Plan) what to do. Retries happen only before the first token (the client
must never see text twice).
"""

from __future__ import annotations

import socket
import time
from typing import Iterator

import httpx
import pytest

from tests.conftest import upstream_env
from tests.support.harness import assert_well_formed, chat_text, kinds, post_stream, wait_until
from tests.support.servers import BUFFERED_PATH, STREAM_PATH, FakeUpstream, LiveApp, Plan, free_port, iter_frames

BODY = {"message": "hello there", "mode": "chat"}
TOKENS = ["Alpha ", "beta ", "gamma ", "delta ", "epsilon."]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def app0(fake: FakeUpstream) -> Iterator[LiveApp]:
    """No retries; an idle upstream is given up after 1 s."""
    with LiveApp(upstream_env(fake, UPSTREAM_IDLE_TIMEOUT_SECONDS="1", UPSTREAM_MAX_RETRIES="0")) as live:
        yield live


@pytest.fixture(scope="module")
def app2(fake: FakeUpstream) -> Iterator[LiveApp]:
    """Two retries (the default)."""
    with LiveApp(upstream_env(fake, UPSTREAM_IDLE_TIMEOUT_SECONDS="2", UPSTREAM_MAX_RETRIES="2")) as live:
        yield live


@pytest.fixture(autouse=True)
def _clean(fake: FakeUpstream) -> Iterator[None]:
    fake.plans.clear()
    fake.selector = None
    yield
    assert not fake.plans, "a pushed plan was not used"


def assert_healthy(live: LiveApp, fake: FakeUpstream) -> None:
    """After a fault: no stream left open on either side, and a normal request works."""
    assert live.wait_no_streams(5) == 0
    assert fake.wait_idle(5), f"upstream still has {fake.open_streams} open streams"
    health = live.health()
    assert health["status"] == "ok"
    fake.push(Plan(tokens=["still ", "fine"]))
    status, _, frames = post_stream(live.url, BODY)
    assert status == 200
    assert assert_well_formed(frames) is None
    assert chat_text(frames) == "still fine"
    assert live.wait_no_streams(5) == 0


def run_fault(live: LiveApp, fake: FakeUpstream, *plans: Plan) -> tuple[list, dict]:
    fake.push(*plans)
    before = len(fake.requests)
    status, headers, frames = post_stream(live.url, BODY)
    assert status == 200, "an upstream failure after the stream started does not change the status"
    assert headers["content-type"].startswith("text/event-stream")
    error = assert_well_formed(frames)
    assert error is not None, kinds(frames)
    # Every error frame is typed and explained, and never carries a traceback or upstream body.
    assert set(error) <= {"type", "code", "message", "retryable", "retry_after"}
    assert isinstance(error["message"], str) and error["message"] and "Traceback" not in error["message"]
    assert "fake error" not in error["message"]
    error["_requests"] = len(fake.requests) - before
    return frames, error


# -- HTTP status errors from the upstream ----------------------------------------------------


@pytest.mark.parametrize(
    "status, headers, code, retryable, retry_after",
    [
        (401, {}, "upstream_auth", False, None),
        (403, {}, "upstream_auth", False, None),
        (429, {"retry-after": "7"}, "upstream_rate_limited", True, 7),
        (429, {}, "upstream_rate_limited", True, None),
        (500, {}, "upstream_unavailable", True, None),
        (502, {}, "upstream_unavailable", True, None),
        (503, {}, "upstream_unavailable", True, None),
        (400, {}, "upstream_rejected", False, None),
        (404, {}, "upstream_rejected", False, None),
    ],
)
def test_upstream_status_error(app0: LiveApp, fake: FakeUpstream, status, headers, code, retryable, retry_after) -> None:
    frames, error = run_fault(app0, fake, Plan(status=status, headers=headers))
    assert kinds(frames) == ["start", "error", "done"]
    assert error["code"] == code
    assert error["retryable"] is retryable
    if retry_after is None:
        assert "retry_after" not in error
    else:
        assert error["retry_after"] == retry_after
    assert error["_requests"] == 1
    assert_healthy(app0, fake)


def test_connection_refused() -> None:
    closed_port = free_port()  # nothing listens there
    env = {"OPENAI_BASE_URL": f"http://127.0.0.1:{closed_port}/v1", "OPENAI_API_KEY": "sk-test", "UPSTREAM_MAX_RETRIES": "0"}
    with LiveApp(env) as live:
        started = time.monotonic()
        status, _, frames = post_stream(live.url, BODY)
        assert time.monotonic() - started < 5
        assert status == 200
        error = assert_well_formed(frames)
        assert error is not None and error["code"] == "upstream_unavailable" and error["retryable"] is True
        assert kinds(frames) == ["start", "error", "done"]
        assert live.wait_no_streams(5) == 0
        assert live.health()["status"] == "ok"


def test_dns_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host name that does not resolve. Resolution is stubbed (no query leaves the machine):
    names under .invalid fail exactly as getaddrinfo fails for an unknown host."""
    looked_up: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, (bytes, str)) and str(host if isinstance(host, str) else host.decode()).endswith(".invalid"):
            looked_up.append(host if isinstance(host, str) else host.decode())
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    env = {"OPENAI_BASE_URL": "http://model-server.invalid/v1", "OPENAI_API_KEY": "sk-test", "UPSTREAM_MAX_RETRIES": "0"}
    # The asyncio loop resolves names with socket.getaddrinfo (uvloop would bypass the stub).
    with LiveApp(env, loop="asyncio") as live:
        status, _, frames = post_stream(live.url, BODY)
        assert status == 200
        error = assert_well_formed(frames)
        assert error is not None and error["code"] == "upstream_unavailable"
        assert kinds(frames) == ["start", "error", "done"]
        assert looked_up and looked_up[0] == "model-server.invalid"
        assert live.wait_no_streams(5) == 0
        assert live.health()["status"] == "ok"


# -- faults inside the body ------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault, after, code",
    [
        ("reset", 2, "upstream_interrupted"),
        ("no_done", 3, "upstream_interrupted"),
        ("malformed", 2, "upstream_invalid_response"),
        ("missing_fields", 1, "upstream_invalid_response"),
        ("error_payload", 2, "upstream_unavailable"),
        ("malformed", 0, "upstream_invalid_response"),
    ],
)
def test_fault_mid_stream_keeps_sent_tokens(app0: LiveApp, fake: FakeUpstream, fault: str, after: int, code: str) -> None:
    frames, error = run_fault(app0, fake, Plan(tokens=TOKENS, fault=fault, fault_after=after))
    assert error["code"] == code
    assert error["retryable"] is True
    # The tokens sent before the fault arrived, in order, exactly once, before the error.
    assert chat_text(frames) == "".join(TOKENS[:after])
    order = kinds(frames)
    assert order == ["start"] + ["chat"] * after + ["error", "done"]
    assert_healthy(app0, fake)


@pytest.mark.parametrize("after", [0, 2])
def test_stall_times_out(app0: LiveApp, fake: FakeUpstream, after: int) -> None:
    """No bytes for longer than UPSTREAM_IDLE_TIMEOUT_SECONDS (1 s here): upstream_timeout, upstream released."""
    fake.push(Plan(tokens=TOKENS, fault="stall", fault_after=after))
    disconnects = len(fake.disconnects)
    arrivals: list[tuple[float, str, dict]] = []
    with httpx.Client(timeout=15) as client:
        with client.stream("POST", app0.url + STREAM_PATH, json=BODY) as response:
            assert response.status_code == 200
            arrivals = list(iter_frames(response))
    frames = [(kind, data) for _, kind, data in arrivals]
    error = assert_well_formed(frames)
    assert error is not None and error["code"] == "upstream_timeout" and error["retryable"] is True
    assert chat_text(frames) == "".join(TOKENS[:after])
    # The silence began after the last token (or the start frame) and lasted at least the limit.
    last_data = [t for t, kind, _ in arrivals if kind in ("start", "chat")][-1]
    error_at = next(t for t, kind, _ in arrivals if kind == "error")
    assert 0.9 <= error_at - last_data < 4.0, error_at - last_data
    assert wait_until(lambda: len(fake.disconnects) > disconnects, 3), "the stalled upstream request was not closed"
    assert_healthy(app0, fake)


# -- retries -----------------------------------------------------------------------------------


@pytest.mark.parametrize("first", [Plan(status=503), Plan(status=429, headers={"retry-after": "0"}), Plan(fault="refuse")], ids=["503", "429", "refused"])
def test_retry_before_first_token(app2: LiveApp, fake: FakeUpstream, first: Plan) -> None:
    fake.push(first, Plan(tokens=TOKENS))
    before = len(fake.requests)
    status, _, frames = post_stream(app2.url, BODY)
    assert status == 200
    assert assert_well_formed(frames) is None
    assert chat_text(frames) == "".join(TOKENS)  # once, not twice
    assert len(fake.requests) - before == 2
    assert_healthy(app2, fake)


@pytest.mark.parametrize("fault", ["reset", "no_done", "malformed", "error_payload"])
def test_no_retry_after_first_token(app2: LiveApp, fake: FakeUpstream, fault: str) -> None:
    """With retries enabled, a failure after a token was sent is reported, never retried."""
    frames, error = run_fault(app2, fake, Plan(tokens=TOKENS, fault=fault, fault_after=2), Plan(tokens=["RETRIED "] * 3))
    assert error["_requests"] == 1, "the request was retried after tokens were sent"
    assert chat_text(frames) == "".join(TOKENS[:2])
    assert "RETRIED" not in chat_text(frames)
    fake.plans.clear()  # the unused second plan
    assert_healthy(app2, fake)


def test_retries_exhausted(app2: LiveApp, fake: FakeUpstream) -> None:
    frames, error = run_fault(app2, fake, Plan(status=503), Plan(status=502), Plan(status=500))
    assert error["code"] == "upstream_unavailable"
    assert error["_requests"] == 3  # the first try and two retries
    assert chat_text(frames) == ""
    assert_healthy(app2, fake)


# -- the buffered endpoint maps the same faults to HTTP statuses -------------------------------


@pytest.mark.parametrize(
    "plan, http_status, code, partial",
    [
        (Plan(status=401), 502, "upstream_auth", ""),
        (Plan(status=429, headers={"retry-after": "9"}), 429, "upstream_rate_limited", ""),
        (Plan(status=503), 502, "upstream_unavailable", ""),
        (Plan(tokens=TOKENS, fault="reset", fault_after=2), 502, "upstream_interrupted", "Alpha beta "),
        (Plan(tokens=TOKENS, fault="stall", fault_after=1), 504, "upstream_timeout", "Alpha "),
        (Plan(tokens=TOKENS, fault="malformed", fault_after=1), 502, "upstream_invalid_response", "Alpha "),
    ],
    ids=["auth", "rate", "unavailable", "reset", "stall", "malformed"],
)
def test_buffered_endpoint_faults(app0: LiveApp, fake: FakeUpstream, plan: Plan, http_status: int, code: str, partial: str) -> None:
    fake.push(plan)
    response = httpx.post(app0.url + BUFFERED_PATH, json=BODY, timeout=15)
    assert response.status_code == http_status
    body = response.json()
    assert body["error"]["code"] == code
    assert body["response"] == partial
    if code == "upstream_rate_limited":
        assert response.headers["retry-after"] == "9"
    assert_healthy(app0, fake)


# -- connection reuse ----------------------------------------------------------------------------


def test_upstream_connection_reused_after_complete_answer() -> None:
    with FakeUpstream() as fake, LiveApp(upstream_env(fake)) as live:
        for _ in range(5):
            status, _, frames = post_stream(live.url, BODY)
            assert status == 200 and assert_well_formed(frames) is None
        assert fake.connections_accepted == 1
        assert wait_until(lambda: fake.open_connections == 1, 2)  # the idle pooled connection


# -- text that is valid JSON but not valid Unicode ----------------------------------------------------


def test_lone_surrogate_from_upstream_ends_cleanly(app0: LiveApp, fake: FakeUpstream) -> None:
    fake.push(Plan(tokens=TOKENS, fault="surrogate", fault_after=2))
    status, _, frames = post_stream(app0.url, BODY)
    assert status == 200
    error = assert_well_formed(frames)  # ends with done, whatever else happens
    assert chat_text(frames).startswith("".join(TOKENS[:2]))
    if error is not None:
        assert error["code"] == "upstream_invalid_response"
    else:
        assert "\ufffd" in chat_text(frames)  # replaced, not dropped silently
    fake.push(Plan(tokens=TOKENS, fault="surrogate", fault_after=1))
    response = httpx.post(app0.url + BUFFERED_PATH, json=BODY, timeout=15)
    assert response.status_code < 500 or response.json()["error"]["code"] == "upstream_invalid_response"
    assert_healthy(app0, fake)
