"""The journal's history reads behind the pages: pages of runs, filters, counts, search."""

from __future__ import annotations

import datetime
import sqlite3
from pathlib import Path

import pytest
from tests.web.conftest import asgi_client
from tests.web.pipeline import Broken, Extract, Flaky

from asyncflow.events import Event, TaskEvent
from asyncflow.journal import AttemptStatus, Journal, RunStatus
from asyncflow.web import create_app

pytestmark = pytest.mark.anyio

RUNS = 130
START = 1_700_000_000.0


def _events(run_id: str, i: int, at: float) -> list[TaskEvent]:
    """Run ``i``: an Extract that succeeds; every third run also a Flaky that fails
    for good; every fifth a Broken still running when the run is interrupted."""
    day = datetime.date(2026, 1, 1) + datetime.timedelta(days=i)
    events = [
        TaskEvent(Event.START, Extract(day), run_id, 1, None, None, at),
        TaskEvent(Event.SUCCESS, Extract(day), run_id, 1, None, None, at + 1),
    ]
    if i % 3 == 0:
        error = RuntimeError(f"run {i} broke")
        events += [
            TaskEvent(Event.START, Flaky(day), run_id, 1, None, None, at + 1),
            TaskEvent(Event.FAILURE, Flaky(day), run_id, 1, error, 1.0, at + 2),
        ]
    if i % 5 == 0:
        events.append(TaskEvent(Event.START, Broken(day), run_id, 1, None, None, at + 2))
    return events


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A journal of RUNS runs, run-0000 the oldest (see _events)."""
    import anyio

    path = tmp_path_factory.mktemp("history") / "journal.db"

    async def fill() -> None:
        async with Journal.open(path) as journal:
            for i in range(RUNS):
                run_id = f"run-{i:04d}"
                at = START + i * 60
                await journal.begin_run(run_id, [f"Extract_{i}"], started=at)
                for event in _events(run_id, i, at):
                    journal.record(event)
                if i % 5 != 0:  # the others are left to close(), which interrupts them
                    failed = i % 3 == 0
                    await journal.end_run(run_id, RunStatus.FAILED if failed else RunStatus.SUCCESS)

    anyio.run(fill, backend="asyncio")
    return path


def expected(i: int) -> RunStatus:
    if i % 5 == 0:
        return RunStatus.INTERRUPTED
    return RunStatus.FAILED if i % 3 == 0 else RunStatus.SUCCESS


async def test_find_runs_pages_newest_first(many: Path) -> None:
    """Pages of runs: newest first, limit and offset, counts per attempt status."""
    async with Journal.open(many) as journal:
        first = await journal.find_runs(limit=50)
        last = await journal.find_runs(limit=50, offset=100)
        beyond = await journal.find_runs(limit=50, offset=RUNS)
    assert [r.run_id for r in first] == [f"run-{i:04d}" for i in range(129, 79, -1)]
    assert [r.run_id for r in last] == [f"run-{i:04d}" for i in range(29, -1, -1)]
    assert beyond == []
    assert first[1].counts == {AttemptStatus.SUCCESS: 1}  # run 128
    assert last[-1].counts == {  # run 0: Extract, Flaky failed, Broken interrupted
        AttemptStatus.SUCCESS: 1,
        AttemptStatus.FAILED: 1,
        AttemptStatus.INTERRUPTED: 1,
    }
    assert last[-1].attempts == ()  # a listing: counts, no attempts


async def test_find_and_count_runs_by_status_and_family(many: Path) -> None:
    """Filters by run status and by family (runs with an attempt of it), and both."""
    async with Journal.open(many) as journal:
        counts = await journal.count_runs()
        failed = await journal.find_runs(status=RunStatus.FAILED, limit=200)
        flaky = await journal.count_runs(family="Flaky")
        flaky_runs = await journal.find_runs(family="Flaky", limit=200)
        both = await journal.find_runs(
            family="Broken", status=RunStatus.INTERRUPTED, limit=5, offset=1
        )
        none = await journal.find_runs(family="Nothing")
    by_status: dict[RunStatus, int] = {}
    for i in range(RUNS):
        by_status[expected(i)] = by_status.get(expected(i), 0) + 1
    assert counts == by_status
    assert [r.run_id for r in failed] == [
        f"run-{i:04d}" for i in reversed(range(RUNS)) if expected(i) is RunStatus.FAILED
    ]
    assert sum(flaky.values()) == len(range(0, RUNS, 3))
    assert [r.run_id for r in flaky_runs] == [f"run-{i:04d}" for i in reversed(range(0, RUNS, 3))]
    assert [r.run_id for r in both] == [f"run-{i:04d}" for i in (120, 115, 110, 105, 100)]
    assert none == []


async def test_family_filter_reads_the_family_index(many: Path) -> None:
    """Schema 5 has an index on attempts.family, and the family filter uses it."""
    async with Journal.open(many) as journal:
        await journal.count_runs(family="Flaky")
    db = sqlite3.connect(many)
    try:
        [(sql,)] = db.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'attempts_family'"
        ).fetchall()
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT max(id) FROM attempts WHERE family = 'Flaky' AND id < 5"
        ).fetchall()
    finally:
        db.close()
    assert "ON attempts (family)" in sql
    assert any("attempts_family" in str(row) for row in plan)


async def test_find_tasks_by_prefix_then_substring(many: Path) -> None:
    """Ids starting with the text come first, in order; then ids containing it, any case."""
    async with Journal.open(many) as journal:
        flaky = await journal.find_tasks("Flaky", limit=500)
        capped = await journal.find_tasks("Extract_2026-01", limit=7)
        inner = await journal.find_tasks("2026-01-04", limit=10)
        lower = await journal.find_tasks("BROKEN_2026-01-06", limit=10)
        nothing = await journal.find_tasks("zzz")
    assert len(flaky) == len(range(0, RUNS, 3))
    assert [t.task_id for t in flaky] == sorted(t.task_id for t in flaky)
    assert {t.family for t in flaky} == {"Flaky"}
    assert flaky[0].attempts == 1
    assert flaky[0].latest.status is AttemptStatus.FAILED
    assert [t.task_id[:18] for t in capped] == [f"Extract_2026-01-0{d}" for d in range(1, 8)]
    assert [t.family for t in inner] == ["Extract", "Flaky"]  # day 3: i = 3
    assert [t.task_id[:17] for t in lower] == ["Broken_2026-01-06"]  # i = 5
    assert nothing == []


async def test_runs_page_pages_and_filters(many: Path) -> None:
    """The runs page: 50 a page, links to older and newer pages, status and family chips."""
    async with asgi_client(create_app(journal=many)) as client:
        first = (await client.get("/")).text
        third = (await client.get("/", params={"page": 3})).text
        failed = (await client.get("/", params={"status": "failed", "family": "Flaky"})).text
        api = (await client.get("/api/runs", params={"limit": 10, "offset": 125})).json()
    assert first.count('class="run-row"') == 50
    assert "page 1 of 3" in first
    assert 'href="?page=2" rel="next"' in first
    assert third.count('class="run-row"') == RUNS - 100
    assert 'href="?page=2" rel="prev"' in third
    assert "run-0000" in third
    assert "data-live" not in first  # nothing runs
    assert failed.count('class="run-row"') == sum(
        1 for i in range(0, RUNS, 3) if expected(i) is RunStatus.FAILED
    )
    assert 'href="?status=interrupted&amp;family=Flaky"' in failed
    assert [run["run_id"] for run in api["runs"]] == [f"run-{i:04d}" for i in range(4, -1, -1)]
    assert api["total"] == RUNS
