"""The OpenAI-compatible backend: any server that speaks Chat Completions streaming
(OpenAI, Azure OpenAI, Ollama, vLLM, llama.cpp, LM Studio, OpenRouter).

The openai package makes the request (auth, retries before the response starts, error
types); the body is read raw and decoded by `upstream.decode`, because iterating the
SDK's parsed stream builds pydantic objects for every chunk (about 260 us each, against
a few us for a line split and one JSON decode).
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import httpx
import openai

from agent import errors
from agent.config import Settings
from agent.model import Finish, Thinking
from agent.prompts import Prompt
from upstream.decode import ChatStreamDecoder
from upstream.errors import map_exception


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
