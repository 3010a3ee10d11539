"""agent/events.py is the one home of the stream's vocabulary: the OpenAPI document and the
page's reducer must know every event type it defines, with the same fields."""

from __future__ import annotations

import json
import re
from pathlib import Path

from agent.events import EVENT_TYPES, Chat, Done, Error, Reasoning, encode, encode_generic
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
