#!/usr/bin/env python3
"""The C=50 CPU bar, carried from the machine it was set on to this one.

    python3 bench/calibrate.py [--rounds 3] [--clients httpx,raw]

The bar (0.08 s of server CPU per 1,000 tokens at C=50) was set on a machine where the tree of
commit 0218c6f, the yardstick, ran at 0.036-0.037 s. Machines differ by more than the bar's
margin: the 2-core VMs this repository is developed on run the same tree at 0.052-0.077 s. So
`bench/run.py` and `bench/offline_http.py` also translate their figure to the bar's machine,
with the yardstick measured here, in the same run, in rounds alternating with the app (a change
in the machine's load then falls on both, and the medians carry little of the ±40% that CPU
seconds vary by on a shared VM):

    on the bar's machine = the median here × 0.0365 / the yardstick's median here

Both figures are printed; the bar is judged on the translated one. The yardstick is checked out
of this repository's history with `git worktree` (a clean clone has it); where that fails (no
git, a shallow clone) the translation is skipped and the bar is judged as it stands. It runs on
bench/run.py's fake upstream at C=50, the way its figure was taken. Alone, this command prints
the yardstick and the app side by side. Loopback only, bounded.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from statistics import median
from typing import Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as bench  # noqa: E402

BAR = bench.T_C50_CPU  # s of server CPU per 1,000 tokens at C=50
YARDSTICK_COMMIT = "0218c6f"
YARDSTICK_CPU = 0.0365  # its C=50 server CPU, s per 1,000 tokens, where the bar was set (0.036-0.037)


def translate(here: float, yardstick_here: float) -> float:
    """A CPU figure measured here, as it would read on the machine the bar was set on."""
    return here * YARDSTICK_CPU / yardstick_here


@contextmanager
def yardstick_tree() -> Iterator[str]:
    """The yardstick's tree, checked out in a temporary directory for the duration. Raises
    RuntimeError with git's reason when it cannot be (no git, a shallow clone)."""
    path = tempfile.mkdtemp(prefix="yardstick-")
    git = ["git", "-C", bench.ROOT, "worktree"]
    try:
        out = subprocess.run(git + ["add", "--detach", "--force", path, YARDSTICK_COMMIT], capture_output=True, text=True)
        failure = (out.stderr.strip().splitlines() or ["git worktree add failed"])[-1] if out.returncode else None
    except OSError as exc:
        failure = f"git: {exc}"
    if failure is not None:
        shutil.rmtree(path, ignore_errors=True)
        raise RuntimeError(failure)
    try:
        yield path
    finally:
        subprocess.run(git + ["remove", "--force", path], capture_output=True)
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run(git + ["prune"], capture_output=True)


def c50_cpu(app_dir: str, clients: list[str], run_dir: str) -> dict[str, float]:
    """Server CPU per 1,000 tokens at C=50 on the fake upstream, app path only: one fresh
    upstream and app, one figure per client."""
    a = bench.options(["--levels", "50", "--clients", ",".join(clients), "--app-only", "--rss-streams", "0",
                       "--reference-dir", "", "--no-readme", "--app-dir", app_dir])
    levels = bench.run_pass(a, run_dir, a.server_args)["levels"]
    return {r["client"]: r["server_cpu_per_1k"] for r in levels if r.get("server_cpu_per_1k")}


def alternate(clients: list[str], rounds: int, run_dir: str, app_dir: str,
              app_figures: list[dict[str, float]] | None = None) -> dict:
    """`rounds` yardstick passes alternating with app passes (after `app_figures`, the app's
    figures already taken in this run, if any); per client, both medians and the translation."""
    app = list(app_figures or [])
    yardstick: list[dict[str, float]] = []
    with yardstick_tree() as tree:
        for i in range(rounds):
            bench.log("=== yardstick %s at C=50, round %d of %d" % (YARDSTICK_COMMIT, i + 1, rounds))
            yardstick.append(c50_cpu(tree, clients, run_dir))
            if len(app) < rounds:
                bench.log("=== this tree at C=50, beside it")
                app.append(c50_cpu(app_dir, clients, run_dir))
    out: dict = {"commit": YARDSTICK_COMMIT, "yardstick_cpu_there": YARDSTICK_CPU, "clients": {}}
    for client in clients:
        here = [f[client] for f in app if client in f]
        ys = [f[client] for f in yardstick if client in f]
        if here and ys:
            out["clients"][client] = {"here": here, "yardstick": ys, "here_median": median(here),
                                      "yardstick_median": median(ys),
                                      "translated": translate(median(here), median(ys))}
    return out


def lines(calibration: dict) -> list[str]:
    """The translation as a markdown table."""
    rows = ["", "**The CPU bar on the machine it was set on** (`bench/calibrate.py`): the yardstick, the "
            "tree of commit %s, ran at %.4f s per 1000 tokens at C=50 there; measured here in rounds "
            "alternating with this tree." % (calibration["commit"], calibration["yardstick_cpu_there"]), "",
            "| client | this tree here (each round) | the yardstick here (each round) | this tree on the bar's machine | bar | result |",
            "|---|---|---|---|---|---|"]
    for client, c in calibration["clients"].items():
        ok = c["translated"] <= BAR
        rows.append("| %s | %.3f (%s) | %.3f (%s) | **%.3f** | ≤ %.2f | %s |" % (
            client, c["here_median"], ", ".join("%.3f" % x for x in c["here"]),
            c["yardstick_median"], ", ".join("%.3f" % x for x in c["yardstick"]),
            c["translated"], BAR, "pass" if ok else "**FAIL**"))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", default="httpx,raw")
    a = ap.parse_args(argv)
    os.makedirs(bench.RESULTS, exist_ok=True)
    run_dir = tempfile.mkdtemp(prefix="calibrate-", dir=bench.RESULTS)
    try:
        calibration = alternate([c.strip() for c in a.clients.split(",") if c.strip()], a.rounds, run_dir, bench.ROOT)
    except RuntimeError as exc:
        bench.log("the yardstick cannot be checked out: %s" % exc)
        return 1
    print("\n".join(lines(calibration)))
    return 0 if all(c["translated"] <= BAR for c in calibration["clients"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
