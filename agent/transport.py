"""A small HTTP/1.1 transport for httpx, built for long streamed responses.

The openai SDK still makes every request (auth, retries before the response starts,
error types); this only replaces how bytes travel. httpx's default transport reads
each network chunk through httpcore, h11 and anyio: a cancel scope, an exception map
and an h11 state-machine step per read, about half of the app's CPU per token
(docs/bench-notes.md). Here a read is one `StreamReader.read` and a few slices of
chunked framing.

Scope, on purpose: HTTP/1.1 over TCP or TLS, keep-alive with a small idle pool,
Content-Length, chunked and read-until-close bodies. No HTTP/2, no proxies: when a
proxy variable (HTTPS_PROXY, ALL_PROXY, ...) is set, `make_transport` returns None and
httpx's own transport is used. Failures are raised as the httpx exceptions httpx would
raise, so the SDK's retry logic and `agent.llm.map_exception` see no difference.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from typing import AsyncIterator

import httpx

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


def make_transport() -> httpx.AsyncBaseTransport | None:
    """The streaming transport, or None (use httpx's) when a proxy is configured."""
    if any(os.environ.get(name) or os.environ.get(name.upper()) for name in _PROXY_VARIABLES):
        return None
    return StreamingTransport()


class _Connection:
    __slots__ = ("reader", "writer", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self, now: float, expiry: float) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing() and now - self.idle_since < expiry

    def abort(self) -> None:
        # abort, not close: the peer sees the connection end now, with no TLS goodbye to wait for.
        self.writer.transport.abort()


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
                status, reason, headers = await self._read_head(request, conn, timeouts.get("read"))
            except httpx.RemoteProtocolError:
                conn.abort()
                if reused and attempt == 1:
                    continue  # the server had closed the idle connection: once more on a new one
                raise
            except BaseException:
                conn.abort()
                raise
            stream = _ResponseStream(self, key, conn, request, headers, timeouts.get("read"), status)
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
        try:
            reader, writer = await _within(
                timeout,
                asyncio.open_connection(host, port, ssl=self._ssl_context() if tls else None, limit=256 * 1024),
            )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out", request=request) from None
        except OSError as exc:  # refused, unreachable, DNS failure (socket.gaierror), TLS errors
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}", request=request) from None
        return _Connection(reader, writer)

    async def _write(self, request: httpx.Request, conn: _Connection, data: bytes, timeout: float | None) -> None:
        try:
            conn.writer.write(data)
            await _within(timeout, conn.writer.drain())
        except TimeoutError:
            raise httpx.WriteTimeout("sending the request timed out", request=request) from None
        except OSError as exc:
            raise httpx.RemoteProtocolError(f"connection lost while sending: {exc}", request=request) from None

    async def _read_head(self, request: httpx.Request, conn: _Connection, timeout: float | None) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        while True:
            try:
                raw = await _within(timeout, conn.reader.readuntil(b"\r\n\r\n"))
            except TimeoutError:
                raise httpx.ReadTimeout("no response from the server in time", request=request) from None
            except asyncio.IncompleteReadError:
                raise httpx.RemoteProtocolError("server disconnected without sending a response", request=request) from None
            except asyncio.LimitOverrunError:
                raise httpx.RemoteProtocolError("response head too large", request=request) from None
            except OSError as exc:
                raise httpx.ReadError(str(exc), request=request) from None
            lines = raw[:-4].split(b"\r\n")
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
            return status, reason, headers


class _ResponseStream(httpx.AsyncByteStream):
    """The response body: de-chunked bytes as they arrive; the connection pooled or aborted on close."""

    def __init__(self, transport: StreamingTransport, key: tuple[str, str, int], conn: _Connection, request: httpx.Request,
                 headers: list[tuple[bytes, bytes]], read_timeout: float | None, status: int) -> None:
        self._transport = transport
        self._key = key
        self._conn: _Connection | None = conn
        self._request = request
        self._timeout = read_timeout
        fields = {name.lower(): value.lower() for name, value in headers}
        self._chunked = b"chunked" in fields.get(b"transfer-encoding", b"")
        length = fields.get(b"content-length")
        self._length = int(length) if length and length.isdigit() and not self._chunked else None
        if request.method == "HEAD" or status in (204, 304):
            self._length = 0
        self._keep_alive = fields.get(b"connection") != b"close" and (self._chunked or self._length is not None)
        self._complete = False
        # The read timeout is an idle timeout, enforced by one timer that re-arms itself
        # only when it fires: a read costs a clock read, not a timer per read.
        self._loop = asyncio.get_running_loop()
        self._last_read = self._loop.time()
        self._timed_out = False
        self._timer = self._loop.call_at(self._last_read + read_timeout, self._check_idle) if read_timeout else None

    def _check_idle(self) -> None:
        deadline = self._last_read + (self._timeout or 0)
        if self._loop.time() < deadline:
            self._timer = self._loop.call_at(deadline, self._check_idle)
        elif self._conn is not None and not self._complete:
            self._timed_out = True
            self._conn.abort()  # wakes the pending read with end-of-stream

    async def _read(self) -> bytes:
        assert self._conn is not None
        try:
            data = await self._conn.reader.read(65536)
        except OSError as exc:  # e.g. a reset mid-answer
            raise httpx.ReadError(f"connection broken: {exc}", request=self._request) from None
        if self._timed_out:
            raise httpx.ReadTimeout("the server sent nothing for too long", request=self._request)
        self._last_read = self._loop.time()
        return data

    def _truncated(self) -> httpx.RemoteProtocolError:
        return httpx.RemoteProtocolError("peer closed connection without sending complete message body", request=self._request)

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._chunked:
            return self._chunks()
        return self._sized() if self._length is not None else self._until_close()

    async def _sized(self) -> AsyncIterator[bytes]:
        remaining = self._length or 0
        while remaining > 0:
            data = await self._read()
            if not data:
                raise self._truncated()
            remaining -= len(data)
            yield data
        self._complete = True

    async def _until_close(self) -> AsyncIterator[bytes]:
        while data := await self._read():
            yield data
        self._complete = True

    async def _chunks(self) -> AsyncIterator[bytes]:
        """Chunked transfer coding (RFC 9112 section 7.1), yielding data the moment it is read."""
        buffer = b""
        remaining = 0  # data bytes still due in the current chunk; -1 means its CRLF is due
        while True:
            data = await self._read()
            if not data:
                raise self._truncated()
            buffer += data
            out = []
            while True:
                if remaining > 0:
                    piece = buffer[:remaining]
                    buffer = buffer[len(piece):]
                    remaining -= len(piece)
                    if piece:
                        out.append(piece)
                    if remaining:
                        break
                    remaining = -1
                if remaining == -1:
                    if len(buffer) < 2:
                        break
                    buffer = buffer[2:]
                    remaining = 0
                line_end = buffer.find(b"\r\n")
                if line_end < 0:
                    break
                size_text = buffer[:line_end].split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise httpx.RemoteProtocolError(f"malformed chunk size {size_text[:20]!r}", request=self._request) from None
                if size == 0:
                    if out:
                        yield b"".join(out)
                    await self._trailers(buffer[line_end + 2:])
                    self._complete = True
                    return
                buffer = buffer[line_end + 2:]
                remaining = size
            if out:
                yield b"".join(out)

    async def _trailers(self, buffer: bytes) -> None:
        # After the last chunk: optional trailer fields, then an empty line.
        while not (buffer.startswith(b"\r\n") or b"\r\n\r\n" in buffer):
            data = await self._read()
            if not data:
                raise self._truncated()
            buffer += data

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
