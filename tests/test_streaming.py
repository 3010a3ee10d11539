"""The token path over real sockets: fake upstream -> app (uvicorn on loopback) -> client."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tests.conftest import upstream_env
from tests.support.servers import BUFFERED_PATH, STREAM_PATH, LiveApp, Plan, iter_frames

SCENARIO = {"title": "Harbor Drill", "summary": "s", "roles": [{"name": "Captain", "description": "leads"}], "x-extra": 1}


@pytest.fixture
def live(fake_upstream):
    with LiveApp(upstream_env(fake_upstream, HEARTBEAT_SECONDS="0.3")) as app:
        yield app


def stream(live: LiveApp, body: dict, timeout: float = 20):
    """All frames of one request, each with its arrival time."""
    with httpx.stream("POST", live.url + STREAM_PATH, json=body, timeout=timeout) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in response.headers
        frames = list(iter_frames(response))
        frames.append((time.monotonic(), "headers", dict(response.headers)))
    return frames


def test_each_upstream_token_is_its_own_chat_frame_in_order_and_at_once(live, fake_upstream):
    tokens = [f"tok{i} " for i in range(20)]
    fake_upstream.push(Plan(tokens=tokens, interval_ms=50))
    frames = stream(live, {"message": "hi", "mode": "chat"})
    kinds = [k for _, k, _ in frames if k != "comment"]
    assert kinds == ["start"] + ["chat"] * 20 + ["done", "headers"]
    chats = [(t, d) for t, k, d in frames if k == "chat"]
    assert [d["content"] for _, d in chats] == tokens
    assert all(d["streaming"] is True for _, d in chats)
    emitted = [t for t, _ in fake_upstream.emitted]
    # The first token reaches the client before the upstream has even emitted the 5th.
    assert chats[0][0] < emitted[4]
    # And every token arrives long before the stream ends (no batching at the end).
    end = frames[-2][0]
    assert end - chats[0][0] > 0.5
    # Nothing is held back: when token i arrives, the upstream has emitted at most a few more
    # (a count, not a time: a slow machine slows the upstream's pace as much as the app's).
    held_back = [sum(1 for sent in emitted if sent <= arrived) - (i + 1) for i, (arrived, _) in enumerate(chats)]
    assert max(held_back) <= 4, held_back
    done = frames[-2][2]
    assert done["finish_reason"] == "stop" and done["usage"]["completion_tokens"] == 20
    assert 0 < done["timings"]["ttft_ms"] <= done["timings"]["total_ms"]


def test_start_frame_and_headers_leave_before_the_upstream_answers(live, fake_upstream):
    fake_upstream.push(Plan(tokens=["late"], first_delay_ms=1500))
    with httpx.stream("POST", live.url + STREAM_PATH, json={"message": "hi", "mode": "chat"}, timeout=20) as response:
        emitted_at_headers = len(fake_upstream.emitted)
        frames = iter_frames(response)
        first = next(frames)
        emitted_at_start = len(fake_upstream.emitted)
        request_id = response.headers["x-request-id"]
        rest = list(frames)
    # The head and the start frame did not wait for the model: it had sent nothing yet.
    assert emitted_at_headers == emitted_at_start == 0
    assert first[1] == "start"
    assert first[2] == {"type": "start", "request_id": request_id, "intent": "chat", "model": "fake-model", "provider": "openai-compatible"}
    assert [k for _, k, _ in rest if k != "comment"] == ["chat", "done"]


def test_heartbeat_comments_while_the_upstream_is_silent(live, fake_upstream):
    fake_upstream.push(Plan(tokens=["a", "b"], first_delay_ms=1500))
    frames = stream(live, {"message": "hi", "mode": "chat"})
    kinds = [k for _, k, _ in frames]
    first_chat = kinds.index("chat")
    assert kinds[0] == "start"
    assert kinds[1:first_chat].count("comment") >= 2
    assert all(d == "ping" for _, k, d in frames if k == "comment")


def test_client_disconnect_closes_the_upstream_within_a_second(live, fake_upstream):
    fake_upstream.push(Plan(tokens=[f"t{i} " for i in range(200)], interval_ms=20))
    body = json.dumps({"message": "hi", "mode": "chat"}).encode()
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        sock.sendall(
            b"POST %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (STREAM_PATH.encode(), len(body), body)
        )
        received = b""
        while received.count(b"event: chat") < 3:
            received += sock.recv(65536)
        assert live.health()["active_streams"] == 1
        closed_at = time.monotonic()
    assert fake_upstream.wait_idle(timeout=3)
    assert fake_upstream.disconnects and fake_upstream.disconnects[-1] - closed_at < 1.0
    assert len(fake_upstream.emitted) < 100  # it stopped producing
    assert live.wait_no_streams() == 0


def test_buffered_endpoint_drains_the_same_events(live, fake_upstream):
    fake_upstream.push(Plan(tokens=["Hello", " there", "."]), Plan(tokens=["Hello", " there", "."]))
    frames = stream(live, {"message": "hi", "mode": "chat"})
    streamed = "".join(d["content"] for _, k, d in frames if k == "chat")
    response = httpx.post(live.url + BUFFERED_PATH, json={"message": "hi", "mode": "chat"}, timeout=20)
    assert response.status_code == 200
    body = response.json()
    assert body["response"] == streamed == "Hello there."
    assert body["intent"] == "chat" and body["scenario"] is None and body["changes"] == []
    assert body["usage"]["completion_tokens"] == 3


def test_text_plain_body_is_accepted(live, fake_upstream):
    fake_upstream.push(Plan(tokens=["ok"]))
    response = httpx.post(live.url + BUFFERED_PATH, content=json.dumps({"message": "hi", "mode": "chat"}), headers={"content-type": "text/plain;charset=UTF-8"}, timeout=20)
    assert response.status_code == 200 and response.json()["response"] == "ok"


def test_modify_streams_prose_as_chat_and_the_block_as_scenario_delta(live, fake_upstream):
    new = dict(SCENARIO, title="Blue Harbor Drill")
    text = "Renamed it.\n```scenario\n" + json.dumps(new) + "\n```\nDone."
    pieces = [text[i:i + 7] for i in range(0, len(text), 7)]  # fences split across deltas
    fake_upstream.push(Plan(tokens=pieces))
    frames = stream(live, {"message": "rename it to Blue Harbor Drill", "scenario": SCENARIO})
    kinds = [k for _, k, _ in frames]
    assert frames[0][2]["intent"] == "modify"
    assert kinds.index("scenario_delta") > kinds.index("chat")
    chat = "".join(d["content"] for _, k, d in frames if k == "chat")
    block = "".join(d["content"] for _, k, d in frames if k == "scenario_delta")
    assert chat == "Renamed it.\n\nDone."
    assert json.loads(block) == new
    scenario = next(d for _, k, d in frames if k == "scenario")
    assert scenario["scenario"] == new and scenario["scenario"]["x-extra"] == 1
    assert scenario["changes"] == [{"op": "replace", "path": "/title", "text": "renamed the title"}]
    assert kinds[-2:] == ["done", "headers"]


def test_invalid_block_is_an_error_then_done_and_no_scenario(live, fake_upstream):
    fake_upstream.push(Plan(tokens=["Here.\n```scenario\n", '{"summary": "no title"}', "\n```"]))
    frames = stream(live, {"message": "change it", "scenario": SCENARIO, "mode": "modify"})
    kinds = [k for _, k, _ in frames if k != "comment"]
    assert "scenario" not in kinds
    assert kinds[-3:] == ["error", "done", "headers"]
    error = frames[-3][2]
    assert error["code"] == "invalid_scenario" and "unchanged" in error["message"] and error["retryable"] is True
    assert frames[-2][2]["finish_reason"] == "error"
