"""The streaming lab panel (static/lab.js) in Chromium, against the app on the offline model.

One run of the lab: the real stream and the four broken paths at once, then the rows, their
figures and the explanations are read back from the page. The offline model at 4 ms a token
makes the `create` answer last about 2 s, long enough for the differences to be unmistakable.
While it runs, a MutationObserver records what each row shows, so the tests see the rows drawn
as the reads arrive, and the real stream's text forming. "Drop the connection" cuts the real
stream at a frame and joins the run again with Last-Event-ID.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from tests.browser.pagehelpers import wait_ready

MODES = ["real", "blocking", "accumulate", "buffer-4k", "gzip"]


@pytest.fixture(scope="module")
def lab_live() -> Iterator[Any]:
    from tests.support.servers import LiveApp

    # A detached grace as in production: a dropped reader leaves its run going (not cancelled).
    with LiveApp({"OFFLINE_TOKEN_DELAY_MS": "4", "RUN_DETACHED_GRACE_SECONDS": "15"}) as live:
        yield live


def rows(page: Any) -> list[dict[str, Any]]:
    return page.evaluate(
        """() => [...document.querySelectorAll('#lab-rows .lab-row')].map((row) => ({
            mode: row.dataset.mode,
            state: row.dataset.state,
            reads: Number(row.dataset.reads),
            ttft: Number(row.dataset.ttft),
            gap: Number(row.dataset.gap),
            end: Number(row.dataset.end),
            ticks: row.querySelectorAll('.lab-read').length,
            first: row.querySelectorAll('.lab-first').length,
            stats: row.querySelector('.lab-stats').textContent,
            trackWidth: row.querySelector('.lab-track').getBoundingClientRect().width,
        }))"""
    )


def test_lab_panel_draws_one_row_per_mode_with_figures_and_explanations(lab_live: Any, open_page: Any) -> None:
    page = open_page(lab_live.url)
    wait_ready(page)
    page.wait_for_function("() => document.getElementById('lab-panel').dataset.ready === 'true'")
    assert page.inner_text("#lab-heading") == "Streaming lab"
    # Every broken path is offered, checked by default; the real stream always runs.
    assert page.eval_on_selector_all("input[name=lab-mode]", "bs => bs.map(b => [b.value, b.checked])") == [[m, True] for m in MODES[1:]]

    page.click("#lab-run")
    page.wait_for_function("() => ['done', 'error'].includes(document.getElementById('lab-panel').dataset.state)", timeout=60_000)
    assert page.get_attribute("#lab-panel", "data-state") == "done", page.inner_text("#lab-status")

    drawn = rows(page)
    assert [r["mode"] for r in drawn] == MODES
    by_mode = {r["mode"]: r for r in drawn}
    for r in drawn:
        assert r["state"] == "done", r
        assert r["ticks"] == r["reads"] > 0, r  # one tick per network read
        assert r["first"] == 1 and r["ttft"] > 0, r
        assert "to first text" in r["stats"] and "largest gap" in r["stats"], r
        assert r["trackWidth"] > 300, r  # the panel spans the page: the rows are readable

    real = by_mode["real"]
    # The real stream: text early, many reads, no long gap.
    assert real["ttft"] < 0.3 * real["end"], real
    assert real["reads"] > 100, real
    for mode in ("blocking", "accumulate", "gzip"):
        late = by_mode[mode]
        # The broken ones show the pause: text only near the end, one large gap.
        assert late["ttft"] > 0.7 * late["end"], late
        assert late["gap"] > 0.6 * late["end"], late
        assert late["reads"] <= 5, late
    assert by_mode["blocking"]["reads"] <= 2
    assert 3 <= by_mode["buffer-4k"]["reads"] < real["reads"] / 10
    assert "Content-Encoding: gzip" in by_mode["gzip"]["stats"]

    # Each row's explanation, naming the file and the function that avoid the fault.
    explanations = page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('#lab-explanations .lab-explanation')].map(e => [e.dataset.mode, e.innerText]))"
    )
    assert list(explanations) == MODES
    assert "EventStreamWriter.write" in explanations["real"]
    assert "OpenAICompatible.stream" in explanations["blocking"]
    assert "Run.events" in explanations["accumulate"]
    assert "X-Accel-Buffering: no" in explanations["buffer-4k"] and "STREAM_HEADERS" in explanations["buffer-4k"]
    assert "create_app" in explanations["gzip"]
    assert page.is_visible("#lab-explanations .lab-explanation[data-mode=gzip]")
    # Learner first: one plain sentence (no code, no file names) before the code readers' part.
    plain = page.evaluate(
        """() => [...document.querySelectorAll('#lab-explanations .lab-explanation')].map((e) => {
            const first = e.querySelector('dd').firstElementChild;
            return {mode: e.dataset.mode, cls: first.className, text: first.textContent, code: first.querySelectorAll('code').length};
        })"""
    )
    for p in plain:
        assert p["cls"] == "lab-plain" and p["code"] == 0, p
        assert ".py" not in p["text"] and p["text"].count(". ") == 0 and p["text"].endswith("."), p
    assert "blank screen" in next(p["text"] for p in plain if p["mode"] == "blocking")

    assert page.recorder.console_errors() == []
    assert lab_live.wait_no_streams(5) == 0


def test_lab_runs_only_the_modes_picked(lab_live: Any, open_page: Any) -> None:
    page = open_page(lab_live.url)
    page.wait_for_function("() => document.getElementById('lab-panel').dataset.ready === 'true'")
    for mode in ("accumulate", "buffer-4k", "gzip"):
        page.uncheck(f"#lab-mode-{mode}")
    page.select_option("#lab-intent", "chat")
    page.click("#lab-run")
    page.wait_for_function("() => document.getElementById('lab-panel').dataset.state === 'done'", timeout=60_000)
    assert [r["mode"] for r in rows(page)] == ["real", "blocking"]
    assert page.eval_on_selector_all("#lab-explanations .lab-explanation", "es => es.map(e => e.dataset.mode)") == ["real", "blocking"]
    assert page.recorder.console_errors() == []


# Records, at every change of the rows, what each row shows: ticks, text length, state, the span.
WATCH_ROWS = """() => {
    window.__lab = [];
    const t0 = performance.now();
    const rows = document.getElementById('lab-rows');
    const timeline = rows.closest('.lab-timeline');
    const row = (m) => rows.querySelector(`.lab-row[data-mode="${m}"]`);
    const snap = () => {
        const out = {t: performance.now() - t0, span: Number(getComputedStyle(timeline).getPropertyValue('--span'))};
        for (const m of ['real', 'blocking', 'accumulate']) {
            const r = row(m);
            const text = r && r.querySelector('.lab-text');
            out[m] = r ? {ticks: r.querySelectorAll('.lab-read').length, text: text ? text.textContent.length : 0, state: r.dataset.state} : null;
        }
        window.__lab.push(out);
    };
    new MutationObserver(snap).observe(rows, {childList: true, subtree: true, characterData: true, attributes: true});
    new MutationObserver(snap).observe(timeline, {attributes: true});
}"""


def run_and_watch(page: Any) -> list[dict[str, Any]]:
    page.evaluate(WATCH_ROWS)
    page.click("#lab-run")
    page.wait_for_function("() => ['done', 'error'].includes(document.getElementById('lab-panel').dataset.state)", timeout=60_000)
    assert page.get_attribute("#lab-panel", "data-state") == "done", page.inner_text("#lab-status")
    return page.evaluate("() => window.__lab")


def row_text(page: Any, mode: str) -> str:
    """The text a row received, without the lab's own cut and rejoin labels."""
    return page.evaluate(
        """(m) => [...document.querySelector(`#lab-rows .lab-row[data-mode="${m}"] .lab-text`).childNodes]
            .filter((n) => n.nodeType === Node.TEXT_NODE).map((n) => n.data).join('')""",
        mode,
    )


def test_rows_are_drawn_as_their_reads_arrive(lab_live: Any, open_page: Any) -> None:
    page = open_page(lab_live.url)
    page.wait_for_function("() => document.getElementById('lab-panel').dataset.ready === 'true'")
    for mode in ("buffer-4k", "gzip"):
        page.uncheck(f"#lab-mode-{mode}")
    log = run_and_watch(page)
    # The bar: the real stream's row shows at least 20 ticks before the blocking row its first.
    first_blocking = next((s for s in log if s["blocking"] and s["blocking"]["ticks"] > 0), None)
    assert first_blocking is not None and first_blocking["real"]["ticks"] >= 20, first_blocking
    # Drawn read by read while the request runs, not all at once when it ends.
    while_running = [s["real"] for s in log if s["real"] and s["real"]["state"] == "running"]
    assert len({r["ticks"] for r in while_running}) >= 20, sorted({r["ticks"] for r in while_running})[:30]
    # The real stream's text forms under its row while the blocking row is still empty ...
    text_before = {s["real"]["text"] for s in log if s["blocking"] and s["blocking"]["text"] == 0}
    assert len(text_before) >= 20 and max(text_before) > 200, sorted(text_before)[-5:]
    # ... and the blocking row's text appears when it arrives: all of it in one go.
    blocking_lengths = sorted({s["blocking"]["text"] for s in log if s["blocking"]} - {0})
    assert len(blocking_lengths) == 1, blocking_lengths
    # The shared time axis grows with the clock while the rows run.
    spans = [s["span"] for s in log if s["real"] and s["real"]["state"] == "running"]
    assert len(set(spans)) >= 3 and spans == sorted(spans), sorted(set(spans))
    # Same question, same tokens: every row ends with the same text (accumulate sends its chat
    # text as one frame ahead of the scenario it held back), as text nodes only.
    real = row_text(page, "real")
    assert len(real) > 500
    assert row_text(page, "blocking") == real
    assert sorted(row_text(page, "accumulate")) == sorted(real)
    assert page.locator("#lab-rows .lab-text *:not(.lab-text-cut)").count() == 0
    assert page.recorder.console_errors() == []
    assert lab_live.wait_no_streams(5) == 0


def test_drop_the_connection_and_rejoin_with_last_event_id(lab_live: Any, open_page: Any) -> None:
    page = open_page(lab_live.url)
    page.wait_for_function("() => document.getElementById('lab-panel').dataset.ready === 'true'")
    for mode in ("blocking", "accumulate", "buffer-4k", "gzip"):
        page.uncheck(f"#lab-mode-{mode}")
    # The uninterrupted text, for comparison.
    run_and_watch(page)
    whole = row_text(page, "real")
    joins: list[dict[str, str]] = []
    page.on("request", lambda r: "/runs/" in r.url and joins.append({"url": r.url, "method": r.method, **r.headers}))

    page.check("#lab-drop")
    page.fill("#lab-drop-frame", "30")
    page.fill("#lab-drop-wait", "600")
    run_and_watch(page)
    row = "#lab-rows .lab-row[data-mode=real]"
    assert page.get_attribute(row, "data-cut") == "30"
    assert page.get_attribute(row, "data-rejoined") == "true"
    assert page.get_attribute(row, "data-resume") == "complete", page.inner_text(f"{row} .lab-stats")
    stats = page.inner_text(f"{row} .lab-stats")
    assert "Dropped after frame 30" in stats and "none missing, none twice" in stats and "frames 31–" in stats, stats
    # One join, after frame 30, with the id of frame 30.
    assert len(joins) == 1 and joins[0]["method"] == "GET", joins
    assert joins[0]["last-event-id"].endswith("-30") and joins[0]["url"].endswith("/stream"), joins
    # On the time axis: the reads before the cut, the cut, the time away, the rejoin, then
    # the resumed reads (the first a burst of the frames made meanwhile).
    marks = page.evaluate(
        """(row) => {
            const r = document.querySelector(row);
            const t = (e) => Number(e.style.getPropertyValue('--t'));
            return {
                before: [...r.querySelectorAll('.lab-read:not(.lab-resumed)')].map(t),
                after: [...r.querySelectorAll('.lab-read.lab-resumed')].map(t),
                cut: t(r.querySelector('.lab-cut')), rejoin: t(r.querySelector('.lab-rejoin')),
                away: Number(r.querySelector('.lab-away').style.getPropertyValue('--w')),
                awayWidth: r.querySelector('.lab-away').getBoundingClientRect().width,
            };
        }""",
        row,
    )
    assert marks["before"] and marks["after"], marks
    assert max(marks["before"]) <= marks["cut"] < marks["rejoin"] <= min(marks["after"]), marks
    assert marks["away"] >= 550 and marks["awayWidth"] > 5, marks
    # The text: what came before the cut, then the rest, with nothing lost or repeated.
    assert row_text(page, "real") == whole
    assert page.inner_text(f"{row} .lab-text").count("[connection dropped after frame 30]") == 1
    assert page.locator("#lab-explanations .lab-explanation[data-mode=drop]").count() == 1
    assert page.recorder.console_errors() == []
    assert lab_live.wait_no_streams(5) == 0
