"""A real redis-server for the scale-out tests: on 127.0.0.1, a free port, persistence off.

    with RedisServer() as redis:
        redis.url            # redis://127.0.0.1:<port>/0
        redis.kill()         # SIGKILL, as a crashed or unplugged Redis
        redis.start()        # again, on the same port, empty (nothing was saved)
        redis.command_calls()  # {"xadd": 12, ...} from INFO commandstats

Debian's package provides the binary (`make test` installs it). Without it the tests that
need Redis are skipped with the install line, never failed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest


BINARY = "redis-server"
INSTALL = "apt-get update && apt-get install -y redis-server"


def free_port() -> int:
    # Not tests.support.servers': this module is also used by bench/scaleout.py, which must
    # not import the app.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def available() -> bool:
    return shutil.which(BINARY) is not None


class RedisServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="scenario-agent-redis-")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = open(Path(self._dir.name) / "redis.log", "ab")
        self.proc = subprocess.Popen(
            [
                BINARY, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self._dir.name, "--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning",
            ],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {self.log_text()}")
            if self._ping():
                return self
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not start: {self.log_text()}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no shutdown, connections reset, everything in memory gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self) -> None:
        self.kill()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
        self._dir.cleanup()

    def log_text(self) -> str:
        path = Path(self._dir.name) / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- plain RESP, so the fixture needs no client library -----------------------------------

    def command(self, *args: str | bytes | int) -> object:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(_encode(args))
            return _read(sock.makefile("rb"))

    def _ping(self) -> bool:
        try:
            return self.command("PING") == "PONG"
        except OSError:
            return False

    def flush(self) -> None:
        self.command("FLUSHALL")
        self.command("CONFIG", "RESETSTAT")

    def command_calls(self) -> dict[str, int]:
        """Calls per command since the last CONFIG RESETSTAT, from INFO commandstats.

        Commands run inside a Lua script are counted too (as EVALSHA and as themselves)."""
        info = self.command("INFO", "commandstats")
        assert isinstance(info, bytes)
        out: dict[str, int] = {}
        for line in info.decode().splitlines():
            if line.startswith("cmdstat_"):
                name, _, fields = line.partition(":")
                calls = dict(part.split("=", 1) for part in fields.split(","))
                out[name[len("cmdstat_"):]] = int(calls["calls"])
        return out


def _encode(args: tuple) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read(f) -> object:
    line = f.readline()
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = f.read(size + 2)[:-2]
        return data
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read(f) for _ in range(size)]
    raise RuntimeError(f"unexpected reply {line!r}")


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server per test module; `flush()` between tests that need a clean state."""
    if not available():
        pytest.skip(f"redis-server is not installed ({INSTALL})")
    with RedisServer() as server:
        yield server
