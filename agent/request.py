"""The request body, checked field by field. Every rejection names the field and says why."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agent.config import Settings
from agent.intents import MODES
from agent.scenario import depth

FIELDS = ("message", "scenario", "history", "mode")


class InvalidRequest(ValueError):
    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


@dataclass(frozen=True)
class AgentRequest:
    message: str
    scenario: dict[str, Any] | None
    history: tuple[dict[str, str], ...]
    mode: str


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


def parse_request(body: Any, limits: Settings) -> AgentRequest:
    if not isinstance(body, dict):
        raise InvalidRequest("invalid_body", "The body must be a JSON object.")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise InvalidRequest("unknown_field", f"Unknown field(s): {', '.join(unknown)}. Allowed: {', '.join(FIELDS)}.", unknown[0])

    message = body.get("message")
    if not isinstance(message, str):
        raise InvalidRequest("invalid_field", "'message' is required and must be a string.", "message")
    if not message.strip():
        raise InvalidRequest("invalid_field", "'message' must not be empty.", "message")
    if len(message) > limits.max_message_chars:
        raise InvalidRequest("too_large", f"'message' is longer than {limits.max_message_chars} characters.", "message")

    scenario = body.get("scenario")
    if scenario is not None:
        if not isinstance(scenario, dict):
            raise InvalidRequest("invalid_field", "'scenario' must be a JSON object or null.", "scenario")
        if depth(scenario) > limits.max_scenario_depth:
            raise InvalidRequest("too_deep", f"'scenario' is nested deeper than {limits.max_scenario_depth} levels.", "scenario")
        if _size(scenario) > limits.max_scenario_bytes:
            raise InvalidRequest("too_large", f"'scenario' is larger than {limits.max_scenario_bytes // 1024} KiB.", "scenario")

    history = body.get("history")
    if history is None:
        history = []
    if not isinstance(history, list):
        raise InvalidRequest("invalid_field", "'history' must be a list of {role, content} turns.", "history")
    if len(history) > limits.max_history_turns:
        raise InvalidRequest("too_large", f"'history' has more than {limits.max_history_turns} turns.", "history")
    for index, turn in enumerate(history):
        if (
            not isinstance(turn, dict)
            or set(turn) != {"role", "content"}
            or turn["role"] not in ("user", "assistant")
            or not isinstance(turn["content"], str)
        ):
            raise InvalidRequest(
                "invalid_field",
                f"'history[{index}]' must be {{\"role\": \"user\"|\"assistant\", \"content\": string}}.",
                "history",
            )
    if _size(history) > limits.max_history_bytes:
        raise InvalidRequest("too_large", f"'history' is larger than {limits.max_history_bytes // 1024} KiB.", "history")

    mode = body.get("mode")
    if mode is None:
        mode = "auto"
    if mode not in MODES:
        raise InvalidRequest("invalid_field", f"'mode' must be one of: {', '.join(MODES)}.", "mode")

    return AgentRequest(message=message, scenario=scenario, history=tuple(history), mode=mode)
