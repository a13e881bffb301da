from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from tests.fixtures import cli

import asyncflow
from asyncflow import Event, Status, executor
from asyncflow.journal import Journal, RunStatus
from asyncflow.targets import MemoryStore, MemoryTarget
from asyncflow.testing import EventRecorder

pytestmark = pytest.mark.anyio

STORE = MemoryStore()
ROOT = Path(__file__).parent.parent


class Sink(asyncflow.Task):
    """No outputs: complete only through the journal."""

    n = asyncflow.IntParameter()
    runs: list[int] = []

    async def run(self) -> None:
        Sink.runs.append(self.n)


CHAIN = {"c": "b", "b": "a"}  # c requires b requires a


class Stage(asyncflow.Task):
    name = asyncflow.Parameter()
    runs: list[str] = []

    def requires(self) -> Stage | None:
        return Stage(CHAIN[self.name]) if self.name in CHAIN else None

    def output(self) -> MemoryTarget:
        return MemoryTarget(f"stage/{self.name}", store=STORE)

    async def run(self) -> None:
        Stage.runs.append(self.name)
        await self.output().write_bytes(b"x")


class Broken(asyncflow.Task):
    async def run(self) -> None:
        raise ValueError("broken on purpose")


@pytest.fixture(autouse=True)
def _clean() -> None:
    STORE.clear()
    Sink.runs.clear()
    Stage.runs.clear()


async def test_run_and_attempts_are_recorded(tmp_path: Path) -> None:
    """A run with a journal records the run and each attempt."""
    path = tmp_path / "j.db"
    result = await asyncflow.run(Stage("b"), journal=path)
    async with Journal.open(path) as journal:
        runs = await journal.runs()
        assert [r.run_id for r in runs] == [result.run_id]
        assert runs[0].status is RunStatus.SUCCESS
        recorded = await journal.run(result.run_id)
        assert recorded is not None
        assert sorted(a.task_id for a in recorded.attempts) == sorted(
            [Stage("a").task_id, Stage("b").task_id]
        )


async def test_failed_run_records_the_error(tmp_path: Path) -> None:
    """A failed task's attempt keeps its error; the run is failed."""
    path = tmp_path / "j.db"
    result = await asyncflow.run(Broken(), journal=path)
    async with Journal.open(path) as journal:
        recorded = await journal.run(result.run_id)
        assert recorded is not None and recorded.status is RunStatus.FAILED
        [attempt] = recorded.attempts
        assert attempt.error_type == "ValueError"
        assert "broken on purpose" in (attempt.error_message or "")


async def test_task_without_outputs_is_complete_once_journaled(tmp_path: Path) -> None:
    """The second run finds the output-less task complete in the journal."""
    path = tmp_path / "j.db"
    first = await asyncflow.run(Sink(1), journal=path)
    second = await asyncflow.run(Sink(1), journal=path)
    assert first.status(Sink(1)) is Status.DONE
    assert second.status(Sink(1)) is Status.ALREADY_COMPLETE
    assert Sink.runs == [1]


@pytest.mark.parametrize("how", ["instance", "task_id", "family"])
async def test_force_reruns_a_complete_task_and_what_depends_on_it(
    tmp_path: Path, how: str
) -> None:
    """force= re-runs the named task and its dependents, not its requirements."""
    top = Stage("c")
    await asyncflow.run(top, journal=None)
    Stage.runs.clear()
    middle = Stage("b")
    force = {"instance": middle, "task_id": middle.task_id, "family": "Stage"}[how]
    result = await asyncflow.run(top, journal=None, force=[force])
    if how == "family":
        assert sorted(Stage.runs) == ["a", "b", "c"]
    else:
        assert Stage.runs == ["b", "c"]
        assert result.status(Stage("a")) is Status.ALREADY_COMPLETE
    assert result.ok


async def test_corrupt_journal_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """A file that is not a journal is a JournalError naming it; nothing runs."""
    path = tmp_path / "j.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(asyncflow.JournalError, match=str(path)):
        await asyncflow.run(Sink(2), journal=path)
    assert Sink.runs == []
    assert path.read_bytes() == b"this is not sqlite" * 100


async def test_default_journal_is_under_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without journal=, runs go to .asyncflow/journal.db in the working folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ASYNCFLOW_JOURNAL", raising=False)
    await asyncflow.run(Sink(3))
    assert (tmp_path / ".asyncflow" / "journal.db").is_file()


def test_cli_history_and_show(tmp_path: Path) -> None:
    """`asyncflow history` lists runs; `asyncflow show RUN_ID` lists its attempts."""
    out = tmp_path / "o.txt"
    ran = cli("run", "tests.fixtures.cli_tasks:Write", "--out", str(out), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    history = cli("history", cwd=tmp_path)
    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()
    assert lines[0].split()[:2] == ["RUN", "STATUS"]
    run_id = lines[1].split()[0]
    assert lines[1].split()[1] == "success"
    show = cli("show", run_id, cwd=tmp_path)
    assert show.returncode == 0, show.stderr
    assert f"Run {run_id}: success" in show.stdout and "Write_" in show.stdout
    unknown = cli("show", "nope", cwd=tmp_path)
    assert unknown.returncode == 2 and "no run 'nope'" in unknown.stderr


def test_cli_history_without_journal(tmp_path: Path) -> None:
    """history with no journal file says where it looked."""
    proc = cli("history", cwd=tmp_path)
    assert proc.returncode == 2 and "no journal at" in proc.stderr


async def test_task_held_by_another_hosts_run_waits_for_its_lease_to_expire(
    tmp_path: Path,
) -> None:
    """Another host's process cannot be checked: its task runs here only once its
    lease has expired without a heartbeat, and not before."""
    path = tmp_path / "journal.db"
    recorder = EventRecorder()
    foreign = await Journal.open(path, host="elsewhere", pid=1, lease_ttl=1.0)
    try:  # opened without serve(): no heartbeat renews its lease
        await foreign.begin_run("foreign")
        claim = await foreign.claim("foreign", [Stage("a").task_id], since=time.time())
        assert claim.taken == [Stage("a").task_id]
        result = await asyncflow.run(Stage("c"), journal=path, handlers=[recorder])
    finally:
        await foreign.close()
    assert result.ok and Stage.runs == ["a", "b", "c"]
    started = {e.task.task_id: e.time for e in recorder.events if e.kind is Event.START}
    lease = await _lease_row(path, Stage("a").task_id)
    assert lease["run_id"] == result.run_id  # taken over by this run
    assert started[Stage("a").task_id] >= lease["prev_at"]  # not before the expiry
    assert lease["prev_outcome"] == "abandoned"


async def _lease_row(path: Path, task_id: str) -> dict[str, Any]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        row = db.execute("SELECT * FROM leases WHERE task_id = ?", [task_id]).fetchone()
    finally:
        db.close()
    return dict(row)


class Wide(asyncflow.Task):
    n = asyncflow.IntParameter()
    runs: list[int] = []

    def output(self) -> MemoryTarget:
        return MemoryTarget(f"wide/{self.n}", store=STORE)

    async def run(self) -> None:
        Wide.runs.append(self.n)
        await self.output().write_bytes(b"x")


async def test_leases_beyond_the_first_batch_are_taken_while_tasks_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large run leases its first tasks, starts, and leases the rest in the
    background: a task it has not leased yet does not start, and one another run
    holds waits for that run, wherever it is in the order."""
    monkeypatch.setattr(executor, "_CLAIM_CHUNK", 2048)  # batches of a 5,000-task run
    path = tmp_path / "journal.db"
    tasks = [Wide(n) for n in range(5_000)]
    held = tasks[4_321]  # beyond the first batch of leases
    recorder = EventRecorder()
    Wide.runs.clear()
    foreign = await Journal.open(path, host="elsewhere", pid=1, lease_ttl=1.0)
    try:
        await foreign.begin_run("foreign")
        await foreign.claim("foreign", [held.task_id], since=time.time())
        result = await asyncflow.run(tasks, journal=path, handlers=[recorder])
    finally:
        await foreign.close()
    assert result.ok
    assert sorted(Wide.runs) == list(range(5_000))  # each ran once
    started = {e.task.task_id: e.time for e in recorder.events if e.kind is Event.START}
    lease = await _lease_row(path, held.task_id)
    assert lease["run_id"] == result.run_id
    assert started[held.task_id] >= lease["prev_at"]  # only once the foreign lease expired
    assert min(started.values()) < lease["prev_at"]  # while the others did not wait
    taken = await _lease_row(path, tasks[-1].task_id)
    assert taken["run_id"] == result.run_id  # the last batch was leased too
