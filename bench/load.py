#!/usr/bin/env python3
"""Load client: C concurrent SSE streams, per-token added latency.

Opens C concurrent streams against either

* the app:   ``POST /api/agent/scenario/stream`` (``--target app``), frames
  ``event: <type>\\ndata: <json>\\n\\n`` with ``chat`` frames carrying the
  upstream delta in ``content``; or
* the floor: the fake upstream directly at ``POST /v1/chat/completions``
  (``--target floor``), OpenAI ``data: {chunk}`` lines ending in ``data: [DONE]``.

SSE is parsed incrementally (bytes -> lines -> events), so lines and events
split across network reads are handled, with LF, CRLF or CR line endings.
Each network read is timestamped once (``time.time()``, the same clock the
upstream stamps tokens with); every token ``⟦seq|emit⟧`` found in that read
gets ``added = arrival - emit``.

Per stream it also records ``ttft`` (send -> first token arrival),
``req_path`` (send -> upstream emit of token 0; the upstream emits token 0 as
soon as it has read the request) and ``first_token_overhead`` (ttft minus the
upstream's first emit time, i.e. arrival - emit of token 0).

Transports: ``httpx`` (default, ``httpx.AsyncClient.stream`` + ``aiter_raw``)
or ``raw`` (an ``asyncio.Protocol`` HTTP/1.1 client with its own chunked
decoder; costs much less CPU per token, useful when the client shares cores
with the server).

Everything is bounded: ``--timeout`` caps the whole run; streams still open
then are aborted and counted as failed.  ``--hold-seconds`` aborts all streams
after that long on purpose (for memory / disconnect tests).

Output: JSON (``--out FILE`` or stdout) with raw samples (ms) and a summary.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from urllib.parse import urlsplit

_time = time.time
STAMP_RE = re.compile(r"⟦(\d+)\|(\d+(?:\.\d+)?)⟧")
APP_PATH = "/api/agent/scenario/stream"
FLOOR_PATH = "/v1/chat/completions"


# ---------------------------------------------------------------------------
# SSE parsing
# ---------------------------------------------------------------------------
class SSEParser:
    """Incremental text/event-stream parser (WHATWG semantics, minus retry/id).

    ``feed(bytes)`` returns a list of ``(event_type, data)`` tuples for every
    event completed by that chunk.  Comment lines (``: ping``) are counted in
    ``comments`` and otherwise ignored.
    """

    __slots__ = ("_buf", "_event", "_data", "comments", "_dec", "_cr")

    def __init__(self) -> None:
        import codecs
        self._buf = ""
        self._event = ""
        self._data: list[str] = []
        self.comments = 0
        self._dec = codecs.getincrementaldecoder("utf-8")("replace")
        self._cr = False  # previous chunk ended in CR: swallow a leading LF

    def feed(self, chunk: bytes) -> list:
        text = self._dec.decode(chunk)
        if not text:
            return []
        if self._cr and text[0] == "\n":
            text = text[1:]
        self._cr = False
        if "\r" in text:
            self._cr = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if self._buf:
            text = self._buf + text
        lines = text.split("\n")
        self._buf = lines.pop()  # incomplete last line ("" if text ended a line)
        out = []
        for line in lines:
            if not line:
                if self._data:
                    out.append((self._event or "message", "\n".join(self._data)))
                    self._data = []
                self._event = ""
                continue
            if line[0] == ":":
                self.comments += 1
                continue
            field, sep, value = line.partition(":")
            if sep and value[:1] == " ":
                value = value[1:]
            if field == "data":
                self._data.append(value)
            elif field == "event":
                self._event = value
            # id / retry / unknown fields ignored
        return out

    def close(self) -> list:
        """Dispatch nothing: per spec an unterminated event at EOF is dropped."""
        return []


# Whole-buffer reference parser, used by --selftest to check the incremental one.
class _RefParser:
    def __init__(self):
        self.raw = b""

    def all_events(self):
        text = self.raw.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
        out, ev, data = [], "", []
        for line in text.split("\n")[:-1]:
            if line == "":
                if data:
                    out.append((ev or "message", "\n".join(data)))
                ev, data = "", []
            elif line.startswith(":"):
                pass
            else:
                f, s, v = line.partition(":")
                if s and v.startswith(" "):
                    v = v[1:]
                if f == "data":
                    data.append(v)
                elif f == "event":
                    ev = v
        return out


# ---------------------------------------------------------------------------
# Per-stream accounting
# ---------------------------------------------------------------------------
class StreamRec:
    __slots__ = ("idx", "t_send", "t_first", "stamp0", "added", "emits", "next_seq", "seq_errors",
                 "done", "error", "status", "events", "comments", "t_last", "parser",
                 "target")

    def __init__(self, idx: int, target: str) -> None:
        self.idx = idx
        self.target = target
        self.t_send = 0.0
        self.t_first = None
        self.stamp0 = None
        self.added: list[float] = []
        self.emits: list[float] = []  # emit stamp of each token in `added`, for the timeline
        self.next_seq = 0
        self.seq_errors = 0
        self.done = False
        self.error = None
        self.status = None
        self.events = 0
        self.comments = 0
        self.t_last = None
        self.parser = SSEParser()

    def on_bytes(self, chunk: bytes, now: float) -> None:
        events = self.parser.feed(chunk)
        if not events:
            return
        self.t_last = now
        for etype, data in events:
            self.events += 1
            if data == "[DONE]":
                self.done = True
                continue
            if etype == "done":
                self.done = True
                continue
            if etype == "error":
                if self.error is None:
                    self.error = "error event: " + data[:200]
                continue
            if etype == "start":
                continue
            try:
                obj = json.loads(data)
            except ValueError:
                if self.error is None:
                    self.error = "bad JSON in data: " + data[:120]
                continue
            content = None
            if isinstance(obj, dict):
                if "choices" in obj:  # OpenAI chunk (floor)
                    ch = obj["choices"]
                    if ch:
                        content = (ch[0].get("delta") or {}).get("content")
                    if "error" in obj and self.error is None:
                        self.error = "error chunk: " + data[:200]
                else:  # app frame
                    t = obj.get("type", etype)
                    if t == "chat":
                        content = obj.get("content")
                    elif t == "error" and self.error is None:
                        self.error = "error frame: " + data[:200]
                    elif t == "done":
                        self.done = True
            if not content:
                continue
            for m in STAMP_RE.finditer(content):
                seq = int(m.group(1))
                emit = float(m.group(2))
                if seq != self.next_seq:
                    self.seq_errors += 1
                self.next_seq = seq + 1
                if seq == 0 and self.t_first is None:
                    self.t_first = now
                    self.stamp0 = emit
                self.added.append(now - emit)
                self.emits.append(emit)


# ---------------------------------------------------------------------------
# Transports
# ---------------------------------------------------------------------------
def build_request(target: str, tokens: int | None, interval_ms: float | None):
    if target == "app":
        body = {"message": "hi", "scenario": None, "mode": "chat"}
        headers = {}
    else:
        body = {"model": "bench-model", "messages": [{"role": "user", "content": "hi"}],
                "stream": True, "stream_options": {"include_usage": True}}
        headers = {}
        if tokens:
            headers["x-bench-tokens"] = str(tokens)
        if interval_ms:
            headers["x-bench-interval-ms"] = str(interval_ms)
    headers["content-type"] = "application/json"
    headers["accept"] = "text/event-stream"
    return json.dumps(body).encode(), headers


async def run_httpx(url, recs, starts, body, headers, deadline, hold_until):
    import httpx
    limits = httpx.Limits(max_connections=len(recs) + 8, max_keepalive_connections=len(recs) + 8)
    timeout = httpx.Timeout(connect=10.0, read=30.0, write=10.0, pool=10.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:

        async def one(rec: StreamRec, delay: float):
            if delay > 0:
                await asyncio.sleep(delay)
            rec.t_send = _time()
            try:
                async with client.stream("POST", url, content=body, headers=headers) as r:
                    rec.status = r.status_code
                    if r.status_code != 200:
                        rec.error = "HTTP %d: %s" % (r.status_code, (await r.aread())[:200])
                        return
                    async for chunk in r.aiter_raw():
                        rec.on_bytes(chunk, _time())
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001
                rec.error = "%s: %s" % (type(e).__name__, e)

        tasks = [asyncio.ensure_future(one(r, d)) for r, d in zip(recs, starts)]
        await _wait_bounded(tasks, recs, deadline, hold_until)


class RawClient(asyncio.Protocol):
    """Minimal HTTP/1.1 client for one streaming request (chunked or length)."""

    def __init__(self, rec: StreamRec, request: bytes, finished: asyncio.Future):
        self.rec = rec
        self.request = request
        self.finished = finished
        self.transport = None
        self.head = b""
        self.in_body = False
        self.chunked = False
        self.remaining = -1  # content-length remaining, -1 = until close
        self.cbuf = b""      # undecoded chunked bytes
        self.chunk_left = 0  # bytes left in current chunk (+2 for CRLF handled separately)
        self.state = "size"  # size | data | crlf | trailer | end

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            import socket
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.rec.t_send = _time()
        transport.write(self.request)

    def data_received(self, data: bytes):
        now = _time()
        if not self.in_body:
            self.head += data
            i = self.head.find(b"\r\n\r\n")
            if i < 0:
                return
            head = self.head[:i].decode("latin-1")
            data = self.head[i + 4:]
            self.head = b""
            self.in_body = True
            lines = head.split("\r\n")
            try:
                self.rec.status = int(lines[0].split(" ", 2)[1])
            except (IndexError, ValueError):
                self.rec.error = "bad status line"
                self._finish()
                return
            hdrs = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                hdrs[k.strip().lower()] = v.strip().lower()
            self.chunked = "chunked" in hdrs.get("transfer-encoding", "")
            if not self.chunked and "content-length" in hdrs:
                self.remaining = int(hdrs["content-length"])
            if self.rec.status != 200:
                self.rec.error = "HTTP %d" % self.rec.status
            if not data:
                if self.remaining == 0:
                    self._finish()
                return
        if self.chunked:
            self._dechunk(data, now)
        else:
            if self.remaining >= 0:
                data = data[:self.remaining]
                self.remaining -= len(data)
            self.rec.on_bytes(data, now)
            if self.remaining == 0:
                self._finish()

    def _dechunk(self, data: bytes, now: float):
        buf = self.cbuf + data if self.cbuf else data
        pos = 0
        n = len(buf)
        payload = []
        while pos < n:
            st = self.state
            if st == "data":
                take = min(self.chunk_left, n - pos)
                payload.append(buf[pos:pos + take])
                pos += take
                self.chunk_left -= take
                if self.chunk_left == 0:
                    self.state = "crlf"
            elif st == "crlf":
                if n - pos < 2:
                    break
                pos += 2
                self.state = "size"
            elif st == "size":
                j = buf.find(b"\r\n", pos)
                if j < 0:
                    break
                size = int(buf[pos:j].split(b";", 1)[0], 16)
                pos = j + 2
                if size == 0:
                    self.state = "trailer"
                else:
                    self.chunk_left = size
                    self.state = "data"
            elif st == "trailer":
                j = buf.find(b"\r\n", pos)
                if j < 0:
                    break
                if j == pos:  # empty line ends trailers
                    pos = j + 2
                    self.state = "end"
                    break
                pos = j + 2
            else:
                break
        self.cbuf = buf[pos:] if pos < n and self.state != "end" else b""
        if payload:
            self.rec.on_bytes(payload[0] if len(payload) == 1 else b"".join(payload), now)
        if self.state == "end":
            self._finish()

    def _finish(self):
        if self.transport is not None:
            self.transport.close()
        if not self.finished.done():
            self.finished.set_result(None)

    def eof_received(self):
        return None

    def connection_lost(self, exc):
        if not self.finished.done():
            if self.rec.error is None and not self.rec.done and self.state != "end":
                self.rec.error = "connection closed early" + (": %s" % exc if exc else "")
            self.finished.set_result(None)


async def run_raw(url, recs, starts, body, headers, deadline, hold_until):
    u = urlsplit(url)
    host, port = u.hostname, u.port or 80
    path = u.path + ("?" + u.query if u.query else "")
    hdr = "".join("%s: %s\r\n" % (k, v) for k, v in headers.items())
    request = ("POST %s HTTP/1.1\r\nhost: %s:%d\r\n%scontent-length: %d\r\n\r\n"
               % (path, host, port, hdr, len(body))).encode() + body
    loop = asyncio.get_running_loop()

    async def one(rec: StreamRec, delay: float):
        if delay > 0:
            await asyncio.sleep(delay)
        fut = loop.create_future()
        tr = None
        try:
            tr, _ = await loop.create_connection(lambda: RawClient(rec, request, fut), host, port)
            await fut
        except asyncio.CancelledError:
            if tr is not None:
                tr.abort()
            raise
        except Exception as e:  # noqa: BLE001
            rec.error = "%s: %s" % (type(e).__name__, e)
            if tr is not None:
                tr.abort()

    tasks = [asyncio.ensure_future(one(r, d)) for r, d in zip(recs, starts)]
    await _wait_bounded(tasks, recs, deadline, hold_until)


async def _wait_bounded(tasks, recs, deadline, hold_until):
    loop = asyncio.get_running_loop()
    end = hold_until if hold_until else deadline
    timeout = max(0.0, end - loop.time())
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    if not hold_until:
        for t, r in zip(tasks, recs):
            if t in pending and r.error is None:
                r.error = "timeout"


# ---------------------------------------------------------------------------
# Summary helpers
# ---------------------------------------------------------------------------
def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = (len(sorted_vals) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(sorted_vals) - 1)
    return sorted_vals[f] + (sorted_vals[c] - sorted_vals[f]) * (k - f)


def summarize(raw: dict) -> dict:
    added = sorted(raw["added_ms"])
    s = {
        "streams": raw["streams"],
        "streams_ok": raw["streams_ok"],
        "tokens": raw["tokens"],
        "added_ms": {"p50": pct(added, 50), "p90": pct(added, 90), "p99": pct(added, 99),
                     "max": added[-1] if added else None,
                     "mean": (sum(added) / len(added)) if added else None},
    }
    for key in ("first_token_overhead_ms", "ttft_ms", "req_path_ms"):
        v = sorted(x for x in raw[key] if x is not None)
        s[key] = {"p50": pct(v, 50), "p99": pct(v, 99), "max": v[-1] if v else None}
    dur = raw["t_end"] - raw["t_start"] if raw["t_end"] and raw["t_start"] else None
    s["duration_s"] = dur
    s["tokens_per_s"] = (raw["tokens"] / dur) if dur else None
    s["client_cpu_s"] = raw.get("client_cpu_s")
    s["errors"] = raw.get("errors", [])[:5]
    s["timeline"] = timeline(raw.get("emit_s") or [], raw["added_ms"])
    return s


def timeline(emits: list[float], added_ms: list[float], step_s: float = 0.25) -> list[dict]:
    """Added latency by when the token was emitted (buckets of `step_s` from the first emit):
    shows whether the slow tokens come from the start-up burst or from the whole run."""
    if not emits or len(emits) != len(added_ms):
        return []
    t0 = min(emits)
    buckets: dict[int, list[float]] = {}
    for emit, added in zip(emits, added_ms):
        buckets.setdefault(int((emit - t0) / step_s), []).append(added)
    rows = []
    for k in sorted(buckets):
        v = sorted(buckets[k])
        rows.append({"from_s": round(k * step_s, 2), "tokens": len(v), "p50": pct(v, 50),
                     "p99": pct(v, 99), "max": v[-1]})
    return rows


def merge(raws: list[dict]) -> dict:
    out = {"streams": 0, "streams_ok": 0, "tokens": 0, "added_ms": [], "emit_s": [],
           "first_token_overhead_ms": [], "ttft_ms": [], "req_path_ms": [], "errors": [],
           "client_cpu_s": 0.0, "first_token_streams": 0, "seq_errors": 0, "comments": 0}
    starts, ends = [], []
    for r in raws:
        for k in ("streams", "streams_ok", "tokens", "first_token_streams", "seq_errors",
                  "comments"):
            out[k] += r.get(k, 0)
        for k in ("added_ms", "emit_s", "first_token_overhead_ms", "ttft_ms", "req_path_ms", "errors"):
            out[k].extend(r.get(k, []))
        out["client_cpu_s"] += r.get("client_cpu_s") or 0.0
        if r.get("t_start"):
            starts.append(r["t_start"])
        if r.get("t_end"):
            ends.append(r["t_end"])
    out["t_start"] = min(starts) if starts else None
    out["t_end"] = max(ends) if ends else None
    return out


# ---------------------------------------------------------------------------
async def amain(a) -> dict:
    target = a.target
    if target == "auto":
        target = "floor" if urlsplit(a.url).path.rstrip("/").endswith(FLOOR_PATH) else "app"
    body, headers = build_request(target, a.tokens, a.interval_ms)
    C = a.concurrency
    recs = [StreamRec(i, target) for i in range(C)]
    ramp = a.ramp_ms / 1000.0
    starts = [ramp * i / C for i in range(C)]
    loop = asyncio.get_running_loop()
    if a.timeout:
        timeout = a.timeout
    else:
        expected = (a.tokens or 200) * (a.interval_ms or 10.0) / 1000.0
        timeout = ramp + expected * 3 + 10.0
    deadline = loop.time() + timeout
    hold_until = loop.time() + a.hold_seconds if a.hold_seconds else None
    cpu0 = os.times()
    t0 = _time()
    runner = run_raw if a.transport == "raw" else run_httpx
    await runner(a.url, recs, starts, body, headers, deadline, hold_until)
    cpu1 = os.times()

    raw = {"target": target, "url": a.url, "transport": a.transport, "streams": C,
           "streams_ok": 0, "tokens": 0, "added_ms": [], "emit_s": [], "first_token_overhead_ms": [],
           "ttft_ms": [], "req_path_ms": [], "errors": [], "first_token_streams": 0,
           "seq_errors": 0, "comments": 0,
           "client_cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
           "t_start": min((r.t_send for r in recs if r.t_send), default=t0),
           "t_end": max((r.t_last for r in recs if r.t_last), default=None),
           "expected_tokens": a.tokens, "hold_seconds": a.hold_seconds}
    for r in recs:
        raw["tokens"] += len(r.added)
        raw["seq_errors"] += r.seq_errors
        raw["comments"] += r.parser.comments
        raw["added_ms"].extend(round(x * 1000.0, 4) for x in r.added)
        raw["emit_s"].extend(r.emits)
        if r.t_first is not None:
            raw["first_token_streams"] += 1
            raw["first_token_overhead_ms"].append(round((r.t_first - r.stamp0) * 1000.0, 4))
            raw["ttft_ms"].append(round((r.t_first - r.t_send) * 1000.0, 4))
            raw["req_path_ms"].append(round((r.stamp0 - r.t_send) * 1000.0, 4))
        ok = (r.error is None and r.done and r.seq_errors == 0
              and (not a.tokens or len(r.added) == a.tokens))
        if ok:
            raw["streams_ok"] += 1
        elif len(raw["errors"]) < 20:
            raw["errors"].append({"stream": r.idx, "error": r.error, "done": r.done,
                                  "tokens": len(r.added), "seq_errors": r.seq_errors,
                                  "status": r.status})
    return raw


def selftest() -> None:
    """Parser check: random splits of a byte stream give the same events."""
    import random
    frames = (
        b": ping\n\n"
        b"event: start\ndata: {\"type\":\"start\"}\n\n"
        b"event: chat\r\ndata: {\"type\":\"chat\",\"content\":\"\xe2\x9f\xa60|1.5\xe2\x9f\xa7 \"}\r\n\r\n"
        b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\r\r"
        b"data: line1\ndata: line2\n\n"
        b"event: done\ndata: {\"type\":\"done\"}\n\n"
        b"data: [DONE]\n\n"
    )
    ref = _RefParser()
    ref.raw = frames
    want = ref.all_events()
    rnd = random.Random(7)
    for _ in range(2000):
        p = SSEParser()
        got = []
        i = 0
        while i < len(frames):
            j = i + rnd.randint(1, 9)
            got += p.feed(frames[i:j])
            i = j
        assert got == want, (got, want)
    print("selftest ok: %d events, 2000 random splits" % len(want))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="full URL, e.g. http://127.0.0.1:8000" + APP_PATH)
    ap.add_argument("--target", choices=["auto", "app", "floor"], default="auto")
    ap.add_argument("-c", "--concurrency", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=200,
                    help="expected tokens per stream (floor: also sent as x-bench-tokens)")
    ap.add_argument("--interval-ms", type=float, default=10.0,
                    help="token interval (floor: sent as x-bench-interval-ms)")
    ap.add_argument("--ramp-ms", type=float, default=10.0,
                    help="spread stream starts evenly over this many ms")
    ap.add_argument("--timeout", type=float, default=0.0,
                    help="hard cap on the whole run in s (0 = 3x expected + 10 s)")
    ap.add_argument("--hold-seconds", type=float, default=0.0,
                    help="abort all streams after this many seconds (disconnect test)")
    ap.add_argument("--transport", choices=["httpx", "raw"], default="httpx")
    ap.add_argument("--uvloop", action="store_true", help="run the client on uvloop")
    ap.add_argument("--out", help="write raw JSON here (default: summary to stdout)")
    ap.add_argument("--selftest", action="store_true", help="check the SSE parser and exit")
    a = ap.parse_args(argv)
    if a.selftest:
        selftest()
        return 0
    if not a.url:
        ap.error("--url is required")
    host = urlsplit(a.url).hostname or ""
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        ap.error("load client only targets loopback addresses")
    if a.uvloop:
        import uvloop
        raw = uvloop.run(amain(a))
    else:
        raw = asyncio.run(amain(a))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(raw, f)
        print(json.dumps(summarize(raw)))
    else:
        print(json.dumps(summarize(raw), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
