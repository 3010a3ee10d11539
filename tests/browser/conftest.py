"""Browser tests: the real page in Debian's Chromium, driven by Playwright's sync API.

No pytest-playwright plugin and no downloaded browsers: Chromium is /usr/bin/chromium
(Debian package `chromium`), overridable with CHROMIUM_PATH. Without it the tests
are skipped locally; under CI (CI=true) a missing browser is an error, so a green
run never hides it.

Fixtures
    browser        one Chromium per test module
    offline_live   the app on the offline model, tokens every 20 ms (LiveApp)
    fast_live      the same with 2 ms tokens, where pacing does not matter
    resume_live    40 ms tokens and a detached grace of 15 s: runs can be joined again
    open_page      open_page(url, **context options) -> Page in a fresh context, with
                   console/CSP/dialog recorders; checked for CSP violations at teardown
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.browser.pagehelpers import wait_ready

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--disable-dev-shm-usage",
]

# Records what the page reports, before any of its own scripts run. Playwright
# injects this over the DevTools protocol, so the page's CSP does not apply to it.
RECORDER = """
(() => {
  window.__cspViolations = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__cspViolations.push({directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample});
  });
})();
"""


def chromium_path() -> str | None:
    explicit = os.environ.get("CHROMIUM_PATH")
    if explicit:
        return explicit
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(candidate).exists():
            return candidate
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module scope, not session: Playwright's sync API keeps an asyncio loop running
    # in the main thread while it is open, which would break later tests that call
    # asyncio.run(). Closing it at the end of each browser module gives the loop back.
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover
        if os.environ.get("CI"):
            raise
        pytest.skip("playwright is not installed (pip install -r requirements-dev.txt)")
    path = chromium_path()
    if not path:
        if os.environ.get("CI"):
            pytest.fail("Chromium not found: install Debian's `chromium` package (or set CHROMIUM_PATH)")
        pytest.skip("Chromium not found: apt-get install chromium (or set CHROMIUM_PATH)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def offline_live() -> Iterator[Any]:
    from tests.support.servers import LiveApp

    with LiveApp({"OFFLINE_TOKEN_DELAY_MS": "20"}) as live:
        yield live


@pytest.fixture(scope="module")
def fake_live() -> Iterator[tuple[Any, Any]]:
    """A fake OpenAI-compatible upstream and the app pointed at it (SDK retries off)."""
    from tests.support.servers import FakeUpstream, LiveApp

    with FakeUpstream() as fake:
        env = {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "test-key", "OPENAI_MODEL": "fake-model", "UPSTREAM_MAX_RETRIES": "0"}
        with LiveApp(env) as live:
            yield fake, live


@pytest.fixture(scope="session")
def fast_live() -> Iterator[Any]:
    """The app on the offline model with short token delays, for tests about the
    scenario panel and layout rather than pacing."""
    from tests.support.servers import LiveApp

    with LiveApp({"OFFLINE_TOKEN_DELAY_MS": "2"}) as live:
        yield live


@pytest.fixture(scope="session")
def resume_live() -> Iterator[Any]:
    """The offline model at 40 ms a token with the server's default detached grace (15 s): a
    run whose reader went away (a reload, a cut connection) keeps going, and can be joined.
    (The other apps here use a grace of 0, so that a page closed mid-answer stops its run.)"""
    from tests.support.servers import LiveApp

    with LiveApp({"OFFLINE_TOKEN_DELAY_MS": "40", "RUN_DETACHED_GRACE_SECONDS": "15"}) as live:
        yield live


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


class PageRecorder:
    """Console messages, page errors and dialogs seen by one page."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.console: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", lambda m: self.console.append((m.type, m.text)))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)

    def csp_violations(self) -> list[Any]:
        """Violations from the page's listener, plus Chromium's console reports of them."""
        found: list[Any] = []
        try:
            found.extend(self.page.evaluate("() => window.__cspViolations || []"))
        except Exception:  # page closed or navigating
            pass
        found.extend(text for kind, text in self.console if "Content Security Policy" in text or "Content-Security-Policy" in text)
        return found

    def console_errors(self) -> list[str]:
        return [text for kind, text in self.console if kind == "error"]


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., Any]]:
    contexts: list[Any] = []
    recorders: list[PageRecorder] = []

    def _open(url: str | None = None, **context_options: Any) -> Any:
        options = {"viewport": {"width": 1280, "height": 900}, **context_options}
        context = browser.new_context(**options)
        context.set_default_timeout(20_000)
        context.add_init_script(RECORDER)
        contexts.append(context)
        page = context.new_page()
        page.recorder = PageRecorder(page)
        recorders.append(page.recorder)
        if url:
            page.goto(url)
            wait_ready(page)
        return page

    yield _open
    try:
        for rec in recorders:
            assert rec.csp_violations() == [], f"CSP violations: {rec.csp_violations()}"
            assert rec.errors == [], f"uncaught page errors: {rec.errors}"
    finally:
        for context in contexts:
            context.close()
