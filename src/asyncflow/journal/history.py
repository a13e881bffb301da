"""Reading the journal: what succeeded, how many attempts failed, runs and attempts.

Every row read is decoded strictly (:mod:`asyncflow.journal.decode`): a
damaged one raises :class:`~asyncflow.errors.JournalError`, never a record
half made of it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from types import MappingProxyType
from typing import Any, Final

from .decode import (
    Undecodable,
    integer,
    json_params,
    json_texts,
    member,
    optional_real,
    optional_text,
    real,
    text,
)
from .records import (
    AttemptRecord,
    AttemptStatus,
    RunRecord,
    RunStatus,
    RunTasks,
    TaskState,
    TaskSummary,
)
from .schema import KEY_RANGE, KEY_SHIFT
from .store import Store

__all__ = [
    "attempt_record",
    "attempts",
    "by_status",
    "count_run_tasks",
    "count_runs",
    "find_runs",
    "find_tasks",
    "prior_attempts",
    "requested",
    "run",
    "run_attempts",
    "run_record",
    "run_summary",
    "run_tasks",
    "runs",
    "succeeded",
    "succeeded_under",
    "task_state",
    "task_states",
]

LISTED_REQUESTED: Final = 3
"""Requested task ids a list of runs holds of each run (the others are counted)."""

_RUN: Final = (
    "SELECT r.run_id, r.status, r.started, r.ended, r.host, r.pid, r.version, q.requested "
    "FROM runs AS r LEFT JOIN run_requests AS q USING (run_id) WHERE r.run_id = :run"
)
# Runs with the first :first requested ids (a JSON array) and how many there are: a
# list of runs that requested 100,000 tasks each does not decode them all.
_RUNS: Final = (
    "SELECT r.run_id, r.status, r.started, r.ended, r.host, r.pid, r.version, "
    "(SELECT json_group_array(value) FROM "
    "(SELECT value FROM json_each(q.requested) LIMIT :first)), "
    "json_array_length(q.requested) "
    "FROM runs AS r LEFT JOIN run_requests AS q USING (run_id)"
)
_ATTEMPT_COLUMNS: Final = (
    "a.run_id, a.task_id, a.family, a.params, a.attempt, a.status, a.started, a.ended, "
    "a.duration, a.error_type, a.error_message, a.traceback, r.host, r.pid, a.worker, "
    "a.status_message, a.progress_percentage, a.tracking_url"
)
_ATTEMPTS_WITH_RUN: Final = (
    f"SELECT {_ATTEMPT_COLUMNS} FROM attempts AS a LEFT JOIN runs AS r USING (run_id)"
)
# The attempts of a run: the id range of each of its keys (see rows.py).
_RUN_ATTEMPTS: Final = f"run_keys AS k JOIN attempts AS a ON {KEY_RANGE}"

# The attempts of many runs (a JSON array of run ids), counted by status.
_COUNTS: Final = (
    f"SELECT k.run_id, a.status, count(*) FROM {_RUN_ATTEMPTS} "
    "WHERE k.run_id IN (SELECT value FROM json_each(?)) GROUP BY k.run_id, a.status"
)


async def succeeded(store: Store, task_ids: Sequence[str]) -> set[str]:
    if not task_ids:
        return set()
    rows = await store.fetch(_SUCCEEDED, [json.dumps(list(task_ids))])
    return _successes(store, rows)


async def succeeded_under(store: Store, prefix: str, limit: int) -> set[str] | None:
    """The ids starting with ``prefix`` that have a successful attempt, or None if
    there are more than ``limit`` of them (then nothing more is read)."""
    if not prefix:
        raise ValueError("succeeded_under() needs a non-empty prefix")
    # The ids >= prefix and < the prefix with its last character incremented: a
    # range of each index of successes.
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    rows = await store.fetch(_SUCCEEDED_UNDER, {"low": prefix, "high": end, "limit": limit + 1})
    if sum(1 for row in rows if row[2]) > limit or sum(1 for row in rows if not row[2]) > limit:
        return None
    return _successes(store, rows)


def _successes(store: Store, rows: Iterable[Any]) -> set[str]:
    """The task ids of ``(task_id, status, second)`` rows of successes from both
    indexes (``second``: from attempts_succeeded). Any status that is none of ours
    is a damaged row, an error (it must not read as "run it again"); so is an id
    that one index has and the other has not."""
    found: set[str] = set()
    indexed: set[str] = set()  # by attempts_succeeded
    for task_id, status, second in rows:
        if second:
            indexed.add(task_id)
        elif status == AttemptStatus.SUCCESS:
            found.add(task_id)
        else:  # none of ours: a damaged success reads as none
            with store.decoding(f"attempts of task {task_id!r}"):
                member(AttemptStatus, status, "status")
    if found != indexed:
        task_id = min(found ^ indexed)
        with store.decoding(f"attempts of task {task_id!r}"):
            raise Undecodable("success", task_id, "in both indexes of successes")
    return found


# Many task ids go in as one JSON array. The array is read first (CROSS JOIN
# keeps that order) and each id looked up in the index: about a tenth of the
# cost of ``IN (SELECT value FROM json_each(...))``, which first builds a
# temporary index of the array. Statuses that are none of ours come too: a
# damaged success must stop the run, not make it run the task again. Each id
# is looked up in both indexes that hold successes (only the indexes are read),
# and the two must agree: a damaged byte in an index entry's task id would
# otherwise hide a success (the task would run again) without a sign.
_SUCCEEDED: Final = (
    "SELECT DISTINCT a.task_id, a.status, 0 FROM json_each(:ids) AS j "
    "CROSS JOIN attempts AS a INDEXED BY attempts_task "
    "ON a.task_id = j.value AND (a.status = 'success' OR a.status NOT IN "
    f"({', '.join(repr(s.value) for s in AttemptStatus)})) "
    "UNION ALL "
    "SELECT DISTINCT a.task_id, 'success', 1 FROM json_each(:ids) AS j "
    "CROSS JOIN attempts AS a INDEXED BY attempts_succeeded "
    "ON a.task_id = j.value AND a.status = 'success'"
)
# The same for a range of task ids (those sharing a prefix), in each index; each
# part stops one row past the caller's limit.
_SUCCEEDED_UNDER: Final = (
    "SELECT * FROM (SELECT DISTINCT a.task_id, a.status, 0 "
    "FROM attempts AS a INDEXED BY attempts_task "
    "WHERE a.task_id >= :low AND a.task_id < :high AND (a.status = 'success' OR a.status "
    f"NOT IN ({', '.join(repr(s.value) for s in AttemptStatus)})) LIMIT :limit) "
    "UNION ALL "
    "SELECT * FROM (SELECT DISTINCT a.task_id, 'success', 1 "
    "FROM attempts AS a INDEXED BY attempts_succeeded "
    "WHERE a.task_id >= :low AND a.task_id < :high AND a.status = 'success' LIMIT :limit)"
)


# Failed attempts of a task in runs that were interrupted (killed) after its
# last success and after its last run that ended: what a resumed run has used
# of the task's retries. Attempts cut short by the kill itself do not count.
_PRIOR_ATTEMPTS: Final = """
    SELECT a.task_id, count(*)
    FROM json_each(:ids) AS j CROSS JOIN attempts AS a ON a.task_id = j.value
    JOIN runs AS r ON r.run_id = a.run_id
    WHERE r.status = 'interrupted' AND a.attempt > 0 AND a.status IN ('failed', 'timeout')
      AND coalesce(a.started, a.ended) > coalesce((
          SELECT max(coalesce(b.started, b.ended)) FROM attempts AS b JOIN runs AS s USING (run_id)
          WHERE b.task_id = a.task_id
            AND (b.status = 'success' OR s.status NOT IN ('interrupted', 'running'))
      ), -1e308)
    GROUP BY a.task_id
"""


async def prior_attempts(store: Store, task_ids: Iterable[str]) -> dict[str, int]:
    if not await store.fetch("SELECT 1 FROM runs WHERE status = 'interrupted' LIMIT 1"):
        return {}
    ids = list(dict.fromkeys(task_ids))
    if not ids:
        return {}
    rows = await store.fetch(_PRIOR_ATTEMPTS, {"ids": json.dumps(ids)})
    return {str(task_id): int(count) for task_id, count in rows}


async def runs(store: Store, limit: int) -> list[RunRecord]:
    rows = await store.fetch(
        f"{_RUNS} ORDER BY r.started DESC, r.rowid DESC LIMIT :limit",
        {"limit": limit, "first": LISTED_REQUESTED},
    )
    return await _counted(store, rows)


async def _counted(store: Store, rows: Sequence[Sequence[Any]]) -> list[RunRecord]:
    """Run records of ``rows`` (of ``_RUNS``), with their attempts counted by status."""
    counts: dict[str, dict[AttemptStatus, int]] = {str(row[0]): {} for row in rows}
    if counts:
        tallies = await store.fetch(_COUNTS, [json.dumps(list(counts))])
        for run_id, status, count in tallies:
            with store.decoding(f"attempts of run {run_id!r}"):
                counts[str(run_id)][member(AttemptStatus, status, "status")] = int(count)
    with store.decoding("runs"):
        return [run_record(row, counts[str(row[0])], ()) for row in rows]


async def run(store: Store, run_id: str) -> RunRecord | None:
    rows = await store.fetch(_RUN, {"run": run_id})
    if not rows:
        return None
    found = await store.fetch(
        f"SELECT {_ATTEMPT_COLUMNS} FROM {_RUN_ATTEMPTS} "
        "LEFT JOIN runs AS r ON r.run_id = k.run_id WHERE k.run_id = ? ORDER BY a.id",
        [run_id],
    )
    with store.decoding(f"attempts of run {run_id!r}"):
        attempts = tuple(attempt_record(row) for row in found)
    counts: dict[AttemptStatus, int] = {}
    for attempt in attempts:
        counts[attempt.status] = counts.get(attempt.status, 0) + 1
    with store.decoding(f"runs row {run_id!r}"):
        return run_record(rows[0], counts, attempts)


async def attempts(store: Store, task_id: str) -> list[AttemptRecord]:
    rows = await store.fetch(
        f"{_ATTEMPTS_WITH_RUN} WHERE a.task_id = ? ORDER BY coalesce(a.started, a.ended), a.id",
        [task_id],
    )
    with store.decoding(f"attempts of task {task_id!r}"):
        return [attempt_record(row) for row in rows]


def run_record(
    row: Sequence[Any], counts: dict[AttemptStatus, int], attempts: tuple[AttemptRecord, ...]
) -> RunRecord:
    """A run record from a row of ``_RUN`` (the whole requested list), or of ``_RUNS``
    (its first ids and how many there are).

    Raises:
        Undecodable: a value of the row is not what its column holds.
    """
    run_id, status, started, ended, host, pid, version, requested = row[:8]
    run_id = text(run_id, "run_id")
    listed = (
        () if requested is None else tuple(json_texts(requested, f"requested of run {run_id!r}"))
    )
    more = 0
    if len(row) > 8 and row[8] is not None:
        more = integer(row[8], f"requested count of run {run_id!r}") - len(listed)
    return RunRecord(
        run_id,
        member(RunStatus, status, f"status of run {run_id!r}"),
        real(started, f"started of run {run_id!r}"),
        optional_real(ended, f"ended of run {run_id!r}"),
        text(host, f"host of run {run_id!r}"),
        integer(pid, f"pid of run {run_id!r}"),
        text(version, f"version of run {run_id!r}"),
        listed,
        MappingProxyType(counts),
        attempts,
        max(more, 0),
    )


def attempt_record(row: Sequence[Any]) -> AttemptRecord:
    """An attempt record from a row of ``_ATTEMPT_COLUMNS``.

    Raises:
        Undecodable: a value of the row is not what its column holds.
    """
    run_id, task_id, family, params, attempt, status, started, ended, duration = row[:9]
    error_type, error_message, traceback, host, pid, worker = row[9:15]
    message, percentage, tracking_url = row[15:]
    task_id = text(task_id, "task_id")
    return AttemptRecord(
        text(run_id, f"run_id of {task_id}"),
        task_id,
        text(family, f"family of {task_id}"),
        MappingProxyType(json_params(params, f"params of {task_id}")),
        integer(attempt, f"attempt number of {task_id}"),
        member(AttemptStatus, status, f"status of {task_id}"),
        optional_real(started, f"started of {task_id}"),
        optional_real(ended, f"ended of {task_id}"),
        optional_real(duration, f"duration of {task_id}"),
        optional_text(error_type, f"error_type of {task_id}"),
        optional_text(error_message, f"error_message of {task_id}"),
        optional_text(traceback, f"traceback of {task_id}"),
        optional_text(host, f"host of {task_id}"),
        None if pid is None else integer(pid, f"pid of {task_id}"),
        optional_text(worker, f"worker of {task_id}"),
        optional_text(message, f"status_message of {task_id}"),
        optional_real(percentage, f"progress_percentage of {task_id}"),
        optional_text(tracking_url, f"tracking_url of {task_id}"),
    )


# Paging, filters and search (the web pages) -----------------------------------

# The runs with attempts of a family: the family index holds (family, id), and
# a run's attempts are one id range (see _journal_rows), so each step of the
# recursion skips from the newest run of the family to the next older one: a
# look-up per run, however many attempts each has.
_OF_FAMILY: Final = f"""
    r.run_id IN (
        WITH RECURSIVE keys (key) AS (
            SELECT (SELECT max(id) FROM attempts WHERE family = :family) >> {KEY_SHIFT}
            UNION ALL
            SELECT (
                SELECT max(id) FROM attempts
                WHERE family = :family AND id < (keys.key << {KEY_SHIFT})
            ) >> {KEY_SHIFT}
            FROM keys WHERE keys.key IS NOT NULL
        )
        SELECT k.run_id FROM keys JOIN run_keys AS k USING (key))
"""
_FIND_RUNS: Final = (
    f"{_RUNS} WHERE (:status IS NULL OR r.status = :status) "
    "ORDER BY r.started DESC, r.rowid DESC LIMIT :limit OFFSET :offset"
)
_FIND_RUNS_OF_FAMILY: Final = (
    f"{_RUNS} WHERE (:status IS NULL OR r.status = :status) AND {_OF_FAMILY} "
    "ORDER BY r.started DESC, r.rowid DESC LIMIT :limit OFFSET :offset"
)
_COUNT_RUNS: Final = "SELECT r.status, count(*) FROM runs AS r GROUP BY r.status"
_COUNT_RUNS_OF_FAMILY: Final = (
    f"SELECT r.status, count(*) FROM runs AS r WHERE {_OF_FAMILY} GROUP BY r.status"
)
# Task ids starting with the text: one range of the task index, in order.
_TASKS_STARTING: Final = """
    SELECT task_id, count(*), max(id) FROM attempts
    WHERE task_id >= :lo AND task_id < :hi
    GROUP BY task_id ORDER BY task_id LIMIT :limit
"""
# Task ids containing the text elsewhere, any case (ASCII): a scan of the
# task index, which stops once enough ids are found.
_TASKS_CONTAINING: Final = r"""
    SELECT task_id, count(*), max(id) FROM attempts
    WHERE task_id LIKE :pattern ESCAPE '\' AND NOT (task_id >= :lo AND task_id < :hi)
    GROUP BY task_id ORDER BY task_id LIMIT :limit
"""
_ATTEMPTS_BY_ID: Final = f"{_ATTEMPTS_WITH_RUN} WHERE a.id IN (SELECT value FROM json_each(?))"


def _prefix_range(start: str) -> dict[str, str]:
    """``lo`` and ``hi``: the strings beginning with ``start`` are those in [lo, hi)."""
    return {"lo": start, "hi": start[:-1] + chr(ord(start[-1]) + 1)}


async def find_runs(
    store: Store, status: RunStatus | None, family: str | None, limit: int, offset: int
) -> list[RunRecord]:
    args: dict[str, object] = {
        "status": None if status is None else status.value,
        "limit": limit,
        "offset": offset,
        "first": LISTED_REQUESTED,
    }
    if family is None:
        rows = await store.fetch(_FIND_RUNS, args)
    else:
        rows = await store.fetch(_FIND_RUNS_OF_FAMILY, {**args, "family": family})
    return await _counted(store, rows)


async def count_runs(store: Store, family: str | None) -> dict[RunStatus, int]:
    if family is None:
        rows = await store.fetch(_COUNT_RUNS)
    else:
        rows = await store.fetch(_COUNT_RUNS_OF_FAMILY, {"family": family})
    with store.decoding("runs"):
        return {member(RunStatus, status, "status"): int(count) for status, count in rows}


async def find_tasks(store: Store, needle: str, limit: int) -> list[TaskSummary]:
    if not needle or limit < 1:
        return []
    prefix = _prefix_range(needle)
    found = await store.fetch(_TASKS_STARTING, {**prefix, "limit": limit})
    if len(found) < limit:
        escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        found += await store.fetch(
            _TASKS_CONTAINING,
            {**prefix, "pattern": f"%{escaped}%", "limit": limit - len(found)},
        )
    if not found:
        return []
    latest = await store.fetch(_ATTEMPTS_BY_ID, [json.dumps([int(row[2]) for row in found])])
    with store.decoding(f"attempts of tasks found for {needle!r}"):
        by_id = {str(row[1]): attempt_record(row) for row in latest}
    return [
        TaskSummary(str(task_id), by_id[str(task_id)].family, int(count), by_id[str(task_id)])
        for task_id, count, _ in found
    ]


# A run, a page at a time (the run page, the API, `asyncflow show`) -------------
#
# A run of 100,000 tasks is read in SQL: counted by aggregates, paged with LIMIT
# and OFFSET in a stable order (a task by its first attempt, an attempt by its
# id), so a page decodes the rows it shows and no more.

_OF_RUN: Final = f"{_RUN_ATTEMPTS} WHERE k.run_id = :run"
# Each task of the run: its first and latest attempt, and how many started.
_TASKS: Final = (
    "SELECT a.task_id, min(a.family) AS family, min(a.id) AS first, max(a.id) AS last, "
    f"sum(a.attempt > 0) AS ran FROM {_OF_RUN} GROUP BY a.task_id"
)
_SUMMARY_COUNTS: Final = f"SELECT a.status, count(*) FROM {_OF_RUN} GROUP BY a.status"
_WITH_STATUS: Final = f"SELECT a.task_id FROM {_OF_RUN} AND a.status IS :status LIMIT 1"
_TASK_COUNTS: Final = (
    f"SELECT l.status, count(*) FROM ({_TASKS}) AS t JOIN attempts AS l ON l.id = t.last "
    "GROUP BY l.status"
)
_FAMILY_COUNTS: Final = (
    f"SELECT t.family, count(*) FROM ({_TASKS}) AS t GROUP BY t.family ORDER BY min(t.first)"
)
# Requested ids in the order requested; with :unrun, those without an attempt in the run.
_REQUESTED_IDS: Final = (
    "FROM run_requests AS q, json_each(q.requested) AS j WHERE q.run_id = :run "
    "AND (NOT :unrun OR NOT EXISTS (SELECT 1 FROM attempts AS a "
    "WHERE a.task_id = j.value AND a.run_id = :run))"
)
_REQUESTED: Final = f"SELECT j.value {_REQUESTED_IDS} LIMIT :limit OFFSET :offset"
_COUNT_REQUESTED: Final = f"SELECT count(*) {_REQUESTED_IDS}"
_TASK_PAGE: Final = f"""
    WITH page AS (
        SELECT t.task_id, t.first, t.last FROM ({_TASKS}) AS t JOIN attempts AS l ON l.id = t.last
        WHERE :status IS NULL OR l.status = :status
        ORDER BY t.first LIMIT :limit OFFSET :offset
    )
    SELECT {_ATTEMPT_COLUMNS} FROM page AS p
    JOIN attempts AS a ON a.task_id = p.task_id AND a.id BETWEEN p.first AND p.last
    LEFT JOIN runs AS r ON r.run_id = a.run_id
    WHERE a.run_id = :run ORDER BY p.first, a.id
"""
_ATTEMPT_PAGE: Final = f"""
    SELECT {_ATTEMPT_COLUMNS} FROM {_RUN_ATTEMPTS} LEFT JOIN runs AS r ON r.run_id = k.run_id
    WHERE k.run_id = :run
    AND (:statuses IS NULL OR a.status IN (SELECT value FROM json_each(:statuses)))
    ORDER BY a.id LIMIT :limit OFFSET :offset
"""
# The first tasks of each family (:caps, a JSON object: family -> how many), in order.
_TASK_STATES: Final = f"""
    WITH placed AS (
        SELECT t.*, row_number() OVER (PARTITION BY t.family ORDER BY t.first) AS place
        FROM ({_TASKS}) AS t
    )
    SELECT p.task_id, p.family, l.status, p.ran FROM placed AS p
    JOIN json_each(:caps) AS c ON c.key = p.family AND p.place <= c.value
    JOIN attempts AS l ON l.id = p.last
    ORDER BY p.first
"""


async def run_summary(store: Store, run_id: str, requested: int) -> RunRecord | None:
    rows = await store.fetch(f"{_RUNS} WHERE r.run_id = :run", {"run": run_id, "first": requested})
    if not rows:
        return None
    found = await store.fetch(_SUMMARY_COUNTS, {"run": run_id})
    counts = await _by_status(store, run_id, found)
    with store.decoding(f"runs row {run_id!r}"):
        return run_record(rows[0], counts, ())


async def by_status(
    run_id: str,
    rows: Iterable[Sequence[Any]],
    with_status: Callable[[object], Awaitable[Sequence[Sequence[Any]]]],
    decoding: Callable[[str], AbstractContextManager[object]],
) -> dict[AttemptStatus, int]:
    """Counts of ``(status, count)`` rows of run ``run_id``'s attempts (either journal).

    A status that is none of ours is an error naming a task that has it
    (``with_status(status)``: rows of such task ids), as reading its row would.
    """
    counts: dict[AttemptStatus, int] = {}
    for status, count in rows:
        try:
            counts[AttemptStatus(status)] = int(count)
        except ValueError:
            named = await with_status(status)
            task_id = named[0][0] if named else "?"
            with decoding(f"attempts of run {run_id!r}"):
                member(AttemptStatus, status, f"status of {task_id}")  # raises
    return counts


async def _by_status(
    store: Store, run_id: str, rows: Iterable[Sequence[Any]]
) -> dict[AttemptStatus, int]:
    def with_status(status: object) -> Awaitable[list[Any]]:
        return store.fetch(_WITH_STATUS, {"run": run_id, "status": status})

    return await by_status(run_id, rows, with_status, store.decoding)


async def count_run_tasks(store: Store, run_id: str) -> RunTasks:
    args = {"run": run_id}
    statuses = await store.fetch(_TASK_COUNTS, args)
    families = await store.fetch(_FAMILY_COUNTS, args)
    [(unrun,)] = await store.fetch(_COUNT_REQUESTED, {**args, "unrun": True})
    counts = await _by_status(store, run_id, statuses)
    with store.decoding(f"attempts of run {run_id!r}"):
        return RunTasks(
            MappingProxyType(counts),
            MappingProxyType({text(family, "family"): int(n) for family, n in families}),
            int(unrun),
        )


async def run_tasks(
    store: Store, run_id: str, status: AttemptStatus | None, limit: int, offset: int
) -> list[AttemptRecord]:
    wanted = None if status is None else status.value
    args = {"run": run_id, "status": wanted, "limit": limit, "offset": offset}
    rows = await store.fetch(_TASK_PAGE, args)
    with store.decoding(f"attempts of run {run_id!r}"):
        return [attempt_record(row) for row in rows]


async def run_attempts(
    store: Store,
    run_id: str,
    statuses: Collection[AttemptStatus] | None,
    limit: int | None,
    offset: int,
) -> list[AttemptRecord]:
    wanted = None if statuses is None else json.dumps([s.value for s in statuses])
    args = {"run": run_id, "statuses": wanted, "limit": -1 if limit is None else limit}
    rows = await store.fetch(_ATTEMPT_PAGE, {**args, "offset": offset})
    with store.decoding(f"attempts of run {run_id!r}"):
        return [attempt_record(row) for row in rows]


async def requested(store: Store, run_id: str, unrun: bool, limit: int, offset: int) -> list[str]:
    args = {"run": run_id, "unrun": unrun, "limit": limit, "offset": offset}
    rows = await store.fetch(_REQUESTED, args)
    with store.decoding(f"requested of run {run_id!r}"):
        return [text(row[0], "requested task id") for row in rows]


async def task_states(store: Store, run_id: str, caps: Mapping[str, int]) -> list[TaskState]:
    if not caps:
        return []
    rows = await store.fetch(_TASK_STATES, {"run": run_id, "caps": json.dumps(dict(caps))})
    with store.decoding(f"attempts of run {run_id!r}"):
        return [task_state(row) for row in rows]


def task_state(row: Sequence[Any]) -> TaskState:
    """A task's state from a row of ``_TASK_STATES``.

    Raises:
        Undecodable: a value of the row is not what its column holds.
    """
    task_id, family, status, ran = row
    task_id = text(task_id, "task_id")
    return TaskState(
        task_id,
        text(family, f"family of {task_id}"),
        member(AttemptStatus, status, f"status of {task_id}"),
        integer(ran, f"attempts of {task_id}"),
    )
