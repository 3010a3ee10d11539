"""A raw HTTP server on loopback for transport tests: the test's handler writes exact bytes.

    async def handler(reader, writer, state):
        state["requests"].append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\n\\r\\nok")

    asyncio.run(serve(handler)(check))    # check(base_url, state) runs against it

`state` counts the connections and holds whatever the handler records (`requests`).
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
