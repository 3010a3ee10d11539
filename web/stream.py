"""Responses are readers of a run: one policy, several ways to write.

`ReaderResponse` is raw ASGI, like Starlette's StreamingResponse: a writer task that takes
the run's frames as they come and writes them, beside a watcher task that waits for
`http.disconnect` and, between waits (about once a second), checks the rest of the policy:

- heartbeat: `: ping` when nothing was written for HEARTBEAT_SECONDS (PaaS routers drop
  idle streams); only writers that stream frames ask for it,
- send timeout: a write stuck for SEND_TIMEOUT_SECONDS (a client that stopped reading)
  ends this reader,
- shutdown: the run ends itself with `error` (server_shutdown) and `done`, which this
  reader writes like any frame; it waits for that at most SHUTDOWN_GRACE_SECONDS.

A reader ending never ends the run by itself: `await on_close(outcome)` tells its owner,
which detaches it from the run (runs/live.py decides what the run does without readers).

A writer that never waits but for the client (`from_producer`) offers its write to the run:
while the reader is alone and caught up, the run's producer writes each new frame with it,
in its own task (runs/log.py, the reader in hand). The timed send below is the same either
way, so the send timeout holds for those writes too.

The writers differ only in how they write:

    EventStreamWriter    each frame as its own body message, at once (the event stream)
    JsonWriter           every event drained into one JSON object (the buffered route)
    web/lab.py           the streaming lab's deliberately broken deliveries
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from typing import Any, AsyncGenerator, Awaitable, Callable, Protocol

from agent.events import PING, Chat, Done, Error, Event, Reasoning, Repair, Scenario
from starlette.types import Message, Receive, Scope, Send
from runs.log import Deliver, LogTruncated
from web.errors import AGENT_ERROR_STATUS

STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx and some PaaS routers buffer otherwise
]

# What a reader reads: (sequence number, the event when this process has it, the frame bytes).
Entry = tuple[int, Event | None, bytes]
# The entries to write, given the writer's write for the run's producer to use (or None).
Read = Callable[[Deliver | None], AsyncGenerator[Entry, None]]


class Outcome:
    COMPLETE, DISCONNECTED, SEND_TIMEOUT, SHUTDOWN = "complete", "disconnected", "send_timeout", "shutdown"
    FELL_BEHIND = "fell_behind"  # the reader stopped reading past the log's bound (runs/log.py)


@dataclass(frozen=True)
class Policy:
    send_timeout: float
    grace: float
    shutdown: asyncio.Event
    heartbeat: float | None = None  # None: never ping (a writer without `heartbeat` never pings either)


class Writer(Protocol):
    heartbeat: bool  # whether the policy's pings may be written between frames
    from_producer: bool  # whether the run's producer may write frames with it (it never waits but for the client)

    async def begin(self, send: Send) -> None: ...

    async def write(self, send: Send, entry: Entry) -> None: ...

    async def end(self, send: Send) -> None: ...


async def wait_disconnect(receive: Receive) -> None:
    """Returns when the client has gone (`http.disconnect`); other messages are ignored."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def settle(tasks: set[asyncio.Task]) -> None:
    """Cancel the tasks still running and wait until they have all ended."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class ReaderResponse:
    def __init__(self, read: Read, writer: Writer, policy: Policy, on_close: Callable[[str], Awaitable[None]]) -> None:
        self.read = read
        self.writer = writer
        self.policy = policy
        self.on_close = on_close
        self._send_started = 0.0  # loop time when the current write began; 0 when none is pending
        self._last_write = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        outcome = Outcome.DISCONNECTED
        try:
            writer = asyncio.create_task(self._write(send))
            watcher = asyncio.create_task(self._watch(receive, send))
            done, _ = await asyncio.wait({writer, watcher}, return_when=asyncio.FIRST_COMPLETED)
            outcome = (writer.result() if writer in done else watcher.result())  # re-raises a failure of the writer itself
            await settle({writer, watcher} - done)
            # DISCONNECTED: nobody to write to. SEND_TIMEOUT, SHUTDOWN: returning without
            # completing the body makes uvicorn close the connection.
        finally:
            await self.on_close(outcome)

    async def _write(self, send: Send) -> str:
        loop_time = asyncio.get_running_loop().time

        async def timed(message: Message) -> None:  # every write, timed for the send timeout
            self._send_started = loop_time()
            await send(message)
            self._last_write, self._send_started = self._send_started, 0.0

        self._last_write = loop_time()
        write = self.writer.write
        entries = self.read((lambda entry: write(timed, entry)) if self.writer.from_producer else None)
        try:
            await self.writer.begin(timed)
            async for entry in entries:
                await write(timed, entry)
            await self.writer.end(timed)
            return Outcome.COMPLETE
        except LogTruncated:
            return Outcome.FELL_BEHIND  # the body is left unfinished: uvicorn closes the connection
        finally:
            await entries.aclose()

    async def _watch(self, receive: Receive, send: Send) -> str:
        """Wait for the client to leave; between waits (about once a second), check the rest."""
        policy = self.policy
        loop_time = asyncio.get_running_loop().time
        heartbeat = policy.heartbeat if self.writer.heartbeat else None
        tick = max(0.01, min(1.0, policy.send_timeout / 2, heartbeat / 2 if heartbeat else 1.0))
        shutdown_seen = 0.0
        while True:
            try:
                async with asyncio.timeout(tick):
                    await wait_disconnect(receive)
                return Outcome.DISCONNECTED
            except TimeoutError:
                pass
            now = loop_time()
            if policy.shutdown.is_set():
                shutdown_seen = shutdown_seen or now
                if now - shutdown_seen >= policy.grace:
                    return Outcome.SHUTDOWN
            if self._send_started:
                if now - self._send_started > policy.send_timeout:
                    return Outcome.SEND_TIMEOUT
            elif heartbeat is not None and now - self._last_write >= heartbeat:
                self._last_write = now
                try:
                    async with asyncio.timeout(policy.send_timeout):
                        await send({"type": "http.response.body", "body": PING, "more_body": True})
                except TimeoutError:
                    return Outcome.SEND_TIMEOUT


class EventStreamWriter:
    """The event stream: the response head at once, then each frame as its own body message."""

    heartbeat = True
    from_producer = True

    def __init__(self, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.headers = [*STREAM_HEADERS, *(headers or [])]

    async def begin(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})

    async def write(self, send: Send, entry: Entry) -> None:
        await send({"type": "http.response.body", "body": entry[2], "more_body": True})

    async def end(self, send: Send) -> None:
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _retry_after_header(seconds: Any) -> dict[str, str]:
    """Retry-After in whole seconds, only for a finite value; at most an hour."""
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return {}
    return {"retry-after": str(min(3600, max(1, math.ceil(seconds))))}


class Collector:
    """The buffered answer, from the same events as the stream: `response` is the chat text,
    `reasoning` the thinking text (never part of `response`), then the scenario, the finish
    reason, the usage and the number of repair rounds."""

    def __init__(self, intent: str) -> None:
        self.intent = intent
        self.parts: list[str] = []
        self.thinking: list[str] = []
        self.scenario: dict[str, Any] | None = None
        self.changes: list[dict[str, Any]] = []
        self.error: dict[str, Any] | None = None
        self.done: Done | None = None

    def feed(self, event: Event) -> None:
        match event:
            case Chat():
                self.parts.append(event.content)
            case Reasoning():
                self.thinking.append(event.content)
            case Repair():
                self.parts.clear()  # the answer that did not apply; its repair follows
                self.scenario, self.changes = None, []
            case Scenario():
                self.scenario, self.changes = event.scenario, event.changes
            case Error():
                self.error = event.to_dict()
            case Done():
                self.done = event

    def result(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(status, body, headers)."""
        done = self.done
        tail = {
            "finish_reason": done.finish_reason if done else None,
            "usage": done.usage if done else None,
            "repairs": done.repairs if done else 0,
        }
        response, reasoning = "".join(self.parts), "".join(self.thinking)
        if self.error is None:
            return 200, {"response": response, "reasoning": reasoning, "intent": self.intent,
                         "scenario": self.scenario, "changes": self.changes, **tail}, {}
        body = {"error": self.error, "response": response, "reasoning": reasoning, "intent": self.intent, **tail}
        return AGENT_ERROR_STATUS.get(self.error["code"], 502), body, _retry_after_header(self.error.get("retry_after"))


class JsonWriter:
    """The buffered route: nothing is written until `done`, then one JSON object."""

    heartbeat = False
    from_producer = True

    def __init__(self, intent: str) -> None:
        self.collector = Collector(intent)

    async def begin(self, send: Send) -> None:
        pass

    async def write(self, send: Send, entry: Entry) -> None:
        event = entry[1]
        assert event is not None  # the buffered route reads only runs of this process
        self.collector.feed(event)

    async def end(self, send: Send) -> None:
        status, body, headers = self.collector.result()
        payload = json.dumps(body, ensure_ascii=False).encode()
        raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        raw_headers += [(k.encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": payload, "more_body": False})


async def frames_only(frames: AsyncGenerator[bytes, None]) -> AsyncGenerator[Entry, None]:
    """A shared log's frames (another process's run) as entries: bytes only."""
    try:
        async for data in frames:
            yield 0, None, data
    finally:
        await frames.aclose()
