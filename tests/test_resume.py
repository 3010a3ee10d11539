"""Runs that outlive their connection, over a real socket: ids, join, replay, grace, Stop, keys.

Each test reads frames as raw bytes (`id:` line included) and compares bytes, because the
contract is byte-for-byte: what a joined reader gets after event k is what an uninterrupted
reader got after event k.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Iterator

import httpx
import pytest

from tests.conftest import upstream_env
from tests.support.servers import HEALTH_PATH, STREAM_PATH, LiveApp, Plan

TOKENS = [f"t{i} " for i in range(40)]
ID_LINE = re.compile(rb"^(?:retry: \d+\n)?id: ([0-9a-f]{32})-(\d+)\n", re.M)


def frames_of(raw: bytes) -> list[bytes]:
    """Whole frames (each ending in a blank line), heartbeat comments left out."""
    return [block + b"\n\n" for block in raw.split(b"\n\n") if block and not block.startswith(b":")]


def _frame_iter(response: httpx.Response) -> Iterator[bytes]:
    buffer = b""
    for piece in response.iter_raw():
        buffer += piece
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            if not block.startswith(b":"):
                yield block + b"\n\n"


def read_frames(response: httpx.Response, limit: int | None = None) -> list[bytes]:
    """Frames as they arrive; stop after `limit` of them (a later call reads on)."""
    if not hasattr(response, "frames_read"):  # the response's one reader, kept with it
        response.frames_read = _frame_iter(response)  # type: ignore[attr-defined]
    frames: Iterator[bytes] = response.frames_read  # type: ignore[attr-defined]
    out: list[bytes] = []
    for frame in frames:
        out.append(frame)
        if limit is not None and len(out) >= limit:
            break
    return out


def seq_of(frame: bytes) -> tuple[str, int]:
    match = ID_LINE.match(frame)
    assert match, frame
    return match.group(1).decode(), int(match.group(2))


def join(live: LiveApp, run_id: str, after: int | None = None, **headers: str) -> httpx.Response:
    extra = {"last-event-id": f"{run_id}-{after}"} if after is not None else {}
    return httpx.get(f"{live.url}/api/agent/scenario/runs/{run_id}/stream", headers={**extra, **headers}, timeout=30)


def start(live: LiveApp, client: httpx.Client, body: dict | None = None, **headers: str):
    return client.stream("POST", live.url + STREAM_PATH, json=body or {"message": "hi"}, headers=headers, timeout=30)


@pytest.fixture
def paced(fake_upstream):
    fake_upstream.default = Plan(tokens=TOKENS, interval_ms=25)
    return fake_upstream


def test_frames_carry_ids_from_one_the_first_a_retry_hint_and_the_response_its_join_url(offline_app):
    with httpx.Client() as client, start(offline_app, client) as response:
        raw = response.read()
        location = response.headers["content-location"]
    frames = frames_of(raw)
    assert frames[0].startswith(b"retry: 2000\nid: ")
    assert all(not f.startswith(b"retry:") for f in frames[1:])
    ids = [seq_of(f) for f in frames]
    run_id = ids[0][0]
    assert [seq for _, seq in ids] == list(range(1, len(frames) + 1))
    assert {rid for rid, _ in ids} == {run_id}
    assert location == f"/api/agent/scenario/runs/{run_id}/stream"
    assert b'"request_id":"%s"' % run_id.encode() in frames[0]
    assert frames[-1].split(b"\n")[1] == b"event: done"


@pytest.mark.parametrize("cut", [0, 1, 2, 17, 41, 42])
def test_a_join_after_event_k_gives_the_uninterrupted_bytes_after_k(paced, cut):
    """The first reader reads everything; the second reads k frames, leaves, and joins with
    Last-Event-ID: k. Both end up with the same bytes after k, `done` last (k=42 is after `done`)."""
    with LiveApp(upstream_env(paced, RUN_DETACHED_GRACE_SECONDS="15")) as live, httpx.Client() as client:
        whole: list[bytes] = []
        with start(live, client) as first:
            location = first.headers["content-location"]
            run_id = location.split("/")[-2]
            reader = threading.Thread(target=lambda: whole.extend(read_frames(first)))
            reader.start()
            with client.stream("GET", live.url + location, timeout=30) as second:
                seen = read_frames(second, limit=cut) if cut else []
            rest = join(live, run_id, after=cut)
            reader.join(30)
    assert len(whole) == 42  # start, 40 chat, done
    assert whole[:cut] == seen
    assert rest.status_code == 200
    assert frames_of(rest.content) == whole[cut:]
    if whole[cut:]:
        assert frames_of(rest.content)[-1].split(b"\n")[1] == b"event: done"


def test_two_readers_see_identical_sequences(paced):
    with LiveApp(upstream_env(paced)) as live, httpx.Client() as client:
        with start(live, client) as first:
            location = first.headers["content-location"]
            results: list[list[bytes]] = []
            t = threading.Thread(target=lambda: results.append(read_frames(first)))
            t.start()
            time.sleep(0.2)
            second = httpx.get(live.url + location, timeout=30)
            t.join(30)
    assert frames_of(second.content) == results[0]
    assert [seq_of(f)[1] for f in results[0]] == list(range(1, len(results[0]) + 1))


def test_a_detached_run_with_no_join_closes_its_upstream_within_the_grace(fake_upstream):
    fake_upstream.default = Plan(tokens=[f"w{i} " for i in range(400)], interval_ms=20)
    with LiveApp(upstream_env(fake_upstream, RUN_DETACHED_GRACE_SECONDS="1")) as live, httpx.Client() as client:
        with start(live, client) as response:
            read_frames(response, limit=3)
            left = time.monotonic()
        deadline = left + 1 + 1
        while not fake_upstream.disconnects and time.monotonic() < deadline + 1:
            time.sleep(0.02)
        assert fake_upstream.disconnects, "the upstream was never closed"
        closed_after = fake_upstream.disconnects[0] - left
        assert 0.8 <= closed_after <= 2.0, closed_after  # kept for the grace, then closed at once
        assert len(fake_upstream.emitted) < 400


def test_a_join_within_the_grace_continues_and_the_upstream_is_read_to_the_end(fake_upstream):
    fake_upstream.default = Plan(tokens=[f"w{i} " for i in range(60)], interval_ms=15)
    with LiveApp(upstream_env(fake_upstream, RUN_DETACHED_GRACE_SECONDS="3")) as live, httpx.Client() as client:
        with start(live, client) as response:
            seen = read_frames(response, limit=5)
        time.sleep(0.5)  # nobody reads: the run goes on
        run_id, last = seq_of(seen[-1])
        rest = join(live, run_id, after=last)
    frames = frames_of(rest.content)
    assert [seq_of(f)[1] for f in frames] == list(range(6, 6 + len(frames)))
    assert frames[-1].split(b"\n")[1] == b"event: done" and b'"finish_reason":"stop"' in frames[-1]
    assert not fake_upstream.disconnects and len(fake_upstream.emitted) == 60


def test_delete_closes_the_upstream_at_once_even_with_no_reader(fake_upstream):
    fake_upstream.default = Plan(tokens=[f"w{i} " for i in range(400)], interval_ms=20)
    with LiveApp(upstream_env(fake_upstream, RUN_DETACHED_GRACE_SECONDS="30")) as live, httpx.Client() as client:
        with start(live, client) as response:
            seen = read_frames(response, limit=3)
        run_id, _ = seq_of(seen[0])
        time.sleep(0.3)
        assert not fake_upstream.disconnects  # detached, within the grace: still reading
        stopped = time.monotonic()
        assert client.delete(f"{live.url}/api/agent/scenario/runs/{run_id}").status_code == 204
        while not fake_upstream.disconnects and time.monotonic() < stopped + 2:
            time.sleep(0.01)
        assert fake_upstream.disconnects and fake_upstream.disconnects[0] - stopped < 1.0
        # Idempotent: again, and for an unknown run.
        assert client.delete(f"{live.url}/api/agent/scenario/runs/{run_id}").status_code == 204
        assert client.delete(f"{live.url}/api/agent/scenario/runs/{'0' * 32}").status_code == 204
        late = frames_of(join(live, run_id, after=3).content)
    kinds = [f.split(b"\n")[1] for f in late]
    assert kinds[-2:] == [b"event: error", b"event: done"] and b'"code":"cancelled"' in late[-2]


def test_delete_reaches_a_reader_as_cancelled_then_done(paced):
    with LiveApp(upstream_env(paced)) as live, httpx.Client() as client:
        with start(live, client) as response:
            seen = read_frames(response, limit=3)
            run_id, _ = seq_of(seen[0])
            assert client.delete(f"{live.url}/api/agent/scenario/runs/{run_id}").status_code == 204
            rest = read_frames(response)
    assert [f.split(b"\n")[1] for f in rest[-2:]] == [b"event: error", b"event: done"]
    assert b'"code":"cancelled"' in rest[-2]


def test_unknown_runs_are_204_and_malformed_ids_are_422(offline_app):
    assert join(offline_app, "0" * 32).status_code == 204
    assert join(offline_app, "0" * 32, after=5).status_code == 204
    assert join(offline_app, "not-a-run").status_code == 422
    assert httpx.get(f"{offline_app.url}/api/agent/scenario/runs/{'0' * 32}/stream", headers={"last-event-id": "x-y"}).status_code == 422
    # A Last-Event-ID that cannot name a run is malformed even when the run is unknown.
    assert httpx.get(f"{offline_app.url}/api/agent/scenario/runs/{'0' * 32}/stream", headers={"last-event-id": "x-5"}).status_code == 422
    # Neither is a valid cursor, whatever a lenient parser would make of it: ?after given twice,
    # and an id followed by a character that HTTP keeps but str.strip() would drop.
    assert httpx.get(f"{offline_app.url}/api/agent/scenario/runs/{'0' * 32}/stream?after=1&after=2").status_code == 422
    assert httpx.get(f"{offline_app.url}/api/agent/scenario/runs/{'0' * 32}/stream",
                     headers={"last-event-id": f"{'0' * 32}-1\xa0".encode("latin-1")}).status_code == 422
    assert httpx.delete(f"{offline_app.url}/api/agent/scenario/runs/not-a-run").json()["error"]["code"] == "invalid_run_id"
    with httpx.Client() as client, start(offline_app, client) as response:
        run_id = response.headers["content-location"].split("/")[-2]
        response.read()
    other = httpx.get(f"{offline_app.url}/api/agent/scenario/runs/{run_id}/stream", headers={"last-event-id": f"{'1' * 32}-3"})
    assert other.status_code == 422 and other.json()["error"]["code"] == "invalid_last_event_id"


def test_joining_needs_the_access_token(fake_upstream):
    with LiveApp(upstream_env(fake_upstream, APP_ACCESS_TOKEN="s3cret-token")) as live:
        auth = {"authorization": "Bearer s3cret-token"}
        response = httpx.post(live.url + STREAM_PATH, json={"message": "hi"}, headers=auth, timeout=30)
        run_id = response.headers["content-location"].split("/")[-2]
        assert join(live, run_id).status_code == 401
        assert httpx.delete(f"{live.url}/api/agent/scenario/runs/{run_id}").status_code == 401
        assert join(live, run_id, **auth).status_code == 200


def test_the_same_idempotency_key_twice_at_once_reaches_the_upstream_once(fake_upstream):
    fake_upstream.default = Plan(tokens=TOKENS, interval_ms=10)
    body = {"message": "hi"}
    with LiveApp(upstream_env(fake_upstream)) as live:

        async def both():
            async with httpx.AsyncClient(timeout=30) as client:
                post = lambda: client.post(live.url + STREAM_PATH, json=body, headers={"idempotency-key": "k-1"})  # noqa: E731
                return await asyncio.gather(post(), post())

        first, second = asyncio.run(both())
        assert first.status_code == second.status_code == 200
        assert frames_of(first.content) == frames_of(second.content)
        assert len(fake_upstream.requests) == 1
        other = httpx.post(live.url + STREAM_PATH, json={"message": "something else"}, headers={"idempotency-key": "k-1"}, timeout=30)
        assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"


def test_a_join_from_before_the_logs_bound_is_409_and_live_readers_keep_streaming(fake_upstream):
    fake_upstream.default = Plan(tokens=[f"word{i} " for i in range(300)], interval_ms=2)
    with LiveApp(upstream_env(fake_upstream, RUN_LOG_MAX_BYTES="4096")) as live, httpx.Client() as client:
        with start(live, client) as response:
            frames = read_frames(response)
        run_id, last = seq_of(frames[-1])
        assert last == 302 and frames[-1].split(b"\n")[1] == b"event: done"  # the live reader got all
        early = join(live, run_id, after=1)
        assert early.status_code == 409 and early.json()["error"]["code"] == "run_log_truncated"
        late = join(live, run_id, after=last - 3)
        assert frames_of(late.content) == frames[-3:]


def test_the_buffered_route_has_no_join_and_its_disconnect_cancels(fake_upstream):
    fake_upstream.default = Plan(tokens=[f"w{i} " for i in range(400)], interval_ms=20)
    with LiveApp(upstream_env(fake_upstream, RUN_DETACHED_GRACE_SECONDS="30")) as live:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(live.url + "/api/agent/scenario", json={"message": "hi"}, timeout=0.5)
        deadline = time.monotonic() + 2
        while not fake_upstream.disconnects and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fake_upstream.disconnects
        assert live.health()["runs"] == 0


def test_a_detached_run_keeps_its_slot_and_a_join_takes_none(fake_upstream):
    fake_upstream.default = Plan(tokens=[f"w{i} " for i in range(200)], interval_ms=10)
    with LiveApp(upstream_env(fake_upstream, MAX_CONCURRENT_STREAMS="1", RUN_DETACHED_GRACE_SECONDS="15")) as live, httpx.Client() as client:
        with start(live, client) as response:
            seen = read_frames(response, limit=2)
        run_id, _ = seq_of(seen[0])
        refused = client.post(live.url + STREAM_PATH, json={"message": "again"})
        assert refused.status_code == 503  # the detached run still holds the one slot
        with client.stream("GET", f"{live.url}/api/agent/scenario/runs/{run_id}/stream", timeout=30) as joined:
            assert joined.status_code == 200
            assert live.health()["active_streams"] == 1
            client.delete(f"{live.url}/api/agent/scenario/runs/{run_id}")
            read_frames(joined)
        assert live.wait_no_streams() == 0
        assert httpx.get(live.url + HEALTH_PATH).json()["active_streams"] == 0
