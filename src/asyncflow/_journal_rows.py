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
values (ATTEMPT_COLUMNS order), and its length tells its state: 7 values
(up to ``started``) while running, 10 (up to ``duration``) once ended, 13
with an error. A state change makes a new tuple. Tuples of plain values are
soon left alone by the garbage collector, where lists or objects kept for
every task of a run would be traversed again and again. The shapes are also
the statements: running and ended rows bind no NULL (the sqlite3 module binds
a ``None`` ten times slower than a number) and go many rows per statement
(:class:`_Inserts`), which also releases the GIL once per statement rather
than once per row while SQLite works.
"""

from __future__ import annotations

import sqlite3
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ._journal_records import AttemptStatus, RunStatus
from ._journal_schema import KEY_SHIFT
from ._journal_store import marks
from .events import Event

if TYPE_CHECKING:
    from .events import TaskEvent

__all__ = [
    "ATTEMPT_COLUMNS",
    "NEW_RUN_KEY",
    "ROWS_PER_STATEMENT",
    "Attempts",
    "Recorder",
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
)
"""The order of the values of an attempt row."""

_ATTEMPT: Final = 5
_STARTED: Final = 6
_STATUS: Final = 7
_RUNNING_ROW: Final = 7  # id .. started
_ENDED_ROW: Final = 10  # id .. duration
_FULL_ROW: Final = len(ATTEMPT_COLUMNS)  # id .. traceback: with an error

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
_TO_FULL: Final[dict[int, Values]] = {
    _RUNNING_ROW: (_RUNNING, None, None, None, None, None),
    _ENDED_ROW: (None, None, None),
    _FULL_ROW: (),
}
"""What a row of each length lacks to have every column."""


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
    requested: str
    expires: float

    def values(self) -> Values:
        return (
            self.run_id,
            self.status.value,
            self.started,
            self.ended,
            self.host,
            self.pid,
            self.version,
            self.requested,
            self.expires,
        )


@dataclass(slots=True)
class Attempts:
    """One batch of attempt rows, by the statement that writes them."""

    running: list[object]
    """New attempts still running: their 7 values each, in one flat list."""
    ended: list[object]
    """New attempts ended without an error: their 10 values each, in one flat list."""
    upserts: list[Values]
    """Every column: attempts with an error, and attempts an earlier batch wrote."""

    def __len__(self) -> int:
        return len(self.running) // _RUNNING_ROW + len(self.ended) // _ENDED_ROW + len(self.upserts)


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
        self._new: dict[object, Values] = {}  # attempts begun since take(), by id
        self._changed: dict[object, Values] = {}  # attempts written before, changed since

    def add_run(self, run_id: str, key: int) -> None:
        """Journal the attempts of ``run_id`` under ``key`` (a new ``run_keys`` row)."""
        self._runs[run_id] = _Run(key)

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
        ending = _ENDING
        running_row = _RUNNING_ROW
        left_out: list[TaskEvent] = []
        last_run_id = None
        run: _Run | None = None
        rows: dict[str, Values] = {}
        for event in events:
            kind, task, run_id, attempt, error, duration, at = event
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
                row = (attempt_id, run_id, task_id, task.task_family, params, attempt, at)
                rows[task_id] = new[attempt_id] = row
                continue
            status = ending.get(kind)
            if status is None:
                continue  # says nothing about an attempt's state
            if row is not None and len(row) == running_row:
                if duration is None:
                    started: float = row[_STARTED]  # type: ignore[assignment]  # START set it
                    duration = at - started if at > started else 0.0
                row += (status, at, duration)
                if error is not None:
                    row += _error_fields(error)
            elif row is not None and row[_ATTEMPT] == attempt:
                if error is None or len(row) == _FULL_ROW:
                    continue  # a second ending event of the same attempt adds nothing
                row += _error_fields(error)
            else:
                # Nothing started: a definition that raised, an absent external input.
                attempt_id = run.next_id
                run.next_id = attempt_id + 1
                params = task._params_json()
                row = (attempt_id, run_id, task_id, task.task_family, params, 0, None)
                row += (status, at, duration)
                if error is not None:
                    row += _error_fields(error)
                rows[task_id] = new[attempt_id] = row
                continue
            rows[task_id] = row
            row_id = row[0]
            if row_id in new:
                new[row_id] = row
            else:
                changed[row_id] = row
        return left_out

    def succeeded(self, run_id: str) -> set[str] | None:
        """The task ids of ``run_id`` with a journaled success; None when the
        attempts of ``run_id`` were not journaled here."""
        run = self._runs.get(run_id)
        if run is None:
            return None
        return {
            task_id
            for task_id, row in run.rows.items()
            if len(row) > _RUNNING_ROW and row[_STATUS] == _SUCCESS
        }

    def end_run(self, run_id: str) -> None:
        """Mark the run's still-open attempts interrupted and forget the run."""
        run = self._runs.pop(run_id, None)
        if run is not None:
            for row in run.rows.values():
                if len(row) == _RUNNING_ROW:
                    _put(self._new, self._changed, (*row, _INTERRUPTED, None, None))

    def take(self) -> Attempts:
        """The rows to write for what was applied since the last call."""
        running: list[object] = []
        ended: list[object] = []
        upserts = [row + _TO_FULL[len(row)] for row in self._changed.values()]
        for row in self._new.values():
            if len(row) == _ENDED_ROW:
                ended += row
            elif len(row) == _RUNNING_ROW:
                running += row
            else:
                upserts.append(row)
        self._new = {}
        self._changed = {}
        return Attempts(running, ended, upserts)


def _put(new: dict[object, Values], changed: dict[object, Values], row: Values) -> None:
    """Keep ``row`` (an attempt already known) for the next batch."""
    if row[0] in new:
        new[row[0]] = row
    else:
        changed[row[0]] = row


def _error_fields(error: BaseException) -> tuple[str, str, str]:
    cls = type(error)
    module = cls.__module__
    name = cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
    try:
        message = str(error)
    except Exception:
        message = f"<{name}: str() raised>"
    return name, message, "".join(traceback.format_exception(error))


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
    """

    def __init__(self, width: int, literals: str = "") -> None:
        self.width = width
        self._columns = ", ".join(ATTEMPT_COLUMNS[:width] + (("status",) if literals else ()))
        self._values = f"({marks(width)}{literals})"
        # A power of two, so that the rest padded to a power of two fits too.
        self._most = 1 << (min(ROWS_PER_STATEMENT, _MAX_VARIABLES // width).bit_length() - 1)
        self._sql: dict[int, str] = {}

    def statements(self, values: list[object]) -> list[Statement]:
        """What inserts (or replaces) the rows whose values, ``width`` each, are ``values``."""
        width = self.width
        step = self._most * width
        whole = len(values) // step * step
        found: list[Statement] = []
        if whole:
            found.append(
                (self._text(self._most), [values[i : i + step] for i in range(0, whole, step)])
            )
        if whole < len(values):
            rest = values[whole:]
            rows = len(rest) // width
            padded = max(_PAD, 1 << (rows - 1).bit_length())
            found.append((self._text(padded), [rest + rest[-width:] * (padded - rows)]))
        return found

    def _text(self, rows: int) -> str:
        sql = self._sql.get(rows)
        if sql is None:
            values = ",".join([self._values] * rows)
            sql = self._sql[rows] = (
                f"INSERT OR REPLACE INTO attempts ({self._columns}) VALUES {values}"
            )
        return sql


_INSERT_RUNNING: Final = _Inserts(_RUNNING_ROW, f", '{_RUNNING}'")
_INSERT_ENDED: Final = _Inserts(_ENDED_ROW)

_UPSERT: Final = f"""
    INSERT INTO attempts ({", ".join(ATTEMPT_COLUMNS)}) VALUES ({marks(_FULL_ROW)})
    ON CONFLICT (id) DO UPDATE SET
        status = excluded.status, ended = excluded.ended, duration = excluded.duration,
        error_type = excluded.error_type, error_message = excluded.error_message,
        traceback = excluded.traceback
"""

NEW_RUN_KEY: Final = "INSERT INTO run_keys (run_id) VALUES (?) RETURNING key"
"""Gives a run its key for this journal's attempts (see :meth:`Recorder.add_run`)."""


def attempt_statements(attempts: Attempts) -> list[Statement]:
    """The statements that write one batch of attempt rows."""
    found = _INSERT_RUNNING.statements(attempts.running)
    found += _INSERT_ENDED.statements(attempts.ended)
    if attempts.upserts:
        found.append((_UPSERT, attempts.upserts))
    return found
