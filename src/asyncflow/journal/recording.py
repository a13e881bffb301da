"""What both journals share of recording: events buffered and folded into rows,
the runs begun here, closing, and failing loudly.

A backend (:class:`~asyncflow.journal.Journal` on SQLite,
:class:`~asyncflow.journal.PostgresJournal`) adds how the rows are written
(:meth:`RecordingJournal._write_pending`), the run row it writes as a run
begins, its history reads and its leases.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol

import anyio

from .._log import log as _log
from ..coordination import Coordinator
from ..errors import JournalError
from ..events import Event, handles
from .records import JournalStatistics, RunStatus
from .rows import Recorder, RunRow

if TYPE_CHECKING:
    from ..events import TaskEvent

__all__ = ["RecordingJournal"]

_PROCESSING_TIME: Final = Event.PROCESSING_TIME

_FOLD_EVERY: Final = 256
"""Recorded events are folded into attempt rows this many at a time (see record())."""


class _RunLeases(Protocol):
    """What recording needs of a backend's leases: which runs it keeps alive."""

    live_runs: set[str]

    def forget_run(self, run_id: str) -> None: ...

    def heartbeat_interval(self) -> float: ...

    async def renew(self) -> list[tuple[str, str]]: ...


class RecordingJournal(Coordinator):
    """The recording side of a journal (see the module's docstring)."""

    _leases: _RunLeases

    def __init__(
        self,
        *,
        lease_ttl: float,
        flush_interval: float,
        flush_events: int,
        clock: Callable[[], float],
    ) -> None:
        self._ttl = lease_ttl
        self._flush_interval = flush_interval
        self._flush_events = flush_events
        self._clock = clock
        self._wake = anyio.Event()
        self._buffer: list[TaskEvent] = []
        self._recorder = Recorder()
        self._keyless: list[TaskEvent] = []  # events of runs without a key yet
        self._recorded = 0  # events since the writer last took them
        self._runs: dict[str, RunRow] = {}  # begun here, not ended
        self._dirty_runs: dict[str, RunRow] = {}
        self._ending: list[str] = []
        self._batches = 0
        self._rows_written = 0
        self._failure: JournalError | None = None
        self._closed = False
        self._refusing = False  # closed or failed: one test on the hot path

    # what a backend adds ------------------------------------------------------

    @property
    @abstractmethod
    def _named(self) -> str:
        """The journal as its messages name it (a path, a URL without its password)."""

    @abstractmethod
    def _log_fields(self) -> dict[str, Any]:
        """The journal as its log records name it."""

    @abstractmethod
    def _new_run_row(self, run_id: str, started: float, requested: str) -> RunRow:
        """The row of a run begun now (``requested``: the JSON list of task ids)."""

    @abstractmethod
    async def _write_pending(self, abandon: Collection[str] = ()) -> None:
        """Write the pending events and run changes (``abandon``: runs whose leases
        still held are let go)."""

    @abstractmethod
    async def _write_begun(self, row: RunRow) -> None:
        """Write the row of a run begun now, and take its key."""

    @abstractmethod
    async def _new_run_key(self, run_id: str) -> int:
        """A key for this journal's attempts of ``run_id``, committed at once."""

    @abstractmethod
    async def _close_store(self) -> None:
        """Close the connection(s), whatever happened before."""

    def _gave_up(self, error: JournalError) -> bool:
        """Whether ``error`` says the store stopped waiting for its database to come
        back (the journal then fails, as on a failed write)."""
        return False

    def _damage(self) -> JournalError | None:
        """Damage a read found (and raised to its caller already), if any."""
        return None

    # closing ------------------------------------------------------------------

    async def close(self) -> None:
        """Write what is pending, let go of this journal's leases, close the store.

        Runs begun here and not ended are marked ``interrupted``; leases still
        held are released as ``abandoned``. Closing twice is harmless. A journal
        a read found damaged is closed without writing anything.

        Raises:
            JournalError: a write failed (now or in the background writer).
        """
        if self._closed:
            return
        self._take_damage()
        self._closed = self._refusing = True
        with anyio.CancelScope(shield=True):
            try:
                if self._failure is None:
                    for run_id, row in self._runs.items():
                        row.status = RunStatus.INTERRUPTED
                        self._dirty_runs[run_id] = row
                        self._ending.append(run_id)
                    self._runs.clear()
                    await self._write_pending(abandon=sorted(self._leases.live_runs))
            except JournalError as exc:
                self._failure = self._failure or exc
            finally:
                await self._close_store()
        if self._failure is not None and self._failure is not self._damage():
            raise self._failure  # (damage was raised by the read that found it)

    # recording ----------------------------------------------------------------

    @handles(*(kind for kind in Event if kind is not Event.PROCESSING_TIME))
    def record(self, event: TaskEvent) -> None:
        """Journal ``event``. Sync and cheap: it appends to a buffer, and every
        256 events folds them into the rows the background writer takes.

        Usable directly as a run handler (``run(..., handlers=[journal.record])``).
        PROCESSING_TIME events are ignored: an attempt's duration comes from
        its ending event (its ``duration``, else the time since its START).
        Begin the run first (:meth:`begin_run`): the heartbeat keeps only
        begun runs alive, and another process opening the journal marks the
        running attempts of any other run ``interrupted``.

        Raises:
            JournalError: the journal is closed, or its writer failed.
        """
        if self._refusing:
            self._refuse()
        if event.kind is _PROCESSING_TIME:
            return
        buffer = self._buffer
        buffer.append(event)
        self._recorded = count = self._recorded + 1
        if count == 1 or count == self._flush_events:
            self._wake.set()  # the first event starts the writer's clock; a full batch ends it
        if len(buffer) == _FOLD_EVERY:
            # Events left waiting for the writer (thousands while a run goes fast)
            # outlive the collector's young generations, and enough of them make
            # it run a full collection, whose time grows with the whole heap (33 ms
            # in a 10,000-task run). Folded into rows now, they die young; the rows
            # hold only plain values, which the collector soon stops tracking.
            self._buffer = []
            try:
                self._keyless += self._recorder.apply(buffer)
            except Exception as exc:  # as the writer would: the journal stops, loudly
                error = self._cannot_journal(exc)
                self._fail(error)
                raise error from exc

    async def flush(self) -> None:
        """Write every event recorded so far.

        Raises:
            JournalError: the write failed, now or earlier in the background.
        """
        self._check_usable()
        await self._write_pending()

    def statistics(self) -> JournalStatistics:
        """A snapshot of the write path (pending events, batches, rows)."""
        return JournalStatistics(self._recorded, self._batches, self._rows_written)

    async def begin_run(
        self, run_id: str, task_ids: Iterable[str] = (), *, started: float | None = None
    ) -> None:
        """Record the start of run ``run_id`` requesting ``task_ids``; written at once.

        Raises:
            JournalError: the run id is already in use here, or the write failed.
        """
        self._check_usable()
        if run_id in self._runs:
            raise JournalError(f"{self._named}: run {run_id!r} was already begun")
        requested = json.dumps(list(task_ids), ensure_ascii=False)
        row = self._new_run_row(run_id, self._clock() if started is None else started, requested)
        self._runs[run_id] = row
        self._leases.live_runs.add(run_id)
        await self._write_begun(row)

    async def end_run(self, run_id: str, status: RunStatus) -> None:
        """Record the end of run ``run_id``; written at once with its pending events.

        Attempts of the run still open are marked ``interrupted``, and the
        leases it still holds are released as ``abandoned``.

        Raises:
            JournalError: the run was not begun with this journal, or the write failed.
        """
        self._check_usable()
        if status is RunStatus.RUNNING:
            raise ValueError("end_run() needs a final status, not RUNNING")
        row = self._runs.pop(run_id, None)
        if row is None:
            raise JournalError(f"{self._named}: run {run_id!r} was not begun with this journal")
        row.status = status
        row.ended = self._clock()
        self._dirty_runs[run_id] = row
        self._ending.append(run_id)
        await self._write_pending()  # the run's end lets go of its leases
        self._leases.forget_run(run_id)

    # writing --------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while not self._refusing:
            if not self._recorded:
                self._wake = anyio.Event()
                await self._wake.wait()  # set by record() at the first event
            if self._recorded < self._flush_events:
                self._wake = anyio.Event()
                with anyio.move_on_after(self._flush_interval):
                    await self._wake.wait()  # set by record() when the buffer fills up
            if self._refusing:
                return
            try:
                await self._write_pending()
            except JournalError as exc:
                self._fail(exc)
            except Exception as exc:
                self._fail(self._cannot_journal(exc))

    async def _heartbeat_loop(self) -> None:
        while True:
            await anyio.sleep(self._leases.heartbeat_interval())
            if self._leases.live_runs and not self._refusing:
                try:
                    await self._leases.renew()
                except JournalError as exc:
                    if self._gave_up(exc):
                        self._fail(exc)  # as the writer would: the run ends, loudly
                        return
                    # Leases may lapse; commit_check() tells a task before it commits.
                    _log.warning("journal.heartbeat_failed", **self._log_fields(), error=str(exc))

    async def _key_runs(self) -> None:
        """Give the runs begun, and those of events waiting for one, their key (inside
        the caller's lock), and fold those events in, in recording order."""
        recorder = self._recorder
        # A run's key is best taken as it begins, before its events come in numbers.
        begun = [
            run_id
            for run_id, row in self._dirty_runs.items()
            if row.status is RunStatus.RUNNING and not recorder.knows(run_id)
        ]
        for run_id in dict.fromkeys([*begun, *(e.run_id for e in self._keyless)]):
            if not recorder.knows(run_id):
                recorder.add_run(run_id, await self._new_run_key(run_id))
            # At once, before any later event of the run can be applied.
            waited = [e for e in self._keyless if e.run_id == run_id]
            if waited:
                self._keyless = [e for e in self._keyless if e.run_id != run_id]
                recorder.apply(waited)

    # failing --------------------------------------------------------------------

    def _cannot_journal(self, exc: Exception) -> JournalError:
        error = JournalError(f"{self._named}: cannot journal events: {exc!r}")
        error.__cause__ = exc
        return error

    def _check_usable(self) -> None:
        self._take_damage()
        if self._refusing:
            self._refuse()

    def _take_damage(self) -> None:
        damage = self._damage()
        if damage is not None and self._failure is None:
            # A read found the store damaged, and raised to its caller: nothing more
            # is read from it or written to it.
            self._fail(damage, logged=False)

    def _refuse(self) -> NoReturn:
        if self._failure is not None:
            raise self._failure
        raise JournalError(f"{self._named}: the journal is closed")

    def _fail(self, exc: JournalError, *, logged: bool = True) -> None:
        self._failure = exc
        self._refusing = True
        self._buffer = []
        self._recorded = 0
        if logged:
            _log.error("journal.write_failed", **self._log_fields(), error=str(exc))
