"""upstream/transport.py: the HTTP/1.1 transport the upstream stream is read through.

Each test runs a tiny scripted server on loopback (or TLS on loopback) and an
httpx.AsyncClient using the transport, and checks bytes, pooling, timeouts and errors.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.raw_server import answering, read_request, serve
from upstream.transport import StreamingTransport



def chunked_server(pieces: list[bytes], keep_alive: bool = True):
    """Answers every request with `pieces` written one by one (already chunk-framed)."""

    async def handler(reader, writer, state):
        while True:
            state["requests"].append(await read_request(reader))
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n")
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.001)
            if not keep_alive:
                return

    return handler


def frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


BODY = b"data: one\n\ndata: two \xc3\xa9\n\n"


async def fetch(client: httpx.AsyncClient, url: str) -> tuple[int, bytes]:
    async with client.stream("POST", url + "/v1/chat/completions", json={"x": 1}) as response:
        return response.status_code, b"".join([chunk async for chunk in response.aiter_raw()])


def fetch_once(response: bytes, client_timeout: httpx.Timeout | None = None) -> tuple[int, bytes]:
    async def check(url, state):
        async with httpx.AsyncClient(transport=StreamingTransport(), timeout=client_timeout or httpx.Timeout(5)) as client:
            return await fetch(client, url)

    return asyncio.run(serve(answering(response))(check))


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"


def test_chunked_body_with_extensions_and_trailers_over_the_wire():
    # Was ChunkedBody's push-parser script: the same bytes, now through the transport (h11 frames them).
    wire = CHUNKED_HEAD + b"5\r\nhello\r\n3;ext=1\r\n\xc3\xa9!\r\n0\r\nx-trailer: 1\r\n\r\n"
    assert fetch_once(wire) == (200, b"hello\xc3\xa9!")


@pytest.mark.parametrize("line", [b"zz", b"-5", b"", b";ext"])
def test_chunked_body_bad_size_is_a_protocol_error(line):
    with pytest.raises(httpx.RemoteProtocolError):
        fetch_once(CHUNKED_HEAD + line + b"\r\nhello\r\n0\r\n\r\n")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=40), max_size=6), st.lists(st.integers(1, 30), min_size=1, max_size=40),
       st.booleans())
def test_chunked_body_any_framing_split_anywhere_is_reassembled(chunks, cuts, trailer):
    # Written in pieces of the given sizes (each flushed and a moment apart), over a real socket.
    wire = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n" + (b"x-t: 1\r\n" if trailer else b"") + b"\r\n"
    pieces, pos = [], 0
    for cut in itertools.cycle(cuts):
        if pos >= len(wire):
            break
        pieces.append(wire[pos:pos + cut])
        pos += cut

    async def check(url, state):
        async with httpx.AsyncClient(transport=StreamingTransport()) as client:
            first = await fetch(client, url)
            second = await fetch(client, url)  # the framing ended exactly: the connection is reused
        return first, second, state["connections"]

    first, second, connections = asyncio.run(serve(chunked_server(pieces))(check))
    assert first == second == (200, b"".join(chunks))
    assert connections == 1


def test_sized_body_stops_at_its_length_and_the_connection_is_reused():
    async def handler(reader, writer, state):
        while True:
            state["requests"].append(await read_request(reader))
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nabc")
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(b"de")
            await writer.drain()

    async def check(url, state):
        async with httpx.AsyncClient(transport=StreamingTransport()) as client:
            results = [await fetch(client, url) for _ in range(2)]
        return results, state["connections"]

    assert asyncio.run(serve(handler)(check)) == ([(200, b"abcde")] * 2, 1)


def test_a_zero_length_body_is_complete_at_once():
    assert fetch_once(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n") == (200, b"")


def test_bytes_after_a_body_keep_the_connection_out_of_the_pool():
    async def handler(reader, writer, state):
        while True:
            state["requests"].append(await read_request(reader))
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokJUNK")

    async def check(url, state):
        async with httpx.AsyncClient(transport=StreamingTransport()) as client:
            results = [await fetch(client, url) for _ in range(2)]
        return results, state["connections"]

    assert asyncio.run(serve(handler)(check)) == ([(200, b"ok")] * 2, 2)


def test_a_consumer_that_stops_reading_pauses_the_socket_and_loses_nothing():
    # 32 MiB: more than the kernel buffers on both ends of a loopback connection hold, so the
    # server stalls unless the transport keeps reading into its own memory.
    payload = bytes(range(256)) * (128 * 1024)

    async def handler(reader, writer, state):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(payload))
        writer.write(payload)
        await writer.drain()
        state["sent"] = True

    async def check(url, state):
        async with httpx.AsyncClient(transport=StreamingTransport()) as client:
            async with client.stream("GET", url) as response:
                await asyncio.sleep(0.5)  # the server fills every buffer meanwhile
                stalled = not state.get("sent")
                got = b"".join([chunk async for chunk in response.aiter_raw()])
        return stalled, got

    stalled, got = asyncio.run(serve(handler)(check))
    assert stalled  # the server's write was held back: the client stopped reading at its limit
    assert got == payload


def test_chunked_body_split_at_every_byte_is_reassembled():
    wire = frame(BODY[:10]) + frame(BODY[10:]) + b"0\r\n\r\n"
    for cut in range(1, len(wire)):
        async def check(url, state):
            async with httpx.AsyncClient(transport=StreamingTransport()) as client:
                return await fetch(client, url)

        status, body = asyncio.run(serve(chunked_server([wire[:cut], wire[cut:]], keep_alive=False))(check))
        assert (status, body) == (200, BODY), cut


def test_each_chunk_is_yielded_as_soon_as_it_arrives():
    async def handler(reader, writer, state):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + frame(b"first"))
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.write(frame(b"second") + b"0\r\n\r\n")
        await writer.drain()

    async def check(url, state):
        async with httpx.AsyncClient(transport=StreamingTransport()) as client:
            async with client.stream("GET", url) as response:
                t0 = time.monotonic()
                seen = [(time.monotonic() - t0, chunk) async for chunk in response.aiter_raw()]
        return seen

    seen = asyncio.run(serve(handler)(check))
    assert [c for _, c in seen] == [b"first", b"second"]
    assert seen[0][0] < 0.3 and seen[1][0] > 0.4


def test_keep_alive_connection_is_reused_and_request_is_well_formed():
    async def check(url, state):
        async with httpx.AsyncClient(transport=StreamingTransport()) as client:
            results = [await fetch(client, url) for _ in range(3)]
        return results, state

    results, state = asyncio.run(serve(chunked_server([frame(BODY) + b"0\r\n\r\n"]))(check))
    assert results == [(200, BODY)] * 3
    assert state["connections"] == 1
    request = state["requests"][0]
    assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"\r\nhost: 127.0.0.1:" in request.lower() and request.endswith(b'{"x":1}')


def test_a_pooled_connection_the_server_closed_is_replaced_transparently():
    async def handler(reader, writer, state):
        state["requests"].append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        # ...then close, as a server whose keep-alive timer ran out would.

    async def check(url, state):
        async with httpx.AsyncClient(transport=StreamingTransport()) as client:
            first = await fetch(client, url)
            await asyncio.sleep(0.1)
            second = await fetch(client, url)
        return first, second, state["connections"]

    assert asyncio.run(serve(handler)(check)) == ((200, b"ok"), (200, b"ok"), 2)


def test_body_until_close_and_error_status():
    async def handler(reader, writer, state):
        await read_request(reader)
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\r\nbusy, try later")
        await writer.drain()

    async def check(url, state):
        async with httpx.AsyncClient(transport=StreamingTransport()) as client:
            response = await client.get(url)
            return response.status_code, response.text, response.reason_phrase

    assert asyncio.run(serve(handler)(check)) == (503, "busy, try later", "Service Unavailable")


def test_silence_longer_than_the_read_timeout_is_a_read_timeout():
    async def handler(reader, writer, state):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + frame(b"a"))
        await writer.drain()
        await asyncio.sleep(5)

    async def check(url, state):
        async with httpx.AsyncClient(transport=StreamingTransport(), timeout=httpx.Timeout(5, read=0.3)) as client:
            got = []
            t0 = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                async with client.stream("GET", url) as response:
                    async for chunk in response.aiter_raw():
                        got.append(chunk)
            return got, time.monotonic() - t0

    got, elapsed = asyncio.run(serve(handler)(check))
    assert got == [b"a"] and 0.25 < elapsed < 2


def test_a_body_cut_short_is_a_protocol_error_and_refused_is_a_connect_error():
    async def handler(reader, writer, state):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + frame(b"partial"))
        await writer.drain()

    async def check(url, state):
        async with httpx.AsyncClient(transport=StreamingTransport()) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await fetch(client, url)
            with pytest.raises(httpx.ConnectError):
                await client.get("http://127.0.0.1:1/")
        return True

    assert asyncio.run(serve(handler)(check))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a test certificate")
def test_tls(tmp_path: Path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))

    async def check(url, state):
        async with httpx.AsyncClient(transport=StreamingTransport(ssl_context=client_ctx)) as client:
            results = [await fetch(client, url) for _ in range(2)]
        async with httpx.AsyncClient(transport=StreamingTransport()) as strict:
            with pytest.raises(httpx.ConnectError):  # not trusted by the default CAs
                await fetch(strict, url)
        return results, state["connections"]

    results, connections = asyncio.run(serve(chunked_server([frame(BODY) + b"0\r\n\r\n"]), tls=server_ctx)(check))
    assert results == [(200, BODY)] * 2
    assert connections == 1  # kept alive and reused over TLS (the strict client never got past the handshake)


# -- a client that stops reading holds little ------------------------------------------

class EndlessUpstream:
    """A raw OpenAI-style upstream on loopback, in a thread: every streaming request gets an
    endless answer of `delta_chars`-character deltas, `lines_per_write` SSE lines per write,
    each write drained (so TCP backpressure holds it back). A request that mentions
    "warm up" gets three deltas and [DONE]. `sent` counts body bytes written per connection."""

    def __init__(self, delta_chars: int = 8192, lines_per_write: int = 16, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.delta_chars, self.lines_per_write, self.max_bytes = delta_chars, lines_per_write, max_bytes
        self.sent: list[int] = []
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @staticmethod
    def line(content: str) -> bytes:
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                 "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(self.sent)
        self.sent.append(0)
        try:
            while True:  # keep-alive: one request after another on this connection
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")))
                request = await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                if b"warm up" in request:
                    body = b"".join(self.line(t) for t in ("a", "b", "c")) + b"data: [DONE]\n\n"
                    writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
                    await writer.drain()
                    continue
                block = self.line("x" * self.delta_chars) * self.lines_per_write
                piece = b"%x\r\n%s\r\n" % (len(block), block)
                while self.sent[index] < self.max_bytes:
                    writer.write(piece)
                    await writer.drain()
                    self.sent[index] += len(piece)
                return
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            writer.close()

    def __enter__(self) -> "EndlessUpstream":
        def serve() -> None:
            loop = self._loop = asyncio.new_event_loop()
            server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            loop.run_forever()
            server.close()
            loop.run_until_complete(server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def open_stalled_stream(port: int, message: str) -> socket.socket:
    """A client with a small receive buffer that starts a chat stream, reads until its first
    chat frame, then stops reading (and keeps the connection open)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(15)
    sock.connect(("127.0.0.1", port))
    body = json.dumps({"message": message, "mode": "chat"}).encode()
    sock.sendall(b"POST /api/agent/scenario/stream HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                 b"content-length: %d\r\n\r\n%s" % (len(body), body))
    received = b""
    while b"event: chat" not in received:
        data = sock.recv(4096)
        assert data, received[-300:]
        received += data
    return sock


@pytest.mark.parametrize("delta_chars, lines_per_write", [(8192, 16), (768 * 1024, 1)], ids=["8KiB-deltas", "768KiB-deltas"])
def test_a_client_that_stops_reading_holds_about_64_kib_plus_a_frame_per_stream(delta_chars, lines_per_write):
    # 4 clients stop reading while the upstream pushes big deltas as fast as TCP lets it
    # (768 KiB: under upstream/sse.py's 1 MiB line bound; the decoder cuts it into pieces).
    # The app's RSS must stay flat: what each stream holds is bounded by the transport's
    # high-water mark (64 KiB plus one socket read), one read's deltas and the frames in
    # flight, not by how much the upstream sends. The upstream must be held back too.
    from tests.support.harness import ServerProcess

    with EndlessUpstream(delta_chars, lines_per_write) as upstream:
        env = {"OPENAI_BASE_URL": f"http://127.0.0.1:{upstream.port}/v1", "OPENAI_API_KEY": "sk-test", "OPENAI_MODEL": "m",
               "UPSTREAM_MAX_RETRIES": "0", "MAX_OUTPUT_TOKENS": "100000000", "UPSTREAM_IDLE_TIMEOUT_SECONDS": "60"}
        with ServerProcess(env) as server:
            for _ in range(2):  # warm up: imports, the first connection, the first frames
                assert httpx.post(server.url + "/api/agent/scenario/stream", json={"message": "warm up", "mode": "chat"},
                                  timeout=15).status_code == 200
            base = server.rss_kb()
            clients = [open_stalled_stream(server.port, f"stream {i}") for i in range(4)]
            try:
                peak, sent_mid = base, None
                t0 = time.monotonic()
                while time.monotonic() - t0 < 4:
                    peak = max(peak, server.rss_kb())
                    if sent_mid is None and time.monotonic() - t0 > 2:
                        sent_mid = list(upstream.sent)
                    time.sleep(0.1)
                sent_end = list(upstream.sent)
                active = server.health()["active_streams"]
            finally:
                for sock in clients:
                    sock.close()
    grown_mib = (peak - base) / 1024
    streamed = sent_end[-4:]
    print(f"RSS growth with 4 stalled clients: {grown_mib:.1f} MiB; upstream bytes sent per stream: {streamed}")
    assert active == 4  # all four still running, held back (not ended by a timeout)
    assert grown_mib < 40, grown_mib
    assert all(s < 32 * 1024 * 1024 for s in streamed), streamed  # not read to the end: the upstream was held back
    assert sent_mid is not None and sum(sent_end) - sum(sent_mid) < 4 * 1024 * 1024, (sent_mid, sent_end)  # and stays held


# -- one place configures the pool ---------------------------------------------------------

def test_make_http_client_uses_our_transport_or_httpx_s_behind_a_proxy(monkeypatch):
    from upstream.transport import KEEPALIVE_EXPIRY_SECONDS, make_http_client

    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    client = make_http_client()
    assert isinstance(client._transport, StreamingTransport)
    asyncio.run(client.aclose())

    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    client = make_http_client()
    assert isinstance(client._transport, httpx.AsyncHTTPTransport)  # httpx's own, proxies mounted from the environment
    pool = client._transport._pool
    assert pool._keepalive_expiry == KEEPALIVE_EXPIRY_SECONDS  # the same pool settings as ours
    asyncio.run(client.aclose())
