#!/usr/bin/env python3
"""The streaming lab's timelines, measured: each mode of `?lab=` beside the real stream.

    python3 bench/lab_timeline.py                 # offline model at its default pace (25 ms a token)
    python3 bench/lab_timeline.py --delay-ms 10 --repeats 5 --json

Starts the app (`python -m uvicorn app:app`) on 127.0.0.1 with the offline model, then sends
the same question (`create`: prose and a scenario, about 415 tokens) once per mode and repeat,
one request at a time, over a raw asyncio connection, timestamping every socket read; h11
writes the request and reads the response (its head, and its body de-chunked). Per mode it
prints the median over the repeats of

    first text    ms from writing the request to the read that completed the first chat or
                  scenario_delta frame with text (after de-chunking and, for gzip, gunzipping)
    reads         socket reads that carried body bytes (read with a 1 MiB buffer)
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

import h11

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


def request_bytes(query: str, payload: bytes) -> tuple[h11.Connection, bytes]:
    """The client's side of one exchange (h11), and the request's bytes."""
    http = h11.Connection(h11.CLIENT)
    head = h11.Request(method="POST", target=f"{STREAM_PATH}{query}", headers=[
        ("Host", "127.0.0.1"), ("Content-Type", "application/json"), ("Content-Length", str(len(payload))), ("Connection", "close")])
    return http, http.send(head) + http.send(h11.Data(data=payload)) + http.send(h11.EndOfMessage())


def read_response(http: h11.Connection, raw: list[tuple[float, bytes]]) -> tuple[dict[str, str], list[tuple[float, bytes]]]:
    """The response as h11 reads it, one socket read at a time: its headers, and per read the
    body bytes that read completed (chunk framing removed; still compressed, if it was)."""
    headers: dict[str, str] | None = None
    reads: list[tuple[float, bytes]] = []
    for at, data in [*raw, (raw[-1][0], b"")]:  # b"": the server closed the connection
        http.receive_data(data)
        body = []
        while (event := http.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
            if isinstance(event, h11.Response):
                headers = {name.decode().lower(): value.decode() for name, value in event.headers}
            elif isinstance(event, h11.Data):
                body.append(bytes(event.data))
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        if body:
            reads.append((at, b"".join(body)))
    if headers is None:
        raise RuntimeError("no response head")
    return headers, reads


async def one_request(port: int, row: str, timeout: float) -> dict[str, Any]:
    query = "" if row == "real" else f"?lab={row}"
    http, request = request_bytes(query, json.dumps(QUESTION).encode())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    raw: list[tuple[float, bytes]] = []
    try:
        writer.write(request)
        t0 = time.monotonic()
        async with asyncio.timeout(timeout):
            while data := await reader.read(1 << 20):
                raw.append(((time.monotonic() - t0) * 1000, data))
    finally:
        writer.close()

    headers, reads = read_response(http, raw)
    received = b"".join(data for _, data in raw)
    wire_bytes = len(received) - (received.index(b"\r\n\r\n") + 4)  # all but the head: the body with its framing
    gunzip = zlib.decompressobj(wbits=31) if headers.get("content-encoding") == "gzip" else None
    text, first_text, frames = b"", None, 0
    previous, largest_gap = 0.0, 0.0
    for at, body in reads:
        largest_gap = max(largest_gap, at - previous)
        previous = at
        if gunzip is not None:
            body = gunzip.decompress(body)
        text += body
        while b"\n\n" in text:
            block, text = text.split(b"\n\n", 1)
            frames += 1
            # A frame of the real stream also has `id:` (and, first, `retry:`) lines before `event:`.
            fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line and not line.startswith(b":"))
            if first_text is None and fields.get(b"event") in (b"chat", b"scenario_delta"):
                if json.loads(fields[b"data"]).get("content"):
                    first_text = at
    return {
        "row": row,
        "first_text_ms": first_text,
        "reads": len(reads),
        "largest_gap_ms": largest_gap,
        "total_ms": raw[-1][0],
        "wire_bytes": wire_bytes,
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
