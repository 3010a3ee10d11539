#!/usr/bin/env python3
"""Instructions the server executes per token: a CPU figure that machine noise cannot move.

    python3 bench/icount.py [--app-dir DIR] [-c 2] [--short 100] [--long 400]

CPU seconds from /proc vary by ±40% between runs on a shared VM, which hides a 5% change.
This runs the server under valgrind's cachegrind (instruction counting only, about 40x
slower), twice: C streams of `--short` tokens, then C streams of `--long` tokens, each
after one warm-up stream. Start-up and per-request work are the same in both runs, so

    instructions per token = (I(long) - I(short)) / (C * (long - short))

is the token path alone: our code, httpx, Starlette, uvicorn and the event loop in user
space. Kernel time (the read and write syscalls) is not counted. Tokens are 10 ms apart and
C is small, so even under valgrind each read carries one token, as in the real benchmark.
Needs `valgrind` (apt-get install valgrind). Everything stays on 127.0.0.1, bounded in time.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import run as bench  # noqa: E402


def count(a: argparse.Namespace, tokens: int, workdir: str) -> int:
    """Instructions the server ran for one warm-up stream plus C streams of `tokens` tokens."""
    up_port, app_port = bench.free_port(), bench.free_port()
    ready = os.path.join(workdir, "up-%d.ready" % up_port)
    up = subprocess.Popen([sys.executable, os.path.join(HERE, "upstream.py"), "--port", str(up_port),
                           "--tokens", str(tokens), "--interval-ms", str(a.interval_ms), "--ready-file", ready],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    env = dict(os.environ, OPENAI_BASE_URL="http://127.0.0.1:%d/v1" % up_port, OPENAI_API_KEY="bench",
               OPENAI_MODEL="bench-model", LOG_LEVEL="warning", RATE_LIMIT_PER_MINUTE="0")
    log = os.path.join(workdir, "valgrind-%d.log" % tokens)
    app = subprocess.Popen(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=" + os.path.join(workdir, "cg-%d.out" % tokens),
                            "--log-file=" + log, sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1",
                            "--port", str(app_port), "--log-level", "warning"] + a.server_args.split(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=a.app_dir, env=env)
    try:
        deadline = time.time() + 180
        while True:
            try:
                bench.http_json("GET", "http://127.0.0.1:%d%s" % (app_port, bench.HEALTH_PATH), timeout=5)
                break
            except Exception:  # noqa: BLE001
                if time.time() > deadline or app.poll() is not None:
                    raise RuntimeError("server under valgrind did not start; see " + log)
                time.sleep(0.5)
        url = "http://127.0.0.1:%d/api/agent/scenario/stream" % app_port
        for conc in (1, a.concurrency):
            subprocess.run([sys.executable, os.path.join(HERE, "load.py"), "--url", url, "-c", str(conc),
                            "--tokens", str(tokens), "--interval-ms", str(a.interval_ms), "--transport", "raw",
                            "--timeout", "300"], check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    finally:
        app.send_signal(signal.SIGINT)
        app.wait(timeout=120)
        up.terminate()
        up.wait(timeout=10)
    with open(log) as f:
        match = re.search(r"I\s+refs:\s+([\d,]+)", f.read())
    if not match:
        raise RuntimeError("no instruction count in " + log)
    return int(match.group(1).replace(",", ""))


def print_functions(short_file: str, long_file: str, tokens: int, top: int) -> None:
    """The C functions that the extra tokens ran, per token (cg_diff of the two runs)."""
    diff = short_file + ".diff"
    subprocess.run(["cg_diff", short_file, long_file], check=True, stdout=open(diff, "w"))
    out = subprocess.run(["cg_annotate", "--auto=no", "--threshold=0.1", diff], check=True,
                         capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S.*)", line)
        if m:
            rows.append((int(m.group(1).replace(",", "")), m.group(2)))
    for count_, name in rows[1:top + 1]:
        print("%8.0f  %s" % (count_ / tokens, name[:110]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--app-dir", default=ROOT)
    ap.add_argument("-c", "--concurrency", type=int, default=2)
    ap.add_argument("--short", type=int, default=100)
    ap.add_argument("--long", type=int, default=400)
    ap.add_argument("--interval-ms", type=float, default=10.0)
    ap.add_argument("--server-args", default="", help="extra uvicorn args, e.g. '--loop asyncio --http h11'")
    ap.add_argument("--functions", type=int, default=0, help="also print the top N C functions per token")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        short, long = count(a, a.short, workdir), count(a, a.long, workdir)
        tokens = (a.concurrency + 1) * (a.long - a.short)
        print("instructions per token: %.0f  (short %d, long %d, %d extra tokens; %s)"
              % ((long - short) / tokens, short, long, tokens, a.app_dir))
        if a.functions:
            print_functions(os.path.join(workdir, "cg-%d.out" % a.short), os.path.join(workdir, "cg-%d.out" % a.long),
                            tokens, a.functions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
