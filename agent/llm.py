"""Models behind one interface: `stream(prompt, max_tokens)` yields text deltas, then one `Finish`.

`OpenAICompatible` talks to any OpenAI-compatible server (OpenAI, Ollama, vLLM,
llama.cpp). The openai package makes the request (auth, retries before the response
starts, error types); the body is read raw and decoded here, because iterating the
SDK's parsed stream builds pydantic objects for every chunk (about 260 us each,
against about 30 us for a line split and one json.loads).

Wire format read by `decode_chat_stream`:
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


async def decode_chat_stream(chunks: AsyncIterator[bytes]) -> AsyncIterator[str | Finish]:
    """Upstream bytes to text deltas, then a Finish. Raises AgentError on a bad or cut-off stream."""
    lines, events = LineDecoder(), EventDecoder()
    reason, usage = "stop", None
    async for chunk in chunks:
        for line in lines.feed(chunk):
            event = events.decode(line)
            if event is None:
                continue
            if event.data == "[DONE]":
                yield Finish(reason, usage)
                # Read the body to its end (the chunked terminator follows at once) so that
                # httpx returns the connection to its pool instead of closing it.
                try:
                    async with asyncio.timeout(1.0):
                        async for _ in chunks:
                            pass
                except TimeoutError:
                    pass
                return
            try:
                payload = json.loads(event.data)
                if "error" in payload:
                    raise _payload_error(payload["error"])
                if payload.get("usage"):
                    usage = payload["usage"]
                choices = payload["choices"]
                if not choices:
                    continue  # the usage chunk
                choice = choices[0]
                content = choice["delta"].get("content")
                if choice.get("finish_reason"):
                    reason = choice["finish_reason"]
            except errors.AgentError:
                raise
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                raise errors.upstream_invalid_response() from None
            if content:
                if not content.isascii():
                    content = _well_formed(content)
                yield content
    # The body ended without `data: [DONE]`: the answer may be cut short.
    raise errors.upstream_interrupted()


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
                # Undecoded bytes unless the server compressed the stream (rare for SSE).
                chunks = response.aiter_bytes() if "content-encoding" in response.headers else response.aiter_raw()
                async for item in decode_chat_stream(chunks):
                    yield item
            finally:
                await response.aclose()
        except (openai.APIError, httpx.HTTPError) as exc:
            mapped = map_exception(exc)
            if mapped is None:
                raise
            raise mapped from None
