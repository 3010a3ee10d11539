"""One end-to-end run per intent through the real server on the built-in offline model."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import SAMPLES
from tests.support.scenarios import big_scenario
from tests.support.servers import BUFFERED_PATH, STREAM_PATH, parse_frames


def sample(name: str) -> dict:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def run(offline_app, body: dict) -> list[tuple[str, dict]]:
    response = httpx.post(offline_app.url + STREAM_PATH, json=body, timeout=30)
    assert response.status_code == 200
    frames = [(k, d) for k, d in parse_frames(response.content) if k != "comment"]
    assert frames[0][0] == "start" and frames[-1][0] == "done"
    assert frames[0][1]["provider"] == "offline" and frames[0][1]["request_id"] == response.headers["x-request-id"]
    assert not [d for k, d in frames if k == "error"]
    return frames


def text(frames, kind="chat") -> str:
    return "".join(d["content"] for k, d in frames if k == kind)


def test_health_names_the_offline_provider(offline_app):
    health = offline_app.health()
    assert health["status"] == "ok" and health["provider"] == "offline" and health["model"].startswith("offline")
    assert set(health) == {"status", "provider", "model", "active_streams", "runs", "lab", "version"}


def test_explain_streams_many_tokens_about_the_scenario(offline_app):
    scenario = sample("hospital-ransomware")
    frames = run(offline_app, {"message": "Explain this scenario", "scenario": scenario})
    assert frames[0][1]["intent"] == "explain"
    chats = [d for k, d in frames if k == "chat"]
    assert len(chats) > 50
    answer = text(frames)
    assert scenario["title"] in answer
    for role in scenario["roles"]:
        assert role["name"] in answer


def test_create_without_a_scenario_returns_a_new_one(offline_app):
    frames = run(offline_app, {"message": "Create a scenario about a warehouse fire evacuation drill", "scenario": None})
    assert frames[0][1]["intent"] == "create"
    created = next(d for k, d in frames if k == "scenario")["scenario"]
    assert "warehouse" in created["title"].lower()
    assert created["roles"] and created["steps"] and created["objectives"]
    assert json.loads(text(frames, "scenario_delta")) == created
    assert "```" not in text(frames)


def test_modify_renames_and_keeps_other_keys(offline_app):
    scenario = sample("supplier-negotiation")
    frames = run(offline_app, {"message": "Rename it to Blue Harbor Drill", "scenario": scenario, "mode": "modify"})
    # The offline model answers a modify with a ```patch block: its text streams as scenario_delta,
    # each operation is previewed as scenario_patch, then the scenario frame carries the result.
    op = {"op": "replace", "path": "/title", "value": "Blue Harbor Drill"}
    assert json.loads(text(frames, "scenario_delta")) == [op]
    assert [d["op"] for k, d in frames if k == "scenario_patch"] == [op]
    assert "```" not in text(frames)
    kinds = [k for k, _ in frames]
    assert kinds.index("scenario_patch") < kinds.index("scenario")
    event = next(d for k, d in frames if k == "scenario")
    assert event["scenario"]["title"] == "Blue Harbor Drill"
    assert {"op": "replace", "path": "/title", "text": "renamed the title"} in event["changes"]
    for key in scenario:
        assert key in event["scenario"]
    assert {k: v for k, v in event["scenario"].items() if k != "title"} == {k: v for k, v in scenario.items() if k != "title"}


def test_chat_answers_about_the_scenario(offline_app):
    scenario = sample("support-escalation")
    frames = run(offline_app, {"message": "Who should I pick for the roles?", "scenario": scenario, "mode": "chat"})
    assert frames[0][1]["intent"] == "chat"
    assert "scenario" not in [k for k, _ in frames]
    assert len(text(frames)) > 40


@pytest.mark.parametrize("mode", ["explain", "chat", "modify", "create"])
def test_buffered_gives_the_same_answer_as_the_stream(offline_app, mode):
    body = {"message": "add objective Keep calm", "scenario": sample("hospital-ransomware"), "mode": mode}
    streamed = run(offline_app, body)
    response = httpx.post(offline_app.url + BUFFERED_PATH, json=body, timeout=30)
    assert response.status_code == 200
    result = response.json()
    assert result["response"] == text(streamed)
    assert result["intent"] == mode
    scenario_events = [d for k, d in streamed if k == "scenario"]
    assert result["scenario"] == (scenario_events[0]["scenario"] if scenario_events else None)


def test_rename_of_a_40_kb_scenario_streams_a_patch_under_1_kb(offline_app):
    scenario = big_scenario()
    assert len(json.dumps(scenario).encode()) >= 40 * 1024
    frames = run(offline_app, {"message": "rename it to Night Shift", "scenario": scenario, "mode": "modify"})
    patch_text = text(frames, "scenario_delta")
    assert len(patch_text.encode()) < 1024
    result = next(d for k, d in frames if k == "scenario")["scenario"]
    assert result == {**scenario, "title": "Night Shift"}


def test_auto_without_a_scenario_chats_and_says_how_to_start(offline_app):
    for message in ("hello", "Explain this scenario", "what is a tabletop exercise?"):
        frames = run(offline_app, {"message": message, "scenario": None})
        assert frames[0][1]["intent"] == "chat", message
        assert "scenario" not in [k for k, _ in frames]
        assert "create a scenario about a flood" in text(frames)


def test_auto_creates_a_fire_scenario_for_a_data_center_fire(offline_app):
    frames = run(offline_app, {"message": "create a scenario about a data-center fire", "scenario": None})
    assert frames[0][1]["intent"] == "create"
    created = next(d for k, d in frames if k == "scenario")["scenario"]
    assert "fire" in created["setting"].lower() and "Fire Warden" in [r["name"] for r in created["roles"]]


def test_an_everyday_add_request_adds_a_described_role_and_ends_cleanly(offline_app):
    # Auto mode, as the page sends it: the router picks modify, the offline model reads the
    # request, the role it saves has a description of its own, the prose ends without blank lines.
    scenario = sample("hospital-ransomware")
    frames = run(offline_app, {"message": "Can you add a journalist?", "scenario": scenario})
    assert frames[0][1]["intent"] == "modify"
    result = next(d for k, d in frames if k == "scenario")["scenario"]
    assert [r["name"] for r in result["roles"]] == [r["name"] for r in scenario["roles"]] + ["Journalist"]
    description = result["roles"][-1]["description"]
    assert "Added on request" not in description and "news" in description
    prose_text = text(frames)
    assert prose_text.strip() and not prose_text.endswith("\n\n"), repr(prose_text[-30:])
    assert "I applied 1 change" in prose_text and "(1 patch operation)" in prose_text


def test_a_role_question_in_auto_mode_is_answered_about_that_role(offline_app):
    scenario = sample("hospital-ransomware")
    frames = run(offline_app, {"message": "Tell me about the CISO", "scenario": scenario})
    assert frames[0][1]["intent"] == "chat"
    answer = text(frames)
    assert "CISO" in answer and "technical response" in answer and len(answer) < 1200
