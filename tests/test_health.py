"""Health tells the truth about the model server, from real traffic only (it never calls the model)."""

from __future__ import annotations

import datetime as dt

import httpx

from tests.conftest import upstream_env
from tests.support.servers import STREAM_PATH, FakeUpstream, LiveApp, Plan, parse_frames
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
        with LiveApp(upstream_env(fake, TOKEN_BUDGET_PER_DAY="1000")) as live:
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
