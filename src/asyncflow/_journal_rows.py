"""Turning task events into journal rows, coalesced per write batch.

A START opens an attempt row; the first ending event (SUCCESS, FAILURE, RETRY,
TIMEOUT, CANCELLED) closes it, and later ending events for the same attempt
only fill in an error still missing (the executor emits TIMEOUT, then RETRY
or FAILURE, for one attempt); other kinds (PROCESSING_TIME) are skipped. An ending
event without a START (a definition that raised, a missing external input)
becomes a row with attempt number 0. Within one batch each attempt is written
once, in its latest state, so START + SUCCESS of a fast task cost one row.

This runs for every task of every run, so rows are plain lists (indexed by
the column constants below) rather than objects: a tenth of the cost.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring  # the C string quoter behind json.dumps
from typing import TYPE_CHECKING, Final, cast

from ._journal_records import AttemptStatus, RunStatus
from .events import Event

if TYPE_CHECKING:
    from .events import TaskEvent

__all__ = ["ATTEMPT_COLUMNS", "Recorder", "RunRow", "Values"]

Values = tuple[object, ...]

ATTEMPT_COLUMNS: Final = (
    "run_id",
    "seq",
    "task_id",
    "family",
    "params",
    "attempt",
    "status",
    "started",
    "ended",
    "duration",
    "error_type",
    "error_message",
    "traceback",
)
"""The order of the values of an attempt row."""

_SEQ: Final = 1
_ATTEMPT: Final = 5
_STATUS: Final = 6
_STARTED: Final = 7
_ENDED: Final = 8
_DURATION: Final = 9
_ERROR_TYPE: Final = 10

_RUNNING: Final = AttemptStatus.RUNNING.value
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


class Recorder:
    """Keeps the latest attempt row of every task of the runs being journaled."""

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, list[object]]] = {}
        self._seq = 0

    def apply(self, events: list[TaskEvent]) -> list[Values]:
        """Rows to upsert for ``events``: one per attempt touched, in its latest state."""
        batch: dict[object, list[object]] = {}
        rows_of = self._rows
        start = Event.START
        for event in events:
            per_run = rows_of.get(event.run_id)
            if per_run is None:
                per_run = rows_of[event.run_id] = {}
            task = event.task
            task_id = task.task_id
            row = per_run.get(task_id)
            kind = event.kind
            if kind is start:
                if row is not None and row[_STATUS] == _RUNNING:
                    # Started again without ending: the earlier attempt went nowhere.
                    row[_STATUS] = _INTERRUPTED
                    batch[row[_SEQ]] = row
                row = per_run[task_id] = self._new_row(event, event.attempt, event.time)
            else:
                status = _ENDING.get(kind)
                if status is None:
                    continue  # says nothing about an attempt's state
                if row is not None and row[_STATUS] == _RUNNING:
                    _end(row, status, event)
                elif row is not None and row[_ATTEMPT] == event.attempt:
                    if event.error is None or row[_ERROR_TYPE] is not None:
                        continue  # a second ending event of the same attempt adds nothing
                    row[_ERROR_TYPE : _ERROR_TYPE + 3] = _error_fields(event.error)
                else:
                    row = per_run[task_id] = self._new_row(event, 0, None)
                    _end(row, status, event)
            batch[row[_SEQ]] = row
        return [tuple(row) for row in batch.values()]

    def end_run(self, run_id: str) -> list[Values]:
        """Mark the run's still-open attempts interrupted and forget the run."""
        ended = []
        for row in self._rows.pop(run_id, {}).values():
            if row[_STATUS] == _RUNNING:
                row[_STATUS] = _INTERRUPTED
                ended.append(tuple(row))
        return ended

    def _new_row(self, event: TaskEvent, attempt: int, started: float | None) -> list[object]:
        self._seq += 1
        task = event.task
        return [
            event.run_id,
            self._seq,
            task.task_id,
            task.task_family,
            params_json(task.to_str_params()),
            attempt,
            _RUNNING,
            started,
            None,
            None,
            None,
            None,
            None,
        ]


def params_json(params: Mapping[str, str]) -> str:
    """``json.dumps(params)`` for text values, compact, at a fifth of the cost."""
    return (
        "{"
        + ",".join([encode_basestring(k) + ":" + encode_basestring(v) for k, v in params.items()])
        + "}"
    )


def _end(row: list[object], status: str, event: TaskEvent) -> None:
    row[_STATUS] = status
    row[_ENDED] = event.time
    started = row[_STARTED]
    if event.duration is not None:
        row[_DURATION] = event.duration
    elif started is not None:
        row[_DURATION] = max(0.0, event.time - cast(float, started))
    if event.error is not None:
        row[_ERROR_TYPE : _ERROR_TYPE + 3] = _error_fields(event.error)


def _error_fields(error: BaseException) -> tuple[str, str, str]:
    cls = type(error)
    module = cls.__module__
    name = cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
    try:
        message = str(error)
    except Exception:
        message = f"<{name}: str() raised>"
    return name, message, "".join(traceback.format_exception(error))
