"""Real servers on loopback for tests: the app under uvicorn, on a free port, in a thread.

    with LiveApp({"OFFLINE_TOKEN_DELAY_MS": "0"}) as live:
        httpx.get(live.url + "/api/agent/scenario/stream/health")

`env` holds the app's environment variables (see agent/config.py); the process
environment is not read, so tests do not depend on the machine's OPENAI_* variables.
Also re-exported: FakeUpstream and Plan (tests/support/fake_upstream.py).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any, Iterator

import httpx
import uvicorn

from agent.config import Settings
from app import create_app
from tests.support.fake_upstream import FakeUpstream, Plan  # noqa: F401  (re-exported)

STREAM_PATH = "/api/agent/scenario/stream"
BUFFERED_PATH = "/api/agent/scenario"
HEALTH_PATH = "/api/agent/scenario/stream/health"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveApp:
    def __init__(self, env: dict[str, str] | None = None, **uvicorn_options: Any) -> None:
        # A grace of 0: a reader leaving stops its run at once, which the disconnect tests
        # check; tests of runs that outlive their reader (tests/test_resume.py) set their own.
        defaults = {"OFFLINE_TOKEN_DELAY_MS": "0", "RATE_LIMIT_PER_MINUTE": "0", "LOG_LEVEL": "warning", "RUN_DETACHED_GRACE_SECONDS": "0"}
        self.settings = Settings.from_env({**defaults, **(env or {})})
        self.app = create_app(self.settings)
        self.port = free_port()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", **uvicorn_options)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, daemon=True, name=f"live-app-{self.port}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def service(self) -> Any:
        return self.app.state.service

    def __enter__(self) -> "LiveApp":
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the app did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(10)

    def health(self) -> dict[str, Any]:
        return httpx.get(self.url + HEALTH_PATH, timeout=5).json()

    def wait_no_streams(self, timeout: float = 5.0) -> int:
        """Poll until active_streams is 0 (or timeout); returns the last value seen."""
        deadline = time.monotonic() + timeout
        while True:
            active = self.health()["active_streams"]
            if active == 0 or time.monotonic() > deadline:
                return active
            time.sleep(0.02)


def parse_frames(raw: bytes) -> list[tuple[str, Any]]:
    """A whole event stream as [(event type, JSON data)], with comments as ("comment", text)."""
    frames: list[tuple[str, Any]] = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        if block.startswith(":"):
            frames.append(("comment", block[1:].strip()))
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        data = json.loads(fields["data"])
        assert data["type"] == fields["event"], block
        frames.append((fields["event"], data))
    return frames


def iter_frames(response: httpx.Response) -> Iterator[tuple[float, str, Any]]:
    """Frames of a streaming httpx response as they arrive: (time.monotonic(), type, data)."""
    buffer = b""
    for piece in response.iter_raw():
        buffer += piece
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            now = time.monotonic()
            for kind, data in parse_frames(block + b"\n\n"):
                yield now, kind, data
