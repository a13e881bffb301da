"""What the journal hands back: statuses, history records, lease answers.

Every record is a frozen dataclass built from rows; none of them holds a
connection, so they can be kept, compared and formatted after the journal
is closed.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..coordination import Holder, LeaseOutcome  # lease answers, defined with the interface

__all__ = [
    "AttemptRecord",
    "AttemptStatus",
    "Holder",
    "JournalStatistics",
    "LeaseOutcome",
    "RunRecord",
    "RunStatus",
    "RunTasks",
    "TaskState",
    "TaskSummary",
]


class RunStatus(enum.StrEnum):
    """Where a journaled run stands."""

    RUNNING = "running"
    """Started, not ended, and its process is (as far as anyone knows) alive."""
    SUCCESS = "success"
    """Ended with every requested task complete."""
    FAILED = "failed"
    """Ended with some requested task not complete."""
    CANCELLED = "cancelled"
    """Ended because it was cancelled."""
    INTERRUPTED = "interrupted"
    """Never ended: its process died, or closed the journal without ending it."""


class AttemptStatus(enum.StrEnum):
    """Where one attempt of one task stands."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    """The attempt raised (including an attempt followed by a retry)."""
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    """Was running when its process died; neither failed nor done."""
    MISSING = "missing"
    """An external input that was absent (attempt number 0: nothing ran)."""

    @property
    def counts_against_retries(self) -> bool:
        """Whether the attempt uses up one of the task's retries."""
        return self in _RETRY_CONSUMING


_RETRY_CONSUMING = frozenset({AttemptStatus.FAILED, AttemptStatus.TIMEOUT})


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt of one task in one run.

    ``attempt`` counts from 1; a record with ``attempt == 0`` notes a task that
    never started in that run (a failed definition, a missing input).
    """

    run_id: str
    task_id: str
    family: str
    params: Mapping[str, str]
    attempt: int
    status: AttemptStatus
    started: float | None
    ended: float | None
    duration: float | None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    host: str | None = None
    pid: int | None = None
    worker: str | None = None
    """Where the body ran when not in the run's process (``host``, ``pid``): a
    Dask worker's address (``"dask"`` if none had taken it yet)."""
    status_message: str | None = None
    """What the attempt last said it was doing (``Task.set_status_message()``)."""
    progress_percentage: float | None = None
    """How far it last said it had got, from 0 to 100."""
    tracking_url: str | None = None
    """Where it last said to follow it (``Task.set_tracking_url()``)."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run: who ran it, when, what was asked for and how it ended.

    ``counts`` maps attempt statuses to how many attempts of the run ended so.
    ``attempts`` is filled by :meth:`Journal.run` and empty in the listing of
    :meth:`Journal.runs`. Lists of runs (:meth:`Journal.runs`,
    :meth:`Journal.find_runs`) and :meth:`Journal.run_summary` hold only the
    first few requested task ids: ``more_requested`` says how many more there are.
    """

    run_id: str
    status: RunStatus
    started: float
    ended: float | None
    host: str
    pid: int
    version: str
    requested: tuple[str, ...] = ()
    counts: Mapping[AttemptStatus, int] = field(default_factory=lambda: MappingProxyType({}))
    attempts: tuple[AttemptRecord, ...] = ()
    more_requested: int = 0
    """Requested task ids left out of ``requested`` (0 when it holds them all)."""

    @property
    def duration(self) -> float | None:
        """Seconds from start to end; None while running or when interrupted."""
        return None if self.ended is None else self.ended - self.started

    @property
    def requested_count(self) -> int:
        """How many tasks the run requested."""
        return len(self.requested) + self.more_requested


@dataclass(frozen=True, slots=True)
class RunTasks:
    """The tasks of one run, counted (what :meth:`Journal.count_run_tasks` returns)."""

    statuses: Mapping[AttemptStatus, int]
    """Tasks with an attempt in the run, by the status of their latest attempt there."""
    families: Mapping[str, int]
    """Tasks with an attempt in the run, by family, in the order the families first ran."""
    unrun: int
    """Requested tasks without an attempt in the run (complete before, or never reached)."""

    @property
    def attempted(self) -> int:
        """Tasks with an attempt in the run."""
        return sum(self.statuses.values())


@dataclass(frozen=True, slots=True)
class TaskState:
    """Where one task of a run stands, without its attempts' details
    (what :meth:`Journal.task_states` returns, to draw a run)."""

    task_id: str
    family: str
    status: AttemptStatus
    """The status of its latest attempt in the run."""
    ran: int
    """Its attempts in the run that started (attempt-0 records left out)."""


@dataclass(frozen=True, slots=True)
class JournalStatistics:
    """A snapshot of the journal's write path."""

    pending_events: int
    """Events recorded and not yet written."""
    batches: int
    """Write transactions of recorded events committed so far."""
    rows_written: int
    """Attempt and run rows written by those transactions."""


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """One task id of the journal: its family, how many attempts, the latest one.

    What :meth:`Journal.find_tasks` returns for each task id it finds.
    """

    task_id: str
    family: str
    attempts: int
    """Attempts of the task in every run (including attempt-0 records)."""
    latest: AttemptRecord
    """The task's most recently journaled attempt."""
