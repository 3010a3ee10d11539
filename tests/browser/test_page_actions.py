"""The page for people, in Chromium: a phone that can stop an answer, answers that can be acted
on, Undo across a Create, and the small status glitches.

Phone-sized pages are 390x844 with touch (`is_mobile`, `has_touch`: `(hover: none)` and
`(pointer: coarse)` match), as a phone's browser reports itself.
"""

from __future__ import annotations

import json
from typing import Any


from tests.browser.pagehelpers import LAST_ANSWER, answer_text, load_sample, send, wait_answer_status, wait_ready
from tests.browser.scripted import ScriptedStream

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
SAVED = "() => JSON.parse(localStorage.getItem('scenario-agent:v1'))"
ANY_END = ("complete", "error", "stopped", "interrupted")


def streaming_longer_than(page: Any, n: int) -> None:
    page.wait_for_function(
        f"(n) => {{ const a = {LAST_ANSWER}; return a && a.dataset.status === 'streaming' && a.querySelector('.msg-text').textContent.length > n; }}",
        arg=n,
    )


def inside_viewport(page: Any, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    return bool(box) and box["y"] >= 0 and box["y"] + box["height"] <= size["height"] and box["x"] >= 0 and box["x"] + box["width"] <= size["width"]


# ---- the phone ------------------------------------------------------------------------


def test_on_a_phone_stop_and_the_message_box_stay_on_screen_while_an_answer_streams(offline_live: Any, open_page: Any) -> None:
    page = open_page(offline_live.url + "/", **PHONE)
    load_sample(page, 1)
    send(page, "Explain this scenario", mode="explain")
    streaming_longer_than(page, 300)
    # The answer has outgrown the transcript (which then scrolls), and the page the screen...
    page.wait_for_function("() => { const t = document.getElementById('transcript'); return t.scrollHeight > t.clientHeight + 200; }", timeout=60_000)
    assert page.evaluate(f"() => {LAST_ANSWER}.dataset.status") == "streaming"
    assert page.evaluate("() => document.documentElement.scrollHeight") > 844
    # ...yet Stop and the message box are in view and usable.
    assert inside_viewport(page, "#stop"), page.locator("#stop").bounding_box()
    assert inside_viewport(page, "#composer-input"), page.locator("#composer-input").bounding_box()
    assert page.is_enabled("#stop")
    # A reader who scrolls the page down a way still has it.
    page.mouse.wheel(0, 400)
    page.wait_for_timeout(200)
    assert inside_viewport(page, "#stop")
    page.tap("#stop")
    assert wait_answer_status(page, *ANY_END) == "stopped"
    # Not streaming: the composer is back in the flow (the full one, with the mode select).
    assert page.locator("#mode").is_visible() or page.evaluate("() => document.querySelector('.composer').getBoundingClientRect().top") > 0


def test_hints_fit_the_input_device(fast_live: Any, open_page: Any) -> None:
    desk = open_page(fast_live.url + "/")
    assert "Esc stops" in desk.inner_text("#composer-hint")
    assert desk.get_attribute("#composer-input", "aria-describedby") == "composer-hint"
    assert desk.get_attribute("#stop", "aria-keyshortcuts") == "Escape"
    phone = open_page(fast_live.url + "/", **PHONE)
    # No key a phone does not have, neither shown nor read out by a screen reader.
    assert "Esc" not in (phone.text_content("#composer-hint") or "")
    assert phone.get_attribute("#composer-input", "aria-describedby") is None
    assert phone.get_attribute("#stop", "aria-keyshortcuts") is None


def test_on_a_phone_the_inspector_frame_data_expands(fast_live: Any, open_page: Any) -> None:
    page = open_page(fast_live.url + "/", **PHONE)
    load_sample(page, 1)
    send(page, "hello", mode="chat")
    assert wait_answer_status(page, *ANY_END) == "complete"
    toggle = page.locator("#frames-body tr.frame-start .frame-toggle")
    toggle.scroll_into_view_if_needed()
    before = toggle.bounding_box()
    assert toggle.get_attribute("aria-expanded") == "false"
    clipped = page.evaluate("() => { const b = document.querySelector('#frames-body tr.frame-start .frame-toggle'); return b.scrollWidth > b.clientWidth; }")
    assert clipped, "the start frame's data fits on one line at 390 px: nothing to expand"
    toggle.tap()
    assert toggle.get_attribute("aria-expanded") == "true"
    after = toggle.bounding_box()
    assert after["height"] > 2 * before["height"], (before, after)
    whole = page.evaluate("() => { const b = document.querySelector('#frames-body tr.frame-start .frame-toggle'); return [b.scrollWidth <= b.clientWidth + 1, b.textContent]; }")
    assert whole[0] and '"request_id"' in whole[1] and '"provider"' in whole[1]
    toggle.tap()
    assert toggle.get_attribute("aria-expanded") == "false"


# ---- answers can be acted on -------------------------------------------------------------


def test_copy_an_answer_and_the_scenario_json(fast_live: Any, open_page: Any) -> None:
    page = open_page(fast_live.url + "/", permissions=["clipboard-read", "clipboard-write"])
    load_sample(page, 1)
    send(page, "hello", mode="chat")
    assert wait_answer_status(page, *ANY_END) == "complete"
    root = "#transcript .msg-assistant:last-of-type"
    page.click(f"{root} .msg-actions button.copy")
    page.wait_for_function(f"() => document.querySelector('{root} .msg-actions button.copy').textContent === 'Copied'")
    saved = page.evaluate(SAVED)["messages"][-1]["content"]
    assert page.evaluate("() => navigator.clipboard.readText()") == saved.rstrip()
    page.click("#copy-json")
    page.wait_for_function("() => document.getElementById('copy-json').textContent === 'Copied'")
    state = page.evaluate(SAVED)
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert json.loads(copied) == state["versions"][state["index"]]["scenario"]
    assert copied == json.dumps(state["versions"][state["index"]]["scenario"], indent=2, ensure_ascii=False) + "\n"


def test_regenerate_keeps_the_old_answer_reachable(fake_live: tuple[Any, Any], open_page: Any) -> None:
    from tests.support.servers import Plan

    fake, live = fake_live
    fake.push(Plan(tokens=["First", " answer."], interval_ms=10), Plan(tokens=["Second", " answer."], interval_ms=10))
    page = open_page(live.url + "/")
    send(page, "tell me something", mode="chat")
    assert wait_answer_status(page, *ANY_END) == "complete"
    root = "#transcript .msg-assistant:last-of-type"
    assert page.locator(f"{root} .variant-nav").count() == 0
    page.click(f"{root} button.regenerate")
    assert wait_answer_status(page, *ANY_END) == "complete"
    assert answer_text(page) == "Second answer."
    # The same message and history were sent again.
    first, second = fake.requests[-2]["messages"], fake.requests[-1]["messages"]
    assert first == second
    # One question, one answer, two variants of it.
    assert page.locator("#transcript .msg").count() == 2
    assert page.inner_text(f"{root} .variant-count") == "2/2"
    page.click(f"{root} .variant-prev")
    assert page.inner_text(f"{root} .variant-count") == "1/2"
    assert answer_text(page) == "First answer."
    assert page.evaluate(SAVED)["messages"][-1]["content"] == "First answer."
    page.reload()
    wait_ready(page)
    assert answer_text(page) == "First answer."
    page.click(f"{root} .variant-next")
    assert answer_text(page) == "Second answer."
    assert page.inner_text(f"{root} .variant-count") == "2/2"
    assert page.is_disabled(f"{root} .variant-next")


def test_retry_a_stopped_answer(offline_live: Any, open_page: Any) -> None:
    page = open_page(offline_live.url + "/")
    load_sample(page, 1)
    send(page, "Explain this scenario", mode="explain")
    streaming_longer_than(page, 40)
    page.click("#stop")
    assert wait_answer_status(page, *ANY_END) == "stopped"
    stopped = "#transcript .msg-assistant:last-of-type"
    assert page.locator(f"{stopped} .msg-actions button.retry").is_visible()
    assert page.locator(f"{stopped} .msg-actions button.regenerate").count() == 0
    page.click(f"{stopped} .msg-actions button.retry")
    page.wait_for_function("() => document.querySelectorAll('#transcript .msg-assistant').length === 2")
    streaming_longer_than(page, 10)
    first = page.locator("#transcript .msg-assistant").first
    assert "Retried below." in first.inner_text()
    assert first.locator(".msg-actions button.retry").count() == 0
    assert page.locator("#transcript .msg-user").count() == 1
    page.click("#stop")
    assert wait_answer_status(page, *ANY_END) == "stopped"


def test_edit_the_last_message_and_send_it_again(fake_live: tuple[Any, Any], open_page: Any) -> None:
    from tests.support.servers import Plan

    fake, live = fake_live
    fake.push(Plan(tokens=["About", " cats."]), Plan(tokens=["About", " dogs."]))
    page = open_page(live.url + "/")
    send(page, "tell me about cats", mode="chat")
    assert wait_answer_status(page, *ANY_END) == "complete"
    user = page.locator("#transcript .msg-user").last
    user.locator("button.edit").click()
    box = user.locator("textarea.msg-edit-input")
    assert box.input_value() == "tell me about cats"
    box.fill("tell me about dogs")
    box.press("Enter")
    assert wait_answer_status(page, *ANY_END) == "complete"
    # The question is replaced, and so is its answer.
    assert page.locator("#transcript .msg-user").all_inner_texts()[0].endswith("tell me about dogs\nEdit") or "tell me about dogs" in page.locator("#transcript .msg-user").inner_text()
    assert page.locator("#transcript .msg").count() == 2
    assert answer_text(page) == "About dogs."
    sent = fake.requests[-1]["messages"]
    assert sent[-1]["content"].endswith("tell me about dogs") or "tell me about dogs" in sent[-1]["content"]
    assert "cats" not in json.dumps(sent), "the replaced question is not sent as history"
    # Only the last question has Edit; Escape cancels an edit.
    page.locator("#transcript .msg-user").last.locator("button.edit").click()
    page.locator("#transcript .msg-user textarea.msg-edit-input").press("Escape")
    assert page.locator("#transcript textarea.msg-edit-input").count() == 0


def test_new_conversation_can_be_undone(fast_live: Any, open_page: Any) -> None:
    page = open_page(fast_live.url + "/")
    for text in ("hello", "and again"):
        send(page, text, mode="chat")
        assert wait_answer_status(page, *ANY_END) == "complete"
    page.click("#new-conversation")
    page.wait_for_function("() => document.querySelectorAll('#transcript .msg').length === 0")
    toast = page.locator("#toast")
    assert toast.is_visible()
    assert "4 messages" in page.inner_text("#toast-text")
    page.click("#toast-action")
    page.wait_for_function("() => document.querySelectorAll('#transcript .msg').length === 4")
    assert toast.is_hidden()
    assert len(page.evaluate(SAVED)["messages"]) == 4
    # Sending a new message ends the chance to undo (the two conversations would mix).
    page.click("#new-conversation")
    assert toast.is_visible()
    send(page, "fresh start", mode="chat")
    assert toast.is_hidden()


def test_ctrl_z_and_shift_ctrl_z_undo_and_redo_the_scenario(fast_live: Any, open_page: Any) -> None:
    page = open_page(fast_live.url + "/")
    original = load_sample(page, 1)
    send(page, "rename it to Blue Harbor Drill", mode="modify")
    assert wait_answer_status(page, *ANY_END, timeout=60_000) == "complete"
    assert page.inner_text("#version-label") == "Version 2 of 2"
    # In the message box, Ctrl+Z is the text's own undo.
    page.focus("#composer-input")
    page.keyboard.press("Control+z")
    assert page.inner_text("#version-label") == "Version 2 of 2"
    page.focus("#undo")
    page.keyboard.press("Control+z")
    page.wait_for_function("(t) => document.querySelector('#scenario-view .scn-title').textContent === t", arg=original)
    assert page.inner_text("#version-label") == "Version 1 of 2"
    page.keyboard.press("Control+Shift+Z")
    page.wait_for_function("() => document.querySelector('#scenario-view .scn-title').textContent === 'Blue Harbor Drill'")
    page.keyboard.press("Meta+z")
    assert page.inner_text("#version-label") == "Version 1 of 2"
    page.keyboard.press("Meta+Shift+Z")
    assert page.inner_text("#version-label") == "Version 2 of 2"


# ---- Undo across a Create ------------------------------------------------------------------


def test_undo_across_a_create_says_so_in_one_line_and_highlights_nothing(fast_live: Any, open_page: Any) -> None:
    page = open_page(fast_live.url + "/")
    load_sample(page, 1)
    for ask in ("rename it to Code Dark Drill", "add a role for a journalist", "make it harder"):
        send(page, ask, mode="modify")
        assert wait_answer_status(page, *ANY_END, timeout=60_000) == "complete"
    before_create = page.evaluate(SAVED)
    n = len(before_create["versions"])
    title = before_create["versions"][-1]["scenario"]["title"]
    send(page, "a fire drill in a school", mode="create")
    assert wait_answer_status(page, *ANY_END, timeout=60_000) == "complete"
    assert page.inner_text("#version-label") == f"Version {n + 1} of {n + 1}"
    # The new scenario is not a 45-item edit of the old one.
    assert page.locator("#changes-summary").is_hidden()
    assert page.locator("#scenario-view .changed").count() == 0
    assert "a different scenario" in page.inner_text("#scenario-notice")

    page.click("#undo")
    page.wait_for_function("(t) => document.querySelector('#scenario-view .scn-title').textContent === t", arg=title)
    notice = page.inner_text("#scenario-notice")
    assert notice.startswith(f"Back to “{title[:12]}") and f"(version {n})" in notice, notice
    assert "\n" not in notice
    assert page.locator("#changes-summary").is_hidden()
    assert page.locator("#scenario-view .changed").count() == 0
    # Undo between edits of one another still highlights what changed.
    page.click("#undo")
    page.wait_for_function("() => document.querySelectorAll('#scenario-view .changed').length > 0")
    assert page.locator("#changes-summary").is_visible()
    assert page.inner_text("#scenario-notice") == f"Back to version {n - 1}."


# ---- status glitches ----------------------------------------------------------------------


def test_the_model_dot_and_the_health_badge_agree(fast_live: Any, open_page: Any) -> None:
    page = open_page()
    body = {"status": "degraded", "provider": "openai-compatible", "model": "gpt-x", "active_streams": 0, "version": "x"}
    page.route("**/api/agent/scenario/stream/health", lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(body)))
    page.goto(fast_live.url + "/")
    wait_ready(page)
    page.wait_for_function("() => document.getElementById('health-status').dataset.status === 'degraded'")
    colours = page.evaluate(
        """() => [getComputedStyle(document.querySelector('.model-dot')).backgroundColor,
                  getComputedStyle(document.getElementById('health-status')).color]"""
    )
    assert colours[0] == colours[1], f"dot {colours[0]} beside badge {colours[1]}"
    assert colours[0] != "rgb(22, 163, 74)", "a green dot beside Degraded"


def test_the_sample_box_lets_go_of_a_renamed_or_replaced_sample(fast_live: Any, open_page: Any) -> None:
    page = open_page(fast_live.url + "/")
    load_sample(page, 1)
    file = page.input_value("#sample-select")
    assert file
    send(page, "rename it to Blue Harbor Drill", mode="modify")
    assert wait_answer_status(page, *ANY_END, timeout=60_000) == "complete"
    assert page.input_value("#sample-select") == ""
    page.click("#undo")
    assert page.input_value("#sample-select") == file, "back on the sample as loaded"
    page.click("#tab-json")
    page.fill("#json-editor", '{"title": "Hand made", "summary": "short"}')
    page.wait_for_function("() => !document.getElementById('apply-json').disabled")
    page.click("#apply-json")
    assert page.input_value("#sample-select") == ""
    page.reload()
    wait_ready(page)
    page.wait_for_function("() => document.querySelectorAll('#sample-select option').length > 1")
    assert page.input_value("#sample-select") == ""


def test_after_a_modify_the_whole_scenario_updated_strip_is_in_view(fast_live: Any, open_page: Any) -> None:
    sample = json.loads(open("static/samples/hospital-ransomware.json").read())
    renamed = {**sample, "title": "Blue Harbor Drill"}
    steps = [(0, "start", {"request_id": "scripted", "intent": "modify", "model": "scripted-model", "provider": "openai-compatible"})]
    steps += [(5, "chat", {"content": f"Line {i} of a long explanation of the change.\n\n"}) for i in range(40)]
    steps += [(400, "scenario", {"scenario": renamed, "changes": [{"op": "replace", "path": "/title"}]})]
    steps += [(300, "done", {"finish_reason": "stop", "usage": None, "timings": {}, "repairs": 0})]
    with ScriptedStream(steps) as scripted:
        page = open_page(fast_live.url + "/", viewport={"width": 1280, "height": 700})
        scripted.route(page)
        load_sample(page, 1)
        send(page, "rename it", mode="modify")
        assert wait_answer_status(page, *ANY_END) == "complete"
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    inside = page.evaluate(
        """() => { const box = document.getElementById('transcript').getBoundingClientRect();
                   const strip = document.querySelector('#transcript .msg-assistant:last-of-type .msg-change').getBoundingClientRect();
                   return [strip.top >= box.top - 1, strip.bottom <= box.bottom + 1, strip.bottom, box.bottom]; }"""
    )
    assert inside[0] and inside[1], f"the strip is cut off: bottom {inside[2]} below {inside[3]}"
