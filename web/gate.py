"""The one middleware: request ids, security headers, the access token, one log line per request.

Pure ASGI (not Starlette's body-wrapping middleware base class): it never buffers the body. Its `send`
wrapper touches only `http.response.start`; body messages go straight through. Error codes
reach the log line through scope["state"]["error_code"], set where an error is answered.

The log line replaces uvicorn's access log (turned off at startup), so each API request
is exactly one JSON line on stdout:
    {"request_id", "method", "path", "status" (HTTP), "state" (the run's end state),
     "intent", "provider", "model", "error_code", "ttft_ms", "tokens", "duration_ms",
     "client_disconnected", "outcome"}
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from typing import Any

from starlette.types import Receive, Scope, Send

from web.errors import error_response

log = logging.getLogger("scenario_agent.request")

PUBLIC_API_PATHS = frozenset({"/api/agent/scenario/stream/health"})


def content_security_policy(frame_ancestors: str) -> str:
    # A separator would end the directive and let the value add others (or break the header).
    if any(c in frame_ancestors for c in ";,\r\n"):
        raise ValueError(f"FRAME_ANCESTORS must be a space-separated list of CSP sources, got {frame_ancestors!r}")
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        f"frame-ancestors {frame_ancestors}"
    )


def _digest(token: bytes) -> bytes:
    # Comparing fixed-length digests: the time taken says nothing about the token's length either.
    return hashlib.sha256(token).digest()


class Gate:
    def __init__(self, app: Any, *, access_token: str | None, frame_ancestors: str) -> None:
        self.app = app
        self.access_digest = _digest(access_token.encode()) if access_token else None
        self.security_headers = [
            (b"content-security-policy", content_security_policy(frame_ancestors).encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        ]
        # For browsers without CSP frame-ancestors; only when it says the same thing.
        legacy = {"'self'": b"SAMEORIGIN", "'none'": b"DENY"}.get(frame_ancestors.strip())
        if legacy:
            self.security_headers.append((b"x-frame-options", legacy))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = uuid.uuid4().hex[:16]
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        extra_headers = self.security_headers + [(b"x-request-id", request_id.encode())]
        status = 0

        async def send_with_headers(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra_headers]
            await send(message)

        path: str = scope["path"]
        try:
            if path.startswith("/api/") and path not in PUBLIC_API_PATHS and not self._authorized(scope):
                state["error_code"] = "unauthorized"
                response = error_response(
                    401,
                    {"code": "unauthorized", "message": "This server needs an access token: send 'Authorization: Bearer <token>'."},
                    {"www-authenticate": "Bearer"},
                )
                await response(scope, receive, send_with_headers)
            else:
                await self.app(scope, receive, send_with_headers)
        finally:
            entry: dict[str, Any] = {"request_id": request_id, "method": scope["method"], "path": path, "status": status}
            entry.update(state.get("run_summary", {}))  # intent, model, state, ttft_ms, tokens, ...
            if entry.get("error_code") is None:
                entry["error_code"] = state.get("error_code")  # set where an HTTP error is answered
            entry.setdefault("client_disconnected", False)
            entry.setdefault("duration_ms", round((time.perf_counter() - started) * 1000, 1))
            log.log(logging.INFO if path.startswith("/api/") else logging.DEBUG, entry)

    def _authorized(self, scope: Scope) -> bool:
        if self.access_digest is None:
            return True
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                # compare_digest takes the same time wherever the first difference is.
                return hmac.compare_digest(_digest(token.strip()), self.access_digest) and scheme.lower() == b"bearer"
        return False

