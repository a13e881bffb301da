from __future__ import annotations

import datetime
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

import anyio
import anyio.lowlevel
import pytest
from tests.fixtures import cli_env

import asyncflow
from asyncflow import Status
from asyncflow.targets import MemoryStore, MemoryTarget

pytestmark = pytest.mark.anyio

STORE = MemoryStore()
ROOT = Path(__file__).parent.parent
START = datetime.date(2026, 11, 1)


class Daily(asyncflow.Task):
    date = asyncflow.DateParameter()
    region = asyncflow.Parameter(default="eu")
    runs: list[datetime.date] = []
    bulk_calls: list[int] = []

    def output(self) -> MemoryTarget:
        return MemoryTarget(f"daily/{self.region}/{self.date}", store=STORE)

    async def run(self) -> None:
        Daily.runs.append(self.date)
        await self.output().write_bytes(b"x")

    @classmethod
    async def bulk_complete(cls, tasks: list[asyncflow.Task]) -> Iterable[asyncflow.Task]:
        cls.bulk_calls.append(len(tasks))  # one "listing" for the whole range
        present = set(STORE.keys())
        return [t for t in tasks if t.output().key in present]  # type: ignore[attr-defined]


class Probed(asyncflow.Task):
    """No bulk check: the range probes each date."""

    date = asyncflow.DateParameter()

    def output(self) -> MemoryTarget:
        return MemoryTarget(f"probed/{self.date}", store=STORE)

    async def run(self) -> None:
        await self.output().write_bytes(b"x")


class Hourly(asyncflow.Task):
    date_hour = asyncflow.DateHourParameter()

    def output(self) -> MemoryTarget:
        return MemoryTarget(f"hourly/{self.date_hour:%Y%m%d%H}", store=STORE)

    async def run(self) -> None:
        await self.output().write_bytes(b"x")


@pytest.fixture(autouse=True)
def _clean() -> None:
    STORE.clear()
    Daily.runs.clear()
    Daily.bulk_calls.clear()


async def test_range_runs_only_the_missing_half_with_one_bulk_check() -> None:
    """Half the dates present: only the other half runs, after one bulk check."""
    days = [START + datetime.timedelta(days=n) for n in range(10)]
    for day in days[::2]:
        await MemoryTarget(f"daily/eu/{day}", store=STORE).write_bytes(b"x")
    backfill = asyncflow.range_daily(Daily, START, START + datetime.timedelta(days=10))
    result = await asyncflow.run(backfill, journal=None)
    assert result.ok
    assert sorted(Daily.runs) == days[1::2]
    assert Daily.bulk_calls == [10]
    assert result.status(backfill) is Status.DONE


async def test_complete_range_is_already_complete() -> None:
    """A range with every date present runs nothing."""
    for n in range(3):
        await MemoryTarget(
            f"daily/eu/{START + datetime.timedelta(days=n)}", store=STORE
        ).write_bytes(b"x")
    backfill = asyncflow.range_daily(Daily, START, START + datetime.timedelta(days=3))
    result = await asyncflow.run(backfill, journal=None)
    assert result.status(backfill) is Status.ALREADY_COMPLETE and Daily.runs == []


async def test_range_without_bulk_check_probes_each_date() -> None:
    """Without bulk_complete, each date's complete() decides."""
    await MemoryTarget(f"probed/{START}", store=STORE).write_bytes(b"x")
    backfill = asyncflow.range_daily(Probed, START, "2026-11-04")
    result = await asyncflow.run(backfill, journal=None)
    assert result.ok
    assert sorted(
        r.task.date
        for r in result.with_status(Status.DONE)  # type: ignore[attr-defined]
        if isinstance(r.task, Probed)
    ) == [datetime.date(2026, 11, 2), datetime.date(2026, 11, 3)]


async def test_other_parameters_are_fixed() -> None:
    """Keyword arguments set the task's other parameters for every date."""
    backfill = asyncflow.range_daily(Daily, START, "2026-11-03", region="us")
    await asyncflow.run(backfill, journal=None)
    assert STORE.keys() == ["daily/us/2026-11-01", "daily/us/2026-11-02"]


async def test_hourly_range() -> None:
    """range_hourly covers [start, stop) hour by hour."""
    start = datetime.datetime(2026, 11, 23, 22)
    backfill = asyncflow.range_hourly(Hourly, start, "2026-11-24T01")
    result = await asyncflow.run(backfill, journal=None)
    assert result.ok
    assert STORE.keys() == ["hourly/2026112322", "hourly/2026112323", "hourly/2026112400"]


TURN = [0]  # the turns of the event loop a watcher has seen


class Watched(asyncflow.Task):
    """Its output() and exists() note the turn of the loop they were called in."""

    date = asyncflow.DateParameter()
    seen: ClassVar[dict[str, set[int]]] = {"output": set(), "exists": set()}

    def output(self) -> MemoryTarget:
        Watched.seen["output"].add(TURN[0])
        return _WatchedTarget(f"watched/{self.date}", store=STORE)


class _WatchedTarget(MemoryTarget):
    async def exists(self) -> bool:
        Watched.seen["exists"].add(TURN[0])
        return await super().exists()


class WatchedComplete(asyncflow.Task):
    """Its own complete(): the range asks each task."""

    date = asyncflow.DateParameter()
    seen: ClassVar[set[int]] = set()

    async def complete(self) -> bool:
        WatchedComplete.seen.add(TURN[0])
        return False

    async def run(self) -> None:
        pass


async def test_a_long_range_gives_the_loop_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    """A range's requires() makes its tasks, asks for their outputs and probes them
    in turns of the event loop: a range of 100,000 hours held it for a second."""
    from asyncflow import _turns, graph, ranges
    from asyncflow.targets import _probe

    monkeypatch.setattr(_turns, "_TURN_SECONDS", 0.0)
    slices = [(ranges, "_TASKS_PER_TURN"), (_probe, "_SORT_TURN"), (graph, "_BULK_TURN")]
    for module, name in slices:
        monkeypatch.setattr(module, name, 8)
    days = 400
    done = False

    async def watch() -> None:
        while not done:
            TURN[0] += 1
            await anyio.lowlevel.checkpoint()

    stop = START + datetime.timedelta(days=days)
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        probed = await asyncflow.range_daily(Watched, START, stop).requires()
        asked = await asyncflow.range_daily(WatchedComplete, START, stop).requires()
        done = True
    assert len(probed) == len(asked) == days  # nothing was complete
    assert len(Watched.seen["output"]) >= days // 8, Watched.seen  # one turn on the old code
    assert len(Watched.seen["exists"]) >= days // 64, Watched.seen
    assert len(WatchedComplete.seen) >= days // 64, WatchedComplete.seen


def test_bad_range_arguments() -> None:
    """A wrong parameter name, a stop before the start or a bad fixed value is refused."""
    with pytest.raises(asyncflow.ParameterError, match="needs a DateParameter named 'day'"):
        asyncflow.range_daily(Daily, START, "2026-11-03", param="day")
    with pytest.raises(asyncflow.ParameterError, match="before start"):
        asyncflow.range_daily(Daily, "2026-11-03", START)
    with pytest.raises(asyncflow.ParameterError, match="unknown parameter 'regoin'"):
        asyncflow.range_daily(Daily, START, "2026-11-03", regoin="us")


def test_cli_backfill(tmp_path: Path) -> None:
    """`asyncflow backfill` runs the missing days of the demo pipeline."""
    env = cli_env()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "asyncflow",
            "backfill",
            f"{ROOT}/examples/etl.py:Report",
            "--start",
            "2026-11-20",
            "--stop",
            "2026-11-23",
            "--no-journal",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    reports = sorted(p.name for p in (tmp_path / "data" / "reports").iterdir())
    assert reports == ["2026-11-20.json", "2026-11-21.json", "2026-11-22.json"]
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "asyncflow",
            "backfill",
            f"{ROOT}/examples/etl.py:Report",
            "--start",
            "2026-11-20",
            "--stop",
            "2026-11-23",
            "--date",
            "2026-11-01",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "set by the range" in refused.stderr
