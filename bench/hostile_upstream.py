#!/usr/bin/env python3
"""What a hostile upstream, or a hostile request, costs the app: CPU seconds and RSS growth per case.

    python3 bench/hostile_upstream.py            # every case, one request each
    python3 bench/hostile_upstream.py --case line-160mb

The app runs as the Procfile's process (tests/support/harness.py ServerProcess) against a raw
upstream on 127.0.0.1 that answers each request with exact bytes, generated as they are sent:

    line-40mb / line-80mb / line-160mb   one SSE line of that size with no line end
    data-50mb                            50 MB of `data:` lines with no blank line
    gzip-bomb                            a ~400 KB gzip body that inflates to 400 MB
    deltas-690k                          690,000 one-word deltas (an upstream that ignores MAX_OUTPUT_TOKENS)
    block-50mb                           a ```scenario block of 50 MB, in 16 KiB deltas

and, with a bar each (the routines alone: bench/hostile_requests.py):

    removals-4000     a modify of a 4,000-key scenario (47 KB) with "remove " x 1,142 (8,000
                      characters), answered with an empty patch: bar 0.2 s of CPU
    patch-doubling    a modify answered with the audit's patch, 20 copies of /steps into itself
                      in under 1 KB, twice (the repair round repeats it): 0.5 s, 20 MB
    patch-churn-64k   a modify answered with 64 KiB of copy-then-remove pairs of a 30 KB value,
                      in 64-character deltas (MAX_OUTPUT_TOKENS raised so it all arrives): 0.5 s, 20 MB
    backticks-16k     a create answered with 16,000 backticks in 8-character deltas: 0.2 s

For each: the app's CPU (utime + stime from /proc) and RSS (VmRSS before, VmHWM after) around
one streamed request, the frames' error code, and the seconds until `done`. The CPU includes
the request's own handling (its JSON body, the prompt, the frames), not only the routine under
test. Bounded: one request per case, 120 s each, loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import httpx  # noqa: E402

from tests.support.harness import ServerProcess  # noqa: E402
from tests.support.servers import STREAM_PATH, free_port, parse_frames  # noqa: E402

MB = 1_000_000
# connection: close, since each answer ends with the connection (a repair round opens another).
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n%s\r\n"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _delta(text: str) -> bytes:
    return b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}).encode() + b"\n\n"


def _answer(text: str, size: int):  # type: ignore[no-untyped-def]
    """A whole answer: `text` in deltas of `size` characters, then a stop and [DONE]."""
    for start in range(0, len(text), size):
        yield _delta(text[start: start + size])
    yield b"data: " + json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


def _ops(op_list: list[dict], limit: int) -> str:
    """"[op,op,...]" of `op_list` repeated, as long as it stays within `limit` bytes."""
    parts = [json.dumps(op, separators=(",", ":")) for op in op_list]
    out: list[str] = []
    size, count = 2, 0
    while size + len(parts[count % len(parts)]) + 1 <= limit:
        out.append(parts[count % len(parts)])
        size += len(out[-1]) + 1
        count += 1
    return "[" + ",".join(out) + "]"


SMALL_STEPS = {"title": "t", "steps": [{"title": "s", "description": "x" * 100}]}
PADDED = {"title": "t", "steps": [{"title": "s"}], "pad": [0] * 10_000}
FOUR_THOUSAND = {"title": "t", **{f"k{i}": 0 for i in range(4000)}}


def request_of(case: str) -> tuple[dict, dict[str, str]]:
    """(the request body, extra server settings) a case sends."""
    if case == "removals-4000":
        return {"message": ("remove " * 1143)[:8000], "mode": "modify", "scenario": FOUR_THOUSAND}, {}
    if case == "patch-doubling":
        return {"message": "repeat the steps", "mode": "modify", "scenario": SMALL_STEPS}, {}
    if case == "patch-churn-64k":
        return {"message": "tidy it", "mode": "modify", "scenario": PADDED}, {"MAX_OUTPUT_TOKENS": "16384"}
    mode = "create" if case in ("block-50mb", "backticks-16k") else "chat"
    return {"message": "create a scenario about a flood", "mode": mode}, {}


def body_of(case: str):  # type: ignore[no-untyped-def]
    """(extra head lines, an iterator of body pieces)."""
    if case.startswith("line-"):
        size = int(case[5:-2]) * MB
        return b"", (b"data: " + b"x" * (64 * 1024) for _ in range(size // (64 * 1024)))
    if case == "data-50mb":
        return b"", (b"data: " + b"y" * 1000 + b"\n" for _ in range(50 * MB // 1007))
    if case == "gzip-bomb":
        payload = _delta("z" * 1000) * 1  # one valid delta first, then 400 MB of the same byte
        bomb = gzip.compress(payload + b"a" * (400 * MB), compresslevel=9)
        return b"content-encoding: gzip\r\n", (bomb[i:i + 65536] for i in range(0, len(bomb), 65536))
    if case == "deltas-690k":
        return b"", (_delta("word ") for _ in range(690_000))
    if case == "block-50mb":
        opening = (_delta('Here it is.\n```scenario\n{"title": "Big", "pad": "'),)
        filler = (_delta("p" * 16384) for _ in range(50 * MB // 16384))
        return b"", (piece for part in (opening, filler) for piece in part)
    if case == "removals-4000":
        return b"", _answer("Removed nothing.\n```patch\n[]\n```\n", 64)
    if case == "patch-doubling":
        block = _ops([{"op": "copy", "from": "/steps", "path": "/steps/-"}], 1000)
        return b"", _answer("Repeated.\n```patch\n" + block + "\n```\n", 64)
    if case == "patch-churn-64k":
        block = _ops([{"op": "copy", "from": "/pad", "path": "/x"}, {"op": "remove", "path": "/x"}], 64 * 1024 - 64)
        return b"", _answer("Tidied.\n```patch\n" + block + "\n```\n", 64)
    if case == "backticks-16k":
        return b"", _answer("Here:\n" + "`" * 16_000, 8)
    raise SystemExit(f"unknown case {case}")


class RawUpstream:
    """Answers every request on 127.0.0.1 with the case's bytes, in HTTP chunks."""

    def __init__(self, case: str) -> None:
        self.case = case
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self.loop.run_forever()
        server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            extra, pieces = body_of(self.case)
            writer.write(HEAD % extra)
            for piece in pieces:
                writer.write(_chunk(piece))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def __enter__(self) -> "RawUpstream":
        self.thread.start()
        time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def _proc(pid: int) -> tuple[float, int, int]:
    """(CPU seconds, VmRSS KiB, VmHWM KiB) of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)
    return cpu, int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])


def measure(case: str) -> dict:
    with RawUpstream(case) as upstream:
        body, settings = request_of(case)
        env = {"OPENAI_BASE_URL": f"http://127.0.0.1:{upstream.port}/v1", "OPENAI_API_KEY": "sk-bench", "OPENAI_MODEL": "bench",
               "UPSTREAM_MAX_RETRIES": "0", "LOG_LEVEL": "warning", **settings}
        with ServerProcess(env) as server:
            httpx.get(server.url + "/api/agent/scenario/stream/health", timeout=10)
            cpu0, rss0, _ = _proc(server.pid)
            started = time.monotonic()
            response = httpx.post(server.url + STREAM_PATH, json=body, timeout=120)
            seconds = time.monotonic() - started
            cpu1, rss1, hwm = _proc(server.pid)
    frames = parse_frames(response.content)
    error = next((d["code"] for k, d in frames if k == "error"), None)
    done = next((d for k, d in frames if k == "done"), {})
    repairs = [d["reason"] for k, d in frames if k == "repair"]
    return {"case": case, "error": error, "finish_reason": done.get("finish_reason"), "seconds": round(seconds, 2),
            "cpu_s": round(cpu1 - cpu0, 2), "rss_growth_mb": round((rss1 - rss0) / 1024, 1), "peak_growth_mb": round((hwm - rss0) / 1024, 1),
            "frames": len(frames), "repair": repairs[0] if repairs else None}


CASES = ("line-40mb", "line-80mb", "line-160mb", "data-50mb", "gzip-bomb", "deltas-690k", "block-50mb",
         "removals-4000", "patch-doubling", "patch-churn-64k", "backticks-16k")
# CPU seconds, peak RSS growth in MB (None: no bar).
BARS = {"removals-4000": (0.2, None), "patch-doubling": (0.5, 20), "patch-churn-64k": (0.5, 20), "backticks-16k": (0.2, None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=CASES, action="append")
    args = parser.parse_args()
    print(f"{'case':15} {'ends with':28} {'s':>6} {'app CPU s':>9} {'RSS +MB':>8} {'peak +MB':>9} {'frames':>7}  bar (CPU s, peak MB)")
    for case in args.case or CASES:
        r = measure(case)
        ending = r["error"] or f"done ({r['finish_reason']})"
        bar = ""
        if case in BARS:
            cpu_bar, mb_bar = BARS[case]
            ok = r["cpu_s"] < cpu_bar and (mb_bar is None or r["peak_growth_mb"] < mb_bar)
            bar = f"{cpu_bar}, {mb_bar if mb_bar is not None else '-'}: {'met' if ok else 'NOT MET'}"
        print(f"{r['case']:15} {ending:28} {r['seconds']:>6} {r['cpu_s']:>9} {r['rss_growth_mb']:>8} {r['peak_growth_mb']:>9} {r['frames']:>7}  {bar}")
        if r["repair"]:
            print(f"{'':15} repair: {r['repair']}")


if __name__ == "__main__":
    main()
