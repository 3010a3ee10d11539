#!/usr/bin/env python3
"""What serving the offline model over HTTP costs the demo per token.

    python3 bench/offline_http.py                  # C=50, 10 ms between tokens, 2 rounds per mode
    python3 bench/offline_http.py -c 50 --rounds 3 --delay-ms 10

Two ways to run the same default demo (no key), each in its own app process (uvicorn with
uvloop and httptools, as the Procfile runs it):

    http    the app as it runs with no key: the offline model's Chat Completions endpoint
            (upstream/offline/server.py) in the same process and event loop, read by
            `OpenAICompatible` through `upstream/transport.py`, `upstream/sse.py` and
            `upstream/decode.py`
    inproc  the same app with the model swapped, once its lifespan has started, for the
            in-process generator of strings it used before (`upstream.offline.OfflineModel`):
            no transport, no SSE decoder, no second HTTP server (skipped if that class is gone)

A lean asyncio client (its own process) keeps C explain streams of the hospital sample open, a
new one as soon as one ends, and counts `chat` frames; the app's CPU (utime + stime from /proc)
over each round, divided by the chat frames delivered in it, is the figure. Modes alternate
round by round so that a change in the shared machine's load falls on both. Loopback only,
bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from statistics import median

import calibrate  # bench/calibrate.py, beside this file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PATH = "/api/agent/scenario/stream"
HEALTH = "/api/agent/scenario/stream/health"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the app process ------------------------------------------------------------------------------


def serve(mode: str, port: int) -> None:
    """Run the app with the offline model `mode` ("inproc" or "http") on 127.0.0.1:port."""
    sys.path.insert(0, ROOT)
    import uvicorn

    from agent.config import Settings
    from app import create_app

    settings = Settings.from_env()
    gate = create_app(settings)
    if mode == "inproc":
        from upstream.offline import OfflineModel

        starlette = gate.app
        service = starlette.state.service
        original = starlette.router.lifespan_context

        @asynccontextmanager
        async def lifespan(app):  # type: ignore[no-untyped-def]
            async with original(app) as state:
                service.model = OfflineModel(settings.offline_token_delay_ms)
                yield state

        starlette.router.lifespan_context = lifespan
    uvicorn.run(gate, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning", lifespan="on")


def has_inproc() -> bool:
    sys.path.insert(0, ROOT)
    try:
        from upstream.offline import OfflineModel  # noqa: F401
    except ImportError:
        return False
    return True


class App:
    def __init__(self, mode: str, delay_ms: float) -> None:
        self.mode = mode
        self.port = free_port()
        env = {**os.environ, "OFFLINE_TOKEN_DELAY_MS": str(delay_ms), "RATE_LIMIT_PER_MINUTE": "0", "LOG_LEVEL": "warning",
               "MAX_CONCURRENT_STREAMS": "1000"}
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            env.pop(name, None)
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", mode, "--port", str(self.port)],
                                     cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"GET %s HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n" % HEALTH.encode())
                    if sock.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the {mode} app did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# -- the load client ------------------------------------------------------------------------------


async def one_stream(port: int, request: bytes) -> int:
    """One whole answer; the number of chat frames in it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        body = await reader.read()  # connection: close, so the answer ends with EOF
    finally:
        writer.close()
    if not body.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(body[:300].decode(errors="replace"))
    return body.count(b"event: chat\n")


async def round_(port: int, concurrency: int, request: bytes, seconds: float) -> tuple[int, int]:
    """`concurrency` streams kept open for `seconds` (each worker starts a new stream when its
    last ends; the round ends when the last stream started in time has ended); (tokens, streams)."""
    tokens = streams = 0
    end = time.monotonic() + seconds

    async def worker(start_after: float) -> None:
        nonlocal tokens, streams
        await asyncio.sleep(start_after)
        while time.monotonic() < end:
            got = await one_stream(port, request)  # not `tokens += await ...`: that reads `tokens` first
            tokens += got
            streams += 1

    await asyncio.gather(*(worker(i * 0.01) for i in range(concurrency)))
    return tokens, streams


def client(port: int, concurrency: int, seconds: float) -> None:
    """Runs in its own process: one round, then one JSON line on stdout."""
    with open(os.path.join(ROOT, "static", "samples", "hospital-ransomware.json")) as f:
        scenario = json.load(f)
    body = json.dumps({"message": "Explain this scenario", "mode": "explain", "scenario": scenario}).encode()
    request = (b"POST %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
               b"connection: close\r\n\r\n%s") % (PATH.encode(), len(body), body)
    tokens, streams = asyncio.run(round_(port, concurrency, request, seconds))
    print(json.dumps({"tokens": tokens, "streams": streams}), flush=True)


def measure(app: App, concurrency: int, seconds: float) -> dict:
    before = cpu_seconds(app.proc.pid)
    wall = time.monotonic()
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--client", str(app.port), "-c", str(concurrency), "--seconds", str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 120, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["cpu_s"] = cpu_seconds(app.proc.pid) - before
    result["wall_s"] = time.monotonic() - wall
    result["cpu_per_1000"] = result["cpu_s"] / result["tokens"] * 1000 if result["tokens"] else None
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--concurrency", type=int, default=50)
    ap.add_argument("--delay-ms", type=float, default=10.0, help="OFFLINE_TOKEN_DELAY_MS (bench/run.py paces its upstream at 10 ms)")
    ap.add_argument("--seconds", type=float, default=8.0, help="streams are started for this long; a round ends with its last stream (an answer is about 7 s at 10 ms)")
    ap.add_argument("--rounds", type=int, default=2, help="measured rounds per mode, alternating")
    ap.add_argument("--modes", help="comma-separated (default inproc,http; http alone once OfflineModel is gone)")
    ap.add_argument("--calibrate", action="store_true",
                    help="after each round, a round of the yardstick (bench/calibrate.py): the http figure is then "
                         "also translated to the machine the C=50 CPU bar was set on, and judged there")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--client", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.serve:
        serve(a.serve, a.port)
        return 0
    if a.client:
        client(a.client, a.concurrency, a.seconds)
        return 0

    modes = a.modes.split(",") if a.modes else ["inproc", "http"] if has_inproc() else ["http"]
    apps = {mode: App(mode, a.delay_ms) for mode in modes}
    results: dict[str, list[dict]] = {mode: [] for mode in modes}
    yardstick: list[float] = []
    try:
        for app in apps.values():
            measure(app, a.concurrency, 2.0)  # warm-up: first requests, imports, pools
        with contextlib.ExitStack() as stack:
            run_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="offline-http-"))
            yardstick_dir = None
            if a.calibrate:
                try:
                    yardstick_dir = stack.enter_context(calibrate.yardstick_tree())
                except RuntimeError as exc:
                    print(f"[offline_http] the yardstick cannot be checked out ({exc}): the bar is judged as it stands",
                          file=sys.stderr, flush=True)
            for r in range(a.rounds):
                for mode in modes:
                    result = measure(apps[mode], a.concurrency, a.seconds)
                    results[mode].append(result)
                    print(f"[offline_http] round {r + 1} {mode:6s} C={a.concurrency}: {result['tokens']} tokens in {result['streams']} streams, "
                          f"app CPU {result['cpu_s']:.2f} s, {result['cpu_per_1000']:.3f} s per 1000 tokens", file=sys.stderr, flush=True)
                if yardstick_dir:
                    yardstick.append(calibrate.c50_cpu(yardstick_dir, ["raw"], run_dir)["raw"])
    finally:
        for app in apps.values():
            app.stop()
    print("| offline model | C | delay | CPU s per 1000 tokens (each round) |")
    print("|---|---|---|---|")
    for mode in modes:
        figures = ", ".join(f"{r['cpu_per_1000']:.3f}" for r in results[mode])
        print(f"| {mode} | {a.concurrency} | {a.delay_ms:g} ms | {figures} |")
    if a.calibrate and results.get("http"):
        figure = here = median(r["cpu_per_1000"] for r in results["http"])
        if yardstick:
            figure = calibrate.translate(here, median(yardstick))
            print(f"\non the bar's machine (bench/calibrate.py): http {here:.3f} here, the yardstick {median(yardstick):.3f} here "
                  f"({', '.join(f'{y:.3f}' for y in yardstick)}) and {calibrate.YARDSTICK_CPU} there: **{figure:.3f}** s per 1000 tokens")
        else:
            print(f"\nhttp {here:.3f} s per 1000 tokens here (no yardstick: judged as it stands)")
        print(f"bar ≤ {calibrate.BAR}: {'pass' if figure <= calibrate.BAR else '**FAIL**'}")
    if "inproc" in results and "http" in results:
        inproc = sorted(r["cpu_per_1000"] for r in results["inproc"])
        http = sorted(r["cpu_per_1000"] for r in results["http"])
        print(f"\nadded by HTTP: {http[0] - inproc[-1]:+.3f} to {http[-1] - inproc[0]:+.3f} s per 1000 tokens "
              f"(medians {http[len(http) // 2]:.3f} vs {inproc[len(inproc) // 2]:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
