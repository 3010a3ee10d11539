"""scenario-agent: a Starlette app that streams an LLM's tokens about scenarios as they arrive.

Routes
    POST /api/agent/scenario/stream         text/event-stream of the run's events
    POST /api/agent/scenario                the same events, drained into one JSON object
    GET  /api/agent/scenario/stream/health  status, provider, model, active streams, version
    GET  /metrics                           Prometheus text format (web/metrics.py); needs the token when one is set
    GET  /openapi.json                      the hand-kept API description (docs/openapi.json)
    GET  /                                  the page (static/)

`uvicorn app:app` serves `app`, built from the environment by `create_app()`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import threading
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from agent.config import VERSION, Settings
from agent.model import Model
from agent.request import InvalidRequest, parse_request
from agent.run import Run
from upstream.openai_compat import OpenAICompatible
from upstream.transport import make_http_client
from web import logs
from web.body import read_json
from web.client_address import client_address
from web.budget import TokenBudget
from web.errors import ApiError, error_response
from web.gate import AccessGuard, Gate
from web.health import UpstreamHealth
from web.lab import LabStreamResponse, lab_mode
from web.limits import RateLimiter
from web.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from web.metrics import Metrics
from web.stream import BufferedRunResponse, EventStreamResponse, Outcome

ROOT = Path(__file__).resolve().parent
log = logging.getLogger("scenario_agent")

MIN_PYTHON = (3, 11)  # asyncio.timeout; README, "Requirements"


# uvicorn's exit status for "cannot start": with several workers its supervisor then stops,
# where any other status makes it start the worker again, forever.
STARTUP_FAILURE = 3


def check_python_version(version: tuple[int, ...] = tuple(sys.version_info)) -> None:
    """Refuse to run on a Python older than MIN_PYTHON: one line on stderr, exit status 3.

    On 3.10 the app would start and answer health, then fail every stream."""
    if tuple(version[:2]) < MIN_PYTHON:
        have = ".".join(str(part) for part in version[:3])
        print(f"scenario-agent needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer; this is Python {have}.", file=sys.stderr)
        raise SystemExit(STARTUP_FAILURE)


class Service:
    """The app's state and its agent endpoints. One per app; nothing global."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model: Model | None = None
        self.http: httpx.AsyncClient | None = None
        self.active_streams = 0
        self.limiter = RateLimiter(settings.rate_limit_per_minute)
        self.shutdown = asyncio.Event()
        # This process's numbers (per worker, per instance): web/metrics.py, budget.py, health.py.
        self.metrics = Metrics()
        self.budget = TokenBudget(settings.token_budget_per_day) if settings.token_budget_per_day else None
        self.upstream_health = UpstreamHealth()

    # -- lifecycle -------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        s = self.settings
        logs.configure(s.log_level)
        if s.provider == "offline":
            from upstream.offline import OfflineModel  # only loaded when it is the model

            self.model = OfflineModel(s.offline_token_delay_ms)
        else:
            # One pooled client for every upstream request, configured in upstream/transport.py.
            self.http = make_http_client()
            # Each upstream request's outcome feeds health and /metrics (never a request of its own).
            self.model = OpenAICompatible(s, self.http, observe=self._observe_upstream)
            if not s.app_access_token:
                log.warning("A real model is configured and APP_ACCESS_TOKEN is not set: anyone who can reach this server can spend the model budget.")
        self._watch_signals(asyncio.get_running_loop())
        # Everything allocated so far (modules, the app) lives as long as the process: move it
        # out of the collector's view so full collections under load are short (fewer pauses
        # that stall every stream at once).
        gc.freeze()
        # And run the young collection less often: per-token garbage is freed by reference
        # counting; the collector only looks for cycles (bench: about 10% less CPU per token).
        gc.set_threshold(20_000, 50, 100)
        log.info({"message": "started", "provider": self.model.provider, "model": self.model.model, "version": VERSION})
        try:
            yield
        finally:
            self.shutdown.set()
            if self.http is not None:
                await self.http.aclose()

    def _watch_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        """On SIGTERM/SIGINT, tell open streams to finish with `server_shutdown`.

        uvicorn, on SIGTERM, stops accepting and then waits for open responses to end
        before it runs the lifespan shutdown, so the lifespan is too late to tell them.
        We chain onto the handler uvicorn installed (which still runs, and still
        re-raises the signal at exit). Only possible in the main thread.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)

            def handler(signum: int, frame: object, previous: object = previous) -> None:
                loop.call_soon_threadsafe(self.shutdown.set)
                if callable(previous):
                    previous(signum, frame)

            signal.signal(sig, handler)

    # -- endpoints -------------------------------------------------------------------------

    async def stream(self, request: Request) -> EventStreamResponse | LabStreamResponse:
        # ?lab=<mode> (web/lab.py) is checked before the slot and the body are taken.
        lab = lab_mode(request.scope["query_string"])
        run = await self._admit(request)
        s = self.settings
        if lab is not None:
            return LabStreamResponse(
                run,
                lab,
                send_timeout=s.send_timeout_seconds,
                grace=s.shutdown_grace_seconds,
                shutdown=self.shutdown,
                on_close=lambda outcome: self._release(request, run, outcome),
            )
        return EventStreamResponse(
            run,
            heartbeat=s.heartbeat_seconds,
            send_timeout=s.send_timeout_seconds,
            grace=s.shutdown_grace_seconds,
            shutdown=self.shutdown,
            on_close=lambda outcome: self._release(request, run, outcome),
        )

    async def buffered(self, request: Request) -> BufferedRunResponse:
        run = await self._admit(request)
        return BufferedRunResponse(run, shutdown=self.shutdown, on_close=lambda outcome: self._release(request, run, outcome))

    async def health(self, request: Request) -> JSONResponse:
        """Never calls the model: `upstream` is what real traffic saw (web/health.py).

        status: shutting_down, else degraded (the last few upstream requests all failed), else ok."""
        assert self.model is not None
        if self.shutdown.is_set():
            status = "shutting_down"
        elif self.upstream_health.degraded:
            status = "degraded"
        else:
            status = "ok"
        body = {
            "status": status,
            "provider": self.model.provider,
            "model": self.model.model,
            "active_streams": self.active_streams,
            "version": VERSION,
        }
        if self.model.provider != "offline":
            body["upstream"] = self.upstream_health.snapshot()
        if self.budget is not None:
            body["budget"] = self.budget.snapshot()
        return JSONResponse(body)

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(self.active_streams), media_type=METRICS_CONTENT_TYPE)

    def _observe_upstream(self, status: int | str | None, error_code: str | None) -> None:
        """Called by the model once per upstream HTTP request."""
        self.upstream_health.observe(status, error_code)
        self.metrics.record_upstream(status)

    def rejected(self, request: Request, code: str) -> None:
        """An agent request refused before its run (ApiError from _admit): counted as rejected."""
        path = request.url.path
        if path.startswith("/api/agent/"):
            self.metrics.record_rejection("stream" if path.endswith("/stream") else "buffered", code)

    async def _admit(self, request: Request) -> Run:
        """Checks in order of cost: shutdown, rate, capacity, then the body. Raises ApiError.

        The stream slot is taken when the run is ready to start, not while its body is still
        arriving: clients trickling their bodies hold no slot (and the body read has its own
        deadline, BODY_READ_TIMEOUT_SECONDS). Capacity is checked before the read (a cheap
        early 503) and again after it, where the check and the increment have no await
        between them, so bodies that finish together cannot all pass.
        """
        s = self.settings
        if self.shutdown.is_set():
            raise ApiError(503, "server_shutdown", "The server is restarting. Try again in a few seconds.", {"retry-after": "2"})
        wait = self.limiter.check(client_address(request.scope, s.forwarded_trusted_hops))
        if wait:
            raise ApiError(429, "rate_limited", f"Too many requests: at most {s.rate_limit_per_minute} a minute. Try again in {wait} s.", {"retry-after": str(wait)})
        # The daily token budget (web/budget.py): refused before the model is called.
        if self.budget is not None and (reset := self.budget.retry_after()):
            raise ApiError(429, "budget_exhausted", f"Today's token budget ({self.budget.limit} tokens) is spent. It resets at 00:00 UTC, in {reset} s.", {"retry-after": str(reset)})
        self._check_capacity()
        body = await read_json(request, s.max_body_bytes, s.body_read_timeout_seconds)
        try:
            agent_request = parse_request(body, s)
        except InvalidRequest as exc:
            raise ApiError(422, exc.code, exc.message, field=exc.field) from None
        assert self.model is not None
        request_id = request.scope["state"].get("request_id") or uuid.uuid4().hex[:16]
        run = Run(agent_request, self.model, request_id, s.max_output_tokens, send_reasoning=s.send_reasoning, repair_attempts=s.scenario_repair_attempts)
        # From here to the caller's response: no await, so no other request runs in between.
        self._check_capacity()
        self.active_streams += 1  # released by _release when the response ends
        return run

    def _check_capacity(self) -> None:
        if self.shutdown.is_set():
            raise ApiError(503, "server_shutdown", "The server is restarting. Try again in a few seconds.", {"retry-after": "2"})
        if self.active_streams >= self.settings.max_concurrent_streams:
            raise ApiError(503, "too_many_streams", "The server is at its limit of open streams. Try again shortly.", {"retry-after": "5"})

    def _release(self, request: Request, run: Run, outcome: str) -> None:
        self.active_streams -= 1
        summary = run.summary()
        summary["client_disconnected"] = outcome == Outcome.DISCONNECTED
        summary["outcome"] = outcome
        request.scope["state"]["run_summary"] = summary
        self._count(request, run, summary, outcome)

    def _count(self, request: Request, run: Run, summary: dict, outcome: str) -> None:
        """Metrics and the token budget: once per request, from its summary."""
        endpoint = "stream" if request.url.path.endswith("/stream") else "buffered"
        error_code = summary.get("error_code")
        if error_code:
            kind = "error"
        elif outcome in (Outcome.DISCONNECTED, Outcome.SEND_TIMEOUT):
            kind = "disconnected"
        else:
            kind = "complete"
        self.metrics.record_run(endpoint, kind, summary)
        if self.budget is not None and summary.get("provider") != "offline":  # the offline model costs nothing
            usage = summary.get("usage") or run.usage
            if isinstance(usage, dict):
                self.budget.spend(int(usage.get("total_tokens") or 0))
            else:
                # No usage: the answer did not finish (the client left, an error, shutdown), yet
                # the model was paid for what it sent. Count at least that, or leaving early
                # would spend without limit.
                self.budget.spend(int(summary.get("tokens") or 0) + int(summary.get("reasoning_tokens") or 0))


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if not request.url.path.startswith("/api/"):
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    request.scope.setdefault("state", {})["error_code"] = code
    return error_response(exc.status_code, {"code": code, "message": f"{exc.detail}: {request.method} {request.url.path}"}, exc.headers)


def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    request.scope.setdefault("state", {})["error_code"] = exc.code
    request.app.state.service.rejected(request, exc.code)
    return exc.response()


def _internal_error(request: Request, exc: Exception) -> Response:
    # Starlette's ServerErrorMiddleware answers with this, then re-raises (uvicorn logs the traceback).
    request.scope.setdefault("state", {})["error_code"] = "internal"
    return error_response(500, {"code": "internal", "message": "Internal error. The request id is in X-Request-ID."})


async def _openapi(request: Request) -> Response:
    return FileResponse(ROOT / "docs" / "openapi.json", media_type="application/json")


def create_app(settings: Settings | None = None) -> Gate:
    """The app: a Gate around the Starlette app; `.state.service` is the Service."""
    check_python_version()
    settings = settings or Settings.from_env()
    service = Service(settings)
    api = [
        Route("/agent/scenario/stream", service.stream, methods=["POST"]),
        Route("/agent/scenario", service.buffered, methods=["POST"]),
        Route("/agent/scenario/stream/health", service.health, methods=["GET"]),
    ]
    routes = [
        Mount("/api", routes=api),
        Route("/openapi.json", _openapi, methods=["GET"]),
        Route("/metrics", service.metrics_endpoint, methods=["GET"]),
        Mount("/", StaticFiles(directory=ROOT / "static", html=True)),
    ]
    middleware = []
    if settings.allowed_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.allowed_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["authorization", "content-type"],
                expose_headers=["x-request-id"],
            )
        )
    # Innermost: Host, Origin and token checks (inside CORS, so its refusals carry CORS headers
    # for listed origins and preflights need no token).
    middleware.append(
        Middleware(
            AccessGuard,
            access_token=settings.app_access_token,
            allowed_origins=settings.allowed_origins,
            allowed_hosts=settings.allowed_hosts,
        )
    )
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: _http_error, ApiError: _api_error, Exception: _internal_error},
        lifespan=service.lifespan,
    )
    app.state.service = service
    # Outermost, outside Starlette's own ServerErrorMiddleware and CORS: every response, a
    # preflight or a 500 included, gets the request id and the security headers.
    return Gate(app, frame_ancestors=settings.frame_ancestors)


def __getattr__(name: str) -> Gate:
    # `uvicorn app:app` looks up `app`; building it on first access keeps importing this
    # module free of side effects (tests build their own apps with create_app).
    if name == "app":
        return create_app()
    raise AttributeError(name)
