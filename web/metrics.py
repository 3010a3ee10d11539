"""The service's counters, written out in Prometheus' text format (version 0.0.4) by hand.

    metrics = Metrics()
    metrics.record_run("stream", "complete", run.summary())     # once per request, at its end
    metrics.record_rejection("stream", "rate_limited")          # an agent request refused up front
    metrics.record_upstream(200)                                # once per upstream HTTP request
    metrics.record_genai("chat", "openai", 2.1, 0.4, 850, 120)  # once per model answer (GenAI client conventions)
    metrics.record_resume(); metrics.record_run_lost(); metrics.record_fallback("rate_limit")
    text = metrics.render(streams_active=3)                     # GET /metrics

Nothing here runs per token: a request is counted once, when it ends, from its summary
(the fields of its log line). A scrape only formats a few dozen numbers.

Every label value comes from a fixed, small set written below: never user input, model
text or request ids. A value outside its set is counted as "other", so a new error code
cannot grow the series without bound (add it to ERROR_CODES to see it by name).

The numbers are this process's: with several workers or instances, each has its own and
the scraper (or a query's `sum`) adds them up.

The `gen_ai_client_*` families follow OpenTelemetry's semantic conventions for GenAI client
metrics (gen_ai.client.operation.duration, gen_ai.client.operation.time_to_first_chunk,
gen_ai.client.token.usage: their units, attributes and advised bucket boundaries), named as
OpenTelemetry's Prometheus exporters name them: dots become underscores, the unit `s` adds
`_seconds`, the annotation `{token}` adds nothing.
"""

from __future__ import annotations

import bisect
from typing import Any, Mapping

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

ENDPOINTS = ("stream", "buffered")
OUTCOMES = ("complete", "error", "disconnected", "rejected")

# Every code the service answers with: agent/errors.py (a run's `error` event), web/body.py,
# agent/request.py and app.py's admission checks (tests/test_metrics.py keeps this in step).
ERROR_CODES = frozenset(
    {
        # a run's error
        "upstream_auth", "upstream_rate_limited", "upstream_unavailable", "upstream_timeout",
        "upstream_interrupted", "upstream_invalid_response", "upstream_rejected", "context_too_long",
        "output_truncated", "content_filtered", "invalid_scenario", "server_shutdown", "internal", "empty_answer",
        # refused before the run
        "rate_limited", "too_many_streams", "budget_exhausted", "request_over_budget", "budget_unavailable", "unauthorized", "body_too_large",
        "body_timeout", "unsupported_media_type", "invalid_encoding", "invalid_json", "invalid_body",
        "unknown_field", "invalid_field", "too_large", "too_deep", "invalid_lab_mode", "client_disconnected", "unknown_query_parameter",
        "forbidden_host", "forbidden_origin",
        # runs: a stop, a run whose owner went away, joins and repeats
        "cancelled", "run_lost", "run_log_truncated", "invalid_run_id", "invalid_last_event_id", "idempotency_conflict",
        "idempotency_key_in_use", "invalid_idempotency_key", "shared_state_unavailable", "lab_disabled",
    }
)

# Upstream answers worth a series of their own: these HTTP statuses, and the model's names for
# a request that got no HTTP answer (upstream/openai_compat.py: "connect_error", "timeout";
# "no_response" when none is given). Any other value is "other".
UPSTREAM_STATUSES = frozenset(
    {"200", "400", "401", "403", "404", "408", "409", "413", "422", "429", "500", "502", "503", "504", "connect_error", "timeout", "no_response"}
)

# Time to first token, in seconds: from a fast local model (tens of ms) to a slow reasoning
# model that thinks for a minute before its first answer token.
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)


# OpenTelemetry's advised boundaries (ExplicitBucketBoundaries) for the GenAI client histograms:
# seconds for the operation's duration and its time to first chunk, tokens for the usage.
GENAI_SECONDS_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
GENAI_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
GENAI_TOKEN_TYPES = ("input", "output")

# The features that fall back to this process when the shared state (Redis) cannot be reached;
# each has a series from the start, so an alert can watch it before it first moves.
FALLBACK_FEATURES = ("run_log", "join", "rate_limit", "concurrency", "budget")

# Free-form GenAI label values (operation, provider, model) come from the code and the settings,
# never from a request; still, at most this many distinct values each, then "_OTHER" (the
# conventions' own word for a value outside the known ones).
MAX_GENAI_LABEL_VALUES = 8
_GENAI_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:/@")


def error_label(code: str | None) -> str:
    return code if code in ERROR_CODES else "other"


def upstream_status_label(status: int | str | None) -> str:
    label = "no_response" if status is None else str(status)
    return label if label in UPSTREAM_STATUSES else "other"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _labels(pairs: Mapping[str, str]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in pairs.items()) + "}"


class Histogram:
    """Cumulative buckets (Prometheus' `le`), a sum and a count."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)  # per bucket, not cumulative; summed when written
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.bounds, value)  # the first bound >= value (`le` is inclusive)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += 1
        self.sum += value


class _BoundedLabel:
    """The first MAX_GENAI_LABEL_VALUES distinct values of a label as themselves, later ones "_OTHER"."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, value: str | None) -> str:
        if not value:
            return ""  # an empty label is the same as none (the attribute was not available)
        value = str(value)[:64]
        if not set(value) <= _GENAI_LABEL_CHARS:
            return "_OTHER"
        if value not in self.seen:
            if len(self.seen) >= MAX_GENAI_LABEL_VALUES:
                return "_OTHER"
            self.seen.add(value)
        return value


class Metrics:
    """This process's counters. Not thread-safe: updated from the event loop only."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], int] = {(e, o): 0 for e in ENDPOINTS for o in OUTCOMES}
        self.errors: dict[str, int] = {}
        self.upstream: dict[str, int] = {}
        self.ttft = Histogram(TTFT_BUCKETS)
        self.output_tokens = 0
        self.reasoning_tokens = 0
        # GenAI client histograms, by their label values:
        # (operation, provider, request model, error type) and (operation, provider, request model, token type).
        self.genai_duration: dict[tuple[str, ...], Histogram] = {}
        self.genai_first_chunk: dict[tuple[str, ...], Histogram] = {}
        self.genai_tokens: dict[tuple[str, ...], Histogram] = {}
        self._operation, self._provider, self._model = _BoundedLabel(), _BoundedLabel(), _BoundedLabel()
        self.resumes = 0
        self.runs_lost = 0
        self.fallbacks: dict[str, int] = {feature: 0 for feature in FALLBACK_FEATURES}

    # -- updates (once per request) -----------------------------------------------------------

    # Placeholders the lead added so app.py runs; the metrics helper replaces them with the
    # GenAI families and the counters.
    def record_resume(self) -> None:
        pass

    def record_run_lost(self) -> None:
        pass

    def record_fallback(self, feature: str) -> None:
        pass

    def record_genai(self, operation: str, provider: str, duration_s: float, ttft_s: float | None, input_tokens: int, output_tokens: int) -> None:
        pass

    def record_run(self, endpoint: str, outcome: str, summary: Mapping[str, Any]) -> None:
        """A request that ran, at its end. `outcome`: complete, error or disconnected.

        Reads `error_code`, `ttft_ms`, `usage` (completion_tokens), `reasoning_tokens` and
        `tokens` (the answer deltas, when no usage is known) from the run's summary.
        """
        self.requests[(self._endpoint(endpoint), outcome if outcome in OUTCOMES else "error")] += 1
        code = summary.get("error_code")
        if code:
            self._count_error(code)
        ttft_ms = summary.get("ttft_ms")
        if ttft_ms is not None:
            self.ttft.observe(ttft_ms / 1000)
        usage = summary.get("usage") or {}
        completion = usage.get("completion_tokens") if isinstance(usage, Mapping) else None
        self.output_tokens += int(completion if isinstance(completion, (int, float)) else summary.get("tokens") or 0)
        reasoning = summary.get("reasoning_tokens")
        if reasoning is None and isinstance(usage, Mapping):
            details = usage.get("completion_tokens_details") or {}
            reasoning = details.get("reasoning_tokens") if isinstance(details, Mapping) else None
        if isinstance(reasoning, (int, float)):
            self.reasoning_tokens += int(reasoning)

    def record_rejection(self, endpoint: str, code: str) -> None:
        """An agent request answered with an error before any run began (429, 503, 4xx)."""
        self.requests[(self._endpoint(endpoint), "rejected")] += 1
        self._count_error(code)

    def record_upstream(self, status: int | str | None) -> None:
        """One upstream request's answer: its HTTP status ("200", 503...), or why none came."""
        label = upstream_status_label(status)
        self.upstream[label] = self.upstream.get(label, 0) + 1

    def record_genai(
        self,
        operation: str,
        provider: str,
        duration_s: float | None,
        ttft_s: float | None,
        input_tokens: int | None,
        output_tokens: int | None,
        *,
        request_model: str | None = None,
        error_type: str | None = None,
    ) -> None:
        """One GenAI operation (one request to the model), at its end.

        `operation`: gen_ai.operation.name ("chat" for chat completions). `provider`:
        gen_ai.provider.name ("openai", ...). `duration_s`: from issuing the request to its
        end. `ttft_s`: to the first chunk of the response stream; None when none came (the
        conventions report it for streaming calls only). Token counts: the server's usage (or
        the count made without it); None when unknown, and then not recorded, as the
        conventions ask. `error_type`: the error code when the operation failed (error.type).
        """
        operation_label, provider_label, model_label = self._operation(operation), self._provider(provider), self._model(request_model)
        if duration_s is not None and duration_s >= 0:
            key = (operation_label, provider_label, model_label, error_label(error_type) if error_type else "")
            self.genai_duration.setdefault(key, Histogram(GENAI_SECONDS_BUCKETS)).observe(duration_s)
        if ttft_s is not None and ttft_s >= 0:
            key = (operation_label, provider_label, model_label, error_label(error_type) if error_type else "")
            self.genai_first_chunk.setdefault(key, Histogram(GENAI_SECONDS_BUCKETS)).observe(ttft_s)
        for token_type, count in zip(GENAI_TOKEN_TYPES, (input_tokens, output_tokens)):
            if isinstance(count, (int, float)) and count >= 0:
                key = (operation_label, provider_label, model_label, token_type)
                self.genai_tokens.setdefault(key, Histogram(GENAI_TOKEN_BUCKETS)).observe(int(count))

    def record_resume(self) -> None:
        """A reader joined a run it had been cut from (Last-Event-ID or ?after=)."""
        self.resumes += 1

    def record_run_lost(self) -> None:
        """A reader was told `run_lost`: the run's owner went away before `done`."""
        self.runs_lost += 1

    def record_fallback(self, feature: str) -> None:
        """A feature fell back to this process because the shared state could not be reached:
        one of FALLBACK_FEATURES (anything else is counted as "other")."""
        label = feature if feature in FALLBACK_FEATURES else "other"
        self.fallbacks[label] = self.fallbacks.get(label, 0) + 1

    def _count_error(self, code: str) -> None:
        label = error_label(code)
        self.errors[label] = self.errors.get(label, 0) + 1

    @staticmethod
    def _endpoint(endpoint: str) -> str:
        return endpoint if endpoint in ENDPOINTS else "stream"

    # -- the scrape ------------------------------------------------------------------------------

    def render(self, streams_active: int) -> str:
        out: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: list[tuple[str, Mapping[str, str], float]]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            for sample, labels, value in samples:
                out.append(f"{sample}{_labels(labels)} {_number(value)}")

        family("scenario_agent_streams_active", "gauge", "Agent requests open now (streaming and buffered).", [("scenario_agent_streams_active", {}, streams_active)])
        family(
            "scenario_agent_requests_total",
            "counter",
            "Agent requests by endpoint and how they ended.",
            [("scenario_agent_requests_total", {"endpoint": e, "outcome": o}, n) for (e, o), n in sorted(self.requests.items())],
        )
        family(
            "scenario_agent_errors_total",
            "counter",
            "Errors answered, by code (a run's error event or a refused request).",
            [("scenario_agent_errors_total", {"code": code}, n) for code, n in sorted(self.errors.items())],
        )
        name = "scenario_agent_time_to_first_token_seconds"
        family(name, "histogram", "Seconds from the request to the model's first answer token.", _histogram_samples(name, {}, self.ttft))
        family("scenario_agent_output_tokens_total", "counter", "Answer tokens the model produced (its usage; delta count when it sent none).", [("scenario_agent_output_tokens_total", {}, self.output_tokens)])
        family("scenario_agent_reasoning_tokens_total", "counter", "Reasoning tokens the model reported.", [("scenario_agent_reasoning_tokens_total", {}, self.reasoning_tokens)])
        family(
            "scenario_agent_upstream_requests_total",
            "counter",
            "Requests to the model server, by its answer's HTTP status (or connect_error, timeout, no_response).",
            [("scenario_agent_upstream_requests_total", {"status": s}, n) for s, n in sorted(self.upstream.items())],
        )
        family("scenario_agent_resumes_total", "counter", "Readers that joined a run after being cut from it (Last-Event-ID or ?after=).", [("scenario_agent_resumes_total", {}, self.resumes)])
        family("scenario_agent_run_lost_total", "counter", "Readers told run_lost: the process running the run went away before its end.", [("scenario_agent_run_lost_total", {}, self.runs_lost)])
        family(
            "scenario_agent_shared_state_fallbacks_total",
            "counter",
            "Times a feature fell back to this process because the shared state (Redis) could not be reached.",
            [("scenario_agent_shared_state_fallbacks_total", {"feature": f}, n) for f, n in sorted(self.fallbacks.items())],
        )

        def genai(name: str, help_text: str, histograms: dict[tuple[str, ...], Histogram], last: str) -> None:
            samples: list[tuple[str, Mapping[str, str], float]] = []
            for (operation, provider, model, extra), histogram in sorted(histograms.items()):
                labels = {"gen_ai_operation_name": operation, "gen_ai_provider_name": provider, "gen_ai_request_model": model, last: extra}
                samples.extend(_histogram_samples(name, labels, histogram))
            family(name, "histogram", help_text, samples)

        genai("gen_ai_client_operation_duration_seconds", "GenAI operation duration (gen_ai.client.operation.duration, s).", self.genai_duration, "error_type")
        genai(
            "gen_ai_client_operation_time_to_first_chunk_seconds",
            "Time from issuing the request to the first chunk of the response stream (gen_ai.client.operation.time_to_first_chunk, s).",
            self.genai_first_chunk,
            "error_type",
        )
        genai("gen_ai_client_token_usage", "Number of input and output tokens used (gen_ai.client.token.usage, {token}).", self.genai_tokens, "gen_ai_token_type")
        return "\n".join(out) + "\n"


def _histogram_samples(name: str, labels: Mapping[str, str], histogram: Histogram) -> list[tuple[str, Mapping[str, str], float]]:
    """A histogram's cumulative `_bucket` samples (with `le`), its `_sum` and `_count`."""
    samples: list[tuple[str, Mapping[str, str], float]] = []
    cumulative = 0
    for bound, count in zip(histogram.bounds, histogram.counts):
        cumulative += count
        samples.append((f"{name}_bucket", {**labels, "le": repr(float(bound))}, cumulative))
    samples.append((f"{name}_bucket", {**labels, "le": "+Inf"}, histogram.total))
    samples.append((f"{name}_sum", labels, histogram.sum))
    samples.append((f"{name}_count", labels, histogram.total))
    return samples
