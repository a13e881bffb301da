"""Turning task events into journal rows, coalesced per write batch, and writing them.

A START opens an attempt row; the first ending event (SUCCESS, FAILURE, RETRY,
TIMEOUT, CANCELLED) closes it, and later ending events for the same attempt
only fill in an error still missing (the executor emits TIMEOUT, then RETRY
or FAILURE, for one attempt); other kinds (PROCESSING_TIME) are skipped. An ending
event without a START (a definition that raised, a missing external input)
becomes a row with attempt number 0. Within one batch each attempt is written
once, in its latest state, so START + SUCCESS of a fast task cost one row.

Attempt ids: the first time a journal writes attempts of a run, the file
gives it a key for that run (a ``run_keys`` row, see :meth:`Recorder.add_run`);
the n-th attempt it journals for the run gets id ``key << 32 | n``. A run's
attempts are then one id range of the table itself, and no index on
``attempts.run_id`` is kept up to date on every write.

This runs for every task of every run, so a row is a plain tuple of column
values, without the run id (every row of a run has the same one, bound once
per statement), and its length tells its state: 6 values (up to ``started``)
while running; 7 (``ended`` added) for a success, whose status and duration
the statement fills in; 9 (``status``, ``ended``, ``duration``) for any other
ending, or a success whose event gave its duration; 12 with an error; 13, the
error columns maybe empty, for an attempt whose body ran elsewhere (the
``worker``: a Dask worker's address). A state change makes a new tuple.
What a running attempt says of itself (STATUS events: its status message,
progress percentage, tracking URL) is kept apart, the latest per attempt, and
written by an UPDATE after the batch's rows (``_SET_STATUS``): a body
reporting a thousand times a second costs one update per batch.
Tuples of plain values are soon left alone by the garbage collector, where
lists or objects kept for every task of a run would be traversed again and
again. The shapes are also the statements: running,
successful and ended rows bind no NULL (the sqlite3 module binds a ``None``
ten times slower than a number) and go many rows per statement
(:class:`_Inserts`), which also releases the GIL once per statement rather
than once per row while SQLite works.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress, filterfalse
from typing import TYPE_CHECKING, Final

from .._redact import known_secrets, redact
from .._tracebacks import format_error
from ..events import Event
from .records import AttemptStatus, RunStatus
from .schema import KEY_SHIFT
from .store import marks

if TYPE_CHECKING:
    from ..events import TaskEvent

__all__ = [
    "ATTEMPT_COLUMNS",
    "NEW_RUN_KEY",
    "ROWS_PER_STATEMENT",
    "Attempts",
    "EndedRun",
    "Recorder",
    "RunAttempts",
    "RunRow",
    "Statement",
    "Values",
    "attempt_statements",
]

Values = tuple[object, ...]
Statement = tuple[str, Sequence[Sequence[object]]]
"""An SQL text and the parameters of each execution (``executemany``)."""

ATTEMPT_COLUMNS: Final = (
    "id",
    "run_id",
    "task_id",
    "family",
    "params",
    "attempt",
    "started",
    "status",
    "ended",
    "duration",
    "error_type",
    "error_message",
    "traceback",
    "worker",
)
"""The order of the values of an attempt row."""

# Positions in a row, which lacks the run id (ATTEMPT_COLUMNS without "run_id").
_ATTEMPT: Final = 4
_STARTED: Final = 5
_STATUS: Final = 6
_SUCCESS_ENDED: Final = 6
_RUNNING_ROW: Final = 6  # id .. started
_SUCCESS_ROW: Final = 7  # id .. started, ended: status 'success', duration ended - started
_ENDED_ROW: Final = 9  # id .. started, status, ended, duration
_FULL_ROW: Final = 12  # and the error: type, message, traceback
_PLACED_ROW: Final = 13  # and the worker it ran on (the error's columns maybe None)

_RUNNING: Final = AttemptStatus.RUNNING.value
_SUCCESS: Final = AttemptStatus.SUCCESS.value
_INTERRUPTED: Final = AttemptStatus.INTERRUPTED.value
_ENDING: Final[dict[Event, str]] = {
    Event.SUCCESS: AttemptStatus.SUCCESS.value,
    Event.FAILURE: AttemptStatus.FAILED.value,
    Event.RETRY: AttemptStatus.FAILED.value,
    Event.TIMEOUT: AttemptStatus.TIMEOUT.value,
    Event.CANCELLED: AttemptStatus.CANCELLED.value,
    Event.DEPENDENCY_MISSING: AttemptStatus.MISSING.value,
}


@dataclass(slots=True)
class RunRow:
    """A run begun by this journal, written through the same batches as attempts."""

    run_id: str
    status: RunStatus
    started: float
    ended: float | None
    host: str
    pid: int
    version: str
    expires: float
    requested: str | None
    """The JSON array of requested task ids until written (then None): a
    ``run_requests`` row, written once."""

    def values(self) -> Values:
        """The ``runs`` row."""
        return (
            self.run_id,
            self.status.value,
            self.started,
            self.ended,
            self.host,
            self.pid,
            self.version,
            self.expires,
        )


@dataclass(slots=True)
class RunAttempts:
    """New attempts of one run in one batch, by row shape: values in flat lists."""

    run_id: str
    running: list[object]
    """Attempts still running: their 6 values each."""
    succeeded: list[object]
    """Attempts that succeeded: their 7 values each."""
    ended: list[object]
    """Attempts ended otherwise, without an error: their 9 values each."""

    def __len__(self) -> int:
        return (
            len(self.running) // _RUNNING_ROW
            + len(self.succeeded) // _SUCCESS_ROW
            + len(self.ended) // _ENDED_ROW
        )


@dataclass(slots=True)
class Attempts:
    """One batch of attempt rows, by the statement that writes them."""

    runs: list[RunAttempts]
    upserts: list[Values]
    """Every column: attempts with an error, and attempts an earlier batch wrote."""
    statuses: list[Values] = field(default_factory=list)
    """The latest status of attempts that reported one: message, percentage,
    tracking URL, then the attempt's id (journal schema 7's columns)."""

    def __len__(self) -> int:
        return sum(len(run) for run in self.runs) + len(self.upserts) + len(self.statuses)

    def successes(self) -> dict[str, list[str]]:
        """The task ids of the successful attempts in the batch, by run id."""
        found: dict[str, list[str]] = {}
        for run in self.runs:
            ids = run.succeeded[1::_SUCCESS_ROW]
            ended = run.ended
            ids += [
                ended[i + 1]
                for i in range(0, len(ended), _ENDED_ROW)
                if ended[i + _STATUS] == _SUCCESS
            ]
            if ids:
                found.setdefault(run.run_id, []).extend(ids)  # type: ignore[arg-type]
        for row in self.upserts:
            if row[_FULL_STATUS] == _SUCCESS:
                found.setdefault(str(row[1]), []).append(str(row[2]))
        return found

    def refuse(self, run_id: str, why: dict[str, str]) -> None:
        """Journal the successes of ``run_id`` named in ``why`` as failed attempts
        instead, with the message given for each (their lease was taken over)."""
        refused: list[Values] = []
        for run in self.runs:
            if run.run_id != run_id:
                continue
            run.succeeded = _without(run.succeeded, _SUCCESS_ROW, why, refused)
            run.ended = _without(run.ended, _ENDED_ROW, why, refused)
        for i, row in enumerate(self.upserts):
            if row[1] == run_id and row[2] in why and row[_FULL_STATUS] == _SUCCESS:
                self.upserts[i] = _fenced(row, why[str(row[2])])
        self.upserts += [_fenced(_full(row, run_id), why[str(row[1])]) for row in refused]


@dataclass(frozen=True, slots=True)
class EndedRun:
    """The tasks of a run that ended, as journaled here: a task has a success
    when it is in ``journaled`` and not in ``failing``."""

    journaled: Mapping[str, Values]
    """The tasks with an attempt journaled (their latest rows)."""
    failing: set[str]
    """Those whose latest attempt did not succeed (it failed, or was interrupted)."""

    def never_journaled(self, task_ids: Iterable[str]) -> Iterator[str]:
        """Those of ``task_ids`` without any attempt journaled (filtered in C:
        they may be a million)."""
        return filterfalse(self.journaled.__contains__, task_ids)


class _Run:
    """The attempts of one run journaled here: the latest row of each task."""

    __slots__ = ("next_id", "rows")

    def __init__(self, key: int) -> None:
        self.rows: dict[str, Values] = {}
        self.next_id = (key << KEY_SHIFT) + 1


class Recorder:
    """Keeps the latest attempt row of every task of the runs being journaled."""

    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}
        self._run_ids: dict[int, str] = {}  # by key
        self._new: dict[int, Values] = {}  # attempts begun since take(), by id
        self._changed: dict[int, Values] = {}  # attempts written before, changed since
        self._statuses: dict[int, Values] = {}  # latest status per attempt id, since take()

    def add_run(self, run_id: str, key: int) -> None:
        """Journal the attempts of ``run_id`` under ``key`` (a new ``run_keys`` row)."""
        self._runs[run_id] = _Run(key)
        self._run_ids[key] = run_id

    def knows(self, run_id: str) -> bool:
        """Whether the attempts of ``run_id`` have a key (see :meth:`add_run`)."""
        return run_id in self._runs

    def apply(self, events: list[TaskEvent]) -> list[TaskEvent]:
        """Fold ``events`` into the rows of the next :meth:`take`.

        Returns the events of runs without a key yet, left out: call
        :meth:`add_run` for their runs, then apply them.
        """
        # The hot path of journaling: one pass, locals only, the common steps inlined.
        runs = self._runs
        new = self._new
        changed = self._changed
        start = Event.START
        success = Event.SUCCESS
        reported = Event.STATUS
        statuses = self._statuses
        ending = _ENDING
        running_row = _RUNNING_ROW
        left_out: list[TaskEvent] = []
        last_run_id = None
        run: _Run | None = None
        rows: dict[str, Values] = {}
        for event in events:
            kind, task, run_id, attempt, error, duration, at, where, said = event
            if run_id is not last_run_id:
                run = runs.get(run_id)
                last_run_id = run_id
                if run is not None:
                    rows = run.rows
            if run is None:
                left_out.append(event)
                continue
            task_id = task.task_id
            row = rows.get(task_id)
            if kind is start:
                if row is not None and len(row) == running_row:
                    # Started again without ending: the earlier attempt went nowhere.
                    _put(new, changed, (*row, _INTERRUPTED, None, None))
                attempt_id = run.next_id
                run.next_id = attempt_id + 1
                params = task._params_json()
                row = (attempt_id, task_id, task.task_family, params, attempt, at)
                rows[task_id] = new[attempt_id] = row
                continue
            if kind is reported:
                # Of the attempt it names only (a late one of an earlier attempt is stale).
                if row is not None and row[_ATTEMPT] == attempt and said is not None:
                    statuses[row[0]] = said  # type: ignore[index]  # (message, percentage, url)
                continue
            if row is not None and len(row) == running_row:
                if kind is success and error is None and duration is None:
                    row += (at,)  # the statement adds the status and the duration
                else:
                    status = ending.get(kind)
                    if status is None:
                        continue  # says nothing about an attempt's state
                    if duration is None:
                        started: float = row[_STARTED]  # type: ignore[assignment]  # START set it
                        duration = at - started if at > started else 0.0
                    row += (status, at, duration)
                    if error is not None:
                        row += _error_fields(error)
                if where is not None:
                    row = _placed(row, where)
            elif kind not in ending:
                continue  # says nothing about an attempt's state
            elif row is not None and row[_ATTEMPT] == attempt:
                if error is None or (len(row) >= _FULL_ROW and row[_ERROR] is not None):
                    continue  # a second ending event of the same attempt adds nothing
                row = _ended(row)[:_ENDED_ROW] + _error_fields(error) + row[_FULL_ROW:]
            else:
                # Nothing started: a definition that raised, an absent external input.
                attempt_id = run.next_id
                run.next_id = attempt_id + 1
                params = task._params_json()
                row = (attempt_id, task_id, task.task_family, params, 0, None)
                row += (ending[kind], at, duration)
                if error is not None:
                    row += _error_fields(error)
                rows[task_id] = new[attempt_id] = row
                continue
            rows[task_id] = row
            row_id: int = row[0]  # type: ignore[assignment]
            if row_id in new:
                new[row_id] = row
            else:
                changed[row_id] = row
        return left_out

    def has_rows(self) -> bool:
        """Whether :meth:`take` has rows to give."""
        return bool(self._new or self._changed or self._statuses)

    def end_run(self, run_id: str) -> EndedRun | None:
        """Mark the run's still-open attempts interrupted and forget the run.

        Returns what became of its tasks (see :class:`EndedRun`); None when the
        attempts of ``run_id`` were not journaled here.
        """
        run = self._runs.pop(run_id, None)
        if run is None:
            return None
        rows = run.rows
        failing: set[str] = set()
        # A run of a million tasks holds a million rows, nearly all plain
        # successes (_SUCCESS_ROW values): those are stepped over in C (a loop
        # here took 0.36 s, with the run waiting for it), the others looked at.
        others = compress(rows.values(), map(_SUCCESS_ROW.__ne__, map(len, rows.values())))
        for row in others:
            if len(row) == _RUNNING_ROW:
                _put(self._new, self._changed, (*row, _INTERRUPTED, None, None))
            elif row[_STATUS] == _SUCCESS:
                continue
            failing.add(row[1])  # type: ignore[arg-type]
        return EndedRun(rows, failing)

    def take(self) -> Attempts:
        """The rows to write for what was applied since the last call."""
        run_ids = self._run_ids
        upserts = [
            _full(row, run_ids[row_id >> KEY_SHIFT]) for row_id, row in self._changed.items()
        ]
        by_key: dict[int, RunAttempts] = {}
        group: RunAttempts | None = None
        last_key = -1
        for row_id, row in self._new.items():
            key = row_id >> KEY_SHIFT
            if key != last_key:
                group = by_key.get(key)
                if group is None:
                    group = by_key[key] = RunAttempts(run_ids[key], [], [], [])
                last_key = key
            assert group is not None
            size = len(row)
            if size == _SUCCESS_ROW:
                group.succeeded += row
            elif size == _RUNNING_ROW:
                group.running += row
            elif size == _ENDED_ROW:
                group.ended += row
            else:
                upserts.append(_full(row, group.run_id))
        statuses = [(*status, row_id) for row_id, status in self._statuses.items()]
        self._new = {}
        self._changed = {}
        self._statuses = {}
        return Attempts(list(by_key.values()), upserts, statuses)


_FULL_STATUS: Final = 7  # where a full row (ATTEMPT_COLUMNS order) has its status


def _without(
    values: list[object], width: int, why: dict[str, str], out: list[Values]
) -> list[object]:
    """``values`` (rows of ``width`` flattened) without the successes of tasks in
    ``why``, which go to ``out``."""
    kept: list[object] = []
    for i in range(0, len(values), width):
        row = tuple(values[i : i + width])
        if row[1] in why and (width == _SUCCESS_ROW or row[_STATUS] == _SUCCESS):
            out.append(row)
        else:
            kept += row
    return kept


def _fenced(row: Values, message: str) -> Values:
    """A full row (ATTEMPT_COLUMNS order) turned from a success into a refused one."""
    error = ("asyncflow.LeaseLost", message, message)
    return (*row[:_FULL_STATUS], AttemptStatus.FAILED.value, *row[8:10], *error, *row[13:])


def _put(new: dict[int, Values], changed: dict[int, Values], row: Values) -> None:
    """Keep ``row`` (an attempt already known) for the next batch."""
    row_id: int = row[0]  # type: ignore[assignment]
    if row_id in new:
        new[row_id] = row
    else:
        changed[row_id] = row


def _ended(row: Values) -> Values:
    """``row``, ended, with its status, end and duration spelled out (9 values)."""
    if len(row) != _SUCCESS_ROW:
        return row
    started: float = row[_STARTED]  # type: ignore[assignment]
    ended: float = row[_SUCCESS_ENDED]  # type: ignore[assignment]
    return (*row[:_SUCCESS_ENDED], _SUCCESS, ended, max(ended - started, 0.0))


_NO_ERROR: Final = (None, None, None)
_ERROR: Final = _ENDED_ROW  # where the error's columns begin


def _placed(row: Values, where: str) -> Values:
    """``row`` (ended) with the worker its body ran on (13 values)."""
    if len(row) < _FULL_ROW:
        row = _ended(row) + _NO_ERROR
    return (*row[:_FULL_ROW], where)


def _full(row: Values, run_id: str) -> Values:
    """Every column of ``row`` (ATTEMPT_COLUMNS order), for the upsert."""
    size = len(row)
    if size == _RUNNING_ROW:
        rest: Values = (_RUNNING, None, None, *_NO_ERROR, None)
    elif size >= _FULL_ROW:
        rest = row[_STATUS:_PLACED_ROW] + (None,) * (_PLACED_ROW - size)
    else:
        rest = (*_ended(row)[_STATUS:], *_NO_ERROR, None)
    return (row[0], run_id, *row[1:_STATUS], *rest)


def _error_fields(error: BaseException) -> tuple[str, str, str]:
    cls = type(error)
    module = cls.__module__
    name = cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
    try:
        message = str(error)
    except Exception:
        message = f"<{name}: str() raised>"
    text = format_error(error)
    secrets = known_secrets()  # the run's hidden values, should user code quote one
    if secrets:
        return name, redact(message, secrets), redact(text, secrets)
    return name, message, text


# writing ---------------------------------------------------------------------

_MAX_VARIABLES: Final = 32_766 if sqlite3.sqlite_version_info >= (3, 32) else 999
"""SQLite's default limit on the parameters of one statement (999 before 3.32)."""

ROWS_PER_STATEMENT: Final = 1024
"""Rows per INSERT at most (fewer when the variable limit is 999)."""

_PAD: Final = 32


class _Inserts:
    """INSERT statements of one row shape, few per batch.

    Each statement is a trip to the database thread, and while the event loop
    is busy that thread waits for the GIL on every trip (up to the interpreter's
    switch interval, 5 ms), so a batch is as few statements as can be:
    statements of ``ROWS_PER_STATEMENT`` rows, then one for the rest, padded to
    a power of two (at least 32) rows by repeating its last row (inserting a row
    again replaces it with itself). So six statement texts exist per row shape,
    each prepared once per connection (the sqlite3 module caches them; a
    1,024-row one takes about 1 MB). The rows of a statement are bound in one
    go and written by one ``sqlite3_step``, with the GIL free.

    The rows go through ``SELECT ... FROM (VALUES ...)``, whose ``columns``
    add what a row leaves out: the run id, bound once as ``?1``, and the
    columns the statement knows (a status, a duration worked out by SQLite).

    These are the journal's only statements made at run time rather than
    written out whole, for speed: a batch is one statement with a ``VALUES``
    tuple per row (up to 1,024 of them), and its rest one of a few padded sizes,
    so each text is made once and prepared once per connection.
    """

    def __init__(self, width: int, columns: str) -> None:
        self.width = width
        self._select = columns
        self._values = f"({marks(width)})"
        # A power of two, so that the rest padded to a power of two fits too.
        most = min(ROWS_PER_STATEMENT, (_MAX_VARIABLES - 1) // width)
        self._most = 1 << (most.bit_length() - 1)
        self._sql: dict[int, str] = {}

    def statements(
        self, run_id: str, values: list[object], *, one_trip: bool = False
    ) -> list[Statement]:
        """What inserts (or replaces) the rows of ``run_id`` whose values,
        ``width`` each, are ``values``.

        ``one_trip``: the rest after whole statements is padded to a whole one
        too, so that all go in one ``executemany``: a trip to the database
        thread less, for up to a statement's worth of rows written again there
        (while the event loop is busy, the trip costs more).
        """
        width = self.width
        step = self._most * width
        whole = len(values) // step * step
        found: list[Statement] = []
        executions = [[run_id, *values[i : i + step]] for i in range(0, whole, step)]
        if whole < len(values):
            rest = values[whole:]
            rows = len(rest) // width
            padded = self._most if one_trip and whole else max(_PAD, 1 << (rows - 1).bit_length())
            last = [run_id, *rest, *rest[-width:] * (padded - rows)]
            if padded == self._most:
                executions.append(last)
            else:
                found.append((self._text(padded), [last]))
        if executions:
            found.insert(0, (self._text(self._most), executions))
        return found

    def _text(self, rows: int) -> str:
        sql = self._sql.get(rows)
        if sql is None:
            values = ",".join([self._values] * rows)
            sql = self._sql[rows] = (
                f"INSERT OR REPLACE INTO attempts ({_SHAPE_COLUMNS}) "
                f"SELECT {self._select} FROM (VALUES {values})"
            )
        return sql


_SHAPE_COLUMNS: Final = ", ".join(ATTEMPT_COLUMNS[:10])
"""What the inserts of rows without an error write: id .. duration."""
# column1 .. column6 are id, task_id, family, params, attempt, started; ?1 is the run id.
_FIRST: Final = "column1, ?1, column2, column3, column4, column5, column6"
_INSERT_RUNNING: Final = _Inserts(_RUNNING_ROW, f"{_FIRST}, '{_RUNNING}', NULL, NULL")
_INSERT_SUCCEEDED: Final = _Inserts(
    _SUCCESS_ROW, f"{_FIRST}, '{_SUCCESS}', column7, max(column7 - column6, 0.0)"
)
_INSERT_ENDED: Final = _Inserts(_ENDED_ROW, f"{_FIRST}, column7, column8, column9")

_UPSERT: Final = """
    INSERT INTO attempts (id, run_id, task_id, family, params, attempt, started, status,
                          ended, duration, error_type, error_message, traceback, worker)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET
        status = excluded.status, ended = excluded.ended, duration = excluded.duration,
        error_type = excluded.error_type, error_message = excluded.error_message,
        traceback = excluded.traceback, worker = excluded.worker
"""

_SET_STATUS: Final = """
    UPDATE attempts SET status_message = ?, progress_percentage = ?, tracking_url = ?
    WHERE id = ?
"""

NEW_RUN_KEY: Final = "INSERT INTO run_keys (run_id) VALUES (?) RETURNING key"
"""Gives a run its key for this journal's attempts (see :meth:`Recorder.add_run`)."""


def attempt_statements(attempts: Attempts, *, one_trip: bool = False) -> list[Statement]:
    """The statements that write one batch of attempt rows (see :meth:`_Inserts.statements`)."""
    found: list[Statement] = []
    for run in attempts.runs:
        found += _INSERT_SUCCEEDED.statements(run.run_id, run.succeeded, one_trip=one_trip)
        found += _INSERT_RUNNING.statements(run.run_id, run.running, one_trip=one_trip)
        found += _INSERT_ENDED.statements(run.run_id, run.ended, one_trip=one_trip)
    if attempts.upserts:
        found.append((_UPSERT, attempts.upserts))
    if attempts.statuses:  # after the rows they update
        found.append((_SET_STATUS, attempts.statuses))
    return found
