"""Processes sharing one journal: no task runs twice at once, waiters take the outcome.

Each test starts real ``asyncflow run`` processes on one journal, a file or a
PostgreSQL database (``journal_where``: each test runs on both); task bodies
log to a ledger (``tests/fixtures/race_pipeline.py``) so the tests can count
who ran what.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import anyio
import pytest
from tests.fixtures import ROOT, Child, cli_env, wait_until
from tests.fixtures.race_pipeline import LAYERED, SLOW, ledger

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

FIXTURES = "tests.fixtures.race_pipeline"


def run(folder: Path, journal: str, task: str, *more: str, **env: str) -> Child:
    return Child(
        "run",
        f"{FIXTURES}:{task}",
        "--folder",
        str(folder),
        "--journal",
        journal,
        *more,
        cwd=folder,
        **env,
    )


def short_leases(journal: str) -> dict[str, str]:
    """On PostgreSQL a killed holder's leases last until they expire (no process can
    be seen to die on another host): the shortest lease, so tests wait a second."""
    return {"ASYNCFLOW_LEASE_TTL": "1"} if journal.startswith("postgresql://") else {}


def ran(folder: Path, what: str = "run") -> Counter[str]:
    """How many times each task logged ``what``."""
    return Counter(line[1] for line in ledger(folder) if line[0] == what)


def by_pid(folder: Path, what: str, task: str) -> list[int]:
    return [int(line[2]) for line in ledger(folder) if line[:2] == [what, task]]


def journaled_failures(journal: str, family: str) -> int:
    """Failed attempts of ``family`` written to the journal so far."""
    if journal.startswith("postgresql://"):
        return anyio.run(_pg_failures, journal, family)
    db = sqlite3.connect(journal)
    try:
        rows = db.execute(
            "SELECT count(*) FROM attempts WHERE family = ? AND status = 'failed'", [family]
        ).fetchall()
    finally:
        db.close()
    return int(rows[0][0])


def wait_for_liveness_to_expire(journal: str) -> None:
    """On PostgreSQL, until every run left running is past its liveness deadline (by the
    database's clock): only then can another run know they are gone, and count the
    retries they used. A file journal knows at once (the process is gone)."""
    if journal.startswith("postgresql://"):
        wait_until(lambda: anyio.run(_all_expired, journal), "the killed run's liveness to expire")


async def _all_expired(journal: str) -> bool:
    import asyncpg

    db = await asyncpg.connect(journal)
    try:
        return bool(
            await db.fetchval(
                "SELECT NOT EXISTS (SELECT 1 FROM runs WHERE status = 'running' "
                "AND expires > now())"
            )
        )
    finally:
        await db.close()


async def _pg_failures(journal: str, family: str) -> int:
    import asyncpg

    db = await asyncpg.connect(journal)
    try:
        found = await db.fetchval(
            "SELECT count(*) FROM attempts WHERE family = $1 AND status = 'failed'", family
        )
    except asyncpg.UndefinedTableError:
        return 0  # the schema is not made yet
    finally:
        await db.close()
    return int(found)


def temp_files(folder: Path) -> list[str]:
    out = folder / "out"
    return sorted(p.name for p in out.iterdir() if ".tmp-" in p.name) if out.exists() else []


def test_two_processes_racing_over_one_dag_run_each_task_once(
    tmp_path: Path, journal_where: str
) -> None:
    """Started together on the same DAG: every body runs once, both runs succeed,
    and the one that waited says which process held the tasks."""
    children = [run(tmp_path, journal_where, "Marker", "--workers", "2") for _ in range(2)]
    try:
        codes = [child.finish() for child in children]
    finally:
        for child in children:
            child.kill()
    assert codes == [0, 0], "\n".join(child.output for child in children)
    assert ran(tmp_path) == {**{f"slow-{n}": 1 for n in range(SLOW)}, "marker": 1}
    # Each output holds the token of the one body that ran.
    tokens = {line[1]: line[3] for line in ledger(tmp_path) if line[1].startswith("slow")}
    for name, token in tokens.items():
        assert (tmp_path / "out" / f"{name}.txt").read_text() == token
    # The runs overlapped: one waited for tasks the other held, and named it.
    pids = {child.pid for child in children}
    waits = [(child.pid, r) for child in children for r in child.logs("task.held_elsewhere")]
    assert waits, "the two runs did not overlap"
    for pid, record in waits:
        assert record["holder_pid"] in pids - {pid}
        assert record["holder_host"]


def test_waiting_process_takes_the_holders_failure(tmp_path: Path, journal_where: str) -> None:
    """The holder fails: the waiting run fails the task too, naming the holder, without
    running it, and neither runs what depends on it."""
    first = run(tmp_path, journal_where, "AfterFails")
    second = None
    try:
        wait_until(lambda: ran(tmp_path)["fails"] == 1, "the first run to start Fails")
        second = run(tmp_path, journal_where, "AfterFails")
        second.wait_for("task.held_elsewhere")
        (tmp_path / "go").touch()
        assert first.finish() == 1
        assert second.finish() == 1
        failed = second.wait_for("task.failed")
    finally:
        first.kill()
        if second is not None:
            second.kill()
    assert ran(tmp_path) == {"fails": 1}
    assert f"pid {first.pid}" in failed["error"]
    assert failed["task_id"].startswith("Fails_")


def test_killed_holders_task_is_taken_over_at_once(tmp_path: Path) -> None:
    """kill -9 the holder: the waiting run on the same host sees its process gone,
    takes the lease without waiting for it to expire, and runs the task. (SQLite only:
    on PostgreSQL, liveness is expiry alone; see the next test.)"""
    journal = str(tmp_path / "journal.db")
    first = run(tmp_path, journal, "Gated", ASYNCFLOW_LEASE_TTL="600")
    second = None
    try:
        wait_until(lambda: by_pid(tmp_path, "start", "gated") == [first.pid], "Gated to start")
        second = run(tmp_path, journal, "Gated", ASYNCFLOW_LEASE_TTL="600")
        assert second.wait_for("task.held_elsewhere")["holder_pid"] == first.pid
        first.proc.send_signal(signal.SIGKILL)
        first.finish()
        # A 600 s lease: only the dead process check can free it this soon.
        wait_until(lambda: second.pid in by_pid(tmp_path, "start", "gated"), "the takeover")
        (tmp_path / "go").touch()
        assert second.finish() == 0, second.output
    finally:
        first.kill()
        if second is not None:
            second.kill()
    assert by_pid(tmp_path, "start", "gated") == [first.pid, second.pid]
    assert by_pid(tmp_path, "done", "gated") == [second.pid]
    (token,) = [line[3] for line in ledger(tmp_path) if line[0] == "done"]
    assert (tmp_path / "out" / "gated.txt").read_text() == token


def test_killed_holders_lease_is_taken_over_once_it_expires(
    tmp_path: Path, journal_where: str
) -> None:
    """kill -9 the holder of a 2 s lease: the waiting run takes the task over (at the
    latest once the lease expired, whichever host it ran on) and runs it."""
    ttl = {"ASYNCFLOW_LEASE_TTL": "2"}
    first = run(tmp_path, journal_where, "Gated", **ttl)
    second = None
    try:
        wait_until(lambda: by_pid(tmp_path, "start", "gated") == [first.pid], "Gated to start")
        second = run(tmp_path, journal_where, "Gated", **ttl)
        assert second.wait_for("task.held_elsewhere")["holder_pid"] == first.pid
        first.proc.send_signal(signal.SIGKILL)
        first.finish()
        wait_until(lambda: second.pid in by_pid(tmp_path, "start", "gated"), "the takeover")
        (tmp_path / "go").touch()
        assert second.finish() == 0, second.output
    finally:
        first.kill()
        if second is not None:
            second.kill()
    assert by_pid(tmp_path, "start", "gated") == [first.pid, second.pid]
    assert by_pid(tmp_path, "done", "gated") == [second.pid]


def test_stalled_holder_loses_its_lease_and_does_not_commit(
    tmp_path: Path, journal_where: str
) -> None:
    """A holder stopped longer than the lease lasts: another run takes the task over.
    When the stalled process wakes up, its write is refused and it takes the other's
    success instead; the output is the other run's."""
    ttl = {"ASYNCFLOW_LEASE_TTL": "1.5"}
    first = run(tmp_path, journal_where, "Gated", **ttl)
    second = None
    try:
        wait_until(lambda: by_pid(tmp_path, "start", "gated") == [first.pid], "Gated to start")
        os.kill(first.pid, signal.SIGSTOP)
        second = run(tmp_path, journal_where, "Gated", **ttl)
        wait_until(lambda: second.pid in by_pid(tmp_path, "start", "gated"), "the takeover")
        (tmp_path / "go").touch()
        assert second.finish() == 0, second.output
        os.kill(first.pid, signal.SIGCONT)
        assert first.finish() == 0, first.output
        lost = first.wait_for("task.lease_lost")
        done_elsewhere = first.wait_for("task.done_elsewhere")
    finally:
        first.kill()
        if second is not None:
            second.kill()
    assert lost["task_id"] == done_elsewhere["task_id"]
    assert by_pid(tmp_path, "done", "gated") == [second.pid]  # the stalled write raised
    (token,) = [line[3] for line in ledger(tmp_path) if line[0] == "done"]
    assert (tmp_path / "out" / "gated.txt").read_text() == token
    assert temp_files(tmp_path) == []


def test_retries_used_before_a_crash_count_after_it(tmp_path: Path, journal_where: str) -> None:
    """Two of three attempts fail, the process dies in the third: the resumed run makes
    one more attempt, not three. A run after one that ended starts afresh."""
    ttl = short_leases(journal_where)
    first = run(tmp_path, journal_where, "Retried", **ttl)
    try:
        wait_until(lambda: ran(tmp_path, "start")["retried"] == 3, "the third attempt")
        wait_until(lambda: journaled_failures(journal_where, "Retried") == 2, "two failures")
        first.proc.send_signal(signal.SIGKILL)
        first.finish()
    finally:
        first.kill()
    wait_for_liveness_to_expire(journal_where)
    resumed = run(tmp_path, journal_where, "Retried", **ttl)
    assert resumed.finish() == 1, resumed.output
    assert ran(tmp_path, "start")["retried"] == 4  # 3 before the crash, 1 after
    assert resumed.wait_for("task.failed")["error"].startswith("OSError")
    again = run(tmp_path, journal_where, "Retried", **ttl)
    assert again.finish() == 1, again.output
    assert ran(tmp_path, "start")["retried"] == 7  # a fresh budget: 3 more


def test_task_whose_retries_ran_out_before_a_crash_is_not_run_again(
    tmp_path: Path, journal_where: str
) -> None:
    """Every attempt failed before the process died (running something else): the
    resumed run fails the task at once, says why, and runs the rest."""
    ttl = short_leases(journal_where)
    first = run(tmp_path, journal_where, "Both", **ttl)
    try:
        wait_until(
            lambda: ran(tmp_path, "start")["retried"] == 3 and ran(tmp_path, "start")["gated"],
            "three failures while Gated waits",
        )
        wait_until(lambda: journaled_failures(journal_where, "Retried") == 3, "three failures")
        first.proc.send_signal(signal.SIGKILL)
        first.finish()
    finally:
        first.kill()
    wait_for_liveness_to_expire(journal_where)
    (tmp_path / "go").touch()
    resumed = run(tmp_path, journal_where, "Both", **ttl)
    assert resumed.finish() == 1, resumed.output
    assert ran(tmp_path, "start")["retried"] == 3  # not run again
    assert by_pid(tmp_path, "done", "gated") == [resumed.pid]
    error = resumed.wait_for("task.failed")["error"]
    assert "already used its retries (retry_count=2)" in error


def test_two_processes_started_a_moment_apart_run_each_task_once(
    tmp_path: Path, journal_where: str
) -> None:
    """Over 40 rounds (30 on PostgreSQL) of two runs of one DAG (half of its tasks
    without outputs), the second started 0 to 0.3 s after the first: every body runs
    once per round, and both runs succeed. A success the first run journals after the
    second probed a task, but before it leased it, tells the second that the task is
    done. (On PostgreSQL every round shares the database: each round's task ids are
    its own.)"""
    rounds = 40 if journal_where.endswith("journal.db") else 30  # PostgreSQL: slower to open
    race_rounds(tmp_path, journal_where, processes=2, rounds=rounds, seed=0)


def test_three_processes_started_moments_apart_run_each_task_once(
    tmp_path: Path, journal_where: str
) -> None:
    """As above over 30 rounds of three runs, each started 0 to 0.3 s after the one
    before: every body still runs once per round, and all three runs succeed. Three
    rounds go on at once (their runs mostly wait): on PostgreSQL, unrelated runs
    share the database meanwhile, and the first ones open it together."""
    race_rounds(tmp_path, journal_where, processes=3, rounds=30, seed=1, at_once=3)


def race_rounds(
    tmp_path: Path,
    journal_where: str,
    *,
    processes: int,
    rounds: int,
    seed: int,
    at_once: int = 1,
) -> None:
    """Race ``processes`` runs of :class:`Layers` in ``rounds`` rounds, ``at_once`` at
    a time, and check every round: each body ran once, every run succeeded."""
    journal = "-" if journal_where.endswith("journal.db") else journal_where
    command = [sys.executable, "-m", FIXTURES, str(tmp_path), str(rounds), str(seed), journal]
    launched = subprocess.run(
        [*command, str(processes), str(at_once)],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert launched.returncode == 0, launched.stderr
    wrong = []
    for index in range(rounds):
        folder = tmp_path / f"round-{index}"
        bodies = ran(folder)
        codes = (folder / "codes.txt").read_text()
        if bodies != dict.fromkeys(LAYERED, 1) or codes != " ".join(["0"] * processes):
            twice = sorted(task for task, count in bodies.items() if count > 1)
            logs = "".join(log.read_text() for log in sorted(folder.glob("log-*.txt")))
            wrong.append(f"round {index}: exit codes {codes}, ran twice {twice}\n{logs[-3000:]}")
    assert not wrong, f"{len(wrong)} of {rounds} rounds went wrong; the first:\n{wrong[0]}"
