"""One request, start to finish: an async generator of events (agent/events.py).

    start -> (reasoning | chat | scenario_delta | scenario_patch | repair)* -> [scenario] -> [error] -> done

Two loops, each on one screen:

- the answer loop (`_answer`): one model answer. Deltas in, events out, and at the end
  either a `Finish` or an error, kept in the `Answer`. It is the hot path: one iteration
  per upstream delta, one event out per delta (two in a patch block: the raw text, and an
  operation once one is complete).
- the run loop (`events`): open an answer, finish it, and for a block that did not apply,
  ask once more (a repair round); then `done`. It moves the machine (agent/machine.py).

`done` is always the last event, after an error too. Each answer's upstream stream is
closed in exactly one place (the `finally` of the answer loop), whatever ends it: the last
delta, an error, the local output limit, the consumer closing this generator (a reader
gone, Stop), or cancellation (shutdown).
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
from agent.prompts import Prompt, build_prompt, build_repair_prompt, estimate_tokens
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


class Answer:
    """One model answer's state: what the answer loop saw, and how it ended."""

    def __init__(self, block_kind: str | None, scenario: dict[str, Any] | None, max_scenario_bytes: int) -> None:
        self.splitter = Splitter() if block_kind is not None else None
        self.patch = _Patch(scenario, max_scenario_bytes) if block_kind == "patch" else None
        self.parts: list[str] = []  # the raw answer text, for a repair request
        self.deltas = 0
        self.chars = 0  # answer and reasoning text, for the local output limit
        self.text_chars = 0  # answer text only: an answer with none is empty
        self.finish: Finish | None = None
        self.error: errors.AgentError | None = None
        self.repair_prompt: Prompt | None = None  # set when a repair round follows

    def events_of(self, pieces: list[Piece]) -> list[Event]:
        """A block answer's splitter pieces as events: prose as `chat`, block text as
        `scenario_delta`, and, inside a patch block, each operation it completed as `scenario_patch`."""
        out: list[Event] = []
        for piece in pieces:
            if piece[0] == CHAT:
                out.append(Chat(piece[1]))
                continue
            out.append(ScenarioDelta(piece[1]))
            block = piece.block
            if self.patch is not None and block is not None and block.info == "patch":
                out.extend(self.patch.feed(block, piece[1]))
        return out


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
        max_scenario_bytes: int = 64 * 1024,
    ) -> None:
        self.request = request
        self.model = model
        self.request_id = request_id
        self.max_output_tokens = max_output_tokens
        self.send_reasoning = send_reasoning
        self.repair_attempts = max(0, repair_attempts)
        self.max_scenario_bytes = max_scenario_bytes
        self.machine = machine.Machine()
        self.intent = route(request.mode, request.message, request.scenario)
        self.prompt = build_prompt(self.intent, request.message, request.scenario, request.history)
        self.t0 = time.perf_counter()
        self.ttft_ms: float | None = None
        self.first_reasoning_ms: float | None = None
        self.deltas = 0
        self.reasoning_deltas = 0
        self.usage: dict[str, Any] | None = None
        # Answers whose upstream was closed before it said how it ended (no usage from it):
        # it may have produced up to the output limit. The budget charges them so.
        self.cut_answers: list[Prompt] = []
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
        """The closing frames for a run ended from outside (Stop, no reader left, shutdown)."""
        self.error_code = error.code
        return [error.event(), self._done("error")]

    # -- the run loop ---------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[Event]:
        fsm = self.machine
        try:
            fsm.fire("route")
            yield Start(self.request_id, self.intent, self.model.model, self.model.provider)
            prompt: Prompt | None = self.prompt
            while prompt is not None:  # one pass per model answer: the first, then each repair round
                fsm.fire("open")
                answer = Answer(INTENTS[self.intent].block, self.request.scenario, self.max_scenario_bytes)
                async for event in self._answer(prompt, answer):
                    yield event
                for event in self._end_answer(prompt, answer):
                    yield event
                prompt = answer.repair_prompt
        finally:
            if not fsm.finished:
                fsm.fire("fail" if self.stop_code else "cancel")
            if log.isEnabledFor(logging.DEBUG):
                log.debug("run %s trace %s", self.request_id, fsm.trace)

    def _end_answer(self, prompt: Prompt, answer: Answer) -> list[Event]:
        """After an answer's last delta: the closing events, and the machine moved. For a
        repair round, `answer.repair_prompt` is set and the run loop opens another answer."""
        fsm = self.machine
        if answer.finish is not None:
            self._add_usage(answer.finish.usage, prompt, answer.deltas)
        out: list[Event] = []
        if answer.error is None and answer.splitter is not None:
            out = answer.events_of(answer.splitter.flush())
        error = answer.error
        if error is None:
            fsm.fire("finish")
            match self._conclude(answer):
                case errors.AgentError() as error:
                    pass
                case Repair() as repair:
                    fsm.fire("repair")
                    answer.repair_prompt = build_repair_prompt(prompt, "".join(answer.parts), repair.reason)
                    return [*out, repair]
                case Scenario() as result:
                    out.append(result)
        if error is None:
            assert answer.finish is not None
            fsm.fire("complete")
            return [*out, self._done(answer.finish.reason)]
        fsm.fire("fail")
        self.error_code = error.code
        return [*out, error.event(), self._done("error")]

    def _conclude(self, answer: Answer) -> errors.AgentError | Repair | Scenario | None:
        """What a finished answer comes to: an error, a repair round, a scenario, or (prose) nothing more."""
        finish = answer.finish
        assert finish is not None
        if finish.reason == "content_filter":
            return errors.content_filtered()  # after the text so far, which the client keeps
        splitter = answer.splitter
        if splitter is None:
            return errors.empty_answer() if answer.text_chars == 0 else None
        try:
            return self._result(splitter, answer.patch)
        except _NoResult as exc:
            if finish.reason == "length":  # a longer answer, not another try, is what helps
                return errors.output_truncated(block_begun=splitter.found_block)
            if self.repairs >= self.repair_attempts:
                return errors.invalid_scenario(exc.reason)
            self.repairs += 1
            return Repair(self.repairs, exc.reason)

    # -- the answer loop ------------------------------------------------------------------------

    async def _answer(self, prompt: Prompt, answer: Answer) -> AsyncIterator[Event]:
        """One model answer: its deltas as events; how it ended goes into `answer`."""
        limit = self.max_output_tokens
        # Past these, the upstream ignored MAX_OUTPUT_TOKENS: the answer is cut off here.
        max_deltas, max_chars = limit + _LIMIT_SLACK_DELTAS, limit * _CHARS_PER_TOKEN_CEILING
        splitter = answer.splitter
        upstream = self.model.stream(prompt, limit)
        try:
            async for item in upstream:
                match item:
                    case Thinking():
                        for event in self._reasoning(item, answer):
                            yield event
                    case str():
                        if self.ttft_ms is None:
                            self.ttft_ms = self._ms()
                        answer.chars += len(item)
                        answer.text_chars += len(item)
                        if splitter is None:
                            yield Chat(item)
                        else:
                            answer.parts.append(item)
                            for event in answer.events_of(splitter.feed(item)):
                                yield event
                    case Finish():
                        answer.finish = item
                        continue
                answer.deltas += 1
                if answer.deltas > max_deltas or answer.chars > max_chars:
                    answer.finish = Finish("length", None)  # stop here, as the upstream should have
                    break
        except errors.AgentError as exc:
            answer.error = exc
        except Exception:
            log.exception("run %s failed", self.request_id)
            answer.error = errors.internal()
        finally:
            self.deltas += answer.deltas  # kept current when the reader leaves mid-answer too
            if answer.finish is None:
                self.cut_answers.append(prompt)
                answer.error = answer.error or errors.upstream_interrupted()  # a model stream must end with a Finish
            await upstream.aclose()  # the one place each answer's upstream is released

    def _reasoning(self, item: Thinking, answer: Answer) -> list[Event]:
        """A thinking delta's events: itself, or once, with SEND_REASONING off, that it is withheld."""
        answer.chars += len(item)
        self.reasoning_deltas += 1
        if self.first_reasoning_ms is None:
            self.first_reasoning_ms = self._ms()
            if not self.send_reasoning:
                return [Reasoning("", withheld=True)]
        return [Reasoning(item)] if self.send_reasoning else []

    # -- results and counts -----------------------------------------------------------------------

    def _result(self, splitter: Splitter, patch: _Patch | None) -> Scenario:
        """The answer's scenario, validated, with its changes in words. Raises _NoResult with a
        reason precise enough for a repair request. Any failure of any parser is caught here:
        model output never crashes a run."""
        old = self.request.scenario
        try:
            if patch is not None and patch.block is not None:
                scenario, changes = patch.finish(requested_removals(self.request.message, old))
                return Scenario(scenario, changes)
            limit = self.max_scenario_bytes
            new = pick_block(splitter.blocks, limit)
            if old is None or patch is None:  # create: a new scenario, whatever was loaded before
                validate_created(new, limit)
                return Scenario(new, [{"op": "replace", "path": "", "text": "created the scenario"}])
            validate_modified(old, new, requested_removals(self.request.message, old), max_bytes=limit)
            return Scenario(new, described_diff(old, new))
        except InvalidScenario as exc:
            raise _NoResult(str(exc)) from None
        except Exception as exc:  # RecursionError and other surprises: never a crash, never a 500
            log.warning("run %s: the model's block could not be read (%s)", self.request_id, exc.__class__.__name__)
            raise _NoResult("the block could not be read") from None

    def _add_usage(self, usage: dict[str, Any] | None, prompt: Prompt, deltas: int) -> None:
        """Add one answer's usage to the run's; count it when the server sent none."""
        if not usage:
            prompt_tokens = estimate_tokens(prompt)
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

    def charged_tokens(self) -> int:
        """What the run cost the upstream, for the budget: the usage of every answer that ended
        (the server's, or counted), plus, for each answer closed before its end, its prompt
        estimate and the output limit (the upstream may go on producing after the close)."""
        used = int((self.usage or {}).get("total_tokens") or 0)
        return used + sum(estimate_tokens(prompt) + self.max_output_tokens for prompt in self.cut_answers)

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


class _NoResult(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Patch:
    """A modify's first ```patch block, previewed as it streams (agent/patch.py: PatchPreview):
    each operation is applied to a working copy the moment it is complete and sent as
    `scenario_patch`. The first failure ends the preview; `finish` then reports it, so the
    result is all operations or none."""

    def __init__(self, scenario: dict[str, Any] | None, max_bytes: int) -> None:
        self._preview = PatchPreview(scenario if scenario is not None else {}, max_bytes=max_bytes)
        self._max_bytes = max_bytes
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
            raise InvalidScenario(f"the patch block is larger than {self._max_bytes // 1024} KiB")
        return self._preview.finish(removals)
