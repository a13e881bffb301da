"""The SQLite journal: one file holding run state, task history and leases.

::

    async with Journal.open("journal.db") as journal:
        await journal.begin_run(run_id, [t.task_id for t in requested])
        journal.record(event)                      # sync: appends to a buffer
        claim = await journal.claim(run_id, task_ids, since=probed_at)
        ...
        await journal.release(task_id, run_id, LeaseOutcome.SUCCESS)
        await journal.end_run(run_id, RunStatus.SUCCESS)

Writes of recorded events are batched: :meth:`Journal.record` appends to a
buffer, and one writer coroutine turns the buffer into a single transaction
(``executemany``) ``flush_interval`` seconds after the first event waits, or
as soon as ``flush_events`` wait. Reads flush first, so they see every event
recorded before them.

Leases (see :mod:`asyncflow.journal.leases`) keep two processes sharing one
journal from running the same task at once. One heartbeat per journal renews
all of its leases, and the liveness of its runs, in one transaction every
third of the lease time-to-live. On open, attempts left ``running`` by a
process that is gone are marked ``interrupted``.

Every SQLite call runs in aiosqlite's thread; the event loop never blocks on
the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from collections.abc import (
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, final

import anyio
import anyio.to_thread
from anyio.abc import TaskStatus

from .._version import __version__
from ..coordination import Claim, CommitCheck, Holder, LeaseOutcome
from ..errors import JournalError
from . import history
from . import prune as pruning
from .leases import Identity, Leases, local_node, recover_interrupted
from .opening import Opening
from .prune import file_size
from .recording import RecordingJournal
from .records import (
    AttemptRecord,
    AttemptStatus,
    RunRecord,
    RunStatus,
    RunTasks,
    TaskState,
    TaskSummary,
)
from .retention import Pruned, bounds
from .rows import NEW_RUN_KEY, Attempts, EndedRun, RunRow, Values, attempt_statements
from .store import Store, sqlite_errors

if TYPE_CHECKING:
    pass

__all__ = ["DEFAULT_LEASE_TTL", "Journal"]

DEFAULT_LEASE_TTL: Final = 30.0
"""Seconds a lease (and a run's liveness) lasts without a heartbeat."""

_UPSERT_RUN: Final = """
    INSERT INTO runs (run_id, status, started, ended, host, pid, version, expires, node)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (run_id) DO UPDATE SET
        status = excluded.status, ended = excluded.ended,
        expires = max(runs.expires, excluded.expires)
"""
# A run id begun again keeps the list it was first begun with.
_INSERT_REQUESTED: Final = "INSERT OR IGNORE INTO run_requests (run_id, requested) VALUES (?, ?)"


@final
class Journal(RecordingJournal):
    """A run journal on one SQLite file. Build it with :meth:`Journal.open`.

    It records a run's events (:meth:`record`, an event handler), answers
    history (:meth:`runs`, :meth:`run`, :meth:`attempts`), and coordinates
    the processes sharing the file: it is the runs' :class:`Coordinator`.

    One instance belongs to one event loop and is used from that loop's
    thread. Several processes (and several instances) may share one file.
    """

    _leases: Leases

    def __init__(
        self,
        store: Store,
        identity: Identity,
        *,
        lease_ttl: float,
        flush_interval: float,
        flush_events: int,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(
            lease_ttl=lease_ttl,
            flush_interval=flush_interval,
            flush_events=flush_events,
            clock=clock,
        )
        self._store = store
        self._me = identity
        self._leases = Leases(store, identity, clock, lease_ttl)

    # opening and closing ------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        flush_interval: float = 0.05,
        flush_events: int = 1000,
        busy_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        host: str | None = None,
        pid: int | None = None,
        create_folder: bool = False,
    ) -> Opening[Journal]:
        """Open (or create) the journal at ``path``.

        Use it as ``async with Journal.open(path) as journal:``, which also runs
        the background writer and heartbeat (:meth:`serve`) and closes the
        journal at the end; or ``journal = await Journal.open(path)``, then run
        ``journal.serve()`` in a task group of yours (without it, recorded
        events are written only by :meth:`flush` and :meth:`close`, and leases
        are renewed only by :meth:`renew`) and ``await journal.close()``.

        The file is created if absent (mode 0600: it holds parameters and
        errors), in a folder that must exist (unless ``create_folder``), whole
        at once: a file found empty was emptied, and is refused. It is put in
        WAL mode with ``synchronous=NORMAL``; its schema is created or
        migrated. If a process died with it open, SQLite's ``quick_check``
        looks it over first. Attempts left running by a process that is gone
        are marked ``interrupted``.

        Args:
            lease_ttl: seconds a lease (and a run's liveness) lasts without a
                heartbeat; the heartbeat runs every third of it.
            flush_interval: seconds a recorded event may wait before it is written.
            flush_events: recorded events that trigger a write at once.
            busy_timeout: seconds to wait for another process's write lock.
            clock: wall-clock seconds since the epoch; it must agree between
                the processes sharing the file (tests pass a fake one).
            host, pid: this process's identity in runs and leases (default: the
                real host name and process id). Another process sharing the
                file takes over a lease before it expires only when it shares
                this host, kernel boot and PID namespace and finds the pid gone.
            create_folder: create the file's folder (and its parents) if missing.

        Raises:
            JournalError: the folder does not exist; the path is a FIFO, a
                device or a folder; the file is empty, is not SQLite, is SQLite
                but not an asyncflow journal, comes from a newer asyncflow, is
                damaged, or cannot be created. The file is left as it was.
        """
        if lease_ttl <= 0 or flush_interval <= 0 or flush_events < 1 or busy_timeout < 0:
            raise ValueError(
                "lease_ttl and flush_interval must be > 0, flush_events >= 1, busy_timeout >= 0"
            )
        where = Path(path)
        identity = Identity(
            socket.gethostname() if host is None else host,
            os.getpid() if pid is None else pid,
            local_node(),
        )

        async def opener() -> Journal:
            store = await Store.connect(where, busy_timeout, create_folder=create_folder)
            try:
                with anyio.CancelScope(shield=True):
                    await recover_interrupted(store, identity, clock())
            except BaseException:
                await store.close()
                raise
            return cls(
                store,
                identity,
                lease_ttl=lease_ttl,
                flush_interval=flush_interval,
                flush_events=flush_events,
                clock=clock,
            )

        return Opening(opener)

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Write recorded events and renew leases in the background, until cancelled.

        ``async with Journal.open(...)`` runs this for you. A write error stops
        the writer; :meth:`flush` and :meth:`close` then raise it.
        """
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._write_loop)
            tg.start_soon(self._heartbeat_loop)
            task_status.started()

    async def _close_store(self) -> None:
        await self._store.close()

    def _damage(self) -> JournalError | None:
        return self._store.damage

    @property
    def path(self) -> Path:
        """The journal file."""
        return self._store.path

    @property
    def _named(self) -> str:
        return str(self._store.path)

    def _log_fields(self) -> dict[str, Any]:
        return {"path": str(self._store.path)}

    def _new_run_row(self, run_id: str, started: float, requested: str) -> RunRow:
        me = self._me
        return RunRow(
            run_id,
            RunStatus.RUNNING,
            started,
            None,
            me.host,
            me.pid,
            __version__,
            self._clock() + self._ttl,
            requested,
        )

    # resuming -----------------------------------------------------------------

    async def succeeded(self, task_ids: Iterable[str]) -> set[str]:
        """Those of ``task_ids`` with a successful attempt in any run.

        One query however many ids: they go in as one JSON array.
        """
        await self._before_read()
        return await history.succeeded(self._store, list(dict.fromkeys(task_ids)))

    async def succeeded_under(self, prefix: str, limit: int) -> set[str] | None:
        """The task ids starting with ``prefix`` (e.g. ``"Family_"``) with a successful
        attempt in any run; None if there are more than ``limit`` of them.

        One query: a run that probes many tasks of one family reads the family's
        successes at once instead of asking task by task.
        """
        await self._before_read()
        return await history.succeeded_under(self._store, prefix, limit)

    async def prior_attempts(self, task_ids: Iterable[str]) -> dict[str, int]:
        """Retries a resumed run has already used, for those of ``task_ids`` with any.

        Counts the failed and timed-out attempts of each task in runs that were
        interrupted (their process died) after the task's last success and
        after the last run with the task that ended normally. Attempts cut
        short by the interruption itself do not count. So a retry budget
        survives a crash, and a run after one that ended starts afresh.
        """
        await self._before_read()
        return await history.prior_attempts(self._store, task_ids)

    # leases -------------------------------------------------------------------

    async def claim(self, run_id: str, task_ids: Sequence[str], *, since: float) -> Claim:
        """Take the leases of many tasks for ``run_id`` at once, as a run does.

        One statement takes every lease that is free (released, expired, its
        holder's process gone from this host, or its holder's run journaled a
        success for the task). Leases of live holders are left to them and
        returned with who holds them. Tasks another run succeeded at since
        ``since`` (e.g. after the caller probed them) are returned in
        ``done``, so the caller can check and skip them; for a run begun with
        this journal, so are the successes of every run going on when it
        began or begun since, whenever their attempts ended (a success is
        written a batch after its attempt ends, and may not have been there
        when the caller probed). ``used`` counts the retries interrupted runs
        already used of the tasks taken (see :meth:`prior_attempts`).

        Raises:
            JournalError: the journal cannot be written.
        """
        self._check_usable()
        claim = await self._leases.claim(task_ids, run_id, since)
        # The retries used come from runs that were interrupted, none of them this
        # journal's runs going on: what they recorded need not be written first (as
        # prior_attempts() would, holding up every claim taken while tasks run).
        used = await history.prior_attempts(self._store, claim.taken)
        return dataclasses.replace(claim, used=used)

    async def watch(self, task_ids: Sequence[str]) -> dict[str, Holder | LeaseOutcome]:
        """For each task id, its lease's live :class:`Holder` or how it was let go.

        ``SUCCESS`` (released so, or the holder's run journaled a success),
        ``FAILED``, or ``ABANDONED`` (released without an outcome, expired,
        its holder's process gone, or never leased): try :meth:`claim`.
        """
        self._check_usable()
        return await self._leases.watch(task_ids)

    def commit_check(self, run_id: str) -> CommitCheck:
        """Whether ``run_id`` surely still holds a task's lease, asked before every commit.

        Answers without I/O: False once a heartbeat found the lease lost, and
        once no heartbeat has renewed this journal's leases for a whole
        time-to-live (the process stalled or cannot write the file): by then
        another process may have taken the task over.
        """
        return self._leases.commit_check(run_id)

    async def renew(self) -> list[tuple[str, str]]:
        """Push on the expiry of this journal's leases and runs, in one transaction.

        The heartbeat calls this every third of the shortest lease ttl.

        Returns:
            The ``(task_id, run_id)`` leases found lost (expired and taken over,
            or released by another process's recovery); they are forgotten.

        Raises:
            JournalError: the journal cannot be written.
        """
        self._check_usable()
        return await self._leases.renew()

    async def release(self, task_id: str, run_id: str, outcome: LeaseOutcome) -> bool:
        """Let go of the lease, recording how: waiters take ``outcome``.

        Returns:
            False if ``run_id`` no longer held the lease (it was taken over);
            the other holder's lease is left alone.
        """
        self._check_usable()
        return await self._leases.release(task_id, run_id, outcome)

    # history ------------------------------------------------------------------

    async def runs(self, limit: int = 20) -> list[RunRecord]:
        """The latest ``limit`` runs, newest first, with attempt counts (no attempts)."""
        await self._before_read()
        return await history.runs(self._store, limit)

    async def run(self, run_id: str) -> RunRecord | None:
        """Run ``run_id`` with all its attempts in order; None if there is none."""
        await self._before_read()
        return await history.run(self._store, run_id)

    async def attempts(self, task_id: str) -> list[AttemptRecord]:
        """Every attempt of ``task_id`` in every run, oldest first."""
        await self._before_read()
        return await history.attempts(self._store, task_id)

    # history: a run a page at a time (the run page, the API, `asyncflow show`) --

    async def run_summary(self, run_id: str, *, requested: int = 20) -> RunRecord | None:
        """Run ``run_id`` without its attempts: counted by status, and the first
        ``requested`` task ids it requested (``more_requested`` counts the rest);
        None if there is none. Reads no attempt row."""
        await self._before_read()
        return await history.run_summary(self._store, run_id, requested)

    async def count_run_tasks(self, run_id: str) -> RunTasks:
        """The tasks of run ``run_id`` counted: by latest status, by family, and the
        requested ones without an attempt in it."""
        await self._before_read()
        return await history.count_run_tasks(self._store, run_id)

    async def run_tasks(
        self, run_id: str, *, status: AttemptStatus | None = None, limit: int, offset: int = 0
    ) -> list[AttemptRecord]:
        """Every attempt of a page of the tasks of run ``run_id``.

        The tasks are in the order of their first attempts, each one's attempts
        in order; ``status`` keeps the tasks whose latest attempt stands so.

        Raises:
            ValueError: ``limit`` or ``offset`` is negative.
        """
        _check_page(limit, offset)
        await self._before_read()
        return await history.run_tasks(self._store, run_id, status, limit, offset)

    async def run_attempts(
        self,
        run_id: str,
        *,
        statuses: Collection[AttemptStatus] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[AttemptRecord]:
        """A page of the attempts of run ``run_id`` in order (``limit`` None: all after
        ``offset``); ``statuses`` keeps the attempts that stand so.

        Raises:
            ValueError: ``limit`` or ``offset`` is negative.
        """
        _check_page(limit or 0, offset)
        await self._before_read()
        return await history.run_attempts(self._store, run_id, statuses, limit, offset)

    async def requested(
        self, run_id: str, *, unrun: bool = False, limit: int, offset: int = 0
    ) -> list[str]:
        """A page of the task ids run ``run_id`` requested, in the order requested;
        with ``unrun``, only those without an attempt in the run.

        Raises:
            ValueError: ``limit`` or ``offset`` is negative.
        """
        _check_page(limit, offset)
        await self._before_read()
        return await history.requested(self._store, run_id, unrun, limit, offset)

    async def task_states(self, run_id: str, caps: Mapping[str, int]) -> list[TaskState]:
        """The first ``caps[family]`` tasks of each family of run ``run_id`` (families
        not in ``caps``: none), in the order of their first attempts, with the status
        of their latest attempt: enough to draw the run, without the attempts' details."""
        await self._before_read()
        return await history.task_states(self._store, run_id, caps)

    # history: paging, filters, search (the web pages) --------------------------

    async def find_runs(
        self,
        *,
        status: RunStatus | None = None,
        family: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[RunRecord]:
        """A page of runs, newest first, with attempt counts (no attempts).

        Args:
            status: only runs that stand so.
            family: only runs with an attempt of a task of this family.
            limit: runs on the page.
            offset: runs skipped before it (newest first).

        Raises:
            ValueError: ``limit`` or ``offset`` is negative.
            JournalError: the journal cannot be read, or a row is damaged.
        """
        _check_page(limit, offset)
        await self._before_read()
        return await history.find_runs(self._store, status, family, limit, offset)

    async def count_runs(self, *, family: str | None = None) -> dict[RunStatus, int]:
        """How many runs stand in each status (statuses without runs are left out).

        Args:
            family: count only runs with an attempt of a task of this family.
        """
        await self._before_read()
        return await history.count_runs(self._store, family)

    async def find_tasks(self, text: str, *, limit: int = 50) -> list[TaskSummary]:
        """Task ids of the journal that start with ``text``, then those containing it.

        Task ids start with their family, so a family's name finds its tasks.
        Ids starting with ``text`` (exactly) come first, in order; then, while
        fewer than ``limit`` are found, those containing it anywhere in any
        case (ASCII letters).
        """
        await self._before_read()
        return await history.find_tasks(self._store, text, limit)

    # retention ----------------------------------------------------------------

    async def prune(
        self,
        *,
        older_than: timedelta | None = None,
        keep_runs: int | None = None,
        dry_run: bool = False,
        vacuum: bool = True,
    ) -> Pruned:
        """Delete runs that ended more than ``older_than`` ago and are not among the
        ``keep_runs`` latest (give one or both), with their attempts, requested
        lists, run keys and lease rows; keep every task's latest successful
        attempt (a task without outputs stays complete). Runs going on, and
        what they hold, are never touched. Then give the space back (VACUUM;
        without ``vacuum``, only the write-ahead log is emptied and the freed
        pages are reused by later runs), unless another run is going on
        (:attr:`Pruned.note` says so).

        Args:
            older_than: how long ago a run must have ended (an interrupted run:
                stopped renewing its liveness) to go, by this journal's clock.
            keep_runs: the latest begun runs that stay whatever their age.
            dry_run: count what would go; change nothing.
            vacuum: give the freed pages back to the file system.

        Raises:
            ValueError: neither ``older_than`` nor ``keep_runs``, or a negative one.
            JournalError: the journal is damaged (nothing is deleted), or cannot
                be written.
        """
        cutoff, keep = bounds(self._clock(), older_than, keep_runs)
        await self._before_read()
        before = await anyio.to_thread.run_sync(file_size, self.path)
        done = await pruning.prune(self._store, cutoff, keep, dry_run=dry_run)
        if dry_run:
            return dataclasses.replace(done, size_before=before)
        note = await pruning.vacuum(self._store, full=vacuum)
        after = await anyio.to_thread.run_sync(file_size, self.path)
        return dataclasses.replace(done, size_before=before, size_after=after, note=note)

    # internals ----------------------------------------------------------------

    async def _write_pending(self, abandon: Collection[str] = ()) -> None:
        """Turn pending events and run changes into one transaction."""
        events, self._buffer = self._buffer, []
        self._recorded = 0
        recorder = self._recorder
        # Rows first, before waiting for the lock: while the writer's batch is
        # in the database thread, this one's rows are made meanwhile (the end of
        # a run waits that much less). Events of runs without a key (see
        # rows.py) wait for it, in recording order.
        if events:
            self._keyless += recorder.apply(events)
        async with self._store.lock:
            # Shielded: the batch has left the buffer, so it is written whole.
            with anyio.CancelScope(shield=True):
                await self._key_runs()
                # What runs that ended and hold claims have finished (see Leases.end_claims).
                ending: dict[str, EndedRun | None] = {}
                for run_id in self._ending:
                    ended = recorder.end_run(run_id)
                    if self._leases.claiming(run_id):
                        ending[run_id] = ended
                self._ending.clear()
                attempts = recorder.take()
                node = self._me.node  # every run begun here is this process's
                runs = [(*row.values(), node) for row in self._dirty_runs.values()]
                requested: list[Values] = [
                    (row.run_id, row.requested)
                    for row in self._dirty_runs.values()
                    if row.requested is not None
                ]
                for row in self._dirty_runs.values():
                    row.requested = None
                self._dirty_runs.clear()
                if attempts or runs or abandon:
                    await self._commit(attempts, runs, requested, abandon, ending)

    async def _write_begun(self, row: RunRow) -> None:
        self._dirty_runs[row.run_id] = row  # written with what is pending, keyed there
        await self._write_pending()
        await self._leases.begin(row.run_id)

    async def _new_run_key(self, run_id: str) -> int:
        """A key for this journal's attempts of ``run_id``, committed at once."""
        with sqlite_errors(self.path, "write the journal"):
            [(key,)] = await self._store.db.execute_fetchall(NEW_RUN_KEY, [run_id])
        return int(key)

    async def _commit(
        self,
        attempts: Attempts,
        runs: list[Values],
        requested: list[Values],
        abandon: Collection[str],
        ending: Mapping[str, EndedRun | None],
    ) -> None:
        db = self._store.db
        # Successes accepted under a lease are fenced: journaled only while their
        # token is the task's greatest, checked in the transaction writing them.
        fence = self._leases.to_fence(attempts.successes()) if attempts else {}
        statements = self._statements(attempts, runs, requested, abandon, ending)
        if not fence and not abandon and not ending and (not runs or len(statements) == 1):
            # Attempts alone (the batches while runs go on), or a run row alone:
            # each statement is a transaction of its own, and a trip to the
            # database thread less counts while the event loop is busy (see
            # _Inserts). Each row is whole; a crash between statements loses
            # the rest, as it loses events not yet written.
            with anyio.CancelScope(shield=True), sqlite_errors(self.path, "write the journal"):
                for sql, many in statements:
                    await db.executemany(sql, many)
        else:
            async with self._store.transaction("write the journal", locked=True):
                if fence:
                    for run_id, mine in fence.items():
                        why = await self._leases.stale(run_id, mine)
                        if why:
                            attempts.refuse(run_id, why)
                            statements = self._statements(
                                attempts, runs, requested, abandon, ending
                            )
                for sql, many in statements:
                    await db.executemany(sql, many)
                for run_id, ended in ending.items():
                    await self._leases.end_claims(run_id, ended)
                if abandon:
                    await db.execute(
                        "UPDATE leases SET outcome = 'abandoned', released = ? WHERE outcome "
                        "IS NULL AND run_id IN (SELECT value FROM json_each(?))",
                        [self._clock(), json.dumps(list(abandon))],
                    )
        self._batches += 1
        self._rows_written += len(attempts) + len(runs)

    @staticmethod
    def _statements(
        attempts: Attempts,
        runs: list[Values],
        requested: list[Values],
        abandon: Collection[str],
        ending: Mapping[str, EndedRun | None],
    ) -> list[tuple[str, Any]]:
        # The writer's batches while runs go on: as few trips as can be (see _Inserts).
        statements: list[tuple[str, Any]] = list(
            attempt_statements(attempts, one_trip=not (abandon or ending or runs or requested))
        )
        if requested:
            statements.insert(0, (_INSERT_REQUESTED, requested))
        if runs:
            statements.insert(0, (_UPSERT_RUN, runs))
        return statements

    async def _before_read(self) -> None:
        self._check_usable()
        if (
            self._buffer
            or self._dirty_runs
            or self._ending
            or self._keyless
            or self._recorder.has_rows()
        ):
            await self._write_pending()


def _check_page(limit: int, offset: int) -> None:
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must be >= 0, got {limit} and {offset}")
