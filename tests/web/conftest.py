"""A journal holding a real run, and clients of the app over it."""

from __future__ import annotations

import datetime
import html
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp
from tests.web.pipeline import Report

import asyncflow

DAY = datetime.date(2026, 11, 23)


@pytest.fixture(scope="session")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A journal with one run of Report: Extract succeeds, Flaky succeeds on its
    retry, Broken fails with a traceback (and so Report never runs)."""
    path = tmp_path_factory.mktemp("web") / "journal.db"
    result = asyncflow.build(Report(day=DAY), journal=path)
    assert not result.ok
    return path


@pytest.fixture
async def client(journal: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``create_app(journal=...)`` on its own, in process."""
    from asyncflow.web import create_app

    async with asgi_client(create_app(journal=journal)) as made:
        yield made


def asgi_client(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def links(page: str) -> list[str]:
    """The ``href`` values of an HTML page, unescaped."""
    return [html.unescape(href) for href in re.findall(r'href="([^"]*)"', page)]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say loudly, at the end, that the real-browser tests did not run and why."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if "test_browser.py" in report.nodeid
    ]
    if not skipped:
        return
    terminalreporter.section("real-browser tests NOT RUN", sep="!", red=True, bold=True)
    reasons = {str(report.longrepr[-1]) for report in skipped if isinstance(report.longrepr, tuple)}
    for reason in sorted(reasons):
        terminalreporter.line(reason.removeprefix("Skipped: "), red=True, bold=True)
