"""A fake OpenAI-compatible model server on loopback, speaking the real wire format.

    with FakeUpstream() as fake:
        fake.push(Plan(tokens=["Hel", "lo"], interval_ms=50))       # the next request
        fake.push(Plan(status=429, headers={"retry-after": "3"}))   # the one after
        ... point the app at fake.base_url ...
        fake.open_streams, fake.disconnects, fake.requests

It is a small raw HTTP/1.1 server (asyncio, in its own thread) so that every fault can
be produced exactly: resets, stalls, malformed chunks, bodies without `[DONE]`.
Requests with no plan pushed get `default` (two tokens, no delay).

When requests run concurrently, a queue cannot say which request gets which plan:
set `fake.selector` to a function of the request body returning a Plan (or None to
fall back to the queue and the default), e.g. one that reads a marker in the user's
message.

Real servers' shapes (the wire corpus, shared/wire/README.md beside this repository) are Plan options: thinking as
`reasoning_content`, `reasoning` (+ `reasoning_details`) or inline `<think>` with the tags
split anywhere; role-only and Azure first chunks; `finish_reason` length / content_filter;
no usage chunk; keep-alive comments; `data:` without a space; a 400 `unsupported_parameter`
for a named token-limit parameter; and `raw` bytes for anything else, byte for byte.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Plan:
    tokens: list[str] = field(default_factory=lambda: ["Hello", " from", " the", " fake", " model."])
    interval_ms: float = 0.0
    first_delay_ms: float = 0.0  # before the first token (after the headers)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    # None, "reset" (RST after fault_after tokens), "stall" (silence after fault_after tokens),
    # "malformed" (a line that is not JSON), "missing_fields" (a chunk without choices),
    # "no_done" (end the body without [DONE]), "error_payload" (an {"error": ...} chunk),
    # "refuse" (close the connection before answering), "surrogate" (a delta whose JSON holds
    # a lone UTF-16 surrogate escape, "\ud800", valid JSON but not valid Unicode).
    fault: str | None = None
    fault_after: int = 0
    usage: bool = True
    finish_reason: str = "stop"
    # Echo the request's Authorization header in error bodies and error payloads, as real
    # servers do ("Incorrect API key provided: sk-...") - for tests that the key never leaks.
    echo_auth: bool = False
    # Thinking deltas sent before `tokens`, paced like them, in the shape `reasoning_field`
    # names: "reasoning_content" (llama.cpp, DeepSeek, LM Studio), "reasoning" (Ollama, vLLM,
    # OpenRouter; with `reasoning_details` also the same text again, as OpenRouter does), or
    # "think" (inline in content: "<think>", the reasoning, "</think>", then the tokens, each
    # tag split after `think_split` characters across two deltas, 0 for whole tags).
    reasoning: list[str] = field(default_factory=list)
    reasoning_field: str = "reasoning_content"
    reasoning_details: bool = False
    think_split: int = 0
    reasoning_tokens: int | None = None  # usage.completion_tokens_details.reasoning_tokens
    # "role" (role + empty content), "role_only" ({"role": "assistant"}: llama-cpp-python,
    # vLLM), "azure" (`choices: []` with prompt_filter_results, then the role chunk), "none".
    first_chunk: str = "role"
    comments: list[str] = field(default_factory=list)  # sent before the first chunk, e.g. ": OPENROUTER PROCESSING"
    data_no_space: bool = False  # `data:{...}`, valid SSE
    # Answer 400 unsupported_parameter (OpenAI's exact body) to a request carrying this
    # parameter (or any of these, the first one found in this order); the plan stays first in
    # the queue, for the client's retries.
    reject_param: str | tuple[str, ...] | None = None
    error: dict | None = None  # the `error` object of a non-200 answer (default: a fake one)
    # Exactly these bytes after the head ("HTTP/1.1 <status>" + `headers`, which must then
    # give the framing: see `chunked`), then a close (FIN).
    raw: bytes | None = None


def chunk(content: str | None = None, finish_reason: str | None = None, role: bool = False, delta: dict | None = None) -> dict:
    delta = dict(delta or {})
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "fake-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def chunked(*parts: bytes, end: bool = True) -> bytes:
    """`parts` as HTTP/1.1 chunks, one each, and the zero-size terminator unless `end` is False."""
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + (b"0\r\n\r\n" if end else b"")


def unsupported_parameter(name: str) -> dict:
    """OpenAI's 400 `error` object for a parameter the model does not take: a token-limit name
    (its message names the other), or another one such as `temperature` (o1, o3, o4-mini)."""
    if name in ("max_tokens", "max_completion_tokens"):
        other = "max_completion_tokens" if name == "max_tokens" else "max_tokens"
        message = f"Unsupported parameter: '{name}' is not supported with this model. Use '{other}' instead."
    else:
        message = f"Unsupported parameter: '{name}' is not supported with this model."
    return {"message": message, "type": "invalid_request_error", "param": name, "code": "unsupported_parameter"}


def _deltas(plan: Plan) -> list[tuple[str, dict]]:
    """The plan's deltas in order: ("reasoning" | "token", delta object)."""
    if plan.reasoning_field == "think":
        pieces = ["<think>", *plan.reasoning, "</think>", *plan.tokens] if plan.reasoning else list(plan.tokens)
        if plan.think_split:
            split: list[str] = []
            carry = ""
            for piece in pieces:
                if piece in ("<think>", "</think>"):
                    if split:
                        split[-1] += carry + piece[:plan.think_split]
                    else:
                        split.append(carry + piece[:plan.think_split])
                    carry = piece[plan.think_split:]
                else:
                    split.append(carry + piece)
                    carry = ""
            if carry:
                split.append(carry)
            pieces = [p for p in split if p]
        return [("token", {"content": p}) for p in pieces]
    out: list[tuple[str, dict]] = []
    for text in plan.reasoning:
        if plan.reasoning_field == "reasoning_content":
            out.append(("reasoning", {"content": None, "reasoning_content": text}))
        else:
            delta: dict = {"content": "", plan.reasoning_field: text}
            if plan.reasoning_details:
                delta["reasoning_details"] = [{"type": "reasoning.text", "text": text, "format": "unknown", "index": 0}]
            out.append(("reasoning", delta))
    return out + [("token", {"content": t}) for t in plan.tokens]


class FakeUpstream:
    def __init__(self, default: Plan | None = None) -> None:
        self.default = default or Plan()
        self.plans: deque[Plan] = deque()
        self.requests: list[dict] = []
        self.request_headers: list[dict[str, str]] = []
        self.open_streams = 0
        self.open_connections = 0
        self.connections_accepted = 0  # every TCP connection ever made to the fake
        self.disconnects: list[float] = []  # time.monotonic() when a client left mid-answer
        self.emitted: list[tuple[float, str]] = []  # (time.monotonic(), token) for every token sent
        self.reasoning_emitted: list[tuple[float, str]] = []  # the same for reasoning-field deltas
        self.bytes_sent = 0  # body bytes written to answer streams
        self.selector: Callable[[dict], Plan | None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- control ----------------------------------------------------------------------------

    def push(self, *plans: Plan) -> None:
        self.plans.extend(plans)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """True once no stream is open (within timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.open_streams == 0:
                return True
            time.sleep(0.01)
        return self.open_streams == 0

    def __enter__(self) -> "FakeUpstream":
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True, name="fake-upstream")
        self._thread.start()
        ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop and self._server
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(5)

    # -- server -----------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        self.connections_accepted += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if path.endswith("/chat/completions") and method == "POST":
                    if not await self._completion(json.loads(body or b"{}"), headers, reader, writer):
                        return
                else:
                    writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self.open_connections -= 1
            writer.close()

    async def _completion(self, request: dict, headers: dict[str, str], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must not be reused."""
        self.requests.append(request)
        self.request_headers.append(headers)
        plan = self.selector(request) if self.selector is not None else None
        queued = False
        if plan is None:
            queued = bool(self.plans)
            plan = self.plans.popleft() if queued else self.default
        auth = headers.get("authorization", "")
        if plan.fault == "refuse":
            _reset(writer)
            return False
        names = (plan.reject_param,) if isinstance(plan.reject_param, str) else plan.reject_param or ()
        refused = next((name for name in names if name in request), None)
        if refused is not None:
            if queued:
                self.plans.appendleft(plan)  # the same server answers the retry
            body = json.dumps({"error": unsupported_parameter(refused)}).encode()
            writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            return True
        if plan.raw is not None:
            extra = "".join(f"{k}: {v}\r\n" for k, v in plan.headers.items())
            writer.write(f"HTTP/1.1 {plan.status} OK\r\n{extra}\r\n".encode() + plan.raw)
            self.bytes_sent += len(plan.raw)
            await writer.drain()
            return False  # then a close, without anything more
        if plan.status != 200:
            message = f"fake error {plan.status}" + (f": Incorrect API key provided: {auth}" if plan.echo_auth else "")
            error = plan.error if plan.error is not None else {"message": message, "type": "fake", "code": plan.status}
            body = json.dumps({"error": error}).encode()
            extra = "".join(f"{k}: {v}\r\n" for k, v in plan.headers.items())
            writer.write(
                f"HTTP/1.1 {plan.status} Error\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode() + body
            )
            await writer.drain()
            return True
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")
        self.open_streams += 1
        gone = asyncio.Event()
        early = bytearray()  # bytes of a next request that arrived while the answer was being sent
        watcher = asyncio.create_task(_watch_eof(reader, gone, early))
        try:
            return await self._stream(plan, writer, gone, auth)
        except ConnectionError:
            # A write failed: the client went away while the answer was being sent.
            self.disconnects.append(time.monotonic())
            return False
        finally:
            self.open_streams -= 1
            watcher.cancel()
            # Wait for the watcher to let go of the reader before the next request is read.
            await asyncio.gather(watcher, return_exceptions=True)
            if early:  # give a pooled client's next request back to the reader, in order
                reader._buffer[:0] = early  # type: ignore[attr-defined]

    async def _stream(self, plan: Plan, writer: asyncio.StreamWriter, gone: asyncio.Event, auth: str = "") -> bool:
        prefix = "data:" if plan.data_no_space else "data: "

        def send_data(payload: str) -> None:
            data = f"{prefix}{payload}\n\n".encode()
            self.bytes_sent += len(data)
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))

        for comment in plan.comments:
            data = f"{comment}\n\n".encode()
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        if plan.first_chunk == "azure":
            send_data(json.dumps({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                                  "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}}}]}))
        if plan.first_chunk in ("role", "azure"):
            send_data(json.dumps(chunk("", role=True)))
        elif plan.first_chunk == "role_only":
            send_data(json.dumps(chunk(role=True)))
        await writer.drain()
        start = time.monotonic()
        if plan.first_delay_ms and await _sleep_or_gone(plan.first_delay_ms / 1000, gone):
            self.disconnects.append(time.monotonic())
            return False
        tokens_sent = 0
        for index, (kind, delta) in enumerate(_deltas(plan)):
            if plan.fault and kind == "token" and tokens_sent == plan.fault_after:
                return await self._fault(plan, writer, send_data, gone, auth)
            if index and plan.interval_ms:
                # Absolute deadlines: pacing does not drift with scheduling delays.
                if await _sleep_or_gone(start + index * plan.interval_ms / 1000 - time.monotonic(), gone):
                    self.disconnects.append(time.monotonic())
                    return False
            if gone.is_set():
                self.disconnects.append(time.monotonic())
                return False
            send_data(json.dumps(chunk(delta=delta), ensure_ascii=False))
            if kind == "token":
                tokens_sent += 1
                self.emitted.append((time.monotonic(), delta["content"]))
            else:
                self.reasoning_emitted.append((time.monotonic(), delta.get("reasoning_content") or delta.get("reasoning") or ""))
            await writer.drain()
        if plan.fault:
            return await self._fault(plan, writer, send_data, gone, auth)
        send_data(json.dumps(chunk(finish_reason=plan.finish_reason)))
        if plan.usage:
            n = len(plan.tokens) + len(plan.reasoning)
            usage: dict = {"prompt_tokens": 7, "completion_tokens": n, "total_tokens": 7 + n}
            if plan.reasoning_tokens is not None:
                usage["completion_tokens_details"] = {"reasoning_tokens": plan.reasoning_tokens}
            send_data(json.dumps({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "choices": [], "usage": usage}))
        send_data("[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _fault(self, plan: Plan, writer: asyncio.StreamWriter, send_data, gone: asyncio.Event, auth: str = "") -> bool:
        if plan.fault == "reset":
            _reset(writer)
        elif plan.fault == "stall":
            await gone.wait()  # silence until the client gives up
            self.disconnects.append(time.monotonic())
        elif plan.fault == "malformed":
            send_data("{this is not json")
            await writer.drain()
            await _sleep_or_gone(5, gone)
        elif plan.fault == "missing_fields":
            send_data(json.dumps({"id": "x", "object": "chat.completion.chunk"}))
            await writer.drain()
            await _sleep_or_gone(5, gone)
        elif plan.fault == "error_payload":
            message = "overloaded" + (f" (key {auth})" if plan.echo_auth else "")
            send_data(json.dumps({"error": {"message": message, "type": "server_error", "code": 500}}))
            await writer.drain()
            await _sleep_or_gone(5, gone)
        elif plan.fault == "surrogate":
            send_data(json.dumps(chunk("bad \ud800 text")))  # ensure_ascii: sent as the escape
            send_data(json.dumps(chunk(finish_reason="stop")))  # then a normal end
            send_data("[DONE]")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        elif plan.fault == "no_done":
            send_data(json.dumps(chunk(finish_reason="stop")))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        return False


async def _watch_eof(reader: asyncio.StreamReader, gone: asyncio.Event, early: bytearray) -> None:
    try:
        while data := await reader.read(65536):
            early.extend(data)
    except ConnectionError:
        pass
    gone.set()


async def _sleep_or_gone(seconds: float, gone: asyncio.Event) -> bool:
    """Sleep, or return True early if the client went away."""
    if seconds <= 0:
        return gone.is_set()
    try:
        await asyncio.wait_for(gone.wait(), seconds)
        return True
    except asyncio.TimeoutError:
        return False


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST, as a crashed server or a dropped proxy would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
