"""What differs between OpenAI-compatible servers, decided in one place.

The output-token limit has two names. OpenAI's reasoning models (o1, o3, o4-mini, gpt-5...,
on Azure too) refuse `max_tokens` with HTTP 400 `unsupported_parameter` and want
`max_completion_tokens`; Ollama's /v1 takes only `max_tokens`; llama-cpp-python silently
ignores `max_completion_tokens`. So: `max_completion_tokens` to OpenAI and Azure OpenAI,
`max_tokens` to every other server, and when a server refuses the one it got, the other
(`rejected_token_param` reads the refusal; OpenAICompatible retries once and remembers).

`temperature` is sent for the intents that return a block. OpenAI's reasoning models refuse it
with HTTP 400: o1, o3 and o4-mini `unsupported_parameter` ("Unsupported parameter:
'temperature' is not supported with this model."), gpt-5 `unsupported_value` for any value but
the default ("Only the default (1) value is supported"). `rejected_temperature` reads either;
OpenAICompatible then leaves it out, once and for the rest of the process.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from upstream.errors import short_str

MAX_TOKENS = "max_tokens"
MAX_COMPLETION_TOKENS = "max_completion_tokens"
TOKEN_PARAMS = (MAX_TOKENS, MAX_COMPLETION_TOKENS)

_REFUSAL_WORDS = ("unsupported", "not supported", "unrecognized", "unknown", "not permitted", "not allowed", "invalid")


def token_param_for(base_url: str | None, setting: str = "auto") -> str:
    """The name to send first: the setting's, unless it is "auto"; then by the server's host
    (OpenAI when no base URL is set, api.openai.com, *.openai.azure.com)."""
    if setting in TOKEN_PARAMS:
        return setting
    if not base_url:
        return MAX_COMPLETION_TOKENS
    host = (urlsplit(base_url).hostname or "").lower()
    if host == "api.openai.com" or host.endswith(".openai.azure.com"):
        return MAX_COMPLETION_TOKENS
    return MAX_TOKENS


def other_token_param(name: str) -> str:
    return MAX_TOKENS if name == MAX_COMPLETION_TOKENS else MAX_COMPLETION_TOKENS


def rejected_token_param(status: int, error: Any, sent: str) -> bool:
    """Whether an error answer refuses the token-limit parameter `sent` (and so the other
    name is worth one try). OpenAI names it in `param` with code `unsupported_parameter`;
    older Azure API versions say "Unrecognized request argument supplied: max_completion_tokens";
    pydantic-based servers (422) "Extra inputs are not permitted" with the name in the text."""
    if status not in (400, 422) or not isinstance(error, dict):
        return False
    param = error.get("param")
    if param in TOKEN_PARAMS:
        return param == sent
    # No `param`: the refused name is the first one the message mentions ("Unsupported
    # parameter: 'max_tokens' ... Use 'max_completion_tokens' instead").
    message = short_str(error.get("message") or error)  # FastAPI 422: {"detail": [{"loc": [...], "msg": ...}]}
    at = {name: message.find(name) for name in TOKEN_PARAMS if name in message}
    if not at or min(at, key=at.__getitem__) != sent:
        return False
    lowered = message.lower()
    return error.get("code") == "unsupported_parameter" or any(word in lowered for word in _REFUSAL_WORDS)


def rejected_temperature(status: int, error: Any) -> bool:
    """Whether an error answer refuses the `temperature` parameter: named in `param`, or
    (servers that send no `param`) in an unsupported_parameter / unsupported_value message."""
    if status not in (400, 422) or not isinstance(error, dict):
        return False
    if error.get("param") == "temperature":
        return True
    if error.get("param") is not None:
        return False
    message = short_str(error.get("message") or error)
    return "temperature" in message and (error.get("code") in ("unsupported_parameter", "unsupported_value")
                                         or any(word in message.lower() for word in _REFUSAL_WORDS))
