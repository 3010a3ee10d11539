"""axe-core on the page, at 1366x900 and at 390x844: no serious or critical violations.

axe-core comes from npm as a dev dependency of the browser tests (tests/browser/package.json;
`npm ci --prefix tests/browser` installs it, as `make test` does). It is injected before the
page's own scripts through Playwright's init script (the DevTools protocol, so the page's CSP
does not apply to it and no CSP violation is reported).

The page is checked in the states a user sees most: after a modify (messages, the answer's
actions, the change strip, a highlighted change, the inspector's frames), with the JSON editor
open, and after an answer with every kind of frame (thinking, a repair, an error); in light
and in dark mode.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.browser.pagehelpers import load_sample, send, wait_answer_status
from tests.browser.scripted import ScriptedStream

AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
SIZES = {
    "desktop": {"viewport": {"width": 1366, "height": 900}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}


# The scroll boxes (transcript, frame table) opened up and the table's sticky header let go,
# through the CSSOM (allowed by the page's CSP): else axe cannot tell the colours behind rows
# scrolled out of view, and leaves them "incomplete" instead of checking them.
UNSCROLL = """() => {
    for (const id of ['transcript', 'panel-view']) {
        const box = document.getElementById(id);
        box.style.maxHeight = 'none';
        box.style.overflow = 'visible';
    }
    const frames = document.querySelector('.frames-wrap');
    frames.style.maxHeight = 'none';
    frames.style.overflow = 'visible';
    for (const th of document.querySelectorAll('.frames th')) th.style.position = 'static';
}"""

# One answer with every kind of frame, so every row colour, the thinking block, the repair note
# and the error box are on the page.
EVERY_FRAME = [
    (0, "start", {"request_id": "scripted", "intent": "modify", "model": "scripted-model", "provider": "openai-compatible"}),
    (20, "reasoning", {"content": "Weighing the roles first."}),
    (20, "chat", {"content": "Renaming it.\n\n"}),
    (20, "scenario_delta", {"content": "```patch\n[...]"}),
    (20, "scenario_patch", {"op": {"op": "replace", "path": "/title", "value": "Wrong"}, "index": 0}),
    (20, "repair", {"attempt": 1, "reason": "/steps/40: no such step"}),
    (20, "error", {"code": "invalid_scenario", "message": "The model's edit did not apply.", "retryable": False}),
    (20, "done", {"finish_reason": "error", "usage": None, "timings": {}, "repairs": 1}),
]


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical violations, each with the rule, its help and the first targets."""
    page.evaluate(UNSCROLL)
    return page.evaluate(
        """async () => {
            const result = await axe.run(document, {resultTypes: ['violations']});
            return result.violations
                .filter((v) => v.impact === 'serious' || v.impact === 'critical')
                .map((v) => ({id: v.id, impact: v.impact, help: v.help,
                              nodes: v.nodes.slice(0, 5).map((n) => [n.target.join(' '), n.failureSummary])}));
        }"""
    )


@pytest.fixture(scope="module")
def axe_source() -> Path:
    if not AXE.exists():
        if os.environ.get("CI"):
            pytest.fail("axe-core is not installed: npm ci --prefix tests/browser")
        pytest.skip("axe-core is not installed: npm ci --prefix tests/browser")
    return AXE


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", sorted(SIZES))
def test_no_serious_or_critical_axe_violations(size: str, scheme: str, axe_source: Path, fast_live: Any, open_page: Any) -> None:
    page = open_page(None, color_scheme=scheme, **SIZES[size])
    page.context.add_init_script(path=str(axe_source))
    page.goto(fast_live.url + "/")
    page.wait_for_function("() => document.body.dataset.ready === 'true' && typeof axe === 'object'")
    load_sample(page, 1)
    send(page, "add a role for a journalist", mode="modify")
    assert wait_answer_status(page, "complete", "error", "stopped", "interrupted", timeout=60_000) == "complete"
    page.wait_for_function("() => document.querySelectorAll('#frames-body tr').length > 5")
    found = [dict(v, state="after a modify") for v in axe_violations(page)]
    page.click("#tab-json")
    found += [dict(v, state="JSON editor") for v in axe_violations(page)]
    page.click("#tab-view")
    with ScriptedStream(EVERY_FRAME) as scripted:
        scripted.route(page)
        send(page, "rename it", mode="modify")
        assert wait_answer_status(page, "complete", "error", "stopped", "interrupted") == "error"
    page.wait_for_function("() => document.querySelectorAll('#frames-body tr.frame-repair').length === 1")
    found += [dict(v, state="every frame kind") for v in axe_violations(page)]
    assert found == [], "\n".join(f"{v['state']}: {v['impact']} {v['id']}: {v['help']} {v['nodes']}" for v in found)
