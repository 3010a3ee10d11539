"""HTTP errors as `{"error": {"code", "message", ...}}` JSON: never a stack trace, never HTML."""

from __future__ import annotations

from typing import Any, Mapping

from starlette.responses import JSONResponse


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra

    def response(self) -> JSONResponse:
        return error_response(self.status, {"code": self.code, "message": self.message, **self.extra}, self.headers)


def error_response(status: int, error: dict[str, Any], headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=status, headers=dict(headers or {}))


# An agent error code's HTTP status, for the buffered endpoint.
AGENT_ERROR_STATUS = {
    "upstream_auth": 502,
    "upstream_rate_limited": 429,
    "upstream_unavailable": 502,
    "upstream_timeout": 504,
    "upstream_interrupted": 502,
    "upstream_invalid_response": 502,
    "upstream_rejected": 502,
    "context_too_long": 422,
    "output_truncated": 422,
    "content_filtered": 422,
    "invalid_scenario": 422,
    "server_shutdown": 503,
    "internal": 500,
}
