"""Driving a model backend directly, without the app."""

from __future__ import annotations

from typing import Any

from agent.errors import AgentError
from agent.prompts import build_prompt


async def answer(model: Any, max_tokens: int = 64) -> tuple[list, str | None]:
    """Everything `model.stream` yields for a chat "hi", and the error code it ended with (or None)."""
    items: list = []
    try:
        async for item in model.stream(build_prompt("chat", "hi", None, ()), max_tokens):
            items.append(item)
    except AgentError as exc:
        return items, exc.code
    return items, None
