"""Models behind one interface: `stream(prompt, max_tokens)` yields text deltas, then one `Finish`.

`OpenAICompatible` talks to any OpenAI-compatible server (OpenAI, Ollama, vLLM,
llama.cpp). The openai package makes the request (auth, retries before the response
starts, error types); the body is read raw and decoded here, because iterating the
SDK's parsed stream builds pydantic objects for every chunk (about 260 us each,
against about 30 us for a line split and one json.loads).

Wire format read by `ChatStreamDecoder`:
    data: {"choices":[{"delta":{"content":"Hel"},"finish_reason":null}], ...}
    data: {"choices":[{"delta":{},"finish_reason":"stop"}], ...}
    data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}
    data: [DONE]
An `{"error": {...}}` payload may arrive instead of a chunk.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, AsyncIterator, Protocol

import httpx
import openai

from agent import errors
from agent.config import Settings
from agent.prompts import Prompt
from agent.sse import EventDecoder, LineDecoder


@dataclass(frozen=True)
class Finish:
    """The end of a model's answer: why it stopped, and the token counts if the server sent them."""

    reason: str
    usage: dict[str, int] | None


class Model(Protocol):
    provider: str
    model: str

    def stream(self, prompt: Prompt, max_tokens: int) -> AsyncIterator[str | Finish]: ...


_raw_decode = json.JSONDecoder().raw_decode


def _loads(text: str) -> Any:
    """json.loads, minus its two whitespace-skipping regex passes when there is no whitespace
    around the value (the usual chunk): fewer calls per token, the same result."""
    try:
        value, end = _raw_decode(text)
    except ValueError:
        return json.loads(text)  # leading whitespace, or not JSON: json.loads decides
    return value if end == len(text) else json.loads(text)


class ChatStreamDecoder:
    """Upstream bytes to text deltas, then a Finish: pushed, so it needs no event loop.

    `feed(chunk)` returns what the chunk completed. The Finish comes with `data: [DONE]`
    and sets `done`. A bad or error payload sets `error` (an AgentError) instead, after the
    deltas before it are returned, so text the client already has stays valid. After either,
    later bytes are ignored. A body that ends with neither was cut off.
    """

    def __init__(self) -> None:
        self._lines = LineDecoder()
        self._events = EventDecoder()
        self._reason = "stop"
        self._usage: dict[str, int] | None = None
        self.done = False
        self.error: errors.AgentError | None = None

    def feed(self, chunk: bytes) -> list[str | Finish]:
        out: list[str | Finish] = []
        if self.done or self.error is not None:
            return out
        for line in self._lines.feed(chunk):
            event = self._events.decode(line)
            if event is None:
                continue
            if event.data == "[DONE]":
                self.done = True
                out.append(Finish(self._reason, self._usage))
                return out
            try:
                payload = _loads(event.data)
                if "error" in payload:
                    raise _payload_error(payload["error"])
                if payload.get("usage"):
                    self._usage = payload["usage"]
                choices = payload["choices"]
                if not choices:
                    continue  # the usage chunk
                choice = choices[0]
                content = choice["delta"].get("content")
                if choice.get("finish_reason"):
                    self._reason = choice["finish_reason"]
            except errors.AgentError as exc:
                self.error = exc
                return out
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                self.error = errors.upstream_invalid_response()
                return out
            if content:
                out.append(content if content.isascii() else _well_formed(content))
        return out


def _well_formed(text: str) -> str:
    """json.loads turns a "\\ud800" escape into a lone surrogate, which UTF-8 cannot encode;
    it would break the frame encoder downstream. Replace it, as a decoder would."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _payload_error(error: Any) -> errors.AgentError:
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


class OpenAICompatible:
    provider = "openai-compatible"

    def __init__(self, settings: Settings, http_client: httpx.AsyncClient) -> None:
        self.model = settings.openai_model
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
        )

    async def stream(self, prompt: Prompt, max_tokens: int) -> AsyncIterator[str | Finish]:
        """Closing this generator (aclose) closes the upstream response and its connection."""
        try:
            # The client's generic `post` (the SDK's way to call any endpoint) with a raw
            # httpx.Response: auth, retries before the response starts and the SDK's error
            # types as with `chat.completions.create`, without validating and transforming
            # typed params on every request (a third of the SDK's CPU per request).
            response: httpx.Response = await self._client.post(
                "/chat/completions",
                cast_to=httpx.Response,
                body={
                    "model": self.model,
                    "messages": prompt.messages,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                    "max_tokens": max_tokens,
                },
                stream=True,
            )
            try:
                # The response's byte stream itself, unless the server compressed it (rare for
                # SSE; then httpx decodes). `aiter_raw` would add a generator and a re-chunker
                # per read on top of the same bytes; `response.aclose()` below still runs.
                chunks: AsyncIterator[bytes] = response.aiter_bytes() if "content-encoding" in response.headers else aiter(response.stream)  # type: ignore[arg-type]
                decoder = ChatStreamDecoder()
                # The hot loop: one network read in, its deltas out. Kept flat on purpose:
                # every generator layer between the socket and the client costs time per token.
                async for chunk in chunks:
                    for item in decoder.feed(chunk):
                        yield item
                    if decoder.done or decoder.error is not None:
                        break
                if decoder.error is not None:
                    raise decoder.error
                if not decoder.done:
                    raise errors.upstream_interrupted()  # the body ended without `data: [DONE]`
                # Read the body to its end (the chunked terminator follows at once) so that
                # the connection goes back to the pool instead of being closed.
                try:
                    async with asyncio.timeout(1.0):
                        async for _ in chunks:
                            pass
                except TimeoutError:
                    pass
            finally:
                await response.aclose()
        except (openai.APIError, httpx.HTTPError) as exc:
            mapped = map_exception(exc)
            if mapped is None:
                raise
            raise mapped from None
