"""One request, start to finish: an async generator of events.

    start -> (chat | scenario_delta)* -> [scenario] -> [error] -> done

`done` is always the last event, after an error too. The upstream stream is closed in
exactly one place (the `finally` around the token loop), whatever ends the run: the last delta, an error,
the consumer closing this generator (client gone), or cancellation (shutdown).
"""

from __future__ import annotations

import logging
import time
from typing import Any, AsyncIterator

from agent import errors, machine
from agent.events import Chat, Done, Event, Scenario, ScenarioDelta, Start
from agent.model import Finish, Model
from agent.prompts import build_prompt
from agent.request import AgentRequest
from agent.route import route
from agent.scenario import InvalidScenario, diff, parse_block
from agent.splitter import CHAT, Splitter

log = logging.getLogger("scenario_agent.run")


def _piece(kind: str, text: str) -> Event:
    """A splitter piece as an event."""
    return Chat(text) if kind == CHAT else ScenarioDelta(text)


class Run:
    def __init__(self, request: AgentRequest, model: Model, request_id: str, max_output_tokens: int, **options: Any) -> None:
        self.request = request
        self.model = model
        self.request_id = request_id
        self.max_output_tokens = max_output_tokens
        self.machine = machine.Machine()
        self.intent = route(request.mode, request.message, request.scenario)
        self.t0 = time.perf_counter()
        self.ttft_ms: float | None = None
        self.deltas = 0
        self.usage: dict[str, int] | None = None
        self.error_code: str | None = None
        # Set by the server before it cancels the run (e.g. "server_shutdown"), so the
        # machine records a failure rather than a client cancel.
        self.stop_code: str | None = None

    def _ms(self) -> float:
        return round((time.perf_counter() - self.t0) * 1000, 1)

    def _done(self, finish_reason: str) -> Event:
        return Done(finish_reason, self.usage, {"ttft_ms": self.ttft_ms, "total_ms": self._ms()})

    def stop_events(self, error: errors.AgentError) -> list[Event]:
        """The closing frames for a run the server ended from outside (shutdown)."""
        self.error_code = error.code
        return [error.event(), self._done("error")]

    async def events(self) -> AsyncIterator[Event]:
        fsm = self.machine
        try:
            fsm.fire("route")
            yield Start(self.request_id, self.intent, self.model.model, self.model.provider)
            req = self.request
            prompt = build_prompt(self.intent, req.message, req.scenario, req.history)
            splitter = Splitter() if self.intent in ("modify", "create") else None
            finish: Finish | None = None
            error: errors.AgentError | None = None
            fsm.fire("open")
            upstream = self.model.stream(prompt, self.max_output_tokens)
            try:
                # The hot loop: one iteration per upstream delta, one event out per delta.
                async for item in upstream:
                    if item.__class__ is not str:
                        finish = item  # type: ignore[assignment]
                        continue
                    if self.ttft_ms is None:
                        self.ttft_ms = self._ms()
                    self.deltas += 1
                    if splitter is None:
                        yield Chat(item)
                    else:
                        for kind, text in splitter.feed(item):
                            yield _piece(kind, text)
            except errors.AgentError as exc:
                error = exc
            except Exception:
                log.exception("run %s failed", self.request_id)
                error = errors.internal()
            finally:
                await upstream.aclose()  # the one place the upstream is released

            if error is None and finish is None:
                error = errors.upstream_interrupted()  # a model stream must end with a Finish
            if error is None:
                assert finish is not None
                self.usage = finish.usage
                fsm.fire("finish")
                if splitter is not None:
                    for kind, text in splitter.flush():
                        yield _piece(kind, text)
                    try:
                        scenario = parse_block(splitter.scenario_text)
                    except InvalidScenario as exc:
                        error = errors.invalid_scenario(str(exc))
                    else:
                        changes = diff(req.scenario, scenario) if req.scenario is not None else [{"op": "replace", "path": ""}]
                        yield Scenario(scenario, changes)
            if error is not None:
                fsm.fire("fail")
                self.error_code = error.code
                yield error.event()
                yield self._done("error")
                return
            fsm.fire("complete")
            yield self._done(finish.reason)
        finally:
            if not fsm.finished:
                fsm.fire("fail" if self.stop_code else "cancel")
            if log.isEnabledFor(logging.DEBUG):
                log.debug("run %s trace %s", self.request_id, fsm.trace)

    def summary(self) -> dict[str, Any]:
        """The fields of the one log line per request."""
        return {
            "request_id": self.request_id,
            "intent": self.intent,
            "provider": self.model.provider,
            "model": self.model.model,
            "state": self.machine.state,
            "error_code": self.error_code,
            "ttft_ms": self.ttft_ms,
            "tokens": self.deltas,
            "duration_ms": self._ms(),
        }
