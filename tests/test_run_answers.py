"""agent/run.py as scripts: a scripted model's deltas in, the whole event list out.

Thinking, honest endings, estimated usage, the local output limit, the patch preview and the
repair round. Each test feeds one answer (or two, for a repair) and asserts on every event.
"""

from __future__ import annotations

import asyncio
import json

from agent.model import Finish, Thinking
from agent.request import AgentRequest
from agent.run import Run

SCENARIO = {
    "title": "Flood at the depot",
    "summary": "Water rises.",
    "roles": [{"name": "Commander", "description": "Leads."}, {"name": "Medic", "description": "Treats."}],
    "steps": [{"title": "Alarm", "description": "Sound it."}, {"title": "Evacuate", "description": "Leave."}],
    "objectives": ["Keep everyone safe"],
    "custom": {"kept": True},
}


class Script:
    """A model that answers each request with the next script: a list of deltas and a Finish."""

    provider, model = "scripted", "scripted-1"

    def __init__(self, *answers: list) -> None:
        self.answers = list(answers)
        self.prompts: list = []
        self.closed = 0

    async def stream(self, prompt, max_tokens):
        self.prompts.append(prompt)
        items = self.answers.pop(0)
        try:
            for item in items:
                await asyncio.sleep(0)
                yield item
        finally:
            self.closed += 1


def run(model, message="hi", mode="chat", scenario=None, max_tokens=100, **options):
    r = Run(AgentRequest(message, scenario, (), mode), model, "req-1", max_tokens, **options)

    async def go():
        return [e.to_dict() async for e in r.events()]

    return asyncio.run(go()), r


def types(events):
    return [e["type"] for e in events]


def chunks(text: str, size: int = 7) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


# -- thinking ---------------------------------------------------------------------------


def test_thinking_deltas_are_reasoning_frames_before_the_answer_and_never_chat():
    model = Script([Thinking("Let me "), Thinking("check."), "The ", "answer.", Finish("stop", None)])
    events, r = run(model)
    assert types(events) == ["start", "reasoning", "reasoning", "chat", "chat", "done"]
    assert [e["content"] for e in events[1:3]] == ["Let me ", "check."]
    assert "".join(e["content"] for e in events if e["type"] == "chat") == "The answer."
    timings = events[-1]["timings"]
    assert timings["first_reasoning_ms"] is not None and timings["first_reasoning_ms"] <= timings["ttft_ms"]
    assert r.summary()["reasoning_tokens"] == 2


def test_withheld_thinking_says_once_that_the_model_is_thinking():
    model = Script([Thinking("secret "), Thinking("plan"), "Hi.", Finish("stop", None)])
    events, _ = run(model, send_reasoning=False)
    assert types(events) == ["start", "reasoning", "chat", "done"]
    assert events[1] == {"type": "reasoning", "content": "", "withheld": True}
    assert "secret" not in json.dumps(events)


def test_a_fence_in_the_thinking_is_not_a_scenario_block():
    block = '```scenario\n{"title": "From thinking"}\n```'
    model = Script([Thinking(block), "No block here.", Finish("stop", None)])
    events, _ = run(model, message="create a scenario about a flood", mode="create", repair_attempts=0)
    assert "scenario" not in types(events)
    assert events[-2]["code"] == "invalid_scenario"


# -- endings ----------------------------------------------------------------------------


def test_a_chat_cut_by_length_keeps_its_text_and_says_length():
    events, _ = run(Script(["Part", " one", Finish("length", None)]))
    assert types(events) == ["start", "chat", "chat", "done"]
    assert events[-1]["finish_reason"] == "length"


def test_a_block_cut_by_length_is_output_truncated_naming_the_setting():
    model = Script(["Here:\n```scenario\n", '{"title": "Half', Finish("length", None)])
    events, _ = run(model, mode="create")
    assert types(events)[-2:] == ["error", "done"] and "scenario" not in types(events)
    assert events[-2]["code"] == "output_truncated" and "MAX_OUTPUT_TOKENS" in events[-2]["message"]
    assert events[-1]["finish_reason"] == "error"


def test_content_filter_is_an_error_after_the_text_so_far():
    events, _ = run(Script(["Some", " text", Finish("content_filter", None)]))
    assert types(events) == ["start", "chat", "chat", "error", "done"]
    assert events[3]["code"] == "content_filtered"


def test_missing_usage_is_counted_and_marked_estimated():
    events, _ = run(Script(["a", "b", "c", Finish("stop", None)]))
    usage = events[-1]["usage"]
    assert usage["estimated"] is True and usage["completion_tokens"] == 3
    assert usage["prompt_tokens"] > 0 and usage["total_tokens"] == usage["prompt_tokens"] + 3


def test_server_usage_is_kept_with_its_reasoning_tokens():
    usage = {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14, "completion_tokens_details": {"reasoning_tokens": 7}}
    events, r = run(Script(["a", Finish("stop", usage)]))
    assert events[-1]["usage"] == usage and r.summary()["reasoning_tokens"] == 7


def test_an_upstream_that_ignores_the_limit_is_cut_off_locally_and_closed():
    model = Script(["tok "] * 10_000 + [Finish("stop", None)])
    events, _ = run(model, max_tokens=50)
    chat = [e for e in events if e["type"] == "chat"]
    assert 50 <= len(chat) <= 50 + 16 + 1
    assert events[-1]["finish_reason"] == "length" and model.closed == 1


def test_one_huge_delta_counts_by_its_characters():
    model = Script(["x" * 100_000, "more", Finish("stop", None)])
    events, _ = run(model, max_tokens=50)
    assert [e["type"] for e in events] == ["start", "chat", "done"] and events[-1]["finish_reason"] == "length"


# -- blocks: create, hostile, modify with a whole scenario -------------------------------


def test_create_accepts_a_json_fence_whose_closing_fence_never_came():
    text = 'Made it.\n```json\n{"title": "Quay fire", "roles": [{"name": "Chief", "description": "Leads"}]}\n'
    events, _ = run(Script([*chunks(text), Finish("stop", None)]), mode="create")
    scenario = next(e for e in events if e["type"] == "scenario")
    assert scenario["scenario"]["title"] == "Quay fire" and events[-1]["finish_reason"] == "stop"


def hostile_blocks():
    yield "[" * 3000 + "]" * 3000
    yield '{"title": "x", "deep": ' + "[" * 3000 + "]" * 3000 + "}"
    yield '{"title": "\\ud800"}'
    yield '{"title": "x", "n": 1e999}'
    yield '{"title": "x", "n": ' + "9" * 20000 + "}"
    yield '{"title": "x", "n": NaN}'
    yield '{"title": "x", "title": 5}'
    yield '\ufeff{"title": 7}'


def test_hostile_blocks_end_as_invalid_scenario_then_done_never_a_crash():
    for block in hostile_blocks():
        model = Script(["```scenario\n", block, "\n```", Finish("stop", None)])
        events, r = run(model, mode="create", repair_attempts=0, max_tokens=10_000)
        assert types(events)[-2:] == ["error", "done"], block[:40]
        assert events[-2]["code"] == "invalid_scenario"
        assert r.machine.state == "failed"
        for event in events:
            json.dumps(event, ensure_ascii=False, allow_nan=False).encode()  # every frame is encodable


def test_a_modify_that_drops_keys_is_refused_naming_them():
    shrunk = {"title": "Flood", "summary": {"not": "a string"}}
    text = "```scenario\n" + json.dumps(shrunk) + "\n```"
    events, _ = run(Script([text, Finish("stop", None)]), message="rename it", mode="modify", scenario=SCENARIO, repair_attempts=0)
    assert events[-2]["code"] == "invalid_scenario"
    for key in ("roles", "steps"):
        assert key in events[-2]["message"]


# -- modify as a patch --------------------------------------------------------------------


PATCH = [
    {"op": "replace", "path": "/title", "value": "Flood at night"},
    {"op": "add", "path": "/roles/-", "value": {"name": "Journalist", "description": "Asks."}},
    {"op": "remove", "path": "/steps/1"},
]


def patch_answer(ops, size=5):
    text = "Renamed it, added a journalist and dropped a step.\n```patch\n" + json.dumps(ops, indent=1) + "\n```\n"
    return [*chunks(text, size), Finish("stop", {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30})]


def test_each_operation_streams_as_scenario_patch_then_the_scenario_with_exactly_them_applied():
    events, r = run(Script(patch_answer(PATCH)), message="rename it", mode="modify", scenario=SCENARIO)
    patches = [e for e in events if e["type"] == "scenario_patch"]
    assert [(p["index"], p["op"]) for p in patches] == list(enumerate(PATCH))
    result = next(e for e in events if e["type"] == "scenario")
    assert types(events).index("scenario") > types(events).index("scenario_patch")
    expected = json.loads(json.dumps(SCENARIO))
    expected["title"] = "Flood at night"
    expected["roles"].append({"name": "Journalist", "description": "Asks."})
    del expected["steps"][1]
    assert result["scenario"] == expected
    assert [(c["op"], c["path"]) for c in result["changes"]] == [(op["op"], op["path"]) for op in PATCH]
    assert all(isinstance(c["text"], str) and c["text"] for c in result["changes"])
    assert SCENARIO["title"] == "Flood at the depot" and len(SCENARIO["steps"]) == 2  # the request's copy untouched
    assert events[-1]["finish_reason"] == "stop" and events[-1]["repairs"] == 0
    assert r.machine.state == "done"


def test_a_failing_operation_is_repaired_once_and_the_second_answer_applies():
    bad = [{"op": "replace", "path": "/steps/9/title", "value": "Nope"}]
    good = [{"op": "replace", "path": "/steps/1/title", "value": "Leave now"}]
    model = Script(patch_answer(bad), patch_answer(good))
    events, r = run(model, message="retitle the last step", mode="modify", scenario=SCENARIO)
    kinds = types(events)
    assert kinds.count("repair") == 1 and kinds.index("repair") < kinds.index("scenario")
    repair = next(e for e in events if e["type"] == "repair")
    assert repair["attempt"] == 1 and "/steps/9/title" in repair["reason"]
    # The repair request: the same conversation, the model's answer, and the reason naming the path.
    second = model.prompts[1].messages
    assert second[: len(model.prompts[0].messages)] == model.prompts[0].messages
    assert second[-2]["role"] == "assistant" and "/steps/9/title" in second[-2]["content"]
    assert second[-1]["role"] == "user" and "/steps/9/title" in second[-1]["content"]
    result = next(e for e in events if e["type"] == "scenario")
    assert result["scenario"]["steps"][1]["title"] == "Leave now"
    done = events[-1]
    assert done["repairs"] == 1 and done["usage"]["total_tokens"] == 60  # both requests added up
    assert model.closed == 2
    assert [e for _, e, _, _ in r.machine.trace] == ["route", "open", "finish", "repair", "open", "finish", "complete"]


def test_with_repair_off_a_failing_patch_is_invalid_scenario_and_no_scenario_frame():
    bad = [{"op": "test", "path": "/title", "value": "Other"}]
    events, r = run(Script(patch_answer(bad)), message="rename it", mode="modify", scenario=SCENARIO, repair_attempts=0)
    assert "scenario" not in types(events) and "repair" not in types(events)
    assert events[-2]["code"] == "invalid_scenario" and r.machine.state == "failed"


def test_after_the_last_repair_fails_the_error_is_invalid_scenario():
    bad = [{"op": "remove", "path": "/nothing"}]
    model = Script(patch_answer(bad), patch_answer(bad))
    events, _ = run(model, message="rename it", mode="modify", scenario=SCENARIO)
    assert types(events).count("repair") == 1 and "scenario" not in types(events)
    assert events[-2]["code"] == "invalid_scenario" and events[-1]["repairs"] == 1


def test_a_patch_that_is_not_json_names_the_line_and_column_in_the_repair():
    text = "```patch\n[{\"op\": \"replace\", \"path\": \"/title\" \"value\": 1}]\n```"
    model = Script([text, Finish("stop", None)], patch_answer([{"op": "replace", "path": "/title", "value": "Ok"}]))
    events, _ = run(model, message="rename it", mode="modify", scenario=SCENARIO)
    repair = next(e for e in events if e["type"] == "repair")
    assert "line" in repair["reason"] and "column" in repair["reason"]
    assert next(e for e in events if e["type"] == "scenario")["scenario"]["title"] == "Ok"


def test_a_modify_answered_with_a_whole_scenario_is_still_accepted():
    new = json.loads(json.dumps(SCENARIO))
    new["title"] = "Renamed"
    text = "Done.\n```scenario\n" + json.dumps(new) + "\n```"
    events, _ = run(Script([*chunks(text, 11), Finish("stop", None)]), message="rename it", mode="modify", scenario=SCENARIO)
    result = next(e for e in events if e["type"] == "scenario")
    assert result["scenario"] == new and result["changes"][0]["path"] == "/title"


# -- errors that say what happened ----------------------------------------------------------------


def test_the_limit_before_any_block_began_says_so_not_ask_for_a_smaller_change():
    rambling = chunks("Let me think about how best to add an objective to this scenario, step by step. " * 3)
    events, _ = run(Script([*rambling, Finish("length", None)]), message="add an objective", mode="modify", scenario=SCENARIO)
    error = events[-2]
    assert error["code"] == "output_truncated" and "scenario_delta" not in types(events)
    assert "before it began" in error["message"] and "smaller change" not in error["message"]
    assert error["detail"] == "the output limit came before any block began"


def test_the_limit_inside_the_block_says_the_change_was_cut():
    cut = chunks('Done.\n```patch\n[{"op": "add", "path": "/objectives/-", "value": "Keep the')
    events, _ = run(Script([*cut, Finish("length", None)]), message="add an objective", mode="modify", scenario=SCENARIO)
    error = events[-2]
    assert error["code"] == "output_truncated" and "scenario_delta" in types(events)
    assert "cut off" in error["message"] and error["detail"] == "the block was cut by the output limit"


def test_invalid_scenario_speaks_to_the_user_and_keeps_the_technical_reason_in_detail():
    text = "Here.\n```scenario\n[1, 2, 3]\n```"
    events, _ = run(Script([*chunks(text), Finish("stop", None)]), message="make a scenario about a flood", mode="create", repair_attempts=0)
    error = events[-2]
    assert error["code"] == "invalid_scenario"
    assert "JSON array" not in error["message"] and "Expecting" not in error["message"]
    assert "Your scenario is unchanged" in error["message"]
    assert "JSON array" in error["detail"]


def test_an_answer_with_no_text_is_an_empty_answer_error_before_done():
    events, r = run(Script([Finish("stop", {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5})]))
    assert types(events) == ["start", "error", "done"]
    assert events[1]["code"] == "empty_answer" and events[1]["retryable"] is True
    assert r.machine.state == "failed"
    thinking_only, _ = run(Script([Thinking("hmm"), Finish("stop", None)]))
    assert types(thinking_only) == ["start", "reasoning", "error", "done"]
