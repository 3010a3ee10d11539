"""The built-in offline model: no network, deterministic, paced like a real one.

`upstream.offline.compose.compose` writes the whole answer; this module streams it a word at
a time through exactly the same path as a real model's deltas.
"""

from __future__ import annotations

import asyncio
import re
from typing import AsyncIterator

from agent.model import Finish
from upstream.offline.compose import compose
from agent.prompts import Prompt

# A token is a word with the spaces that follow it, roughly what real models emit.
_TOKEN = re.compile(r"\s*\S+\s*|\s+")


class OfflineModel:
    provider = "offline"
    model = "offline-scenario-v1"

    def __init__(self, token_delay_ms: float) -> None:
        self._delay = max(0.0, token_delay_ms) / 1000

    async def stream(self, prompt: Prompt, max_tokens: int) -> AsyncIterator[str | Finish]:
        text = compose(prompt.intent, prompt.message, prompt.scenario, list(prompt.history))
        tokens = _TOKEN.findall(text)
        for token in tokens[:max_tokens]:
            # sleep(0) still yields to the loop, so a disconnect is noticed at once.
            await asyncio.sleep(self._delay)
            yield token
        prompt_tokens = sum(len(m["content"].split()) for m in prompt.messages)
        completion = min(len(tokens), max_tokens)
        yield Finish(
            "stop" if len(tokens) <= max_tokens else "length",
            {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion},
        )
