"""Fencing tokens: a holder that stalled past its lease never commits over the new holder.

The journal issues a token with every lease taken, from one counter that only
grows; it journals a success only while its token is still the task's
greatest (checked in the transaction that writes it), and commits check the
lease again at the last moment. The trials stop a real process (SIGSTOP) past
its lease, let another process take the task over and finish it, then wake
the first one (SIGCONT).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sqlite3
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
from tests.fixtures.executing import execute
from tests.fixtures.stall_trials import local_trial, quiet_trial, violations

import asyncflow
from asyncflow import Status
from asyncflow.coordination import Claim, CommitCheck, Coordinator, Holder, LeaseOutcome
from asyncflow.events import Event, TaskEvent
from asyncflow.journal import DEFAULT_LEASE_TTL, Journal
from asyncflow.targets import MemoryStore, MemoryTarget
from asyncflow.targets.base import commit_guard, writer_identity

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000.0
TTL = DEFAULT_LEASE_TTL

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


class T(asyncflow.Task):
    n = asyncflow.IntParameter()


class FakeTime:
    """A wall clock that moves only when a test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def event(kind: Event, n: int, run_id: str, at: float = T0) -> TaskEvent:
    return TaskEvent(kind, T(n=n), run_id, 1, None, None, at)


def query(path: Path, sql: str, *args: Any) -> list[Any]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


# ------------------------------------------------------------- the journal's side


async def test_every_take_draws_a_greater_token(tmp_path: Path) -> None:
    """A claim's tasks share one token; a takeover after expiry gets a greater one,
    and the lease rows a claim is split into keep the claim's token."""
    clock = FakeTime()
    path = tmp_path / "journal.db"
    async with Journal.open(path, clock=clock) as mine, Journal.open(path, clock=clock) as other:
        await mine.begin_run("run-a")
        first = await mine.claim("run-a", ["a", "b"], since=T0)
        await other.begin_run("run-b")  # another run going on: rows from now on
        split = await other.claim("run-b", ["c"], since=T0)
        kept = dict(query(path, "SELECT task_id, token FROM leases WHERE run_id = 'run-a'"))
        clock.now += TTL + 1  # run-a stalls past its lease; run-b renews
        await other.renew()
        taken = await other.claim("run-b", ["a"], since=T0)
    assert first.tokens["a"] == first.tokens["b"] >= 1
    assert split.tokens["c"] > first.tokens["a"]
    assert kept == first.tokens
    assert taken.taken == ["a"] and taken.tokens["a"] > split.tokens["c"]


@pytest.mark.parametrize("interrupted", [False, True], ids=["rows", "claim"])
async def test_a_success_whose_lease_was_taken_over_is_not_journaled(
    tmp_path: Path, interrupted: bool
) -> None:
    """The old holder's success is written after a takeover (it stalled between the
    end of its attempt and the journal's write): the journal refuses it in the
    transaction that would write it; the new holder's success is the only one.
    The new holder took lease rows (the old run still counted as going on), or
    a claim (the new one's journal found the old run interrupted as it opened)."""
    clock = FakeTime()
    path = tmp_path / "journal.db"
    task_id = T(n=1).task_id
    async with contextlib.AsyncExitStack() as stack:
        mine = await stack.enter_async_context(Journal.open(path, clock=clock))
        if not interrupted:
            other = await stack.enter_async_context(Journal.open(path, clock=clock))
        await mine.begin_run("run-a")
        await mine.claim("run-a", [task_id], since=T0)
        mine.record(event(Event.START, 1, "run-a"))
        await mine.flush()
        assert mine.commit_check("run-a").accept(task_id, 1)  # before the stall: fine
        clock.now += TTL + 1
        if interrupted:
            other = await stack.enter_async_context(Journal.open(path, clock=clock))
        await other.begin_run("run-b")
        assert (await other.claim("run-b", [task_id], since=T0)).taken == [task_id]
        claims = query(path, "SELECT count(*) FROM run_claims WHERE run_id = 'run-b'")
        other.record(event(Event.START, 1, "run-b", clock.now))
        other.record(event(Event.SUCCESS, 1, "run-b", clock.now))
        await other.flush()
        mine.record(event(Event.SUCCESS, 1, "run-a", clock.now))  # woken up
        with structlog.testing.capture_logs() as logs:
            await mine.flush()
    assert claims == [(int(interrupted),)]
    fenced = [log for log in logs if log["event"] == "journal.success_fenced"]
    assert [(log["task_id"], log["run_id"]) for log in fenced] == [(task_id, "run-a")]
    assert fenced[0]["by"].startswith("run run-b (")  # the holder, as on either backend
    rows = query(path, "SELECT run_id, status, error_message FROM attempts ORDER BY run_id")
    assert [row[:2] for row in rows] == [("run-a", "failed"), ("run-b", "success")]
    assert "taken over by run run-b" in rows[0][2] and task_id in rows[0][2]


async def test_a_takeover_is_found_though_the_old_holder_drew_a_token_since(
    tmp_path: Path,
) -> None:
    """A run whose lease was taken over, and which then took another task (drawing
    the latest token itself), still has its late success refused: its batch is
    checked task by task unless no other run drew a token since its own."""
    clock = FakeTime()
    path = tmp_path / "journal.db"
    taken_over, later = T(n=1).task_id, T(n=2).task_id
    async with Journal.open(path, clock=clock) as mine, Journal.open(path, clock=clock) as other:
        await mine.begin_run("run-a")
        await mine.claim("run-a", [taken_over], since=T0)
        mine.record(event(Event.START, 1, "run-a"))
        await mine.flush()
        clock.now += TTL + 1  # run-a stalls past its lease
        await other.begin_run("run-b")
        assert (await other.claim("run-b", [taken_over], since=T0)).taken == [taken_over]
        assert (await mine.claim("run-a", [later], since=T0)).taken == [later]  # woken up
        mine.record(event(Event.SUCCESS, 1, "run-a", clock.now))
        mine.record(event(Event.START, 2, "run-a", clock.now))
        mine.record(event(Event.SUCCESS, 2, "run-a", clock.now))
        with structlog.testing.capture_logs() as logs:
            await mine.flush()
    fenced = [
        (log["task_id"], log["run_id"]) for log in logs if log["event"] == "journal.success_fenced"
    ]
    assert fenced == [(taken_over, "run-a")]
    rows = query(path, "SELECT task_id, status FROM attempts WHERE run_id = 'run-a'")
    assert sorted(rows) == sorted([(taken_over, "failed"), (later, "success")])


async def test_a_claim_taken_after_its_run_began_lasts_as_long_as_its_holder_believes(
    tmp_path: Path,
) -> None:
    """A run claims its tasks some time after it began (expanding its graph, probing
    outputs). Until the claim's time-to-live has passed, no other run takes the tasks
    over while the holder's commit check still accepts them: the run's liveness, which
    the claim's tasks share, is pushed on by the claim itself. (The run row kept the
    expiry of its start, so another process took the tasks over while the first still
    took its leases for valid: both reported the task done.)"""
    clock = FakeTime()
    path = tmp_path / "journal.db"
    task_id = T(n=1).task_id
    async with Journal.open(path, clock=clock) as mine, Journal.open(path, clock=clock) as other:
        await mine.begin_run("run-a")
        clock.now += TTL / 2  # expanding the graph
        await mine.claim("run-a", [task_id], since=T0)
        clock.now += TTL * 0.75  # stalled: past the run's start + ttl, not the claim's
        await other.begin_run("run-b")
        taken = await other.claim("run-b", [task_id], since=T0)
        still_mine = mine.commit_check("run-a").may_commit(task_id)
    assert not (still_mine and taken.taken), "both runs hold the task"
    assert still_mine and taken.taken == []


async def test_a_success_under_the_current_token_is_journaled(tmp_path: Path) -> None:
    """No takeover: the success is journaled, and an expired lease nobody took
    over still holds the greatest token, so a late success is journaled too."""
    clock = FakeTime()
    path = tmp_path / "journal.db"
    async with Journal.open(path, clock=clock) as journal:
        await journal.begin_run("run-a")
        claim = await journal.claim("run-a", [T(n=1).task_id, T(n=2).task_id], since=T0)
        for n in (1, 2):
            journal.record(event(Event.START, n, "run-a"))
        await journal.flush()
        assert journal.commit_check("run-a").accept(T(n=1).task_id, claim.tokens[T(n=1).task_id])
        journal.record(event(Event.SUCCESS, 1, "run-a"))
        clock.now += TTL + 1
        journal.record(event(Event.SUCCESS, 2, "run-a", clock.now))
        await journal.flush()
    assert query(path, "SELECT status FROM attempts") == [("success",), ("success",)]


# ------------------------------------------------------------- the executor's side

STORE = MemoryStore()
TOKEN = 42


class Body(asyncflow.Task):
    """Notes the lease token it writes under; writes its key unless ``quiet``."""

    name = asyncflow.Parameter()
    quiet = asyncflow.BoolParameter(default=False)
    tokens: dict[str, int | None] = {}

    def output(self) -> MemoryTarget | None:
        return None if self.quiet else MemoryTarget(self.name, STORE)

    async def run(self) -> None:
        writer = writer_identity.get()
        Body.tokens[self.name] = None if writer is None else writer.token
        target = self.output()
        if target is not None:
            await target.write_bytes(b"done")  # the shortcut that skips open()


class _Lapsing(Coordinator):
    """Leases in memory, all under one token; those of ``lose`` lapse while their
    body runs, and another run takes them over and succeeds."""

    def __init__(self, lose: set[str]) -> None:
        self.check = _LapsingCheck(lose)

    async def claim(self, run_id: str, task_ids: Sequence[str], *, since: float) -> Claim:
        return Claim(list(task_ids), {}, set(), [], tokens=dict.fromkeys(task_ids, TOKEN))

    async def watch(self, task_ids: Sequence[str]) -> Mapping[str, Holder | LeaseOutcome]:
        return {
            t: LeaseOutcome.SUCCESS if t in self.check.lose else LeaseOutcome.ABANDONED
            for t in task_ids
        }

    async def renew(self) -> Sequence[tuple[str, str]]:
        return []

    async def release(self, task_id: str, run_id: str, outcome: LeaseOutcome) -> bool:
        return True

    def commit_check(self, run_id: str) -> CommitCheck:
        return self.check


class _LapsingCheck(CommitCheck):
    """Says yes as an attempt starts, then no for the tasks in ``lose``."""

    def __init__(self, lose: set[str]) -> None:
        self.lose = lose
        self.asked: set[str] = set()
        self.accepted: list[tuple[str, int]] = []

    def may_commit(self, task_id: str) -> bool:
        first = task_id not in self.asked
        self.asked.add(task_id)
        return first or task_id not in self.lose

    def accept(self, task_id: str, token: int) -> bool:
        if self.may_commit(task_id):
            self.accepted.append((task_id, token))
            return True
        return False


async def test_attempts_write_under_their_lease_token_and_lapsed_ones_report_nothing() -> None:
    """Bodies see their lease's token; a task whose lease lapsed while its body ran is
    not reported done (its write refused, or with no output its success), and takes
    the other run's success; the others' successes are accepted under their token."""
    STORE.clear()
    Body.tokens = {}
    tasks = [
        Body("kept"),
        Body("lost"),
        Body("quiet-kept", quiet=True),
        Body("quiet-lost", quiet=True),
    ]
    lose = {Body("lost").task_id, Body("quiet-lost", quiet=True).task_id}
    coordinator = _Lapsing(lose)
    statuses = await execute(tasks, coordinator)
    assert statuses == {
        "kept": Status.DONE,
        "lost": Status.ALREADY_COMPLETE,
        "quiet-kept": Status.DONE,
        "quiet-lost": Status.ALREADY_COMPLETE,
    }
    assert Body.tokens == dict.fromkeys(["kept", "lost", "quiet-kept", "quiet-lost"], TOKEN)
    assert STORE.keys() == ["kept"]  # write_bytes() asked the guard too
    assert sorted(coordinator.check.accepted) == sorted(
        [(Body("kept").task_id, TOKEN), (Body("quiet-kept", quiet=True).task_id, TOKEN)]
    )


@posix_only
def test_a_guarded_local_commit_asks_the_guard_again_holding_the_folder_lock(
    tmp_path: Path,
) -> None:
    """The rename of a guarded write waits for the folder's lock, and the guard is
    asked again once it is held: a check and a rename no other writer comes between."""
    import fcntl

    asked = threading.Semaphore(0)

    def guard(target: asyncflow.Target) -> None:
        asked.release()

    def write() -> None:
        commit_guard.set(guard)
        with asyncflow.LocalTarget(tmp_path / "out.txt").open("w") as f:
            f.write("done")

    folder = os.open(tmp_path, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        writer = threading.Thread(target=contextvars.Context().run, args=(write,))
        writer.start()
        assert asked.acquire(timeout=10)  # before the commit: as every write
        assert not asked.acquire(timeout=0.5)  # the second look waits for the lock
        assert not (tmp_path / "out.txt").exists()
        fcntl.flock(folder, fcntl.LOCK_UN)
        assert asked.acquire(timeout=10)
        writer.join(10)
    finally:
        os.close(folder)
    assert (tmp_path / "out.txt").read_text() == "done"


# --------------------------------------------------------- SIGSTOP / SIGCONT trials


@posix_only
def test_stalled_holder_of_a_task_without_output_records_no_second_success(
    tmp_path: Path,
) -> None:
    """A holder stopped past its lease while running an output-less task: another
    process takes the task over and succeeds; woken up, the first does not report
    the task done (it takes the other's success), and the journal holds one success."""
    trial = quiet_trial(tmp_path)
    assert violations(trial, "quiet") == [], trial.first.output
    lost = trial.first.wait_for("task.lease_lost")
    assert lost["task_id"] == trial.first.wait_for("task.done_elsewhere")["task_id"]
    # Its body did finish (a stopped process cannot be kept from that): only the report.
    assert [int(line[2]) for line in trial.logged("done", "quiet")] == [
        trial.second.pid,
        trial.first.pid,
    ]


@posix_only
def test_stalled_commit_of_a_local_file_never_replaces_the_new_holders(tmp_path: Path) -> None:
    """A holder stopped in the middle of committing its file (past the first lease
    check, before the rename), past its lease: the new holder's file stays, and
    only its success is journaled."""
    output = tmp_path / "out" / "slow.txt"
    trial = local_trial(tmp_path)
    assert violations(trial, "slow", output.read_text) == [], trial.first.output
    assert [p.name for p in output.parent.iterdir()] == ["slow.txt"]
