"""Modify as JSON Patch over a real socket: a scripted upstream answers a 40 KB scenario with a
three-operation patch; each operation arrives as `scenario_patch` while the answer streams,
then `scenario` equals the original with exactly those operations applied. A failing
operation is repaired once, and the repair request names the failing path."""

from __future__ import annotations

import copy
import json
import time

import httpx

from tests.conftest import upstream_env
from tests.support.servers import BUFFERED_PATH, STREAM_PATH, LiveApp, Plan, iter_frames


def big_scenario(target_bytes: int = 40_000) -> dict:
    scenario = {"title": "Port closure", "summary": "A storm closes the port.", "setting": "A container port.", "difficulty": "medium",
                "roles": [], "steps": [], "objectives": ["Reopen safely"]}
    i = 0
    while len(json.dumps(scenario)) < target_bytes:
        scenario["roles"].append({"name": f"Officer {i}", "description": "Keeps the quay running and reports every hour. " * 2})
        scenario["steps"].append({"title": f"Step {i}", "description": "Something happens at the quay that needs a decision. " * 2})
        i += 1
    return scenario


OPS = [
    {"op": "replace", "path": "/title", "value": "Port closure at night"},
    {"op": "add", "path": "/roles/-", "value": {"name": "Journalist", "description": "Asks hard questions."}},
    {"op": "remove", "path": "/steps/3"},
]


def answer_tokens(ops: list[dict]) -> list[str]:
    text = "Renamed the title, added a journalist and removed step 4.\n```patch\n" + json.dumps(ops, indent=1) + "\n```\n"
    return [text[i:i + 6] for i in range(0, len(text), 6)]


def test_a_three_operation_patch_streams_three_previews_then_the_applied_scenario(fake_upstream):
    scenario = big_scenario()
    assert len(json.dumps(scenario)) >= 40_000
    tokens = answer_tokens(OPS)
    fake_upstream.push(Plan(tokens=tokens, interval_ms=5))
    with LiveApp(upstream_env(fake_upstream)) as live:
        body = {"message": "rename it, add a journalist, drop step 4", "mode": "modify", "scenario": scenario}
        with httpx.stream("POST", live.url + STREAM_PATH, json=body, timeout=30) as response:
            frames = list(iter_frames(response))
    kinds = [kind for _, kind, _ in frames]
    patches = [(t, data) for t, kind, data in frames if kind == "scenario_patch"]
    assert [data["op"] for _, data in patches] == OPS and [data["index"] for _, data in patches] == [0, 1, 2]
    # While it streams: the first operation arrives well before the last delta of the answer.
    last_delta = max(t for t, kind, _ in frames if kind == "scenario_delta")
    assert patches[0][0] < last_delta - 0.05
    assert kinds.index("scenario") > kinds.index("scenario_patch") and kinds[-1] == "done"
    expected = copy.deepcopy(scenario)
    expected["title"] = "Port closure at night"
    expected["roles"].append({"name": "Journalist", "description": "Asks hard questions."})
    del expected["steps"][3]
    result = next(data for _, kind, data in frames if kind == "scenario")
    assert result["scenario"] == expected
    # The upstream was asked for a patch, with the pointer index of the lists.
    system = fake_upstream.requests[0]["messages"][0]["content"]
    assert "```patch" in system and "/roles/0: Officer 0" in system


def test_a_failing_operation_is_repaired_once_naming_its_path(fake_upstream):
    scenario = big_scenario(5_000)
    bad = [{"op": "replace", "path": "/steps/999/title", "value": "x"}]
    good = [{"op": "replace", "path": "/steps/0/title", "value": "First, calmly"}]
    fake_upstream.push(Plan(tokens=answer_tokens(bad)), Plan(tokens=answer_tokens(good)))
    with LiveApp(upstream_env(fake_upstream)) as live:
        body = {"message": "retitle the first step", "mode": "modify", "scenario": scenario}
        with httpx.stream("POST", live.url + STREAM_PATH, json=body, timeout=30) as response:
            frames = list(iter_frames(response))
        kinds = [kind for _, kind, _ in frames]
        assert kinds.count("repair") == 1 and kinds.index("repair") < kinds.index("scenario")
        assert len(fake_upstream.requests) == 2
        repair_request = fake_upstream.requests[1]["messages"]
        assert repair_request[-2]["role"] == "assistant" and "/steps/999/title" in repair_request[-1]["content"]
        assert next(d for _, k, d in frames if k == "scenario")["scenario"]["steps"][0]["title"] == "First, calmly"
        assert next(d for _, k, d in frames if k == "done")["repairs"] == 1

        # The buffered route returns the final result with its repairs count.
        fake_upstream.push(Plan(tokens=answer_tokens(bad)), Plan(tokens=answer_tokens(good)))
        answer = httpx.post(live.url + BUFFERED_PATH, json=body, timeout=30)
        assert answer.status_code == 200
        assert answer.json()["repairs"] == 1 and answer.json()["scenario"]["steps"][0]["title"] == "First, calmly"


def test_with_repair_off_a_failing_patch_is_invalid_scenario_and_no_scenario_frame(fake_upstream):
    scenario = big_scenario(5_000)
    fake_upstream.push(Plan(tokens=answer_tokens([{"op": "remove", "path": "/nowhere"}])))
    with LiveApp(upstream_env(fake_upstream, SCENARIO_REPAIR_ATTEMPTS="0")) as live:
        body = {"message": "remove it", "mode": "modify", "scenario": scenario}
        started = time.monotonic()
        with httpx.stream("POST", live.url + STREAM_PATH, json=body, timeout=30) as response:
            frames = list(iter_frames(response))
        assert time.monotonic() - started < 10
    kinds = [kind for _, kind, _ in frames]
    assert "scenario" not in kinds and "repair" not in kinds
    error = next(data for _, kind, data in frames if kind == "error")
    assert error["code"] == "invalid_scenario" and kinds[-1] == "done"
    assert len(fake_upstream.requests) == 1


def test_an_answer_that_copies_the_prompts_example_is_repaired_saying_so(fake_upstream):
    from agent.patch import EXAMPLE_PATCH_OPS, EXAMPLE_REASON

    scenario = big_scenario(5_000)
    good = [{"op": "add", "path": "/objectives/-", "value": "Report every hour"}]
    fake_upstream.push(Plan(tokens=answer_tokens(list(EXAMPLE_PATCH_OPS))), Plan(tokens=answer_tokens(good)))
    with LiveApp(upstream_env(fake_upstream)) as live:
        body = {"message": "add an objective", "mode": "modify", "scenario": scenario}
        with httpx.stream("POST", live.url + STREAM_PATH, json=body, timeout=30) as response:
            frames = list(iter_frames(response))
    assert [d["reason"] for _, k, d in frames if k == "repair"] == [EXAMPLE_REASON]
    assert EXAMPLE_REASON in fake_upstream.requests[1]["messages"][-1]["content"]
    # Nothing of the example was previewed; the real change was.
    assert [d["op"] for _, k, d in frames if k == "scenario_patch"] == good
    result = next(d for _, k, d in frames if k == "scenario")["scenario"]
    assert result["title"] == scenario["title"] and result["objectives"][-1] == "Report every hour"
    assert "Journalist" not in json.dumps(result)


def test_a_patch_that_doubles_the_scenario_is_repaired_naming_the_operation(fake_upstream):
    scenario = big_scenario(5_000)
    doubling = [{"op": "copy", "from": "/steps", "path": "/steps/-"}] * 19
    good = [{"op": "replace", "path": "/title", "value": "Port closure, one more time"}]
    fake_upstream.push(Plan(tokens=answer_tokens(doubling)), Plan(tokens=answer_tokens(good)))
    with LiveApp(upstream_env(fake_upstream)) as live:
        body = {"message": "repeat the steps", "mode": "modify", "scenario": scenario}
        started = time.monotonic()
        with httpx.stream("POST", live.url + STREAM_PATH, json=body, timeout=30) as response:
            frames = list(iter_frames(response))
        assert time.monotonic() - started < 10
    reasons = [d["reason"] for _, k, d in frames if k == "repair"]
    assert reasons == ["operation 5 (copy /steps/-): it would make the scenario larger than 64 KiB"]
    assert reasons[0] in fake_upstream.requests[1]["messages"][-1]["content"]
    assert [d["index"] for _, k, d in frames if k == "scenario_patch"] == [0, 1, 2, 3, 0]
    assert next(d for _, k, d in frames if k == "scenario")["scenario"]["title"] == "Port closure, one more time"
