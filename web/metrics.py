"""The service's counters, written out in Prometheus' text format (version 0.0.4) by hand.

    metrics = Metrics()
    metrics.record_run("stream", "complete", run.summary())     # once per request, at its end
    metrics.record_rejection("stream", "rate_limited")          # an agent request refused up front
    metrics.record_upstream(200)                                # once per upstream HTTP request
    text = metrics.render(streams_active=3)                     # GET /metrics

Nothing here runs per token: a request is counted once, when it ends, from its summary
(the fields of its log line). A scrape only formats a few dozen numbers.

Every label value comes from a fixed, small set written below: never user input, model
text or request ids. A value outside its set is counted as "other", so a new error code
cannot grow the series without bound (add it to ERROR_CODES to see it by name).

The numbers are this process's: with several workers or instances, each has its own and
the scraper (or a query's `sum`) adds them up.
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
        "output_truncated", "content_filtered", "invalid_scenario", "server_shutdown", "internal",
        # refused before the run
        "rate_limited", "too_many_streams", "budget_exhausted", "unauthorized", "body_too_large",
        "body_timeout", "unsupported_media_type", "invalid_encoding", "invalid_json", "invalid_body",
        "unknown_field", "invalid_field", "too_large", "too_deep", "invalid_lab_mode", "client_disconnected", "unknown_query_parameter",
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


class Metrics:
    """This process's counters. Not thread-safe: updated from the event loop only."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], int] = {(e, o): 0 for e in ENDPOINTS for o in OUTCOMES}
        self.errors: dict[str, int] = {}
        self.upstream: dict[str, int] = {}
        self.ttft = Histogram(TTFT_BUCKETS)
        self.output_tokens = 0
        self.reasoning_tokens = 0

    # -- updates (once per request) -----------------------------------------------------------

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
        buckets: list[tuple[str, Mapping[str, str], float]] = []
        cumulative = 0
        for bound, count in zip(self.ttft.bounds, self.ttft.counts):
            cumulative += count
            buckets.append((f"{name}_bucket", {"le": repr(float(bound))}, cumulative))
        buckets.append((f"{name}_bucket", {"le": "+Inf"}, self.ttft.total))
        buckets.append((f"{name}_sum", {}, self.ttft.sum))
        buckets.append((f"{name}_count", {}, self.ttft.total))
        family(name, "histogram", "Seconds from the request to the model's first answer token.", buckets)
        family("scenario_agent_output_tokens_total", "counter", "Answer tokens the model produced (its usage; delta count when it sent none).", [("scenario_agent_output_tokens_total", {}, self.output_tokens)])
        family("scenario_agent_reasoning_tokens_total", "counter", "Reasoning tokens the model reported.", [("scenario_agent_reasoning_tokens_total", {}, self.reasoning_tokens)])
        family(
            "scenario_agent_upstream_requests_total",
            "counter",
            "Requests to the model server, by its answer's HTTP status (or connect_error, timeout, no_response).",
            [("scenario_agent_upstream_requests_total", {"status": s}, n) for s, n in sorted(self.upstream.items())],
        )
        return "\n".join(out) + "\n"
