"""One request, start to finish: an async generator of events (agent/events.py).

    start -> (reasoning | chat | scenario_delta | scenario_patch | repair)* -> [scenario] -> [error] -> done

`done` is always the last event, after an error too. Each model answer's upstream stream is
closed in exactly one place (the `finally` around the token loop), whatever ends it: the last
delta, an error, the local output limit, the consumer closing this generator (client gone),
or cancellation (shutdown). A repair round opens a second answer and closes it the same way.

The token loop is the hot path: one iteration per upstream delta, one event out per delta
(two in a patch block: the raw text, and an operation once one is complete). Everything
else (the prompt, the block's validation, the summary) happens once per answer.
"""

from __future__ import annotations

import logging
import time
from typing import Any, AsyncIterator

from agent import errors, machine
from agent.events import Chat, Done, Event, Reasoning, Repair, Scenario, ScenarioDelta, ScenarioPatch, Start
from agent.intents import INTENTS
from agent.model import Finish, Model, Thinking
from agent.patch import PatchPreview
from agent.prompts import Prompt, build_prompt, build_repair_prompt
from agent.request import AgentRequest
from agent.route import route
from agent.scenario import InvalidScenario, described_diff, pick_block, requested_removals, validate_created, validate_modified
from agent.splitter import CHAT, Piece, Splitter

log = logging.getLogger("scenario_agent.run")

# The local output limit: an upstream that ignores max_tokens is cut off once the answer is
# clearly past it. Deltas are about one token each; characters / 8 is a generous token count
# for any text (English averages about 4 characters a token).
_LIMIT_SLACK_DELTAS = 16
_CHARS_PER_TOKEN_CEILING = 8


class Run:
    def __init__(
        self,
        request: AgentRequest,
        model: Model,
        request_id: str,
        max_output_tokens: int,
        *,
        send_reasoning: bool = True,
        repair_attempts: int = 1,
    ) -> None:
        self.request = request
        self.model = model
        self.request_id = request_id
        self.max_output_tokens = max_output_tokens
        self.send_reasoning = send_reasoning
        self.repair_attempts = max(0, repair_attempts)
        self.machine = machine.Machine()
        self.intent = route(request.mode, request.message, request.scenario)
        self.t0 = time.perf_counter()
        self.ttft_ms: float | None = None
        self.first_reasoning_ms: float | None = None
        self.deltas = 0
        self.reasoning_deltas = 0
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.repairs = 0
        self.error_code: str | None = None
        # Set by the server before it cancels the run (e.g. "server_shutdown"), so the
        # machine records a failure rather than a client cancel.
        self.stop_code: str | None = None

    def _ms(self) -> float:
        return round((time.perf_counter() - self.t0) * 1000, 1)

    def _done(self, finish_reason: str) -> Done:
        self.finish_reason = finish_reason
        timings = {"ttft_ms": self.ttft_ms, "first_reasoning_ms": self.first_reasoning_ms, "total_ms": self._ms()}
        return Done(finish_reason, self.usage, timings, self.repairs)

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
            block_kind = INTENTS[self.intent].block
            prompt = build_prompt(self.intent, req.message, req.scenario, req.history)
            limit = self.max_output_tokens
            # Past these, the upstream ignored MAX_OUTPUT_TOKENS: the answer is cut off here.
            max_deltas, max_chars = limit + _LIMIT_SLACK_DELTAS, limit * _CHARS_PER_TOKEN_CEILING
            while True:  # one pass per model answer: the first, then each repair round
                fsm.fire("open")
                splitter = Splitter() if block_kind is not None else None
                patch = _Patch(req.scenario) if block_kind == "patch" else None
                answer: list[str] = []  # the raw answer text, for a repair request
                finish: Finish | None = None
                error: errors.AgentError | None = None
                deltas = chars = 0
                upstream = self.model.stream(prompt, limit)
                try:
                    # The hot loop: one iteration per upstream delta, one event out per delta.
                    async for item in upstream:
                        cls = item.__class__
                        if cls is str:
                            if self.ttft_ms is None:
                                self.ttft_ms = self._ms()
                            if splitter is None:
                                yield Chat(item)  # type: ignore[arg-type]
                            else:
                                answer.append(item)  # type: ignore[arg-type]
                                for event in _events_of(splitter.feed(item), patch):  # type: ignore[arg-type]
                                    yield event
                        elif cls is Thinking:
                            if self.first_reasoning_ms is None:
                                self.first_reasoning_ms = self._ms()
                                if not self.send_reasoning:
                                    yield Reasoning("", withheld=True)
                            self.reasoning_deltas += 1
                            if self.send_reasoning:
                                yield Reasoning(item)  # type: ignore[arg-type]
                        else:
                            finish = item  # type: ignore[assignment]
                            continue
                        deltas += 1
                        chars += len(item)  # type: ignore[arg-type]
                        if deltas > max_deltas or chars > max_chars:
                            finish = Finish("length", None)  # stop here, as the upstream should have
                            break
                except errors.AgentError as exc:
                    error = exc
                except Exception:
                    log.exception("run %s failed", self.request_id)
                    error = errors.internal()
                finally:
                    self.deltas += deltas  # kept current when the client leaves mid-answer too
                    await upstream.aclose()  # the one place each answer's upstream is released

                if error is None and finish is None:
                    error = errors.upstream_interrupted()  # a model stream must end with a Finish
                if finish is not None:
                    self._add_usage(finish.usage, prompt, deltas)
                if error is not None:
                    break
                assert finish is not None
                fsm.fire("finish")
                if finish.reason == "content_filter":
                    error = errors.content_filtered()  # after the text so far, which the client keeps
                    break
                if splitter is None:
                    fsm.fire("complete")
                    yield self._done(finish.reason)
                    return
                for event in _events_of(splitter.flush(), patch):
                    yield event
                try:
                    yield self._result(splitter, patch)
                except _NoResult as exc:
                    if finish.reason == "length":
                        error = errors.output_truncated()  # a longer answer, not another try, is what helps
                        break
                    if self.repairs >= self.repair_attempts:
                        error = errors.invalid_scenario(exc.reason)
                        break
                    self.repairs += 1
                    fsm.fire("repair")
                    yield Repair(self.repairs, exc.reason)
                    prompt = build_repair_prompt(prompt, "".join(answer), exc.reason)
                    continue
                fsm.fire("complete")
                yield self._done(finish.reason)
                return

            fsm.fire("fail")
            self.error_code = error.code
            yield error.event()
            yield self._done("error")
        finally:
            if not fsm.finished:
                fsm.fire("fail" if self.stop_code else "cancel")
            if log.isEnabledFor(logging.DEBUG):
                log.debug("run %s trace %s", self.request_id, fsm.trace)

    def _result(self, splitter: Splitter, patch: _Patch | None) -> Scenario:
        """The answer's scenario, validated, with its changes in words. Raises _NoResult with a
        reason precise enough for a repair request. Any failure of any parser is caught here:
        model output never crashes a run."""
        old = self.request.scenario
        try:
            if patch is not None and patch.block is not None:
                scenario, changes = patch.finish(requested_removals(self.request.message, old))
                return Scenario(scenario, changes)
            new = pick_block(splitter.blocks)
            if old is None or patch is None:  # create: a new scenario, whatever was loaded before
                validate_created(new)
                return Scenario(new, [{"op": "replace", "path": "", "text": "created the scenario"}])
            validate_modified(old, new, requested_removals(self.request.message, old))
            return Scenario(new, described_diff(old, new))
        except InvalidScenario as exc:
            raise _NoResult(str(exc)) from None
        except Exception as exc:  # RecursionError and other surprises: never a crash, never a 500
            log.warning("run %s: the model's block could not be read (%s)", self.request_id, exc.__class__.__name__)
            raise _NoResult("the block could not be read") from None

    def _add_usage(self, usage: dict[str, Any] | None, prompt: Prompt, deltas: int) -> None:
        """Add one answer's usage to the run's; count it when the server sent none."""
        if not usage:
            prompt_tokens = sum(len(m["content"]) for m in prompt.messages) // 4 + 1
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": deltas, "total_tokens": prompt_tokens + deltas, "estimated": True}
        if self.usage is None:
            self.usage = dict(usage)
            return
        total = self.usage
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            if isinstance(usage.get(key), int):
                total[key] = total.get(key, 0) + usage[key]
        details = usage.get("completion_tokens_details")
        if isinstance(details, dict) and isinstance(details.get("reasoning_tokens"), int):
            mine = total.setdefault("completion_tokens_details", {})
            mine["reasoning_tokens"] = mine.get("reasoning_tokens", 0) + details["reasoning_tokens"]
        if usage.get("estimated"):
            total["estimated"] = True

    def summary(self) -> dict[str, Any]:
        """The fields of the one log line per request (and of the metrics, once per request)."""
        usage = self.usage or {}
        details = usage.get("completion_tokens_details")
        return {
            "request_id": self.request_id,
            "intent": self.intent,
            "provider": self.model.provider,
            "model": self.model.model,
            "state": self.machine.state,
            "error_code": self.error_code,
            "finish_reason": self.finish_reason,
            "ttft_ms": self.ttft_ms,
            "first_reasoning_ms": self.first_reasoning_ms,
            "tokens": self.deltas,
            "reasoning_tokens": details.get("reasoning_tokens", self.reasoning_deltas) if isinstance(details, dict) else self.reasoning_deltas,
            "usage": self.usage,
            "repairs": self.repairs,
            "duration_ms": self._ms(),
        }


def _events_of(pieces: list[Piece], patch: _Patch | None) -> list[Event]:
    """A modify/create delta's splitter pieces as events: prose as `chat`, block text as
    `scenario_delta`, and, inside a patch block, each operation it completed as `scenario_patch`."""
    out: list[Event] = []
    for piece in pieces:
        if piece[0] == CHAT:
            out.append(Chat(piece[1]))
            continue
        out.append(ScenarioDelta(piece[1]))
        block = piece.block
        if patch is not None and block is not None and block.info == "patch":
            out.extend(patch.feed(block, piece[1]))
    return out


class _NoResult(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Patch:
    """A modify's first ```patch block, previewed as it streams (agent/patch.py: PatchPreview):
    each operation is applied to a working copy the moment it is complete and sent as
    `scenario_patch`. The first failure ends the preview; `finish` then reports it, so the
    result is all operations or none."""

    def __init__(self, scenario: dict[str, Any] | None) -> None:
        self._preview = PatchPreview(scenario if scenario is not None else {})
        self.block: Any = None  # the block being previewed; later patch blocks are not read
        self._failure: InvalidScenario | None = None

    def feed(self, block: Any, text: str) -> list[ScenarioPatch]:
        if self.block is None:
            self.block = block
        if block is not self.block or self._failure is not None:
            return []
        try:
            return [ScenarioPatch(op, index) for index, op in self._preview.feed(text)]
        except InvalidScenario as exc:
            self._failure = exc
        except Exception as exc:  # never let model output escape the run
            self._failure = InvalidScenario(f"the patch could not be read ({exc.__class__.__name__})")
        return []

    def finish(self, removals: set[str]) -> tuple[dict[str, Any], list[dict[str, str]]]:
        if self._failure is not None:
            raise self._failure
        if self.block is not None and self.block.overflow:
            raise InvalidScenario("the patch block is larger than 64 KiB")
        return self._preview.finish(removals)
