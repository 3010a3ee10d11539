"""Typed errors that end a run. Each becomes one `error` event (agent/events.py: Error).

Messages are written for the person using the page; they never carry a stack trace,
an upstream's raw body or the API key.
"""

from __future__ import annotations

from agent.events import Error


class AgentError(Exception):
    """`message` is for the person using the page; `detail`, when set, is the technical reason
    (sent beside it, and logged) for the developer reading the frames."""

    def __init__(self, code: str, message: str, retryable: bool, retry_after: float | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.detail = detail

    def event(self) -> Error:
        return Error(self.code, self.message, self.retryable, self.retry_after, self.detail)


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


def output_truncated(block_begun: bool = True) -> AgentError:
    if not block_begun:
        return AgentError(
            "output_truncated",
            "The model reached its output limit before it began the change, so nothing was changed. "
            "Try again, or ask for the change more directly (for example \"add a role for a journalist\").",
            True,
            detail="the output limit came before any block began",
        )
    return AgentError(
        "output_truncated",
        "The model reached its output limit while writing the change, so the change was cut off. Your scenario "
        "is unchanged; ask for a smaller change, or the operator can raise MAX_OUTPUT_TOKENS.",
        True,
        detail="the block was cut by the output limit",
    )


def content_filtered() -> AgentError:
    return AgentError("content_filtered", "The model server's content filter stopped the answer. The text so far is kept.", False)


def invalid_scenario(reason: str) -> AgentError:
    """`reason` is the validator's (technical); the message says what it means for the user."""
    return AgentError("invalid_scenario", _in_user_terms(reason) + " Your scenario is unchanged; try again or rephrase the request.", True, detail=reason)


def _in_user_terms(reason: str) -> str:
    text = reason.lower()
    if text.startswith("it dropped "):
        return f"The model's change would have removed {reason[len('it dropped '):].split(', which')[0]}, which you did not ask to remove."
    if "example" in text:
        return "The model copied the instructions' example instead of making your change."
    if text.startswith("no ") and "block" in text:
        return "The model answered without making the change."
    if "json" in text or "expecting" in text or "line " in text or "not a json object" in text or "could not be read" in text:
        return "The model's change was not written correctly, so it could not be read."
    if "larger than" in text or "too large" in text or "kib" in text:
        return "The model's change would have made the scenario too large."
    return "The model's change did not fit your scenario."


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
