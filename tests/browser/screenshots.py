"""Screenshots of the page, regenerated from the real app on the offline model.

    python -m tests.browser.screenshots OUTDIR [--readme docs/screenshot.png]

At 1366x900 (desktop) and 390x844 (a phone, with touch), each a PNG of the screen as a user
sees it:

    lab-midrun-{size}.png      the Streaming lab while its rows are still running
    streaming-{size}.png       an answer streaming (on the phone: Stop in view)
    answer-actions-{size}.png  a finished answer and what can be done with it (Copy,
                               Regenerate, "2/2" between two answers, Edit on the question)
    undo-create-{size}.png     Undo across a Create: one line, nothing highlighted

and the README's screenshot (a modify just applied: the answer with its change strip, the
highlighted change in the scenario), OUTDIR/screenshot.png unless --readme names another path.
Needs Chromium (CHROMIUM_PATH or Debian's /usr/bin/chromium) and Playwright, like the
browser tests; tests/browser/test_screenshots.py runs it so it keeps working.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tests.browser.conftest import CHROMIUM_ARGS, chromium_path
from tests.browser.pagehelpers import LAST_ANSWER, load_sample, send, wait_answer_status, wait_ready

SIZES = {
    "desktop": {"viewport": {"width": 1366, "height": 900}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}
ENDS = ("complete", "error", "stopped", "interrupted")

ANSWER_MS = 60_000  # how long an answer may take on a slow, shared machine


def ask(page: Any, text: str, mode: str) -> None:
    """Send `text` and wait until its answer has ended (done, stopped or failed)."""
    send(page, text, mode=mode)
    wait_answer_status(page, *ENDS, timeout=ANSWER_MS)


def settle(page: Any) -> None:
    """Two animation frames: what the page schedules per frame (scrolls, the canvas) is drawn."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def lab_midrun(page: Any, path: Path) -> None:
    page.locator("#lab-panel").scroll_into_view_if_needed()
    page.evaluate("() => document.getElementById('lab-panel').scrollIntoView({block: 'start'})")
    page.click("#lab-run")
    # Mid-run: the run has begun and not ended; the real stream's row has drawn some reads
    # (given up to 5 s for them: a lab that draws its rows only at the end shows "running").
    page.wait_for_function("() => document.getElementById('lab-panel').dataset.state === 'running'")
    try:
        page.wait_for_function(
            "() => document.querySelectorAll('#lab-rows .lab-read').length > 20 || document.getElementById('lab-panel').dataset.state !== 'running'",
            timeout=5_000,
        )
    except Exception:  # noqa: BLE001 (a Playwright timeout: take the shot as it is)
        pass
    settle(page)
    page.screenshot(path=str(path))
    if page.is_enabled("#lab-stop"):
        page.click("#lab-stop")


def streaming(page: Any, path: Path) -> None:
    load_sample(page, 1)
    send(page, "Explain this scenario", mode="explain")
    page.wait_for_function(
        "() => { const t = document.getElementById('transcript'); return t.scrollHeight > t.clientHeight + 150; }", timeout=60_000
    )
    settle(page)
    page.screenshot(path=str(path))
    page.click("#stop")
    wait_answer_status(page, *ENDS)


def answer_actions(page: Any, path: Path) -> None:
    load_sample(page, 2)
    ask(page, "What is the hardest part?", "chat")
    page.click("#transcript .msg-assistant:last-of-type button.regenerate")
    wait_answer_status(page, *ENDS, timeout=ANSWER_MS)
    page.evaluate(f"() => {LAST_ANSWER}.querySelector('.msg-actions').scrollIntoView({{block: 'end'}})")
    page.focus("#transcript .msg-assistant:last-of-type button.regenerate")
    settle(page)
    page.screenshot(path=str(path))


def undo_create(page: Any, path: Path) -> None:
    load_sample(page, 1)
    ask(page, "rename it to Code Dark Drill", "modify")
    ask(page, "a fire drill in a school", "create")
    page.click("#undo")
    page.wait_for_function("() => document.getElementById('scenario-notice').textContent.startsWith('Back to')")
    page.evaluate("() => document.querySelector('.scenario-panel').scrollIntoView({block: 'start'})")
    settle(page)
    page.screenshot(path=str(path))


def readme(page: Any, path: Path) -> None:
    load_sample(page, 1)
    ask(page, "add a role for a journalist", "modify")
    page.wait_for_function("() => document.querySelector('#scenario-view .changed') !== null")
    settle(page)
    page.screenshot(path=str(path))


SHOTS = {"lab-midrun": lab_midrun, "streaming": streaming, "answer-actions": answer_actions, "undo-create": undo_create}


def take(outdir: Path, readme_path: Path | None = None) -> list[Path]:
    """Take every screenshot into `outdir`; returns the files written."""
    from playwright.sync_api import sync_playwright

    from tests.support.servers import LiveApp

    outdir.mkdir(parents=True, exist_ok=True)
    readme_path = readme_path or outdir / "screenshot.png"
    readme_path.parent.mkdir(parents=True, exist_ok=True)
    executable = chromium_path()
    if not executable:
        raise SystemExit("Chromium not found: apt-get install chromium (or set CHROMIUM_PATH)")
    written: list[Path] = []
    # 20 ms a token: an answer streams long enough to be caught mid-way; the lab at this pace
    # takes some seconds, as a learner watches it.
    with LiveApp({"OFFLINE_TOKEN_DELAY_MS": "20"}) as live, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            jobs = [(f"{name}-{size}.png", shot, size) for name, shot in SHOTS.items() for size in SIZES]
            jobs.append((str(readme_path), readme, "desktop"))
            for name, shot, size in jobs:
                context = browser.new_context(**SIZES[size])
                context.set_default_timeout(30_000)
                try:
                    page = context.new_page()
                    page.goto(live.url + "/")
                    wait_ready(page)
                    path = Path(name) if shot is readme else outdir / name
                    shot(page, path)
                    written.append(path)
                finally:
                    context.close()
        finally:
            browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.browser.screenshots", description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--readme", type=Path, default=None, help="where the README's screenshot goes (default OUTDIR/screenshot.png)")
    args = parser.parse_args(argv)
    for path in take(args.outdir, args.readme):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
