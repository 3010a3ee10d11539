"""The upstream's failures as the agent's typed errors (agent/errors.py)."""

from __future__ import annotations

from typing import Any

import httpx
import openai

from agent import errors


def payload_error(error: Any) -> errors.AgentError:
    """An error sent inside the stream, e.g. {"error": {"code": 429, "message": ...}}."""
    code = error.get("code") if isinstance(error, dict) else None
    kind = str(error.get("type", "")) if isinstance(error, dict) else ""
    if code in (429, "429", "rate_limit_exceeded") or "rate" in kind:
        return errors.upstream_rate_limited(None)
    if code in (401, 403, "401", "403", "invalid_api_key"):
        return errors.upstream_auth()
    return errors.upstream_unavailable(" (it reported an error mid-answer)")


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None  # an HTTP date; rare from model servers, and the client retries anyway


def map_exception(exc: BaseException) -> errors.AgentError | None:
    """The typed error for an openai or httpx exception, or None if it is not an upstream failure."""
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return errors.upstream_auth()
    if isinstance(exc, openai.RateLimitError):
        return errors.upstream_rate_limited(_retry_after(exc.response))
    if isinstance(exc, openai.APIStatusError):
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


