"""Bad input: a clear 4xx JSON error `{error: {code, message}}`, never a 500.

Every case runs against both agent endpoints on a live server (the offline model, no
delay), and the answer must be JSON with a code and a message, never HTML or a trace.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any, Iterator

import httpx
import pytest

from tests.support.harness import parse_raw_response, raw_http
from tests.support.servers import BUFFERED_PATH, STREAM_PATH, LiveApp

ENDPOINTS = [STREAM_PATH, BUFFERED_PATH]
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def live() -> Iterator[LiveApp]:
    with LiveApp({"MAX_BODY_BYTES": str(256 * 1024)}) as live:
        yield live


def nested(levels: int) -> dict[str, Any]:
    """A scenario whose depth (agent.scenario.depth) is exactly `levels`."""
    value: dict[str, Any] = {"title": "deep"}
    for _ in range(levels - 1):
        value = {"title": "deep", "child": value}
    return value


def assert_error(response: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    error = body["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and len(error["message"]) > 10
    assert "Traceback" not in response.text
    if field is not None:
        assert error.get("field") == field, error
    assert response.headers.get("x-request-id")
    return error


def post(live: LiveApp, path: str, content: bytes | str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(live.url + path, content=content, headers=headers if headers is not None else JSON, timeout=10)


# -- the body as bytes -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "content, code",
    [
        (b'{"message": "hi"', "invalid_json"),
        (b"{'message': 'hi'}", "invalid_json"),
        (b"", "invalid_json"),
        (b"   \n", "invalid_json"),
        (b'{"message": NaN}', "invalid_json"),
        (b'{"message": "hi", "scenario": {"title": "x", "n": Infinity}}', "invalid_json"),
        (b'{"message": "hi", "scenario": {"title": "x", "n": 1e999}}', "invalid_json"),
        (b'{"message": "hi", "scenario": {"title": "x", "n": ' + b"9" * 5000 + b"}}", "invalid_json"),
        (b"[" * 50_000 + b"]" * 50_000, "invalid_json"),
        (b'{"message": "caf\xe9"}', "invalid_encoding"),
        (b'\xff\xfe{\x00"\x00', "invalid_encoding"),
        (b'{"message": "hi \\ud800 there"}', "invalid_encoding"),
        (b'{"message": "hi", "scenario": {"title": "\\udfff"}}', "invalid_encoding"),
        (b'{"message": "hi", "scenario": {"\\udbff": "x", "title": "t"}}', "invalid_encoding"),
        (b'{"message": "hi", "history": [{"role": "user", "content": "\\ud800"}]}', "invalid_encoding"),
    ],
    ids=["truncated", "single-quotes", "empty", "blank", "nan", "infinity", "overflow", "huge-int", "too-deep-for-parser",
         "latin-1", "utf-16", "lone-surrogate-message", "lone-surrogate-scenario", "lone-surrogate-key", "lone-surrogate-history"],
)
def test_unreadable_body_is_400(live: LiveApp, path: str, content: bytes, code: str) -> None:
    assert_error(post(live, path, content), 400, code)


def test_paired_surrogate_escape_is_accepted(live: LiveApp) -> None:
    response = post(live, BUFFERED_PATH, b'{"message": "smile \\ud83d\\ude00 and \\\\ud800 as text", "mode": "chat"}')
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "content_type, content",
    [
        ("application/x-www-form-urlencoded", b"message=hi"),
        ("multipart/form-data; boundary=xyz", b'--xyz\r\nContent-Disposition: form-data; name="message"\r\n\r\nhi\r\n--xyz--\r\n'),
        ("application/xml", b"<message>hi</message>"),
        ("image/png", b"\x89PNG"),
    ],
    ids=["form", "multipart", "xml", "png"],
)
def test_non_json_media_type_is_415(live: LiveApp, path: str, content_type: str, content: bytes) -> None:
    assert_error(post(live, path, content, {"content-type": content_type}), 415, "unsupported_media_type")


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain;charset=UTF-8", "application/json; charset=utf-8", "application/merge-patch+json", None])
def test_json_media_types_are_accepted(live: LiveApp, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = post(live, STREAM_PATH, json.dumps({"message": "hello", "mode": "chat"}), headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "event: done" in response.text


# -- the JSON, field by field ------------------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "body, code, field",
    [
        ([], "invalid_body", None),
        ("hello", "invalid_body", None),
        (None, "invalid_body", None),
        (42, "invalid_body", None),
        ({}, "invalid_field", "message"),
        ({"message": 5}, "invalid_field", "message"),
        ({"message": ["hi"]}, "invalid_field", "message"),
        ({"message": None}, "invalid_field", "message"),
        ({"message": ""}, "invalid_field", "message"),
        ({"message": "  \n\t "}, "invalid_field", "message"),
        ({"message": "x" * 8001}, "too_large", "message"),
        ({"message": "hi", "scenario": "a string"}, "invalid_field", "scenario"),
        ({"message": "hi", "scenario": ["a", "list"]}, "invalid_field", "scenario"),
        ({"message": "hi", "scenario": 3}, "invalid_field", "scenario"),
        ({"message": "hi", "scenario": {"title": "big", "notes": "x" * (64 * 1024)}}, "too_large", "scenario"),
        ({"message": "hi", "scenario": nested(33)}, "too_deep", "scenario"),
        ({"message": "hi", "history": "earlier"}, "invalid_field", "history"),
        ({"message": "hi", "history": [1, 2]}, "invalid_field", "history"),
        ({"message": "hi", "history": [{"role": "system", "content": "x"}]}, "invalid_field", "history"),
        ({"message": "hi", "history": [{"role": "user", "content": 5}]}, "invalid_field", "history"),
        ({"message": "hi", "history": [{"role": "user", "content": "x", "extra": 1}]}, "invalid_field", "history"),
        ({"message": "hi", "history": [{"role": "user", "content": "x"}] * 51}, "too_large", "history"),
        ({"message": "hi", "history": [{"role": "user", "content": "x" * 7000}] * 10}, "too_large", "history"),
        ({"message": "hi", "mode": "bogus"}, "invalid_field", "mode"),
        ({"message": "hi", "mode": 3}, "invalid_field", "mode"),
        ({"message": "hi", "mode": ["chat"]}, "invalid_field", "mode"),
        ({"message": "hi", "colour": "blue"}, "unknown_field", "colour"),
    ],
    ids=lambda value: None,
)
def test_invalid_request_is_422(live: LiveApp, path: str, body: Any, code: str, field: str | None) -> None:
    error = assert_error(post(live, path, json.dumps(body)), 422, code, field)
    if code == "unknown_field":
        assert "colour" in error["message"]


def test_unknown_fields_are_all_named(live: LiveApp) -> None:
    error = assert_error(post(live, STREAM_PATH, json.dumps({"message": "hi", "zeta": 1, "alpha": 2})), 422, "unknown_field")
    assert "alpha" in error["message"] and "zeta" in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"message": "x" * 8000, "mode": "chat"},
        {"message": "hi", "mode": "chat", "scenario": nested(32)},
        {"message": "hi", "mode": "chat", "history": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}] * 25},
        {"message": "hi", "mode": None, "scenario": None, "history": None},
    ],
    ids=["message-at-limit", "depth-at-limit", "history-at-limit", "nulls"],
)
def test_limits_are_inclusive(live: LiveApp, body: dict[str, Any]) -> None:
    response = post(live, BUFFERED_PATH, json.dumps(body))
    assert response.status_code == 200, response.text


def test_message_limit_is_configurable() -> None:
    with LiveApp({"MAX_MESSAGE_CHARS": "10"}) as live:
        assert post(live, BUFFERED_PATH, json.dumps({"message": "0123456789", "mode": "chat"})).status_code == 200
        assert_error(post(live, BUFFERED_PATH, json.dumps({"message": "01234567890", "mode": "chat"})), 422, "too_large", "message")


# -- body size: rejected while reading -----------------------------------------------------------


class CountingApp:
    """ASGI wrapper counting the request body bytes the app actually received."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.received = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_receive():
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
            return message

        await self.app(scope, counting_receive, send)


@pytest.fixture
def counted() -> Iterator[tuple[LiveApp, CountingApp]]:
    live = LiveApp()
    counter = CountingApp(live.app)
    live.server.config.app = counter  # uvicorn loads the config's app when it starts
    with live:
        yield live, counter


def test_declared_oversize_body_is_413_without_reading(counted) -> None:
    live, counter = counted
    head = b"POST %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 10000000\r\n\r\n" % STREAM_PATH.encode()
    status, headers, body = parse_raw_response(raw_http(live.port, head + b'{"message": "'))
    assert status == 413
    assert json.loads(body)["error"]["code"] == "body_too_large"
    assert headers.get("connection") == "close"
    assert counter.received == 0


def test_chunked_oversize_body_is_413_while_reading(counted) -> None:
    """A chunked upload offering 10 MB: the server answers 413 once past MAX_BODY_BYTES and
    stops reading; the client is cut off long before it has sent everything."""
    live, counter = counted
    total = 10 * 1024 * 1024
    sent = 0
    piece = b"x" * 16384

    def generator():
        nonlocal sent
        yield b'{"message": "'
        while sent < total:
            sent += len(piece)
            yield piece
        yield b'"}'

    started = time.monotonic()
    try:
        response = httpx.post(live.url + STREAM_PATH, content=generator(), headers=JSON, timeout=20)
    except httpx.TransportError as exc:  # the server may close before the client gets to read
        pytest.fail(f"no 413 answer: {exc!r} after {sent} bytes")
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "body_too_large"
    assert time.monotonic() - started < 15
    # The app read a little more than the limit, not the 10 MB.
    assert 256 * 1024 < counter.received < 2 * 1024 * 1024, counter.received
    assert live.wait_no_streams(5) == 0


def test_chunked_oversize_body_raw_socket(counted) -> None:
    """The same over a raw socket: the 413 arrives while the client is still sending."""
    live, counter = counted
    sock = socket.create_connection(("127.0.0.1", live.port), timeout=10)
    sent = 0
    answer = b""
    try:
        sock.sendall(b"POST %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n" % STREAM_PATH.encode())
        chunk = b"x" * 65536
        sock.setblocking(False)
        deadline = time.monotonic() + 15
        while sent < 10 * 1024 * 1024 and time.monotonic() < deadline:
            try:
                answer += sock.recv(65536)
                break  # the answer has come
            except BlockingIOError:
                pass
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            except BlockingIOError:
                time.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.setblocking(True)
        sock.settimeout(5)
        while b"\r\n\r\n" not in answer:
            more = sock.recv(65536)
            if not more:
                break
            answer += more
    finally:
        sock.close()
    status, _, _ = parse_raw_response(answer)
    assert status == 413
    assert sent < 10 * 1024 * 1024, "the client could send the whole body"
    assert counter.received < 2 * 1024 * 1024, counter.received


def test_body_limit_is_configurable() -> None:
    with LiveApp({"MAX_BODY_BYTES": "100"}) as live:
        ok = json.dumps({"message": "x" * 50, "mode": "chat"})
        assert post(live, BUFFERED_PATH, ok).status_code == 200
        assert_error(post(live, BUFFERED_PATH, json.dumps({"message": "x" * 100})), 413, "body_too_large")


# -- methods and paths --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_unsupported_method_is_405(live: LiveApp, path: str, method: str) -> None:
    response = httpx.request(method, live.url + path, timeout=10)
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["allow"]


def test_health_rejects_post(live: LiveApp) -> None:
    response = httpx.post(live.url + "/api/agent/scenario/stream/health", timeout=10)
    assert_error(response, 405, "method_not_allowed")


@pytest.mark.parametrize("method, path", [("GET", "/api/nothing"), ("POST", "/api/agent/nothing"), ("GET", "/api/"), ("POST", "/api/agent/scenario/stream/extra")])
def test_unknown_api_path_is_404_json(live: LiveApp, method: str, path: str) -> None:
    assert_error(httpx.request(method, live.url + path, timeout=10), 404, "not_found")


def test_unknown_page_path_is_404_not_500(live: LiveApp) -> None:
    response = httpx.get(live.url + "/no/such/page.html", timeout=10)
    assert response.status_code == 404


def test_server_healthy_after_bad_input(live: LiveApp) -> None:
    assert live.wait_no_streams(5) == 0
    assert live.health()["status"] == "ok"
    response = post(live, STREAM_PATH, json.dumps({"message": "hello", "mode": "chat"}))
    assert response.status_code == 200 and "event: done" in response.text


# -- the body-read deadline -----------------------------------------------------------------------


def test_trickled_body_gets_408_at_the_deadline() -> None:
    """BODY_READ_TIMEOUT_SECONDS bounds the whole body, not the gaps: a client sending a byte
    every 0.2 s is answered 408 body_timeout (JSON, `connection: close`) once it has passed."""
    with LiveApp({"BODY_READ_TIMEOUT_SECONDS": "1"}) as live:
        sock = socket.create_connection(("127.0.0.1", live.port), timeout=10)
        try:
            sock.sendall(b"POST %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n" % STREAM_PATH.encode())
            started = time.monotonic()
            sock.setblocking(False)
            answer = b""
            while time.monotonic() - started < 8:
                try:
                    answer += sock.recv(65536)
                    if b"\r\n\r\n" in answer:
                        break
                except BlockingIOError:
                    pass
                try:
                    sock.send(b" ")
                except OSError:
                    pass
                time.sleep(0.2)
            elapsed = time.monotonic() - started
            sock.setblocking(True)
            sock.settimeout(5)
            while more := sock.recv(65536):  # the server closes after the answer
                answer += more
        finally:
            sock.close()
        status, headers, body = parse_raw_response(answer)
        assert status == 408
        assert headers["connection"] == "close"
        assert headers["x-request-id"]
        assert json.loads(body)["error"]["code"] == "body_timeout"
        assert 0.9 < elapsed < 4, elapsed
        assert live.wait_no_streams(5) == 0


def test_body_read_timeout_setting() -> None:
    from agent.config import Settings

    assert Settings.from_env({}).body_read_timeout_seconds == 5.0
    assert Settings.from_env({"BODY_READ_TIMEOUT_SECONDS": "2.5"}).body_read_timeout_seconds == 2.5
