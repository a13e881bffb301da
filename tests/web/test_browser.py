"""Real-browser tests: Playwright drives Debian's Chromium against ``asyncflow ui``.

They need ``/usr/bin/chromium`` (``apt-get install -y chromium``; ``.ci/run``
installs it) and the ``playwright`` package (no browser download: Playwright
is pointed at Debian's build; ``ASYNCFLOW_TEST_CHROMIUM`` names another
binary). Without them they are skipped, loudly: the skip reason names them,
and the end of the test session says so again (see conftest.py).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from tests.fixtures import Child
from tests.web.pipeline import SCRIPT

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = Path(os.environ.get("ASYNCFLOW_TEST_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--no-first-run",
]
BROWSER_TESTS = (
    "test_browser_clicks_from_the_runs_to_a_run_and_a_task",
    "test_browser_page_of_a_live_run_updates_itself",
)


def why_not() -> str | None:
    """Why the browser tests cannot run here; None when they can."""
    names = ", ".join(BROWSER_TESTS)
    if not CHROMIUM.is_file():
        return (
            f"NOT RUN: the real-browser tests ({names}) need Chromium at {CHROMIUM}: "
            "install it with `apt-get install -y chromium`"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return (
            f"NOT RUN: the real-browser tests ({names}) need the playwright package: "
            "pip install -e '.[dev]'"
        )
    return None


pytestmark = pytest.mark.skipif(why_not() is not None, reason=why_not() or "")


@pytest.fixture
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


def serve(journal: Path, cwd: Path) -> tuple[Child, str]:
    """``asyncflow ui`` on a free port of 127.0.0.1; the child and its address."""
    child = Child("ui", "--journal", str(journal), "--port", "0", cwd=cwd)
    try:
        return child, child.wait_for("ui.serving")["url"]
    except BaseException:
        child.kill()
        raise


def watch(page: Any) -> list[str]:
    """What went wrong in the page: dialogs (a script that ran) and console errors."""
    problems: list[str] = []

    def on_dialog(dialog: Any) -> None:
        problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    return problems


def test_browser_clicks_from_the_runs_to_a_run_and_a_task(
    browser: Browser, journal: Path, tmp_path: Path
) -> None:
    """Runs page -> click the run -> click a task: what a person sees, screenshots saved."""
    from playwright.sync_api import expect

    child, url = serve(journal, tmp_path)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        problems = watch(page)
        page.goto(url)
        expect(page.locator("h1")).to_have_text("Runs")
        expect(page.locator("tr.run-row")).to_have_count(1)
        expect(page.locator("tr.run-row")).to_contain_text("Report_2026-11-23_")
        page.screenshot(path=tmp_path / "runs.png", full_page=True)

        page.locator("tr.run-row a.rid").click()
        expect(page.locator("h1")).to_contain_text("Run ")
        expect(page.locator("tr.task-row")).to_have_count(3)
        expect(page.locator("figure.graph svg rect.s-failed")).to_have_count(1)
        expect(page.locator("figure.graph svg rect.s-success")).to_have_count(2)
        flaky = page.locator("tr.task-row", has_text="Flaky_2026-11-23_")
        expect(flaky.locator("td.num").first).to_have_text("2")  # attempts
        page.screenshot(path=tmp_path / "run.png", full_page=True)

        page.locator("tr.task-row a", has_text="Broken_2026-11-23_").click()
        expect(page.locator("h1")).to_contain_text("Task Broken_2026-11-23_")
        expect(page.locator("dl.facts")).to_contain_text(SCRIPT)  # shown as text
        page.locator("details.error summary").click()
        traceback = page.locator("pre.traceback")
        expect(traceback).to_be_visible()
        expect(traceback).to_contain_text(f"ValueError: bad row {SCRIPT}")
        page.screenshot(path=tmp_path / "task.png", full_page=True)

        page.fill("input[name=q]", "flaky")
        page.press("input[name=q]", "Enter")
        expect(page.locator("tr.found-row")).to_have_count(1)
        expect(page.locator("tr.found-row")).to_contain_text("Flaky_2026-11-23_")
        assert problems == []  # no script from the journal ran; the page's own loaded
    finally:
        child.kill()
    for name in ("runs.png", "run.png", "task.png"):
        assert (tmp_path / name).stat().st_size > 10_000, name


def test_browser_page_of_a_live_run_updates_itself(browser: Browser, tmp_path: Path) -> None:
    """A run of another process going on: its page turns to success without a reload."""
    from playwright.sync_api import expect

    path, gate = tmp_path / "journal.db", tmp_path / "go"
    run = Child("run", "tests.web.pipeline:Gated", "--path", str(gate), "--journal", str(path),
                cwd=tmp_path)  # fmt: skip
    child: Child | None = None
    try:
        run.wait_for("task.start")
        child, url = serve(path, tmp_path)
        run_id = _running_run(url)
        page = browser.new_page()
        problems = watch(page)
        page.goto(f"{url}runs/{run_id}")
        badge = page.locator(".heading .badge")
        expect(badge).to_have_text("running")
        expect(page.locator("main")).to_have_attribute("data-live", "1")
        navigations: list[str] = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url))
        gate.touch()
        expect(badge).to_have_text("success", timeout=15_000)
        expect(page.locator("main")).not_to_have_attribute("data-live", "1")
        expect(page.locator("tr.task-row", has_text="Gated_")).to_contain_text("success")
        assert navigations == []  # refreshed in place, not reloaded
        assert problems == []
        page.screenshot(path=tmp_path / "live.png", full_page=True)
        assert run.finish() == 0
    finally:
        run.kill()
        if child is not None:
            child.kill()


def _running_run(url: str) -> str:
    """The id of the journal's run, once its running attempt is written (within 50 ms)."""
    deadline = time.monotonic() + 10
    while True:
        with urllib.request.urlopen(f"{url}api/runs", timeout=10) as response:
            runs = json.load(response)["runs"]
        if runs and runs[0]["counts"].get("running"):
            return str(runs[0]["run_id"])
        assert time.monotonic() < deadline, f"no running attempt in {runs}"
        time.sleep(0.02)
