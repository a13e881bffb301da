"""The journal's SQLite schema, its migrations, and the check made on open.

A journal file is recognised by ``PRAGMA application_id`` (our marker) and
versioned by ``PRAGMA user_version``: version *n* means migrations 1..n have
been applied. Opening a file that is not SQLite, or is SQLite written by
something else, raises :class:`~asyncflow.errors.JournalError` and leaves the
file untouched; so does a journal written by a newer asyncflow.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiosqlite
import anyio
import anyio.to_thread

from .._log import log
from .._version import __version__
from ..errors import JournalError

__all__ = [
    "APPLICATION_ID",
    "KEY_RANGE",
    "KEY_SHIFT",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Migration",
    "check_identity",
    "identity",
    "prepare",
    "sniff",
]

APPLICATION_ID: Final = 0x41464C57
"""``PRAGMA application_id`` of every asyncflow journal ("AFLW")."""

KEY_SHIFT: Final = 32
"""``attempts.id`` is ``run_keys.key << KEY_SHIFT`` plus the attempt's number under that key."""

KEY_RANGE: Final = (
    f"a.id BETWEEN k.key << {KEY_SHIFT} AND (k.key << {KEY_SHIFT}) + {(1 << KEY_SHIFT) - 1}"
)
"""SQL: attempt ``a`` has run key ``k`` (an id range, so the primary key finds them)."""

_SQLITE_HEADER: Final = b"SQLite format 3\x00"

_CHECKPOINT_PAGES: Final = 400

_RECOVER: Final = "move it away, choose another journal path, or pass journal=None"


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: applied in a transaction, then ``user_version = version``."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "runs, attempts and leases",
        (
            """
            CREATE TABLE runs (
                run_id    TEXT PRIMARY KEY,
                status    TEXT NOT NULL,
                started   REAL NOT NULL,
                ended     REAL,
                host      TEXT NOT NULL,
                pid       INTEGER NOT NULL,
                version   TEXT NOT NULL,
                requested TEXT NOT NULL,  -- JSON array of task ids
                expires   REAL NOT NULL   -- liveness deadline, pushed on by the heartbeat
            )
            """,
            "CREATE INDEX runs_started ON runs (started)",
            "CREATE INDEX runs_running ON runs (run_id) WHERE status = 'running'",
            """
            CREATE TABLE attempts (
                run_id        TEXT NOT NULL,
                seq           INTEGER NOT NULL,  -- journaling order within the run
                task_id       TEXT NOT NULL,
                family        TEXT NOT NULL,
                params        TEXT NOT NULL,     -- JSON object, parameter name -> text
                attempt       INTEGER NOT NULL,  -- 1, 2, ...; 0 when nothing started
                status        TEXT NOT NULL,
                started       REAL,
                ended         REAL,
                duration      REAL,
                error_type    TEXT,
                error_message TEXT,
                traceback     TEXT,
                PRIMARY KEY (run_id, seq)
            )
            """,
            "CREATE INDEX attempts_task ON attempts (task_id, status, started)",
            "CREATE INDEX attempts_running ON attempts (run_id) WHERE status = 'running'",
            """
            CREATE TABLE leases (
                task_id      TEXT PRIMARY KEY,
                run_id       TEXT NOT NULL,
                host         TEXT NOT NULL,
                pid          INTEGER NOT NULL,
                since        REAL NOT NULL,
                expires      REAL NOT NULL,
                ttl          REAL NOT NULL,
                outcome      TEXT,  -- NULL while held; success/failed/abandoned once let go
                released     REAL,
                prev_outcome TEXT,  -- how the previous holder let go
                prev_at      REAL
            )
            """,
            "CREATE INDEX leases_held ON leases (run_id) WHERE outcome IS NULL",
        ),
    ),
    Migration(
        2,
        "attempts keyed by an integer: run key << 32 | sequence number; lighter task index",
        (
            # One key per run and journal writing attempts of it (usually one);
            # the attempts of a key are the id range key << 32 .. key << 32 | 0xFFFFFFFF,
            # so a run's attempts are read off the table's own b-tree and no
            # index on attempts.run_id has to be kept up to date on every write.
            """
            CREATE TABLE run_keys (
                key    INTEGER PRIMARY KEY,
                run_id TEXT NOT NULL
            )
            """,
            "CREATE INDEX run_keys_run ON run_keys (run_id)",
            "INSERT INTO run_keys (run_id) SELECT run_id FROM attempts GROUP BY run_id "
            "ORDER BY min(rowid)",
            """
            CREATE TABLE attempts_v2 (
                id            INTEGER PRIMARY KEY,  -- run_keys.key << 32 | journaling order
                run_id        TEXT NOT NULL,
                task_id       TEXT NOT NULL,
                family        TEXT NOT NULL,
                params        TEXT NOT NULL,     -- JSON object, parameter name -> text
                attempt       INTEGER NOT NULL,  -- 1, 2, ...; 0 when nothing started
                started       REAL,
                status        TEXT NOT NULL,
                ended         REAL,
                duration      REAL,
                error_type    TEXT,
                error_message TEXT,
                traceback     TEXT
            )
            """,
            f"""
            INSERT INTO attempts_v2
            SELECT (k.key << {KEY_SHIFT})
                       + row_number() OVER (PARTITION BY a.run_id ORDER BY a.seq),
                   a.run_id, a.task_id, a.family, a.params, a.attempt, a.started, a.status,
                   a.ended, a.duration, a.error_type, a.error_message, a.traceback
            FROM attempts AS a JOIN run_keys AS k USING (run_id)
            """,
            "DROP TABLE attempts",
            "ALTER TABLE attempts_v2 RENAME TO attempts",
            "CREATE INDEX attempts_task ON attempts (task_id, status)",
            "CREATE INDEX attempts_running ON attempts (run_id) WHERE status = 'running'",
        ),
    ),
    Migration(
        3,
        "claims: the leases of a batch of tasks in one row, while no other run is going on",
        (
            # A run's claims last as long as the run (runs.expires, runs.status).
            """
            CREATE TABLE run_claims (
                id       INTEGER PRIMARY KEY,
                run_id   TEXT NOT NULL,
                since    REAL NOT NULL,
                ttl      REAL NOT NULL,
                task_ids TEXT NOT NULL  -- JSON array
            )
            """,
        ),
    ),
    Migration(
        4,
        "a run's requested task ids in a table of their own",
        (
            # SQLite rewrites a whole row to change any column of it: a run
            # requesting 10,000 tasks made every heartbeat and the run's end
            # write its 300 KB list again (and, where deleted rows are zeroed,
            # the old copy too). The runs rows stay small; the list is written once.
            """
            CREATE TABLE run_requests (
                run_id    TEXT PRIMARY KEY,
                requested TEXT NOT NULL  -- JSON array of task ids
            )
            """,
            "INSERT INTO run_requests (run_id, requested) SELECT run_id, requested FROM runs",
            """
            CREATE TABLE runs_v4 (
                run_id  TEXT PRIMARY KEY,
                status  TEXT NOT NULL,
                started REAL NOT NULL,
                ended   REAL,
                host    TEXT NOT NULL,
                pid     INTEGER NOT NULL,
                version TEXT NOT NULL,
                expires REAL NOT NULL   -- liveness deadline, pushed on by the heartbeat
            )
            """,
            "INSERT INTO runs_v4 (rowid, run_id, status, started, ended, host, pid, version, "
            "expires) SELECT rowid, run_id, status, started, ended, host, pid, version, expires "
            "FROM runs",
            "DROP TABLE runs",
            "ALTER TABLE runs_v4 RENAME TO runs",
            "CREATE INDEX runs_started ON runs (started)",
            "CREATE INDEX runs_running ON runs (run_id) WHERE status = 'running'",
        ),
    ),
    Migration(
        5,
        "the attempts of a family, in id order (the web pages' family filter)",
        (
            # Entries are (family, id), so the runs with attempts of a family are
            # found by skipping from one run's id range to the next: a look-up
            # per run, where the task index needs a row look-up per attempt.
            "CREATE INDEX attempts_family ON attempts (family)",
        ),
    ),
    Migration(
        6,
        "attempts: the worker a body ran on, when not in the run's own process",
        # NULL: in the run's process (runs.host, runs.pid); else where it ran,
        # such as a Dask worker's address. Written with the attempt's end.
        ("ALTER TABLE attempts ADD COLUMN worker TEXT",),
    ),
    Migration(
        7,
        "attempts: what a running attempt last said of itself (status message, progress, URL)",
        # Set by the task body (set_status_message(), set_progress_percentage(),
        # set_tracking_url()); NULL when never said. Written with the attempt's
        # row batch, latest value only.
        (
            "ALTER TABLE attempts ADD COLUMN status_message TEXT",
            "ALTER TABLE attempts ADD COLUMN progress_percentage REAL",
            "ALTER TABLE attempts ADD COLUMN tracking_url TEXT",
        ),
    ),
    Migration(
        8,
        "runs: the kernel boot and PID namespace of a run's pid; a second index of successes",
        (
            # NULL (runs of earlier versions, or where /proc does not tell): the
            # pid cannot be checked, and the run is judged by its expiry alone.
            "ALTER TABLE runs ADD COLUMN node TEXT",
            # The successes of tasks are looked up in both this index and
            # attempts_task, and the two must agree: a damaged entry in either
            # (a flipped byte in a task id) would otherwise make a recorded
            # success vanish without a sign, and the task run again.
            "CREATE INDEX attempts_succeeded ON attempts (task_id, status) "
            "WHERE status = 'success'",
        ),
    ),
    Migration(
        9,
        "fencing tokens: every lease and claim carries one, from one counter that only grows",
        # A take (a claim, or the lease rows of one statement) draws the next
        # token; rows a claim is split into keep the claim's. A success is
        # journaled only while its token is the task's greatest. Rows of
        # earlier versions get 0: any token drawn from now on is greater.
        (
            "ALTER TABLE leases ADD COLUMN token INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE run_claims ADD COLUMN token INTEGER NOT NULL DEFAULT 0",
            """
            CREATE TABLE fencing (
                one  INTEGER PRIMARY KEY CHECK (one = 1),
                last INTEGER NOT NULL  -- the last token drawn
            )
            """,
            "INSERT INTO fencing (one, last) VALUES (1, 0)",
        ),
    ),
)

SCHEMA_VERSION: Final = MIGRATIONS[-1].version


_EMPTIED: Final = (
    "is empty (0 bytes), so not a journal: a journal is never empty, and one emptied "
    "has lost its record of what succeeded; to start a new journal, delete the file "
    "(the outputs remain the truth of what is done)"
)

_NOT_FILES: Final = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


async def sniff(path: Path) -> bool:
    """Refuse, before SQLite touches it, a path that is not a journal file.

    Returns whether a file is there: where none is, a new journal may be made.
    An empty file is refused: a new journal is made whole at once (see
    :func:`asyncflow.journal.store.Store.connect`), so a journal of 0 bytes
    is one that was emptied, not a new one.

    Raises:
        JournalError: the path is a folder, a FIFO, a device or any other
            non-regular file (refused without opening it), is empty, cannot
            be read, or is not SQLite.
    """
    problem, found = await anyio.to_thread.run_sync(_header_problem, path)
    if problem is not None:
        recover = "" if problem == _EMPTIED else f"; {_RECOVER}"
        raise JournalError(f"{path}: {problem}{recover}")
    return found


def _header_problem(path: Path) -> tuple[str | None, bool]:
    try:
        # stat before open: opening a FIFO blocks until a writer comes, a device
        # may do anything.
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _NOT_FILES if test(mode)), "not a regular file")
            return f"is {kind}, not a journal file", True
        with open(path, "rb") as file:
            header = file.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return None, False
    except OSError as exc:
        return f"cannot be read ({os.strerror(exc.errno or 0) or exc})", True
    if not header:
        return _EMPTIED, True
    if header != _SQLITE_HEADER:
        return "is not an asyncflow journal (not an SQLite database)", True
    return None, True


async def prepare(db: aiosqlite.Connection, path: Path, busy_timeout: float = 30.0) -> None:
    """Check that ``db`` is ours (or empty), then bring its schema up to date.

    Identity is checked before anything is written, so a foreign database is
    never switched to WAL or given our tables.

    Raises:
        JournalError: foreign or newer database.
    """
    app_id, version, objects = await identity(db)
    check_identity(path, app_id, version, objects)
    mode = await _switch_to_wal(db, busy_timeout)
    if str(mode[0]).lower() != "wal":
        # e.g. a file system without shared memory; still correct, only slower readers.
        log.warning("journal.no_wal", path=str(path), journal_mode=mode[0])
    await db.execute("PRAGMA synchronous=NORMAL")
    # Some builds (Debian's) zero every page a delete frees: dropping the claims
    # of a 1,000,000-task run (31 rows of 1.3 MB of task ids) wrote 40 MB of
    # zeros, 0.23 s at the run's end. FAST zeroes what it can without more I/O.
    await db.execute("PRAGMA secure_delete = FAST")
    # Copy the WAL into the file every 400 pages (SQLite: 1,000), during commits
    # in the database thread while runs go on, rather than all at once when the
    # journal closes, as a run ends. Not much more often: a checkpoint at a
    # commit the loop waits for (a run's claim, its end) costs the run that time
    # (400 against 128: 5 ms less per 10,000-task run).
    await db.execute(f"PRAGMA wal_autocheckpoint = {_CHECKPOINT_PAGES:d}")
    if version == SCHEMA_VERSION:
        return
    # The missing migrations as one script: one transaction, one trip to the
    # database thread. If another process created or migrated the file since
    # we looked, a statement fails ("table runs already exists"): roll back and
    # look again.
    steps = [
        *(
            statement
            for migration in MIGRATIONS[version:]
            for statement in (*migration.statements, f"PRAGMA user_version = {migration.version:d}")
        ),
        f"PRAGMA application_id = {APPLICATION_ID:d}",
    ]
    try:
        await db.executescript(";\n".join(["BEGIN IMMEDIATE", *steps, "COMMIT;"]))
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            await db.execute("ROLLBACK")
        app_id, version, objects = await identity(db)
        check_identity(path, app_id, version, objects)
        if version != SCHEMA_VERSION:
            raise


async def _switch_to_wal(db: aiosqlite.Connection, busy_timeout: float) -> tuple[Any, ...]:
    """``PRAGMA journal_mode=WAL``, waiting out another process doing the same.

    While another connection switches a new file to WAL, SQLite answers "database
    is locked" at once, without waiting ``busy_timeout``: so wait here.
    """
    deadline = time.monotonic() + busy_timeout
    pause = 0.005
    while True:
        try:
            return await _fetch_one(db, "PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() + pause > deadline:
                raise
        await anyio.sleep(pause)
        pause = min(pause * 2, 0.1)


async def identity(db: aiosqlite.Connection) -> tuple[int, int, int]:
    """``application_id``, ``user_version`` and the number of schema objects."""
    row = await _fetch_one(
        db,
        "SELECT a.application_id, v.user_version, (SELECT count(*) FROM sqlite_master) "
        "FROM pragma_application_id() AS a, pragma_user_version() AS v",
    )
    return int(row[0]), int(row[1]), int(row[2])


def check_identity(path: Path, app_id: int, version: int, objects: int) -> None:
    """Refuse a database that is not ours (unless empty), or newer than we know.

    Raises:
        JournalError: foreign or newer database.
    """
    if app_id == 0 and version == 0 and objects == 0:
        return  # a new, empty database: ours to create
    if app_id != APPLICATION_ID:
        raise JournalError(
            f"{path}: is an SQLite database but not an asyncflow journal "
            f"(application_id {app_id:#x}, {objects} schema object(s)); {_RECOVER}"
        )
    if version > SCHEMA_VERSION:
        raise JournalError(
            f"{path}: journal schema version {version} is newer than asyncflow "
            f"{__version__} supports (schema version {SCHEMA_VERSION}); upgrade asyncflow, "
            "or use another journal path"
        )


async def _fetch_one(db: aiosqlite.Connection, sql: str) -> tuple[Any, ...]:
    rows = list(await db.execute_fetchall(sql))
    return tuple(rows[0])
