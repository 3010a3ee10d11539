"""The streaming lab panel (static/lab.js) in Chromium, against the app on the offline model.

One run of the lab: the real stream and the four broken paths at once, then the rows, their
figures and the explanations are read back from the page. The offline model at 4 ms a token
makes the `create` answer last about 2 s, long enough for the differences to be unmistakable.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from tests.browser.pagehelpers import wait_ready

MODES = ["real", "blocking", "accumulate", "buffer-4k", "gzip"]


@pytest.fixture(scope="module")
def lab_live() -> Iterator[Any]:
    from tests.support.servers import LiveApp

    with LiveApp({"OFFLINE_TOKEN_DELAY_MS": "4"}) as live:
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
    assert "EventStreamResponse._write_events" in explanations["real"]
    assert "OpenAICompatible.stream" in explanations["blocking"]
    assert "Run.events" in explanations["accumulate"]
    assert "X-Accel-Buffering: no" in explanations["buffer-4k"] and "STREAM_HEADERS" in explanations["buffer-4k"]
    assert "create_app" in explanations["gzip"]
    assert page.is_visible("#lab-explanations .lab-explanation[data-mode=gzip]")

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
