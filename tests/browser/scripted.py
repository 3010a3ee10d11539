"""A scripted SSE answer for page tests: frames the server may not send yet, at set times.

    with ScriptedStream([(0, "start", {...}), (30, "reasoning", {...}), ...]) as scripted:
        scripted.route(page)      # the page's POST .../stream now gets these frames
        ...

The page's stream request is re-pointed by Playwright (`route.continue_(url=...)`) to a raw
loopback server in its own thread, which writes one frame per step after the step's delay, so
the browser reads them as a real stream (Playwright's `route.fulfill` would deliver one body
at once). Everything else the page loads comes from the real app. Each request served is kept
in `requests` (its JSON body).

With `run_id`, the frames look like a run's (the server's resume contract): `id: <run_id>-<n>`
on each (n from `first_seq`), `retry: <retry_ms>` on the first, and a Content-Location header
naming the run's join URL. The connection is closed after the last step, `done` or not.
`head_delay_ms` holds the response's headers back that long.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

STREAM_PATH = "/api/agent/scenario/stream"


class ScriptedStream:
    def __init__(
        self,
        steps: list[tuple[float, str, dict[str, Any]]],
        run_id: str | None = None,
        retry_ms: int | None = None,
        first_seq: int = 1,
        head_delay_ms: float = 0,
    ) -> None:
        self.steps = steps
        self.run_id = run_id
        self.retry_ms = retry_ms
        self.first_seq = first_seq
        self.head_delay_ms = head_delay_ms
        self.requests: list[dict[str, Any]] = []
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "ScriptedStream":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{STREAM_PATH}"

    def route(self, page: Any) -> None:
        page.route("**" + STREAM_PATH, lambda route: route.continue_(url=self.url))

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                piece = conn.recv(65536)
                if not piece:
                    return
                data += piece
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            while len(body) < length:
                piece = conn.recv(65536)
                if not piece:
                    break
                body += piece
            try:
                self.requests.append(json.loads(body or b"null"))
            except ValueError:
                self.requests.append({})
            if self.head_delay_ms:
                time.sleep(self.head_delay_ms / 1000)
            location = b"Content-Location: /api/agent/scenario/runs/%s/stream\r\n" % self.run_id.encode() if self.run_id else b""
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                b"X-Request-ID: scripted\r\n" + location + b"Connection: close\r\n\r\n"
            )
            try:
                for n, (delay_ms, event, payload) in enumerate(self.steps):
                    if delay_ms:
                        time.sleep(delay_ms / 1000)
                    frame = {"type": event, **payload}
                    head = b""
                    if self.run_id:
                        if n == 0 and self.retry_ms is not None:
                            head += b"retry: %d\n" % self.retry_ms
                        head += b"id: %s-%d\n" % (self.run_id.encode(), self.first_seq + n)
                    conn.sendall(head + b"event: %s\ndata: %s\n\n" % (event.encode(), json.dumps(frame).encode()))
            except OSError:
                return
