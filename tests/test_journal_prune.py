"""Pruning the journal: old runs go, every task's latest success stays, runs going
on are untouched; the SQLite file is whole (and smaller) afterwards."""

from __future__ import annotations

import sqlite3
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from tests.fixtures import cli

import asyncflow
from asyncflow.journal import Journal, open_journal
from asyncflow.journal.check import check_journal

pytestmark = pytest.mark.anyio


class Day(asyncflow.Task):
    """A task without outputs: complete once the journal holds a success for it."""

    d = asyncflow.IntParameter()
    ran: ClassVar[list[int]] = []

    async def run(self) -> None:
        Day.ran.append(self.d)


class Boom(asyncflow.Task):
    async def run(self) -> None:
        raise ValueError("boom")


class Days(asyncflow.WrapperTask):
    first = asyncflow.IntParameter()
    last = asyncflow.IntParameter()

    def requires(self) -> list[asyncflow.Task]:
        return [*(Day(d=d) for d in range(self.first, self.last + 1)), Boom()]


async def two_runs(where: str) -> None:
    """Run A: Day 0..3 (+ Boom, failing); run B: Day 2..5, forced (+ Boom again).
    Day 0 and 1 have their only success in A; Day 2 and 3 their latest in B."""
    await asyncflow.run(Days(first=0, last=3), journal=where, workers=4)
    await asyncflow.run(Days(first=2, last=5), journal=where, workers=4, force=["Day"])
    Day.ran.clear()


async def counts(where: str) -> dict[str, int]:
    """Runs and attempts by task, as the history reads them."""
    async with open_journal(where) as journal:
        found = {"runs": len(await journal.runs(100))}
        for task in [*(Day(d=d) for d in range(6)), Boom()]:
            found[task.task_id] = len(await journal.attempts(task.task_id))
    return found


async def test_the_latest_success_of_every_task_is_kept(journal_where: str) -> None:
    """Keeping the last run only: run A loses all but the successes of Day 0 and 1
    (their latest), and a later run finds every Day complete without running it."""
    await two_runs(journal_where)
    async with open_journal(journal_where) as journal:
        done = await journal.prune(keep_runs=1)
        a, b = sorted(await journal.runs(10), key=lambda run: run.started)
    # Run A had 5 attempts (Day 0..3, Boom; Days did not start) and keeps two.
    assert (done.runs, done.trimmed, done.kept, done.attempts) == (0, 1, 2, 3)
    assert a.counts == {asyncflow.journal.AttemptStatus.SUCCESS: 2}
    assert sum(b.counts.values()) == 5
    left = await counts(journal_where)
    assert [left[Day(d=d).task_id] for d in range(6)] == [1, 1, 1, 1, 1, 1]
    assert left[Boom().task_id] == 1  # B's failure alone
    result = await asyncflow.run(Days(first=0, last=5), journal=journal_where)
    assert Day.ran == []
    assert all(result.status(Day(d=d)) is asyncflow.Status.ALREADY_COMPLETE for d in range(6))


async def test_a_run_without_a_latest_success_goes_whole(journal_where: str) -> None:
    """Pruning everything that ended: B goes whole once a newer run holds its
    successes; no attempt, run or key is left of it."""
    await two_runs(journal_where)
    await asyncflow.run(Days(first=0, last=5), journal=journal_where, force=["Day"])
    async with open_journal(journal_where) as journal:
        done = await journal.prune(older_than=timedelta(0), keep_runs=1)
        assert (done.runs, done.trimmed, done.kept) == (2, 0, 0)
        assert len(await journal.runs(10)) == 1
    left = await counts(journal_where)
    assert [left[Day(d=d).task_id] for d in range(6)] == [1] * 6


async def test_only_runs_that_ended_before_the_cutoff_go(tmp_path: Path) -> None:
    """By the journal's clock: an hour after the runs nothing is a day old; a day
    and an hour after, both are (and A keeps its two latest successes)."""
    path = tmp_path / "journal.db"
    await two_runs(str(path))
    ended = time.time()
    async with Journal.open(path, clock=lambda: ended + 3600) as journal:
        done = await journal.prune(older_than=timedelta(days=1))
        assert (done.runs, done.trimmed, done.attempts) == (0, 0, 0)
    async with Journal.open(path, clock=lambda: ended + 90000) as journal:
        done = await journal.prune(older_than=timedelta(days=1))
        assert (done.runs, done.trimmed, done.kept) == (0, 2, 6)  # Day 0..5's latest
        assert len(await journal.runs(10)) == 2


async def test_a_run_going_on_and_its_leases_are_untouched(journal_where: str) -> None:
    """A run begun and holding a lease: a prune of everything leaves it, its lease
    and its attempts alone; the SQLite file is not vacuumed under it."""
    await two_runs(journal_where)
    async with open_journal(journal_where) as live:
        await live.begin_run("live", [Day(d=0).task_id])
        claim = await live.claim("live", [Day(d=0).task_id, "held"], since=time.time())
        assert set(claim.taken) == {Day(d=0).task_id, "held"}
        live.record(
            asyncflow.events.TaskEvent(
                asyncflow.Event.START, Day(d=0), "live", 1, None, None, time.time()
            )
        )
        await live.flush()
        async with open_journal(journal_where) as other:
            done = await other.prune(older_than=timedelta(0), keep_runs=0)
            assert (done.runs, done.trimmed, done.kept) == (0, 2, 6)  # Day 0..5's latest
            if isinstance(other, Journal):
                assert done.note is not None and "'live' is going on" in done.note
            watched = await other.watch(["held", Day(d=0).task_id])
            assert all(isinstance(w, asyncflow.journal.Holder) for w in watched.values())
            still = await other.run("live")
            assert still is not None and still.status is asyncflow.journal.RunStatus.RUNNING
            assert [a.status for a in still.attempts] == [asyncflow.journal.AttemptStatus.RUNNING]
        assert await live.release("held", "live", asyncflow.journal.LeaseOutcome.SUCCESS)


async def test_a_dry_run_changes_nothing(journal_where: str) -> None:
    """A dry run counts what a prune removes, and removes nothing."""
    await two_runs(journal_where)
    before = await counts(journal_where)
    async with open_journal(journal_where) as journal:
        would = await journal.prune(keep_runs=1, dry_run=True)
    assert await counts(journal_where) == before
    async with open_journal(journal_where) as journal:
        done = await journal.prune(keep_runs=1)
    assert (would.runs, would.trimmed, would.attempts, would.kept, would.leases) == (
        done.runs,
        done.trimmed,
        done.attempts,
        done.kept,
        done.leases,
    )
    assert would.attempts > 0 and would.summary().startswith("would remove ")


async def test_arguments_are_checked(journal_where: str) -> None:
    """Neither bound, or a negative one: ValueError before anything is read."""
    async with open_journal(journal_where) as journal:
        for bad in ({}, {"keep_runs": -1}, {"older_than": timedelta(hours=-1)}):
            with pytest.raises(ValueError, match=r"keep_runs|older_than"):
                await journal.prune(**bad)


def rows(path: Path) -> dict[str, list[Any]]:
    db = sqlite3.connect(path)
    try:
        return {
            table: db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in ("runs", "run_requests", "run_keys", "attempts", "leases")
        }
    finally:
        db.close()


async def test_the_file_is_whole_and_smaller_after(tmp_path: Path) -> None:
    """`asyncflow journal check` passes after a prune, which gave space back; `journal
    prune` says what went in one line."""
    path = tmp_path / "journal.db"
    for _ in range(3):
        await asyncflow.run(Days(first=0, last=150), journal=str(path), force=["Day"])
    before = rows(path)
    dry = cli(
        "journal", "prune", "--journal", str(path), "--keep-runs", "1", "--dry-run", cwd=tmp_path
    )
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith(f"{path}: would remove 2 run(s), 304 attempt(s)")
    assert rows(path) == before
    done = cli("journal", "prune", "--journal", str(path), "--keep-runs", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert line.startswith(f"{path}: removed 2 run(s), 304 attempt(s)")
    size = [float(mb) for mb in line.rsplit("; ", 1)[1].removesuffix(" MB").split(" MB -> ")]
    assert size[1] < size[0]
    checked = await check_journal(path)
    assert checked.ok, checked.report()
    assert checked.counts["runs"] == 1 and checked.counts["attempts"] == 152


def one_line_error(proc: Any) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("asyncflow"), lines
    return str(lines[0])


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ((), "--older-than DURATION or --keep-runs N"),
        (("--older-than", "3x"), "--older-than"),
        (("--older-than", "-1d"), "--older-than"),
        (("--keep-runs", "-1"), "--keep-runs"),
        (("--keep-runs", "two"), "--keep-runs"),
    ],
)
async def test_bad_arguments_are_one_line_naming_the_option(
    tmp_path: Path, args: tuple[str, ...], named: str
) -> None:
    """Exit 2 and one line naming the option; the journal is left as it was."""
    path = tmp_path / "journal.db"
    await asyncflow.run(Day(d=0), journal=str(path))
    before = rows(path)
    line = one_line_error(cli("journal", "prune", "--journal", str(path), *args, cwd=tmp_path))
    assert named in line
    assert rows(path) == before


DAMAGE = {
    "run-status": "UPDATE runs SET status = 'finnished'",
    "attempt-status": "UPDATE attempts SET status = 'stccess' WHERE task_id LIKE 'Boom%'",
    "index-of-successes": "DROP INDEX attempts_succeeded",
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
async def test_a_damaged_journal_is_refused(tmp_path: Path, damage: str) -> None:
    """A value that is none of ours, or an index of successes gone: one line, exit 2,
    and nothing deleted."""
    path = tmp_path / "journal.db"
    await two_runs(str(path))
    db = sqlite3.connect(path)
    with db:
        db.execute(damage)
    db.close()
    before = rows(path)
    line = one_line_error(
        cli("journal", "prune", "--journal", str(path), "--keep-runs", "0", cwd=tmp_path)
    )
    assert "damaged journal" in line
    assert rows(path) == before


async def test_malformed_pages_are_refused(tmp_path: Path) -> None:
    """Pages SQLite finds malformed (quick_check): one line, exit 2."""
    path = tmp_path / "journal.db"
    await two_runs(str(path))
    data = bytearray(path.read_bytes())
    for page in range(2, len(data) // 4096):
        data[page * 4096] = 0x77
    path.write_bytes(bytes(data))
    line = one_line_error(
        cli("journal", "prune", "--journal", str(path), "--keep-runs", "0", cwd=tmp_path)
    )
    assert "malformed" in line or "damaged" in line
