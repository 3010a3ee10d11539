"""The hand-kept OpenAPI document (docs/openapi.json), and a bounded fuzz of the live API from it.

schemathesis generates requests from the document (valid ones and, separately, ones that
break it) and sends them to a live server; every answer must be documented, match its
schema, never be a 5xx, and every request that breaks the schema must be rejected with
a 4xx. Stream bodies are checked frame by frame: schemathesis validates each Server-Sent
Event against `SseFrame`, and this test validates each frame's JSON against `StreamEvent`.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlsplit
from pathlib import Path
from typing import Any, Iterator

import httpx
import jsonschema_rs
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.harness import assert_well_formed
from tests.support.servers import LiveApp, parse_frames

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "openapi.json"
TOKEN = "fuzz-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES = 100  # per operation and mode: about 10 s in all


@pytest.fixture(scope="module")
def live() -> Iterator[LiveApp]:
    env = {"OFFLINE_TOKEN_DELAY_MS": "0", "APP_ACCESS_TOKEN": TOKEN, "RATE_LIMIT_PER_MINUTE": "0"}
    with LiveApp(env) as live:
        yield live


@pytest.fixture(scope="module")
def schema(live: LiveApp) -> Any:
    # Loaded from the server, so the document it serves is the one tested.
    return schemathesis.openapi.from_url(live.url + "/openapi.json")


def agent_error_codes() -> set[str]:
    """Every code agent/errors.py can give an `error` frame: one constructor per code."""
    import inspect

    from agent import errors

    codes = set()
    for name, function in inspect.getmembers(errors, inspect.isfunction):
        if function.__module__ == errors.__name__ and not name.startswith("_"):
            arguments = [None if p.name == "retry_after" else (503 if p.name == "status" else "x") for p in inspect.signature(function).parameters.values()]
            codes.add(function(*arguments).code)
    return codes


def _declared(path: str, method: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(where, name) -> schema of each parameter the document declares for an operation."""
    doc = document()
    declared = {}
    for parameter in doc["paths"][path][method.lower()].get("parameters", []):
        if "$ref" in parameter:
            parameter = doc["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[1]]
        declared[(parameter["in"], parameter["name"].lower())] = parameter["schema"]
    return declared


def _sent_as_valid(case: Any, response: Any, path: str, method: str) -> bool:
    """A negative case whose breakage never reaches the wire: schemathesis adds a query parameter
    whose values the HTTP client leaves out of the URL (an empty list, a list of objects), and
    every declared parameter it sends is valid. The request on the wire is then a valid one."""
    declared = _declared(path, method)
    query = case.query or {}
    extra = [name for name in query if ("query", name.lower()) not in declared]
    sent = parse_qs(urlsplit(str(response.request.url)).query, keep_blank_values=True)
    if not extra or any(name in sent for name in extra):
        return False
    given = [(("query", k.lower()), v) for k, v in query.items() if k not in extra]
    given += [(("header", k.lower()), v) for k, v in (case.headers or {}).items()]
    given += [(("path", k.lower()), v) for k, v in (case.path_parameters or {}).items()]
    return all(key in declared and jsonschema_rs.is_valid(declared[key], value) for key, value in given)


def document() -> dict[str, Any]:
    return json.loads(DOC.read_text())


# -- the document itself ---------------------------------------------------------------------------


def test_document_is_valid_openapi_3() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.0.")
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(doc)


def test_served_document_is_the_file(live: LiveApp) -> None:
    response = httpx.get(live.url + "/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == document()


def test_document_covers_the_routes_and_codes() -> None:
    doc = document()
    assert set(doc["paths"]) == {"/api/agent/scenario/stream", "/api/agent/scenario", "/api/agent/scenario/stream/health", "/openapi.json",
                                 "/api/agent/scenario/runs/{run_id}/stream", "/api/agent/scenario/runs/{run_id}"}
    stream = doc["paths"]["/api/agent/scenario/stream"]["post"]["responses"]
    assert set(stream) >= {"200", "400", "401", "413", "415", "422", "429", "503"}
    assert "text/event-stream" in stream["200"]["content"]
    codes = doc["components"]["schemas"]["ErrorEvent"]["properties"]["code"]["enum"]
    assert set(codes) == agent_error_codes()
    limits = doc["components"]["schemas"]["AgentRequest"]["properties"]
    assert limits["message"]["maxLength"] == 8000 and limits["history"]["maxItems"] == 50


# -- frame schema: the JSON in each `data:` line -----------------------------------------------------


def _jsonschema(value: Any) -> Any:
    """OpenAPI 3.0 schema objects to JSON Schema: `nullable: true` becomes a "null" type."""
    if isinstance(value, list):
        return [_jsonschema(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _jsonschema(v) for k, v in value.items() if k not in ("nullable", "discriminator")}
    if value.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        if "$ref" in out:
            out = {"anyOf": [{"$ref": out.pop("$ref")}, {"type": "null"}], **out}
    return out


def event_validator() -> Any:
    components = _jsonschema(document()["components"])
    return jsonschema_rs.Draft7Validator({"components": components, "allOf": [{"$ref": "#/components/schemas/StreamEvent"}]})


STREAM_EVENT = event_validator()


def check_stream_body(content: bytes) -> None:
    """A 200 stream: every frame's JSON matches StreamEvent, start first, done last."""
    frames = parse_frames(content)
    for kind, data in frames:
        if kind == "comment":
            continue
        errors = [e.message for e in STREAM_EVENT.iter_errors(data)]
        assert not errors, (kind, data, errors)
    assert_well_formed(frames)


def test_event_schema_rejects_wrong_frames() -> None:
    """The frame check can fail."""
    assert STREAM_EVENT.is_valid({"type": "done", "finish_reason": "stop", "usage": None, "timings": {"ttft_ms": None, "total_ms": 1.0}})
    assert not STREAM_EVENT.is_valid({"type": "done", "finish_reason": "stop"})
    assert not STREAM_EVENT.is_valid({"type": "error", "code": "made_up", "message": "x", "retryable": True})
    assert not STREAM_EVENT.is_valid({"type": "chat"})


# -- the fuzz ------------------------------------------------------------------------------------------

def header(response: Any, name: str) -> str:
    values = response.headers.get(name) or [""]  # schemathesis keeps a list per header
    return values[0] if isinstance(values, list) else values


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance, response_headers_conformance]
OPERATIONS = [
    ("/api/agent/scenario/stream", "POST"),
    ("/api/agent/scenario", "POST"),
    ("/api/agent/scenario/stream/health", "GET"),
    ("/openapi.json", "GET"),
    ("/api/agent/scenario/runs/{run_id}/stream", "GET"),
    ("/api/agent/scenario/runs/{run_id}", "DELETE"),
]
# What a valid request gets when it succeeds: random run ids name no run (204).
SUCCESS = {"/api/agent/scenario/runs/{run_id}/stream": 204, "/api/agent/scenario/runs/{run_id}": 204}
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=False,
    suppress_health_check=list(HealthCheck),
)


def test_a_negative_case_counts_as_sent_valid_only_when_its_breakage_never_left_the_client() -> None:
    from types import SimpleNamespace

    path, method = "/api/agent/scenario/runs/{run_id}/stream", "GET"
    url = "http://127.0.0.1/api/agent/scenario/runs/" + "a" * 32 + "/stream?after=3"

    def case(**query: Any) -> Any:
        return SimpleNamespace(query=query, headers={"Last-Event-ID": "a" * 32 + "-3"}, path_parameters={"run_id": "a" * 32})

    sent = SimpleNamespace(request=SimpleNamespace(url=url))
    assert _sent_as_valid(case(after=3, junk=[{}, {}]), sent, path, method)  # the junk never left
    assert not _sent_as_valid(case(after=-1, junk=[]), sent, path, method)  # a declared one is broken
    sent_junk = SimpleNamespace(request=SimpleNamespace(url=url + "&junk=1"))
    assert not _sent_as_valid(case(after=3, junk=["1"]), sent_junk, path, method)  # it was sent
    assert not _sent_as_valid(case(after=3), sent, path, method)  # nothing extra: the breakage is elsewhere


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize("path, method", OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_fuzz(live: LiveApp, schema: Any, path: str, method: str, mode: GenerationMode) -> None:
    operation = schema[path][method]
    if mode == GenerationMode.NEGATIVE and method == "GET" and "{run_id}" not in path:
        pytest.skip("no parameters to break")
    statuses: list[int] = []
    started = time.monotonic()

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        assert time.monotonic() - started < 60, "fuzzing took too long"
        response = case.call(base_url=live.url, headers=AUTH, timeout=20)
        checks = CHECKS + ([negative_data_rejection] if mode == GenerationMode.NEGATIVE else [])
        case.validate_response(response, checks=checks, headers=AUTH)
        if mode == GenerationMode.NEGATIVE and response.status_code in (200, SUCCESS.get(path, 200)) and _sent_as_valid(case, response, path, method):
            return  # e.g. an extra query parameter with no values: the client sends nothing of it
        statuses.append(response.status_code)
        assert response.status_code < 500
        assert header(response, "x-request-id")
        if response.status_code == 200 and header(response, "content-type").startswith("text/event-stream"):
            content = response.content
            if response.stream_cut_short:  # schemathesis reads only the first events: fetch it all
                replay = requests.request(**case.as_transport_kwargs(base_url=live.url, headers=AUTH), timeout=20)
                assert replay.status_code == 200
                content = replay.content
            check_stream_body(content)
        elif response.status_code >= 400:
            error = response.json()["error"]
            assert error["code"] and error["message"]

    run()
    assert statuses, "nothing was sent"
    if mode == GenerationMode.NEGATIVE:
        assert all(400 <= s < 500 for s in statuses), sorted(set(statuses))
    else:
        assert SUCCESS.get(path, 200) in statuses, statuses  # valid requests do get answered
    assert live.wait_no_streams(5) == 0
