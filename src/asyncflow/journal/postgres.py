"""The PostgreSQL journal: run state, task history and leases for processes on many hosts.

::

    async with PostgresJournal.open("postgresql://me@db:5432/flows") as journal:
        ...  # as the SQLite Journal: begin_run, record, claim, release, end_run

It is the SQLite :class:`~asyncflow.journal.Journal`'s twin behind the same
:class:`~asyncflow.coordination.Coordinator` interface and the same history
API. Recorded events become attempt rows exactly as there
(:class:`~asyncflow.journal.rows.Recorder`); a batch of them is one
statement with one array per column, so one round trip, and one batch is
written at a time while the run goes on. Leases are rows locked while taken
and judged by the database's clock (:mod:`asyncflow.journal.postgres_leases`).
Every statement is in :mod:`asyncflow.journal.postgres_sql`.

Commits keep the server's ``synchronous_commit`` (on unless its operator
turns it off). Off for the journal's own transactions, a batch would not wait
for its WAL flush; a killed client would lose nothing more (what it committed
stays committed), but a crash of the server could take back leases taken and
successes journaled after the client acted on them, and another process would
run those tasks again. One batch at a time, the wait costs the run little.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from datetime import timedelta
from types import MappingProxyType
from typing import Any, Final, final

import anyio
from anyio.abc import TaskStatus

from .._log import log as _log
from .._version import __version__
from ..coordination import Claim, CommitCheck, Holder, LeaseOutcome
from ..errors import JournalError
from . import postgres_sql as sql
from .decode import member
from .history import LISTED_REQUESTED, attempt_record, by_status, run_record, task_state
from .opening import Opening
from .postgres_leases import PgLeases, recover_expired, rows_of_store
from .postgres_store import Landed, PgStore, Unreachable, joined
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
from .rows import Attempts, RunAttempts, RunRow
from .schema import KEY_SHIFT
from .where import is_postgres_url, redacted

__all__ = ["PostgresJournal"]

_TAKEN_BY: Final = re.compile(r"taken over by (run .+? \(token \d+\))")

_LANDED: Final = "attempts_pkey"  # see _commit()
_SUCCESS: Final = AttemptStatus.SUCCESS.value
_RUNNING: Final = AttemptStatus.RUNNING.value


@final
class PostgresJournal(RecordingJournal):
    """A run journal in a PostgreSQL database. Build it with :meth:`PostgresJournal.open`.

    The same surface as :class:`~asyncflow.journal.Journal` (recording,
    history, coordination); processes on any host may share one database.
    """

    _leases: PgLeases

    def __init__(
        self,
        store: PgStore,
        host: str,
        pid: int,
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
        self._host = host
        self._pid = pid
        self._leases = PgLeases(store, host, pid, lease_ttl)
        # One batch made and written at a time, on one connection: while it is
        # written the run goes on and the next batch grows. Batches sent side by
        # side on several connections cost the database more (a backend each,
        # contention on the same index pages) and the client more (a round trip
        # and a statement each), and on a machine of few cores that is time taken
        # from the run itself.
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"<PostgresJournal {self.url}>"

    # opening and closing ------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str,
        *,
        lease_ttl: float = 30.0,
        flush_interval: float = 0.05,
        flush_events: int = 1000,
        clock: Callable[[], float] = time.time,
        host: str | None = None,
        pid: int | None = None,
        reconnect_patience: float | None = None,
    ) -> Opening[PostgresJournal]:
        """Open the journal in the database at ``url`` (``postgresql://user@host:port/db``).

        Used as :meth:`Journal.open` is: ``async with`` (which serves and
        closes it), or awaited. The schema is created or migrated; runs whose
        liveness expired (by the database's clock) are marked ``interrupted``.

        Args:
            lease_ttl: seconds a lease (and a run's liveness) lasts without a
                heartbeat, by the database's clock; the heartbeat runs every third.
            flush_interval: seconds a recorded event may wait before it is written.
            flush_events: recorded events that trigger a write at once.
            clock: wall-clock seconds of the history's times (started, ended);
                never used to judge leases.
            host, pid: this process's identity in runs and leases.
            reconnect_patience: seconds the database may stay unreachable (a
                restart, a failover) while the journal reconnects and sends its
                statement again, before the run fails; default ``lease_ttl``
                (leases not renewed for that long have lapsed anyway).

        Raises:
            JournalError: asyncpg is missing, the database cannot be reached, is
                not an asyncflow journal, or comes from a newer asyncflow.
        """
        if lease_ttl <= 0 or flush_interval <= 0 or flush_events < 1:
            raise ValueError("lease_ttl and flush_interval must be > 0, flush_events >= 1")
        patience = lease_ttl if reconnect_patience is None else reconnect_patience
        if not patience >= 0:
            raise ValueError(f"reconnect_patience must be >= 0, got {reconnect_patience}")
        if not is_postgres_url(url):
            raise JournalError(f"{redacted(url)}: not a postgresql:// or postgres:// URL")

        async def opener() -> PostgresJournal:
            store = await PgStore.connect(url, patience=patience)
            try:
                with anyio.CancelScope(shield=True):
                    await recover_expired(store)
            except BaseException:
                await store.close()
                raise
            return cls(
                store,
                socket.gethostname() if host is None else host,
                os.getpid() if pid is None else pid,
                lease_ttl=lease_ttl,
                flush_interval=flush_interval,
                flush_events=flush_events,
                clock=clock,
            )

        return Opening(opener)

    @property
    def url(self) -> str:
        """The database's URL, without its password."""
        return self._store.url

    @property
    def path(self) -> str:
        """What names this journal in messages and pages: :attr:`url`."""
        return self._store.url

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Write recorded events and renew leases in the background, until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._write_loop)
            tg.start_soon(self._heartbeat_loop)
            task_status.started()
            await anyio.sleep_forever()

    async def _close_store(self) -> None:
        await self._store.close()

    @property
    def _named(self) -> str:
        return self.url

    def _log_fields(self) -> dict[str, Any]:
        return {"url": self.url}

    def _gave_up(self, error: JournalError) -> bool:
        return isinstance(error, Unreachable)

    def _new_run_row(self, run_id: str, started: float, requested: str) -> RunRow:
        return RunRow(
            run_id,
            RunStatus.RUNNING,
            started,
            None,
            self._host,
            self._pid,
            __version__,
            self._ttl,  # the statement adds it to the database's now()
            requested,
        )

    async def _write_begun(self, row: RunRow) -> None:
        # One statement (BEGIN_RUN): the run's row, its requested list, its key, and
        # the runs whose successes it will not have probed.
        [(key, going_on, last)] = await self._store.write(
            sql.BEGIN_RUN, *row.values(), row.requested, doing="begin the run"
        )
        row.requested = None
        self._recorder.add_run(row.run_id, int(key))
        self._leases.note_rivals(row.run_id, going_on, last)

    # resuming -----------------------------------------------------------------

    async def succeeded(self, task_ids: Iterable[str]) -> set[str]:
        """Those of ``task_ids`` with a successful attempt in any run."""
        await self._before_read()
        ids = list(dict.fromkeys(task_ids))
        if not ids:
            return set()
        rows = await self._store.fetch(sql.SUCCEEDED, ids)
        for task_id, status in rows:
            if status != _SUCCESS:
                with rows_of_store(self._store, f"attempts of task {task_id!r}"):
                    member(AttemptStatus, status, "status")  # raises: damaged
        return {str(row[0]) for row in rows}

    async def succeeded_under(self, prefix: str, limit: int) -> set[str] | None:
        """The task ids starting with ``prefix`` with a successful attempt in any run;
        None if there are more than ``limit`` (see :meth:`Journal.succeeded_under`)."""
        if not prefix:
            raise ValueError("succeeded_under() needs a non-empty prefix")
        await self._before_read()
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        rows = await self._store.fetch(sql.SUCCEEDED_UNDER, prefix, end, limit + 1)
        if len(rows) > limit:
            return None
        for task_id, status in rows:
            if status != _SUCCESS:
                with rows_of_store(self._store, f"attempts of task {task_id!r}"):
                    member(AttemptStatus, status, "status")  # raises: damaged
        return {str(row[0]) for row in rows}

    async def prior_attempts(self, task_ids: Iterable[str]) -> dict[str, int]:
        """Retries a resumed run has already used (see :meth:`Journal.prior_attempts`)."""
        await self._before_read()
        return await self._prior_attempts(task_ids)

    async def _prior_attempts(self, task_ids: Iterable[str]) -> dict[str, int]:
        ids = list(dict.fromkeys(task_ids))
        if not ids or not (await self._store.fetch(sql.ANY_INTERRUPTED))[0][0]:
            return {}  # (without a run interrupted, no task has used a retry yet)
        rows = await self._store.fetch(sql.PRIOR_ATTEMPTS, ids)
        return {str(task_id): int(count) for task_id, count in rows}

    # leases -------------------------------------------------------------------

    async def claim(self, run_id: str, task_ids: Sequence[str], *, since: float) -> Claim:
        """Take the leases of many tasks for ``run_id`` at once (see :meth:`Journal.claim`).

        Raises:
            JournalError: the database cannot be written.
        """
        self._check_usable()
        claim = await self._leases.claim(task_ids, run_id, since)
        if claim.abandoned:
            # A holder let go without an outcome: if its run died, its failures
            # count against the retries (once the run is marked interrupted).
            await recover_expired(self._store)
        # (Without prior_attempts()'s writing of what is pending first: the retries
        # used come from interrupted runs, none of them this journal's runs going on.)
        used = await self._prior_attempts(claim.taken) if claim.taken else {}
        return dataclasses.replace(claim, used=used)

    async def watch(self, task_ids: Sequence[str]) -> dict[str, Holder | LeaseOutcome]:
        """For each task id, its lease's live :class:`Holder` or how it was let go."""
        self._check_usable()
        return await self._leases.states(task_ids)

    def commit_check(self, run_id: str) -> CommitCheck:
        """Whether ``run_id`` surely still holds a task's lease, asked before every commit."""
        return self._leases.commit_check(run_id)

    async def renew(self) -> list[tuple[str, str]]:
        """Push on the expiry of this journal's leases and runs; the leases found lost."""
        self._check_usable()
        return await self._leases.renew()

    async def release(self, task_id: str, run_id: str, outcome: LeaseOutcome) -> bool:
        """Let go of the lease, recording how; False if ``run_id`` no longer held it."""
        self._check_usable()
        return await self._leases.release(task_id, run_id, outcome)

    # history ------------------------------------------------------------------

    async def runs(self, limit: int = 20) -> list[RunRecord]:
        """The latest ``limit`` runs, newest first, with attempt counts (no attempts)."""
        await self._before_read()
        return await self._counted(await self._store.fetch(sql.RUNS, limit, LISTED_REQUESTED))

    async def run(self, run_id: str) -> RunRecord | None:
        """Run ``run_id`` with all its attempts in order; None if there is none."""
        await self._before_read()
        rows = await self._store.fetch(sql.RUN, run_id)
        if not rows:
            return None
        found = await self._store.fetch(sql.RUN_ATTEMPTS, run_id)
        with rows_of_store(self._store, f"attempts of run {run_id!r}"):
            attempts = tuple(attempt_record(tuple(row)) for row in found)
        counts: dict[AttemptStatus, int] = {}
        for attempt in attempts:
            counts[attempt.status] = counts.get(attempt.status, 0) + 1
        with rows_of_store(self._store, f"runs row {run_id!r}"):
            return run_record(tuple(rows[0]), counts, attempts)

    async def attempts(self, task_id: str) -> list[AttemptRecord]:
        """Every attempt of ``task_id`` in every run, oldest first."""
        await self._before_read()
        rows = await self._store.fetch(sql.TASK_ATTEMPTS, task_id)
        with rows_of_store(self._store, f"attempts of task {task_id!r}"):
            return [attempt_record(tuple(row)) for row in rows]

    async def run_summary(self, run_id: str, *, requested: int = 20) -> RunRecord | None:
        """Run ``run_id`` without its attempts (see :meth:`Journal.run_summary`)."""
        await self._before_read()
        rows = await self._store.fetch(sql.RUN_SUMMARY, run_id, requested)
        if not rows:
            return None
        found = await self._store.fetch(sql.SUMMARY_COUNTS, run_id)
        counts = await self._by_status(run_id, found)
        with rows_of_store(self._store, f"runs row {run_id!r}"):
            return run_record(tuple(rows[0]), counts, ())

    async def count_run_tasks(self, run_id: str) -> RunTasks:
        """The tasks of run ``run_id`` counted (see :meth:`Journal.count_run_tasks`)."""
        await self._before_read()
        statuses = await self._store.fetch(sql.TASK_COUNTS, run_id)
        families = await self._store.fetch(sql.FAMILY_COUNTS, run_id)
        [(unrun,)] = await self._store.fetch(sql.COUNT_REQUESTED, run_id, True)
        counts = await self._by_status(run_id, statuses)
        with rows_of_store(self._store, f"attempts of run {run_id!r}"):
            return RunTasks(
                MappingProxyType(counts),
                MappingProxyType({str(family): int(n) for family, n in families}),
                int(unrun),
            )

    async def _by_status(self, run_id: str, rows: Any) -> dict[AttemptStatus, int]:
        def with_status(status: object) -> Awaitable[list[Any]]:
            return self._store.fetch(sql.WITH_STATUS, run_id, status)

        return await by_status(
            run_id, rows, with_status, lambda row: rows_of_store(self._store, row)
        )

    async def run_tasks(
        self, run_id: str, *, status: AttemptStatus | None = None, limit: int, offset: int = 0
    ) -> list[AttemptRecord]:
        """Every attempt of a page of the tasks of run ``run_id`` (see
        :meth:`Journal.run_tasks`)."""
        _check_page(limit, offset)
        await self._before_read()
        wanted = None if status is None else status.value
        rows = await self._store.fetch(sql.RUN_TASK_PAGE, run_id, wanted, limit, offset)
        with rows_of_store(self._store, f"attempts of run {run_id!r}"):
            return [attempt_record(tuple(row)) for row in rows]

    async def run_attempts(
        self,
        run_id: str,
        *,
        statuses: Collection[AttemptStatus] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[AttemptRecord]:
        """A page of the attempts of run ``run_id`` in order (see
        :meth:`Journal.run_attempts`)."""
        _check_page(limit or 0, offset)
        await self._before_read()
        wanted = None if statuses is None else [s.value for s in statuses]
        rows = await self._store.fetch(sql.RUN_ATTEMPT_PAGE, run_id, wanted, limit, offset)
        with rows_of_store(self._store, f"attempts of run {run_id!r}"):
            return [attempt_record(tuple(row)) for row in rows]

    async def requested(
        self, run_id: str, *, unrun: bool = False, limit: int, offset: int = 0
    ) -> list[str]:
        """A page of the task ids run ``run_id`` requested (see :meth:`Journal.requested`)."""
        _check_page(limit, offset)
        await self._before_read()
        rows = await self._store.fetch(sql.REQUESTED, run_id, unrun, limit, offset)
        return [str(row[0]) for row in rows]

    async def task_states(self, run_id: str, caps: Mapping[str, int]) -> list[TaskState]:
        """The first tasks of each family of run ``run_id`` (see :meth:`Journal.task_states`)."""
        await self._before_read()
        if not caps:
            return []
        rows = await self._store.fetch(sql.TASK_STATES, run_id, list(caps), list(caps.values()))
        with rows_of_store(self._store, f"attempts of run {run_id!r}"):
            return [task_state(tuple(row)) for row in rows]

    async def find_runs(
        self,
        *,
        status: RunStatus | None = None,
        family: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[RunRecord]:
        """A page of runs, newest first (see :meth:`Journal.find_runs`).

        Raises:
            ValueError: ``limit`` or ``offset`` is negative.
        """
        _check_page(limit, offset)
        await self._before_read()
        wanted = None if status is None else status.value
        first = LISTED_REQUESTED
        if family is None:
            rows = await self._store.fetch(sql.FIND_RUNS, wanted, limit, offset, first)
        else:
            rows = await self._store.fetch(
                sql.FIND_RUNS_OF_FAMILY, wanted, limit, offset, family, first
            )
        return await self._counted(rows)

    async def count_runs(self, *, family: str | None = None) -> dict[RunStatus, int]:
        """How many runs stand in each status (see :meth:`Journal.count_runs`)."""
        await self._before_read()
        if family is None:
            rows = await self._store.fetch(sql.COUNT_RUNS)
        else:
            rows = await self._store.fetch(sql.COUNT_RUNS_OF_FAMILY, family)
        with rows_of_store(self._store, "runs"):
            return {member(RunStatus, status, "status"): int(count) for status, count in rows}

    async def find_tasks(self, text: str, *, limit: int = 50) -> list[TaskSummary]:
        """Task ids starting with ``text``, then those containing it (see
        :meth:`Journal.find_tasks`)."""
        await self._before_read()
        if not text or limit < 1:
            return []
        found = list(await self._store.fetch(sql.TASKS_STARTING, text, limit))
        if len(found) < limit:
            escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            found += await self._store.search(
                sql.TASKS_CONTAINING,
                f"%{escaped}%",
                text,
                limit - len(found),
                doing="read the journal",
            )
        if not found:
            return []
        latest = await self._store.fetch(sql.ATTEMPTS_BY_ID, [int(row[2]) for row in found])
        with rows_of_store(self._store, f"attempts of tasks found for {text!r}"):
            by_id = {str(row[1]): attempt_record(tuple(row)) for row in latest}
        return [
            TaskSummary(str(task_id), by_id[str(task_id)].family, int(count), by_id[str(task_id)])
            for task_id, count, _ in found
        ]

    async def _counted(self, rows: Sequence[Any]) -> list[RunRecord]:
        counts: dict[str, dict[AttemptStatus, int]] = {str(row[0]): {} for row in rows}
        if counts:
            for run_id, status, count in await self._store.fetch(sql.RUN_COUNTS, list(counts)):
                with rows_of_store(self._store, f"attempts of run {run_id!r}"):
                    counts[str(run_id)][member(AttemptStatus, status, "status")] = int(count)
        with rows_of_store(self._store, "runs"):
            return [run_record(tuple(row), counts[str(row[0])], ()) for row in rows]

    # retention ----------------------------------------------------------------

    async def prune(
        self,
        *,
        older_than: timedelta | None = None,
        keep_runs: int | None = None,
        dry_run: bool = False,
        vacuum: bool = True,
    ) -> Pruned:
        """Delete old runs, keeping every task's latest success, as
        :meth:`Journal.prune <asyncflow.journal.Journal.prune>` does, in one
        transaction. The space freed is PostgreSQL's to reuse (autovacuum):
        ``vacuum`` is accepted for the twin's sake, and the sizes are None.

        Raises:
            ValueError: neither ``older_than`` nor ``keep_runs``, or a negative one.
            JournalError: a pruned row is damaged (nothing is deleted), or the
                journal cannot be written.
        """
        del vacuum
        cutoff, keep = bounds(self._clock(), older_than, keep_runs)
        await self._before_read()
        async with self._store.transaction("prune the journal") as db:
            chosen = await db.fetch(sql.PRUNE_RUNS, cutoff, keep)
            for run_id, status in chosen:
                with rows_of_store(self._store, f"runs row {run_id!r}"):
                    member(RunStatus, status, "status")
            pruned = [str(row[0]) for row in chosen]
            keys = {int(key): str(run_id) for key, run_id in await db.fetch(sql.PRUNE_KEYS, pruned)}
            kept = [int(row[0]) for row in await db.fetch(sql.PRUNE_KEPT, list(keys))]
            attempts, bad, status = await db.fetchrow(sql.PRUNE_COUNT, list(keys), kept)
            if bad is not None:
                with rows_of_store(self._store, f"attempts row {bad}"):
                    member(AttemptStatus, status, "status")
            here = [key for key in (id_ >> KEY_SHIFT for id_ in kept) if key in keys]
            trimmed = {keys[key] for key in here}
            whole = [run_id for run_id in pruned if run_id not in trimmed]
            if dry_run:  # this transaction reads only
                leases = await db.fetchval(sql.PRUNE_COUNT_LEASES, pruned)
            else:
                await db.execute(sql.PRUNE_ATTEMPTS, list(keys), kept)
                for statement in (sql.PRUNE_RUN_ROWS, sql.PRUNE_REQUESTS, sql.PRUNE_RUN_KEYS):
                    await db.execute(statement, whole)
                leases = await db.fetchval(sql.PRUNE_LEASES, pruned)
        return Pruned(
            runs=len(whole),
            trimmed=len(trimmed),
            attempts=int(attempts),
            kept=len(here),
            leases=int(leases),
            dry_run=dry_run,
        )

    # internals ----------------------------------------------------------------

    async def _write_pending(self, abandon: Collection[str] = ()) -> None:
        """Turn pending events and run changes into one statement, or one transaction.

        The leases of runs to ``abandon`` need no write: those runs are ended or
        marked interrupted in the same transaction, and a run that is over holds
        no lease."""
        events, self._buffer = self._buffer, []
        self._recorded = 0
        recorder = self._recorder
        if events:
            self._keyless += recorder.apply(events)
        async with self._lock:
            if self._failure is not None:
                raise self._failure  # the batch written meanwhile failed: nothing after it
            with anyio.CancelScope(shield=True):
                await self._key_runs()
                for run_id in self._ending:
                    recorder.end_run(run_id)
                self._ending.clear()
                attempts = recorder.take()
                runs = list(self._dirty_runs.values())
                self._dirty_runs.clear()
                if attempts or runs:
                    await self._commit(attempts, runs)

    async def _new_run_key(self, run_id: str) -> int:
        [(key,)] = await self._store.write(sql.NEW_RUN_KEY, run_id, doing="write the journal")
        return int(key)

    async def _commit(self, attempts: Attempts, runs: list[RunRow]) -> None:
        # Successes under a lease are fenced: journaled only while their token is
        # the task's greatest, checked by the statement that writes them.
        fence = self._leases.to_fence(attempts.successes()) if attempts else {}
        write = _write_args(attempts, fence)
        statuses = _status_args(attempts.statuses)
        # A batch whose connection was lost is sent again (see PgStore.retrying): its
        # new rows' ids are this journal's alone, so if a first sending committed,
        # the second meets its own rows (attempts_pkey) and the batch stands as the
        # first wrote it (every statement of it is one transaction).
        try:
            if not runs and statuses is None:
                refused = (
                    await self._store.write(*write, doing="write the journal", landed=_LANDED)
                    if write
                    else []
                )
            else:
                requested = [(row.run_id, row.requested) for row in runs if row.requested]
                for attempt in range(3):
                    try:
                        refused = await self._transaction(write, runs, requested, statuses)
                        break
                    except JournalError as exc:
                        # The heartbeat locks the run rows and lease rows too: a deadlock
                        # rolled this back whole, so it is written again.
                        if attempt == 2 or not self._store.collided(exc):
                            raise
        except Landed:
            refused = await self._refused(fence)
        for row in runs:
            row.requested = None
        self._written(refused, len(attempts) + len(runs))

    async def _refused(self, fence: Mapping[str, Mapping[str, int]]) -> list[Any]:
        """The successes of a batch that its first sending refused (fenced), read back."""
        pairs = [(run_id, task_id) for run_id, held in fence.items() for task_id in held]
        if not pairs:
            return []
        run_ids, task_ids = (list(column) for column in zip(*pairs, strict=True))
        return await self._store.fetch(sql.REFUSED, run_ids, task_ids, doing="write the journal")

    async def _transaction(
        self,
        write: tuple[Any, ...],
        runs: list[RunRow],
        requested: Sequence[tuple[str, str | None]],
        statuses: list[list[Any]] | None = None,
    ) -> list[Any]:
        """Run rows and attempt rows (and what they said), in one transaction, sent
        again if its connection was lost (every statement but the new attempt rows
        is an upsert; those are ``landed``).

        Raises:
            Landed: a first sending had committed.
        """

        async def work(db: Any) -> list[Any]:
            refused: list[Any] = await db.fetch(*write) if write else []
            if statuses is not None:
                await db.execute(sql.SET_STATUS, *statuses)
            for row in runs:
                await db.execute(sql.UPSERT_RUN, *row.values())
            for run_id, listed in requested:
                await db.execute(sql.INSERT_REQUESTED, run_id, listed)
            return refused

        with anyio.CancelScope(shield=True):
            refused = await self._store.retrying(
                work, doing="write the journal", transaction=True, landed=_LANDED
            )
        return refused

    def _written(self, refused: Sequence[Any], rows: int) -> None:
        for run_id, task_id, why in refused:
            # The statement wrote the whole message; the log names the holder
            # alone, as the SQLite journal's does.
            taken = _TAKEN_BY.search(why)
            by = taken.group(1) if taken else why
            _log.warning("journal.success_fenced", task_id=task_id, run_id=run_id, by=by)
        self._batches += 1
        self._rows_written += rows

    async def _before_read(self) -> None:
        """Write what is pending, and wait for a batch being written: a read sees both."""
        self._check_usable()
        await self._write_pending()


_WIDTH: Final = 14  # ATTEMPT_COLUMNS


def _check_page(limit: int, offset: int) -> None:
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must be >= 0, got {limit} and {offset}")


def _status_args(statuses: Sequence[Sequence[Any]]) -> list[list[Any]] | None:
    """The 4 arrays of SET_STATUS (message, percentage, URL, attempt id), or None."""
    if not statuses:
        return None
    return [list(column) for column in zip(*statuses, strict=True)]


def _write_args(attempts: Attempts, fence: Mapping[str, Mapping[str, int]]) -> tuple[Any, ...]:
    """The statement writing a batch's attempt rows and its arguments, or () for none:
    WRITE_NEW for new rows alone, else WRITE_ATTEMPTS (new rows, changed rows, the
    successes to fence)."""
    if not attempts.upserts:
        return _new_args(attempts.runs, fence)
    fenced: list[list[object]] = [[], [], []]
    for run_id, held in fence.items():
        fenced[0] += [run_id] * len(held)
        fenced[1] += held.keys()
        fenced[2] += held.values()
    new = _columns(Attempts(attempts.runs, []))
    return (sql.WRITE_ATTEMPTS, *new, *_columns(Attempts([], attempts.upserts)), *fenced)


def _new_args(
    runs: Sequence[RunAttempts], fence: Mapping[str, Mapping[str, int]]
) -> tuple[Any, ...]:
    """WRITE_NEW and its 26 arrays (rows by shape, one column each, the token of every
    success to fence; the run key and run id of each run), or () for no row."""
    cols: list[list[Any]] = [[] for _ in range(24)]
    keys: list[int] = []
    run_ids: list[str] = []
    for run in runs:
        held = fence.get(run.run_id)
        # Each shape: its flat values, their width (rows.py), where its columns start
        # among WRITE_NEW's arrays, and which array holds its tokens (if it fences).
        for values, width, first, token in (
            (run.succeeded, 7, 0, 7),
            (run.running, 6, 8, None),
            (run.ended, 9, 14, 23),
        ):
            if not values:
                continue
            ids = values[0::width]
            if not keys or keys[-1] != ids[0] >> KEY_SHIFT:  # type: ignore[operator]
                keys.append(ids[0] >> KEY_SHIFT)  # type: ignore[operator]
                run_ids.append(run.run_id)
            cols[first] += ids
            for offset in range(1, width):
                cols[first + offset] += values[offset::width]
            if token is not None:
                task_ids = values[1::width]
                if held is None:
                    cols[token] += [None] * len(task_ids)
                elif width == 7:
                    cols[token] += [held.get(task_id) for task_id in task_ids]  # type: ignore[call-overload]
                else:
                    statuses = values[6::width]
                    cols[token] += [
                        held.get(task_id) if status == _SUCCESS else None  # type: ignore[call-overload]
                        for task_id, status in zip(task_ids, statuses, strict=True)
                    ]
    if not (cols[0] or cols[8] or cols[14]):
        return ()
    # A column of NULLs alone goes as an empty array (see _columns).
    args: list[Any] = [column if column.count(None) != len(column) else [] for column in cols]
    texts, separator = joined([cols[index] for index in _JOINED])
    for index, text in zip(_JOINED, texts, strict=True):
        args[index] = text
    return (sql.WRITE_NEW, *args, keys, run_ids, separator)


_JOINED: Final = (1, 2, 3, 9, 10, 11, 15, 16, 17, 20)
"""WRITE_NEW's text columns that hold no NULL (task ids, families, parameters,
statuses), sent as one string each (see postgres_store.joined)."""


def _columns(attempts: Attempts) -> list[list[object]]:
    """The rows of a batch as one list per column (ATTEMPT_COLUMNS order), for ``unnest``;
    a column with no value but None is an empty list."""
    cols: list[list[object]] = [[] for _ in range(_WIDTH)]
    (ids, run_ids, task_ids, families, params, numbers, started, statuses, ended, durations) = cols[
        :10
    ]
    for run in attempts.runs:
        run_id = run.run_id
        for values, width in ((run.running, 6), (run.succeeded, 7), (run.ended, 9)):
            count = len(values) // width
            if not count:
                continue
            ids += values[0::width]
            task_ids += values[1::width]
            families += values[2::width]
            params += values[3::width]
            numbers += values[4::width]
            starts = values[5::width]
            started += starts
            run_ids += [run_id] * count
            if width == 6:
                statuses += [_RUNNING] * count
                ended += [None] * count
                durations += [None] * count
            elif width == 7:
                ends = values[6::width]
                statuses += [_SUCCESS] * count
                ended += ends
                durations += [max(e - s, 0.0) for s, e in zip(starts, ends, strict=True)]  # type: ignore[operator]
            else:
                statuses += values[6::width]
                ended += values[7::width]
                durations += values[8::width]
            for column in cols[10:]:
                column += [None] * count
    for row in attempts.upserts:
        for column, value in zip(cols, row, strict=True):
            column.append(value)
    # A column of NULLs alone goes as an empty array: unnest pads the shorter arrays
    # with NULLs, and the driver's encoding of every element is the client's
    # greatest cost per row (successes leave four columns empty).
    return [column if column.count(None) != len(column) else [] for column in cols]
