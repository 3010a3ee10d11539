"""A small HTTP/1.1 transport for httpx, built for long streamed responses.

The openai SDK still makes every request (auth, retries before the response starts,
error types); this only replaces how bytes travel. httpx's default transport reads
each network chunk through httpcore, h11 and anyio: a cancel scope, an exception map
and an h11 state-machine step per read, about half of the app's CPU per token
(docs/bench-notes.md). Here the connection is an `asyncio.Protocol`: `data_received`
appends the bytes and resolves the one future the reader waits on, and the reader takes
them and removes the chunked framing with a few slices. (asyncio's StreamReader does the
same through more layers per read; at one token per read every layer shows.)

Scope, on purpose: HTTP/1.1 over TCP or TLS, keep-alive with a small idle pool,
Content-Length, chunked and read-until-close bodies. No HTTP/2, no proxies: when a
proxy variable (HTTPS_PROXY, ALL_PROXY, ...) is set, `make_transport` returns None and
httpx's own transport is used. Failures are raised as the httpx exceptions httpx would
raise, so the SDK's retry logic and `upstream.errors.map_exception` see no difference.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from typing import AsyncIterator

import httpx

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")
_MAX_HEAD_BYTES = 256 * 1024
# Stop reading from the socket while this much is received and not yet taken: a slow
# consumer holds the server back through TCP instead of growing this process.
_HIGH_WATER_BYTES = 256 * 1024


def make_transport() -> httpx.AsyncBaseTransport | None:
    """The streaming transport, or None (use httpx's) when a proxy is configured."""
    if any(os.environ.get(name) or os.environ.get(name.upper()) for name in _PROXY_VARIABLES):
        return None
    return StreamingTransport()


class _Connection(asyncio.Protocol):
    """One upstream connection. Received bytes wait in `received` until the reader takes
    them; a reader with nothing to take awaits `wait()`, which the next callback resolves."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.received: list[bytes] = []
        self.size = 0
        self.closed = False
        self.error: Exception | None = None  # why the connection was lost, if not a clean close
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None  # pending while the send buffer is full
        self._reading_paused = False

    # asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received.append(data)
        self.size += len(data)
        if self.size > _HIGH_WATER_BYTES and not self._reading_paused:
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

    def usable(self, now: float, expiry: float) -> bool:
        # Bytes arriving on an idle connection would be read as the next response: don't reuse it.
        return not self.closed and not self.received and not self.transport.is_closing() and now - self.idle_since < expiry  # type: ignore[union-attr]

    def abort(self) -> None:
        # abort, not close: the peer sees the connection end now, with no TLS goodbye to wait for.
        if self.transport is not None:
            self.transport.abort()


async def _within(seconds: float | None, awaitable):  # type: ignore[no-untyped-def]
    if seconds is None:
        return await awaitable
    async with asyncio.timeout(seconds):
        return await awaitable


class StreamingTransport(httpx.AsyncBaseTransport):
    def __init__(self, ssl_context: ssl.SSLContext | None = None, keepalive_expiry: float = 4.0, max_idle_per_host: int = 64) -> None:
        # Servers close idle keep-alive connections too (uvicorn after 5 s); expiring ours
        # a little earlier avoids sending a request into a connection that is closing.
        self._ssl = ssl_context
        self._expiry = keepalive_expiry
        self._max_idle = max_idle_per_host
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()  # certifi's CAs, SSL_CERT_FILE honoured
        return self._ssl

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        tls = url.scheme == "https"
        key = (url.scheme, url.host, url.port or (443 if tls else 80))
        head = b"%s %s HTTP/1.1\r\n%s\r\n" % (
            request.method.encode(),
            url.raw_path,
            b"".join(b"%s: %s\r\n" % (name, value) for name, value in request.headers.raw),
        )
        body = await request.aread()
        for attempt in (1, 2):
            conn = self._checkout(key)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(request, key, tls, timeouts.get("connect"))
            try:
                await self._write(request, conn, head + body, timeouts.get("write"))
                status, reason, headers, rest = await self._read_head(request, conn, timeouts.get("read"))
            except httpx.RemoteProtocolError:
                conn.abort()
                if reused and attempt == 1:
                    continue  # the server had closed the idle connection: once more on a new one
                raise
            except BaseException:
                conn.abort()
                raise
            stream = _ResponseStream(self, key, conn, request, headers, rest, timeouts.get("read"), status)
            return httpx.Response(status, headers=headers, stream=stream, extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason})
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.abort()
        self._idle.clear()

    def _checkout(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.usable(now, self._expiry):
                return conn
            conn.abort()
        return None

    def checkin(self, key: tuple[str, str, int], conn: _Connection) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) >= self._max_idle:
            conn.abort()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def _connect(self, request: httpx.Request, key: tuple[str, str, int], tls: bool, timeout: float | None) -> _Connection:
        _, host, port = key
        loop = asyncio.get_running_loop()
        try:
            _, conn = await _within(
                timeout,
                loop.create_connection(lambda: _Connection(loop), host, port, ssl=self._ssl_context() if tls else None),
            )
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
                await _within(timeout, writable)
            except TimeoutError:
                raise httpx.WriteTimeout("sending the request timed out", request=request) from None
        if conn.closed and conn.error is not None:
            raise httpx.RemoteProtocolError(f"connection lost while sending: {conn.error}", request=request)

    async def _read_head(self, request: httpx.Request, conn: _Connection, timeout: float | None) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes]:
        """The status line and header fields, and the bytes after them (the start of the body)."""
        buffer = b""
        while True:
            while (end := buffer.find(b"\r\n\r\n")) < 0:
                if len(buffer) > _MAX_HEAD_BYTES:
                    raise httpx.RemoteProtocolError("response head too large", request=request)
                if conn.received:
                    buffer += conn.take()
                elif conn.closed:
                    if conn.error is not None:
                        raise httpx.ReadError(str(conn.error), request=request)
                    raise httpx.RemoteProtocolError("server disconnected without sending a response", request=request)
                else:
                    try:
                        await _within(timeout, conn.wait())
                    except TimeoutError:
                        raise httpx.ReadTimeout("no response from the server in time", request=request) from None
            lines, buffer = buffer[:end].split(b"\r\n"), buffer[end + 4:]
            version, _, rest = lines[0].partition(b" ")
            code, _, reason = rest.partition(b" ")
            if not version.startswith(b"HTTP/1.") or not code.isdigit():
                raise httpx.RemoteProtocolError(f"malformed status line {lines[0][:80]!r}", request=request)
            status = int(code)
            if 100 <= status < 200:
                continue  # 100 Continue and friends: the real response follows
            headers = []
            for line in lines[1:]:
                name, colon, value = line.partition(b":")
                if not colon:
                    raise httpx.RemoteProtocolError("malformed header line", request=request)
                headers.append((name.strip(), value.strip()))
            return status, reason, headers, buffer


# ChunkedBody's parser states; a positive state is the data bytes still due in the current chunk.
_SIZE_LINE, _LINE_END, _TRAILERS = 0, -1, -2


class ChunkedBody:
    """Chunked transfer coding (RFC 9112 section 7.1), pushed: `feed(data)` returns the data
    bytes it completed (possibly b""); `done` once the last chunk and the trailer section
    are in; bytes after them are kept in `leftover`. Raises httpx.RemoteProtocolError."""

    ends_at_close = False

    def __init__(self) -> None:
        self._buffer = b""  # an incomplete size line, line end or trailer section
        self._state = _SIZE_LINE
        self.done = False
        self.leftover = b""

    def feed(self, data: bytes) -> bytes:
        buffer = self._buffer + data if self._buffer else data
        end_of_data = len(buffer)
        pos = 0
        state = self._state
        out = []
        while pos < end_of_data:
            if state == _SIZE_LINE:  # "1a\r\n" or "1a;name=value\r\n"
                line_end = buffer.find(b"\r\n", pos)
                if line_end < 0:
                    break
                try:
                    size = int(buffer[pos:line_end], 16)  # int() allows the whitespace around it
                except ValueError:
                    size = -1
                if size < 0:
                    size = _chunk_size_with_extensions(buffer[pos:line_end])
                pos = line_end + 2
                if size == 0:
                    state = _TRAILERS
                elif pos + size + 2 <= end_of_data:  # the usual read: the whole chunk and its line end
                    out.append(buffer[pos:pos + size])
                    pos += size + 2
                else:
                    state = size
            elif state > 0:  # chunk data: pass on what is here
                end = pos + state
                out.append(buffer[pos:end])
                if end > end_of_data:
                    state, pos = end - end_of_data, end_of_data
                    break
                state, pos = _LINE_END, end
            elif state == _LINE_END:  # the line end after a chunk's data
                if end_of_data - pos < 2:
                    break
                state, pos = _SIZE_LINE, pos + 2
            else:  # after the last chunk: optional trailer fields, of no use here, then a blank line
                if buffer.startswith(b"\r\n", pos):
                    end = pos + 2
                else:
                    end = buffer.find(b"\r\n\r\n", pos)
                    if end < 0:
                        break
                    end += 4
                self.done, self.leftover = True, buffer[end:]
                pos = end_of_data
        self._buffer, self._state = buffer[pos:], state
        return out[0] if len(out) == 1 else b"".join(out)


def _chunk_size_with_extensions(line: bytes) -> int:
    """The size from a size line with chunk extensions (rare, and ignored), or a protocol error."""
    try:
        size = int(line.split(b";", 1)[0], 16)
    except ValueError:
        size = -1
    if size < 0:
        raise httpx.RemoteProtocolError(f"malformed chunk size {line[:20]!r}")
    return size


class SizedBody:
    """A Content-Length body."""

    ends_at_close = False
    leftover = b""

    def __init__(self, length: int) -> None:
        self._remaining = length
        self.done = length == 0

    def feed(self, data: bytes) -> bytes:
        piece = data[:self._remaining]
        self._remaining -= len(piece)
        self.done = self._remaining == 0
        if len(piece) < len(data):
            self.leftover = data[len(piece):]
        return piece


class BodyUntilClose:
    """No length and not chunked: the body is everything until the server closes."""

    ends_at_close = True
    done = False
    leftover = b""

    def feed(self, data: bytes) -> bytes:
        return data


class _ResponseStream(httpx.AsyncByteStream):
    """The response body: de-framed bytes as they arrive; the connection pooled or aborted on close."""

    def __init__(self, transport: StreamingTransport, key: tuple[str, str, int], conn: _Connection, request: httpx.Request,
                 headers: list[tuple[bytes, bytes]], start: bytes, read_timeout: float | None, status: int) -> None:
        self._transport = transport
        self._key = key
        self._conn: _Connection | None = conn
        self._request = request
        self._start = start  # body bytes that arrived with the head
        self._timeout = read_timeout
        fields = {name.lower(): value.lower() for name, value in headers}
        chunked = b"chunked" in fields.get(b"transfer-encoding", b"")
        length = fields.get(b"content-length")
        self._body: ChunkedBody | SizedBody | BodyUntilClose
        if request.method == "HEAD" or status in (204, 304):
            self._body = SizedBody(0)
        elif chunked:
            self._body = ChunkedBody()
        elif length and length.isdigit():
            self._body = SizedBody(int(length))
        else:
            self._body = BodyUntilClose()
        self._keep_alive = fields.get(b"connection") != b"close" and not self._body.ends_at_close
        self._complete = False
        # The read timeout is an idle timeout, enforced by one timer that re-arms itself
        # only when it fires: a read costs a clock read, not a timer per read.
        self._loop = conn.loop
        self._last_read = self._loop.time()
        self._timed_out = False
        self._timer = self._loop.call_at(self._last_read + read_timeout, self._check_idle) if read_timeout else None

    def _check_idle(self) -> None:
        deadline = self._last_read + (self._timeout or 0)
        if self._loop.time() < deadline:
            self._timer = self._loop.call_at(deadline, self._check_idle)
        elif self._conn is not None and not self._complete:
            self._timed_out = True
            self._conn.abort()  # wakes the waiting reader with the connection lost

    def _ended_early(self, conn: _Connection) -> httpx.TransportError:
        if self._timed_out:
            return httpx.ReadTimeout("the server sent nothing for too long", request=self._request)
        if conn.error is not None:  # e.g. a reset mid-answer
            return httpx.ReadError(f"connection broken: {conn.error}", request=self._request)
        return httpx.RemoteProtocolError("peer closed connection without sending complete message body", request=self._request)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn, body = self._conn, self._body
        assert conn is not None
        data, self._start = self._start, b""
        # One pass per network read: at a token per read, this loop is the token path.
        while True:
            if data:
                piece = body.feed(data)
                if piece:
                    yield piece
            if body.done:
                break
            while not conn.received:
                if conn.closed:
                    if body.ends_at_close and not self._timed_out and conn.error is None:
                        self._complete = True
                        return
                    raise self._ended_early(conn)
                await conn.wait()
            data = conn.take()
            self._last_read = self._loop.time()
        self._complete = True
        if body.leftover:
            self._keep_alive = False  # bytes after the body: the connection's framing can't be trusted

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._complete and self._keep_alive:
            self._transport.checkin(self._key, conn)
        else:
            conn.abort()  # unread body (the client went away) or not reusable: end it now
