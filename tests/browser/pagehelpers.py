"""Helpers for the browser tests: reading and driving the page."""

from __future__ import annotations

from typing import Any

LAST_ANSWER = "[...document.querySelectorAll('#transcript .msg-assistant')].at(-1)"


def wait_ready(page: Any) -> None:
    page.wait_for_function("() => document.body && document.body.dataset.ready === 'true'")


def send(page: Any, text: str, mode: str | None = None) -> None:
    if mode:
        page.select_option("#mode", mode)
    page.fill("#composer-input", text)
    page.press("#composer-input", "Enter")


def wait_answer_status(page: Any, *statuses: str, timeout: float = 30_000) -> str:
    page.wait_for_function(
        f"(ss) => {{ const a = {LAST_ANSWER}; return a && ss.includes(a.dataset.status); }}",
        arg=list(statuses),
        timeout=timeout,
    )
    return page.evaluate(f"() => {LAST_ANSWER}.dataset.status")


def answer_text(page: Any) -> str:
    return page.evaluate(f"() => {{ const a = {LAST_ANSWER}; return a ? a.querySelector('.msg-text').textContent : null; }}")


def load_sample(page: Any, index: int = 1) -> str:
    """Load a sample from the picker (index 1 = first real option); returns its title."""
    page.wait_for_function("() => document.querySelectorAll('#sample-select option').length > 1")
    page.select_option("#sample-select", index=index)
    page.click("#load-sample")
    page.wait_for_function("() => document.querySelector('#scenario-view .scn-title') !== null")
    return page.inner_text("#scenario-view .scn-title")
