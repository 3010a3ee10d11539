"""upstream/transport.py against RFC 9112, byte by byte: each case a review of the transport raised.

Every test runs a raw asyncio server on loopback that writes exact bytes, and an
httpx.AsyncClient on the transport (the tests of the body decoder, last, feed exact network
reads to it and to the transport's connection object instead: a socket cannot keep read
boundaries). Framing is h11's; what these check is that the transport passes h11's verdicts
on as httpx errors, keeps what h11 keeps, and adds the bounds and timing rules of its own (no
resend, head deadline, backpressure is not silence).
"""

from __future__ import annotations

import asyncio
import time

import h11
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.raw_server import answering, read_request, serve
from tests.support.reads import as_reads
from upstream.transport import MAX_INCOMPLETE_EVENT_BYTES, BodyDecoder, StreamingTransport, _Connection, _ResponseStream


async def post(client: httpx.AsyncClient, url: str) -> httpx.Response:
    """A streamed POST read to its end; the response (with .content) is returned."""
    async with client.stream("POST", url + "/v1/chat/completions", json={"stream": True}) as response:
        await response.aread()
    return response


def exchange(response: bytes, requests: int = 1, timeout: httpx.Timeout | None = None) -> tuple[list[httpx.Response], dict]:
    async def check(url, state):
        async with httpx.AsyncClient(transport=StreamingTransport(), timeout=timeout or httpx.Timeout(5)) as client:
            return [await post(client, url) for _ in range(requests)], state

    return asyncio.run(serve(answering(response))(check))


def body_until_protocol_error(handler) -> list[bytes]:
    """The pieces of a streamed POST's body read until the RemoteProtocolError it must end in."""

    async def check(url, state):
        got = []
        async with httpx.AsyncClient(transport=StreamingTransport()) as client:
            async with client.stream("POST", url, content=b"{}") as response:
                with pytest.raises(httpx.RemoteProtocolError):
                    async for piece in response.aiter_raw():
                        got.append(piece)
        return got

    return asyncio.run(serve(handler)(check))


CHUNKED = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"


# -- chunk sizes ---------------------------------------------------------------------------

@pytest.mark.parametrize("size", [b"0x1f", b"+1f", b" 1f", b"-1f", b"1_f"])
def test_a_chunk_size_that_is_not_plain_hex_digits_is_refused(size):
    # RFC 9112 7.1: chunk-size = 1*HEXDIG. Python's int(x, 16) accepts "0x1f", "+1f", " 1f", "1_f".
    with pytest.raises(httpx.RemoteProtocolError):
        exchange(CHUNKED + size + b"\r\n" + b"a" * 31 + b"\r\n0\r\n\r\n")


def test_a_plain_hex_chunk_size_is_read():
    [response], _ = exchange(CHUNKED + b"1F\r\n" + b"a" * 31 + b"\r\n0\r\n\r\n")
    assert response.content == b"a" * 31


# -- header fields -------------------------------------------------------------------------

def test_two_different_content_lengths_are_refused():
    with pytest.raises(httpx.RemoteProtocolError):
        exchange(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 5\r\n\r\nhello")


def test_repeated_header_fields_are_all_kept():
    [response], _ = exchange(b"HTTP/1.1 200 OK\r\nset-cookie: a=1\r\nx-a: one\r\nset-cookie: b=2\r\nx-a: two\r\n"
                             b"content-length: 2\r\n\r\nok")
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert response.headers.get_list("x-a") == ["one", "two"]
    assert response.content == b"ok"


def test_a_transfer_coding_other_than_chunked_is_refused():
    # "notchunked" contains "chunked": a substring test would read it as chunked.
    with pytest.raises(httpx.RemoteProtocolError):
        exchange(b"HTTP/1.1 200 OK\r\ntransfer-encoding: notchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")


def test_a_head_larger_than_the_bound_is_refused_quickly():
    big = b"x-big: " + b"a" * (2 * MAX_INCOMPLETE_EVENT_BYTES) + b"\r\n"
    t0 = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):
        exchange(b"HTTP/1.1 200 OK\r\n" + big + b"content-length: 2\r\n\r\nok")
    assert time.monotonic() - t0 < 3


# -- keep-alive rules ----------------------------------------------------------------------

def test_connection_is_read_as_a_token_list():
    # "keep-alive, close" contains close: the connection is not reused.
    responses, state = exchange(b"HTTP/1.1 200 OK\r\nconnection: keep-alive, close\r\ncontent-length: 2\r\n\r\nok", requests=2)
    assert [r.content for r in responses] == [b"ok", b"ok"]
    assert state["connections"] == 2


def test_repeated_connection_fields_are_all_read():
    # Two field lines are one list (RFC 9110 5.3): "close" in the first one counts even
    # though the last one says keep-alive (a dict of header fields keeps only the last).
    responses, state = exchange(b"HTTP/1.1 200 OK\r\nconnection: close\r\nconnection: keep-alive\r\n"
                                b"content-length: 2\r\n\r\nok", requests=2)
    assert [r.content for r in responses] == [b"ok", b"ok"]
    assert state["connections"] == 2


def test_plain_keep_alive_is_reused():
    responses, state = exchange(b"HTTP/1.1 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok", requests=2)
    assert [r.content for r in responses] == [b"ok", b"ok"]
    assert state["connections"] == 1


def test_an_http_1_0_response_defaults_to_close():
    responses, state = exchange(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", requests=2)
    assert [r.content for r in responses] == [b"ok", b"ok"]
    assert state["connections"] == 2
    assert responses[0].http_version == "HTTP/1.0"


def test_an_http_1_0_body_without_length_ends_at_close():
    async def handler(reader, writer, state):
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
        await writer.drain()

    async def check(url, state):
        async with httpx.AsyncClient(transport=StreamingTransport()) as client:
            return (await post(client, url)).content

    assert asyncio.run(serve(handler)(check)) == b"until the end"


def test_a_server_announced_keep_alive_timeout_expires_the_connection_before_it():
    # Keep-Alive: timeout=2 -> the pool drops the connection after about 1 s (a margin below 2 s),
    # so a request is never sent into a connection the server is closing.
    async def check(url, state):
        async with httpx.AsyncClient(transport=StreamingTransport()) as client:
            await post(client, url)
            await post(client, url)  # at once: reused
            reused = state["connections"]
            await asyncio.sleep(1.3)
            await post(client, url)  # past our expiry, before the server's: a new connection
            return reused, state["connections"]

    response = b"HTTP/1.1 200 OK\r\nkeep-alive: timeout=2\r\ncontent-length: 2\r\n\r\nok"
    assert asyncio.run(serve(answering(response))(check)) == (1, 2)


# -- bounds on what h11 buffers -----------------------------------------------------------

def _vm_rss_kib() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_sixty_megabytes_of_chunk_extension_are_refused_fast_with_bounded_memory():
    block = b"a" * (64 * 1024)
    total = 60 * 1024 * 1024

    async def handler(reader, writer, state):
        await read_request(reader)
        writer.write(CHUNKED + b"1;ext=")
        sent = 0
        while sent < total:
            writer.write(block)
            await writer.drain()  # raises once the client has aborted
            sent += len(block)
            state["sent"] = sent

    async def check(url, state):
        async with httpx.AsyncClient(transport=StreamingTransport()) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await post(client, url)
            return state.get("sent", 0)

    rss0, cpu0, t0 = _vm_rss_kib(), time.process_time(), time.monotonic()
    sent = asyncio.run(serve(handler)(check))
    cpu, elapsed, grown_mib = time.process_time() - cpu0, time.monotonic() - t0, (_vm_rss_kib() - rss0) / 1024
    assert elapsed < 3 and cpu < 1.5, (elapsed, cpu)
    assert sent < 16 * 1024 * 1024  # refused after the bound, not read to the end (kernel buffers hold a few MB)
    assert grown_mib < 20, grown_mib


def test_a_trailer_section_larger_than_the_bound_is_refused():
    trailer = b"".join(b"x-t%d: %s\r\n" % (i, b"v" * 1000) for i in range(200))  # 200 KB of trailers
    with pytest.raises(httpx.RemoteProtocolError):
        exchange(CHUNKED + b"2\r\nok\r\n0\r\n" + trailer + b"\r\n")


def test_a_small_trailer_section_is_fine():
    [response], _ = exchange(CHUNKED + b"2\r\nok\r\n0\r\nx-checksum: 1\r\n\r\n")
    assert response.content == b"ok"


# -- no resend by the transport ------------------------------------------------------------

def test_a_post_is_never_resent_by_the_transport_when_a_reused_connection_closes():
    # The server answers the first request, then reads the second one on the same
    # connection and closes without answering. The transport raises; it does not send
    # the POST again (retrying is the SDK's decision, and it counts its own retries).
    async def handler(reader, writer, state):
        state["requests"].append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        state["requests"].append(await read_request(reader))
        # ...and close.

    async def check(url, state):
        async with httpx.AsyncClient(transport=StreamingTransport()) as client:
            first = await post(client, url)
            with pytest.raises(httpx.RemoteProtocolError):
                await post(client, url)
            await asyncio.sleep(0.2)  # a resend would have arrived by now
            return first.content, len(state["requests"]), state["connections"]

    assert asyncio.run(serve(handler)(check)) == (b"ok", 2, 1)


def test_a_pooled_connection_the_server_already_closed_is_not_handed_out():
    async def handler(reader, writer, state):
        state["requests"].append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()  # ...and close, as a server whose keep-alive timer ran out

    async def check(url, state):
        async with httpx.AsyncClient(transport=StreamingTransport()) as client:
            first = await post(client, url)
            await asyncio.sleep(0.1)
            second = await post(client, url)
            return first.content, second.content, len(state["requests"]), state["connections"]

    assert asyncio.run(serve(handler)(check)) == (b"ok", b"ok", 2, 2)


# -- timing: silence, backpressure, the head deadline ---------------------------------------

def test_backpressure_from_a_slow_consumer_is_not_upstream_silence():
    # The upstream sends a chunk every 50 ms; the consumer sleeps 0.5 s between reads, longer
    # than the 0.3 s read timeout. The upstream is never silent while we wait: no timeout.
    count = 30

    async def handler(reader, writer, state):
        await read_request(reader)
        writer.write(CHUNKED)
        for i in range(count):
            writer.write(b"%x\r\n%s\r\n" % (len(b"tok%02d" % i), b"tok%02d" % i))
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def check(url, state):
        async with httpx.AsyncClient(transport=StreamingTransport(), timeout=httpx.Timeout(5, read=0.3)) as client:
            async with client.stream("POST", url, content=b"{}") as response:
                got = []
                reads = 0
                async for piece in response.aiter_raw():
                    got.append(piece)
                    reads += 1
                    if reads <= 4:
                        await asyncio.sleep(0.5)
                return b"".join(got)

    assert asyncio.run(serve(handler)(check)) == b"".join(b"tok%02d" % i for i in range(count))


def test_silence_while_waiting_is_still_a_read_timeout_after_a_slow_consumer():
    async def handler(reader, writer, state):
        await read_request(reader)
        writer.write(CHUNKED + b"1\r\na\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async def check(url, state):
        async with httpx.AsyncClient(transport=StreamingTransport(), timeout=httpx.Timeout(5, read=0.3)) as client:
            async with client.stream("POST", url, content=b"{}") as response:
                chunks = response.aiter_raw()
                first = await chunks.__anext__()
                await asyncio.sleep(0.6)  # the consumer's time: not counted
                t0 = time.monotonic()
                with pytest.raises(httpx.ReadTimeout):
                    await chunks.__anext__()
                return first, time.monotonic() - t0

    first, waited = asyncio.run(serve(handler)(check))
    assert first == b"a" and 0.25 < waited < 1.5, waited


def test_a_flood_of_1xx_responses_does_not_outlive_the_read_timeout():
    # 100 Continue every 0.1 s, forever (bounded here to 5 s): each alone is well within the
    # 0.5 s read timeout, but the head as a whole must be complete within it.
    async def handler(reader, writer, state):
        await read_request(reader)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)

    async def check(url, state):
        async with httpx.AsyncClient(transport=StreamingTransport(), timeout=httpx.Timeout(5, read=0.5)) as client:
            t0 = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                await post(client, url)
            return time.monotonic() - t0

    elapsed = asyncio.run(serve(handler)(check))
    assert 0.4 < elapsed < 1.5, elapsed


def test_a_1xx_then_the_response_is_read():
    [response], _ = exchange(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"
                             b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    assert (response.status_code, response.content) == (200, b"ok")


def test_the_reason_phrase_and_status_are_passed_on():
    [response], _ = exchange(b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 3\r\ncontent-length: 4\r\n\r\nslow")
    assert (response.status_code, response.reason_phrase, response.headers["retry-after"], response.content) == (
        429, "Too Many Requests", "3", b"slow")



def test_the_data_before_a_malformed_chunk_in_the_same_read_is_handed_out_first():
    # One write, so one read: a good chunk, then a bad chunk-size line. The good bytes are the
    # body's (they may hold a complete answer, `data: [DONE]`), so they come out, then the error.
    async def handler(reader, writer, state):
        await read_request(reader)
        writer.write(CHUNKED + b"e\r\ndata: [DONE]\n\n\r\nzz\r\nnot a chunk")
        await writer.drain()

    assert body_until_protocol_error(handler) == [b"data: [DONE]\n\n"]


# -- the body decoder (upstream/transport.py: BodyDecoder) and the I/O loop around it --------------
#
# The body is read by h11 alone: every byte the server sent is handed to h11, as it came, and
# what the transport hands out is what h11 decoded.

class FakeSocket(asyncio.Transport):
    """What _Connection needs of its transport, with nothing on the other side."""

    def __init__(self) -> None:
        super().__init__()
        self.aborted = False

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def is_closing(self) -> bool: return self.aborted
    def abort(self) -> None: self.aborted = True


class RecordingConnection(h11.Connection):
    """An h11 client connection that records every read it is given."""

    def __init__(self) -> None:
        super().__init__(h11.CLIENT, max_incomplete_event_size=MAX_INCOMPLETE_EVENT_BYTES)
        self.given: list[bytes] = []

    def receive_data(self, data: bytes) -> None:
        self.given.append(bytes(data))
        super().receive_data(data)


def in_body(http: h11.Connection) -> h11.Connection:
    http.send(h11.Request(method="POST", target="/", headers=[("host", "x"), ("content-length", "0")]))
    http.send(h11.EndOfMessage())
    http.receive_data(CHUNKED)
    assert type(http.next_event()) is h11.Response
    return http


def through_transport(reads: list[bytes], http: h11.Connection | None = None) -> tuple[bytes, str, h11.Connection]:
    """The body the transport hands out for these exact network reads, then a clean close:
    (bytes, "complete" or "error", its h11 connection)."""

    async def run():
        loop = asyncio.get_running_loop()
        conn = _Connection(loop)
        conn.connection_made(FakeSocket())
        conn.http = in_body(http or h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_INCOMPLETE_EVENT_BYTES))
        stream = _ResponseStream(StreamingTransport(), ("http", "x", 80), conn, httpx.Request("POST", "http://x/"), None)
        got: list[bytes] = []

        async def read_body() -> str:
            try:
                async for piece in stream:
                    got.append(piece)
            except httpx.RemoteProtocolError:
                return "error"
            return "complete"

        reader = asyncio.create_task(read_body())
        for read in reads + [None]:
            for _ in range(100):  # each read alone: until the reader waits for the next (or is done)
                if reader.done() or conn._waiter is not None:
                    break
                await asyncio.sleep(0)
            if reader.done():
                break
            conn.data_received(read) if read is not None else conn.eof_received()
        return b"".join(got), await reader, conn.http

    return asyncio.run(run())


def through_h11(reads: list[bytes]) -> tuple[bytes, str]:
    """The same reads, with h11 alone reading every byte."""
    http = in_body(h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_INCOMPLETE_EVENT_BYTES))
    got = []
    try:
        for read in reads + [b""]:
            http.receive_data(read)
            while (event := http.next_event()) is not h11.NEED_DATA:
                if type(event) is h11.EndOfMessage:
                    return b"".join(got), "complete"
                got.append(bytes(event.data))
    except h11.RemoteProtocolError:
        return b"".join(got), "error"
    raise AssertionError("h11 neither ended the body nor refused it")


def plain(data: bytes, digits: str = "%x") -> bytes:
    return (digits % len(data)).encode() + b"\r\n" + data + b"\r\n"


PIECES = st.one_of(
    st.binary(min_size=1, max_size=30).map(plain),
    st.binary(min_size=1, max_size=30).map(lambda d: plain(d, "%04X")),
    st.binary(min_size=1, max_size=30).map(lambda d: b"%x;name=value\r\n%s\r\n" % (len(d), d)),
    st.sampled_from([b"0x5\r\nhello\r\n", b"+5\r\nhello\r\n", b" 5\r\nhello\r\n", b"1_0\r\n" + b"a" * 16 + b"\r\n",
                     b"5\r\nhelloXY", b"zz\r\n", b"5\r\nhel", b"lo\r\n", b"\r\n"]),
    st.sampled_from([b"0\r\n\r\n", b"0\r\nx-trailer: 1\r\n\r\n", b"0\r\n\r\nafter the end"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=12), st.lists(st.integers(0, 3), max_size=12), st.data())
def test_the_transport_and_h11_alone_agree_on_any_reads(pieces, merges, data):
    reads = as_reads(pieces, merges, lambda n: data.draw(st.integers(1, n - 1)))
    body, outcome, http = through_transport(reads)
    assert (body, outcome) == through_h11(reads)
    if outcome == "complete":
        assert http.their_state is h11.DONE


def test_h11_is_given_exactly_the_bytes_the_server_sent():
    # No read is handed out past h11 and no stand-in bytes are fed to it: what h11 decodes is
    # what came over the wire, read by read, then the close (b"") only if the body needs it.
    reads = [plain(b"data: token %d\n\n" % i) for i in range(50)] + [b"0\r\n\r\n"]
    http = RecordingConnection()
    body, outcome, _ = through_transport(reads, http)
    assert (body, outcome) == (b"".join(b"data: token %d\n\n" % i for i in range(50)), "complete")
    assert http.given == [CHUNKED] + reads  # the head (given by the test's set-up), then each read


def fresh_body() -> tuple[h11.Connection, BodyDecoder]:
    http = in_body(h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_INCOMPLETE_EVENT_BYTES))
    return http, BodyDecoder(http)


def test_the_body_decoder_is_a_push_parser_bytes_in_pieces_and_an_end_out():
    http, body = fresh_body()
    assert body.feed(b"5\r\nhel") == b"hel"
    assert body.feed(b"lo\r\n") == b"lo"
    assert body.feed(b"3\r\nabc\r\n2\r\nde\r") == b"abcde"  # a read of several chunks: one piece
    assert type(body.feed(b"\n")) is bytes and not body.complete
    assert body.feed(b"0\r\n\r\n") == b"" and body.complete and body.reusable and body.error is None
    assert http.their_state is h11.DONE


def test_the_body_decoder_returns_the_bytes_before_a_refusal_then_says_why():
    _, body = fresh_body()
    assert body.feed(b"e\r\ndata: [DONE]\n\n\r\nzz\r\n") == b"data: [DONE]\n\n"
    assert body.error is not None and "chunk header" in body.error and not body.complete


def test_the_body_decoder_reads_a_close_before_the_end_as_an_error_and_a_close_after_as_nothing():
    _, body = fresh_body()
    assert body.feed(b"2\r\nok\r\n") == b"ok"
    assert body.feed(b"") == b"" and body.error is not None and "incomplete chunked read" in body.error
    # llama-cpp-python's answer to a prompt over its context: the terminating chunk alone.
    _, body = fresh_body()
    assert body.feed(b"0\r\n\r\n") == b"" and body.complete and body.error is None


def test_bytes_after_the_body_make_it_complete_but_not_reusable():
    _, body = fresh_body()
    assert body.feed(b"2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n") == b"ok"
    assert body.complete and not body.reusable


@pytest.mark.parametrize("size", [b"0x1f", b"+1f", b" 1f", b"-1f", b"1_f"])
def test_a_bad_chunk_size_after_good_chunks_is_refused_over_the_wire(size):
    # The RFC cases above, arriving after good chunks: each chunk in its own write.
    async def handler(reader, writer, state):
        await read_request(reader)
        writer.write(CHUNKED + plain(b"one"))
        for piece in (plain(b"two"), plain(b"three"), size + b"\r\n" + b"a" * 31 + b"\r\n", b"0\r\n\r\n"):
            await writer.drain()
            await asyncio.sleep(0.02)
            writer.write(piece)
        await writer.drain()

    assert body_until_protocol_error(handler) == [b"one", b"two", b"three"]


def test_a_body_read_chunk_by_chunk_leaves_the_connection_reusable():
    async def handler(reader, writer, state):
        while True:
            state["requests"].append(await read_request(reader))
            writer.write(CHUNKED + plain(b"first"))
            for i in range(5):
                await writer.drain()
                await asyncio.sleep(0.01)
                writer.write(plain(b"token %d " % i))
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async def check(url, state):
        async with httpx.AsyncClient(transport=StreamingTransport()) as client:
            return [(await post(client, url)).content for _ in range(3)], state

    bodies, state = asyncio.run(serve(handler)(check))
    assert bodies == [b"first" + b"".join(b"token %d " % i for i in range(5))] * 3
    assert (state["connections"], len(state["requests"])) == (1, 3)
