"""A raw HTTP server on loopback for transport tests: the test's handler writes exact bytes.

    async def handler(reader, writer, state):
        state["requests"].append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\n\\r\\nok")

    asyncio.run(serve(handler)(check))    # check(base_url, state) runs against it

`state` counts the connections and holds whatever the handler records (`requests`).

The two ways llama-cpp-python's server ends an HTTP 200 stream without an answer, byte for byte
(the wire corpus: shared/wire/llama-cpp-python/direct-over-n_ctx-prompt.txt):
`LLAMA_CPP_HEAD + b"0\r\n\r\n"` (a prompt over its context: an empty body, ended cleanly),
and `LLAMA_CPP_HEAD` then a close (the process died: no zero-size chunk).
"""

from __future__ import annotations

import asyncio
import ssl


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request, head and Content-Length body, as bytes."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


# The response head llama-cpp-python 0.3.36 sent for a prompt over its context (captured).
LLAMA_CPP_HEAD = (
    b"HTTP/1.1 200 OK\r\ndate: Mon, 07 Dec 2026 14:14:08 GMT\r\nserver: uvicorn\r\ncache-control: no-store\r\n"
    b"connection: keep-alive\r\nx-accel-buffering: no\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"openai-processing-ms: 7\r\nx-request-id: fac302dcf4e9499ab78c85e89e70a9a8\r\nvary: Origin\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
LLAMA_CPP_OVER_CONTEXT = LLAMA_CPP_HEAD + b"0\r\n\r\n"


def answering_once(response: bytes):  # type: ignore[no-untyped-def]
    """A handler that answers the first request on its connection with exactly `response`, then
    closes the connection (FIN): after a complete response, a server ending keep-alive; before
    the end of the body, a server that died mid-answer."""

    async def handler(reader, writer, state):  # type: ignore[no-untyped-def]
        state["requests"].append(await read_request(reader))
        writer.write(response)
        await writer.drain()

    return handler


def answering(response: bytes):  # type: ignore[no-untyped-def]
    """A handler that answers every request on its connection with exactly `response`."""

    async def handler(reader, writer, state):  # type: ignore[no-untyped-def]
        while True:
            state["requests"].append(await read_request(reader))
            writer.write(response)
            await writer.drain()

    return handler


def serve(handler, tls: ssl.SSLContext | None = None):  # type: ignore[no-untyped-def]
    """Run `check(base_url, state)` against a server whose connections run `handler(reader, writer, state)`."""

    async def run(check):  # type: ignore[no-untyped-def]
        state: dict = {"connections": 0, "requests": []}

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            state["connections"] += 1
            try:
                await handler(reader, writer, state)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=tls)
        port = server.sockets[0].getsockname()[1]
        try:
            return await check(f"{'https' if tls else 'http'}://127.0.0.1:{port}", state)
        finally:
            server.close()

    return run
