"""Helpers for the robustness tests: the app as a real uvicorn process, raw sockets, frame checks.

    with ServerProcess(upstream_env(fake, LOG_LEVEL="debug")) as server:
        status, headers, frames = post_stream(server.url, {"message": "hi"})
        server.terminate(); server.wait()
        server.stdout_text()  # everything the process printed

`ServerProcess` runs the Procfile's command (`uvicorn app:app --host ... --port $PORT`)
with PORT set, from the project root, bound to 127.0.0.1. Its stdout and stderr go to
files (a pipe nobody reads would block the server once full).
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.servers import HEALTH_PATH, STREAM_PATH, free_port, parse_frames

ROOT = Path(__file__).resolve().parents[2]

# Passed through from the test process; everything else the server sees comes from `env`.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "TMPDIR", "VIRTUAL_ENV", "PYENV_VERSION")


def procfile_command(port: int) -> list[str]:
    """The Procfile's `web:` command with $PORT filled in and the host set to loopback."""
    line = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    args = shlex.split(line.split(":", 1)[1].replace("$PORT", str(port)).replace("${PORT}", str(port)))
    args = ["127.0.0.1" if a == "0.0.0.0" else a for a in args]
    if args[0] == "uvicorn":  # the same interpreter and packages as the tests
        args = [sys.executable, "-m", "uvicorn", *args[1:]]
    return args


class ServerProcess:
    def __init__(self, env: dict[str, str], extra_args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        base = {k: os.environ[k] for k in _INHERITED if k in os.environ}
        # Grace 0: a reader leaving stops its run at once (see tests/support/servers.py).
        defaults = {"OFFLINE_TOKEN_DELAY_MS": "0", "RATE_LIMIT_PER_MINUTE": "0", "PYTHONUNBUFFERED": "1", "RUN_DETACHED_GRACE_SECONDS": "0"}
        self.env = {**base, **defaults, **env, "PORT": str(self.port)}
        self.args = procfile_command(self.port) + list(extra_args)
        self._dir = tempfile.TemporaryDirectory(prefix="scenario-agent-server-")
        self.stdout_path = Path(self._dir.name) / "stdout"
        self.stderr_path = Path(self._dir.name) / "stderr"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> "ServerProcess":
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.stdout_text()}\n{self.stderr_text()}")
            try:
                if httpx.get(self.url + HEALTH_PATH, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"server did not start:\n{self.stdout_text()}\n{self.stderr_text()}")
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        self._out.close()
        self._err.close()
        self._dir.cleanup()

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stdout_text(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def json_lines(self) -> list[dict[str, Any]]:
        """The stdout lines that are JSON objects (the app's log)."""
        out = []
        for line in self.stdout_text().splitlines():
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
        return out

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def health(self) -> dict[str, Any]:
        return httpx.get(self.url + HEALTH_PATH, timeout=5).json()


def post_stream(base_url: str, body: Any, headers: dict[str, str] | None = None, timeout: float = 30, path: str = STREAM_PATH) -> tuple[int, httpx.Headers, list[tuple[str, Any]]]:
    """POST and read the whole answer: (status, headers, frames); frames is [] for a JSON answer."""
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    with httpx.Client(timeout=timeout) as client:
        response = client.post(base_url + path, content=content, headers={"content-type": "application/json", **(headers or {})})
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return response.status_code, response.headers, parse_frames(response.content)
    return response.status_code, response.headers, []


def kinds(frames: list[tuple[str, Any]]) -> list[str]:
    return [kind for kind, _ in frames if kind != "comment"]


def assert_well_formed(frames: list[tuple[str, Any]]) -> dict[str, Any] | None:
    """start first, done last, at most one error right before done; returns the error frame or None."""
    order = kinds(frames)
    assert order, "no frames"
    assert order[0] == "start", order
    assert order[-1] == "done", order
    assert order.count("start") == 1 and order.count("done") == 1, order
    errors = [data for kind, data in frames if kind == "error"]
    assert len(errors) <= 1, order
    if errors:
        assert order[-2] == "error", order
        done = frames[-1][1] if frames[-1][0] == "done" else None
        assert done is not None and done["finish_reason"] == "error", frames[-1]
        return errors[0]
    return None


def chat_text(frames: list[tuple[str, Any]]) -> str:
    return "".join(data["content"] for kind, data in frames if kind == "chat")


def live_loop(live: Any) -> asyncio.AbstractEventLoop:
    """The event loop of a LiveApp (uvicorn in a thread)."""
    return live.server.servers[0].get_loop()


def server_task_count(live: Any) -> int:
    """How many asyncio tasks are alive in the LiveApp's loop (read inside that loop)."""

    async def count() -> int:
        return len(asyncio.all_tasks())

    return asyncio.run_coroutine_threadsafe(count(), live_loop(live)).result(5)


def wait_until(predicate, timeout: float, interval: float = 0.02) -> bool:
    """Poll predicate until true or timeout; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return bool(predicate())
        time.sleep(interval)


def raw_http(port: int, request: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes, read until the server closes or the timeout; the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except socket.timeout:
                break
            if not data:
                break
            chunks.append(data)
            if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                break
        return b"".join(chunks)


def _complete(raw: bytes) -> bool:
    head, _, body = raw.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def parse_raw_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body
