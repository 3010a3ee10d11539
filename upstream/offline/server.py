"""The offline model as an OpenAI-compatible Chat Completions server, on loopback, in this process.

With no key set, the app reaches the offline model the way it reaches a real one: the openai
client, `upstream/transport.py`, `upstream/sse.py` and `upstream/decode.py` read these bytes,
so the demo runs the token path that docs/token-path.md describes.

`POST /v1/chat/completions` with `"stream": true` answers as real servers do (one event per
HTTP chunk, compact JSON as OpenAI writes it):

    data: {"id":"chatcmpl-…","object":"chat.completion.chunk","created":…,"model":"offline-scenario-v1","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}
    data: {…,"choices":[{"index":0,"delta":{"content":"Word "},"finish_reason":null}]}    one per token, paced
    data: {…,"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}                   or "length"
    data: {…,"choices":[],"usage":{"prompt_tokens":…,"completion_tokens":…,"total_tokens":…}}   if asked
    data: [DONE]

Anything else gets OpenAI's error shape: 400 (not streamed, a malformed body), 404, 405, 413.

Over HTTP only `messages` arrive. `read_messages` recovers what the composer needs from them,
the inverse of `agent.prompts.build_prompt`: the intent is the row of `agent.intents.INTENTS`
whose system prompt the first message starts with, the scenario the JSON object between
<scenario> tags, the message the last user turn, the history the turns before it.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

import uvicorn
from uvicorn.server import ServerState

from agent.intents import INTENTS
from upstream.offline.compose import compose

MODEL = "offline-scenario-v1"
PATH = "/v1/chat/completions"
# Far above any prompt the app builds (its own input limits keep one under 1 MB).
MAX_REQUEST_BYTES = 4 * 1024 * 1024
# A token is a word with the spaces that follow it, roughly what real models emit.
TOKEN = re.compile(r"\s*\S+\s*|\s+")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_DONE = b"data: [DONE]\n\n"
_raw_decode = json.JSONDecoder().raw_decode
# A token's JSON string literal: `json.dumps(token, ensure_ascii=False)` builds an encoder per
# call (2 us a token); a made encoder's `encode` of a str is one C call.
_json_string = json.JSONEncoder(ensure_ascii=False).encode
_SPACE = re.compile(r"\s*")


@dataclass(frozen=True)
class Turn:
    """What the composer needs, read back from a request's messages."""

    intent: str
    message: str
    scenario: dict[str, Any] | None
    history: list[dict[str, str]]


def read_messages(messages: list[dict[str, Any]]) -> Turn:
    """The intent, message, scenario and history a Chat Completions `messages` list carries.

    A system prompt that is no intent's (any other client) is answered as chat; so is a
    conversation with no system prompt. The scenario is found by decoding JSON after each
    `<scenario>` until one is an object followed by `</scenario>`, so neither its indentation
    nor how it escapes `<` matters, and a `</scenario>` inside one of its strings cannot end it.
    """
    has_system = bool(messages) and messages[0].get("role") == "system"
    system = _text(messages[0]) if has_system else ""
    turns = messages[1:] if has_system else messages
    intent = max((name for name, spec in INTENTS.items() if system.startswith(spec.system_prompt)),
                 key=lambda name: len(INTENTS[name].system_prompt), default="chat")
    users = [i for i, turn in enumerate(turns) if turn.get("role") == "user"]
    last = users[-1] if users else len(turns)
    message = _text(turns[last]) if users else ""
    history = [{"role": str(turn.get("role")), "content": _text(turn)} for turn in turns[:last]]
    return Turn(intent, message, _scenario(system), history)


def _text(message: dict[str, Any]) -> str:
    """A message's text: its content string, or its text parts joined."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def _scenario(system: str) -> dict[str, Any] | None:
    at = system.find("<scenario>")
    while at != -1:
        start = _after_space(system, at + len("<scenario>"))
        try:
            value, end = _raw_decode(system, start)
        except ValueError:
            value, end = None, start
        if isinstance(value, dict) and system.startswith("</scenario>", _after_space(system, end)):
            return value
        at = system.find("<scenario>", at + 1)
    return None


def _after_space(text: str, at: int) -> int:
    match = _SPACE.match(text, at)
    return match.end() if match else at


class OfflineChatServer:
    """The ASGI app: streams the composed answer a word at a time, `token_delay_ms` apart."""

    def __init__(self, token_delay_ms: float) -> None:
        self._delay = max(0.0, token_delay_ms) / 1000
        self.streaming = 0  # answers being streamed now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # served with lifespan "off": only HTTP arrives
        if scope["path"] != PATH:
            return await _refuse(send, 404, f"Unknown path {scope['path'][:200]!r}: this server answers POST {PATH}.", code="unknown_url")
        if scope["method"] != "POST":
            return await _refuse(send, 405, f"{PATH} takes POST.", code="method_not_allowed")
        body = await _read_body(receive)
        if body is None:
            return  # the client left before its request arrived
        if len(body) > MAX_REQUEST_BYTES:
            return await _refuse(send, 413, f"The request is larger than {MAX_REQUEST_BYTES} bytes.", code="request_too_large")
        try:
            request = json.loads(body)
        except ValueError:
            return await _refuse(send, 400, "The body is not valid JSON.")
        problem = _check(request)
        if problem is not None:
            return await _refuse(send, 400, problem[1], param=problem[0])
        limit = request.get("max_completion_tokens", request.get("max_tokens"))
        options = request.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        await self._stream(receive, send, request["messages"], limit, include_usage)

    async def _stream(self, receive: Receive, send: Send, messages: list[dict[str, Any]], limit: int | None, include_usage: bool) -> None:
        turn = read_messages(messages)
        text = compose(turn.intent, turn.message, turn.scenario, turn.history)
        if not text.isascii():  # a lone surrogate (echoed from the input) cannot be sent as UTF-8
            text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        tokens = TOKEN.findall(text)
        sent = tokens if limit is None else tokens[:limit]
        head = b'data: {"id":"chatcmpl-%s","object":"chat.completion.chunk","created":%d,"model":"%s","choices":' % (
            uuid.uuid4().hex.encode(), int(time.time()), MODEL.encode())
        before, after = head + b'[{"index":0,"delta":{"content":', b'},"finish_reason":null}]}\n\n'

        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        # uvicorn's `send` ignores a client that has gone: the first `receive` after the body
        # returns when it goes, and stops this task there, even in the middle of a long delay.
        task = asyncio.current_task()
        assert task is not None
        gone = asyncio.ensure_future(receive())
        stop = lambda _: task.cancel()  # noqa: E731
        gone.add_done_callback(stop)
        self.streaming += 1
        try:
            await send({"type": "http.response.body", "more_body": True,
                        "body": head + b'[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'})
            delay = self._delay
            for token in sent:
                await asyncio.sleep(delay)  # sleep(0) still yields to the loop
                await send({"type": "http.response.body", "body": before + _json_string(token).encode() + after, "more_body": True})
            reason = "stop" if len(sent) == len(tokens) else "length"
            end = [head + b'[{"index":0,"delta":{},"finish_reason":"%s"}]}\n\n' % reason.encode()]
            if include_usage:
                prompt = sum(len(_text(m).split()) for m in messages)
                usage = {"prompt_tokens": prompt, "completion_tokens": len(sent), "total_tokens": prompt + len(sent)}
                end.append(head + b'[],"usage":' + json.dumps(usage, separators=(",", ":")).encode() + b"}\n\n")
            for chunk in end:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": _DONE, "more_body": False})
        except asyncio.CancelledError:
            if not gone.done() or gone.cancelled():
                raise  # not the client leaving: someone else's cancel
            task.uncancel()
        finally:
            self.streaming -= 1
            gone.remove_done_callback(stop)
            gone.cancel()


def _check(request: Any) -> tuple[str | None, str] | None:
    """(param, message) of what is wrong with a request body, or None."""
    if not isinstance(request, dict):
        return None, "The body must be a JSON object."
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        return "messages", "messages must be a non-empty array of message objects."
    if request.get("stream") is not True:
        return "stream", "This server only streams: send \"stream\": true."
    for name in ("max_completion_tokens", "max_tokens"):
        value = request.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            return name, f"{name} must be a positive integer."
    return None


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, or None if the client left; reading stops past MAX_REQUEST_BYTES."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        part = message.get("body", b"")
        parts.append(part)
        size += len(part)
        if size > MAX_REQUEST_BYTES or not message.get("more_body"):
            return b"".join(parts)


async def _refuse(send: Send, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
    """An error answer in OpenAI's shape."""
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def serve_loopback(app: Callable[..., Awaitable[None]]) -> AsyncIterator[str]:
    """An ASGI app served by uvicorn on 127.0.0.1, on a free port, in the running event loop;
    yields its base URL ("http://127.0.0.1:PORT") and stops it on exit.

    This is a guest in another server's process, so it takes none of `uvicorn.Server.serve`'s
    process-wide duties: no SIGINT/SIGTERM handlers (the app's server owns the signals and
    app.py chains onto them), no log configuration or level, no startup banner, no lifespan.
    It uses uvicorn's HTTP protocol directly on a listening socket, as `Server.startup` does.
    """
    config = uvicorn.Config(app, lifespan="off", log_config=None, ws="none", proxy_headers=False, server_header=False, date_header=False)
    config.load()
    state = ServerState()
    protocol: Any = config.http_protocol_class
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = await loop.create_server(
            lambda: protocol(config=config, server_state=state, app_state={}, _loop=loop),
            sock=sock, backlog=config.backlog)
    except BaseException:
        sock.close()
        raise
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        # Closing each connection ends an answer still streaming at once (its `receive` returns
        # the disconnect); by now its client, this process's app, has normally closed it already.
        for connection in list(state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.close()
        deadline = loop.time() + 2.0
        while (state.tasks or state.connections) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        await server.wait_closed()


@asynccontextmanager
async def offline_server(token_delay_ms: float) -> AsyncIterator[str]:
    """The offline model's Chat Completions endpoint beside the app; yields its base URL
    ("http://127.0.0.1:PORT/v1", the OpenAI client's `base_url`)."""
    async with serve_loopback(OfflineChatServer(token_delay_ms)) as url:
        yield url + "/v1"
