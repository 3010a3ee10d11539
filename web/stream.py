"""Serving a run: as an event stream, or drained into one JSON object (the same events).

Like Starlette's StreamingResponse, these are raw ASGI: `http.response.start`, then one
`http.response.body` message per event, with a task listening for `http.disconnect`
beside the writer. Unlike it, the stream also

- sends `: ping` when nothing was written for HEARTBEAT_SECONDS (PaaS routers drop
  idle streams),
- gives up on a client that stops reading: a write stuck for SEND_TIMEOUT_SECONDS ends
  the stream and releases the upstream,
- on server shutdown, ends with `error` (server_shutdown) and `done`.

Those three and the disconnect listener share one `_watch` task, which waits for
`http.disconnect` and between waits (about once a second) checks the rest, so a stream
is two tasks and the per-token path is only: encode, stamp the time, send.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any, Callable

from starlette.types import Receive, Scope, Send

from agent import errors
from agent.events import PING, Chat, Done, Error, Reasoning, Repair, Scenario, encode
from agent.run import Run
from web.errors import AGENT_ERROR_STATUS

STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx and some PaaS routers buffer otherwise
]


async def wait_disconnect(receive: Receive) -> None:
    """Returns when the client has gone (`http.disconnect`); other messages are ignored."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def settle(tasks: set[asyncio.Task]) -> None:
    """Cancel the tasks still running and wait until they have all ended."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class Outcome:
    COMPLETE, DISCONNECTED, SEND_TIMEOUT, SHUTDOWN = "complete", "disconnected", "send_timeout", "shutdown"


class EventStreamResponse:
    def __init__(self, run: Run, *, heartbeat: float, send_timeout: float, grace: float, shutdown: asyncio.Event, on_close: Callable[[str], None]) -> None:
        self.run = run
        self.heartbeat = heartbeat
        self.send_timeout = send_timeout
        self.grace = grace
        self.shutdown = shutdown
        self.on_close = on_close
        self._send_started = 0.0  # loop time when the current write began; 0 when none is pending
        self._last_write = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        outcome = Outcome.DISCONNECTED
        try:
            await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
            self._last_write = asyncio.get_running_loop().time()
            writer = asyncio.create_task(self._write_events(send))
            watcher = asyncio.create_task(self._watch(receive, send))
            done, _ = await asyncio.wait({writer, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if writer in done:
                outcome = Outcome.COMPLETE
            else:
                outcome = watcher.result()
                if outcome == Outcome.SHUTDOWN:
                    self.run.stop_code = "server_shutdown"
            await settle({writer, watcher} - done)
            if outcome == Outcome.COMPLETE:
                writer.result()  # re-raise a failure of the writer itself
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            elif outcome == Outcome.SHUTDOWN:
                closing = b"".join(encode(e) for e in self.run.stop_events(errors.server_shutdown()))
                try:
                    # Bounded by the grace period: a client that stopped reading cannot hold up the exit.
                    async with asyncio.timeout(self.grace):
                        await send({"type": "http.response.body", "body": closing, "more_body": False})
                except TimeoutError:
                    pass
            # DISCONNECTED: nobody to write to. SEND_TIMEOUT: returning without completing makes
            # uvicorn close the connection; the run and its upstream are already closed.
        finally:
            self.on_close(outcome)

    async def _write_events(self, send: Send) -> None:
        loop_time = asyncio.get_running_loop().time
        events = self.run.events()
        try:
            async for event in events:
                self._send_started = now = loop_time()
                await send({"type": "http.response.body", "body": encode(event), "more_body": True})
                self._send_started = 0.0
                self._last_write = now
        finally:
            # Cancelled mid-send, the generator is suspended at a yield: close it so its
            # finally releases the upstream now, not whenever it is garbage collected.
            await events.aclose()

    async def _watch(self, receive: Receive, send: Send) -> str:
        """Wait for the client to leave; between waits (about once a second), check the rest."""
        loop_time = asyncio.get_running_loop().time
        tick = max(0.01, min(1.0, self.heartbeat / 2, self.send_timeout / 2))
        while True:
            try:
                async with asyncio.timeout(tick):
                    await wait_disconnect(receive)
                return Outcome.DISCONNECTED
            except TimeoutError:
                pass
            if self.shutdown.is_set():
                return Outcome.SHUTDOWN
            now = loop_time()
            if self._send_started:
                if now - self._send_started > self.send_timeout:
                    return Outcome.SEND_TIMEOUT
            elif now - self._last_write >= self.heartbeat:
                self._last_write = now
                try:
                    async with asyncio.timeout(self.send_timeout):
                        await send({"type": "http.response.body", "body": PING, "more_body": True})
                except TimeoutError:
                    return Outcome.SEND_TIMEOUT


def _retry_after_header(seconds: Any) -> dict[str, str]:
    """Retry-After in whole seconds, only for a finite value; at most an hour."""
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return {}
    return {"retry-after": str(min(3600, max(1, math.ceil(seconds))))}


async def collect(run: Run) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Drain the run's events into the buffered answer: (status, body, headers).

    The same events as the stream, so the same token path: `response` is the chat text,
    `reasoning` the thinking text (never part of `response`), then the scenario, the
    finish reason, the usage and the number of repair rounds.
    """
    parts: list[str] = []
    thinking: list[str] = []
    result: dict[str, Any] = {
        "response": "",
        "reasoning": "",
        "intent": run.intent,
        "scenario": None,
        "changes": [],
        "finish_reason": None,
        "usage": None,
        "repairs": 0,
    }
    error: dict[str, Any] | None = None
    events = run.events()
    try:
        async for event in events:
            kind = event.__class__
            if kind is Chat:
                parts.append(event.content)  # type: ignore[attr-defined]
            elif kind is Reasoning:
                thinking.append(event.content)  # type: ignore[attr-defined]
            elif kind is Repair:
                parts.clear()  # the answer that did not apply; its repair follows
                result["scenario"], result["changes"] = None, []
            elif kind is Scenario:
                result["scenario"], result["changes"] = event.scenario, event.changes  # type: ignore[attr-defined]
            elif kind is Error:
                error = event.to_dict()
            elif kind is Done:
                result["finish_reason"] = event.finish_reason  # type: ignore[attr-defined]
                result["usage"] = event.usage  # type: ignore[attr-defined]
                result["repairs"] = event.repairs  # type: ignore[attr-defined]
    finally:
        await events.aclose()
    result["response"] = "".join(parts)
    result["reasoning"] = "".join(thinking)
    if error is None:
        return 200, result, {}
    body = {"error": error, "response": result["response"], "reasoning": result["reasoning"], "intent": run.intent,
            "finish_reason": result["finish_reason"], "usage": result["usage"], "repairs": result["repairs"]}
    return AGENT_ERROR_STATUS.get(error["code"], 502), body, _retry_after_header(error.get("retry_after"))


class BufferedRunResponse:
    """The buffered endpoint: the same run, collected; abandoned if the client leaves."""

    def __init__(self, run: Run, *, shutdown: asyncio.Event, on_close: Callable[[str], None]) -> None:
        self.run = run
        self.shutdown = shutdown
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        outcome = Outcome.DISCONNECTED
        try:
            collector = asyncio.create_task(collect(self.run))
            listener = asyncio.create_task(wait_disconnect(receive))
            stopper = asyncio.create_task(self.shutdown.wait())
            done, _ = await asyncio.wait({collector, listener, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if collector in done:
                outcome = Outcome.COMPLETE
            elif stopper in done:
                outcome = Outcome.SHUTDOWN
                self.run.stop_code = "server_shutdown"
            await settle({collector, listener, stopper} - done)
            if outcome == Outcome.COMPLETE:
                status, body, headers = collector.result()
            elif outcome == Outcome.SHUTDOWN:
                error = self.run.stop_events(errors.server_shutdown())[0].to_dict()
                status, body, headers = 503, {"error": error}, {"retry-after": "2"}
            else:
                return
            payload = json.dumps(body, ensure_ascii=False).encode()
            raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
            raw_headers += [(k.encode(), v.encode()) for k, v in headers.items()]
            await send({"type": "http.response.start", "status": status, "headers": raw_headers})
            await send({"type": "http.response.body", "body": payload, "more_body": False})
        finally:
            self.on_close(outcome)
