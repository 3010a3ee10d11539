"""The page in a real browser, against the real app on loopback.

Run: python3 -m pytest -q tests/browser     (needs Debian's chromium; see conftest.py)

Every test waits on conditions in the page (wait_for_function), never on fixed sleeps,
and every page is checked for CSP violations and uncaught errors when the test ends.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.browser.pagehelpers import LAST_ANSWER, answer_text, load_sample, send, wait_answer_status, wait_ready

XSS = "<img src=x onerror=alert(1)>"


def letters(text: str) -> str:
    """Only the letters of a text: rendered markdown and its source compare equal."""
    return re.sub(r"[^A-Za-z]", "", text)


START_SAMPLER = """() => {
    // Record the last answer's text length every 5 ms until it stops streaming.
    window.__lengths = [];
    const timer = setInterval(() => {
        const a = [...document.querySelectorAll('#transcript .msg-assistant')].at(-1);
        if (!a) return;
        if (a.dataset.status !== 'streaming') { clearInterval(timer); window.__samplerDone = true; return; }
        window.__lengths.push(a.querySelector('.msg-text').textContent.length);
    }, 5);
}"""


def canvas_ink(page: Any, lane: int = 0) -> dict[str, int]:
    """How many pixel columns of the timeline's tick row (one lane) are inked."""
    return page.evaluate(
        """(lane) => {
            const c = document.getElementById('timeline');
            const row = Number(c.dataset['tickRow' + lane]);
            const start = Number(c.dataset.trackStart);
            const d = c.getContext('2d').getImageData(0, row, c.width, 1).data;
            let inked = 0;
            for (let x = start; x < c.width; x++) if (d[x * 4 + 3] > 128) inked++;
            let any = 0;
            const all = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            for (let i = 3; i < all.length; i += 4) if (all[i] > 0) any++;
            return {inked, any, ticks: Number(c.dataset.ticks), lanes: Number(c.dataset.lanes)};
        }""",
        lane,
    )


# ---------------------------------------------------------------------------------------


def test_page_loads_with_csp_and_names_the_offline_model(offline_live: Any, open_page: Any) -> None:
    page = open_page()
    response = page.goto(offline_live.url + "/")
    csp = response.headers.get("content-security-policy", "")
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "style-src 'self'" in csp
    assert response.headers.get("x-request-id")
    wait_ready(page)
    page.wait_for_function("() => document.getElementById('model-name').textContent.includes('offline-scenario-v1')")
    assert "built-in offline model" in page.inner_text("#model-name")
    note = page.locator("#offline-note")
    assert note.is_visible()
    assert "OPENAI_API_KEY" in note.inner_text()
    page.wait_for_function("() => document.querySelectorAll('#sample-select option').length >= 4")
    # Nothing failed to load (a 404 would show here) and nothing was blocked.
    assert page.recorder.console_errors() == []
    assert page.recorder.csp_violations() == []
    # No inline script or style anywhere in the markup.
    assert page.evaluate("() => [...document.scripts].every(s => s.src)")
    assert page.evaluate("() => document.querySelectorAll('[style]').length") == 0


def test_answer_streams_in_many_steps_and_inspector_draws_it(offline_live: Any, open_page: Any, artifacts: Any) -> None:
    page = open_page(offline_live.url + "/")
    load_sample(page, 2)
    page.evaluate(START_SAMPLER)
    send(page, "What is the hardest part?", mode="chat")

    # While streaming: aria-busy on the answer, a caret, Stop enabled.
    page.wait_for_function(f"() => {{ const a = {LAST_ANSWER}; return a && a.querySelector('.msg-text').textContent.length > 40; }}")
    streaming = page.evaluate(f"() => {{ const a = {LAST_ANSWER}; return [a.dataset.status, a.getAttribute('aria-busy'), a.querySelectorAll('.caret').length]; }}")
    assert streaming == ["streaming", "true", 1]
    assert page.is_enabled("#stop") and page.is_disabled("#send")
    page.screenshot(path=str(artifacts / "mid-stream.png"), full_page=True)

    assert wait_answer_status(page, "complete", "error", "stopped") == "complete"
    page.wait_for_function("() => window.__samplerDone === true")
    lengths = page.evaluate("() => window.__lengths")
    distinct = sorted(set(lengths))
    assert len(distinct) >= 10, f"the answer grew in only {len(distinct)} steps: {distinct[:20]}"
    assert lengths == sorted(lengths), "the answer's text shrank while streaming"
    saved = page.evaluate("() => JSON.parse(localStorage.getItem('scenario-agent:v1')).messages.at(-1).content")
    assert distinct[-1] <= len(saved)
    # The finished answer shows every word received, rendered as markdown (markers gone).
    assert letters(answer_text(page)) == letters(saved)
    if "**" in saved:
        assert page.locator("#transcript .msg-assistant:last-of-type .msg-text strong").count() >= 1
    # Done: no caret, not busy.
    assert page.get_attribute("#transcript .msg-assistant:last-of-type", "aria-busy") is None
    assert page.locator("#transcript .msg-assistant:last-of-type .caret").count() == 0

    # Inspector: every frame listed, start first and done last, timings filled in.
    page.wait_for_function("() => document.querySelectorAll('#frames-body tr').length > 10")
    events = page.eval_on_selector_all("#frames-body tr td:nth-child(3)", "tds => tds.map(td => td.textContent)")
    assert events[0] == "start" and events[-1] == "done"
    assert events.count("chat") >= 10
    for cell in ("#stat-s-headers", "#stat-s-ttft", "#stat-s-tps", "#stat-s-total"):
        assert page.inner_text(cell) != "–", cell
    ink = canvas_ink(page)
    assert ink["ticks"] >= len(events)
    assert ink["inked"] >= 10, f"timeline looks blank: {ink}"

    # Compare with buffered: a second lane, and its first text comes later.
    page.click("#compare")
    page.wait_for_function("() => document.getElementById('stat-b-total').textContent !== '–'", timeout=60_000)
    page.wait_for_function("() => document.getElementById('timeline').dataset.lanes === '2'")
    streamed_ttft = int(page.inner_text("#stat-s-ttft").split()[0])
    buffered_ttft = int(page.inner_text("#stat-b-ttft").split()[0])
    assert buffered_ttft > streamed_ttft
    assert canvas_ink(page, lane=1)["inked"] >= 1
    page.screenshot(path=str(artifacts / "inspector-compare.png"), full_page=True)
    assert page.recorder.csp_violations() == []


def test_stop_keeps_the_partial_answer_and_closes_the_server_stream(offline_live: Any, open_page: Any) -> None:
    page = open_page(offline_live.url + "/")
    load_sample(page)
    send(page, "Explain this scenario", mode="explain")
    page.wait_for_function(f"() => {{ const a = {LAST_ANSWER}; return a && a.querySelector('.msg-text').textContent.length > 30; }}")
    assert offline_live.health()["active_streams"] >= 1
    page.keyboard.press("Escape")
    assert wait_answer_status(page, "stopped", "complete", "error") == "stopped"
    partial = answer_text(page)
    assert len(partial) > 30
    assert page.inner_text("#transcript .msg-assistant:last-of-type .msg-status") == "Stopped"
    assert page.is_enabled("#send") and page.is_disabled("#stop")
    assert offline_live.wait_no_streams(timeout=10) == 0
    # The text did not change after the stop, and it is kept in storage.
    # (The saved text is the markdown source; the page shows it rendered: compare the letters.)
    page.wait_for_function(
        "(t) => ((JSON.parse(localStorage.getItem('scenario-agent:v1')).messages.at(-1) || {}).content || '').replace(/[^A-Za-z]/g, '') === t",
        arg=letters(partial),
    )
    assert answer_text(page) == partial

    # The Stop button works the same way.
    send(page, "Explain it again", mode="explain")
    page.wait_for_function(f"() => {{ const a = {LAST_ANSWER}; return a && a.querySelector('.msg-text').textContent.length > 10; }}")
    page.click("#stop")
    assert wait_answer_status(page, "stopped", "complete", "error") == "stopped"
    assert offline_live.wait_no_streams(timeout=10) == 0


def test_the_json_preview_shows_while_a_modify_patch_forms(offline_live: Any, open_page: Any) -> None:
    # At the offline model's normal pace (the preview renders once per animation frame: a block
    # that arrives within one frame, as on the 2 ms test pace under load, is never drawn).
    page = open_page(offline_live.url + "/")
    load_sample(page)
    page.evaluate(
        """() => {
            window.__sawLive = false;
            const wrap = document.getElementById('live-wrap');
            new MutationObserver(() => { if (!wrap.hidden && document.getElementById('live-json').textContent) window.__sawLive = true; })
              .observe(wrap, {attributes: true, childList: true, subtree: true, characterData: true});
        }"""
    )
    send(page, "rename it to Blue Harbor Drill", mode="modify")
    assert wait_answer_status(page, "complete", "error", "stopped") == "complete"
    assert page.evaluate("() => window.__sawLive") is True, "the JSON preview never showed while the scenario formed"
    assert page.locator("#live-wrap").is_hidden()


def test_modify_updates_highlights_undoes_and_survives_reload(fast_live: Any, open_page: Any) -> None:
    page = open_page(fast_live.url + "/")
    original = load_sample(page)

    # Shift+Enter makes a new line instead of sending.
    page.fill("#composer-input", "rename it")
    page.press("#composer-input", "Shift+Enter")
    assert page.input_value("#composer-input") == "rename it\n"
    assert page.locator("#transcript .msg").count() == 0

    send(page, "rename it to Blue Harbor Drill", mode="modify")
    page.wait_for_function("() => document.querySelector('#scenario-view .scn-title').textContent === 'Blue Harbor Drill'", timeout=60_000)
    assert wait_answer_status(page, "complete", "error", "stopped") == "complete"
    assert page.locator("#live-wrap").is_hidden()
    # The change is highlighted and described.
    assert page.locator("#scenario-view .scn-title.changed").count() == 1
    assert "title" in page.inner_text("#changes-summary")
    assert page.inner_text("#version-label") == "Version 2 of 2"

    page.click("#undo")
    page.wait_for_function("(t) => document.querySelector('#scenario-view .scn-title').textContent === t", arg=original)
    assert page.inner_text("#version-label") == "Version 1 of 2"
    assert page.is_enabled("#redo")

    page.reload()
    wait_ready(page)
    assert page.inner_text("#scenario-view .scn-title") == original
    assert page.inner_text("#version-label") == "Version 1 of 2"
    assert page.locator("#transcript .msg").count() == 2  # the conversation came back too
    page.click("#redo")
    page.wait_for_function("() => document.querySelector('#scenario-view .scn-title').textContent === 'Blue Harbor Drill'")

    # "New conversation" clears the chat, not the scenario.
    page.click("#new-conversation")
    page.wait_for_function("() => document.querySelectorAll('#transcript .msg').length === 0")
    assert page.inner_text("#scenario-view .scn-title") == "Blue Harbor Drill"


def test_json_editor_says_what_is_wrong_and_where(fast_live: Any, open_page: Any) -> None:
    page = open_page(fast_live.url + "/")
    load_sample(page)
    page.click("#tab-json")
    page.fill("#json-editor", '{\n  "title": "x",\n  "roles": [1, 2,]\n}')
    page.wait_for_function("() => document.getElementById('json-status').textContent.includes('line 3, column 18')")
    assert page.is_disabled("#apply-json")
    page.fill("#json-editor", '{\n  "summary": "no title"\n}')
    page.wait_for_function("() => document.getElementById('json-status').textContent.includes('title is required')")
    assert page.is_disabled("#apply-json")
    page.fill("#json-editor", '{"title": "Edited by hand", "summary": "short"}')
    page.wait_for_function("() => !document.getElementById('apply-json').disabled")
    page.click("#apply-json")
    page.click("#tab-view")
    page.wait_for_function("() => document.querySelector('#scenario-view .scn-title').textContent === 'Edited by hand'")
    assert page.inner_text("#version-label") == "Version 2 of 2"


def test_upstream_error_shows_in_place_and_retry_works(fake_live: tuple[Any, Any], open_page: Any) -> None:
    from tests.support.servers import Plan

    fake, live = fake_live
    fake.push(Plan(status=503), Plan(tokens=["Recovered", " after", " a", " retry."], interval_ms=20))
    page = open_page(live.url + "/")
    page.wait_for_function("() => document.getElementById('model-name').textContent.includes('fake-model')")
    assert page.locator("#offline-note").is_hidden()
    send(page, "hello there", mode="chat")
    assert wait_answer_status(page, "error", "complete") == "error"
    error_box = page.locator("#transcript .msg-assistant:last-of-type .msg-error")
    assert error_box.is_visible()
    assert len(error_box.locator(".msg-error-text").inner_text()) > 10
    retry = error_box.locator("button.retry")
    assert retry.is_visible()
    retry.click()
    page.wait_for_function("() => document.querySelectorAll('#transcript .msg-assistant').length === 2")
    assert wait_answer_status(page, "complete", "error") == "complete"
    assert answer_text(page) == "Recovered after a retry."
    # The failed answer is still there, saying it was retried.
    first = page.locator("#transcript .msg-assistant").first
    assert first.get_attribute("data-status") == "error"
    assert "Retried below" in first.inner_text()
    # Only one user message: the retry re-sent the same one.
    assert page.locator("#transcript .msg-user").count() == 1
    assert "hello there" in str(fake.requests[-1]["messages"])


def test_model_text_is_never_html(fake_live: tuple[Any, Any], open_page: Any) -> None:
    from tests.support.servers import Plan

    fake, live = fake_live
    tokens = ["Hello", " " + XSS, " <script>window.__pwned=1</script>", " <b>bold?</b>", " bye"]
    fake.push(Plan(tokens=tokens, interval_ms=15))
    page = open_page(live.url + "/")
    send(page, "say something", mode="chat")
    assert wait_answer_status(page, "complete", "error") == "complete"
    text = answer_text(page)
    assert XSS in text and "<script>" in text and "<b>bold?</b>" in text
    assert page.locator("#transcript img, #transcript script, #transcript b").count() == 0
    assert page.locator("#frames-body img").count() == 0
    assert page.evaluate("() => window.__pwned === undefined")
    # An onerror handler would have fired by now; make sure of it with one more frame.
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => setTimeout(r, 50)))")
    assert page.recorder.dialogs == []
    # After a reload (text comes back from localStorage) it is still text.
    page.reload()
    wait_ready(page)
    assert XSS in answer_text(page)
    assert page.locator("#transcript img").count() == 0
    assert page.recorder.dialogs == []


def test_no_horizontal_scroll_at_360px(fast_live: Any, open_page: Any, artifacts: Any) -> None:
    page = open_page(fast_live.url + "/", viewport={"width": 360, "height": 740}, device_scale_factor=2, is_mobile=True, has_touch=True)
    load_sample(page)
    send(page, "rename it to A Very Long Scenario Title That Should Wrap Nicely On Small Screens", mode="modify")
    assert wait_answer_status(page, "complete", "error", timeout=60_000) == "complete"
    overflow = "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth, document.body.scrollWidth]"
    sw, cw, bw = page.evaluate(overflow)
    assert sw <= cw and bw <= cw, f"horizontal scroll at 360 px: scrollWidth {sw}/{bw} > {cw}"
    page.screenshot(path=str(artifacts / "mobile-360.png"), full_page=True)
    page.click("#tab-json")
    sw, cw, bw = page.evaluate(overflow)
    assert sw <= cw and bw <= cw
    # Every control is reachable: the composer and the Send button are on screen width.
    box = page.locator("#send").bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= 360


def test_access_token_is_asked_once_and_sent(open_page: Any) -> None:
    from tests.support.servers import LiveApp

    with LiveApp({"APP_ACCESS_TOKEN": "s3cret-token", "OFFLINE_TOKEN_DELAY_MS": "2"}) as live:
        page = open_page(live.url + "/")
        send(page, "hello", mode="chat")
        page.wait_for_selector("#token-dialog[open]")
        page.fill("#token-input", "wrong-token")
        page.click("#token-dialog button[type=submit]")
        # Refused: asked again, saying so.
        page.wait_for_function("() => document.getElementById('token-dialog').open && !document.getElementById('token-error').hidden")
        page.fill("#token-input", "s3cret-token")
        page.click("#token-dialog button[type=submit]")
        assert wait_answer_status(page, "complete", "error") == "complete"
        assert page.evaluate("() => sessionStorage.getItem('scenario-agent:token')") == "s3cret-token"
        assert page.evaluate("() => localStorage.getItem('scenario-agent:v1').includes('s3cret')") is False
        # The next request goes straight through.
        send(page, "and again", mode="chat")
        assert wait_answer_status(page, "complete", "error") == "complete"
        assert page.locator("#token-dialog[open]").count() == 0
        assert page.locator("#transcript .msg-assistant").count() == 2
        # Without the header the API refuses; the page's header is what let it through.
        r = httpx.post(live.url + "/api/agent/scenario", json={"message": "hi", "mode": "chat"})
        assert r.status_code == 401
