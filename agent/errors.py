"""Typed errors that end a run. Each becomes one `error` event (agent/events.py: Error).

Messages are written for the person using the page; they never carry a stack trace,
an upstream's raw body or the API key.
"""

from __future__ import annotations

from agent.events import Error


class AgentError(Exception):
    def __init__(self, code: str, message: str, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after

    def event(self) -> Error:
        return Error(self.code, self.message, self.retryable, self.retry_after)


def upstream_auth() -> AgentError:
    return AgentError("upstream_auth", "The model server rejected this server's credentials. The operator must check OPENAI_API_KEY.", False)


def upstream_rate_limited(retry_after: float | None) -> AgentError:
    wait = f" Try again in {retry_after:g} s." if retry_after is not None else " Try again shortly."
    return AgentError("upstream_rate_limited", "The model server is rate limiting requests." + wait, True, retry_after)


def upstream_unavailable(detail: str = "") -> AgentError:
    return AgentError("upstream_unavailable", f"The model server is unavailable{detail}. Try again in a moment.", True)


def upstream_timeout() -> AgentError:
    return AgentError("upstream_timeout", "The model server stopped responding. Try again.", True)


def upstream_interrupted() -> AgentError:
    return AgentError("upstream_interrupted", "The model's answer was cut off before it finished. The text so far is kept; try again for a complete answer.", True)


def upstream_invalid_response() -> AgentError:
    return AgentError("upstream_invalid_response", "The model server sent a response this service could not read. Try again.", True)


def upstream_rejected(status: int) -> AgentError:
    return AgentError("upstream_rejected", f"The model server refused the request (HTTP {status}). The operator should check OPENAI_MODEL and OPENAI_BASE_URL.", False)


def context_too_long() -> AgentError:
    return AgentError(
        "context_too_long",
        "The scenario and the conversation are too long for the model. Shorten the scenario or start a new conversation.",
        False,
    )


def output_truncated() -> AgentError:
    return AgentError(
        "output_truncated",
        "The model reached its output limit before the scenario was complete. Your scenario is unchanged; "
        "the operator can raise MAX_OUTPUT_TOKENS, or ask for a smaller change.",
        True,
    )


def content_filtered() -> AgentError:
    return AgentError("content_filtered", "The model server's content filter stopped the answer. The text so far is kept.", False)


def invalid_scenario(reason: str) -> AgentError:
    return AgentError("invalid_scenario", f"The model did not return a valid scenario ({reason}). Your scenario is unchanged.", True)


def internal() -> AgentError:
    return AgentError("internal", "Something went wrong inside the service. Try again; if it keeps happening, report the request id.", True)


def cancelled() -> AgentError:
    return AgentError("cancelled", "Stopped. The text so far is kept.", True)


def run_lost() -> AgentError:
    return AgentError("run_lost", "The server that was writing this answer went away before it finished. The text so far is kept; try again.", True)


def empty_answer() -> AgentError:
    return AgentError("empty_answer", "The model ended its answer without writing anything. Try again.", True)


def server_shutdown() -> AgentError:
    return AgentError("server_shutdown", "The server is restarting. Try again in a few seconds.", True, 2.0)
