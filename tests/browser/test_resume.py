"""Resuming an answer in Chromium: a reload mid-answer, a connection lost mid-answer, joins that
give up, Resume, and Stop reaching the server.

The server keeps each run's frames (ids `<run>-<n>`); the page keeps `{run, last event id}` in
sessionStorage while it streams and joins `GET /api/agent/scenario/runs/{id}/stream` with
`Last-Event-ID` (static/resume.js, static/conversation.js). The real app runs with its default
detached grace of 15 s here (the `resume_live` fixture), so a run outlives its reader.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.browser.pagehelpers import LAST_ANSWER, answer_text, load_sample, send, wait_answer_status, wait_ready
from tests.browser.scripted import ScriptedStream

SAVED = "() => JSON.parse(localStorage.getItem('scenario-agent:v1'))"
JOIN_ROUTE = "**/api/agent/scenario/runs/*/stream"


def saved(page: Any) -> dict[str, Any]:
    return page.evaluate(SAVED)


def shown_text(page: Any) -> str:
    return answer_text(page)


def scenario_json(page: Any) -> Any:
    state = saved(page)
    return state["versions"][state["index"]]["scenario"]


def uninterrupted(browser_page: Any, message: str, mode: str) -> dict[str, Any]:
    """The same question answered without interruption, in its own page: what to compare with."""
    load_sample(browser_page, 1)
    send(browser_page, message, mode=mode)
    assert wait_answer_status(browser_page, "complete", "error", "stopped", "interrupted", timeout=60_000) == "complete"
    state = saved(browser_page)
    return {
        "text": shown_text(browser_page),
        "content": state["messages"][-1]["content"],
        "label": browser_page.inner_text("#version-label"),
        "scenario": scenario_json(browser_page),
        "summary": browser_page.inner_text("#transcript .msg-assistant:last-of-type .msg-change") if state["messages"][-1].get("changeSummary") else "",
    }


@pytest.mark.parametrize("when", ["text", "block"])
def test_a_reload_mid_answer_ends_identical_and_applies_the_scenario_once(when: str, resume_live: Any, open_page: Any) -> None:
    """The done-when: a reload in the middle of an offline-model answer ends with the complete
    answer on screen, identical to an uninterrupted one, and the scenario frame applied once.
    Reloaded while the answer's text streams, and while its patch block streams."""
    message = "add a role for a journalist"
    reference = uninterrupted(open_page(resume_live.url + "/"), message, "modify")
    assert reference["label"] == "Version 2 of 2"

    page = open_page(resume_live.url + "/")
    load_sample(page, 1)
    send(page, message, mode="modify")
    if when == "text":
        page.wait_for_function(f"() => {{ const a = {LAST_ANSWER}; return a && a.querySelector('.msg-text').textContent.length > 20; }}")
    else:
        page.wait_for_function("() => !document.getElementById('live-wrap').hidden")
    record = page.evaluate("() => JSON.parse(sessionStorage.getItem('scenario-agent:run'))")
    assert re.fullmatch(r"[0-9a-f]{32}", record["runId"]) and record["lastEventId"].startswith(record["runId"] + "-")
    before = shown_text(page)
    assert page.get_attribute("#transcript .msg-assistant:last-of-type", "data-status") == "streaming"
    page.reload()
    wait_ready(page)
    # The answer is there at once with the text it had (or more), and it goes on streaming.
    kept = shown_text(page)
    assert kept.startswith(before[: max(0, len(before) - 5)]), f"text lost on reload: {before!r} -> {kept!r}"
    assert wait_answer_status(page, "complete", "error", "stopped", "interrupted", timeout=60_000) == "complete"

    assert shown_text(page) == reference["text"]
    state = saved(page)
    assert state["messages"][-1]["content"] == reference["content"], "the saved text differs: a frame lost or applied twice"
    assert [m["role"] for m in state["messages"]] == ["user", "assistant"]
    # The scenario frame applied exactly once: one new version, the same as without the reload.
    assert page.inner_text("#version-label") == "Version 2 of 2"
    assert len(state["versions"]) == 2
    assert scenario_json(page) == reference["scenario"]
    assert [r["name"] for r in scenario_json(page)["roles"]].count("Journalist") == 1
    assert page.inner_text("#transcript .msg-assistant:last-of-type .msg-change") == reference["summary"]
    # The inspector shows where the join resumed, and ids on the frames after it.
    marker = page.locator("#frames-body tr.frame-resume")
    assert marker.count() == 1
    assert record["runId"] in marker.inner_text()
    ids = page.eval_on_selector_all("#frames-body tr:not(.frame-resume) td.frame-id", "tds => tds.map(td => Number(td.textContent))")
    assert ids and ids == sorted(ids) and len(set(ids)) == len(ids), f"frame ids out of order or repeated: {ids}"
    assert page.eval_on_selector_all("#frames-body tr:not(.frame-resume) td.frame-id", "tds => tds.map(td => td.title)")[0].startswith(record["runId"])
    # Finished: nothing left to resume.
    assert page.evaluate("() => sessionStorage.getItem('scenario-agent:run')") is None
    assert page.recorder.errors == []


def test_a_lost_connection_reconnects_and_the_answer_completes(resume_live: Any, open_page: Any) -> None:
    from tests.browser.netcut import CuttableProxy

    reference_page = open_page(resume_live.url + "/")
    reference = uninterrupted(reference_page, "What is the hardest part?", "chat")
    with CuttableProxy(resume_live.port) as proxy:
        page = open_page(proxy.url + "/")
        joins: list[str | None] = []
        page.on("request", lambda r: joins.append(r.headers.get("last-event-id")) if "/runs/" in r.url and r.method == "GET" else None)
        load_sample(page, 1)
        send(page, "What is the hardest part?", mode="chat")
        page.wait_for_function(f"() => {{ const a = {LAST_ANSWER}; return a && a.querySelector('.msg-text').textContent.length > 30; }}")
        assert proxy.cut() > 0
        # Waits the server's retry hint (2 s), saying so, then joins after the last frame applied.
        page.wait_for_function(f"() => {LAST_ANSWER}.querySelector('.msg-status').textContent === 'Reconnecting…'")
        assert page.get_attribute("#transcript .msg-assistant:last-of-type", "data-status") == "streaming"
        assert wait_answer_status(page, "complete", "error", "stopped", "interrupted", timeout=60_000) == "complete"
        assert shown_text(page) == reference["text"]
        assert saved(page)["messages"][-1]["content"] == reference["content"]
        assert len(joins) == 1 and joins[0] and re.fullmatch(r"[0-9a-f]{32}-\d+", joins[0]), joins
        assert page.locator("#frames-body tr.frame-resume").count() == 1
        assert page.inner_text("#transcript .msg-assistant:last-of-type .msg-status") == ""


def test_joins_give_up_after_the_bound_then_resume_continues(fast_live: Any, open_page: Any) -> None:
    """A run whose joins keep failing: "Reconnecting…", then after the bounded tries the answer
    is interrupted ("the connection to the server was lost", never "restarting") with Retry and
    Resume; Resume joins after the last frame and the answer ends with nothing twice."""
    run = "ab" * 16
    words = ["Alpha ", "beta ", "gamma ", "delta ", "epsilon ", "zeta."]
    first = [(0, "start", {"request_id": run, "intent": "chat", "model": "scripted-model", "provider": "openai-compatible"})]
    first += [(30, "chat", {"content": w}) for w in words[:3]]
    rest = [(30, "chat", {"content": w}) for w in words[3:]]
    rest += [(30, "done", {"finish_reason": "stop", "usage": None, "timings": {}, "repairs": 0})]
    failing = {"on": True}
    seen: list[str | None] = []

    with ScriptedStream(first, run_id=run, retry_ms=50) as posted, ScriptedStream(rest, run_id=run, first_seq=5) as joined:

        def join(route: Any) -> None:
            seen.append(route.request.headers.get("last-event-id"))
            if failing["on"]:
                route.abort("connectionrefused")
            else:
                route.continue_(url=joined.url)

        page = open_page(fast_live.url + "/")
        posted.route(page)
        page.route(JOIN_ROUTE, join)
        page.evaluate(
            """() => { window.__labels = [];
                new MutationObserver(() => { const s = document.querySelector('#transcript .msg-assistant .msg-status');
                    if (s) window.__labels.push(s.textContent); }).observe(document.getElementById('transcript'), {subtree: true, childList: true, characterData: true}); }"""
        )
        send(page, "say six words", mode="chat")
        assert wait_answer_status(page, "interrupted", "complete", "error", "stopped") == "interrupted"
        assert "Reconnecting…" in page.evaluate("() => window.__labels")
        # Five tries, each after the last frame applied (4: start and three words).
        assert seen == [f"{run}-4"] * 5
        root = "#transcript .msg-assistant:last-of-type"
        assert shown_text(page) == "Alpha beta gamma"
        assert page.inner_text(f"{root} .msg-status") == "Interrupted"
        error = page.inner_text(f"{root} .msg-error-text")
        assert "connection to the server was lost" in error
        assert "restart" not in (page.inner_text("#transcript") + page.inner_text(".header-status")).lower()
        assert page.locator(f"{root} .msg-error button.retry").is_visible()
        resume = page.locator(f"{root} .msg-actions button.resume")
        assert resume.is_visible()
        # The record stays while the run may be joined; Resume uses it.
        assert page.evaluate("() => JSON.parse(sessionStorage.getItem('scenario-agent:run')).runId") == run

        failing["on"] = False
        resume.click()
        assert wait_answer_status(page, "complete", "interrupted", "error", "stopped") == "complete"
    assert seen[-1] == f"{run}-4"
    assert shown_text(page) == "Alpha beta gamma delta epsilon zeta."
    assert saved(page)["messages"][-1]["content"] == "".join(words)
    assert page.locator(f"{root} .msg-error").count() == 0
    assert page.evaluate("() => sessionStorage.getItem('scenario-agent:run')") is None


def test_a_reload_after_the_server_lost_the_run_says_so(fast_live: Any, open_page: Any) -> None:
    """204 on the join: nothing to resume. The text is kept, marked interrupted, with Retry and
    no Resume."""
    run = "cd" * 16  # a run the real app never had: its join answers 204
    steps = [(0, "start", {"request_id": run, "intent": "chat", "model": "scripted-model", "provider": "openai-compatible"})]
    steps += [(60, "chat", {"content": f"word{i} "}) for i in range(40)]
    with ScriptedStream(steps, run_id=run, retry_ms=50) as scripted:
        page = open_page(fast_live.url + "/")
        scripted.route(page)
        send(page, "talk", mode="chat")
        page.wait_for_function(f"() => {{ const a = {LAST_ANSWER}; return a && a.querySelector('.msg-text').textContent.includes('word3'); }}")
        page.reload()
        wait_ready(page)
        assert wait_answer_status(page, "interrupted", "complete", "error", "stopped") == "interrupted"
    root = "#transcript .msg-assistant:last-of-type"
    assert shown_text(page).startswith("word0 word1 word2 word3")
    assert "no longer has this answer" in page.inner_text(f"{root} .msg-error-text")
    assert page.locator(f"{root} .msg-actions button.resume").count() == 0
    assert page.locator(f"{root} .msg-error button.retry").is_visible()


def test_stop_and_esc_cancel_the_run_on_the_server_with_the_token(open_page: Any) -> None:
    """Stop and Esc send DELETE for the run (with the access token), so the run ends at once
    even though a run without readers would otherwise go on for the grace; joins carry the
    token too."""
    from tests.browser.netcut import CuttableProxy
    from tests.support.servers import LiveApp

    env = {"APP_ACCESS_TOKEN": "s3cret-token", "OFFLINE_TOKEN_DELAY_MS": "20", "RUN_DETACHED_GRACE_SECONDS": "15"}
    with LiveApp(env) as live, CuttableProxy(live.port) as proxy:
        page = open_page(proxy.url + "/")
        requests: list[tuple[str, str, str | None]] = []
        page.on("request", lambda r: requests.append((r.method, r.url, r.headers.get("authorization"))) if "/runs/" in r.url else None)
        page.evaluate("() => sessionStorage.setItem('scenario-agent:token', 's3cret-token')")
        load_sample(page, 1)
        send(page, "Explain this scenario", mode="explain")
        page.wait_for_function(f"() => {{ const a = {LAST_ANSWER}; return a && a.querySelector('.msg-text').textContent.length > 30; }}")
        proxy.cut()
        page.wait_for_function(f"() => {{ const a = {LAST_ANSWER}; return a.dataset.reconnecting === 'false' && a.querySelector('.msg-text').textContent.length > 200; }}", timeout=30_000)
        assert live.health()["active_streams"] >= 1
        page.keyboard.press("Escape")
        assert wait_answer_status(page, "stopped", "complete", "error", "interrupted") == "stopped"
        # Well inside the 15 s grace: the DELETE ended the run, not a timeout.
        assert live.wait_no_streams(timeout=5) == 0
        deletes = [r for r in requests if r[0] == "DELETE"]
        joins = [r for r in requests if r[0] == "GET"]
        assert len(deletes) == 1 and re.search(r"/api/agent/scenario/runs/[0-9a-f]{32}$", deletes[0][1]), requests
        assert deletes[0][2] == "Bearer s3cret-token"
        assert joins and all(j[2] == "Bearer s3cret-token" for j in joins)
        assert page.locator("#token-dialog[open]").count() == 0

        # The Stop button does the same.
        send(page, "Explain it again", mode="explain")
        page.wait_for_function(f"() => {{ const a = {LAST_ANSWER}; return a && a.querySelector('.msg-text').textContent.length > 30; }}")
        page.click("#stop")
        assert wait_answer_status(page, "stopped", "complete", "error", "interrupted") == "stopped"
        assert live.wait_no_streams(timeout=5) == 0
        assert len([r for r in requests if r[0] == "DELETE"]) == 2
        assert page.evaluate("() => sessionStorage.getItem('scenario-agent:run')") is None
    assert json.loads(json.dumps(requests))  # plain data, for the failure message above


def test_a_stop_before_the_response_names_the_run_still_cancels_it(fast_live: Any, open_page: Any) -> None:
    """Esc pressed while the headers (which name the run) are still on their way: the page
    waits for them, sends the DELETE, then stops reading."""
    run = "ef" * 16
    steps = [(0, "start", {"request_id": run, "intent": "chat", "model": "scripted-model", "provider": "openai-compatible"})]
    steps += [(50, "chat", {"content": f"word{i} "}) for i in range(40)]
    deleted: list[str] = []

    def on_delete(route: Any) -> None:
        deleted.append(route.request.url)
        route.fulfill(status=204, body="")

    with ScriptedStream(steps, run_id=run, head_delay_ms=400) as scripted:
        page = open_page(fast_live.url + "/")
        scripted.route(page)
        page.route("**/api/agent/scenario/runs/*", lambda route: on_delete(route) if route.request.method == "DELETE" else route.continue_())
        send(page, "talk", mode="chat")
        page.keyboard.press("Escape")
        assert wait_answer_status(page, "stopped", "complete", "error", "interrupted") == "stopped"
    assert deleted and deleted[0].endswith(f"/api/agent/scenario/runs/{run}"), deleted
    assert page.evaluate("() => sessionStorage.getItem('scenario-agent:run')") is None
