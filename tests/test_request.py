"""Request validation (agent/request.py) and intent routing (agent/route.py)."""

import pytest

from agent.config import Settings
from agent.request import InvalidRequest, parse_request
from agent.route import route

LIMITS = Settings()


def test_minimal_request_defaults():
    req = parse_request({"message": "hi"}, LIMITS)
    assert (req.message, req.scenario, req.history, req.mode) == ("hi", None, (), "auto")


@pytest.mark.parametrize("body, code, field", [
    ([], "invalid_body", None),
    ({}, "invalid_field", "message"),
    ({"message": 3}, "invalid_field", "message"),
    ({"message": "   \n"}, "invalid_field", "message"),
    ({"message": "x" * 8001}, "too_large", "message"),
    ({"message": "hi", "scenario": []}, "invalid_field", "scenario"),
    ({"message": "hi", "scenario": "s"}, "invalid_field", "scenario"),
    ({"message": "hi", "scenario": {"title": "t", "pad": "x" * 70_000}}, "too_large", "scenario"),
    ({"message": "hi", "history": {}}, "invalid_field", "history"),
    ({"message": "hi", "history": [{"role": "system", "content": "x"}]}, "invalid_field", "history"),
    ({"message": "hi", "history": [{"role": "user"}]}, "invalid_field", "history"),
    ({"message": "hi", "history": [{"role": "user", "content": "x"}] * 51}, "too_large", "history"),
    ({"message": "hi", "mode": "poem"}, "invalid_field", "mode"),
    ({"message": "hi", "extra": 1, "more": 2}, "unknown_field", "extra"),
])
def test_rejections_name_the_field(body, code, field):
    with pytest.raises(InvalidRequest) as info:
        parse_request(body, LIMITS)
    assert (info.value.code, info.value.field) == (code, field)
    assert info.value.message


def test_deep_scenario_rejected():
    scenario: dict = {"title": "t"}
    node = scenario
    for _ in range(40):
        node["n"] = {}
        node = node["n"]
    with pytest.raises(InvalidRequest) as info:
        parse_request({"message": "hi", "scenario": scenario}, LIMITS)
    assert info.value.code == "too_deep"


@pytest.mark.parametrize("mode, message, scenario, intent", [
    ("explain", "add a role", {"title": "t"}, "explain"),
    ("chat", "create a new scenario", None, "chat"),
    ("auto", "anything at all", None, "chat"),
    ("auto", "Explain this scenario", {"title": "t"}, "explain"),
    ("auto", "Create a scenario about a flood", {"title": "t"}, "create"),
    ("auto", "Add a role called Safety Officer", {"title": "t"}, "modify"),
    ("auto", "rename it to Blue Harbor", {"title": "t"}, "modify"),
    ("auto", "Who should play the CEO?", {"title": "t"}, "chat"),
])
def test_routing(mode, message, scenario, intent):
    assert route(mode, message, scenario) == intent
