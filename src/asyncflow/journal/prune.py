"""Pruning an SQLite journal: old runs go, every task's latest success stays.

A run is pruned when it is not running, ended (or, interrupted, stopped
renewing its liveness) before the cutoff, and is not among the runs to keep.
Its attempts, requested list, run keys, claims and lease rows are deleted,
except each task's latest successful attempt, wherever that is: a task
without outputs is complete while the journal holds a success for it. A
pruned run that holds such a success keeps its ``runs`` row, requested list
and run keys, with those successes alone (its *trimmed* runs): the attempts
stay attached to their run, and its keys are not handed out again (a new key
is the greatest plus one, and would reuse a deleted one's attempt ids).

Before anything, SQLite's ``quick_check`` looks the file's pages over:
deleting rows from malformed pages would spread the damage. The latest
success of each task is looked up in both indexes of successes
(``attempts_succeeded`` and ``attempts_task``), which must agree, as
:func:`history._successes` requires: a damaged entry would otherwise make
the prune delete the success it should keep. Statuses that are none of ours
are damage too. Either refuses the prune before anything is deleted.

Deleted rows leave free pages; :func:`vacuum` gives them back to the file
system (``VACUUM``), unless another run is going on: VACUUM rewrites the
whole file, and the other run's writes would wait for it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import anyio

from .decode import Undecodable, damaged, member
from .records import AttemptStatus, RunStatus
from .retention import Pruned
from .schema import KEY_RANGE, KEY_SHIFT
from .store import Store, sqlite_errors

__all__ = ["file_size", "prune", "vacuum"]

_OURS: Final = ", ".join(repr(s.value) for s in AttemptStatus)
_RUNS_OURS: Final = ", ".join(repr(s.value) for s in RunStatus)

# Temporary tables of this connection, made and dropped in the prune's transaction.
_SETUP: Final = (
    "CREATE TEMP TABLE prune_runs (run_id TEXT PRIMARY KEY)",
    "CREATE TEMP TABLE prune_keys (key INTEGER PRIMARY KEY)",
    "CREATE TEMP TABLE prune_kept (task_id TEXT PRIMARY KEY, id INTEGER, by_task INTEGER)",
)
_TEARDOWN: Final = (
    "DROP TABLE IF EXISTS temp.prune_runs",
    "DROP TABLE IF EXISTS temp.prune_keys",
    "DROP TABLE IF EXISTS temp.prune_kept",
)
_DAMAGED_RUN: Final = f"SELECT run_id, status FROM runs WHERE status NOT IN ({_RUNS_OURS}) LIMIT 1"
# Runs not running that ended (interrupted ones: stopped renewing) before :cutoff,
# and are not among the :keep latest begun.
_CHOOSE_RUNS: Final = """
    INSERT INTO temp.prune_runs (run_id)
    SELECT run_id FROM runs
    WHERE status != 'running' AND coalesce(ended, expires) < :cutoff
      AND run_id NOT IN (SELECT run_id FROM runs ORDER BY started DESC, rowid DESC LIMIT :keep)
"""
_CHOOSE_KEYS: Final = (
    "INSERT INTO temp.prune_keys (key) SELECT key FROM run_keys "
    "WHERE run_id IN (SELECT run_id FROM temp.prune_runs)"
)
# For each task with a success among the pruned attempts, its latest success by
# each index of successes (they must agree). The pruned attempts are read by id
# range (CROSS JOIN, +status): else SQLite builds an automatic index on the status
# of every attempt first (1.7 s of 2.7 at 800,000 attempts).
_CHOOSE_KEPT: Final = f"""
    INSERT INTO temp.prune_kept (task_id, id, by_task)
    SELECT t.task_id,
           (SELECT b.id FROM attempts AS b INDEXED BY attempts_succeeded
            WHERE b.task_id = t.task_id AND b.status = 'success'
            ORDER BY b.ended DESC, b.id DESC LIMIT 1),
           (SELECT b.id FROM attempts AS b INDEXED BY attempts_task
            WHERE b.task_id = t.task_id AND b.status = 'success'
            ORDER BY b.ended DESC, b.id DESC LIMIT 1)
    FROM (SELECT DISTINCT a.task_id FROM temp.prune_keys AS k CROSS JOIN attempts AS a
          ON {KEY_RANGE} WHERE +a.status = 'success') AS t
"""
_DISAGREE: Final = (
    "SELECT task_id FROM temp.prune_kept WHERE id IS NULL OR by_task IS NULL OR id != by_task "
    "LIMIT 1"
)
# The attempts to delete: counted, with the first whose status is none of ours.
_COUNT_ATTEMPTS: Final = f"""
    SELECT count(*), min(CASE WHEN a.status NOT IN ({_OURS}) THEN a.id END)
    FROM temp.prune_keys AS k CROSS JOIN attempts AS a ON {KEY_RANGE}
    WHERE a.id NOT IN (SELECT id FROM temp.prune_kept)
"""
_BAD_STATUS: Final = "SELECT task_id, status FROM attempts WHERE id = ?"
# Pruned runs holding a kept success: trimmed, not deleted.
_TRIMMED: Final = f"""
    SELECT DISTINCT k.run_id FROM temp.prune_kept AS p
    JOIN run_keys AS k ON k.key = p.id >> {KEY_SHIFT}
    WHERE k.run_id IN (SELECT run_id FROM temp.prune_runs)
"""
_KEPT_HERE: Final = f"""
    SELECT count(*) FROM temp.prune_kept AS p
    WHERE p.id >> {KEY_SHIFT} IN (SELECT key FROM temp.prune_keys)
"""
_COUNT_LEASES: Final = (
    "SELECT count(*) FROM leases WHERE run_id IN (SELECT run_id FROM temp.prune_runs)"
)
_DELETE_ATTEMPTS: Final = (
    f"DELETE FROM attempts WHERE id BETWEEN ? << {KEY_SHIFT} "
    f"AND (? << {KEY_SHIFT}) + {(1 << KEY_SHIFT) - 1} "
    "AND id NOT IN (SELECT id FROM temp.prune_kept)"
)
_DELETE_RUNS: Final = (
    "DELETE FROM {table} WHERE run_id IN (SELECT run_id FROM temp.prune_runs) "
    "AND run_id NOT IN (SELECT value FROM json_each(:trimmed))"
)
_DELETE_LEASES: Final = "DELETE FROM {table} WHERE run_id IN (SELECT run_id FROM temp.prune_runs)"
_GOING_ON: Final = "SELECT run_id FROM runs WHERE status = 'running' LIMIT 1"


def file_size(path: Path) -> int:
    """Bytes of the journal file and its write-ahead log."""
    total = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(OSError):
            total += os.stat(f"{path}{suffix}").st_size
    return total


async def prune(store: Store, cutoff: float, keep: int, *, dry_run: bool) -> Pruned:
    """Delete (or, ``dry_run``, count) what pruning runs ended before ``cutoff``
    and not among the ``keep`` latest removes, in one transaction.

    Raises:
        JournalError: the journal is damaged (nothing is deleted), or cannot be written.
    """
    found = [str(row[0]) for row in await store.fetch("PRAGMA quick_check(5)")]
    if found != ["ok"]:  # deleting rows from malformed pages would spread the damage
        raise damaged(store.path, "quick_check: " + "; ".join(found))
    async with _transaction(store, commit=not dry_run):
        db = store.db
        for sql in _TEARDOWN + _SETUP:
            await db.execute(sql)
        for run_id, status in await store.fetch(_DAMAGED_RUN):
            with store.decoding(f"runs row {run_id!r}"):
                member(RunStatus, status, "status")
        await db.execute(_CHOOSE_RUNS, {"cutoff": cutoff, "keep": keep})
        await db.execute(_CHOOSE_KEYS)
        await db.execute(_CHOOSE_KEPT)
        for (task_id,) in await store.fetch(_DISAGREE):
            with store.decoding(f"attempts of task {task_id!r}"):
                raise Undecodable("success", task_id, "in both indexes of successes")
        [(attempts, bad)] = await store.fetch(_COUNT_ATTEMPTS)
        if bad is not None:
            for task_id, status in await store.fetch(_BAD_STATUS, [bad]):
                with store.decoding(f"attempts row {bad} of task {task_id!r}"):
                    member(AttemptStatus, status, "status")
        trimmed = [str(run_id) for (run_id,) in await store.fetch(_TRIMMED)]
        [(kept,)] = await store.fetch(_KEPT_HERE)
        [(chosen,)] = await store.fetch("SELECT count(*) FROM temp.prune_runs")
        [(leases,)] = await store.fetch(_COUNT_LEASES)
        if not dry_run:
            keys = [(key, key) for (key,) in await store.fetch("SELECT key FROM temp.prune_keys")]
            await db.executemany(_DELETE_ATTEMPTS, keys)
            named = {"trimmed": json.dumps(trimmed)}
            for table in ("runs", "run_requests", "run_keys"):
                await db.execute(_DELETE_RUNS.format(table=table), named)
            for table in ("leases", "run_claims"):
                await db.execute(_DELETE_LEASES.format(table=table))
        for sql in _TEARDOWN:
            await db.execute(sql)
    return Pruned(
        runs=int(chosen) - len(trimmed),
        trimmed=len(trimmed),
        attempts=int(attempts),
        kept=int(kept),
        leases=int(leases),
        dry_run=dry_run,
    )


async def vacuum(store: Store, *, full: bool) -> str | None:
    """Give the pages pruning freed back to the file system (``full``: VACUUM, else
    only the write-ahead log the deletes went through); or say why not.

    Skipped while a run is going on: VACUUM rewrites the whole file holding
    the write lock, and a checkpoint that empties the log waits for every
    writer; that run's writes would wait for them (up to their busy timeout).
    The freed pages are then reused by later writes instead.
    """
    going_on = await store.fetch(_GOING_ON)
    if going_on:
        return (
            f"not vacuumed: run {going_on[0][0]!r} is going on; the space freed is reused "
            "by later runs, or prune again when no run is"
        )
    async with store.lock:
        with anyio.CancelScope(shield=True), sqlite_errors(store.path, "vacuum the journal"):
            if full:
                await store.db.execute("VACUUM")
            # The deletes (and VACUUM) went through the write-ahead log, which keeps
            # its size once written: empty it into the file and truncate it.
            await store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return None


@contextlib.asynccontextmanager
async def _transaction(store: Store, *, commit: bool) -> AsyncIterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` unless ``commit``), shielded."""
    async with store.lock:
        with anyio.CancelScope(shield=True), sqlite_errors(store.path, "prune the journal"):
            await store.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                with contextlib.suppress(Exception):
                    await store.db.execute("ROLLBACK")
                raise
            await store.db.execute("COMMIT" if commit else "ROLLBACK")
