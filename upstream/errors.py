"""The upstream's failures as the agent's typed errors (agent/errors.py), and what the log records.

The client sees only the agent's own messages; the upstream's text (which may hold a
traceback, a quoted prompt or a key) goes to the operator's log, redacted: see `details`.
"""

from __future__ import annotations

import math
import re
from typing import Any

import httpx
import openai

from agent import errors

# A Retry-After beyond this is passed on as this (an hour); beyond a day it is garbage.
MAX_RETRY_AFTER_SECONDS = 3600.0
_NONSENSE_RETRY_AFTER_SECONDS = 86400.0
_MAX_LOGGED_CHARS = 500

# What "the prompt is too long" looks like: OpenAI/Azure `context_length_exceeded`, vLLM and
# llama-cpp-python "maximum context length is", llama.cpp "exceeds the available context
# size" (`exceed_context_size_error`), Anthropic-style "prompt is too long", LM Studio
# "context overflow".
_CONTEXT_CODES = {"context_length_exceeded", "exceed_context_size_error", "context_too_long", "string_above_max_length"}
_CONTEXT_TEXT = re.compile(
    r"context[ _-]?(length|window|size)|maximum context|prompt is too long|too many tokens|context overflow"
    r"|reduce the length of the (messages|prompt)|exceeds? (the )?(model'?s? )?(max|maximum|available) (context|tokens)",
    re.IGNORECASE,
)

# Anything that looks like a credential: OpenAI-style keys, bearer tokens, long hex or
# base64 runs (Azure keys are 32 hex characters), key=value query parameters.
_SECRETS = re.compile(
    r"(sk|pk|rk)-[A-Za-z0-9_\-]{6,}"
    r"|Bearer\s+[^\s\"',;]+"
    r"|(api[_-]?key|token|secret|password)=[^\s&\"',;]+"
    r"|\b[0-9a-fA-F]{24,}\b",
    re.IGNORECASE,
)
# Long base64-like runs are keys only if they mix letters and digits (a file path does not).
_LONG_RUN = re.compile(r"[A-Za-z0-9+/_\-]{32,}={0,2}")


def _redact_run(match: re.Match[str]) -> str:
    run = match.group()
    return "[redacted]" if any(c.isdigit() for c in run) and any(c.isalpha() for c in run) else run


def redact(text: Any, secret: str | None = None) -> str | None:
    """`text` as a short string with anything that looks like a key replaced by `[redacted]`."""
    if text is None:
        return None
    text = short_str(text)
    if secret and len(secret) >= 4:
        text = text.replace(secret, "[redacted]")
    text = _LONG_RUN.sub(_redact_run, _SECRETS.sub("[redacted]", text))
    return text if len(text) <= _MAX_LOGGED_CHARS else text[:_MAX_LOGGED_CHARS] + "..."


def short_str(value: Any) -> str:
    """str(value), at most a few thousand characters, even for a hostile value (a deeply nested
    body would raise RecursionError; a 10 MB message would cost the regexes time)."""
    try:
        text = value if isinstance(value, str) else str(value)
    except (RecursionError, ValueError):  # ValueError: an int too long to print
        return "(unprintable)"
    return text[: _MAX_LOGGED_CHARS * 8]


def details(status: int | str | None, error: Any, secret: str | None = None) -> dict[str, Any]:
    """The log fields for one upstream error: its HTTP status and its error type, code, param
    and message (redacted). `error` is the body's `error` object (or the whole body)."""
    fields: dict[str, Any] = {"upstream_status": status}
    if isinstance(error, dict):
        for name in ("type", "code", "param"):
            fields["upstream_" + name] = redact(error.get(name), secret)
        fields["upstream_message"] = redact(error.get("message"), secret)
    elif error is not None:
        fields["upstream_message"] = redact(error, secret)
    return fields


def is_context_too_long(error: Any) -> bool:
    """Whether an upstream error object says the prompt does not fit the model's context."""
    if not isinstance(error, dict):
        return isinstance(error, str) and bool(_CONTEXT_TEXT.search(error[:4000]))
    if str(error.get("code")) in _CONTEXT_CODES or str(error.get("type")) in _CONTEXT_CODES:
        return True
    message = error.get("message")
    return isinstance(message, str) and bool(_CONTEXT_TEXT.search(message[:4000]))


def payload_error(error: Any) -> errors.AgentError:
    """An error sent inside the stream, e.g. {"error": {"code": 429, "message": ...}}."""
    code = error.get("code") if isinstance(error, dict) else None
    kind = str(error.get("type", "")) if isinstance(error, dict) else ""
    if code in (429, "429", "rate_limit_exceeded") or "rate" in kind:
        return errors.upstream_rate_limited(None)
    if code in (401, 403, "401", "403", "invalid_api_key"):
        return errors.upstream_auth()
    if is_context_too_long(error):
        return errors.context_too_long()
    return errors.upstream_unavailable(" (it reported an error mid-answer)")


def retry_after(raw: str | None) -> float | None:
    """A Retry-After header in seconds: finite, not negative, at most an hour; else None.

    `inf`, `nan`, `1e308` or a negative number would otherwise reach a frame as a number JSON
    cannot hold (or an OverflowError in rounding). An HTTP date (rare from model servers) is
    None too: the client retries anyway."""
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0 or value > _NONSENSE_RETRY_AFTER_SECONDS:
        return None
    return min(value, MAX_RETRY_AFTER_SECONDS)


def map_exception(exc: BaseException) -> errors.AgentError | None:
    """The typed error for an openai or httpx exception, or None if it is not an upstream failure."""
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return errors.upstream_auth()
    if isinstance(exc, openai.RateLimitError):
        return errors.upstream_rate_limited(retry_after(exc.response.headers.get("retry-after")))
    if isinstance(exc, openai.APIStatusError):
        # exc.body is the body's `error` object (the SDK takes it out).
        if exc.status_code == 413 or is_context_too_long(exc.body):
            return errors.context_too_long()
        if exc.status_code >= 500 or exc.status_code in (408, 409):
            return errors.upstream_unavailable(f" (HTTP {exc.status_code})")
        return errors.upstream_rejected(exc.status_code)
    if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException)):
        return errors.upstream_timeout()
    if isinstance(exc, openai.APIConnectionError):
        return errors.upstream_unavailable()
    if isinstance(exc, httpx.TransportError):
        return errors.upstream_interrupted()  # the connection broke after the answer started
    return None
