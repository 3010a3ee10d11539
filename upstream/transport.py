"""A small HTTP/1.1 transport for httpx, built for long streamed responses.

The openai SDK still makes every request (auth, retries before the response starts,
error types); this only replaces how bytes travel. httpx's default transport reads each
network chunk through httpcore, h11 and anyio: a cancel scope, an exception map, locks
and an h11 step per read. Here the connection is an `asyncio.Protocol`: `data_received`
appends the bytes and resolves the one future the reader waits on, and the reader hands
them to `h11.Connection`, which does all of the HTTP/1.1 framing (RFC 9112: status line,
header fields, Content-Length, chunked, read-until-close, keep-alive rules).

One shortcut, for speed (h11 costs about 60,000 instructions a chunk, two thirds as much as
the rest of the server's token path together, and a model streams one chunk per token): once
h11 has read a body's chunk to its end, a network read that is exactly one plain chunk
(`whole_chunk`) is handed out without h11, and h11 is told of those bytes before it reads
anything else (`_show_h11`). The shortcut takes a strict subset of what h11 takes, and
anything else (an extension, a read of several chunks or part of one, the last chunk,
trailers, every malformed case) is read by h11.

What h11 does not bound, this module does:
- h11's `max_incomplete_event_size` caps the head, a chunk-size line (with its
  extensions) and the trailer section at `MAX_INCOMPLETE_EVENT_BYTES`;
- the head as a whole (1xx responses included) must arrive within the read timeout;
- a body stalls only while we wait to read: the idle timer does not count the time a
  slow consumer holds the stream back (that is backpressure, not upstream silence);
- at most `HIGH_WATER_BYTES` (plus one network read) wait unread per connection: then
  the socket is paused and TCP holds the upstream back.

An error response's body (status 400 and up) is cut at `MAX_ERROR_BODY_BYTES`: the SDK reads
all of it into memory to build its error, and what this service keeps of it is a log line.

Scope, on purpose: HTTP/1.1 over TCP or TLS with a small keep-alive pool. No HTTP/2, no
proxies: with a proxy variable (HTTPS_PROXY, ALL_PROXY, ...) set, `make_transport`
returns None and `make_http_client` uses httpx's own transport. Failures are raised as
the httpx exceptions httpx would raise, so the SDK's retries and
`upstream.errors.map_exception` see no difference. The transport never resends a
request itself: retrying is the SDK's decision alone.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from typing import AsyncIterator

import h11
import httpx

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")

# The largest incomplete thing h11 may buffer: the response head, one chunk-size line with
# its extensions, the trailer section. Real model servers send heads of well under 2 KiB.
MAX_INCOMPLETE_EVENT_BYTES = 64 * 1024
# Stop reading from the socket once this much is received and not yet taken: a slow
# consumer holds the upstream back through TCP instead of growing this process.
HIGH_WATER_BYTES = 64 * 1024
# Idle keep-alive connections are dropped after this long, or earlier when the server
# announces a shorter `Keep-Alive: timeout=N` (uvicorn closes after 5 s): a request is
# never sent into a connection the server is about to close.
KEEPALIVE_EXPIRY_SECONDS = 4.0
MAX_IDLE_PER_HOST = 64
# Margin kept below a server's announced keep-alive timeout.
_KEEPALIVE_MARGIN_SECONDS = 1.0
# The most of an error response's body that is read (real error bodies are a few hundred bytes).
MAX_ERROR_BODY_BYTES = 64 * 1024

Key = tuple[str, str, int]


def make_transport() -> httpx.AsyncBaseTransport | None:
    """The streaming transport, or None (use httpx's) when a proxy is configured."""
    if any(os.environ.get(name) or os.environ.get(name.upper()) for name in _PROXY_VARIABLES):
        return None
    return StreamingTransport()


def make_http_client() -> httpx.AsyncClient:
    """The one pooled client for every upstream request (timeouts are set per request by
    the SDK). Pool settings live here only: ours, or the same ones given to httpx's own
    transport when a proxy is configured."""
    transport = make_transport()
    if transport is not None:
        return httpx.AsyncClient(transport=transport)
    return httpx.AsyncClient(limits=httpx.Limits(
        max_connections=None, max_keepalive_connections=MAX_IDLE_PER_HOST, keepalive_expiry=KEEPALIVE_EXPIRY_SECONDS))


class _Connection(asyncio.Protocol):
    """One upstream connection. Received bytes wait in `received` until the reader takes
    them; a reader with nothing to take awaits `wait()`, which the next callback resolves.
    `http` is its h11 state machine, reused across keep-alive request cycles."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.http = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_INCOMPLETE_EVENT_BYTES)
        self.transport: asyncio.Transport | None = None
        self.received: list[bytes] = []
        self.size = 0
        self.closed = False
        self.error: Exception | None = None  # why the connection was lost, if not a clean close
        self.idle_since = 0.0
        self.expiry = KEEPALIVE_EXPIRY_SECONDS
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None  # pending while the send buffer is full
        self._reading_paused = False

    # asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received.append(data)
        self.size += len(data)
        if self.size > HIGH_WATER_BYTES and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # close our side too: a half-closed upstream connection is of no use

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = exc
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        self._writable = self.loop.create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    # for the transport and the response reader

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def wait(self) -> asyncio.Future[None]:
        """A future resolved by the next received bytes, end of stream or connection loss."""
        self._waiter = waiter = self.loop.create_future()
        return waiter

    def writable(self) -> asyncio.Future[None] | None:
        """While the send buffer is over its limit: a future resolved when it drains."""
        return self._writable

    def take(self) -> bytes:
        """Everything received and not yet taken."""
        received = self.received
        data = received[0] if len(received) == 1 else b"".join(received)
        received.clear()
        self.size = 0
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        return data

    def usable(self, now: float) -> bool:
        """Fit for a new request: open, quiet (bytes arriving on an idle connection would be
        read as the next response), between request cycles, and not near its expiry."""
        return (not self.closed and not self.received and not self.transport.is_closing()  # type: ignore[union-attr]
                and self.http.our_state is h11.IDLE and self.http.their_state is h11.IDLE
                and now - self.idle_since < self.expiry)

    def abort(self) -> None:
        # abort, not close: the peer sees the connection end now, with no TLS goodbye to wait for.
        if self.transport is not None:
            self.transport.abort()


def _server_keepalive_seconds(headers: list[tuple[bytes, bytes]]) -> float | None:
    """The `timeout=N` of a `Keep-Alive` response header, if any."""
    for name, value in headers:
        if name.lower() == b"keep-alive":
            for param in value.split(b","):
                key, _, number = param.strip().partition(b"=")
                if key.strip().lower() == b"timeout":
                    try:
                        return float(number.strip())
                    except ValueError:
                        return None
    return None


class StreamingTransport(httpx.AsyncBaseTransport):
    def __init__(self, ssl_context: ssl.SSLContext | None = None, keepalive_expiry: float = KEEPALIVE_EXPIRY_SECONDS,
                 max_idle_per_host: int = MAX_IDLE_PER_HOST) -> None:
        self._ssl = ssl_context
        self._expiry = keepalive_expiry
        self._max_idle = max_idle_per_host
        self._idle: dict[Key, list[_Connection]] = {}

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()  # certifi's CAs, SSL_CERT_FILE honoured
        return self._ssl

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` once, on a pooled connection or a new one, and return the response
        with its head read. No resend: a failure is raised for the SDK to judge."""
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        tls = url.scheme == "https"
        key = (url.scheme, url.host, url.port or (443 if tls else 80))
        body = await request.aread()
        conn = self._checkout(key)
        if conn is None:
            conn = await self._connect(request, key, tls, timeouts.get("connect"))
        try:
            http = conn.http
            try:
                data = http.send(h11.Request(method=request.method, target=url.raw_path, headers=request.headers.raw))
                if body:
                    data += http.send(h11.Data(data=body))
                data += http.send(h11.EndOfMessage())
            except h11.LocalProtocolError as exc:  # e.g. a header value h11 refuses to send
                raise httpx.LocalProtocolError(str(exc), request=request) from None
            await self._write(request, conn, data, timeouts.get("write"))
            response = await self._read_head(request, conn, timeouts.get("read"))
        except BaseException:
            conn.abort()
            raise
        headers = response.headers.raw_items()
        announced = _server_keepalive_seconds(headers)
        conn.expiry = self._expiry if announced is None else min(self._expiry, announced - _KEEPALIVE_MARGIN_SECONDS)
        stream: httpx.AsyncByteStream = _ResponseStream(self, key, conn, request, timeouts.get("read"))
        if response.status_code >= 400:
            stream = _Capped(stream, MAX_ERROR_BODY_BYTES)
        return httpx.Response(response.status_code, headers=headers, stream=stream,
                              extensions={"http_version": b"HTTP/" + response.http_version, "reason_phrase": response.reason})

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.abort()
        self._idle.clear()

    def _checkout(self, key: Key) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.usable(now):
                return conn
            conn.abort()
        return None

    def checkin(self, key: Key, conn: _Connection) -> None:
        """Pool `conn` after a complete response, or close it if it cannot carry another."""
        http = conn.http
        leftover, _ = http.trailing_data
        if http.our_state is not h11.DONE or http.their_state is not h11.DONE or leftover or conn.received:
            conn.abort()  # keep-alive off (Connection: close, HTTP/1.0), or bytes after the body
            return
        idle = self._idle.setdefault(key, [])
        if len(idle) >= self._max_idle or conn.expiry <= 0:
            conn.abort()
            return
        http.start_next_cycle()
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def _connect(self, request: httpx.Request, key: Key, tls: bool, timeout: float | None) -> _Connection:
        _, host, port = key
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(lambda: _Connection(loop), host, port, ssl=self._ssl_context() if tls else None)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out", request=request) from None
        except OSError as exc:  # refused, unreachable, DNS failure (socket.gaierror), TLS errors
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}", request=request) from None
        return conn

    async def _write(self, request: httpx.Request, conn: _Connection, data: bytes, timeout: float | None) -> None:
        if conn.closed:
            raise httpx.RemoteProtocolError("connection lost before sending", request=request)
        conn.transport.write(data)  # type: ignore[union-attr]
        writable = conn.writable()
        if writable is not None:
            try:
                async with asyncio.timeout(timeout):
                    await writable
            except TimeoutError:
                raise httpx.WriteTimeout("sending the request timed out", request=request) from None
        if conn.closed and conn.error is not None:
            raise httpx.RemoteProtocolError(f"connection lost while sending: {conn.error}", request=request)

    async def _read_head(self, request: httpx.Request, conn: _Connection, timeout: float | None) -> h11.Response:
        """The final response's head. The whole head, any number of 1xx responses included,
        must arrive within `timeout`: an upstream that sends `100 Continue` every second
        does not keep a request alive past it."""
        http = conn.http
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = http.next_event()
                    if event is h11.NEED_DATA:
                        while not conn.received:
                            if conn.closed:
                                if conn.error is not None:
                                    raise httpx.ReadError(f"connection broken: {conn.error}", request=request)
                                if http.their_state is h11.SEND_RESPONSE and not http.trailing_data[0]:
                                    raise httpx.RemoteProtocolError("server disconnected without sending a response", request=request)
                                http.receive_data(b"")
                                break
                            await conn.wait()
                        else:
                            http.receive_data(conn.take())
                    elif type(event) is h11.Response:
                        return event
                    # else an InformationalResponse (1xx): the real response follows
        except TimeoutError:
            raise httpx.ReadTimeout("no complete response head from the server in time", request=request) from None
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(f"malformed response: {exc}", request=request) from None


# `Connection.trailing_data` when a chunk's data has been handed out and only its CRLF is left.
_ONLY_THE_CHUNKS_CRLF = (b"\r\n", False)
_HEX_DIGITS = b"0123456789abcdefABCDEF"
# Body bytes handed out by `whole_chunk` are shown to h11 at the latest once this many are owed.
_UNSHOWN_MAX_BYTES = 64 * 1024


def whole_chunk(read: bytes) -> bytes | None:
    """The data of `read` when the read is exactly one chunk with a plain size, else None.

    "Plain": `<1 to 7 hex digits> CRLF <that many bytes, at least one> CRLF` (RFC 9112 7.1,
    chunk-size = 1*HEXDIG), and nothing more. An extension, the last chunk, a read of less
    or more than one chunk, and every malformed case are None: h11 reads those. This accepts
    a strict subset of what h11 accepts, with the same data (tests/test_http_framing.py
    checks it against h11 on any bytes, split anywhere).
    """
    end = read.find(b"\r\n", 1, 9)
    if end < 0:
        return None
    size_line = read[:end]
    if size_line.translate(None, _HEX_DIGITS):  # not only hex digits ("0x1f", "+1f", " 1f", "1;x")
        return None
    size = int(size_line, 16)
    if not size or end + size + 4 != len(read) or read[-2:] != b"\r\n":
        return None
    return read[end + 2:-2]


def _show_h11(http: h11.Connection, size: int) -> None:
    """Tell h11 of `size` body bytes that `whole_chunk` handed out: one chunk of that size.

    h11 then stands where it would after reading the real chunks (the count of body bytes and
    the state are the same; chunk boundaries carry no meaning, RFC 9112 7.1), so it reads
    the rest of the body, the last chunk, the trailers and the keep-alive rules as always.
    The bytes are never used, so they are zeros."""
    http.receive_data(b"%x\r\n%s\r\n" % (size, bytes(size)))
    event = http.next_event()  # the CRLF it held, then this chunk's data, whole
    assert type(event) is h11.Data and event.chunk_end and len(event.data) == size, event


class _ResponseStream(httpx.AsyncByteStream):
    """The response body: de-framed bytes as they arrive, one piece per network read; the
    connection pooled (complete and reusable) or aborted on close."""

    def __init__(self, transport: StreamingTransport, key: Key, conn: _Connection, request: httpx.Request,
                 read_timeout: float | None) -> None:
        self._transport = transport
        self._key = key
        self._conn: _Connection | None = conn
        self._request = request
        self._timeout = read_timeout
        self._complete = False
        # The read timeout is an idle timeout, enforced by one timer that re-arms itself
        # only when it fires: a wait costs a clock read, not a timer. Silence is counted
        # from when the reader starts waiting (`_waiting_since`, 0.0 while not waiting),
        # so time spent in the consumer (backpressure) is never counted as silence.
        self._loop = conn.loop
        self._waiting_since = 0.0
        self._timed_out = False
        self._timer = self._loop.call_at(self._loop.time() + read_timeout, self._check_idle) if read_timeout else None

    def _check_idle(self) -> None:
        now = self._loop.time()
        conn = self._conn
        if conn is None or self._complete:
            return
        since = self._waiting_since
        if not since or conn.received:  # the consumer holds us back, or bytes wait to be taken
            self._timer = self._loop.call_at(now + self._timeout, self._check_idle)  # type: ignore[operator]
        elif now < since + self._timeout:  # type: ignore[operator]
            self._timer = self._loop.call_at(since + self._timeout, self._check_idle)  # type: ignore[operator]
        else:
            self._timed_out = True
            conn.abort()  # wakes the waiting reader with the connection lost

    def _ended_early(self, conn: _Connection) -> httpx.TransportError:
        if self._timed_out:
            return httpx.ReadTimeout("the server sent nothing for too long", request=self._request)
        return httpx.ReadError(f"connection broken: {conn.error}", request=self._request)  # e.g. a reset mid-answer

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        assert conn is not None
        http = conn.http
        next_event, NEED_DATA, Data = http.next_event, h11.NEED_DATA, h11.Data
        pieces: list[bytes] = []
        read = b""  # the last bytes handed to h11
        # The shortcut (module docstring): while h11 has just given out the whole data of a
        # chunk and holds nothing but its CRLF, a read that is exactly one plain chunk is handed
        # out as it is and counted in `unshown`; h11 is told of those bytes before it reads on.
        at_chunk_boundary = False
        unshown = 0
        # One pass per network read: at a token per read, this loop is the token path.
        while True:
            try:
                event = next_event()
            except h11.RemoteProtocolError as exc:
                if pieces:  # what h11 decoded before the bad bytes is the body's, and comes first
                    yield bytes(pieces[0]) if len(pieces) == 1 else b"".join(pieces)
                raise httpx.RemoteProtocolError(str(exc), request=self._request) from None
            if type(event) is Data:
                pieces.append(event.data)
                # The usual read is one whole chunk: "<size>\r\n<data>\r\n". Once its data is out,
                # all that is left is the chunk's CRLF; h11 would discard it on the next call and
                # then answer NEED_DATA, so that call is skipped. The length test comes first:
                # `trailing_data` copies h11's buffer, which must not happen once per chunk of a
                # read that holds many.
                if not (event.chunk_end and len(event.data) + read.find(b"\r\n") + 4 == len(read)
                        and http.trailing_data == _ONLY_THE_CHUNKS_CRLF):
                    continue
                event = NEED_DATA
                at_chunk_boundary = True
            if pieces:
                # h11 hands out bytearrays; the byte stream's contract is bytes.
                yield bytes(pieces[0]) if len(pieces) == 1 else b"".join(pieces)
                pieces = []
            if event is NEED_DATA:
                while True:  # until a read for h11 (or the close) is at hand
                    if not conn.received:
                        if conn.closed:
                            if self._timed_out or conn.error is not None:
                                raise self._ended_early(conn)
                            read = b""  # a clean close: the end of an until-close body, or an error
                            break
                        self._waiting_since = self._loop.time()
                        while not conn.received and not conn.closed:
                            await conn.wait()
                        self._waiting_since = 0.0
                        continue
                    read = conn.take()
                    data = whole_chunk(read) if at_chunk_boundary else None
                    if data is None:
                        break
                    unshown += len(data)
                    if unshown >= _UNSHOWN_MAX_BYTES:
                        _show_h11(http, unshown)
                        unshown = 0
                    yield data
                if unshown:
                    _show_h11(http, unshown)
                    unshown = 0
                at_chunk_boundary = False
                http.receive_data(read)
            elif type(event) is h11.EndOfMessage:
                self._complete = True
                return
            else:  # ConnectionClosed (after a complete until-close body h11 gives EndOfMessage first)
                raise httpx.RemoteProtocolError("the server closed the connection mid-response", request=self._request)

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._complete:
            self._transport.checkin(self._key, conn)
        else:
            conn.abort()  # unread body (the client went away): end it now


class _Capped(httpx.AsyncByteStream):
    """The first `limit` bytes of a body, then its end; the connection is closed, not pooled
    (the rest of the body was never read)."""

    def __init__(self, stream: _ResponseStream, limit: int) -> None:
        self._stream = stream
        self._limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        left = self._limit
        async for piece in self._stream:
            if len(piece) >= left:
                yield piece[:left]
                return
            left -= len(piece)
            yield piece

    async def aclose(self) -> None:
        await self._stream.aclose()
