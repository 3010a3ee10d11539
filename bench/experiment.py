#!/usr/bin/env python3
"""What-if measurements: run the benchmark against the app with a runtime patch.

    python3 bench/experiment.py PATCH [bench/run.py options...]

e.g. ``python3 bench/experiment.py rawup --no-readme`` runs the full benchmark
with the app's upstream client swapped at import time.  Nothing in app.py or
agent/ is edited: the uvicorn subprocess is started through this file, which
applies the patch and then runs uvicorn.  Patches (comma-separate to combine):

  none         no patch (same as bench/run.py; a control for the harness)
  httpxdirect  OpenAICompatible.stream posts with the app's httpx client directly
               (no openai SDK request building); body read with aiter_raw()
  rawup        a minimal asyncio HTTP/1.1 client with a keep-alive pool
               (plain http only, no retries/timeouts/proxies: an upper bound
               for what a leaner upstream client buys, not production code)
  aiohttp      aiohttp.ClientSession for the upstream call (pip install aiohttp;
               note that openai imports aiohttp whenever it is installed, adding
               ~7 MB to the app's idle RSS in every later benchmark: uninstall it
               afterwards)

These patch agent.llm.OpenAICompatible.stream and rely on its current shape
(``self._client`` is the openai.AsyncOpenAI client, ``decode_chat_stream``
takes an async iterator of bytes); they may need updating as the app changes.
Errors are mapped only roughly (status -> upstream_rejected/unavailable).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PATCHES = ("none", "httpxdirect", "rawup", "aiohttp")


def _body(self, prompt, max_tokens) -> bytes:
    return json.dumps({"model": self.model, "messages": prompt.messages, "stream": True,
                       "stream_options": {"include_usage": True},
                       "max_tokens": max_tokens}).encode()


def _status_error(status: int):
    from agent import errors
    if status < 500 and status not in (408, 409):
        return errors.upstream_rejected(status)
    return errors.upstream_unavailable(f" (HTTP {status})")


def patch_httpxdirect(llm) -> None:
    async def stream(self, prompt, max_tokens):
        http = self._client._client  # the httpx.AsyncClient the app passed to the SDK
        url = str(self._client.base_url).rstrip("/") + "/chat/completions"
        headers = {"authorization": "Bearer " + self._client.api_key,
                   "content-type": "application/json", "accept": "text/event-stream"}
        async with http.stream("POST", url, content=_body(self, prompt, max_tokens),
                               headers=headers) as r:
            if r.status_code != 200:
                raise _status_error(r.status_code)
            async for item in llm.decode_chat_stream(r.aiter_raw()):
                yield item
    llm.OpenAICompatible.stream = stream


def patch_rawup(llm) -> None:
    import asyncio
    from urllib.parse import urlsplit
    from agent import errors
    pool: list = []

    class Conn(asyncio.Protocol):
        def __init__(self):
            self.q = asyncio.Queue()
            self.t = None
            self.reusable = False

        def connection_made(self, t):
            self.t = t

        def data_received(self, d):
            self.q.put_nowait(d)

        def connection_lost(self, exc):
            self.q.put_nowait(None)

    async def dechunk(conn, buf):
        while True:
            while True:
                i = buf.find(b"\r\n")
                if i < 0:
                    break
                size = int(buf[:i].split(b";")[0], 16)
                if size == 0:
                    if len(buf) >= i + 4:
                        conn.reusable = True
                        return
                    break
                if len(buf) < i + 4 + size:
                    break
                yield buf[i + 2:i + 2 + size]
                buf = buf[i + 4 + size:]
            d = await conn.q.get()
            if d is None:
                return
            buf += d

    async def stream(self, prompt, max_tokens):
        u = urlsplit(str(self._client.base_url))
        host, port = u.hostname, u.port or 80
        body = _body(self, prompt, max_tokens)
        req = (b"POST %s/chat/completions HTTP/1.1\r\nhost: %s:%d\r\nauthorization: Bearer %s\r\n"
               b"content-type: application/json\r\naccept: text/event-stream\r\n"
               b"content-length: %d\r\n\r\n" % (u.path.rstrip("/").encode(), host.encode(), port,
                                                 self._client.api_key.encode(), len(body))) + body
        conn = None
        while pool:
            c = pool.pop()
            if c.t is not None and not c.t.is_closing():
                conn = c
                break
        if conn is None:
            _, conn = await asyncio.get_running_loop().create_connection(Conn, host, port)
        conn.reusable = False
        conn.t.write(req)
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                d = await conn.q.get()
                if d is None:
                    raise errors.upstream_unavailable()
                head += d
            h, _, rest = head.partition(b"\r\n\r\n")
            status = int(h.split(b" ", 2)[1])
            if status != 200:
                raise _status_error(status)
            async for item in llm.decode_chat_stream(dechunk(conn, rest)):
                yield item
        finally:
            if conn.reusable and len(pool) < 100:
                pool.append(conn)
            else:
                conn.t.close()
    llm.OpenAICompatible.stream = stream


def patch_aiohttp(llm) -> None:
    import aiohttp
    state: dict = {}

    async def stream(self, prompt, max_tokens):
        s = state.get("session")
        if s is None:
            s = state["session"] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=60))
        url = str(self._client.base_url).rstrip("/") + "/chat/completions"
        headers = {"authorization": "Bearer " + self._client.api_key,
                   "content-type": "application/json", "accept": "text/event-stream"}
        async with s.post(url, data=_body(self, prompt, max_tokens), headers=headers) as r:
            if r.status != 200:
                raise _status_error(r.status)

            async def chunks():
                async for data in r.content.iter_any():
                    yield data
            async for item in llm.decode_chat_stream(chunks()):
                yield item
    llm.OpenAICompatible.stream = stream


def apply(names: str) -> None:
    import agent.llm as llm
    for name in filter(None, names.split(",")):
        if name == "none":
            continue
        {"httpxdirect": patch_httpxdirect, "rawup": patch_rawup,
         "aiohttp": patch_aiohttp}[name](llm)


def serve(names: str, uvicorn_args: list[str]) -> None:
    sys.path.insert(0, os.getcwd())
    apply(names)
    import uvicorn
    sys.argv = ["uvicorn"] + uvicorn_args
    uvicorn.main()


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3:])
        return 0
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0
    names = sys.argv[1]
    for n in names.split(","):
        if n not in PATCHES:
            print("unknown patch %r; known: %s" % (n, ", ".join(PATCHES)), file=sys.stderr)
            return 2
    sys.path.insert(0, HERE)
    import run as bench
    real = subprocess.Popen

    class Popen(real):  # start uvicorn through this file so the patch applies first
        def __init__(self, cmd, *a, **k):
            if isinstance(cmd, list) and cmd[1:3] == ["-m", "uvicorn"]:
                cmd = [cmd[0], os.path.abspath(__file__), "--serve", names] + cmd[3:]
            super().__init__(cmd, *a, **k)
    bench.subprocess.Popen = Popen
    args = sys.argv[2:]
    if "--no-readme" not in args:
        args.append("--no-readme")  # what-if numbers never go into README.md
    sys.argv = [sys.argv[0], names] + args
    return bench.main(args)


if __name__ == "__main__":
    sys.exit(main())
