"""The one middleware: request ids, security headers, the access token, one log line per request.

Pure ASGI (no BaseHTTPMiddleware): it never wraps or buffers the body. Its `send`
wrapper touches only `http.response.start`; body messages go straight through.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from typing import Any

from web.errors import error_response
from web.stream import Receive, Scope, Send

log = logging.getLogger("scenario_agent.request")

PUBLIC_API_PATHS = frozenset({"/api/agent/scenario/stream/health"})


def content_security_policy(frame_ancestors: str) -> str:
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        f"frame-ancestors {frame_ancestors}"
    )


class Gate:
    def __init__(self, app: Any, *, access_token: str | None, frame_ancestors: str) -> None:
        self.app = app
        self.access_token = access_token.encode() if access_token else None
        self.security_headers = [
            (b"content-security-policy", content_security_policy(frame_ancestors).encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        ]

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
                response = error_response(
                    401,
                    {"code": "unauthorized", "message": "This server needs an access token: send 'Authorization: Bearer <token>'."},
                    {"www-authenticate": "Bearer"},
                )
                await response(scope, receive, send_with_headers)
            else:
                await self.app(scope, receive, send_with_headers)
        finally:
            if path.startswith("/api/"):
                entry = {"request_id": request_id, "method": scope["method"], "path": path, "status": status}
                entry.update(state.get("run_summary", {}))
                entry.setdefault("duration_ms", round((time.perf_counter() - started) * 1000, 1))
                log.info(entry)

    def _authorized(self, scope: Scope) -> bool:
        if self.access_token is None:
            return True
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                # compare_digest takes the same time wherever the first difference is.
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.access_token)
        return False
