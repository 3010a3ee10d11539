#!/usr/bin/env python3
"""Profile the app under the benchmark's load (helper for docs/bench-notes.md).

CPU (py-spy, ``pip install py-spy``)::

    python3 bench/profile_app.py cpu -c 50 --seconds 8 [--server-args '--loop asyncio --http h11']

starts the fake upstream and the app like bench/run.py, runs C long streams,
samples the uvicorn process with ``py-spy record --format raw`` and prints the
top functions by self and inclusive time, plus server CPU µs per token.

Memory (tracemalloc inside the app process)::

    python3 bench/profile_app.py mem -n 200

runs the app under tracemalloc, snapshots it idle and with N slow streams held
open, and prints the biggest allocation sites of the difference (per stream).

Per-request CPU (request path, before the first token)::

    python3 bench/profile_app.py cpu --tokens 1 -c 1 --requests 300

Everything stays on 127.0.0.1 and is bounded in time.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as bench  # noqa: E402

MEM_WRAPPER = r'''
import os, signal, sys, tracemalloc, pickle
tracemalloc.start(int(os.environ.get("BENCH_TRACE_DEPTH", "12")))
sys.path.insert(0, os.getcwd())
def dump(signum, frame):
    import gc, collections, json
    gc.collect()
    counts = collections.Counter()
    sizes = collections.Counter()
    for o in gc.get_objects():
        t = type(o)
        k = "%s.%s" % (getattr(t, "__module__", "?"), getattr(t, "__qualname__", t.__name__))
        counts[k] += 1
        try:
            sizes[k] += sys.getsizeof(o)
        except Exception:
            pass
    with open(os.environ["BENCH_SNAP"] + ".types.%d" % dump.n, "w") as f:
        json.dump({"counts": counts, "sizes": sizes}, f)
    snap = tracemalloc.take_snapshot()
    path = os.environ["BENCH_SNAP"] + ".%d" % dump.n
    dump.n += 1
    snap.dump(path + ".tmp")
    os.replace(path + ".tmp", path)
dump.n = 0
signal.signal(signal.SIGUSR1, dump)
import uvicorn
sys.argv = ["uvicorn"] + sys.argv[1:]
uvicorn.main()
'''


class Args:
    pass


def make_servers(o, run_dir, wrapper_env=None):
    a = Args()
    a.tokens = o.tokens
    a.interval_ms = o.interval_ms
    a.upstream_uvloop = False
    a.app_dir = bench.ROOT
    srv = bench.Servers(a, run_dir, o.server_args)
    return srv


def start_app(srv, o, mem_snap=None):
    if mem_snap is None:
        srv.start_app()
        return
    # same as Servers.start_app, but under the tracemalloc wrapper
    orig = sys.executable
    wrapper = os.path.join(srv.run_dir, "tracemalloc_uvicorn.py")
    with open(wrapper, "w") as f:
        f.write(MEM_WRAPPER)
    os.environ["BENCH_SNAP"] = mem_snap
    real_popen = subprocess.Popen

    def popen(cmd, *a, **k):
        if cmd[:3] == [orig, "-m", "uvicorn"]:
            cmd = [orig, wrapper] + cmd[3:]
        return real_popen(cmd, *a, **k)

    subprocess.Popen = popen
    try:
        srv.start_app()
    finally:
        subprocess.Popen = real_popen


def load_cmd(o, url, conc, tokens, hold=0.0, out="/dev/null"):
    cmd = [sys.executable, os.path.join(HERE, "load.py"), "--url", url, "-c", str(conc),
           "--tokens", str(tokens), "--interval-ms", str(o.interval_ms), "--transport", "raw",
           "--out", out]
    if hold:
        cmd += ["--hold-seconds", str(hold), "--timeout", str(hold + 30)]
    return cmd


CATEGORY_NATIVE = (
    (("write", "writev", "send", "sendmsg"), "kernel: socket write"),
    (("read", "recv", "recvmsg"), "kernel: socket read"),
    (("epoll_wait", "epoll_pwait", "epoll_ctl", "io_uring_enter"), "event loop: poll"),
    (("getpid",), "getpid() in asyncio get_running_loop (Python 3.11)"),
)
LOOP_FRAMES = ("Runner.run ", "run_forever ", "_run_once ", "BaseEventLoop.run_forever",
               "BaseEventLoop._run_once", "asyncio_run ", "run_until_complete")


def categorize(frames: list[str]) -> str:
    """One category per sample: libc syscall if any (native mode), else the innermost
    non-stdlib Python frame's package."""
    for fr in reversed(frames):
        name, _, loc = fr.partition(" (")
        if "libc" in loc:
            for names, cat in CATEGORY_NATIVE:
                if name in names:
                    return cat
    for fr in reversed(frames):
        name, _, loc = fr.partition(" (")
        loc = loc.rstrip(")")
        if fr.startswith(LOOP_FRAMES):
            return "event loop / native (not attributed)"
        stdlib = (loc.startswith(("stdlib:", "asyncio/", "concurrent/", "<frozen"))
                  or ("/" not in loc and loc.endswith(".py")))
        if (stdlib and not loc.startswith(("json/", "stdlib:json/"))) or not loc.endswith(".py") \
                or "0x" in name:
            continue  # stdlib helper or native frame: attribute to the caller
        if any(x in loc for x in ("httpx/", "httpcore/", "h11/", "anyio/", "sniffio/", "openai/")):
            return "upstream HTTP client (openai/httpx/httpcore/h11/anyio)"
        if "uvicorn/" in loc:
            return "uvicorn protocol (parse/send incl. transport.write)"
        if "starlette/" in loc:
            return "starlette (routing, middleware send wrappers)"
        if "json/" in loc or "_json" in loc:
            return "json encode/decode"
        if "web/" in loc or "agent/" in loc or loc.startswith("app.py"):
            return "app code (agent/, web/, app.py)"
        return "other: " + loc
    return "event loop / native (not attributed)"


def aggregate(raw_path: str, top: int) -> str:
    """py-spy --format raw: 'frame;frame;frame count' per line (root first)."""
    self_c = collections.Counter()
    incl_c = collections.Counter()
    cat_c = collections.Counter()
    total = 0
    with open(raw_path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, n = line.rpartition(" ")
            try:
                n = int(n)
            except ValueError:
                continue
            frames = stack.split(";")
            total += n
            # py-spy frames look like "func (path/file.py:123)"; drop line numbers for grouping
            norm = []
            for fr in frames:
                name, _, loc = fr.partition(" (")
                loc = loc.rstrip(")")
                fname = loc.rsplit(":", 1)[0]
                fname = fname.replace(bench.ROOT + "/", "")
                for marker in ("site-packages/", "lib/python3."):
                    if marker in fname:
                        fname = fname.split(marker, 1)[1]
                        if marker.startswith("lib"):
                            fname = "stdlib:" + fname.split("/", 1)[-1]
                norm.append("%s (%s)" % (name, fname))
            self_c[norm[-1]] += n
            cat_c[categorize(norm)] += n
            for fr in set(norm):
                incl_c[fr] += n
    out = ["samples: %d" % total, "", "by category (innermost matching frame):"]
    for cat, n in cat_c.most_common():
        out.append("  %5.1f%%  %s" % (100.0 * n / total, cat))
    out += ["", "top self time:"]
    for fr, n in self_c.most_common(top):
        out.append("  %5.1f%%  %s" % (100.0 * n / total, fr))
    out += ["", "top inclusive time:"]
    for fr, n in incl_c.most_common(top):
        out.append("  %5.1f%%  %s" % (100.0 * n / total, fr))
    return "\n".join(out)


def cpu(o) -> int:
    if not shutil.which("py-spy"):
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 2
    run_dir = os.path.join(bench.RESULTS, "profile-%s" % time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(run_dir, exist_ok=True)
    srv = make_servers(o, run_dir)
    try:
        srv.start_upstream()
        start_app(srv, o)
        bench.warm_up(srv)
        srv.up_config(o.tokens, o.interval_ms)
        pid = srv.app.pid
        url = srv.app_url + bench.APP_PATH
        raw = os.path.join(run_dir, "pyspy.txt")
        if o.requests:
            # many short requests back to back: request-path cost
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--rate", str(o.rate),
                                    "--format", "raw", "--output", raw, "--nonblocking",
                                    "--duration", str(int(o.seconds) + 30)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
            cpu0 = bench.tree_cpu_s(pid)
            t0 = time.time()
            n = 0
            while n < o.requests and time.time() - t0 < o.seconds + 20:
                subprocess.run(load_cmd(o, url, o.concurrency, o.tokens), check=True,
                               stdout=subprocess.DEVNULL)
                n += o.concurrency
            cpu1 = bench.tree_cpu_s(pid)
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
            print("requests: %d, server CPU %.3f s -> %.0f µs per request (%d tokens each)" % (
                n, cpu1 - cpu0, (cpu1 - cpu0) / n * 1e6, o.tokens))
        else:
            tokens = int(o.seconds * 1000 / o.interval_ms) + 100
            srv.up_config(tokens, o.interval_ms)
            lp = subprocess.Popen(load_cmd(o, url, o.concurrency, tokens,
                                           out=os.path.join(run_dir, "load.json")),
                                  stdout=subprocess.PIPE)
            time.sleep(1.0)  # past the connection ramp
            cpu0 = bench.tree_cpu_s(pid)
            up0 = srv.up_stats()["tokens"]
            t0 = time.time()
            subprocess.run(["py-spy", "record", "--pid", str(pid), "--rate", str(o.rate),
                            "--format", "raw", "--output", raw,
                            "--duration", str(int(o.seconds))]
                           + (["--native"] if o.native else ["--nonblocking"]),
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            cpu1 = bench.tree_cpu_s(pid)
            up1 = srv.up_stats()["tokens"]
            wall = time.time() - t0
            out, _ = lp.communicate(timeout=o.seconds * 3 + 60)
            s = json.loads(out)
            toks = up1 - up0
            print("C=%d: %d tokens in %.1f s (%.0f tok/s); server CPU %.2f s (%.0f%% of a core) "
                  "-> %.1f µs per token (py-spy sampling overhead included)" % (
                      o.concurrency, toks, wall, toks / wall, cpu1 - cpu0,
                      100 * (cpu1 - cpu0) / wall, (cpu1 - cpu0) / max(1, toks) * 1e6))
            print("client: added p50 %.3f p99 %.3f ms, streams ok %d/%d" % (
                s["added_ms"]["p50"], s["added_ms"]["p99"], s["streams_ok"], s["streams"]))
        print(aggregate(raw, o.top))
        print("\nraw py-spy stacks: %s" % os.path.relpath(raw, bench.ROOT))
    finally:
        srv.stop()
    return 0


def mem(o) -> int:
    import tracemalloc
    run_dir = os.path.join(bench.RESULTS, "profile-mem-%s" % time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(run_dir, exist_ok=True)
    snap = os.path.join(run_dir, "snap")
    srv = make_servers(o, run_dir)
    try:
        srv.start_upstream()
        start_app(srv, o, mem_snap=snap)
        bench.warm_up(srv)
        pid = srv.app.pid
        srv.up_config(100000, 500.0)
        time.sleep(0.5)

        def take(i):
            os.kill(pid, signal.SIGUSR1)
            t_end = time.time() + 60
            while not os.path.exists("%s.%d" % (snap, i)):
                if time.time() > t_end:
                    raise RuntimeError("no snapshot")
                time.sleep(0.1)
            return tracemalloc.Snapshot.load("%s.%d" % (snap, i))

        s0 = take(0)
        rss0b = bench.tree_status_kb(pid, "VmRSS")
        hold = 40.0
        lp = subprocess.Popen(load_cmd(o, srv.app_url + bench.APP_PATH, o.streams, 0, hold=hold),
                              stdout=subprocess.DEVNULL)
        t_end = time.time() + hold - 10
        while time.time() < t_end and srv.up_stats()["open_streams"] < o.streams:
            time.sleep(0.1)
        time.sleep(1.0)
        opened = srv.up_stats()["open_streams"]
        rss1 = bench.tree_status_kb(pid, "VmRSS")
        s1 = take(1)
        lp.wait(hold + 60)
        n = max(1, opened)
        print("streams open: %d; RSS %.1f MB -> %.1f MB (%.1f KB/stream; tracemalloc's own "
              "overhead inflates this, see the Python-heap numbers below)" % (
                  opened, rss0b / 1024, rss1 / 1024, (rss1 - rss0b) / n))
        diff = s1.compare_to(s0, "filename")
        tot = sum(d.size_diff for d in diff)
        print("Python heap growth: %.1f KB total, %.1f KB per stream\n" % (tot / 1024,
                                                                        tot / 1024 / n))
        print("by file (KB per stream, blocks per stream):")
        for d in diff[:o.top]:
            if d.size_diff <= 0:
                continue
            print("  %7.2f KB  %6.1f  %s" % (d.size_diff / 1024 / n, d.count_diff / n,
                                            _short(d.traceback[0].filename)))
        print("\nby line:")
        for d in s1.compare_to(s0, "lineno")[:o.top]:
            if d.size_diff <= 0:
                continue
            fr = d.traceback[0]
            print("  %7.2f KB  %6.1f  %s:%d" % (d.size_diff / 1024 / n, d.count_diff / n,
                                               _short(fr.filename), fr.lineno))
        t0 = json.load(open(snap + ".types.0"))
        t1 = json.load(open(snap + ".types.1"))
        print("\ngc-tracked objects per open stream (count, shallow bytes) by type:")
        dc = {k: t1["counts"].get(k, 0) - t0["counts"].get(k, 0) for k in t1["counts"]}
        ds = {k: t1["sizes"].get(k, 0) - t0["sizes"].get(k, 0) for k in t1["sizes"]}
        for k in sorted(ds, key=lambda k: -ds[k])[:o.top]:
            print("  %6.1f  %7.0f B  %s" % (dc.get(k, 0) / n, ds[k] / n, k))
        print("\nby allocating call site in app code (first frame in app.py/agent/web):")
        c = collections.Counter()
        cnt = collections.Counter()
        for d in s1.compare_to(s0, "traceback"):
            if d.size_diff <= 0:
                continue
            key = None
            for fr in d.traceback:  # most recent first
                fn = fr.filename
                if fn.startswith(bench.ROOT) and "/bench/" not in fn:
                    key = "%s:%d" % (_short(fn), fr.lineno)
                    break
            c[key or "(no app frame)"] += d.size_diff
            cnt[key or "(no app frame)"] += d.count_diff
        for k, v in c.most_common(o.top):
            print("  %7.2f KB  %6.1f  %s" % (v / 1024 / n, cnt[k] / n, k))
    finally:
        srv.stop()
    return 0


def _short(fn: str) -> str:
    fn = fn.replace(bench.ROOT + "/", "")
    for marker in ("site-packages/", "lib/python3."):
        if marker in fn:
            fn = fn.split(marker, 1)[1]
    return fn


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    pc = sub.add_parser("cpu")
    pc.add_argument("-c", "--concurrency", type=int, default=50)
    pc.add_argument("--seconds", type=float, default=8.0)
    pc.add_argument("--rate", type=int, default=250)
    pc.add_argument("--requests", type=int, default=0,
                    help="instead of long streams, run this many short requests")
    pc.add_argument("--tokens", type=int, default=200)
    pc.add_argument("--interval-ms", type=float, default=10.0)
    pc.add_argument("--server-args", default="")
    pc.add_argument("--top", type=int, default=30)
    pc.add_argument("--native", action="store_true", help="py-spy --native (C frames too)")
    pm = sub.add_parser("mem")
    pm.add_argument("-n", "--streams", type=int, default=200)
    pm.add_argument("--tokens", type=int, default=200)
    pm.add_argument("--interval-ms", type=float, default=10.0)
    pm.add_argument("--server-args", default="")
    pm.add_argument("--top", type=int, default=25)
    o = ap.parse_args(argv)
    return cpu(o) if o.cmd == "cpu" else mem(o)


if __name__ == "__main__":
    sys.exit(main())
