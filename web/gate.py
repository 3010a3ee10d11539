"""The two pure ASGI middlewares: the Gate (outermost) and the AccessGuard (innermost).

Gate wraps the whole Starlette app, outside Starlette's own ServerErrorMiddleware and the
CORS middleware, so every response gets the request id and the security headers: CORS
preflights, Starlette's 500s, and a JSON 500 of its own when the app raises before it has
started a response. It writes the one log line per request.

AccessGuard sits inside CORS (so its refusals carry CORS headers for listed origins, and
preflights are answered by CORS without a token) and decides who may use `/api/*` and
`/metrics`:
    403 forbidden_host    `Host` is a name this server does not answer to (DNS rebinding): not
                          a loopback name, not this machine's name, not the platform's name
                          for the app (PLATFORM_HOST_VARIABLES), not in ALLOWED_HOSTS.
                          Addresses are always accepted. ALLOWED_HOSTS=* turns the check off
    403 forbidden_origin  `Origin` is present and is neither this server's own origin nor in
                          ALLOWED_ORIGINS (a cross-site page spending the model budget);
                          ALLOWED_ORIGINS=* lets every origin through
    401 unauthorized      APP_ACCESS_TOKEN is set and the request does not carry it
The page's static files and /openapi.json are left open: they are public, read-only, and
hold nothing a page on another site could not fetch from anywhere.

Both are pure ASGI (not Starlette's body-wrapping middleware base class): neither buffers the
body. The Gate's `send` wrapper looks at `message["type"]` once and touches only
`http.response.start`; body frames go straight through. The guard wraps nothing. Error codes
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
import ipaddress
import logging
import os
import socket
import time
import secrets
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from web.errors import error_response

log = logging.getLogger("scenario_agent.request")

PUBLIC_API_PATHS = frozenset({"/api/agent/scenario/stream/health"})  # no token needed


def is_guarded(path: str) -> bool:
    """The paths AccessGuard checks: the API, and /metrics (which also needs the token)."""
    return path.startswith("/api/") or path == "/metrics"
DEFAULT_PORTS = {"http": 80, "https": 443}


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
    """Outermost middleware: request id, security headers, JSON 500 of last resort, the log line.

    `state` is the wrapped app's (`create_app(...).state.service` is the Service).
    """

    def __init__(self, app: ASGIApp, *, frame_ancestors: str) -> None:
        self.app = app
        self.security_headers = [
            (b"content-security-policy", content_security_policy(frame_ancestors).encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        ]
        # For browsers without CSP frame-ancestors; only when it says the same thing.
        legacy = {"'self'": b"SAMEORIGIN", "'none'": b"DENY"}.get(frame_ancestors.strip())
        if legacy:
            self.security_headers.append((b"x-frame-options", legacy))

    @property
    def state(self) -> Any:
        return self.app.state  # type: ignore[attr-defined]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # 128 random bits: a stream's request id is also its run's id, which is all a join needs
        # besides the access token (runs/registry.py).
        request_id = secrets.token_hex(16)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        extra_headers = self.security_headers + [(b"x-request-id", request_id.encode())]
        status = 0  # also "has the response started"

        async def send_with_headers(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra_headers]
            await send(message)

        path: str = scope["path"]
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # Starlette's ServerErrorMiddleware answers its own 500 first (the app's handler
            # makes it JSON); this is for anything raised outside it. Re-raised either way, so
            # uvicorn logs the traceback: it is a bug.
            if status == 0:
                state["error_code"] = "internal"
                await error_response(500, {"code": "internal", "message": "Internal error. The request id is in X-Request-ID."})(scope, receive, send_with_headers)
            raise
        finally:
            entry: dict[str, Any] = {"request_id": request_id, "method": scope["method"], "path": path, "status": status}
            entry.update(state.get("run_summary", {}))  # intent, model, state, ttft_ms, tokens, ...
            if entry.get("error_code") is None:
                entry["error_code"] = state.get("error_code")  # set where an HTTP error is answered
            entry.setdefault("client_disconnected", entry["error_code"] == "client_disconnected")
            entry.setdefault("duration_ms", round((time.perf_counter() - started) * 1000, 1))
            log.log(logging.INFO if path.startswith("/api/") else logging.DEBUG, entry)


# -- who may use the API ------------------------------------------------------------------------

# The names a platform gives the app, from the variables it sets in the app's environment:
# variable -> the names, "{}" being the value. Read once, when the AccessGuard is built (when
# the app handles its first request; never at import).
PLATFORM_HOST_VARIABLES: dict[str, tuple[str, ...]] = {
    "RENDER_EXTERNAL_HOSTNAME": ("{}",),  # Render: <service>.onrender.com
    "FLY_APP_NAME": ("{}.fly.dev", "{}.internal", "{}.flycast"),  # Fly.io: public, private network, Flycast
    "HEROKU_APP_DEFAULT_DOMAIN_NAME": ("{}",),  # Heroku, with dyno metadata on (labs:enable runtime-dyno-metadata)
    "RAILWAY_PUBLIC_DOMAIN": ("{}",),  # Railway: <service>.up.railway.app, once a domain is generated
    "RAILWAY_PRIVATE_DOMAIN": ("{}",),  # Railway's private network: <service>.railway.internal
}


def platform_host_names(env: Mapping[str, str]) -> tuple[str, ...]:
    """The host names the platform's variables in `env` give the app (PLATFORM_HOST_VARIABLES)."""
    names: list[str] = []
    for variable, patterns in PLATFORM_HOST_VARIABLES.items():
        value = env.get(variable, "").strip().lower().rstrip(".")
        if value and all(part.isalnum() or part in "-." for part in value):  # a name, nothing else
            names.extend(pattern.format(value) for pattern in patterns)
    return tuple(names)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_loopback_address(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 (and ::ffff:127.x), and the name "localhost"."""
    if address.lower() == "localhost":
        return True
    ip = _ip(address)
    return ip is not None and ip.is_loopback


def is_loopback_name(hostname: str) -> bool:
    """A Host name that only ever means this machine: localhost, *.localhost (RFC 6761), 127.x, ::1."""
    return hostname == "localhost" or hostname.endswith(".localhost") or is_loopback_address(hostname)


def _split_authority(authority: str) -> tuple[str, int | None] | None:
    """(lowercased host name without brackets, port or None) of a Host value; None if malformed."""
    try:
        parts = urlsplit("//" + authority)
        return (parts.hostname or ""), parts.port
    except ValueError:
        return None


class AccessGuard:
    """Innermost middleware: the Host, Origin and access-token checks for `/api/*` and `/metrics` (see the module doc).

    `allowed_hosts`: ALLOWED_HOSTS ("*": no Host check). `platform_hosts`: the names the
    platform gives the app; None (the default): read from the process environment's
    PLATFORM_HOST_VARIABLES now. `allowed_origins`: ALLOWED_ORIGINS ("*": any origin).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        access_token: str | None,
        allowed_origins: Iterable[str] = (),
        allowed_hosts: Iterable[str] = (),
        platform_hosts: Iterable[str] | None = None,
    ) -> None:
        self.app = app
        self.access_digest = _digest(access_token.encode()) if access_token else None
        self.allowed_origins = frozenset(o.rstrip("/") for o in allowed_origins)
        self.any_origin = "*" in self.allowed_origins
        allowed = {h.lower().rstrip(".") for h in allowed_hosts}
        self.any_host = "*" in allowed
        if platform_hosts is None:
            platform_hosts = platform_host_names(os.environ)
        self.known_hosts = frozenset(allowed | {h.lower().rstrip(".") for h in platform_hosts})
        self._machine_names: frozenset[str] | None = None  # this machine's name, looked up on first need

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_guarded(scope["path"]):
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, code, message, headers = refusal
        scope.setdefault("state", {})["error_code"] = code
        await error_response(status, {"code": code, "message": message}, headers)(scope, receive, send)

    def refusal(self, scope: Scope) -> tuple[int, str, str, dict[str, str]] | None:
        """None when the request may go on, else (status, code, message, headers). Cheapest first."""
        host = origin = forwarded_proto = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"x-forwarded-proto":
                forwarded_proto = value.decode("latin-1")
        if host is not None and not self._host_allowed(host):
            return 403, "forbidden_host", "This server does not answer to that Host name (set ALLOWED_HOSTS to add one).", {}
        if origin is not None and not self._origin_allowed(scope, origin, host, forwarded_proto):
            return 403, "forbidden_origin", "Requests from other sites are refused (set ALLOWED_ORIGINS to allow one).", {}
        if scope["path"] not in PUBLIC_API_PATHS and not self._authorized(scope):
            return 401, "unauthorized", "This server needs an access token: send 'Authorization: Bearer <token>'.", {"www-authenticate": "Bearer"}
        return None

    def _host_allowed(self, host: str) -> bool:
        # DNS rebinding: a page on evil.example has its name re-resolved to this server's address
        # (loopback, a LAN or container address) and calls it as its own origin, so its requests
        # carry `Host: evil.example`. Only a name can be rebound: a Host that is an address means
        # the page's origin is that address, i.e. a page this server (or the machine at that
        # address) served, so every address is accepted (a LAN client using the machine's
        # address, `docker run -p` reached by the host's address). A name must be one this
        # deployment is known by.
        if self.any_host:
            return True
        authority = _split_authority(host)
        if authority is None:
            return False
        hostname = authority[0].rstrip(".")
        if _ip(hostname) is not None or is_loopback_name(hostname) or hostname in self.known_hosts:
            return True
        return hostname in self.machine_names()

    def machine_names(self) -> frozenset[str]:
        """This machine's own name (a container's is its id; a LAN host's, its hostname), looked up
        once, on the first request whose Host needs it: socket.gethostname() is a system call,
        never a DNS query."""
        if self._machine_names is None:
            try:
                name = socket.gethostname().lower().rstrip(".")
            except OSError:
                name = ""
            self._machine_names = frozenset({name} if name else ())
        return self._machine_names

    def _origin_allowed(self, scope: Scope, origin: str, host: str | None, forwarded_proto: str | None) -> bool:
        if self.any_origin or origin.rstrip("/") in self.allowed_origins:
            return True
        if host is None:
            return False  # no Host to compare with: only a listed origin is known
        try:
            parts = urlsplit(origin)
            origin_host, origin_port = parts.hostname, parts.port
        except ValueError:
            return False
        if parts.scheme not in DEFAULT_PORTS or not origin_host or parts.path not in ("", "/"):
            return False  # "null", file:, a malformed value
        # The scheme the browser used: X-Forwarded-Proto's when a router says (the first proxy's,
        # left-most), else the socket's. A cross-site page cannot set that header (it is not
        # CORS-safelisted), and Host can only be chosen by DNS rebinding (_host_allowed).
        # An https page over a plain-HTTP socket is a proxy ending TLS without saying so: the
        # page is this server's. The reverse (an http page calling the https server) is not.
        scheme = forwarded_proto.split(",", 1)[0].strip().lower() if forwarded_proto else scope.get("scheme", "http")
        if parts.scheme != scheme and not (parts.scheme == "https" and scheme == "http"):
            return False
        authority = _split_authority(host)
        if authority is None:
            return False
        default = DEFAULT_PORTS[parts.scheme]
        return authority[0] == origin_host and (authority[1] or default) == (origin_port or default)

    def _authorized(self, scope: Scope) -> bool:
        if self.access_digest is None:
            return True
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                # compare_digest takes the same time wherever the first difference is.
                return hmac.compare_digest(_digest(token.strip()), self.access_digest) and scheme.lower() == b"bearer"
        return False
