"""The OpenAI-compatible backend: any server that speaks Chat Completions streaming
(OpenAI, Azure OpenAI, Ollama, vLLM, llama.cpp, LM Studio, OpenRouter).

The openai package makes the request (auth, retries before the response starts, error
types); the body is read raw and decoded by `upstream.decode`, because iterating the
SDK's parsed stream builds pydantic objects for every chunk (about 260 us each, against
a few us for a line split and one JSON decode).

Per server differences (upstream/quirks.py): the token-limit parameter's name, learned once
per instance when a server refuses the first choice; `temperature` (SCENARIO_TEMPERATURE, sent
for the intents that return a block), dropped for the instance when a server refuses it;
reasoning in its three wire shapes (upstream/decode.py, upstream/think.py).

Every upstream request ends in exactly one `observe(status, error_code)` call, and every
failure in one log record on "scenario_agent.upstream" (upstream/errors.py: `details`).
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from typing import Any, AsyncIterator, Callable, cast

import httpx
import openai

from agent import errors
from agent.config import Settings
from agent.model import Finish, Thinking
from agent.prompts import Prompt
from agent.intents import INTENTS
from upstream import quirks
from upstream.decode import ChatStreamDecoder
from upstream.errors import details, map_exception, redact

log = logging.getLogger("scenario_agent.upstream")

Observer = Callable[[str, "str | None"], None]

# A compressed body (asked for `identity`, sent anyway) is inflated in steps of this, and
# never past the total: a 400 KB gzip bomb must not become 400 MB in this process.
_INFLATE_STEP_BYTES = 64 * 1024
MAX_INFLATED_BYTES = 8 * 1024 * 1024
# After `[DONE]`, what is left of the body is read (so the connection can be reused) for at
# most this long and this much; whatever goes wrong then, the answer is complete.
_DRAIN_SECONDS = 1.0
_DRAIN_BYTES = 64 * 1024


class _BadBody(Exception):
    """A body this service will not read (its text says why): upstream_invalid_response."""


class OpenAICompatible:
    provider = "openai-compatible"

    def __init__(self, settings: Settings, http_client: httpx.AsyncClient, *, observe: Observer | None = None) -> None:
        """`observe(status, error_code)` is called once per upstream request, when its outcome is
        known: `status` is the HTTP status ("200", "429"...) or "connect_error" / "timeout" when
        no response came; `error_code` is None when the upstream answered without fault (to the
        end, or until this side closed it), else the agent error code it ended with."""
        if settings.upstream_token_param not in ("auto", *quirks.TOKEN_PARAMS):
            raise ValueError(f"UPSTREAM_TOKEN_PARAM must be auto, max_tokens or max_completion_tokens, got {settings.upstream_token_param!r}")
        self.model = settings.openai_model
        self._secret = settings.openai_api_key
        self._observe = observe
        # The token-limit name to send; switched (for the life of this instance) when a server refuses it.
        self._token_param = quirks.token_param_for(settings.openai_base_url, settings.upstream_token_param)
        # Sent by the intents that return a block (modify, create); None: never (a negative
        # setting, or a server that refused it, as OpenAI's reasoning models do).
        self._temperature: float | None = settings.scenario_temperature if settings.scenario_temperature >= 0 else None
        self._client = openai.AsyncOpenAI(
            # Local servers (Ollama, llama.cpp) need no key, but the SDK insists on one.
            api_key=settings.openai_api_key or "unused",
            base_url=settings.openai_base_url,
            http_client=http_client,
            max_retries=settings.upstream_max_retries,
            timeout=httpx.Timeout(
                connect=settings.upstream_connect_timeout_seconds,
                read=settings.upstream_idle_timeout_seconds,  # the longest silence tolerated mid-stream
                write=settings.upstream_connect_timeout_seconds,
                pool=settings.upstream_connect_timeout_seconds,
            ),
            # An event stream gains nothing from compression, and an inflating decoder is a
            # place a hostile body can grow this process (what arrives anyway is bounded below).
            default_headers={"Accept-Encoding": "identity"},
        )

    @property
    def token_param(self) -> str:
        """The token-limit parameter's name the next request sends."""
        return self._token_param

    async def stream(self, prompt: Prompt, max_tokens: int) -> AsyncIterator[str | Thinking | Finish]:
        """Closing this generator (aclose) closes the upstream response and its connection."""
        response = await self._open(prompt, max_tokens)
        status = str(response.status_code)
        decoder = ChatStreamDecoder()
        # The outcome, reported once in `finally`: None while the answer runs, when it ends well,
        # and when this side closes it (client gone, a local limit: no upstream fault); else the
        # error it ended with and the log fields that say why.
        failed: tuple[errors.AgentError, dict[str, Any]] | None = None
        try:
            chunks = _body(response)
            # The hot loop: one network read in, its deltas out. Kept flat on purpose:
            # every generator layer between the socket and the client costs time per token.
            async for chunk in chunks:
                for item in decoder.feed(chunk):
                    yield item
                if decoder.done or decoder.error is not None:
                    break
            failed = await self._ending(decoder, response, chunks, status)
        except _BadBody as exc:
            failed = errors.upstream_invalid_response(), {"problem": str(exc)}
        except (openai.APIError, httpx.HTTPError) as exc:
            # The body broke off: a reset, a stall, or a close before its framing's end (a server
            # that crashed, even before its first byte, is never taken for an over-long prompt).
            mapped = map_exception(exc)
            if mapped is None:
                raise
            failed = mapped, _exception_fields(exc, self._secret, "the body broke off")
        finally:
            if failed is None:
                self._report(status, None)
            else:
                self._failed(status, *failed)
            await response.aclose()
        if failed is not None:
            raise failed[0] from None

    async def _ending(self, decoder: ChatStreamDecoder, response: httpx.Response, chunks: AsyncIterator[bytes], status: str) -> tuple[errors.AgentError, dict[str, Any]] | None:
        """How the body ended, once its loop is over: None when it ended well (or this side
        closed it), else the error and the log fields that say why."""
        if decoder.error is not None:
            fields = {"problem": decoder.problem}
            if decoder.upstream_error is not None:
                fields.update(details(status, decoder.upstream_error, self._secret))
            return decoder.error, fields
        if decoder.done:
            await _drain(chunks)
            return None
        if decoder.empty and _framed(response):
            # llama.cpp's Python server answers a prompt longer than its context with HTTP 200
            # and an empty body that ends cleanly: the zero-size chunk, no event, no [DONE].
            return errors.context_too_long(), {"problem": "HTTP 200 with an empty body, ended by its framing "
                                                          "(llama.cpp: the prompt is longer than its context)"}
        return errors.upstream_interrupted(), {"problem": "the body ended without data: [DONE]"}

    def _body_for(self, prompt: Prompt, max_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": prompt.messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            self._token_param: max_tokens,
        }
        if self._temperature is not None and INTENTS[prompt.intent].block is not None:
            body["temperature"] = self._temperature
        return body

    async def _open(self, prompt: Prompt, max_tokens: int) -> httpx.Response:
        """The response, headers read. A refused token-limit name is retried once with the other,
        a refused temperature once without it; what worked is kept for every later request of
        this instance.

        A refusal comes as the response status, before any token, so a retry duplicates nothing.
        Each parameter is learned at most once per request: at most three requests in all."""
        learned: set[str] = set()
        while True:
            body = self._body_for(prompt, max_tokens)
            try:
                # The client's generic `post` (the SDK's way to call any endpoint) with a raw
                # httpx.Response: auth, retries before the response starts and the SDK's error
                # types as with `chat.completions.create`, without validating and transforming
                # typed params on every request (a third of the SDK's CPU per request).
                return await self._client.post("/chat/completions", cast_to=httpx.Response, body=body, stream=True)
            except openai.APIStatusError as exc:
                status = str(exc.status_code)
                refused = self._learn(exc, body, learned)
                if refused is not None:
                    learned.add(refused)
                    self._report(status, errors.upstream_rejected(exc.status_code).code)
                    log.info({"message": "the upstream refused a parameter; this instance adapts from now on",
                              "refused": refused, "token_param": self._token_param, "temperature": self._temperature,
                              "model": self.model, **details(exc.status_code, exc.body, self._secret)})
                    continue
                mapped = map_exception(exc)
                assert mapped is not None
                raise self._failed(status, mapped, details(exc.status_code, exc.body, self._secret)) from None
            except (openai.APIError, httpx.HTTPError) as exc:
                mapped = map_exception(exc)
                if mapped is None:
                    raise
                timed_out = isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException))
                raise self._failed("timeout" if timed_out else "connect_error", mapped, _exception_fields(exc, self._secret, "no response")) from None

    def _learn(self, exc: openai.APIStatusError, body: dict[str, Any], learned: set[str]) -> str | None:
        """The parameter a refusal names, switched or dropped for this instance from now on; None
        when the refusal is about something else, or about a parameter this request already tried."""
        sent = next(name for name in quirks.TOKEN_PARAMS if name in body)
        if learned.isdisjoint(quirks.TOKEN_PARAMS) and quirks.rejected_token_param(exc.status_code, exc.body, sent):
            if self._token_param == sent:  # a concurrent request may have switched already
                self._token_param = quirks.other_token_param(sent)
            return sent
        if "temperature" in body and quirks.rejected_temperature(exc.status_code, exc.body):
            self._temperature = None
            return "temperature"
        return None

    def _failed(self, status: str, error: errors.AgentError, fields: dict[str, Any]) -> errors.AgentError:
        """Observe and log one failed upstream request; returns the error to raise."""
        self._report(status, error.code)
        log.warning({"message": "upstream error", "error_code": error.code, "model": self.model,
                     "upstream_status": status, **{k: v for k, v in fields.items() if k != "upstream_status"}})
        return error

    def _report(self, status: str, code: str | None) -> None:
        if self._observe is not None:
            try:
                self._observe(status, code)
            except Exception:  # an observer's bug must not end the answer
                log.exception("upstream observer failed")


def _framed(response: httpx.Response) -> bool:
    """Whether the body's end was its framing's (the zero-size chunk, or Content-Length bytes),
    not only a close: a body read until the close cannot tell a clean end from a crash."""
    headers = response.headers
    return "content-length" in headers or "chunked" in headers.get("transfer-encoding", "").lower()


def _exception_fields(exc: BaseException, secret: str | None, problem: str) -> dict[str, Any]:
    # The SDK's APIConnectionError says only "Connection error."; the httpx error it wraps says why.
    cause = exc.__cause__ or exc.__context__
    text = f"{exc}: {cause}" if cause is not None and str(cause) and str(cause) != str(exc) else str(exc)
    return {"problem": problem, "exception": type(exc).__name__, "upstream_message": redact(text, secret)}


def _body(response: httpx.Response) -> AsyncIterator[bytes]:
    """The response's raw byte stream (no generator layer per read), inflated with a bound
    if the server compressed it even though `identity` was asked for."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    stream: AsyncIterator[bytes] = aiter(cast(httpx.AsyncByteStream, response.stream))  # an async client's response
    if not encoding or encoding == "identity":
        return stream
    return _inflated(stream, encoding)


async def _inflated(stream: AsyncIterator[bytes], encoding: str) -> AsyncIterator[bytes]:
    """gzip or deflate, inflated 64 KiB at a time and at most MAX_INFLATED_BYTES in all."""
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise _BadBody(f"a body compressed with {encoding[:40]!r}, which this service does not inflate")
    # wbits 32+: a zlib or a gzip header, detected. A raw deflate stream (no header) is
    # retried as such on the first error, as httpx does.
    inflater = zlib.decompressobj(32 + zlib.MAX_WBITS)
    raw_retry = encoding == "deflate"
    total = 0
    async for data in stream:
        while data and not inflater.eof:
            try:
                out = inflater.decompress(data, _INFLATE_STEP_BYTES)
            except zlib.error:
                if raw_retry and total == 0:
                    raw_retry = False
                    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise _BadBody("a compressed body that does not inflate") from None
            raw_retry = False
            data = inflater.unconsumed_tail
            total += len(out)
            if total > MAX_INFLATED_BYTES:
                raise _BadBody(f"a compressed body inflating past {MAX_INFLATED_BYTES} bytes")
            if out:
                yield out


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read what follows `[DONE]` (the chunked terminator, at once) so the connection goes back
    to the pool. The answer is complete already: an abrupt close here (llama-cpp-python ends
    an interrupted stream so), a stall or junk changes nothing."""
    seen = 0
    try:
        async with asyncio.timeout(_DRAIN_SECONDS):
            async for piece in chunks:
                seen += len(piece)
                if seen > _DRAIN_BYTES:
                    return  # not a terminator: response.aclose() drops the connection
    except Exception:  # noqa: BLE001 - see the docstring
        pass
