from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

import asyncflow
from asyncflow.errors import JournalError
from asyncflow.events import Event, TaskEvent
from asyncflow.journal import AttemptStatus, Journal
from asyncflow.journal import rows as _journal_rows
from asyncflow.journal.rows import ROWS_PER_STATEMENT

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000.0


class Part(asyncflow.Task):
    n = asyncflow.IntParameter()


def happened(kind: Event, n: int, at: float, error: BaseException | None = None) -> TaskEvent:
    return TaskEvent(kind, Part(n=n), "run-1", 1, error, None, at)


async def test_every_shape_of_row_is_written_in_one_batch(tmp_path: Path) -> None:
    """New running, ended and failed attempts, and endings of written ones, all land."""
    many = 2 * ROWS_PER_STATEMENT + 7  # full statements, then one per bit of the rest
    async with Journal.open(tmp_path / "journal.db", flush_interval=60) as journal:
        await journal.begin_run("run-1")
        for n in range(many):
            journal.record(happened(Event.START, n, T0))
        for n in range(0, many, 3):
            journal.record(happened(Event.SUCCESS, n, T0 + 1))
        await journal.flush()  # running and ended rows
        for n in range(1, many, 3):
            journal.record(happened(Event.FAILURE, n, T0 + 2, OSError(f"no {n}")))
        for n in range(many, 2 * many):
            journal.record(happened(Event.START, n, T0 + 3))
            journal.record(happened(Event.SUCCESS, n, T0 + 4))
        journal.record(happened(Event.START, 2 * many, T0 + 5))
        journal.record(happened(Event.FAILURE, 2 * many, T0 + 6, OSError("late")))
        await journal.flush()  # endings of written rows, new ended and failed rows
        stats = journal.statistics()
        run = await journal.run("run-1")
    assert run is not None
    by_n = {int(a.params["n"]): a for a in run.attempts}
    assert sorted(by_n) == list(range(2 * many + 1))
    assert [int(a.params["n"]) for a in run.attempts] == list(range(2 * many + 1))  # in order
    for n in range(many):
        attempt = by_n[n]
        if n % 3 == 0:
            assert (attempt.status, attempt.ended, attempt.duration) == (
                AttemptStatus.SUCCESS,
                T0 + 1,
                1.0,
            )
        elif n % 3 == 1:
            assert (attempt.status, attempt.error_message, attempt.duration) == (
                AttemptStatus.FAILED,
                f"no {n}",
                2.0,
            )
        else:
            assert (attempt.status, attempt.ended, attempt.error_type) == (
                AttemptStatus.RUNNING,
                None,
                None,
            )
    assert {by_n[n].status for n in range(many, 2 * many)} == {AttemptStatus.SUCCESS}
    late = by_n[2 * many]
    assert (late.status, late.started, late.error_message) == (AttemptStatus.FAILED, T0 + 5, "late")
    assert stats.rows_written == many + len(range(1, many, 3)) + many + 1 + 1  # + the run row


async def test_two_journals_recording_one_run_keep_all_attempts(tmp_path: Path) -> None:
    """Attempts of one run recorded through two journals do not overwrite each other."""
    path = tmp_path / "journal.db"
    async with Journal.open(path) as first, Journal.open(path) as second:
        await first.begin_run("run-1")
        for journal, n in ((first, 1), (second, 2), (first, 3)):
            journal.record(happened(Event.START, n, T0 + n))
            journal.record(happened(Event.SUCCESS, n, T0 + n + 0.5))
            await journal.flush()
        run = await first.run("run-1")
    assert run is not None
    assert sorted(a.params["n"] for a in run.attempts) == ["1", "2", "3"]


async def test_attempts_of_a_run_ended_and_begun_again_are_all_kept(tmp_path: Path) -> None:
    """A run id begun again after its end gets its attempts added, not renumbered over."""
    async with Journal.open(tmp_path / "journal.db") as journal:
        for n in (1, 2):
            await journal.begin_run("run-1")
            journal.record(happened(Event.START, n, T0 + n))
            await journal.end_run("run-1", asyncflow.journal.RunStatus.FAILED)
        run = await journal.run("run-1")
    assert run is not None
    assert [(a.params["n"], a.status) for a in run.attempts] == [
        ("1", AttemptStatus.INTERRUPTED),
        ("2", AttemptStatus.INTERRUPTED),
    ]


@pytest.mark.parametrize("one_trip", [False, True])
@pytest.mark.parametrize("limit", [32_766, 999])
@pytest.mark.parametrize("width", [6, 7, 9])
def test_statements_bind_every_row_once_within_the_variable_limit(
    monkeypatch: pytest.MonkeyPatch, limit: int, width: int, one_trip: bool
) -> None:
    """Batches of any size become few statements (one, in one trip, once a batch
    fills a whole statement), each under SQLite's variable limit; the padding repeats
    rows already there, so the rows written are exactly the batch, and the run id is
    bound once per execution."""
    monkeypatch.setattr(_journal_rows, "_MAX_VARIABLES", limit)
    inserts = _journal_rows._Inserts(width, "*")
    for count in [0, 1, 31, 32, 33, 100, 999, 1023, 1024, 1025, 4000]:
        values: list[object] = [(n, column) for n in range(count) for column in range(width)]
        statements = inserts.statements("run-1", values, one_trip=one_trip)
        if one_trip and count >= inserts._most:  # at least one whole statement
            assert len(statements) == 1
        rows = set()
        for sql, executions in statements:
            for params in executions:
                assert len(params) == 1 + sql.count("(?") * width <= limit
                assert params[0] == "run-1"
                rows.update(tuple(params[i : i + width]) for i in range(1, len(params), width))
        assert rows == {tuple((n, c) for c in range(width)) for n in range(count)}
        assert len(statements) <= 2


def test_every_row_shape_lands_with_its_run_id(tmp_path: Path) -> None:
    """Rows of two runs applied in one batch are written under their own run ids, and a
    success row gets its status and its duration (end - start, never negative) from SQL."""
    recorder = _journal_rows.Recorder()
    recorder.add_run("run-a", 1)
    recorder.add_run("run-b", 2)
    events = [
        TaskEvent(Event.START, Part(n=1), "run-a", 1, None, None, T0),
        TaskEvent(Event.START, Part(n=2), "run-b", 1, None, None, T0),
        TaskEvent(Event.SUCCESS, Part(n=1), "run-a", 1, None, None, T0 + 0.25),
        TaskEvent(Event.START, Part(n=3), "run-a", 1, None, None, T0 + 1),
        TaskEvent(Event.SUCCESS, Part(n=3), "run-a", 1, None, None, T0 + 0.5),  # clock went back
        TaskEvent(Event.START, Part(n=4), "run-b", 1, None, None, T0),
        TaskEvent(Event.CANCELLED, Part(n=4), "run-b", 1, None, 2.0, T0 + 3),
    ]
    assert recorder.apply(events) == []
    db = sqlite3.connect(tmp_path / "rows.db")
    others = ", ".join(_journal_rows.ATTEMPT_COLUMNS[1:])
    db.execute(f"CREATE TABLE attempts (id INTEGER PRIMARY KEY, {others})")
    for sql, executions in _journal_rows.attempt_statements(recorder.take()):
        db.executemany(sql, executions)
    found = db.execute(
        "SELECT run_id, task_id, status, started, ended, duration FROM attempts ORDER BY id"
    ).fetchall()
    assert found == [
        ("run-a", Part(n=1).task_id, "success", T0, T0 + 0.25, 0.25),
        ("run-a", Part(n=3).task_id, "success", T0 + 1, T0 + 0.5, 0.0),
        ("run-b", Part(n=2).task_id, "running", T0, None, None),
        ("run-b", Part(n=4).task_id, "cancelled", T0, T0 + 3, 2.0),
    ]
    ended = recorder.end_run("run-a")
    assert ended is not None
    assert set(ended.journaled) == {Part(n=1).task_id, Part(n=3).task_id}  # (their rows)
    assert ended.failing == set()  # both succeeded
    ended = recorder.end_run("run-b")
    assert ended is not None
    # The running attempt is interrupted by the run's end; the cancelled one failed.
    assert ended.failing == {Part(n=2).task_id, Part(n=4).task_id}
    asked = [Part(n=n).task_id for n in range(6)]
    assert list(ended.never_journaled(asked)) == [asked[0], asked[1], asked[3], asked[5]]
    for sql, executions in _journal_rows.attempt_statements(recorder.take()):
        db.executemany(sql, executions)
    [(status,)] = db.execute("SELECT status FROM attempts WHERE task_id = ?", [asked[2]])
    assert status == "interrupted"


async def test_recorded_events_become_rows_without_keeping_their_tasks(tmp_path: Path) -> None:
    """Events are folded into rows as they come, a few hundred at a time: the tasks
    they name are not kept alive until the writer runs, and attempts whose START and
    ending fall on either side of a fold are written whole."""
    import gc
    import weakref

    count = 1000
    async with Journal.open(tmp_path / "journal.db", flush_interval=60) as journal:
        await journal.begin_run("run-1")
        tasks = [Part(n=n) for n in range(count)]
        alive = [weakref.ref(task) for task in tasks]
        for task in tasks:
            journal.record(TaskEvent(Event.START, task, "run-1", 1, None, None, T0))
        for task in tasks:
            journal.record(TaskEvent(Event.SUCCESS, task, "run-1", 1, None, None, T0 + 1))
        del tasks, task
        gc.collect()
        assert journal.statistics().pending_events == 2 * count  # nothing written yet
        assert sum(ref() is not None for ref in alive) < 256
        run = await journal.run("run-1")
    assert run is not None
    assert [(int(a.params["n"]), a.status, a.duration) for a in run.attempts] == [
        (n, AttemptStatus.SUCCESS, 1.0) for n in range(count)
    ]


async def test_events_of_a_run_without_a_key_keep_their_order(tmp_path: Path) -> None:
    """Events of a run this journal did not begin wait for the run's key, across
    folds and concurrent flushes, and are applied in the order they were recorded."""
    path = tmp_path / "journal.db"
    async with Journal.open(path) as first, Journal.open(path, flush_interval=60) as second:
        await first.begin_run("run-1")
        for n in range(300):  # 600 events, two folds while the run has no key here
            second.record(happened(Event.START, n, T0))
            second.record(happened(Event.SUCCESS, n, T0 + 1))
        async with anyio.create_task_group() as tg:
            tg.start_soon(second.flush)
            second.record(happened(Event.START, 300, T0 + 2))
            tg.start_soon(second.flush)
            second.record(happened(Event.FAILURE, 300, T0 + 3, OSError("late")))
            tg.start_soon(second.flush)
        run = await first.run("run-1")
    assert run is not None
    found = [(int(a.params["n"]), a.attempt, a.status) for a in run.attempts]
    assert found == [(n, 1, AttemptStatus.SUCCESS) for n in range(300)] + [
        (300, 1, AttemptStatus.FAILED)
    ]


class _Unwritable(asyncflow.Parameter[str]):
    def serialize(self, value: str) -> str:
        raise RuntimeError("cannot write this value")


class Odd(asyncflow.Task):
    n = asyncflow.IntParameter()
    note = _Unwritable(default="x", significant=False)


async def test_events_that_cannot_become_rows_stop_the_journal_loudly(tmp_path: Path) -> None:
    """A parameter that cannot be written fails the journal with a JournalError naming
    the file, as the writer would: nothing is dropped quietly, later records are refused."""
    journal = await Journal.open(tmp_path / "journal.db", flush_interval=60)
    try:
        await journal.begin_run("run-1")
        for n in range(255):  # the 256th folds them into rows
            journal.record(TaskEvent(Event.START, Odd(n=n), "run-1", 1, None, None, T0))
        last = TaskEvent(Event.START, Odd(n=255), "run-1", 1, None, None, T0)
        with pytest.raises(JournalError, match=r"cannot journal events.*cannot write this value"):
            journal.record(last)
        with pytest.raises(JournalError, match=r"journal\.db"):
            journal.record(TaskEvent(Event.START, Odd(n=999), "run-1", 1, None, None, T0))
        with pytest.raises(JournalError):
            await journal.close()
    finally:
        with contextlib.suppress(JournalError):
            await journal.close()


async def test_attempts_whose_bodies_ran_elsewhere_keep_their_worker(tmp_path: Path) -> None:
    """The worker an ending event names is kept with the attempt, whatever its other
    ending events and batches; attempts run in the run's own process have none."""
    worker = "tcp://10.0.0.7:4567"

    def event(kind: Event, n: int, at: float, error: Exception | None, where: str | None) -> Any:
        return TaskEvent(kind, Part(n=n), "run-1", 1, error, None, at, where)

    async with Journal.open(tmp_path / "journal.db", flush_interval=60) as journal:
        await journal.begin_run("run-1")
        for n in range(1, 6):
            journal.record(event(Event.START, n, T0, None, None))
        await journal.flush()  # 1-5 written as running
        journal.record(event(Event.SUCCESS, 1, T0 + 1, None, worker))
        journal.record(event(Event.START, 6, T0 + 1, None, None))
        journal.record(event(Event.SUCCESS, 6, T0 + 2, None, worker))  # new in this batch
        timeout = TimeoutError("too slow")
        journal.record(event(Event.TIMEOUT, 2, T0 + 3, timeout, worker))
        journal.record(event(Event.RETRY, 2, T0 + 3, timeout, worker))  # the same attempt
        journal.record(event(Event.FAILURE, 3, T0 + 4, OSError("here"), None))
        journal.record(event(Event.SUCCESS, 4, T0 + 5, None, None))
        journal.record(event(Event.CANCELLED, 5, T0 + 6, None, "dask"))
        await journal.flush()
        run = await journal.run("run-1")
    assert run is not None
    found = {int(a.params["n"]): (a.status, a.worker, a.error_type, a.ended) for a in run.attempts}
    assert found == {
        1: (AttemptStatus.SUCCESS, worker, None, T0 + 1),
        2: (AttemptStatus.TIMEOUT, worker, "TimeoutError", T0 + 3),
        3: (AttemptStatus.FAILED, None, "OSError", T0 + 4),
        4: (AttemptStatus.SUCCESS, None, None, T0 + 5),
        5: (AttemptStatus.CANCELLED, "dask", None, T0 + 6),
        6: (AttemptStatus.SUCCESS, worker, None, T0 + 2),
    }
