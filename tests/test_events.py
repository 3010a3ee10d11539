"""agent/events.py is the one home of the stream's vocabulary: the OpenAPI document and the
page's reducer must know every event type it defines, with the same fields."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from agent.events import (EVENT_TYPES, Chat, Done, Error, Reasoning, Repair, Scenario, ScenarioDelta, ScenarioPatch, Start,
                          encode, encode_generic)
from agent.intents import INTENTS, MODES

ROOT = Path(__file__).resolve().parent.parent


def schemas() -> dict:
    return json.loads((ROOT / "docs" / "openapi.json").read_text())["components"]["schemas"]


def test_every_event_type_is_documented_with_its_fields():
    stream_event = schemas()["StreamEvent"]
    mapping = stream_event["discriminator"]["mapping"]
    assert set(mapping) == set(EVENT_TYPES)
    assert schemas()["SseFrame"]["properties"]["event"]["enum"] == list(EVENT_TYPES)
    for name, cls in EVENT_TYPES.items():
        schema = schemas()[mapping[name].rsplit("/", 1)[1]]
        assert schema["properties"]["type"]["enum"] == [name]
        assert set(cls.fields) <= set(schema["properties"]), name
        required = set(schema["required"]) - {"type"}
        assert required <= set(cls.fields) and required.isdisjoint(cls.optional), name


def test_the_page_reducer_handles_every_event_type():
    source = (ROOT / "static" / "reducer.js").read_text()
    match = re.search(r"HANDLED_EVENT_TYPES\s*=\s*(?:Object\.freeze\()?\[([^\]]*)\]", source)
    assert match, "static/reducer.js exports HANDLED_EVENT_TYPES"
    handled = set(re.findall(r"[\"']([a-z_]+)[\"']", match.group(1)))
    assert handled == set(EVENT_TYPES)


def test_the_documented_modes_and_intents_are_the_intent_table():
    doc = json.loads((ROOT / "docs" / "openapi.json").read_text())
    request = doc["components"]["schemas"]["AgentRequest"]["properties"]["mode"]
    assert [m for m in request["enum"] if m is not None] == list(MODES)
    assert doc["components"]["schemas"]["BufferedResult"]["properties"]["intent"]["enum"] == list(INTENTS)


def test_optional_fields_are_left_out_when_unset_and_kept_when_set():
    assert Error("internal", "m", True).to_dict() == {"type": "error", "code": "internal", "message": "m", "retryable": True}
    assert Error("x", "m", True, 2.0).to_dict()["retry_after"] == 2.0
    assert Reasoning("hm").to_dict() == {"type": "reasoning", "content": "hm"}
    assert Reasoning("", withheld=True).to_dict() == {"type": "reasoning", "content": "", "withheld": True}


def test_every_frame_is_one_event_line_and_one_data_line_carrying_its_type():
    for event in (Chat("a\nb"), Reasoning("t"), Done("stop", None, {"ttft_ms": 1.0, "total_ms": 2.0})):
        frame = encode(event)
        assert frame == encode_generic(event)
        head, data, blank = frame.split(b"\n", 2)
        assert head == b"event: " + event.type.encode() and blank == b"\n"
        assert json.loads(data[len(b"data: "):]) == event.to_dict()


def test_the_page_offers_exactly_the_modes_of_the_intent_table():
    html = (ROOT / "static" / "index.html").read_text()
    select = re.search(r'<select[^>]*id="mode"[^>]*>(.*?)</select>', html, re.S)
    assert select, "static/index.html has the mode select"
    assert re.findall(r'<option value="([a-z_]+)"', select.group(1)) == list(MODES)
    main = (ROOT / "static" / "main.js").read_text()
    listed = re.search(r"const MODES = \[([^\]]*)\]", main)
    assert listed and re.findall(r'"([a-z_]+)"', listed.group(1)) == list(MODES)


# Every event type's frame, byte for byte: the bytes clients have always received.
FRAMES = [
    (Start("r1", "chat", "m", "p"),
     b'event: start\ndata: {"type":"start","request_id":"r1","intent":"chat","model":"m","provider":"p"}\n\n'),
    (Reasoning("t"), b'event: reasoning\ndata: {"type":"reasoning","content":"t"}\n\n'),
    (Reasoning("", withheld=True), b'event: reasoning\ndata: {"type":"reasoning","content":"","withheld":true}\n\n'),
    (Chat("\u00e9\n\"x\""), b'event: chat\ndata: {"type":"chat","content":"\xc3\xa9\\n\\"x\\"","streaming":true}\n\n'),
    (ScenarioDelta('{"a"'), b'event: scenario_delta\ndata: {"type":"scenario_delta","content":"{\\"a\\""}\n\n'),
    (ScenarioPatch({"op": "replace", "path": "/title", "value": "T"}, 0),
     b'event: scenario_patch\ndata: {"type":"scenario_patch","op":{"op":"replace","path":"/title","value":"T"},"index":0}\n\n'),
    (Scenario({"title": "T"}, [{"op": "replace", "path": "/title"}]),
     b'event: scenario\ndata: {"type":"scenario","scenario":{"title":"T"},"changes":[{"op":"replace","path":"/title"}]}\n\n'),
    (Repair(1, "bad"), b'event: repair\ndata: {"type":"repair","attempt":1,"reason":"bad"}\n\n'),
    (Error("internal", "m", True), b'event: error\ndata: {"type":"error","code":"internal","message":"m","retryable":true}\n\n'),
    (Error("upstream_rate_limited", "m", True, 3.0),
     b'event: error\ndata: {"type":"error","code":"upstream_rate_limited","message":"m","retryable":true,"retry_after":3.0}\n\n'),
    (Done("stop", {"completion_tokens": 2}, {"ttft_ms": 1.5}, 1),
     b'event: done\ndata: {"type":"done","finish_reason":"stop","usage":{"completion_tokens":2},"timings":{"ttft_ms":1.5},"repairs":1}\n\n'),
]


@pytest.mark.parametrize("event, frame", FRAMES, ids=[f"{e.type}-{i}" for i, (e, _) in enumerate(FRAMES)])
def test_every_event_types_frame_bytes_are_unchanged(event, frame):
    assert encode(event) == frame


def test_every_event_is_a_frozen_slotted_dataclass_with_its_fields_documented_once():
    assert {event.__class__ for event, _ in FRAMES} == set(EVENT_TYPES.values())
    for name, cls in EVENT_TYPES.items():
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, name
        assert "__slots__" in cls.__dict__ and "__dict__" not in dir(cls), name
        assert cls.fields == tuple(f.name for f in dataclasses.fields(cls)), name
        doc = cls.__doc__ or ""
        for field in cls.fields:  # each field described once, in the class's "Fields:" section
            assert len(re.findall(rf"^\s+{field}: ", doc, re.M)) == 1, (name, field)
    event = Chat("a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.content = "b"  # type: ignore[misc]
    assert event == Chat("a") and event != Chat("b") and event != ScenarioDelta("a")


def test_an_error_carries_its_detail_when_set_and_leaves_it_out_when_none():
    error = Error("invalid_scenario", "The model's change could not be read.", True, detail="Expecting value (line 1, column 1)")
    assert error.to_dict() == {"type": "error", "code": "invalid_scenario", "message": "The model's change could not be read.",
                               "retryable": True, "detail": "Expecting value (line 1, column 1)"}
    assert encode(error).endswith(b',"retryable":true,"detail":"Expecting value (line 1, column 1)"}\n\n')
    assert "detail" not in Error("internal", "m", True).to_dict()
    assert list(Error("x", "m", True, 2.0, "why").to_dict()) == ["type", "code", "message", "retryable", "retry_after", "detail"]
