from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import sys
import textwrap
import time
from datetime import UTC
from pathlib import Path
from subprocess import PIPE
from types import MappingProxyType
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from tests.fixtures.postgres import query as pg_query

import asyncflow
from asyncflow.errors import JournalError
from asyncflow.events import Event, TaskEvent
from asyncflow.journal import (
    DEFAULT_LEASE_TTL,
    SCHEMA_VERSION,
    AnyJournal,
    AttemptRecord,
    AttemptStatus,
    Holder,
    Journal,
    LeaseOutcome,
    RunRecord,
    RunStatus,
    format_run,
    format_runs,
    open_journal,
)
from asyncflow.journal.schema import APPLICATION_ID, MIGRATIONS

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000.0  # a fixed wall-clock time for journals driven by FakeTime
TTL = DEFAULT_LEASE_TTL


class T(asyncflow.Task):
    n = asyncflow.IntParameter()


class FakeTime:
    """A wall clock that moves only when a test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def event(
    kind: Event,
    n: int,
    run_id: str = "run-1",
    *,
    attempt: int = 1,
    error: BaseException | None = None,
    duration: float | None = None,
    at: float = T0,
) -> TaskEvent:
    return TaskEvent(kind, T(n=n), run_id, attempt, error, duration, at)


def query(path: Path, sql: str) -> list[Any]:
    """Read the file with plain sqlite3, as another tool would."""
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


# --------------------------------------------------------------------- opening


async def test_open_creates_schema_in_wal_mode_with_version(tmp_path: Path) -> None:
    """A new journal has our tables, WAL mode, our application id and the schema version."""
    path = tmp_path / "journal.db"
    async with Journal.open(path):
        pass
    tables = {row[0] for row in query(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {
        "runs",
        "run_requests",
        "run_keys",
        "attempts",
        "leases",
        "run_claims",
        "fencing",
    }
    assert query(path, "PRAGMA journal_mode") == [("wal",)]
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert query(path, "PRAGMA application_id") == [(APPLICATION_ID,)]


async def test_open_creates_parent_folders_when_asked(tmp_path: Path) -> None:
    """With create_folder=True, missing folders above the journal file are created."""
    path = tmp_path / "a" / "b" / "journal.db"
    async with Journal.open(path, create_folder=True) as journal:
        assert journal.path == path
    assert path.is_file()


async def test_open_into_a_missing_folder_is_refused(tmp_path: Path) -> None:
    """Otherwise a journal path into a folder that does not exist is an error naming
    the folder, and nothing is created anywhere."""
    path = tmp_path / "a" / "b" / "journal.db"
    with pytest.raises(JournalError, match=f"no folder '{tmp_path / 'a' / 'b'}'"):
        await Journal.open(path)
    assert list(tmp_path.iterdir()) == []


async def test_await_form_records_on_flush_and_close(tmp_path: Path) -> None:
    """`await Journal.open()` gives a journal that writes on flush() and close()."""
    path = tmp_path / "journal.db"
    journal = await Journal.open(path)
    journal.record(event(Event.START, 1))
    await journal.flush()
    journal.record(event(Event.SUCCESS, 1))
    await journal.close()
    assert query(path, "SELECT status FROM attempts") == [("success",)]


async def test_random_bytes_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    """A file that is not SQLite raises JournalError naming it, and is not touched."""
    path = tmp_path / "journal.db"
    junk = os.urandom(8192)
    path.write_bytes(junk)
    with pytest.raises(JournalError, match="not an SQLite database") as caught:
        await Journal.open(path)
    assert str(path) in str(caught.value)
    assert "journal=None" in str(caught.value)
    assert path.read_bytes() == junk


async def test_damaged_journal_is_refused(tmp_path: Path) -> None:
    """A journal whose pages were overwritten raises JournalError naming it."""
    path = tmp_path / "journal.db"
    async with Journal.open(path):
        pass
    data = path.read_bytes()
    path.write_bytes(data[:100] + os.urandom(len(data) - 100))  # keep the SQLite header
    with pytest.raises(JournalError, match="damaged") as caught:
        await Journal.open(path)
    assert str(path) in str(caught.value)


async def test_foreign_sqlite_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    """An SQLite file of another application raises JournalError and keeps its mode."""
    path = tmp_path / "app.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    db.commit()
    db.close()
    with pytest.raises(JournalError, match="not an asyncflow journal") as caught:
        await Journal.open(path)
    assert str(path) in str(caught.value)
    assert query(path, "SELECT name FROM sqlite_master") == [("users",)]
    assert query(path, "PRAGMA journal_mode") == [("delete",)]


async def test_journal_from_newer_schema_is_refused(tmp_path: Path) -> None:
    """A journal written by a newer schema names both versions."""
    path = tmp_path / "journal.db"
    async with Journal.open(path):
        pass
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 7}")
    db.close()
    with pytest.raises(JournalError) as caught:
        await Journal.open(path)
    message = str(caught.value)
    assert f"version {SCHEMA_VERSION + 7}" in message
    assert f"version {SCHEMA_VERSION})" in message
    assert str(path) in message


async def test_journal_with_our_marker_and_older_version_is_migrated(tmp_path: Path) -> None:
    """A file marked as ours at an older schema version is brought up to date."""
    path = tmp_path / "journal.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.close()
    async with Journal.open(path) as journal:
        assert await journal.runs() == []
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    """Migration n is the n-th step, so user_version n means steps 1..n were applied."""
    assert [m.version for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))


async def test_two_journals_created_at_once_on_a_new_file(tmp_path: Path) -> None:
    """Two journals opening a new file together both get the one schema."""
    path = tmp_path / "journal.db"
    opened: list[Journal] = []

    async def open_one() -> None:
        opened.append(await Journal.open(path))

    async with anyio.create_task_group() as tg:
        tg.start_soon(open_one)
        tg.start_soon(open_one)
    for journal in opened:
        await journal.close()
    assert len(opened) == 2
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


async def test_folder_as_path_is_refused(tmp_path: Path) -> None:
    """A folder where the file should be raises JournalError."""
    with pytest.raises(JournalError, match="is a folder"):
        await Journal.open(tmp_path)


async def test_body_exception_comes_out_unwrapped(tmp_path: Path) -> None:
    """An exception inside `async with Journal.open()` is not wrapped in a group."""
    with pytest.raises(ValueError, match="mine"):
        async with Journal.open(tmp_path / "journal.db"):
            raise ValueError("mine")


# ------------------------------------------------------------------- recording


async def test_records_survive_reopen(tmp_path: Path) -> None:
    """A run and its attempts are read back after the journal is reopened."""
    path = tmp_path / "journal.db"
    clock = FakeTime()
    async with Journal.open(path, clock=clock, host="box", pid=42) as journal:
        await journal.begin_run("run-1", [T(n=1).task_id])
        journal.record(event(Event.START, 1, at=T0))
        journal.record(event(Event.SUCCESS, 1, at=T0 + 2))
        clock.now = T0 + 3
        await journal.end_run("run-1", RunStatus.SUCCESS)
    async with Journal.open(path) as journal:
        run = await journal.run("run-1")
    assert run is not None
    assert (run.status, run.started, run.ended, run.host, run.pid) == (
        RunStatus.SUCCESS,
        T0,
        T0 + 3,
        "box",
        42,
    )
    assert run.version == asyncflow.__version__
    assert run.requested == (T(n=1).task_id,)
    [attempt] = run.attempts
    assert (attempt.task_id, attempt.family, dict(attempt.params)) == (
        T(n=1).task_id,
        "T",
        {"n": "1"},
    )
    assert (attempt.attempt, attempt.status, attempt.started, attempt.ended) == (
        1,
        AttemptStatus.SUCCESS,
        T0,
        T0 + 2,
    )
    assert attempt.duration == 2.0


async def test_duration_comes_from_the_ending_event(tmp_path: Path) -> None:
    """An attempt lasts from START to its ending event, or the duration that event carries."""
    async with Journal.open(tmp_path / "journal.db") as journal:
        journal.record(event(Event.START, 1, at=T0))
        journal.record(event(Event.SUCCESS, 1, at=T0 + 2))
        journal.record(event(Event.PROCESSING_TIME, 1, duration=9.0))  # not journaled
        journal.record(event(Event.START, 2, at=T0))
        journal.record(event(Event.FAILURE, 2, error=OSError(), duration=1.25, at=T0 + 2))
        [success] = await journal.attempts(T(n=1).task_id)
        [failure] = await journal.attempts(T(n=2).task_id)
    assert (success.duration, failure.duration) == (2.0, 1.25)


async def test_failure_records_error_type_message_and_traceback(tmp_path: Path) -> None:
    """A failed attempt keeps the error's type, message and formatted traceback."""
    try:
        raise KeyError("row 7")
    except KeyError as exc:
        error = exc
    async with Journal.open(tmp_path / "journal.db") as journal:
        journal.record(event(Event.START, 1))
        journal.record(event(Event.FAILURE, 1, error=error))
        [attempt] = await journal.attempts(T(n=1).task_id)
    assert attempt.status is AttemptStatus.FAILED
    assert (attempt.error_type, attempt.error_message) == ("KeyError", "'row 7'")
    assert attempt.traceback is not None
    assert "Traceback (most recent call last)" in attempt.traceback
    assert "KeyError: 'row 7'" in attempt.traceback


async def test_timeout_then_retry_is_one_timed_out_attempt(tmp_path: Path) -> None:
    """TIMEOUT followed by RETRY for one attempt is one row, status timeout."""
    boom = TimeoutError("slow")
    async with Journal.open(tmp_path / "journal.db") as journal:
        journal.record(event(Event.START, 1, attempt=1))
        journal.record(event(Event.TIMEOUT, 1, attempt=1, error=boom))
        journal.record(event(Event.RETRY, 1, attempt=1, error=boom))
        journal.record(event(Event.START, 1, attempt=2, at=T0 + 5))
        journal.record(event(Event.SUCCESS, 1, attempt=2, at=T0 + 6))
        attempts = await journal.attempts(T(n=1).task_id)
    assert [(a.attempt, a.status) for a in attempts] == [
        (1, AttemptStatus.TIMEOUT),
        (2, AttemptStatus.SUCCESS),
    ]


async def test_events_without_start_are_attempt_zero(tmp_path: Path) -> None:
    """FAILURE or DEPENDENCY_MISSING without a START is recorded with attempt 0."""
    async with Journal.open(tmp_path / "journal.db") as journal:
        journal.record(event(Event.FAILURE, 1, error=RuntimeError("complete() raised")))
        journal.record(event(Event.DEPENDENCY_MISSING, 2))
        [failed] = await journal.attempts(T(n=1).task_id)
        [missing] = await journal.attempts(T(n=2).task_id)
    assert (failed.attempt, failed.status, failed.started) == (0, AttemptStatus.FAILED, None)
    assert (missing.attempt, missing.status) == (0, AttemptStatus.MISSING)


async def test_writes_are_batched_into_few_transactions(tmp_path: Path) -> None:
    """10,000 events (5,000 tasks) take at most one transaction per 1,000 events."""
    async with Journal.open(
        tmp_path / "journal.db", flush_events=1000, flush_interval=60
    ) as journal:
        for n in range(5_000):
            journal.record(event(Event.START, n))
            journal.record(event(Event.SUCCESS, n))
            if n % 250 == 0:
                await anyio.lowlevel.checkpoint()  # let the writer run now and then
        await journal.flush()
        stats = journal.statistics()
        assert len(await journal.succeeded(T(n=n).task_id for n in range(5_000))) == 5_000
    assert stats.pending_events == 0
    assert 1 <= stats.batches <= 11
    assert stats.rows_written == 5_000  # START and SUCCESS of a task coalesce into one row


async def test_journal_calls_go_on_while_the_event_loop_is_busy(tmp_path: Path) -> None:
    """Opening a new journal, reading and writing finish within tens of a busy
    loop's iterations, not thousands.

    aiosqlite's thread (and the threads opening a journal uses) needs the GIL
    for each call; a loop running coroutines flat out lets go of it only for
    instants, and the thread waited seconds for each call (ten reads: 16 s)
    until the journal gave it turns.
    """
    iterations = 0
    done = False

    async def short() -> None:
        sum(range(50))

    async def busy() -> None:  # like a run's tasks going by in their thousands
        nonlocal iterations
        while not done and iterations < 5_000:
            await asyncio.gather(*(short() for _ in range(200)))
            iterations += 1

    async with anyio.create_task_group() as group:
        group.start_soon(busy)
        await anyio.sleep(0.05)  # the loop is busy now
        before = iterations
        async with Journal.open(tmp_path / "journal.db") as journal:
            opened = iterations - before
            await journal.begin_run("run-1", [T(n=0).task_id])
            before = iterations
            for n in range(10):
                journal.record(event(Event.START, n))
                journal.record(event(Event.SUCCESS, n))
                await journal.flush()  # a write, its own transaction
                assert len(await journal.runs()) == 1  # a read
            spent = iterations - before
        done = True
    assert iterations < 5_000, "the busy loop ran out before the journal's calls were done"
    assert opened < 1_000, f"opening a new journal took {opened} iterations of the busy loop"
    assert spent < 1_000, f"20 journal calls took {spent} iterations of the busy loop"


async def test_background_writer_writes_without_flush(tmp_path: Path) -> None:
    """Once flush_events events wait, the writer commits them without being asked."""
    async with Journal.open(tmp_path / "journal.db", flush_events=10, flush_interval=60) as journal:
        for n in range(5):
            journal.record(event(Event.START, n))
            journal.record(event(Event.SUCCESS, n))
        await anyio.wait_all_tasks_blocked()
        assert journal.statistics().pending_events == 0  # the writer has taken them
        await journal.flush()
        assert journal.statistics().batches == 1  # and flush() found nothing left


async def test_record_after_close_raises(tmp_path: Path) -> None:
    """Recording into a closed journal raises JournalError."""
    async with Journal.open(tmp_path / "journal.db") as journal:
        pass
    with pytest.raises(JournalError, match="closed"):
        journal.record(event(Event.START, 1))


async def test_close_marks_an_unended_run_interrupted(tmp_path: Path) -> None:
    """Closing with a run still begun marks it and its open attempts interrupted."""
    path = tmp_path / "journal.db"
    async with Journal.open(path) as journal:
        await journal.begin_run("run-1")
        journal.record(event(Event.START, 1))
    async with Journal.open(path) as journal:
        run = await journal.run("run-1")
    assert run is not None
    assert run.status is RunStatus.INTERRUPTED
    assert [a.status for a in run.attempts] == [AttemptStatus.INTERRUPTED]


# --------------------------------------------------------------------- resuming


async def test_succeeded_answers_for_more_ids_than_the_variable_limit(tmp_path: Path) -> None:
    """succeeded() finds the successes among 2,500 ids, past SQLite's 999 variables."""
    async with Journal.open(tmp_path / "journal.db") as journal:
        for n in range(2_500):
            journal.record(event(Event.START, n))
            journal.record(event(Event.SUCCESS if n % 2 else Event.FAILURE, n))
        found = await journal.succeeded([T(n=n).task_id for n in range(2_500)] + ["unknown"])
    assert found == {T(n=n).task_id for n in range(1, 2_500, 2)}


async def test_prior_attempts_are_the_failures_of_interrupted_runs(tmp_path: Path) -> None:
    """A resumed run goes on with the retries an interrupted run used; an ended run resets."""
    path = tmp_path / "journal.db"
    task_id, other = T(n=1).task_id, T(n=2).task_id

    async def prior() -> dict[str, int]:
        async with Journal.open(path) as journal:
            return await journal.prior_attempts([task_id, other])

    async def retried(run_id: str, *attempts: int, then: Event | None = None) -> None:
        # Closing without end_run() leaves the run interrupted, as a killed process does.
        base = T0 + 10 * int(run_id[-1])
        async with Journal.open(path) as journal:
            await journal.begin_run(run_id)
            for attempt in attempts:
                at = base + attempt
                journal.record(event(Event.START, 1, run_id, attempt=attempt, at=at))
                journal.record(event(Event.RETRY, 1, run_id, attempt=attempt, error=OSError()))
            last = attempts[-1] + 1
            journal.record(event(Event.START, 1, run_id, attempt=last, at=base + last))
            if then is not None:
                journal.record(event(then, 1, run_id, attempt=last, error=OSError()))
                await journal.end_run(run_id, RunStatus.FAILED)

    assert await prior() == {}
    await retried("run-1", 1, 2)  # two failures, then killed inside attempt 3
    assert await prior() == {task_id: 2}  # the attempt cut short does not count
    await retried("run-2", 3)  # resumed: one more failure, killed again
    assert await prior() == {task_id: 3}
    await retried("run-3", 4, then=Event.FAILURE)  # this run ended: the next starts afresh
    assert await prior() == {}
    await retried("run-4", 1)
    assert await prior() == {task_id: 1}
    async with Journal.open(path) as journal:
        await journal.begin_run("run-5")
        journal.record(event(Event.START, 1, "run-5", at=T0 + 50))
        journal.record(event(Event.SUCCESS, 1, "run-5"))
    assert await prior() == {}  # a success since: nothing to carry over


# ---------------------------------------------------- crashed processes (children)

CHILD = textwrap.dedent(
    """
    import os, sys, time
    import anyio
    import asyncflow
    from asyncflow.events import Event, TaskEvent
    from asyncflow.journal import Journal, LeaseOutcome, open_journal

    class T(asyncflow.Task):
        n = asyncflow.IntParameter()

    async def readline():
        return await anyio.to_thread.run_sync(sys.stdin.readline)

    async def crash(path, host, now):
        clock = (lambda: float(now)) if now != "-" else time.time
        journal = await Journal.open(path, host=None if host == "-" else host, clock=clock)
        await journal.begin_run("crashed", [T(n=1).task_id])
        journal.record(TaskEvent(Event.START, T(n=1), "crashed", time=clock()))
        await journal.flush()
        claim = await journal.claim("crashed", [T(n=1).task_id], since=clock())
        assert claim.taken == [T(n=1).task_id]
        os._exit(0)  # die holding the lease, with the attempt running

    async def contend(path, run_id):
        async with open_journal(path) as journal:
            await journal.begin_run(run_id, ["shared"])
            print("ready", flush=True)
            await readline()
            claim = await journal.claim(run_id, ["shared"], since=time.time())
            if claim.taken == ["shared"]:
                print("won", flush=True)
                await readline()
                await journal.release("shared", run_id, LeaseOutcome.SUCCESS)
                print("released", flush=True)
            else:
                print("lost", claim.held["shared"].run_id, flush=True)
                while not isinstance(state := (await journal.watch(["shared"]))["shared"],
                                     LeaseOutcome):
                    await anyio.sleep(0.01)
                print("outcome", state.value, flush=True)

    mode, *args = sys.argv[1:]
    anyio.run({"crash": crash, "contend": contend}[mode], *args)
    """
)


@pytest.fixture
def child(tmp_path: Path) -> list[str]:
    script = tmp_path / "journal_child.py"
    script.write_text(CHILD)
    return [sys.executable, str(script)]


async def crash_child(child: list[str], path: Path, host: str = "-", now: str = "-") -> None:
    """Run a child that journals a running attempt, claims its lease, and dies."""
    done = await anyio.run_process([*child, "crash", str(path), host, now], check=False)
    assert done.returncode == 0, done.stderr.decode()


async def test_attempt_of_dead_process_on_this_host_is_interrupted(
    tmp_path: Path, child: list[str]
) -> None:
    """On open, a running attempt whose process (on this host) is gone becomes interrupted."""
    path = tmp_path / "journal.db"
    await crash_child(child, path)
    async with Journal.open(path) as journal:
        run = await journal.run("crashed")
        assert await journal.prior_attempts([T(n=1).task_id]) == {}  # cut short: not a failure
    assert run is not None
    assert run.status is RunStatus.INTERRUPTED
    assert [a.status for a in run.attempts] == [AttemptStatus.INTERRUPTED]


async def test_attempt_on_other_host_is_interrupted_only_after_expiry(
    tmp_path: Path, child: list[str]
) -> None:
    """A running attempt of another host stays running until its run's lease expires."""
    path = tmp_path / "journal.db"
    await crash_child(child, path, host="elsewhere", now=str(T0))
    async with Journal.open(path, clock=FakeTime(T0 + TTL - 1)) as journal:
        before = await journal.run("crashed")
    async with Journal.open(path, clock=FakeTime(T0 + TTL + 1)) as journal:
        after = await journal.run("crashed")
        await journal.begin_run("run-2")
        claim = await journal.claim("run-2", [T(n=1).task_id], since=T0 + TTL + 1)
    assert before is not None and after is not None
    assert [a.status for a in before.attempts] == [AttemptStatus.RUNNING]
    assert [a.status for a in after.attempts] == [AttemptStatus.INTERRUPTED]
    assert claim.taken == [T(n=1).task_id] and claim.abandoned == {T(n=1).task_id}


async def test_lease_of_dead_process_on_this_host_is_taken_at_once(
    tmp_path: Path, child: list[str]
) -> None:
    """A lease whose holder died on this host is taken over before it expires."""
    path = tmp_path / "journal.db"
    clock = FakeTime(T0)
    async with Journal.open(path, clock=clock) as journal:
        await crash_child(child, path, now=str(T0))
        await journal.begin_run("run-2")
        claim = await journal.claim("run-2", [T(n=1).task_id], since=T0)
    assert claim.taken == [T(n=1).task_id]
    assert claim.abandoned == {T(n=1).task_id}


async def readline(process: Process, streams: dict[int, BufferedByteReceiveStream]) -> str:
    assert process.stdout is not None
    stream = streams.setdefault(id(process), BufferedByteReceiveStream(process.stdout))
    return (await stream.receive_until(b"\n", 1024)).decode().strip()


async def tell(process: Process, line: str) -> None:
    assert process.stdin is not None
    await process.stdin.send(line.encode() + b"\n")


async def test_two_processes_contending_exactly_one_wins(
    journal_where: str, child: list[str]
) -> None:
    """Two processes race for one lease: one wins, the other waits and takes its outcome
    (on either backend)."""
    path = journal_where
    async with open_journal(path):
        pass  # create the schema first: the race is about the lease
    streams: dict[int, BufferedByteReceiveStream] = {}
    with anyio.fail_after(30):
        a = await anyio.open_process([*child, "contend", str(path), "run-a"], stdin=PIPE)
        b = await anyio.open_process([*child, "contend", str(path), "run-b"], stdin=PIPE)
        async with a, b:
            assert [await readline(a, streams), await readline(b, streams)] == ["ready"] * 2
            await tell(a, "go")
            await tell(b, "go")
            answers = {p: (await readline(p, streams)).split() for p in (a, b)}
            winners = [p for p, words in answers.items() if words == ["won"]]
            assert len(winners) == 1, answers
            [winner] = winners
            [loser] = [p for p in (a, b) if p is not winner]
            assert answers[loser] == ["lost", "run-a" if winner is a else "run-b"]
            await tell(winner, "release")
            assert await readline(winner, streams) == "released"
            assert await readline(loser, streams) == "outcome success"
            assert [await a.wait(), await b.wait()] == [0, 0]


# ----------------------------------------------------------------------- leases


async def watch_until_let_go(journal: AnyJournal, task_id: str) -> LeaseOutcome:
    """Poll :meth:`Journal.watch` until the lease on ``task_id`` is let go, as a run
    waiting for another run's task does."""
    while True:  # the journal has nothing to await: another process lets go
        state = (await journal.watch([task_id]))[task_id]
        if isinstance(state, LeaseOutcome):
            return state
        await anyio.sleep(0.001)


async def test_claim_gives_the_lease_or_the_holder(tmp_path: Path) -> None:
    """The first run gets the lease; another run learns who holds it and since when."""
    clock = FakeTime()
    async with Journal.open(tmp_path / "journal.db", clock=clock, host="box", pid=7) as journal:
        await journal.begin_run("run-a")
        first = await journal.claim("run-a", ["task"], since=T0)
        clock.now += 1
        await journal.begin_run("run-b")
        second = await journal.claim("run-b", ["task"], since=T0 + 1)
    assert (first.taken, first.held, first.abandoned) == (["task"], {}, set())
    assert (second.taken, second.held) == (
        [],
        {"task": Holder("task", "run-a", "box", 7, T0, T0 + TTL)},
    )


async def test_renewal_by_the_holder_pushes_the_expiry_on(tmp_path: Path) -> None:
    """The holding run renewing keeps its lease and pushes the expiry on."""
    clock = FakeTime()
    async with Journal.open(tmp_path / "journal.db", clock=clock, host="box", pid=7) as journal:
        await journal.begin_run("run-a")
        await journal.claim("run-a", ["task"], since=T0)
        clock.now += 10
        assert await journal.renew() == []
        states = await journal.watch(["task"])
    assert states == {"task": Holder("task", "run-a", "box", 7, T0, T0 + 10 + TTL)}


async def test_expired_lease_is_taken_over_and_old_holder_learns_it(tmp_path: Path) -> None:
    """After expiry another run takes the lease (abandoned), and the old one may no
    longer commit once its renewal finds it lost."""
    clock = FakeTime()
    path = tmp_path / "journal.db"
    async with Journal.open(path, clock=clock) as mine, Journal.open(path, clock=clock) as other:
        await mine.begin_run("run-a")
        await mine.claim("run-a", ["task"], since=T0)
        assert mine.commit_check("run-a").may_commit("task")
        clock.now += TTL
        await other.begin_run("run-b")
        taken = await other.claim("run-b", ["task"], since=T0 + TTL)
        assert (taken.taken, taken.abandoned) == (["task"], {"task"})
        assert await mine.renew() == [("task", "run-a")]
        assert not mine.commit_check("run-a").may_commit("task")
        assert other.commit_check("run-b").may_commit("task")


async def test_release_after_takeover_leaves_new_holder_alone(tmp_path: Path) -> None:
    """A run that lost its lease cannot release the new holder's lease."""
    clock = FakeTime()
    path = tmp_path / "journal.db"
    async with Journal.open(path, clock=clock) as mine, Journal.open(path, clock=clock) as other:
        await mine.begin_run("run-a")
        await mine.claim("run-a", ["task"], since=T0)
        clock.now += TTL + 1
        await other.begin_run("run-b")
        assert (await other.claim("run-b", ["task"], since=clock.now)).taken == ["task"]
        assert not await mine.release("task", "run-a", LeaseOutcome.FAILED)
        await other.begin_run("run-c")
        third = await other.claim("run-c", ["task"], since=clock.now)
    assert third.taken == [] and third.held["task"].run_id == "run-b"


async def test_released_outcome_is_seen_by_the_next_run(tmp_path: Path) -> None:
    """How the previous holder let go is seen before taking over, and a success
    is not reported as an abandoned lease."""
    clock = FakeTime()
    async with Journal.open(tmp_path / "journal.db", clock=clock) as journal:
        await journal.begin_run("run-a")
        await journal.claim("run-a", ["task"], since=T0)
        clock.now += 5
        assert await journal.release("task", "run-a", LeaseOutcome.SUCCESS)
        clock.now += 5
        seen = await journal.watch(["task"])
        await journal.begin_run("run-b")
        claim = await journal.claim("run-b", ["task"], since=T0 + 10)
    assert seen == {"task": LeaseOutcome.SUCCESS}
    assert (claim.taken, claim.abandoned) == (["task"], set())


async def test_renew_keeps_leases_alive_past_their_ttl(tmp_path: Path) -> None:
    """renew() pushes every held lease on, so nobody can take them."""
    clock = FakeTime()
    path = tmp_path / "journal.db"
    async with Journal.open(path, clock=clock) as mine, Journal.open(path, clock=clock) as other:
        await mine.begin_run("run-a")
        await mine.claim("run-a", ["x", "y"], since=T0)
        clock.now += TTL * 0.9
        assert await mine.renew() == []
        clock.now += TTL * 0.5
        await other.begin_run("run-b")
        claim = await other.claim("run-b", ["x", "y"], since=clock.now)
    assert claim.taken == [] and sorted(claim.held) == ["x", "y"]


async def test_renew_reports_leases_taken_by_others(tmp_path: Path) -> None:
    """renew() returns the leases this journal lost to another run."""
    clock = FakeTime()
    path = tmp_path / "journal.db"
    async with Journal.open(path, clock=clock) as mine, Journal.open(path, clock=clock) as other:
        await mine.begin_run("run-a")
        await mine.claim("run-a", ["x", "y"], since=T0)
        clock.now += TTL + 1
        await other.begin_run("run-b")
        assert (await other.claim("run-b", ["y"], since=clock.now)).taken == ["y"]
        assert await mine.renew() == [("y", "run-a")]


async def test_watching_returns_the_holders_outcome(journal_where: str) -> None:
    """Watching a lease until it is let go returns the outcome the holder released with."""
    async with open_journal(journal_where) as journal:
        await journal.begin_run("run-a")
        await journal.claim("run-a", ["task"], since=T0)
        outcomes: list[LeaseOutcome] = []

        async def waiter() -> None:
            outcomes.append(await watch_until_let_go(journal, "task"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.lowlevel.checkpoint()
            await journal.release("task", "run-a", LeaseOutcome.FAILED)
    assert outcomes == [LeaseOutcome.FAILED]


async def test_watching_an_expired_lease_is_abandoned(tmp_path: Path) -> None:
    """A lease that expired without release, or was never taken, is ABANDONED."""
    clock = FakeTime()
    async with Journal.open(tmp_path / "journal.db", clock=clock) as journal:
        await journal.begin_run("run-a")
        await journal.claim("run-a", ["task"], since=T0)
        clock.now += TTL
        assert await watch_until_let_go(journal, "task") is LeaseOutcome.ABANDONED
        assert await watch_until_let_go(journal, "never-leased") is LeaseOutcome.ABANDONED


async def test_end_run_abandons_leases_it_still_holds(journal_where: str) -> None:
    """Ending a run lets go of its forgotten leases, so others need not wait for expiry."""
    async with open_journal(journal_where) as journal:
        await journal.begin_run("run-a")
        await journal.claim("run-a", ["task"], since=T0)
        await journal.end_run("run-a", RunStatus.CANCELLED)
        await journal.begin_run("run-b")
        claim = await journal.claim("run-b", ["task"], since=T0)
    assert claim.taken == ["task"] and claim.abandoned == {"task"}


async def test_close_abandons_leases_still_held(journal_where: str) -> None:
    """Closing a journal lets go of its leases, so another process need not wait."""
    async with open_journal(journal_where) as journal:
        await journal.begin_run("run-a")
        await journal.claim("run-a", ["task"], since=T0)
    async with open_journal(journal_where) as journal:
        await journal.begin_run("run-b")
        claim = await journal.claim("run-b", ["task"], since=T0)
    assert claim.taken == ["task"] and claim.abandoned == {"task"}


# ---------------------------------------------------------------------- history


async def test_runs_lists_newest_first_with_attempt_counts(tmp_path: Path) -> None:
    """runs() gives the latest runs, newest first, each with its attempt counts."""
    clock = FakeTime()
    async with Journal.open(tmp_path / "journal.db", clock=clock) as journal:
        for i, status in enumerate((RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.SUCCESS)):
            clock.now = T0 + i
            run_id = f"run-{i}"
            await journal.begin_run(run_id)
            journal.record(event(Event.START, i, run_id))
            ok = status is RunStatus.SUCCESS
            journal.record(event(Event.SUCCESS if ok else Event.FAILURE, i, run_id))
            await journal.end_run(run_id, status)
        runs = await journal.runs(limit=2)
    assert [(r.run_id, r.status) for r in runs] == [
        ("run-2", RunStatus.SUCCESS),
        ("run-1", RunStatus.FAILED),
    ]
    assert dict(runs[1].counts) == {AttemptStatus.FAILED: 1}
    assert runs[0].attempts == ()


async def test_attempts_lists_a_task_across_runs(tmp_path: Path) -> None:
    """attempts() gives every attempt of one task, oldest first, with host and pid."""
    async with Journal.open(tmp_path / "journal.db", host="box", pid=3) as journal:
        for i, run_id in enumerate(("run-a", "run-b")):
            await journal.begin_run(run_id)
            journal.record(event(Event.START, 1, run_id, at=T0 + i))
            journal.record(event(Event.SUCCESS, 1, run_id, at=T0 + i))
            journal.record(event(Event.START, 2, run_id, at=T0 + i))
            await journal.end_run(run_id, RunStatus.SUCCESS)
        attempts = await journal.attempts(T(n=1).task_id)
        missing = await journal.run("no-such-run")
    assert [(a.run_id, a.host, a.pid) for a in attempts] == [
        ("run-a", "box", 3),
        ("run-b", "box", 3),
    ]
    assert missing is None


def _attempt(n: int, status: AttemptStatus, **fields: Any) -> AttemptRecord:
    values: dict[str, Any] = {
        "run_id": "r1",
        "task_id": f"Extract_{n}_c0ffee",
        "family": "Extract",
        "params": MappingProxyType({"n": str(n)}),
        "attempt": 1,
        "status": status,
        "started": T0 + n,
        "ended": T0 + n + 0.5,
        "duration": 0.5,
    }
    values.update(fields)
    return AttemptRecord(**values)


RUN = RunRecord(
    "r1",
    RunStatus.FAILED,
    T0,
    T0 + 75.5,
    "b1",
    4242,
    "0.1.0",
    ("Report_2026-11-23_abcdef",),
    MappingProxyType({AttemptStatus.SUCCESS: 1, AttemptStatus.FAILED: 1}),
    (
        _attempt(1, AttemptStatus.SUCCESS),
        _attempt(
            2,
            AttemptStatus.FAILED,
            duration=12.25,
            error_type="ValueError",
            error_message="bad row 7\nsecond line",
            traceback="Traceback (most recent call last):\nValueError: bad row 7\n",
        ),
        _attempt(3, AttemptStatus.MISSING, attempt=0, started=None, duration=None),
    ),
)


def test_format_runs_golden() -> None:
    """format_runs() lays runs out as an aligned table."""
    running = RunRecord("r2", RunStatus.RUNNING, T0 + 3600, None, "b2", 17, "0.1.0")
    assert format_runs([running, RUN], tz=UTC) == textwrap.dedent(
        """\
        RUN  STATUS   STARTED              DURATION  REQUESTED  ATTEMPTS             HOST:PID
        r2   running  2027-01-15 09:00:00  -         0          -                    b2:17
        r1   failed   2027-01-15 08:00:00  1m15s     1          1 success, 1 failed  b1:4242
        """
    )
    assert format_runs([]) == "No runs in the journal.\n"


def test_format_run_golden() -> None:
    """format_run() shows the run's details, then its attempts, then tracebacks if asked."""
    assert format_run(RUN, tz=UTC, tracebacks=True) == textwrap.dedent(
        """\
        Run r1: failed
          started    2027-01-15 08:00:00
          ended      2027-01-15 08:01:15
          duration   1m15s
          host       b1 (pid 4242)
          asyncflow  0.1.0
          attempts   1 success, 1 failed
          requested  Report_2026-11-23_abcdef

        TASK              ATTEMPT  STATUS   STARTED              DURATION  ERROR
        Extract_1_c0ffee  1        success  2027-01-15 08:00:01  0.500s
        Extract_2_c0ffee  1        failed   2027-01-15 08:00:02  12.2s     ValueError: bad row 7
        Extract_3_c0ffee  -        missing  -                    -

        Traceback of Extract_2_c0ffee, attempt 1:
          Traceback (most recent call last):
          ValueError: bad row 7
        """
    )


def test_format_run_shows_what_attempts_said() -> None:
    """format_run() adds a PROGRESS column (percentage, first line of the message, cut
    short) when an attempt said how it did, and lists tracking URLs under the table."""
    said = dataclasses.replace(
        RUN,
        attempts=(
            _attempt(
                1,
                AttemptStatus.SUCCESS,
                status_message="loaded 1,000 rows\nof 1,000",
                progress_percentage=99.9,
                tracking_url="https://jobs.example.test/1",
            ),
            _attempt(2, AttemptStatus.FAILED, status_message="x" * 60),
            _attempt(3, AttemptStatus.MISSING, attempt=0, started=None, duration=None),
        ),
    )
    assert format_run(said, tz=UTC).split("\n", 9)[9] == textwrap.dedent(
        f"""\
        TASK              ATTEMPT  STATUS   STARTED              DURATION  PROGRESS{" " * 34}ERROR
        Extract_1_c0ffee  1        success  2027-01-15 08:00:01  0.500s    99% loaded 1,000 rows
        Extract_2_c0ffee  1        failed   2027-01-15 08:00:02  0.500s    {"x" * 39}…
        Extract_3_c0ffee  -        missing  -                    -

        Tracking URL of Extract_1_c0ffee, attempt 1: https://jobs.example.test/1
        """
    )
    assert "PROGRESS" not in format_run(RUN, tz=UTC)  # nothing said: no column


def test_format_run_shortens_the_requested_list_and_counts_what_it_leaves_out() -> None:
    """format_run() names the first 3 requested tasks and counts the others, and ends with
    the number of attempts not shown."""
    many = dataclasses.replace(RUN, requested=tuple(f"T_{n}" for n in range(20_000)))
    listed = dataclasses.replace(RUN, requested=("a", "b", "c"), more_requested=7)
    text = format_run(many, tz=UTC, left_out=1234)
    assert "  requested  T_0, T_1, T_2 and 19,997 more (20,000 in all)\n" in text
    assert "  requested  a, b, c and 7 more (10 in all)\n" in format_run(listed, tz=UTC)
    assert text.endswith(
        "\n\n1,234 more attempts not shown (--limit N shows more, --limit 0 all of them)\n"
    )


# ------------------------------------------------------------- claims (batches)


async def test_claim_takes_free_leases_and_names_live_holders(tmp_path: Path) -> None:
    """One claim takes every free lease; those a live run holds come back with it."""
    clock = FakeTime()
    async with Journal.open(tmp_path / "journal.db", clock=clock, host="box", pid=7) as journal:
        first = await journal.claim("run-a", ["a", "b"], since=T0)
        second = await journal.claim("run-b", ["b", "c", "c"], since=T0)
        again = await journal.claim("run-a", ["a"], since=T0)  # the holder renews
    assert (first.taken, first.held, first.done, first.unsettled) == (["a", "b"], {}, set(), [])
    assert second.taken == ["c"]
    assert second.held == {"b": Holder("b", "run-a", "box", 7, T0, T0 + TTL)}
    assert again.taken == ["a"]


async def test_claim_of_many_tasks_is_one_batch(tmp_path: Path) -> None:
    """Thousands of task ids go in one call, beyond SQLite's limit on variables."""
    ids = [f"task-{n}" for n in range(40_000)]
    async with Journal.open(tmp_path / "journal.db") as journal:
        claim = await journal.claim("run-a", ids, since=T0)
        other = await journal.claim("run-b", ids[-3:], since=T0)
    assert claim.taken == ids
    assert sorted(other.held) == ids[-3:]


async def test_success_journaled_by_the_holder_frees_the_lease(tmp_path: Path) -> None:
    """Once the holding run journals a success, the task is free and reported done:
    a success costs no lease write."""
    clock = FakeTime()
    task_id = T(n=1).task_id
    async with Journal.open(tmp_path / "journal.db", clock=clock) as journal:
        await journal.begin_run("run-1")
        await journal.claim("run-1", [task_id], since=T0)
        clock.now += 1
        assert isinstance((await journal.watch([task_id]))[task_id], Holder)
        journal.record(event(Event.START, 1, "run-1", at=T0 + 1))
        journal.record(event(Event.SUCCESS, 1, "run-1", at=T0 + 2))
        await journal.flush()
        assert await journal.watch([task_id]) == {task_id: LeaseOutcome.SUCCESS}
        late = await journal.claim("run-2", [task_id], since=T0)  # probed before the success
        fresh = await journal.claim("run-3", [task_id], since=T0 + 5)  # probed after it
    assert (late.taken, late.done) == ([task_id], {task_id})
    assert fresh.done == set()


@pytest.mark.parametrize("holder_ended", [False, True], ids=["holder-going-on", "holder-ended"])
async def test_a_success_written_after_a_run_began_is_reported_done(
    tmp_path: Path, holder_ended: bool
) -> None:
    """A success journaled a batch after its attempt ended, once another run had begun
    (and probed), is in that run's claim.done, though the attempt ended before it
    began: whether the holder still goes on (its lease is free through the success)
    or has ended (its claim gone with it)."""
    path = tmp_path / "journal.db"
    clock = FakeTime()
    task_id = T(n=1).task_id
    # A long flush interval: the success waits in the buffer, as between two batches.
    async with Journal.open(path, clock=clock, pid=1, flush_interval=3600) as first:
        await first.begin_run("run-1")
        await first.claim("run-1", [task_id], since=T0)
        first.record(event(Event.START, 1, "run-1", at=T0 + 1))
        first.record(event(Event.SUCCESS, 1, "run-1", at=T0 + 2))
        clock.now = T0 + 3
        async with Journal.open(path, clock=clock, pid=2) as second:
            await second.begin_run("run-2", started=T0 + 3)
            assert await second.succeeded([task_id]) == set()  # its probe: not there yet
            if holder_ended:
                await first.end_run("run-1", RunStatus.SUCCESS)
            else:
                await first.flush()
            claim = await second.claim("run-2", [task_id], since=T0 + 3)
    assert claim.taken == [task_id]
    assert claim.done == {task_id}


async def test_watch_tells_how_each_lease_was_let_go(tmp_path: Path) -> None:
    clock = FakeTime()
    async with Journal.open(tmp_path / "journal.db", clock=clock) as journal:
        await journal.claim("run-a", ["held", "failed", "released"], since=T0)
        await journal.release("failed", "run-a", LeaseOutcome.FAILED)
        await journal.release("released", "run-a", LeaseOutcome.ABANDONED)
        async with Journal.open(journal.path, clock=clock, lease_ttl=1) as short:
            await short.begin_run("run-x")
            await short.claim("run-x", ["expired"], since=T0)
            clock.now += 2  # run-x's lease (and the run) expired unrenewed
            states = await journal.watch(["held", "failed", "expired", "released", "never"])
    assert isinstance(states.pop("held"), Holder)
    assert states == {
        "failed": LeaseOutcome.FAILED,
        "expired": LeaseOutcome.ABANDONED,
        "released": LeaseOutcome.ABANDONED,
        "never": LeaseOutcome.ABANDONED,
    }


async def test_commit_check_turns_false_without_heartbeats_and_after_takeover(
    tmp_path: Path,
) -> None:
    """commit_check() answers without I/O: no renewal for a whole ttl (a stalled process)
    means the lease may be gone; a renewal that finds it taken means it is."""
    clock = FakeTime()
    path = tmp_path / "journal.db"
    async with Journal.open(path, clock=clock) as journal:
        await journal.claim("run-a", ["a", "b"], since=T0)
        assert journal.commit_check("run-a").may_commit("a") and not journal.commit_check(
            "run-a"
        ).may_commit("c")
        clock.now += TTL / 2
        await journal.renew()
        clock.now += TTL * 0.9
        assert journal.commit_check("run-a").may_commit("a")  # renewed half-way: still valid
        clock.now += TTL
        assert not journal.commit_check("run-a").may_commit("a")  # stalled past the expiry
        taken = await journal.claim("run-b", ["b"], since=T0)  # another run takes one
        assert taken.taken == ["b"]
        assert await journal.renew() == [("b", "run-a")]
        assert journal.commit_check("run-a").may_commit("a") and not journal.commit_check(
            "run-a"
        ).may_commit("b")


# ------------------------------------------------- claims (a run going on alone)


async def test_a_run_alone_leases_a_batch_with_one_row(tmp_path: Path) -> None:
    """While no other run is going on, a batch of leases costs one claim row."""
    path = tmp_path / "journal.db"
    clock = FakeTime()
    async with Journal.open(path, clock=clock, host="box", pid=7) as journal:
        await journal.begin_run("run-a")
        claim = await journal.claim("run-a", ["a", "b", "c"], since=T0)
        assert query(path, "SELECT count(*) FROM run_claims") == [(1,)]
        assert query(path, "SELECT count(*) FROM leases") == [(0,)]
        assert journal.commit_check("run-a").may_commit("b") and not journal.commit_check(
            "run-a"
        ).may_commit("d")
        states = await journal.watch(["a", "d"])
        assert await journal.renew() == []
    assert (claim.taken, claim.held, claim.abandoned) == (["a", "b", "c"], {}, set())
    assert states == {
        "a": Holder("a", "run-a", "box", 7, T0, T0 + TTL),
        "d": LeaseOutcome.ABANDONED,
    }


async def test_a_second_run_turns_the_claim_into_leases_it_must_wait_for(tmp_path: Path) -> None:
    """Another run's leases split the claim into rows still held by the first run."""
    path = tmp_path / "journal.db"
    clock = FakeTime()
    async with Journal.open(path, clock=clock, host="box", pid=7) as journal:
        await journal.begin_run("run-a")
        await journal.claim("run-a", ["a", "b"], since=T0)
        await journal.begin_run("run-b")
        second = await journal.claim("run-b", ["b", "c"], since=T0)
        assert query(path, "SELECT count(*) FROM run_claims") == [(0,)]
        rows = query(path, "SELECT task_id, run_id FROM leases ORDER BY task_id")
        clock.now += TTL / 2
        assert await journal.renew() == []  # run-a still holds a and b, now as rows
        assert journal.commit_check("run-a").may_commit("a") and journal.commit_check(
            "run-a"
        ).may_commit("b")
    assert second.taken == ["c"]
    assert second.held == {"b": Holder("b", "run-a", "box", 7, T0, T0 + TTL)}
    assert rows == [("a", "run-a"), ("b", "run-a"), ("c", "run-b")]


async def test_ending_a_run_abandons_what_its_claim_did_not_finish(tmp_path: Path) -> None:
    """Tasks a claim held that the run did not finish (begun and not ended, or
    never begun) are let go as abandoned (the next holder cleans up after them);
    its successes are not."""
    path = tmp_path / "journal.db"
    done, undone, unbegun = T(n=1).task_id, T(n=2).task_id, T(n=3).task_id
    async with Journal.open(path) as journal:
        await journal.begin_run("run-1")
        await journal.claim("run-1", [done, undone, unbegun], since=T0)
        journal.record(event(Event.START, 1, "run-1"))
        journal.record(event(Event.SUCCESS, 1, "run-1"))
        journal.record(event(Event.START, 2, "run-1"))
        await journal.end_run("run-1", RunStatus.CANCELLED)
        assert query(path, "SELECT count(*) FROM run_claims") == [(0,)]
        await journal.begin_run("run-2")
        again = await journal.claim("run-2", [done, undone, unbegun], since=T0)
    assert again.taken == [done, undone, unbegun]
    assert again.abandoned == {undone, unbegun}


async def test_a_claim_of_a_run_found_interrupted_is_abandoned(tmp_path: Path) -> None:
    """A run that stalled past its expiry loses its claim: another process opening
    the journal lets go of what it did not finish, and the stalled run learns it."""
    path = tmp_path / "journal.db"
    done, undone = T(n=1).task_id, T(n=2).task_id
    stalled = await Journal.open(path, clock=FakeTime(T0), host="elsewhere", pid=1)
    try:
        await stalled.begin_run("run-1")
        await stalled.claim("run-1", [done, undone], since=T0)
        stalled.record(event(Event.START, 1, "run-1"))
        stalled.record(event(Event.SUCCESS, 1, "run-1"))
        await stalled.flush()
        later = FakeTime(T0 + TTL + 1)
        async with Journal.open(path, clock=later, host="box", pid=7) as journal:
            await journal.begin_run("run-2")
            claim = await journal.claim("run-2", [done, undone], since=T0 + TTL)
            assert query(path, "SELECT count(*) FROM run_claims WHERE run_id = 'run-1'") == [(0,)]
            lost = await stalled.renew()
    finally:
        await stalled.close()
    assert claim.taken == [done, undone] and claim.abandoned == {undone}
    assert sorted(lost) == sorted([(done, "run-1"), (undone, "run-1")])
    assert not stalled.commit_check("run-1").may_commit(undone)


async def test_releasing_a_claimed_task_tells_the_others(tmp_path: Path) -> None:
    """A failure of a task held through a claim is handed to the next holder."""
    async with Journal.open(tmp_path / "journal.db") as journal:
        await journal.begin_run("run-a")
        await journal.claim("run-a", ["a", "b"], since=T0)
        assert await journal.release("a", "run-a", LeaseOutcome.FAILED)
        states = await journal.watch(["a", "b"])
        await journal.begin_run("run-b")
        other = await journal.claim("run-b", ["a", "b"], since=T0)
    assert states["a"] is LeaseOutcome.FAILED and isinstance(states["b"], Holder)
    assert other.taken == ["a"] and list(other.held) == ["b"]


async def test_a_claimed_task_names_the_claiming_run(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with Journal.open(path, host="box", pid=7) as journal:
        await journal.begin_run("run-a")
        await journal.claim("run-a", ["a"], since=T0)
        async with Journal.open(path, host="box", pid=8) as other:
            await other.begin_run("run-b")
            got = await other.claim("run-b", ["a"], since=T0)
    assert got.taken == [] and (got.held["a"].run_id, got.held["a"].pid) == ("run-a", 7)


async def test_a_lease_taken_outside_any_run_keeps_a_run_from_claiming_it(
    tmp_path: Path,
) -> None:
    """A live lease row of a run with no run row (as a per-task lease of an earlier
    version left it) is seen: the run alone still finds the live lease and leases
    task by task instead of claiming the lot."""
    path = tmp_path / "journal.db"
    async with Journal.open(path, host="box", pid=7) as journal:
        db = sqlite3.connect(path)
        try:
            with db:
                db.execute(
                    "INSERT INTO leases (task_id, run_id, host, pid, since, expires, ttl) "
                    "VALUES ('a', 'run-x', 'box', 7, ?, ?, ?)",
                    [time.time(), time.time() + TTL, TTL],
                )
        finally:
            db.close()
        await journal.begin_run("run-b")
        claim = await journal.claim("run-b", ["a", "b"], since=T0)
    assert claim.taken == ["b"]
    assert list(claim.held) == ["a"] and claim.held["a"].run_id == "run-x"


# ------------------------------------------------ a run, a page at a time (both backends)


class Part(asyncflow.Task):
    n = asyncflow.IntParameter()


async def _paged_run(journal: AnyJournal) -> None:
    """Run "paged": T 0..9 (every third fails, then fails its retry), then Part 0..2;
    it requested Part 0 and T 100..104 (never attempted)."""
    requested = [Part(n=0).task_id, *(T(n=100 + n).task_id for n in range(5))]
    await journal.begin_run("paged", requested, started=T0)
    for n in range(10):
        tries = 2 if n % 3 == 0 else 1
        for attempt in range(1, tries + 1):
            journal.record(TaskEvent(Event.START, T(n=n), "paged", attempt, time=T0 + n))
            if n % 3 == 0:
                error = ValueError(f"bad {n}")
                journal.record(
                    TaskEvent(Event.FAILURE, T(n=n), "paged", attempt, error, 0.1, T0 + n)
                )
            else:
                journal.record(TaskEvent(Event.SUCCESS, T(n=n), "paged", attempt, time=T0 + n))
    for n in range(3):
        journal.record(TaskEvent(Event.START, Part(n=n), "paged", 1, time=T0 + 20))
        journal.record(TaskEvent(Event.SUCCESS, Part(n=n), "paged", 1, time=T0 + 21))
    await journal.end_run("paged", RunStatus.FAILED)


async def test_a_runs_counts_name_the_task_whose_status_is_damaged(journal_where: str) -> None:
    """A status that is none of ours, met while a run's attempts are counted, is an
    error naming a task that has it (as reading the task's row is), on both backends."""
    async with open_journal(journal_where) as journal:
        await _paged_run(journal)
    damage = "UPDATE attempts SET status = 'stccess' WHERE task_id = '{}'"
    damaged = T(n=1).task_id
    if journal_where.startswith("postgresql"):
        await pg_query(journal_where, damage.format(damaged))
    else:
        with sqlite3.connect(journal_where) as db:
            db.execute(damage.format(damaged))
    for count in ("run_summary", "count_run_tasks"):
        async with open_journal(journal_where) as journal:
            with pytest.raises(JournalError, match=f"status of {damaged} 'stccess' is not one of"):
                await getattr(journal, count)("paged")


async def test_a_run_is_read_a_page_at_a_time(journal_where: str) -> None:
    """run_summary, count_run_tasks, run_tasks, run_attempts, requested and task_states
    answer alike on both backends; lists of runs hold the first requested ids."""
    async with open_journal(journal_where) as journal:
        await _paged_run(journal)
    async with open_journal(journal_where) as journal:
        summary = await journal.run_summary("paged", requested=2)
        counted = await journal.count_run_tasks("paged")
        tasks = await journal.run_tasks("paged", limit=3, offset=2)
        failed = await journal.run_tasks("paged", status=AttemptStatus.FAILED, limit=2, offset=1)
        attempts = await journal.run_attempts(
            "paged", statuses=[AttemptStatus.FAILED], limit=3, offset=1
        )
        every = await journal.run_attempts("paged")
        requested = await journal.requested("paged", limit=2, offset=1)
        unrun = await journal.requested("paged", unrun=True, limit=10)
        states = await journal.task_states("paged", {"T": 2, "Part": 5})
        [listed] = await journal.runs()
        [found] = await journal.find_runs()
        whole = await journal.run("paged")
        assert await journal.run_summary("nope") is None
    assert summary is not None and whole is not None
    assert summary.requested == (Part(n=0).task_id, T(n=100).task_id)
    assert (summary.more_requested, summary.requested_count, summary.attempts) == (4, 6, ())
    assert dict(summary.counts) == {AttemptStatus.SUCCESS: 9, AttemptStatus.FAILED: 8}
    assert dict(counted.statuses) == {AttemptStatus.SUCCESS: 9, AttemptStatus.FAILED: 4}
    assert list(counted.families.items()) == [("T", 10), ("Part", 3)]
    assert (counted.unrun, counted.attempted) == (5, 13)
    assert [(a.task_id, a.attempt) for a in tasks] == [
        (T(n=2).task_id, 1),
        (T(n=3).task_id, 1),
        (T(n=3).task_id, 2),
        (T(n=4).task_id, 1),
    ]
    assert [(a.task_id, a.attempt) for a in failed] == [
        (T(n=3).task_id, 1),
        (T(n=3).task_id, 2),
        (T(n=6).task_id, 1),
        (T(n=6).task_id, 2),
    ]
    assert [(a.task_id, a.attempt) for a in attempts] == [
        (T(n=0).task_id, 2),
        (T(n=3).task_id, 1),
        (T(n=3).task_id, 2),
    ]
    assert every == list(whole.attempts)
    assert requested == [T(n=100).task_id, T(n=101).task_id]
    assert unrun == [T(n=100 + n).task_id for n in range(5)]
    assert [(s.task_id, s.status, s.ran) for s in states] == [
        (T(n=0).task_id, AttemptStatus.FAILED, 2),
        (T(n=1).task_id, AttemptStatus.SUCCESS, 1),
        *((Part(n=n).task_id, AttemptStatus.SUCCESS, 1) for n in range(3)),
    ]
    assert whole.requested_count == 6 and whole.more_requested == 0
    for run in (listed, found):
        assert run.requested == whole.requested[:3]
        assert run.requested_count == 6
