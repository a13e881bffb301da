from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

import asyncflow
from asyncflow.errors import JournalError
from asyncflow.events import Event, TaskEvent
from asyncflow.journal import SCHEMA_VERSION, AttemptStatus, Journal, RunStatus
from asyncflow.journal.schema import APPLICATION_ID, MIGRATIONS

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000.0


class Load(asyncflow.Task):
    day = asyncflow.IntParameter()


def task_id(day: int) -> str:
    return Load(day=day).task_id


V1_RUNS = [
    ("run-a", "success", T0, T0 + 9, "box", 42, "0.1.0", json.dumps([task_id(1)]), T0 + 9),
    ("run-b", "interrupted", T0 + 10, None, "box", 43, "0.1.0", "[]", T0 + 20),
]
# (run_id, seq, day, attempt, status, started, ended, error): seq numbers one
# journal's attempts across runs, as version 1 did; rows stored out of order.
V1_ATTEMPTS = [
    ("run-a", 3, 2, 1, "success", T0 + 3, T0 + 4, None),
    ("run-a", 1, 1, 1, "failed", T0 + 1, T0 + 2, "disk full"),
    ("run-a", 2, 1, 2, "success", T0 + 2, T0 + 3, None),
    ("run-b", 5, 3, 1, "interrupted", T0 + 11, None, None),
    ("run-b", 4, 2, 1, "success", T0 + 10, T0 + 11, None),
    ("run-x", 1, 4, 0, "missing", None, T0 + 30, None),  # a run never begun
]


def write_v1_journal(path: Path) -> None:
    """A journal file as asyncflow wrote it at schema version 1."""
    db = sqlite3.connect(path)
    for statement in MIGRATIONS[0].statements:
        db.execute(statement)
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute("PRAGMA user_version = 1")
    db.executemany("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", V1_RUNS)
    db.executemany(
        "INSERT INTO attempts (run_id, seq, task_id, family, params, attempt, status, started, "
        "ended, duration, error_type, error_message, traceback) "
        "VALUES (?, ?, ?, 'Load', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                run_id,
                seq,
                task_id(day),
                json.dumps({"day": str(day)}),
                attempt,
                status,
                started,
                ended,
                None if started is None or ended is None else ended - started,
                None if error is None else "OSError",
                error,
                None if error is None else f"Traceback (most recent call last):\nOSError: {error}",
            )
            for run_id, seq, day, attempt, status, started, ended, error in V1_ATTEMPTS
        ],
    )
    db.commit()
    db.close()


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


async def test_version_1_history_survives_the_migration(tmp_path: Path) -> None:
    """A version 1 journal is migrated with its runs, attempts, order, errors and counts."""
    path = tmp_path / "journal.db"
    write_v1_journal(path)
    async with Journal.open(path) as journal:
        run_a = await journal.run("run-a")
        runs = {run.run_id: run for run in await journal.runs()}
        day_2 = await journal.attempts(task_id(2))
        done = await journal.succeeded([task_id(day) for day in range(1, 6)])
        missing = await journal.attempts(task_id(4))
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert run_a is not None
    assert [(a.task_id, a.attempt, a.status) for a in run_a.attempts] == [
        (task_id(1), 1, AttemptStatus.FAILED),
        (task_id(1), 2, AttemptStatus.SUCCESS),
        (task_id(2), 1, AttemptStatus.SUCCESS),
    ]
    failed = run_a.attempts[0]
    assert (failed.error_type, failed.error_message, failed.duration) == ("OSError", "disk full", 1)
    assert failed.traceback is not None and failed.traceback.endswith("OSError: disk full")
    assert (failed.host, failed.pid, dict(failed.params)) == ("box", 42, {"day": "1"})
    assert list(runs) == ["run-b", "run-a"]  # newest first
    assert (runs["run-a"].requested, runs["run-b"].requested) == ((task_id(1),), ())
    assert (runs["run-b"].status, runs["run-b"].host, runs["run-b"].pid) == (
        RunStatus.INTERRUPTED,
        "box",
        43,
    )
    assert runs["run-a"].counts == {AttemptStatus.FAILED: 1, AttemptStatus.SUCCESS: 2}
    assert runs["run-b"].counts == {AttemptStatus.SUCCESS: 1, AttemptStatus.INTERRUPTED: 1}
    assert [(a.run_id, a.started) for a in day_2] == [("run-a", T0 + 3), ("run-b", T0 + 10)]
    assert done == {task_id(1), task_id(2)}
    assert [(a.run_id, a.attempt, a.status) for a in missing] == [
        ("run-x", 0, AttemptStatus.MISSING)
    ]


async def test_migrated_journal_records_new_runs(tmp_path: Path) -> None:
    """After the migration, new attempts (also of an old run id) are kept beside the old."""
    path = tmp_path / "journal.db"
    write_v1_journal(path)
    async with Journal.open(path) as journal:
        await journal.begin_run("run-c")
        journal.record(TaskEvent(Event.START, Load(day=5), "run-c", time=T0 + 40))
        journal.record(TaskEvent(Event.SUCCESS, Load(day=5), "run-c", time=T0 + 41))
        await journal.end_run("run-c", RunStatus.SUCCESS)
        journal.record(TaskEvent(Event.DEPENDENCY_MISSING, Load(day=6), "run-x", time=T0 + 50))
        run_c = await journal.run("run-c")
        run_x = await journal.attempts(task_id(6))
        again = await journal.attempts(task_id(4))
    assert run_c is not None
    assert [(a.task_id, a.status, a.duration) for a in run_c.attempts] == [
        (task_id(5), AttemptStatus.SUCCESS, 1.0)
    ]
    assert [a.run_id for a in run_x] == ["run-x"]
    assert [a.run_id for a in again] == ["run-x"]  # the migrated attempt is still there
    assert query(path, "SELECT count(*) FROM attempts") == [(len(V1_ATTEMPTS) + 2,)]


async def test_a_run_ending_leaves_its_requested_list_alone(tmp_path: Path) -> None:
    """The run row that the heartbeat and the run's end change is small: the list of
    requested tasks is written once, beside it, and kept when the run id is begun again."""
    path = tmp_path / "journal.db"
    many = [task_id(day) for day in range(2_000)]
    async with Journal.open(path) as journal:
        await journal.begin_run("run-a", many)
        await journal.end_run("run-a", RunStatus.SUCCESS)
        await journal.begin_run("run-a", ["other"])
        await journal.end_run("run-a", RunStatus.FAILED)
        run = await journal.run("run-a")
    assert run is not None
    assert (run.status, run.requested) == (RunStatus.FAILED, tuple(many))
    columns = {str(row[1]) for row in query(path, "PRAGMA table_info(runs)")}
    assert "requested" not in columns
    assert query(path, "SELECT run_id FROM run_requests") == [("run-a",)]


async def test_migration_keeps_refusing_a_newer_schema(tmp_path: Path) -> None:
    """A file at a version after the last migration is refused, not migrated backwards."""
    path = tmp_path / "journal.db"
    write_v1_journal(path)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(JournalError, match=f"version {SCHEMA_VERSION + 1} is newer"):
        await Journal.open(path)
    assert query(path, "SELECT count(*) FROM attempts") == [(len(V1_ATTEMPTS),)]
