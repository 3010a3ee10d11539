#!/usr/bin/env python3
"""Paced fake OpenAI-compatible upstream for benchmarks.

Raw HTTP/1.1 on asyncio (``asyncio.Protocol``, keep-alive, chunked transfer
encoding), no framework, so the per-token cost is a timer callback plus one
``transport.write``.  Each streamed token is stamped with its emit time::

    ⟦<seq>|<unix_time_float>⟧<space>

so a client on the same machine can compute "arrival - emit" per token.

Pacing uses absolute deadlines ``start + i * interval`` (``loop.call_at``);
if the loop falls behind, the next token is emitted immediately and pacing
catches up instead of drifting.  Token 0 is emitted as soon as the request
has been read, so "time to first token" measured by a client is pure
transport/relay overhead.

Endpoints
  POST /v1/chat/completions   stream=true -> SSE chat.completion.chunk lines
                              stream=false -> one chat.completion JSON
  GET  /v1/models             minimal model list
  GET  /stats                 {"open_streams", "total", "completed", "aborted",
                               "tokens", "tokens_per_stream", "interval_ms"}
  POST /config                JSON {"tokens": n, "interval_ms": x} for new streams
  POST /stats/reset           zero the counters (not open_streams)
  ("late_ms" in /stats: how late tokens were emitted against their deadlines,
   p50/p99/max since the last reset: non-zero p99 means the upstream itself was
   starved of CPU and its pacing slipped)
  GET  /health                {"ok": true}

Per-request overrides (used by direct "floor" clients): headers
``x-bench-tokens`` and ``x-bench-interval-ms``.

Only binds to loopback addresses.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time

_time = time.time
MAX_HEADER = 64 * 1024
MAX_BODY = 4 * 1024 * 1024


class State:
    def __init__(self, tokens: int, interval_ms: float) -> None:
        self.tokens = tokens
        self.interval = interval_ms / 1000.0
        self.open_streams = 0
        self.total = 0
        self.completed = 0
        self.aborted = 0
        self.tokens_emitted = 0
        self.connections = 0
        self.open_connections = 0
        self.late: list[float] = []  # emit time - scheduled deadline (s), since last reset

    def late_summary(self) -> dict:
        v = sorted(self.late)
        if not v:
            return {"n": 0, "p50": None, "p99": None, "max": None}
        pick = lambda p: v[min(len(v) - 1, int(round((len(v) - 1) * p)))]  # noqa: E731
        return {"n": len(v), "p50": pick(0.5) * 1000, "p99": pick(0.99) * 1000,
                "max": v[-1] * 1000}

    def stats(self) -> dict:
        return {
            "open_streams": self.open_streams,
            "total": self.total,
            "completed": self.completed,
            "aborted": self.aborted,
            "tokens": self.tokens_emitted,
            "connections": self.connections,
            "open_connections": self.open_connections,
            "tokens_per_stream": self.tokens,
            "interval_ms": self.interval * 1000.0,
            "pid": os.getpid(),
            "late_ms": self.late_summary(),
        }


def _chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunked-encoding chunk."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _sse(obj_json: str) -> bytes:
    return _chunk(("data: " + obj_json + "\n\n").encode())


def token_chunk(cid: str, model: str, seq: int, now: float) -> bytes:
    """The bytes written for one token: its stamp `⟦seq|emit time⟧ ` as the delta's content."""
    return _sse(
        '{"id":"%s","object":"chat.completion.chunk","created":0,"model":"%s",'
        '"choices":[{"index":0,"delta":{"content":"⟦%d|%.6f⟧ "},'
        '"finish_reason":null}]}' % (cid, model, seq, now)
    )


class Stream:
    """One paced SSE response on a connection."""

    __slots__ = ("conn", "state", "n", "interval", "start", "seq", "handle",
                 "model", "cid", "done")

    def __init__(self, conn: "Conn", n: int, interval: float, model: str) -> None:
        self.conn = conn
        self.state = conn.state
        self.n = n
        self.interval = interval
        self.model = model
        self.cid = "chatcmpl-bench%d" % self.state.total
        self.seq = 0
        self.handle = None
        self.done = False

    def begin(self) -> None:
        st = self.state
        st.open_streams += 1
        st.total += 1
        head = (
            "HTTP/1.1 200 OK\r\n"
            "content-type: text/event-stream; charset=utf-8\r\n"
            "cache-control: no-cache\r\n"
            "transfer-encoding: chunked\r\n"
            "x-request-id: %s\r\n"
            "\r\n" % self.cid
        ).encode()
        first = _sse(
            '{"id":"%s","object":"chat.completion.chunk","created":0,"model":"%s",'
            '"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
            '"finish_reason":null}]}' % (self.cid, self.model)
        )
        self.conn.transport.write(head + first)
        loop = self.conn.loop
        self.start = loop.time()
        # token 0 right away (deadline = start + 0 * interval)
        self.handle = loop.call_soon(self.tick)

    def tick(self) -> None:
        self.handle = None
        conn = self.conn
        tr = conn.transport
        if self.done or tr is None or tr.is_closing():
            self.abort()
            return
        seq = self.seq
        now = _time()
        # how late this emit is against its absolute deadline (pacing slip under CPU starvation)
        if len(self.state.late) < 2_000_000:
            self.state.late.append(conn.loop.time() - (self.start + seq * self.interval))
        out = token_chunk(self.cid, self.model, seq, now)
        self.state.tokens_emitted += 1
        seq += 1
        self.seq = seq
        if seq >= self.n:
            n = self.n
            out += _sse(
                '{"id":"%s","object":"chat.completion.chunk","created":0,"model":"%s",'
                '"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}'
                % (self.cid, self.model)
            )
            out += _sse(
                '{"id":"%s","object":"chat.completion.chunk","created":0,"model":"%s",'
                '"choices":[],"usage":{"prompt_tokens":8,"completion_tokens":%d,'
                '"total_tokens":%d}}' % (self.cid, self.model, n, n + 8)
            )
            out += _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"
            tr.write(out)
            self.finish(completed=True)
            return
        tr.write(out)
        self.handle = conn.loop.call_at(self.start + seq * self.interval, self.tick)

    def finish(self, completed: bool) -> None:
        if self.done:
            return
        self.done = True
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        st = self.state
        st.open_streams -= 1
        if completed:
            st.completed += 1
        else:
            st.aborted += 1
        conn = self.conn
        if conn.stream is self:
            conn.stream = None
            if completed and conn.close_after:
                conn.transport.close()
            elif completed:
                conn.process()  # pipelined request already buffered?

    def abort(self) -> None:
        self.finish(completed=False)


class Conn(asyncio.Protocol):
    def __init__(self, state: State) -> None:
        self.state = state
        self.loop = asyncio.get_running_loop()
        self.transport = None
        self.buf = b""
        self.stream: Stream | None = None
        self.close_after = False

    # -- asyncio callbacks -------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.state.connections += 1
        self.state.open_connections += 1
        try:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                import socket
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.stream is None:
            self.process()

    def eof_received(self):
        # Client half-closed or went away: treat as disconnect.
        return None  # -> transport closes -> connection_lost

    def connection_lost(self, exc) -> None:
        self.state.open_connections -= 1
        s = self.stream
        if s is not None:
            s.abort()
        self.transport = None

    # -- HTTP --------------------------------------------------------------
    def process(self) -> None:
        while self.stream is None and self.transport is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEADER:
                    self.reply(431, {"error": "headers too large"}, close=True)
                return
            head = self.buf[:end].decode("latin-1")
            lines = head.split("\r\n")
            try:
                method, target, version = lines[0].split(" ", 2)
            except ValueError:
                self.reply(400, {"error": "bad request line"}, close=True)
                return
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self.reply(411, {"error": "chunked request bodies unsupported"}, close=True)
                return
            try:
                clen = int(headers.get("content-length", "0") or 0)
            except ValueError:
                self.reply(400, {"error": "bad content-length"}, close=True)
                return
            if clen > MAX_BODY:
                self.reply(413, {"error": "body too large"}, close=True)
                return
            if len(self.buf) < end + 4 + clen:
                return  # wait for the rest of the body
            body = self.buf[end + 4:end + 4 + clen]
            self.buf = self.buf[end + 4 + clen:]
            conn_hdr = headers.get("connection", "").lower()
            self.close_after = (version == "HTTP/1.0" and "keep-alive" not in conn_hdr) or (
                "close" in conn_hdr)
            self.route(method, target.split("?", 1)[0], headers, body)

    def reply(self, status: int, obj, close: bool = False) -> None:
        body = json.dumps(obj).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                  411: "Length Required", 413: "Payload Too Large",
                  431: "Request Header Fields Too Large"}.get(status, "OK")
        close = close or self.close_after
        head = (
            "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n"
            % (status, reason, len(body), "connection: close\r\n" if close else "")
        ).encode()
        self.transport.write(head + body)
        if close:
            self.transport.close()
            self.buf = b""

    def route(self, method: str, path: str, headers: dict, body: bytes) -> None:
        st = self.state
        if path == "/v1/chat/completions":
            if method != "POST":
                return self.reply(405, {"error": "method not allowed"})
            try:
                req = json.loads(body or b"{}")
            except ValueError:
                return self.reply(400, {"error": {"message": "invalid JSON body"}})
            n = st.tokens
            interval = st.interval
            if "x-bench-tokens" in headers:
                n = max(1, int(headers["x-bench-tokens"]))
            if "x-bench-interval-ms" in headers:
                interval = float(headers["x-bench-interval-ms"]) / 1000.0
            model = str(req.get("model") or "bench-model").replace('"', "")
            if not req.get("stream"):
                text = "".join("⟦%d|%.6f⟧ " % (i, _time()) for i in range(n))
                return self.reply(200, {
                    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0,
                    "model": model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 8, "completion_tokens": n,
                              "total_tokens": n + 8},
                })
            s = Stream(self, n, interval, model)
            self.stream = s
            s.begin()
            return
        if path == "/stats" and method == "GET":
            return self.reply(200, st.stats())
        if path == "/stats/reset" and method == "POST":
            st.total = st.completed = st.aborted = st.tokens_emitted = 0
            st.late = []
            return self.reply(200, st.stats())
        if path == "/config" and method == "POST":
            try:
                cfg = json.loads(body or b"{}")
                if "tokens" in cfg:
                    st.tokens = max(1, int(cfg["tokens"]))
                if "interval_ms" in cfg:
                    st.interval = float(cfg["interval_ms"]) / 1000.0
            except (ValueError, TypeError) as e:
                return self.reply(400, {"error": str(e)})
            return self.reply(200, st.stats())
        if path in ("/health", "/v1/health") and method == "GET":
            return self.reply(200, {"ok": True})
        if path == "/v1/models" and method == "GET":
            return self.reply(200, {"object": "list", "data": [
                {"id": "bench-model", "object": "model", "created": 0, "owned_by": "bench"}]})
        return self.reply(404, {"error": {"message": "not found: %s %s" % (method, path)}})


async def serve(host: str, port: int, state: State, ready_file: str | None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Conn(state), host, port, backlog=2048,
                                      reuse_address=True)
    actual = server.sockets[0].getsockname()[1]
    msg = json.dumps({"ready": True, "port": actual, "pid": os.getpid()})
    if ready_file:
        with open(ready_file + ".tmp", "w") as f:
            f.write(msg)
        os.replace(ready_file + ".tmp", ready_file)
    print(msg, flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--interval-ms", type=float, default=10.0)
    ap.add_argument("--ready-file", help="write {ready, port, pid} JSON here once listening")
    ap.add_argument("--uvloop", action="store_true",
                    help="run on uvloop (default: stdlib asyncio event loop)")
    a = ap.parse_args(argv)
    if not (a.host.startswith("127.") or a.host in ("localhost", "::1")):
        ap.error("the bench upstream only binds to loopback addresses")
    state = State(a.tokens, a.interval_ms)
    if a.uvloop:
        import uvloop
        uvloop.run(serve(a.host, a.port, state, a.ready_file))
    else:
        asyncio.run(serve(a.host, a.port, state, a.ready_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
