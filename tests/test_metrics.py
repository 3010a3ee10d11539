"""GET /metrics: Prometheus' text format, read with prometheus_client's own parser, following real traffic.

Every request here goes over a real socket to uvicorn (LiveApp), against the offline model or
the fake upstream; the numbers are compared before and after.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import upstream_env
from tests.support.harness import wait_until
from tests.support.servers import BUFFERED_PATH, STREAM_PATH, FakeUpstream, LiveApp, Plan, iter_frames
from web.metrics import ERROR_CODES, FALLBACK_FEATURES, MAX_GENAI_LABEL_VALUES, TTFT_BUCKETS, Metrics

ROOT = Path(__file__).resolve().parent.parent
BODY = {"message": "hello", "mode": "chat"}

FAMILIES = {
    "scenario_agent_streams_active": "gauge",
    "scenario_agent_requests": "counter",
    "scenario_agent_errors": "counter",
    "scenario_agent_time_to_first_token_seconds": "histogram",
    "scenario_agent_output_tokens": "counter",
    "scenario_agent_reasoning_tokens": "counter",
    "scenario_agent_upstream_requests": "counter",
    "scenario_agent_resumes": "counter",
    "scenario_agent_run_lost": "counter",
    "scenario_agent_shared_state_fallbacks": "counter",
    "gen_ai_client_operation_duration_seconds": "histogram",
    "gen_ai_client_operation_time_to_first_chunk_seconds": "histogram",
    "gen_ai_client_token_usage": "histogram",
}

# OpenTelemetry's GenAI client metrics (semantic conventions, gen-ai-metrics.md): the advised
# ExplicitBucketBoundaries, written out here rather than imported, so a change to the module
# cannot move both sides at once.
SPEC_SECONDS_BOUNDARIES = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
SPEC_TOKEN_BOUNDARIES = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]


def scrape(url: str, headers: dict[str, str] | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics as {(sample name, sorted labels): value}, parsed by prometheus_client."""
    response = httpx.get(url + "/metrics", headers=headers or {}, timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = list(text_string_to_metric_families(response.text))
    assert {f.name: f.type for f in families} == FAMILIES
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def requests_total(samples: dict, endpoint: str, outcome: str) -> float:
    return value(samples, "scenario_agent_requests_total", endpoint=endpoint, outcome=outcome)


def upstream_total(samples: dict) -> float:
    return sum(v for (name, _), v in samples.items() if name == "scenario_agent_upstream_requests_total")


def test_metrics_follow_offline_traffic() -> None:
    with LiveApp({"OFFLINE_TOKEN_DELAY_MS": "1"}) as live:
        before = scrape(live.url)
        assert value(before, "scenario_agent_streams_active") == 0
        for _ in range(3):
            response = httpx.post(live.url + STREAM_PATH, json=BODY, timeout=15)
            assert response.status_code == 200
        assert httpx.post(live.url + BUFFERED_PATH, json=BODY, timeout=15).status_code == 200
        bad = httpx.post(live.url + STREAM_PATH, content=b"{", headers={"content-type": "application/json"}, timeout=5)
        assert bad.status_code == 400
        after = scrape(live.url)

    assert requests_total(after, "stream", "complete") - requests_total(before, "stream", "complete") == 3
    assert requests_total(after, "buffered", "complete") - requests_total(before, "buffered", "complete") == 1
    assert requests_total(after, "stream", "rejected") - requests_total(before, "stream", "rejected") == 1
    assert value(after, "scenario_agent_errors_total", code="invalid_json") == 1
    ttft = "scenario_agent_time_to_first_token_seconds"
    assert value(after, f"{ttft}_count") - value(before, f"{ttft}_count") == 4
    assert value(after, f"{ttft}_bucket", le="+Inf") == value(after, f"{ttft}_count")
    assert 0 < value(after, f"{ttft}_sum") < 4 * 10
    # Buckets are cumulative and run from 50 ms to 60 s.
    counts = [value(after, f"{ttft}_bucket", le=repr(float(b))) for b in TTFT_BUCKETS]
    assert counts == sorted(counts)
    assert TTFT_BUCKETS[0] == 0.05 and TTFT_BUCKETS[-1] == 60.0
    assert value(after, "scenario_agent_output_tokens_total") > value(before, "scenario_agent_output_tokens_total")
    # The offline model is an OpenAI-compatible server on loopback: one request to it per run.
    assert upstream_total(after) - upstream_total(before) == 4
    assert value(after, "scenario_agent_upstream_requests_total", status="200") == 4


def test_metrics_count_upstream_requests_errors_and_usage() -> None:
    with FakeUpstream() as fake:
        with LiveApp(upstream_env(fake)) as live:
            before = scrape(live.url)
            fake.push(Plan(tokens=["a", "b", "c"]))  # usage: the fake reports completion_tokens = 3
            assert httpx.post(live.url + STREAM_PATH, json=BODY, timeout=15).status_code == 200
            fake.push(Plan(status=503))
            failed = httpx.post(live.url + STREAM_PATH, json=BODY, timeout=15)
            assert failed.status_code == 200 and b"upstream_unavailable" in failed.content
            after = scrape(live.url)

    assert requests_total(after, "stream", "complete") - requests_total(before, "stream", "complete") == 1
    assert requests_total(after, "stream", "error") - requests_total(before, "stream", "error") == 1
    assert value(after, "scenario_agent_errors_total", code="upstream_unavailable") == 1
    assert value(after, "scenario_agent_output_tokens_total") - value(before, "scenario_agent_output_tokens_total") == 3
    assert upstream_total(after) - upstream_total(before) == 2
    assert value(after, "scenario_agent_upstream_requests_total", status="200") == 1
    assert value(after, "scenario_agent_upstream_requests_total", status="503") == 1


def test_metrics_count_disconnects_and_rate_limit_rejections() -> None:
    with FakeUpstream(Plan(tokens=["tick "] * 200, interval_ms=20)) as fake:
        with LiveApp(upstream_env(fake, RATE_LIMIT_PER_MINUTE="2")) as live:
            before = scrape(live.url)
            with httpx.Client(timeout=10) as client:
                with client.stream("POST", live.url + STREAM_PATH, json=BODY) as response:
                    for _, kind, _ in iter_frames(response):
                        if kind == "chat":
                            break  # leave mid-answer
            assert live.wait_no_streams(5) == 0
            fake.push(Plan(tokens=["ok"]))
            assert httpx.post(live.url + BUFFERED_PATH, json=BODY, timeout=10).status_code == 200
            limited = httpx.post(live.url + BUFFERED_PATH, json=BODY, timeout=10)
            assert limited.status_code == 429
            after = scrape(live.url)

    assert requests_total(after, "stream", "disconnected") - requests_total(before, "stream", "disconnected") == 1
    assert requests_total(after, "buffered", "complete") - requests_total(before, "buffered", "complete") == 1
    assert requests_total(after, "buffered", "rejected") - requests_total(before, "buffered", "rejected") == 1
    assert value(after, "scenario_agent_errors_total", code="rate_limited") == 1


def test_streams_active_gauge_while_streams_run() -> None:
    with FakeUpstream(Plan(tokens=["tick "] * 40, interval_ms=50)) as fake:
        with LiveApp(upstream_env(fake)) as live:
            threads = [threading.Thread(target=httpx.post, args=(live.url + STREAM_PATH,), kwargs={"json": BODY, "timeout": 20}) for _ in range(3)]
            for thread in threads:
                thread.start()
            assert wait_until(lambda: fake.open_streams == 3, 10)
            assert value(scrape(live.url), "scenario_agent_streams_active") == 3
            for thread in threads:
                thread.join(20)
            assert wait_until(lambda: value(scrape(live.url), "scenario_agent_streams_active") == 0, 5)


def test_counters_move_once_per_request_not_per_token() -> None:
    """A 300-token stream is one request, one TTFT observation; a scrape meanwhile sees no partial count."""
    with FakeUpstream(Plan(tokens=["t "] * 300, interval_ms=5)) as fake:
        with LiveApp(upstream_env(fake)) as live:
            metrics = live.service.metrics
            thread = threading.Thread(target=httpx.post, args=(live.url + STREAM_PATH,), kwargs={"json": BODY, "timeout": 30})
            thread.start()
            assert wait_until(lambda: len(fake.emitted) > 100, 10)
            mid = scrape(live.url)
            assert value(mid, "scenario_agent_output_tokens_total") == 0
            assert value(mid, "scenario_agent_time_to_first_token_seconds_count") == 0
            thread.join(30)
            assert wait_until(lambda: metrics.ttft.total == 1, 5)
            after = scrape(live.url)
    assert requests_total(after, "stream", "complete") == 1
    assert value(after, "scenario_agent_output_tokens_total") == 300


def test_metrics_need_the_access_token_when_one_is_set() -> None:
    with LiveApp({"APP_ACCESS_TOKEN": "s3cret-token"}) as live:
        assert httpx.get(live.url + "/metrics", timeout=5).status_code == 401
        assert httpx.get(live.url + "/metrics", headers={"authorization": "Bearer wrong"}, timeout=5).status_code == 401
        scrape(live.url, {"authorization": "Bearer s3cret-token"})


def test_labels_are_a_fixed_set() -> None:
    metrics = Metrics()
    metrics.record_rejection("stream", "made_up_code")
    metrics.record_rejection("not-an-endpoint", "rate_limited")
    metrics.record_run("stream", "weird-outcome", {"error_code": "x" * 200, "ttft_ms": 10})
    metrics.record_upstream(299)
    metrics.record_upstream(None)
    samples = {(s.name, tuple(sorted(s.labels.items()))) for f in text_string_to_metric_families(metrics.render(0)) for s in f.samples}
    codes = {dict(labels)["code"] for name, labels in samples if name == "scenario_agent_errors_total"}
    assert codes == {"other", "rate_limited"}
    statuses = {dict(labels)["status"] for name, labels in samples if name == "scenario_agent_upstream_requests_total"}
    assert statuses == {"other", "no_response"}
    endpoints = {dict(labels)["endpoint"] for name, labels in samples if name == "scenario_agent_requests_total"}
    assert endpoints == {"stream", "buffered"}
    outcomes = {dict(labels)["outcome"] for name, labels in samples if name == "scenario_agent_requests_total"}
    assert outcomes == {"complete", "error", "disconnected", "rejected"}


def test_every_error_code_the_service_answers_has_its_own_label() -> None:
    """The codes written in the source (AgentError, ApiError, InvalidRequest) are all in ERROR_CODES."""
    patterns = [r'AgentError\(\s*"([a-z_]+)"', r'ApiError\(\s*\d{3},\s*"([a-z_]+)"', r'InvalidRequest\(\s*"([a-z_]+)"']
    found: set[str] = set()
    for path in [ROOT / "app.py", *(ROOT / "agent").glob("*.py"), *(ROOT / "web").glob("*.py"), *(ROOT / "upstream").rglob("*.py")]:
        text = path.read_text()
        for pattern in patterns:
            found.update(re.findall(pattern, text))
    assert "upstream_unavailable" in found and "rate_limited" in found  # the scan itself works
    assert found - ERROR_CODES == set()


def test_scrape_is_cheap() -> None:
    metrics = Metrics()
    for i in range(1000):
        metrics.record_run("stream", "complete", {"ttft_ms": i, "usage": {"completion_tokens": 5}})
    started = time.perf_counter()
    for _ in range(100):
        metrics.render(3)
    assert (time.perf_counter() - started) / 100 < 0.005  # well under 5 ms a scrape


# -- OpenTelemetry GenAI client metrics, and the run counters ----------------------------------------------


def families_of(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def bounds_of(family: object, **labels: str) -> list[float]:
    """The finite `le` boundaries of one series of a histogram family, in order."""
    les = [s.labels["le"] for s in family.samples if s.name.endswith("_bucket") and all(s.labels.get(k) == v for k, v in labels.items())]  # type: ignore[attr-defined]
    assert les[-1] == "+Inf"
    return [float(le) for le in les[:-1]]


def test_genai_families_have_the_conventions_names_units_labels_and_buckets() -> None:
    metrics = Metrics()
    metrics.record_genai("chat", "openai", 1.5, 0.3, 850, 120, request_model="gpt-4o-mini")
    text = metrics.render(0)
    families = families_of(text)
    for name in ("gen_ai_client_operation_duration_seconds", "gen_ai_client_operation_time_to_first_chunk_seconds", "gen_ai_client_token_usage"):
        assert families[name].type == "histogram", name  # type: ignore[attr-defined]
    # The unit is in the name, as OpenTelemetry's Prometheus exporters write it: `s` -> _seconds,
    # `{token}` -> nothing; and in the HELP text, with the conventions' metric name.
    assert "gen_ai.client.operation.duration" in text and "gen_ai.client.token.usage, {token}" in text
    labels = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai", "gen_ai_request_model": "gpt-4o-mini"}
    assert bounds_of(families["gen_ai_client_operation_duration_seconds"], **labels) == SPEC_SECONDS_BOUNDARIES
    assert bounds_of(families["gen_ai_client_operation_time_to_first_chunk_seconds"], **labels) == SPEC_SECONDS_BOUNDARIES
    for token_type in ("input", "output"):
        assert bounds_of(families["gen_ai_client_token_usage"], gen_ai_token_type=token_type, **labels) == SPEC_TOKEN_BOUNDARIES
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}  # type: ignore[attr-defined]

    def sample(name: str, **extra: str) -> float:
        return samples[(name, tuple(sorted({**labels, **extra}.items())))]

    assert sample("gen_ai_client_operation_duration_seconds_sum", error_type="") == 1.5
    assert sample("gen_ai_client_operation_duration_seconds_bucket", error_type="", le="1.28") == 0
    assert sample("gen_ai_client_operation_duration_seconds_bucket", error_type="", le="2.56") == 1
    assert sample("gen_ai_client_operation_time_to_first_chunk_seconds_bucket", error_type="", le="0.32") == 1
    assert sample("gen_ai_client_token_usage_sum", gen_ai_token_type="input") == 850
    assert sample("gen_ai_client_token_usage_bucket", gen_ai_token_type="input", le="256.0") == 0
    assert sample("gen_ai_client_token_usage_bucket", gen_ai_token_type="input", le="1024.0") == 1
    assert sample("gen_ai_client_token_usage_bucket", gen_ai_token_type="output", le="256.0") == 1
    assert sample("gen_ai_client_token_usage_count", gen_ai_token_type="output") == 1


def test_genai_records_only_what_is_known() -> None:
    """No first chunk (an error before it): no time-to-first-chunk; unknown token counts: no usage."""
    metrics = Metrics()
    metrics.record_genai("chat", "openai", 0.05, None, None, None, error_type="upstream_unavailable")
    families = families_of(metrics.render(0))
    duration = families["gen_ai_client_operation_duration_seconds"]
    counts = [s for s in duration.samples if s.name.endswith("_count")]  # type: ignore[attr-defined]
    assert [(s.labels["error_type"], s.value) for s in counts] == [("upstream_unavailable", 1)]
    assert families["gen_ai_client_operation_time_to_first_chunk_seconds"].samples == []  # type: ignore[attr-defined]
    assert families["gen_ai_client_token_usage"].samples == []  # type: ignore[attr-defined]
    metrics.record_genai("chat", "openai", 1.0, 0.2, 0, 3, error_type="made_up")
    error_types = {s.labels["error_type"] for s in families_of(metrics.render(0))["gen_ai_client_operation_duration_seconds"].samples}  # type: ignore[attr-defined]
    assert error_types == {"upstream_unavailable", "other"}


def test_genai_labels_stay_a_bounded_set() -> None:
    metrics = Metrics()
    for index in range(50):
        metrics.record_genai("chat", f"provider-{index}", 0.1, 0.05, 1, 1, request_model=f"model-{index}")
    metrics.record_genai("chat", 'evil"} 1\nx', 0.1, None, 1, 1)
    families = families_of(metrics.render(0))
    providers = {s.labels["gen_ai_provider_name"] for s in families["gen_ai_client_token_usage"].samples}  # type: ignore[attr-defined]
    models = {s.labels["gen_ai_request_model"] for s in families["gen_ai_client_token_usage"].samples}  # type: ignore[attr-defined]
    assert len(providers) == MAX_GENAI_LABEL_VALUES + 1 and "_OTHER" in providers
    assert len(models) == MAX_GENAI_LABEL_VALUES + 2 and {"_OTHER", ""} <= models


def test_run_counters_and_fallbacks() -> None:
    metrics = Metrics()
    families = families_of(metrics.render(0))
    fallbacks = {s.labels["feature"]: s.value for s in families["scenario_agent_shared_state_fallbacks"].samples}  # type: ignore[attr-defined]
    assert fallbacks == {feature: 0 for feature in FALLBACK_FEATURES}  # every feature has a series from the start
    for _ in range(3):
        metrics.record_resume()
    metrics.record_run_lost()
    metrics.record_fallback("rate_limit")
    metrics.record_fallback("rate_limit")
    metrics.record_fallback("budget")
    metrics.record_fallback("made-up feature")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families_of(metrics.render(0)).values() for s in f.samples}  # type: ignore[attr-defined]
    assert samples[("scenario_agent_resumes_total", ())] == 3
    assert samples[("scenario_agent_run_lost_total", ())] == 1
    assert samples[("scenario_agent_shared_state_fallbacks_total", (("feature", "rate_limit"),))] == 2
    assert samples[("scenario_agent_shared_state_fallbacks_total", (("feature", "budget"),))] == 1
    assert samples[("scenario_agent_shared_state_fallbacks_total", (("feature", "other"),))] == 1
    assert samples[("scenario_agent_shared_state_fallbacks_total", (("feature", "join"),))] == 0


def test_genai_metrics_follow_upstream_traffic() -> None:
    """One answer from the model: one operation, its time to first chunk, and the server's usage
    (the fake reports prompt_tokens 7, completion_tokens = its token count)."""
    with FakeUpstream() as fake:
        with LiveApp(upstream_env(fake)) as live:
            fake.push(Plan(tokens=["a", "b", "c", "d", "e"], first_delay_ms=50))
            assert httpx.post(live.url + STREAM_PATH, json=BODY, timeout=15).status_code == 200
            assert live.wait_no_streams(5) == 0
            after = scrape(live.url)

    def total(name: str, **labels: str) -> float:
        return sum(v for (n, ls), v in after.items() if n == name and all(dict(ls).get(k) == x for k, x in labels.items()))

    assert total("gen_ai_client_operation_duration_seconds_count", gen_ai_operation_name="chat") == 1
    assert total("gen_ai_client_operation_time_to_first_chunk_seconds_count", gen_ai_operation_name="chat") == 1
    assert total("gen_ai_client_operation_time_to_first_chunk_seconds_sum") >= 0.05
    assert total("gen_ai_client_token_usage_sum", gen_ai_token_type="input") == 7
    assert total("gen_ai_client_token_usage_sum", gen_ai_token_type="output") == 5
