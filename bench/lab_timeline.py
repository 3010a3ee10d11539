#!/usr/bin/env python3
"""The streaming lab's timelines, measured: each mode of `?lab=` beside the real stream.

    python3 bench/lab_timeline.py                 # offline model at its default pace (25 ms a token)
    python3 bench/lab_timeline.py --delay-ms 10 --repeats 5 --json

Starts the app (`python -m uvicorn app:app`) on 127.0.0.1 with the offline model, then sends
the same question (`create`: prose and a scenario, about 415 tokens) once per mode and repeat,
one request at a time, over a raw asyncio connection, timestamping every socket read. Per
mode it prints the median over the repeats of

    first text    ms from writing the request to the read that completed the first chat or
                  scenario_delta frame with text (after de-chunking and, for gzip, gunzipping)
    reads         socket reads of the response body (read with a 1 MiB buffer)
    largest gap   the longest time with no body read, from the request to its last read
    total         ms to the last read
    wire bytes    body bytes on the wire (chunk framing included)

Bounded: at most 10 repeats, a 120 s timeout per request, loopback only. The figures are in
docs/streaming-lab.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STREAM_PATH = "/api/agent/scenario/stream"
HEALTH_PATH = "/api/agent/scenario/stream/health"
ROWS = ("real", "blocking", "accumulate", "buffer-4k", "gzip")
QUESTION = {"message": "a fire drill in a school", "mode": "create"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(port: int, delay_ms: float, log: Any) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}  # the offline model, whatever the shell has
    env.update({"OFFLINE_TOKEN_DELAY_MS": str(delay_ms), "RATE_LIMIT_PER_MINUTE": "0", "LOG_LEVEL": "warning", "APP_ACCESS_TOKEN": ""})
    args = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{HEALTH_PATH}", timeout=1) as response:
                if response.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the app did not start")


def dechunk(buffer: bytes) -> tuple[bytes, bytes]:
    """The complete chunks at the start of `buffer` (HTTP/1.1 chunked coding): (body, rest)."""
    out = []
    while True:
        line_end = buffer.find(b"\r\n")
        if line_end < 0:
            break
        size = int(buffer[:line_end].split(b";")[0], 16)
        if len(buffer) < line_end + 2 + size + 2:
            break
        out.append(buffer[line_end + 2 : line_end + 2 + size])
        buffer = buffer[line_end + 2 + size + 2 :]
    return b"".join(out), buffer


async def one_request(port: int, row: str, timeout: float) -> dict[str, Any]:
    query = "" if row == "real" else f"?lab={row}"
    payload = json.dumps(QUESTION).encode()
    head = f"POST {STREAM_PATH}{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    raw: list[tuple[float, bytes]] = []
    try:
        writer.write(head.encode() + payload)
        t0 = time.monotonic()
        async with asyncio.timeout(timeout):
            while data := await reader.read(1 << 20):
                raw.append(((time.monotonic() - t0) * 1000, data))
    finally:
        writer.close()

    headers_raw, in_body, reads = b"", False, []
    for at, data in raw:
        if in_body:
            reads.append((at, data))
            continue
        headers_raw += data
        if b"\r\n\r\n" in headers_raw:
            in_body = True
            headers_raw, _, rest = headers_raw.partition(b"\r\n\r\n")
            if rest:
                reads.append((at, rest))
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in headers_raw.decode("latin-1").split("\r\n")[1:])}
    gunzip = zlib.decompressobj(wbits=31) if headers.get("content-encoding") == "gzip" else None
    chunked, text, first_text, frames = b"", b"", None, 0
    previous, largest_gap = 0.0, 0.0
    for at, data in reads:
        largest_gap = max(largest_gap, at - previous)
        previous = at
        body, chunked = dechunk(chunked + data)
        if gunzip is not None:
            body = gunzip.decompress(body)
        text += body
        while b"\n\n" in text:
            block, text = text.split(b"\n\n", 1)
            frames += 1
            if first_text is None and (block.startswith(b"event: chat\n") or block.startswith(b"event: scenario_delta\n")):
                if json.loads(block.split(b"\ndata: ", 1)[1]).get("content"):
                    first_text = at
    return {
        "row": row,
        "first_text_ms": first_text,
        "reads": len(reads),
        "largest_gap_ms": largest_gap,
        "total_ms": raw[-1][0],
        "wire_bytes": sum(len(d) for _, d in reads),
        "frames": frames,
        "content_encoding": headers.get("content-encoding"),
    }


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(runs[0])
    for key in ("first_text_ms", "reads", "largest_gap_ms", "total_ms", "wire_bytes", "frames"):
        out[key] = statistics.median(r[key] for r in runs)
    out["repeats"] = len(runs)
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| mode | first text | reads | largest gap | total | wire bytes | frames |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['row']}` | {r['first_text_ms']:.0f} ms | {r['reads']:.0f} | {r['largest_gap_ms']:.0f} ms | {r['total_ms']:.0f} ms | {r['wire_bytes']:,.0f} | {r['frames']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delay-ms", type=float, default=25.0, help="OFFLINE_TOKEN_DELAY_MS (default 25, the app's default)")
    parser.add_argument("--repeats", type=int, default=3, help="requests per mode, 1-10 (default 3)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--json", action="store_true", help="print the raw runs as JSON too")
    args = parser.parse_args()
    repeats = max(1, min(10, args.repeats))
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = start_app(port, args.delay_ms, log)
        try:
            runs = {row: [asyncio.run(one_request(port, row, args.timeout)) for _ in range(repeats)] for row in ROWS}
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(f"offline model, OFFLINE_TOKEN_DELAY_MS={args.delay_ms:g}, question {QUESTION}, median of {repeats}")
    print(table([median_row(runs[row]) for row in ROWS]))
    if args.json:
        print(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
