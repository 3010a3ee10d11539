"""A small HTTP/1.1 transport for httpx, built for long streamed responses.

The openai SDK still makes every request (auth, retries before the response starts,
error types); this only replaces how bytes travel. httpx's default transport reads each
network chunk through httpcore, h11 and anyio: a cancel scope, an exception map, locks
and an h11 step per read. Here the connection is an `asyncio.Protocol`: `data_received`
appends the bytes and resolves the one future the reader waits on, and the reader hands
them to `h11.Connection`, which does all of the HTTP/1.1 framing (RFC 9112: status line,
header fields, Content-Length, chunked, read-until-close, keep-alive rules).

The body is read by `BodyDecoder`, a push parser with no I/O (network reads in, body bytes
and an end out, all framing by h11), and `_ResponseStream.__aiter__` is the short I/O loop
around it: wait for a read, feed it, pass the bytes on.

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
from typing import AsyncIterator, cast

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
        self.transport: asyncio.Transport  # set by connection_made, before create_connection returns this
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
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received.append(data)
        self.size += len(data)
        if self.size > HIGH_WATER_BYTES and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
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
            self.transport.resume_reading()
        return data

    def usable(self, now: float) -> bool:
        """Fit for a new request: open, quiet (bytes arriving on an idle connection would be
        read as the next response), between request cycles, and not near its expiry."""
        return (not self.closed and not self.received and not self.transport.is_closing()
                and self.http.our_state is h11.IDLE and self.http.their_state is h11.IDLE
                and now - self.idle_since < self.expiry)

    def abort(self) -> None:
        # abort, not close: the peer sees the connection end now, with no TLS goodbye to wait for.
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
        """Pool `conn` after a complete response with nothing after it, or close it if it
        cannot carry another."""
        http = conn.http
        if http.our_state is not h11.DONE or http.their_state is not h11.DONE or conn.received:
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
        conn.transport.write(data)
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
        answered = False  # any byte of an answer yet (a pooled connection's h11 holds none at first)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = http.next_event()
                    if event is h11.NEED_DATA:
                        while not conn.received:
                            if conn.closed:
                                if conn.error is not None:
                                    raise httpx.ReadError(f"connection broken: {conn.error}", request=request)
                                if not answered:
                                    raise httpx.RemoteProtocolError("server disconnected without sending a response", request=request)
                                http.receive_data(b"")
                                break
                            await conn.wait()
                        else:
                            answered = True
                            http.receive_data(conn.take())
                    elif type(event) is h11.Response:
                        return event
                    # else an InformationalResponse (1xx): the real response follows
        except TimeoutError:
            raise httpx.ReadTimeout("no complete response head from the server in time", request=request) from None
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(f"malformed response: {exc}", request=request) from None


class BodyDecoder:
    """A response body, decoded by h11 with no I/O: network reads in, body bytes and an end out.

    `feed(read)` hands h11 one network read (b"": the connection closed cleanly) and returns the
    body bytes decoded since the last call, joined (b"" when none); `decoded()` returns them
    without a read (at first, the body bytes that came in the head's read). h11 does all of the
    framing (Content-Length, chunked, until-close) and judges every malformed case.

    After the body's end, `complete` is True, and `reusable` says whether nothing followed it
    (bytes after a body would be read as the next response: such a connection is not pooled).
    After bytes h11 refuses, `error` says why (RemoteProtocolError's text) and the bytes decoded
    before them are still returned by that call: they are the body's, and may hold a complete
    answer. Feed nothing more after either.
    """

    def __init__(self, http: h11.Connection) -> None:
        self._http = http
        self._closed = False
        self.complete = False
        self.reusable = False
        self.error: str | None = None

    def feed(self, read: bytes) -> bytes:
        self._http.receive_data(read)
        self._closed = not read
        return self.decoded()

    def decoded(self) -> bytes:
        http = self._http
        pieces = []
        try:
            while True:
                event = http.next_event()
                if type(event) is h11.Data:
                    pieces.append(event.data)
                elif event is h11.NEED_DATA:
                    if self._closed:  # h11 ends or refuses a body at a close; a guard against a loop
                        self.error = "the server closed the connection mid-response"
                    break
                elif type(event) is h11.EndOfMessage:
                    self.complete = True
                    # After a response, h11 answers PAUSED while unread bytes wait in its buffer.
                    self.reusable = http.next_event() is h11.NEED_DATA
                    break
                else:  # ConnectionClosed: h11 gives EndOfMessage first after a complete body
                    self.error = "the server closed the connection mid-response"
                    break
        except h11.RemoteProtocolError as exc:
            self.error = str(exc)
        # h11 hands out bytearrays; the byte stream's contract is bytes.
        return bytes(pieces[0]) if len(pieces) == 1 else b"".join(pieces)


class _ResponseStream(httpx.AsyncByteStream):
    """The response body: de-framed bytes as they arrive, one piece per network read; the
    connection pooled (complete and reusable) or aborted on close."""

    def __init__(self, transport: StreamingTransport, key: Key, conn: _Connection, request: httpx.Request,
                 read_timeout: float | None) -> None:
        self._transport = transport
        self._key = key
        self._conn: _Connection | None = conn
        self._request = request
        self._timeout = read_timeout or 0.0  # 0: none (and no timer)
        self._complete = False
        self._reusable = False
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
            self._timer = self._loop.call_at(now + self._timeout, self._check_idle)
        elif now < since + self._timeout:
            self._timer = self._loop.call_at(since + self._timeout, self._check_idle)
        else:
            self._timed_out = True
            conn.abort()  # wakes the waiting reader with the connection lost

    def _ended_early(self, conn: _Connection) -> httpx.TransportError:
        if self._timed_out:
            return httpx.ReadTimeout("the server sent nothing for too long", request=self._request)
        return httpx.ReadError(f"connection broken: {conn.error}", request=self._request)  # e.g. a reset mid-answer

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """The I/O: pass on what the decoder gives, then wait for a read and feed it. One pass
        per network read; at a token per read, this loop is the token path."""
        conn = self._conn
        assert conn is not None
        body = BodyDecoder(conn.http)
        data = body.decoded()  # body bytes that came in the head's read
        while True:
            # Complete before the last bytes go out: a consumer that stops at them (after
            # `data: [DONE]`) still gives back a reusable connection.
            self._complete, self._reusable = body.complete, body.reusable
            if data:
                yield data
            if body.complete:
                return
            if body.error is not None:
                raise httpx.RemoteProtocolError(body.error, request=self._request)
            while not conn.received and not conn.closed:
                self._waiting_since = self._loop.time()
                await conn.wait()
                self._waiting_since = 0.0
            if conn.received:
                data = body.feed(conn.take())
            elif self._timed_out or conn.error is not None:
                raise self._ended_early(conn)
            else:
                data = body.feed(b"")  # a clean close: the end of an until-close body, or a body cut short

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._complete and self._reusable:
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
