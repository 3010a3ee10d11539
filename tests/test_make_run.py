"""`make run` with the port taken says which port and how to pick another, before anything
starts (tools/check_port.py, the Makefile's `run:` target)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_make_run_on_a_taken_port_says_so_and_starts_nothing() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        result = subprocess.run(["make", "--no-print-directory", "run", f"PORT={port}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"Port {port} on 127.0.0.1 is taken" in out, out
    assert "make run PORT=" in out, out
    # Said before pip or uvicorn ran: no "started" followed by "address already in use".
    assert "uvicorn" not in out.lower() and "pip install" not in out, out


def test_the_check_passes_a_free_port_and_suggests_a_free_one() -> None:
    script = ROOT / "tools" / "check_port.py"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    ok = subprocess.run([sys.executable, str(script), "127.0.0.1", str(free)], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and ok.stderr == ""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        taken = subprocess.run([sys.executable, str(script), "127.0.0.1", str(port)], capture_output=True, text=True, timeout=30)
    assert taken.returncode == 1
    suggested = int(taken.stderr.rsplit("PORT=", 1)[1].split()[0])
    assert suggested != port
    with socket.socket() as check:
        check.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        check.bind(("127.0.0.1", suggested))  # the suggestion was free
