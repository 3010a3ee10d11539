"""scenario-agent: a Starlette app that streams an LLM's tokens about scenarios as they arrive.

Routes
    POST   /api/agent/scenario/stream                 a new run: text/event-stream of its events
    GET    /api/agent/scenario/runs/{id}/stream       join a run after Last-Event-ID (resume)
    DELETE /api/agent/scenario/runs/{id}              Stop: the run ends at once
    POST   /api/agent/scenario                        the same events, drained into one JSON object
    GET  /api/agent/scenario/stream/health  status, provider, model, active streams, version
    GET  /metrics                           Prometheus text format (web/metrics.py); needs the token when one is set
    GET  /openapi.json                      the hand-kept API description (docs/openapi.json)
    GET  /                                  the page (static/)

`uvicorn app:app` serves `app`, built from the environment by `create_app()`.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import re
import signal
import sys
import threading
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from agent import errors
from agent.config import VERSION, Settings
from agent.model import Model
from agent.prompts import estimate_tokens
from agent.request import InvalidRequest, parse_request
from agent.run import Run
from runs.frames import sequence_after
from runs.live import LiveRun
from runs.log import LogTruncated
from runs.registry import Runs, new_run_id
from upstream.openai_compat import OpenAICompatible
from upstream.transport import make_http_client
from web import logs
from web.body import read_json
from web.budget import TokenBudget
from web.client_address import client_address
from web.errors import ApiError, error_response
from web.gate import AccessGuard, Gate
from web.health import UpstreamHealth
from web.lab import LabWriter, lab_mode
from web.limits import RateLimiter, StreamSlots
from web.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from web.metrics import Metrics
from web.stream import EventStreamWriter, JsonWriter, Outcome, Policy, ReaderResponse, frames_only

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
        self.shutdown = asyncio.Event()
        # This process's numbers (per worker, per instance): web/metrics.py, health.py.
        self.metrics = Metrics()
        self.upstream_health = UpstreamHealth()
        # Limits and the budget in this process; with REDIS_URL, replaced by the shared ones
        # (scaleout/) in the lifespan.
        self.limiter: Any = RateLimiter(settings.rate_limit_per_minute)
        self.slots: Any = StreamSlots(settings.max_concurrent_streams)
        self.budget: Any = TokenBudget(settings.token_budget_per_day) if settings.token_budget_per_day else None
        self.shared: Any = None  # scaleout.SharedState when REDIS_URL is set
        self.runs = Runs(settings)
        self._settling: set[asyncio.Task[None]] = set()  # each ended run's slot and budget, being settled

    # -- lifecycle -------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        s = self.settings
        logs.configure(s.log_level)
        async with AsyncExitStack() as stack:
            # One pooled client for every upstream request, configured in upstream/transport.py.
            self.http = make_http_client()
            stack.push_async_callback(self.http.aclose)
            if s.provider == "offline":
                # The offline model is served as a Chat Completions server beside the app, so the
                # demo's tokens take the real path: client, transport, SSE and delta decoders.
                from upstream.offline.server import MODEL as OFFLINE_MODEL_NAME  # only loaded when it is the model
                from upstream.offline.server import offline_server

                url = await stack.enter_async_context(offline_server(s.offline_token_delay_ms))
                model = OpenAICompatible(replace(s, openai_base_url=url, openai_model=OFFLINE_MODEL_NAME, openai_api_key=None), self.http, observe=self._observe_upstream)
                model.provider = "offline"
                self.model = model
            else:
                # Each upstream request's outcome feeds health and /metrics (never a request of its own).
                self.model = OpenAICompatible(s, self.http, observe=self._observe_upstream)
                if not s.app_access_token:
                    log.warning("A real model is configured and APP_ACCESS_TOKEN is not set: anyone who can reach this server can spend the model budget.")
            if s.redis_url:
                import scaleout  # only with REDIS_URL: nothing of Redis is imported otherwise

                self.shared = await scaleout.connect(s, self.metrics)
                stack.push_async_callback(self.shared.aclose)
                self.limiter, self.slots, self.budget = self.shared.limiter, self.shared.slots, self.shared.budget
                self.runs = Runs(s, shared=self.shared.log)
            self._watch_signals(asyncio.get_running_loop())
            stopper = asyncio.create_task(self._stop_runs_on_shutdown())
            stack.callback(stopper.cancel)
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
                self.runs.stop_all(errors.server_shutdown())
                await self.runs.wait_all()
                await asyncio.gather(*self._settling, return_exceptions=True)

    async def _stop_runs_on_shutdown(self) -> None:
        """On SIGTERM, every run ends with `error` (server_shutdown) and `done`, which its readers
        write; uvicorn waits for those responses before the lifespan's shutdown."""
        await self.shutdown.wait()
        self.runs.stop_all(errors.server_shutdown())

    def _watch_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        """On SIGTERM/SIGINT, tell open runs to finish with `server_shutdown`.

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

    def _policy(self) -> Policy:
        """Disconnect, heartbeat, send timeout and shutdown, for every reader (web/stream.py)."""
        s = self.settings
        return Policy(send_timeout=s.send_timeout_seconds, grace=s.shutdown_grace_seconds, shutdown=self.shutdown, heartbeat=s.heartbeat_seconds)

    async def stream(self, request: Request) -> Response:
        """POST .../stream: a new run, read by this response (or, with a repeated
        Idempotency-Key, the run that key started, read from its beginning)."""
        lab = self._lab_mode(request)
        key = _idempotency_key(request)  # checked for every request; the lab's runs are not joinable
        if lab is not None:
            key = None
        live, joined = await self._admit(request, "stream", joinable=lab is None, key=key)
        if lab is not None:
            return self._reader(request, live, 0, LabWriter(lab))
        if joined:
            self.metrics.record_resume()
        return self._reader(request, live, 0, EventStreamWriter([(b"content-location", _join_path(live.id).encode())]))

    async def join(self, request: Request) -> Response:
        """GET .../runs/{id}/stream: the run's frames after `Last-Event-ID` (or ?after=), then live."""
        run_id = _run_id(request)
        for name in request.query_params:
            if name != "after":
                raise ApiError(422, "unknown_query_parameter", f"Unknown query parameter {name!r}: the only one is 'after'.", field=name)
        if len(request.query_params.getlist("after")) > 1:
            raise ApiError(422, "invalid_last_event_id", "Last-Event-ID must be '<run id>-<n>', and ?after a whole number, given once.", field="after")
        start = sequence_after(request.headers.get("last-event-id"), request.query_params.get("after"))
        if start is None or (start[0] is not None and not _RUN_ID.fullmatch(start[0])):
            raise ApiError(422, "invalid_last_event_id", "Last-Event-ID must be '<run id>-<n>', and ?after a whole number.", field="last-event-id")
        named, after = start
        live = self.runs.get(run_id)
        if live is None and self.shared is None:
            return Response(status_code=204)
        if named is not None and named != run_id:
            raise ApiError(422, "invalid_last_event_id", "Last-Event-ID names another run.", field="last-event-id")
        writer = EventStreamWriter([(b"content-location", _join_path(run_id).encode())])
        live = self.runs.get(run_id)
        if live is not None:
            if after + 1 < live.log.first_seq:
                raise _truncated(live.log.first_seq)
            self.metrics.record_resume()
            return self._reader(request, live, after, writer)
        try:
            frames = await self.shared.log.join(run_id, after)
        except LogTruncated as exc:
            raise _truncated(exc.first_seq) from None
        except Exception:
            raise ApiError(503, "shared_state_unavailable", "Runs on other servers cannot be joined right now. Try again shortly.", {"retry-after": "2"}) from None
        if frames is None:
            return Response(status_code=204)
        self.metrics.record_resume()
        return ReaderResponse(lambda deliver: frames_only(frames), writer, self._policy(), on_close=_nothing)

    async def stop(self, request: Request) -> Response:
        """DELETE .../runs/{id}: Stop. The run ends at once (its upstream closed); its readers get
        `error` (cancelled) and `done`. 204 whether or not the run exists or still runs."""
        run_id = _run_id(request)
        live = self.runs.get(run_id)
        if live is not None:
            live.stop(errors.cancelled())
        elif self.shared is not None:
            try:
                await self.shared.log.cancel(run_id)
            except Exception:
                raise ApiError(503, "shared_state_unavailable", "The stop could not reach the server running this answer. Try again.", {"retry-after": "1"}) from None
        return Response(status_code=204)

    async def buffered(self, request: Request) -> Response:
        live, _ = await self._admit(request, "buffered", joinable=False, key=None)
        return self._reader(request, live, 0, JsonWriter(live.run.intent))

    def _reader(self, request: Request, live: LiveRun, after: int, writer: Any) -> ReaderResponse:
        """A response reading `live` from after event `after`; the run starts with its first reader."""
        live.attach()

        async def closed(outcome: str) -> None:
            live.detach()
            if live.grace <= 0:
                await live.wait()  # stopped at once: its upstream is released before the response ends
            summary = live.run.summary()
            summary["run_id"] = live.id
            summary["client_disconnected"] = outcome == Outcome.DISCONNECTED
            summary["outcome"] = outcome
            request.scope["state"]["run_summary"] = summary

        if not live.started:
            live.start()
        return ReaderResponse(lambda deliver: live.log.read(after, deliver), writer, self._policy(), closed)

    def _lab_mode(self, request: Request) -> str | None:
        query = request.scope["query_string"]
        if query and not self.settings.lab_enabled:
            raise ApiError(404, "lab_disabled", "The streaming lab is turned off on this server (LAB_ENABLED=false).")
        # ?lab=<mode> (web/lab.py) is checked before the slot and the body are taken.
        return lab_mode(query)

    async def health(self, request: Request) -> JSONResponse:
        """Never calls the model: `upstream` is what real traffic saw (web/health.py).

        status: shutting_down, else degraded (the last few upstream requests all failed, or the
        shared state is unreachable), else ok."""
        assert self.model is not None
        shared = await self.shared.status() if self.shared is not None else None
        if self.shutdown.is_set():
            status = "shutting_down"
        elif self.upstream_health.degraded or (shared is not None and shared.get("status") != "ok"):
            status = "degraded"
        else:
            status = "ok"
        body: dict[str, Any] = {
            "status": status,
            "provider": self.model.provider,
            "model": self.model.model,
            "active_streams": await self.slots.active(),
            "runs": len(self.runs),
            "lab": self.settings.lab_enabled,
            "version": VERSION,
        }
        if self.model.provider != "offline" or self.upstream_health.degraded:
            body["upstream"] = self.upstream_health.snapshot()
        if self.budget is not None:
            body["budget"] = await self.budget.snapshot()
        if shared is not None:
            body["shared_state"] = shared
        return JSONResponse(body)

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(await self.slots.active()), media_type=METRICS_CONTENT_TYPE)

    def _observe_upstream(self, status: int | str | None, error_code: str | None) -> None:
        """Called by the model once per upstream HTTP request."""
        self.upstream_health.observe(status, error_code)
        self.metrics.record_upstream(status)

    def rejected(self, request: Request, code: str) -> None:
        """An agent request refused before its run (ApiError from _admit): counted as rejected."""
        path = request.url.path
        if path.startswith("/api/") and request.method == "POST":
            self.metrics.record_rejection("stream" if path.endswith("/stream") else "buffered", code)

    async def _admit(self, request: Request, endpoint: str, *, joinable: bool, key: str | None) -> tuple[LiveRun, bool]:
        """A new run, admitted; or, for a repeated Idempotency-Key, the run it started (True).
        Raises ApiError. Checks in order of cost: shutdown, rate, capacity, the body, the key,
        the budget, then the slot.

        The stream slot is taken when the run is ready to start, not while its body is still
        arriving: clients trickling their bodies hold no slot (and the body read has its own
        deadline, BODY_READ_TIMEOUT_SECONDS). Capacity is checked before the read (a cheap
        early 503) and the slot taken after it.
        """
        s = self.settings
        self._refuse_when_shutting_down()
        wait = await self.limiter.check(client_address(request.scope, s.forwarded_trusted_hops))
        if wait:
            raise ApiError(429, "rate_limited", f"Too many requests: at most {s.rate_limit_per_minute} a minute. Try again in {wait} s.", {"retry-after": str(wait)})
        if await self.slots.active() >= s.max_concurrent_streams:
            raise _too_many_streams()
        body = await read_json(request, s.max_body_bytes, s.body_read_timeout_seconds)
        try:
            agent_request = parse_request(body, s)
        except InvalidRequest as exc:
            raise ApiError(422, exc.code, exc.message, field=exc.field) from None
        self._refuse_when_shutting_down()
        fingerprint = _fingerprint(body) if key is not None else ""
        if key is not None and (existing := self._run_of_key(key, fingerprint)) is not None:
            return existing, True
        assert self.model is not None
        run_id = request.scope["state"].get("request_id") or new_run_id()  # the Gate's id: 128 random bits
        run = Run(agent_request, self.model, run_id, s.max_output_tokens, send_reasoning=s.send_reasoning,
                  repair_attempts=s.scenario_repair_attempts, max_scenario_bytes=s.max_scenario_bytes)
        # The daily budget reserves the most this run can cost before it starts: the prompt's
        # estimate and the output limit. Settled when the run ends (_run_ended).
        reserved = 0
        if self.budget is not None and self.model.provider != "offline":
            reserved = estimate_tokens(run.prompt) + s.max_output_tokens
            if reserved > self.budget.limit:  # can never fit: no wait would help
                raise ApiError(422, "request_over_budget", f"This request may cost up to {reserved} tokens, more than the whole daily budget ({self.budget.limit}). Shorten the scenario or the conversation.")
            if wait := await self.budget.reserve(run_id, reserved):
                raise ApiError(429, "budget_exhausted", f"Today's token budget ({self.budget.limit} tokens) cannot cover this request now. Try again in {wait} s (it resets at 00:00 UTC).", {"retry-after": str(wait)})
        if not await self.slots.acquire(run_id):
            await self._unreserve(run_id, reserved)
            raise _too_many_streams()
        if key is not None and self.shared is not None:
            owner, conflict = await self.shared.log.claim_key(key, fingerprint, run_id)
            if owner != run_id:  # another process started this key's run between our look and now
                await self.slots.release(run_id)
                await self._unreserve(run_id, reserved)
                if conflict:
                    raise _key_conflict()
                raise ApiError(409, "idempotency_key_in_use", "A request with this Idempotency-Key is running on another server: join it.",
                               {"content-location": _join_path(owner)}, run_id=owner)
        return self.runs.open(run, run_id, joinable=joinable, on_end=lambda live: self._run_ended(live, endpoint, reserved),
                              key=(key, fingerprint) if key is not None else None), False

    async def _unreserve(self, run_id: str, reserved: int) -> None:
        """A run admitted by the budget but not started: nothing of its reservation is spent."""
        if reserved:
            await self.budget.settle(run_id, reserved, 0)

    def _run_of_key(self, key: str, fingerprint: str) -> LiveRun | None:
        run_id, conflict = self.runs.key(key, fingerprint)
        if conflict:
            raise _key_conflict()
        return self.runs.get(run_id) if run_id is not None else None

    def _refuse_when_shutting_down(self) -> None:
        if self.shutdown.is_set():
            raise ApiError(503, "server_shutdown", "The server is restarting. Try again in a few seconds.", {"retry-after": "2"})

    def _run_ended(self, live: LiveRun, endpoint: str, reserved: int) -> None:
        """Once per run, when its producer has ended: the slot, the budget, the metrics."""
        task = asyncio.get_running_loop().create_task(self._settle(live, reserved))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        run = live.run
        summary = run.summary()
        error_code = summary.get("error_code")
        if error_code == "cancelled":
            kind = "disconnected"
        elif error_code:
            kind = "error"
        else:
            kind = "complete"
        self.metrics.record_run(endpoint, kind, summary)
        usage = run.usage or {}
        self.metrics.record_genai("chat", run.model.provider, (summary.get("duration_ms") or 0) / 1000,
                                  (run.ttft_ms / 1000) if run.ttft_ms is not None else None,
                                  int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or run.deltas))
        if live.readers == 0 and live.grace > 0:
            # Its request's log line was written when its last reader left; this is how it ended.
            log.info({"message": "run ended with no reader", "run_id": live.id, **summary})

    async def _settle(self, live: LiveRun, reserved: int) -> None:
        try:
            await self.slots.release(live.id)
            if reserved:
                await self.budget.settle(live.id, reserved, live.run.charged_tokens())
        except Exception:  # the shared state's trouble: its leases and reservations expire by themselves
            log.warning("run %s: the slot or the budget could not be settled", live.id, exc_info=True)


_RUN_ID = re.compile(r"[0-9a-f]{32}")
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,200}")


async def _nothing(outcome: str) -> None:
    pass


def _run_id(request: Request) -> str:
    run_id: str = request.path_params["run_id"]
    if not _RUN_ID.fullmatch(run_id):
        raise ApiError(422, "invalid_run_id", "A run id is 32 hexadecimal digits (the start event's request_id).", field="run_id")
    return run_id


def _join_path(run_id: str) -> str:
    return f"/api/agent/scenario/runs/{run_id}/stream"


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ApiError(422, "invalid_idempotency_key", "Idempotency-Key must be 1-200 visible ASCII characters.", field="idempotency-key")
    return key


def _fingerprint(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _key_conflict() -> ApiError:
    return ApiError(409, "idempotency_conflict", "This Idempotency-Key was used for a different request. Use a new key for a new request.")


def _truncated(first_seq: int) -> ApiError:
    return ApiError(409, "run_log_truncated", f"The run's log no longer holds the events asked for; it starts at event {first_seq}.", first_available=first_seq)


def _too_many_streams() -> ApiError:
    return ApiError(503, "too_many_streams", "The server is at its limit of open streams. Try again shortly.", {"retry-after": "5"})


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
        Route("/agent/scenario/runs/{run_id}/stream", service.join, methods=["GET"]),
        Route("/agent/scenario/runs/{run_id}", service.stop, methods=["DELETE"]),
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
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=["authorization", "content-type", "last-event-id", "idempotency-key"],
                expose_headers=["x-request-id", "content-location"],
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
