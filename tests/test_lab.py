"""The streaming lab (web/lab.py) over a real socket: each broken mode, read with raw asyncio.

Every read of the socket is timestamped and kept whole (`reader.read(1 MiB)`), so a test can
count the reads the server's writes produced and see when the first text became readable.
h11 writes the request and reads the response (its head, and its body de-chunked), one socket
read at a time.
The app runs the offline model at 6 ms a token; the `create` question is about 530 tokens
(about 43 KB of frames), so one run lasts about 3 s.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import h11
import pytest

from tests.support.harness import assert_well_formed, wait_until
from tests.support.servers import STREAM_PATH, LiveApp, parse_frames

CREATE = {"message": "a fire drill in a school", "mode": "create"}
MODES = ("blocking", "accumulate", "buffer-4k", "gzip")


@dataclass
class Exchange:
    """One request over one connection, as the client saw it. Times are seconds since the request was written."""

    status: int
    headers: dict[str, str]
    reads: list[tuple[float, int]] = field(default_factory=list)  # body reads: (arrival, body bytes in it, de-chunked, still compressed)
    frames: list[tuple[float, str, Any]] = field(default_factory=list)  # decoded frames: (arrival, type, data)
    body: bytes = b""  # decoded (de-chunked, and gunzipped for gzip)
    first_text_at: float | None = None  # when the first decoded byte of a chat/scenario_delta frame arrived
    ended_at: float = 0.0

    def kinds(self) -> list[str]:
        return [kind for _, kind, _ in self.frames]

    def done(self) -> dict[str, Any]:
        assert self.frames[-1][1] == "done"
        return self.frames[-1][2]


def _request(query: str, body: bytes, content_length: int | None = None) -> tuple[h11.Connection, bytes]:
    """The client's side of one exchange, and the request's bytes, both from h11. With
    `content_length` larger than the body, the rest of the body is announced and never sent."""
    length = len(body) if content_length is None else content_length
    http = h11.Connection(h11.CLIENT)
    head = h11.Request(method="POST", target=f"{STREAM_PATH}{query}", headers=[
        ("Host", "127.0.0.1"), ("Content-Type", "application/json"), ("Content-Length", str(length)), ("Connection", "close")])
    data = http.send(head) + (http.send(h11.Data(data=body)) if body else b"")
    if length == len(body):
        data += http.send(h11.EndOfMessage())
    return http, data


async def _exchange(port: int, query: str, body: dict[str, Any], timeout: float = 30) -> Exchange:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        http, request = _request(query, json.dumps(body).encode())
        writer.write(request)
        t0 = time.monotonic()
        raw: list[tuple[float, bytes]] = []
        async with asyncio.timeout(timeout):
            while data := await reader.read(1 << 20):
                raw.append((time.monotonic() - t0, data))
    finally:
        writer.close()
    return _decode(http, raw)


def _decode(http: h11.Connection, raw: list[tuple[float, bytes]]) -> Exchange:
    """The response, read by h11 one socket read at a time: its head, then per read the body
    bytes that read completed (de-chunked by h11), then frames."""
    exchange: Exchange | None = None
    gunzip = None
    pending = b""
    ended = False
    for at, data in [*raw, (raw[-1][0], b"")]:  # b"": the server closed the connection
        http.receive_data(data)
        body: list[bytes] = []
        while (event := http.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
            if isinstance(event, h11.Response):
                headers = {name.decode().lower(): value.decode() for name, value in event.headers}
                exchange = Exchange(event.status_code, headers, ended_at=raw[-1][0])
                if headers.get("content-encoding") == "gzip":
                    gunzip = zlib.decompressobj(wbits=31)
            elif isinstance(event, h11.Data):
                body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                ended = True
            elif isinstance(event, h11.ConnectionClosed):
                break
        assert exchange is not None, "no response head"
        if not body:
            continue
        wire = b"".join(body)
        exchange.reads.append((at, len(wire)))
        decoded = gunzip.decompress(wire) if gunzip is not None else wire
        exchange.body += decoded
        if not exchange.headers.get("content-type", "").startswith("text/event-stream"):
            continue
        pending += decoded
        while b"\n\n" in pending:
            block, pending = pending.split(b"\n\n", 1)
            for kind, data_ in parse_frames(block + b"\n\n"):
                exchange.frames.append((at, kind, data_))
                if kind in ("chat", "scenario_delta") and exchange.first_text_at is None:
                    exchange.first_text_at = at
    assert ended, "the body did not end by its framing (the last chunk, or its Content-Length)"
    assert exchange is not None
    return exchange


def exchange(live: LiveApp, query: str, body: dict[str, Any] = CREATE) -> Exchange:
    return asyncio.run(_exchange(live.port, query, body))


@pytest.fixture(scope="module")
def live() -> Iterator[LiveApp]:
    with LiveApp({"OFFLINE_TOKEN_DELAY_MS": "6"}) as app:
        yield app


@pytest.fixture(scope="module")
def runs(live: LiveApp) -> dict[str, Exchange]:
    """The create question once through the real stream and once through each lab mode (one at a time)."""
    out = {"real": exchange(live, "")}
    for mode in MODES:
        out[mode] = exchange(live, f"?lab={mode}")
    return out


def test_real_stream_unchanged_frames_spread_over_the_run(runs: dict[str, Exchange]) -> None:
    real = runs["real"]
    assert real.status == 200
    assert "x-lab-mode" not in real.headers and "content-encoding" not in real.headers
    assert real.headers["x-accel-buffering"] == "no"
    # Text is readable early, and the reads are about one per frame (each frame its own write).
    assert real.first_text_at is not None and real.first_text_at < 0.3 * real.ended_at
    assert len(real.reads) >= len(real.frames) / 2
    times = [at for at, _, _ in real.frames]
    assert times[len(times) // 2] - times[0] > 0.3 * real.ended_at  # the middle frame came well after the first


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_has_the_stream_headers_and_the_same_content(runs: dict[str, Exchange], mode: str) -> None:
    lab, real = runs[mode], runs["real"]
    assert lab.status == 200
    assert lab.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert lab.headers["cache-control"] == "no-cache"
    assert lab.headers["x-accel-buffering"] == "no"
    assert lab.headers["x-lab-mode"] == mode
    frames = [(kind, data) for _, kind, data in lab.frames]
    assert_well_formed(frames)
    assert frames[-1][1]["finish_reason"] == "stop"

    def text(ex: Exchange, kind: str) -> str:
        return "".join(data["content"] for _, k, data in ex.frames if k == kind)

    # The same model, the same tokens: only the delivery differs.
    assert text(lab, "chat") == text(real, "chat") and text(lab, "chat")
    assert text(lab, "scenario_delta") == text(real, "scenario_delta")
    scenario = [data for _, k, data in lab.frames if k == "scenario"]
    assert scenario == [data for _, k, data in real.frames if k == "scenario"] and scenario


def test_blocking_first_frame_after_most_of_the_run(runs: dict[str, Exchange]) -> None:
    blocking = runs["blocking"]
    first_at = blocking.frames[0][0]
    run_seconds = blocking.done()["timings"]["total_ms"] / 1000
    assert run_seconds > 1.0
    assert first_at >= 0.8 * run_seconds
    assert first_at >= 0.8 * blocking.ended_at
    # Every frame in the same moment: one write of about 43 KB, which loopback TCP hands over
    # in a few reads (the real stream's frames take hundreds).
    assert len(blocking.reads) <= 5, blocking.reads
    assert len(runs["real"].reads) > 20 * len(blocking.reads)
    assert "content-encoding" not in blocking.headers


def test_accumulate_one_chat_frame_with_the_whole_text_at_the_end(runs: dict[str, Exchange]) -> None:
    acc, real = runs["accumulate"], runs["real"]
    kinds = acc.kinds()
    assert kinds.count("chat") == 1
    assert kinds[0] == "start" and kinds[1] == "chat"
    assert kinds[2:] == [k for k in real.kinds() if k not in ("start", "chat")]  # then the held frames, done last
    start_at, chat_at = acc.frames[0][0], acc.frames[1][0]
    run_seconds = acc.done()["timings"]["total_ms"] / 1000
    assert start_at < 0.3 * run_seconds  # the connection is open and says so...
    assert chat_at >= 0.8 * run_seconds  # ...and the text comes only at the end
    assert [data["content"] for _, k, data in acc.frames if k == "chat"] == ["".join(d["content"] for _, k, d in real.frames if k == "chat")]


def test_buffer_4k_few_reads_each_at_least_4_kib_except_the_last(runs: dict[str, Exchange]) -> None:
    buffered = runs["buffer-4k"]
    frames = len(buffered.frames)
    reads = [size for _, size in buffered.reads]
    assert frames > 300
    assert len(reads) * 10 < frames, (len(reads), frames)
    assert len(reads) >= 3  # the answer is about 43 KB: it does go out in pieces...
    assert all(size >= 4096 for size in reads[:-1]), reads  # ...none smaller than the buffer
    # And the pieces are spread over the run, not all at the end (unlike blocking).
    assert buffered.reads[0][0] < 0.6 * buffered.ended_at


def test_gzip_encoded_and_the_first_text_late(runs: dict[str, Exchange]) -> None:
    gz, real = runs["gzip"], runs["real"]
    assert gz.headers["content-encoding"] == "gzip"
    assert gz.first_text_at is not None
    run_seconds = gz.done()["timings"]["total_ms"] / 1000
    assert gz.first_text_at >= 0.8 * run_seconds
    assert gz.first_text_at >= 0.8 * gz.ended_at
    # Compressed it is small, and it came in a few reads (the gzip header first, the rest at the end).
    assert sum(size for _, size in gz.reads) < len(real.body) / 4
    assert len(gz.reads) <= 5


@pytest.mark.parametrize("query", ["?lab=nope", "?lab=", "?lab=gzip&lab=blocking", "?lab=BLOCKING"])
def test_unknown_mode_is_422_json_before_the_body_is_read(live: LiveApp, query: str) -> None:
    async def ask() -> list[tuple[float, bytes]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
        try:
            writer.write(request)
            raw = []
            # Waiting for the body would end in 408 body_timeout after BODY_READ_TIMEOUT_SECONDS (5).
            async with asyncio.timeout(20):
                while data := await reader.read(1 << 20):
                    raw.append((0.0, data))
            return raw
        finally:
            writer.close()

    # The body is announced and never sent: the answer must not wait for it.
    http, request = _request(query, b"", content_length=500)
    ex = _decode(http, asyncio.run(ask()))
    assert ex.status == 422, (ex.status, ex.body)  # decided from the query: not 408, the body's deadline
    assert ex.headers["content-type"] == "application/json"
    error = json.loads(ex.body)["error"]
    assert error["code"] == "invalid_lab_mode" and error["field"] == "lab"
    assert "blocking" in error["message"] and "buffer-4k" in error["message"]
    assert live.wait_no_streams(2) == 0


def test_lab_needs_a_valid_body_like_the_real_stream(live: LiveApp) -> None:
    ex = exchange(live, "?lab=blocking", {"message": ""})
    assert ex.status == 422
    assert json.loads(ex.body)["error"]["code"] == "invalid_field"


@pytest.mark.parametrize("mode", ["blocking", "gzip"])
def test_a_client_leaving_a_lab_stream_closes_the_run(live: LiveApp, mode: str) -> None:
    """The run would last ~3 s; the client leaves after 0.3 s: the run ends as disconnected
    (cancelled), not complete, and its slot is free."""

    async def leave() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
        writer.write(_request(f"?lab={mode}", json.dumps(CREATE).encode())[1])
        await asyncio.sleep(0.3)
        writer.close()
        await writer.wait_closed()

    requests = live.service.metrics.requests
    before = dict(requests)
    asyncio.run(leave())
    assert live.wait_no_streams(5) == 0
    assert wait_until(lambda: len(live.service.runs) == 0, 5)
    # The run ended because its reader left, not because the answer was over.
    counted = {key: n - before.get(key, 0) for key, n in requests.items() if n != before.get(key, 0)}
    assert counted == {("stream", "disconnected"): 1}, counted


def test_lab_mode_reads_only_the_lab_parameter() -> None:
    from web.errors import ApiError
    from web.lab import MODES as LAB_MODES, lab_mode

    assert LAB_MODES == MODES
    assert lab_mode(b"") is None  # the real stream's requests: nothing parsed
    assert lab_mode(b"&") is None
    assert lab_mode(b"lab=buffer-4k") == "buffer-4k"
    for query in (b"lab=", b"lab", b"lab=zip", b"lab=gzip&lab=gzip", b"lab=gzip+"):
        with pytest.raises(ApiError) as caught:
            lab_mode(query)
        assert caught.value.status == 422 and caught.value.code == "invalid_lab_mode"
        assert caught.value.extra == {"field": "lab"}
    # `lab` is the route's only query parameter: another is rejected like an unknown body field.
    for query, name in ((b"x=1", "x"), (b"lab=gzip&x=1", "x"), (b"=0", "")):
        with pytest.raises(ApiError) as caught:
            lab_mode(query)
        assert caught.value.status == 422 and caught.value.code == "unknown_query_parameter"
        assert caught.value.extra == {"field": name}


def test_sigterm_ends_lab_streams_with_server_shutdown_through_the_same_path() -> None:
    """On SIGTERM a lab stream ends like the real one (error server_shutdown, then done),
    its frames still going through the mode's broken path, within the grace period."""
    import threading

    import httpx

    from tests.support.harness import ServerProcess

    grace = 5.0
    results: dict[str, Any] = {}

    def read(mode: str, url: str) -> None:
        try:
            with httpx.stream("POST", f"{url}{STREAM_PATH}?lab={mode}", json=CREATE, timeout=30) as response:
                results[mode] = (response.status_code, parse_frames(response.read()), time.monotonic())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            results[mode] = exc

    # The Procfile's deploy.env turns the lab off; a variable set by the platform wins over it.
    with ServerProcess({"OFFLINE_TOKEN_DELAY_MS": "20", "SHUTDOWN_GRACE_SECONDS": str(grace), "LAB_ENABLED": "true"}) as server:
        readers = [threading.Thread(target=read, args=(mode, server.url), daemon=True) for mode in ("blocking", "accumulate")]
        for reader in readers:
            reader.start()
        assert wait_until(lambda: server.health()["active_streams"] == 2, 10)
        time.sleep(0.5)  # some tokens in: the run is 530 tokens, about 11 s
        sent_at = time.monotonic()
        server.terminate()
        for reader in readers:
            reader.join(grace + 5)
            assert not reader.is_alive()
        assert server.wait(grace + 5) in (0, -15)  # uvicorn re-raises SIGTERM at exit
        stderr = server.stderr_text()
    assert "Traceback" not in stderr, stderr[-2000:]
    for mode in ("blocking", "accumulate"):
        status, frames, ended_at = results[mode]
        assert status == 200
        assert ended_at - sent_at < grace
        error = assert_well_formed(frames)
        assert error is not None and error["code"] == "server_shutdown"
        chats = [data["content"] for kind, data in frames if kind == "chat"]
        assert chats and "".join(chats)  # the text so far came out first
        if mode == "accumulate":
            assert len(chats) == 1
