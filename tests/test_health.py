"""Health tells the truth about the model server, from real traffic only (it never calls the model)."""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
import pytest

from tests.conftest import upstream_env
from tests.support.raw_server import LLAMA_CPP_HEAD, LLAMA_CPP_OVER_CONTEXT, answering_once, serve
from tests.support.servers import HEALTH_PATH, STREAM_PATH, FakeUpstream, LiveApp, Plan, parse_frames
from web.health import DEGRADED_AFTER, UpstreamHealth

BODY = {"message": "hello", "mode": "chat"}


def ask(live: LiveApp) -> str | None:
    """One stream; its error code, or None when it ended well."""
    response = httpx.post(live.url + STREAM_PATH, json=BODY, timeout=15)
    assert response.status_code == 200
    errors = [data["code"] for kind, data in parse_frames(response.content) if kind == "error"]
    return errors[0] if errors else None


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_health_turns_degraded_when_the_upstream_fails_and_ok_after_a_success() -> None:
    with FakeUpstream() as fake:
        with LiveApp(upstream_env(fake)) as live:
            health = live.health()
            assert health["status"] == "ok"
            assert health["upstream"] == {"last_success_at": None, "last_failure_at": None, "last_error_code": None, "consecutive_failures": 0}
            before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)

            assert ask(live) is None
            health = live.health()
            assert health["status"] == "ok"
            assert parse_time(health["upstream"]["last_success_at"]) >= before

            for failures in range(1, DEGRADED_AFTER + 1):
                fake.push(Plan(status=503))
                assert ask(live) == "upstream_unavailable"
                health = live.health()
                assert health["upstream"]["consecutive_failures"] == failures
                assert health["upstream"]["last_error_code"] == "upstream_unavailable"
                assert health["status"] == ("degraded" if failures >= DEGRADED_AFTER else "ok"), (failures, health)
            assert parse_time(health["upstream"]["last_failure_at"]) >= parse_time(health["upstream"]["last_success_at"])
            requests_so_far = len(fake.requests)

            # Health itself never calls the model, however often it is asked.
            for _ in range(5):
                assert httpx.get(live.url + "/api/agent/scenario/stream/health", timeout=5).json()["status"] == "degraded"
            assert len(fake.requests) == requests_so_far

            assert ask(live) is None  # the model server is back
            health = live.health()
            assert health["status"] == "ok"
            assert health["upstream"]["consecutive_failures"] == 0
            assert health["upstream"]["last_error_code"] == "upstream_unavailable"  # still says what happened last
            assert parse_time(health["upstream"]["last_success_at"]) >= parse_time(health["upstream"]["last_failure_at"])


def test_health_degraded_when_the_upstream_is_unreachable() -> None:
    with FakeUpstream(Plan(fault="refuse")) as fake:
        with LiveApp(upstream_env(fake)) as live:
            for _ in range(DEGRADED_AFTER):
                assert ask(live) in ("upstream_unavailable", "upstream_interrupted")
            health = live.health()
            assert health["status"] == "degraded"
            assert health["upstream"]["last_success_at"] is None
            # HTTP 200 all the same: a platform restarting this instance would not bring the model back.
            assert httpx.get(live.url + "/api/agent/scenario/stream/health", timeout=5).status_code == 200


def test_offline_model_has_no_upstream_section(offline_app: LiveApp) -> None:
    health = offline_app.health()
    assert health["status"] == "ok"
    assert "upstream" not in health


def test_errors_about_the_request_itself_do_not_degrade() -> None:
    upstream = UpstreamHealth(clock=lambda: 1_800_000_000.0)
    for _ in range(5):
        upstream.observe(400, "context_too_long")
    assert not upstream.degraded
    assert upstream.snapshot()["last_success_at"] == "2027-01-15T08:00:00.000Z"


def test_degraded_needs_consecutive_failures() -> None:
    upstream = UpstreamHealth()
    for _ in range(10):
        upstream.observe(502, "upstream_unavailable")
        upstream.observe(503, "upstream_unavailable")
        upstream.observe(200, None)
    assert not upstream.degraded
    for _ in range(DEGRADED_AFTER):
        upstream.observe(None, "upstream_timeout")
    assert upstream.degraded and upstream.snapshot()["last_error_code"] == "upstream_timeout"


def _nullable_to_json_schema(value):
    """OpenAPI 3.0's `nullable: true` as JSON Schema's "null" type (enough for the Health schema)."""
    if isinstance(value, list):
        return [_nullable_to_json_schema(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _nullable_to_json_schema(v) for k, v in value.items() if k != "nullable"}
    if value.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def test_health_matches_the_documented_schema() -> None:
    import json
    from pathlib import Path

    import jsonschema

    document = json.loads((Path(__file__).resolve().parent.parent / "docs" / "openapi.json").read_text())
    schema = _nullable_to_json_schema(document["components"]["schemas"]["Health"])
    validator = jsonschema.Draft7Validator(schema)
    with FakeUpstream() as fake:
        with LiveApp(upstream_env(fake, TOKEN_BUDGET_PER_DAY="1000000")) as live:  # above any reservation
            fresh = live.health()
            for _ in range(DEGRADED_AFTER):
                fake.push(Plan(status=503))
                ask(live)
            degraded = live.health()
    assert degraded["status"] == "degraded" and "budget" in degraded and "upstream" in degraded
    for body in (fresh, degraded):
        errors = [e.message for e in validator.iter_errors(body)]
        assert not errors, (body, errors)
    assert not validator.is_valid({**degraded, "status": "made_up"})


# llama-cpp-python's two empty 200 answers, byte for byte from a raw server: a prompt over the
# context (an empty body ended by the zero-size chunk) and a server process that died (the head,
# then the connection closed, here after one token). Only the second says the server is unwell.
ENDINGS = {
    "over-context": (LLAMA_CPP_OVER_CONTEXT, "context_too_long", False),
    "crash-mid-answer": (LLAMA_CPP_HEAD + b"3f\r\ndata: {\"choices\": [{\"delta\": {\"content\": \"In\"}, \"index\": 0}]}\n\n\r\n",
                         "upstream_interrupted", True),
    "crash-before-any-byte": (LLAMA_CPP_HEAD, "upstream_interrupted", True),
}


@pytest.mark.parametrize("ending", ENDINGS)
def test_an_empty_200_degrades_health_and_counts_in_metrics_only_when_the_body_was_cut(ending):
    response, code, unwell = ENDINGS[ending]

    async def check(url: str, state: dict) -> tuple[list, dict, str]:
        env = {"OPENAI_BASE_URL": url + "/v1", "OPENAI_API_KEY": "sk-test", "OPENAI_MODEL": "SmolLM2", "UPSTREAM_MAX_RETRIES": "0"}
        with LiveApp(env) as live:
            async with httpx.AsyncClient(timeout=15) as client:
                errors = []
                for _ in range(DEGRADED_AFTER):
                    frames = parse_frames((await client.post(live.url + STREAM_PATH, json=BODY)).content)
                    errors.append([(data["code"], data["retryable"]) for kind, data in frames if kind == "error"])
                health = (await client.get(live.url + HEALTH_PATH)).json()
                metrics = (await client.get(live.url + "/metrics")).text
        return errors, health, metrics

    errors, health, metrics = asyncio.run(serve(answering_once(response))(check))
    assert errors == [[(code, unwell)]] * DEGRADED_AFTER  # interrupted is retryable; too long is not
    assert health["upstream"]["consecutive_failures"] == (DEGRADED_AFTER if unwell else 0)
    assert health["status"] == ("degraded" if unwell else "ok")
    assert health["upstream"]["last_error_code"] == (code if unwell else None)
    assert f'scenario_agent_errors_total{{code="{code}"}} {DEGRADED_AFTER}' in metrics
    other = "context_too_long" if unwell else "upstream_interrupted"
    assert f'code="{other}"' not in metrics
