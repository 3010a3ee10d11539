"""The least a Python relay can do per token: a lower bound for this machine, not an app.

    python3 bench/run.py --app-dir bench/bare --no-readme

A raw ASGI app on uvicorn (uvloop, httptools): one `asyncio.Protocol` connection to the
upstream per request, a line split and one json.loads per chunk, one frame out per
delta. No openai SDK, no httpx, no agent, limits, disconnect watch or error handling,
and it trusts the upstream's chunk framing to line up with its reads (true for the
benchmark's upstream, not in general). Whatever it cannot reach on this machine, no
Python relay built on uvicorn reaches: docs/bench-notes.md uses it that way.
"""
import asyncio
import json
import os
from urllib.parse import urlsplit

UPSTREAM = urlsplit(os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8001/v1"))
CHAT = b'event: chat\ndata: {"type":"chat","content":%s,"streaming":true}\n\n'
encode_string = json.JSONEncoder(ensure_ascii=False).encode
DONE = b'event: done\ndata: {"type":"done","finish_reason":"stop"}\n\n'


class Upstream(asyncio.Protocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.closed = False
        self.waiter: asyncio.Future | None = None

    def data_received(self, data: bytes) -> None:
        self.received.append(data)
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    if scope["method"] == "GET":  # the benchmark's readiness check
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"status":"ok","active_streams":0}'})
        return
    loop = asyncio.get_running_loop()
    transport, upstream = await loop.create_connection(Upstream, UPSTREAM.hostname, UPSTREAM.port)
    body = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}'
    transport.write(b"POST %s/chat/completions HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (UPSTREAM.path.encode(), UPSTREAM.netloc.encode(), len(body), body))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    await send({"type": "http.response.body", "body": b'event: start\ndata: {"type":"start"}\n\n', "more_body": True})
    try:
        while True:
            if not upstream.received:
                if upstream.closed:
                    break
                upstream.waiter = loop.create_future()
                await upstream.waiter
                continue
            data = b"".join(upstream.received)
            upstream.received.clear()
            for line in data.split(b"\n"):
                if not line.startswith(b"data: {"):
                    if line.startswith(b"data: [DONE]"):
                        await send({"type": "http.response.body", "body": DONE, "more_body": False})
                        return
                    continue
                choices = json.loads(line[6:])["choices"]
                content = choices[0]["delta"].get("content") if choices else None
                if content:
                    await send({"type": "http.response.body", "body": CHAT % encode_string(content).encode(), "more_body": True})
    finally:
        transport.abort()
    await send({"type": "http.response.body", "body": DONE, "more_body": False})
