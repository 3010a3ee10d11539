#!/usr/bin/env python3
"""What a hostile upstream costs the app: CPU seconds and RSS growth per case.

    python3 bench/hostile_upstream.py            # every case, one request each
    python3 bench/hostile_upstream.py --case line-160mb

The app runs as the Procfile's process (tests/support/harness.py ServerProcess) against a raw
upstream on 127.0.0.1 that answers each request with exact bytes, generated as they are sent:

    line-40mb / line-80mb / line-160mb   one SSE line of that size with no line end
    data-50mb                            50 MB of `data:` lines with no blank line
    gzip-bomb                            a ~400 KB gzip body that inflates to 400 MB
    deltas-690k                          690,000 one-word deltas (an upstream that ignores MAX_OUTPUT_TOKENS)
    block-50mb                           a ```scenario block of 50 MB, in 16 KiB deltas

For each: the app's CPU (utime + stime from /proc) and RSS (VmRSS before, VmHWM after) around
one streamed request, the frames' error code, and the seconds until `done`. Bounded: one request
per case, 120 s each, loopback only.
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
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n%s\r\n"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _delta(text: str) -> bytes:
    return b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}).encode() + b"\n\n"


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
        env = {"OPENAI_BASE_URL": f"http://127.0.0.1:{upstream.port}/v1", "OPENAI_API_KEY": "sk-bench", "OPENAI_MODEL": "bench",
               "UPSTREAM_MAX_RETRIES": "0", "LOG_LEVEL": "warning"}
        with ServerProcess(env) as server:
            httpx.get(server.url + "/api/agent/scenario/stream/health", timeout=10)
            cpu0, rss0, _ = _proc(server.pid)
            started = time.monotonic()
            mode = "create" if case == "block-50mb" else "chat"
            response = httpx.post(server.url + STREAM_PATH, json={"message": "create a scenario about a flood", "mode": mode}, timeout=120)
            seconds = time.monotonic() - started
            cpu1, rss1, hwm = _proc(server.pid)
    frames = parse_frames(response.content)
    error = next((d["code"] for k, d in frames if k == "error"), None)
    done = next((d for k, d in frames if k == "done"), {})
    return {"case": case, "error": error, "finish_reason": done.get("finish_reason"), "seconds": round(seconds, 2),
            "cpu_s": round(cpu1 - cpu0, 2), "rss_growth_mb": round((rss1 - rss0) / 1024, 1), "peak_growth_mb": round((hwm - rss0) / 1024, 1),
            "frames": len(frames)}


CASES = ("line-40mb", "line-80mb", "line-160mb", "data-50mb", "gzip-bomb", "deltas-690k", "block-50mb")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=CASES, action="append")
    args = parser.parse_args()
    print(f"{'case':12} {'ends with':28} {'s':>6} {'app CPU s':>9} {'RSS +MB':>8} {'peak +MB':>9} {'frames':>7}")
    for case in args.case or CASES:
        r = measure(case)
        ending = r["error"] or f"done ({r['finish_reason']})"
        print(f"{r['case']:12} {ending:28} {r['seconds']:>6} {r['cpu_s']:>9} {r['rss_growth_mb']:>8} {r['peak_growth_mb']:>9} {r['frames']:>7}")


if __name__ == "__main__":
    main()
