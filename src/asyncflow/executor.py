"""Running a settled graph: a ready queue, a fixed pool of workers, failure policy.

Every task to run has a counter of requirements still pending. When a task
succeeds, each dependent's counter drops by one; at zero it enters the ready
queue. ``workers`` coroutines take tasks from the queue, so the whole run costs
O(V + E) and never rescans pending tasks. A failure marks everything
downstream ``UPSTREAM_FAILED``; with ``keep_going=False`` it also cancels the
running tasks and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import deque
from typing import Any, Final

import anyio

from ._attempt import BodyRunner, LeaseGuard, LocalBodies, Suspended, call_run, check_outputs
from ._log import enabled
from ._redact import describe
from ._retry import RetryPolicy
from ._scheduler import Scheduler
from ._status import StatusChannel, reporting
from ._turns import drain, in_turns
from .clock import Clock, SystemClock
from .coordination import Coordinator, Holder, LeaseOutcome, LeaseState, NullCoordinator
from .errors import AsyncflowError, TaskError, TaskTimeout, UpstreamFailed
from .events import Event, EventBus
from .graph import (
    DEFAULT_PROBE_CONCURRENCY,
    Graph,
    JournalAnswers,
    Node,
    Probes,
    grow,
    is_complete,
    outputs_of,
    settle_added,
)
from .result import Status
from .targets.base import WriterIdentity, commit_guard
from .task import Task, flatten

__all__ = ["Executor"]

_RETRY = object()  # outcome of an attempt that is followed by another
_WAIT = object()  # outcome of a body suspended on dynamic requirements
_LOST = object()  # outcome of an attempt whose lease another process took

# A worker whose bodies never suspend (no-op tasks) gives the loop a turn after
# this many: with 8 workers a turn of the loop then lasts ~2 ms, so the journal's
# writes (each a trip to the database and back) go on while tasks run, and no
# backlog is left for the end of the run. At 64, a PostgreSQL journal's run of
# 10,000 no-op tasks took 2.4x the run without a journal, at 16 2.05x; runs
# without a journal or on SQLite did not change (benchmarks/journal_backends.py,
# benchmarks/compare.py).
_YIELD_EVERY = 16

# Node.claim, where a task stands with its lease: module globals, as they are
# read for every task.
_UNCLAIMED: Final = LeaseState.UNCLAIMED
_MINE: Final = LeaseState.MINE
_MINE_LEFTOVERS: Final = LeaseState.MINE_LEFTOVERS
_ELSEWHERE: Final = LeaseState.ELSEWHERE
_PARKED: Final = LeaseState.PARKED

# Tasks looked at, queued or taken over (a claim's, a yield's) between two turns
# of the loop: a few milliseconds' work (400,000 ready tasks in one piece held it
# for 0.2 s; 16,384 queued at a time, 50 ms).
_PUSH_TURN: Final = 4096

# Leases taken per call: the first call before anything starts, then in the
# background. While no other run is going on a call writes one row (a claim), so
# this is large; under contention it is one statement writing a row per task.
_CLAIM_CHUNK = 32_768

DEFAULT_LEASE_POLL = 0.5
"""Seconds between looks at the leases of tasks another process is running."""

_UPSTREAM_WHY = {
    Status.FAILED: "failed",
    Status.MISSING: "is missing (an external input that does not exist)",
    Status.UPSTREAM_FAILED: "was not run",
    Status.CANCELLED: "was cancelled",
}


class Executor:
    """Runs the incomplete tasks of one graph."""

    def __init__(
        self,
        graph: Graph,
        *,
        run_id: str,
        workers: int,
        keep_going: bool,
        bus: EventBus,
        logger: Any,
        scheduler: Scheduler,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        probe_concurrency: int = DEFAULT_PROBE_CONCURRENCY,
        probes: Probes | None = None,
        coordinator: Coordinator | None = None,
        since: float = 0.0,
        lease_poll: float = DEFAULT_LEASE_POLL,
        bodies: BodyRunner | None = None,
    ) -> None:
        self._graph = graph
        self._calls = graph.calls
        self._run_id = run_id
        self._workers = workers
        self._keep_going = keep_going
        self._bus = bus
        self._heard: dict[type[Task], frozenset[Event]] = {}  # see EventBus.heard
        self._start_tallies = bus.tallies_of(Event.START)
        self._success_tallies = bus.tallies_of(Event.SUCCESS)
        self._time_tallies = bus.tallies_of(Event.PROCESSING_TIME)
        self._log = logger
        self._queue = scheduler
        self._outstanding = 0
        # Plain def run() bodies: those of the classes ``bodies`` takes go there
        # (a Dask cluster), the others to worker threads.
        self._local = LocalBodies(anyio.CapacityLimiter(workers))
        self._remote = bodies
        self._bodies: dict[type, BodyRunner] = {}
        self._cancel_scope: anyio.CancelScope | None = None
        self._cancelled_exc = anyio.get_cancelled_exc_class()
        self._log_info = enabled(logger, logging.INFO)
        self._retry = retry
        self._clock: Clock = clock or SystemClock()
        self._policies: dict[type, RetryPolicy] = {}
        self._spawn: Any = None
        self._probe_concurrency = probe_concurrency
        self._probes = probes
        if coordinator is None:
            coordinator = NullCoordinator()
        self._coordinator = coordinator
        check = coordinator.commit_check(run_id)
        # Asked before every commit, and before every success is reported; None
        # when commits need no lease.
        self._may_commit = check.may_commit if check is not None else None
        self._accept = check.accept if check is not None else None
        self._tokens: dict[str, int] = {}  # task id -> fencing token of its lease
        self._since = since  # when this run's completeness probes began
        self._lease_poll = lease_poll
        self._watched: dict[str, tuple[Node, Holder | None]] = {}  # held elsewhere
        self._watching: anyio.CancelScope | None = None
        self._renewal: anyio.Event | None = None  # set when a renewal under way ends
        self._dispatching = False  # the initial ready tasks were queued
        self._worker_count = 0
        self._status = StatusChannel(bus, run_id)  # what bodies say of themselves

    async def run(self) -> None:
        """Run every task that can run; returns when none is left.

        Raises:
            JournalError: the coordinator's journal could not be read or written meanwhile.
            AsyncflowError: a fault of the engine itself (a bug), with its cause.
        """
        graph = self._graph
        to_run: list[Node] = []
        failed: list[Node] = []
        # Each pass over the graph in turns of the loop: 400,000 tasks held it 140 ms.
        async for some in in_turns(graph.order, _PUSH_TURN):
            for node in some:
                status = node.status
                if status is None:
                    to_run.append(node)
                elif status is Status.MISSING or status is Status.FAILED:
                    failed.append(node)
        self._outstanding = len(to_run)
        for node in failed:
            self._report_graph_failure(node)
        if not self._keep_going and self._outstanding < len(to_run):
            # Fail fast: something failed while the graph was built; start nothing.
            for node in to_run:
                if node.status is None:
                    node.status = Status.CANCELLED
            return
        later: list[Node] = []
        if to_run and self._coordinator.shared:  # else they stay unclaimed, and run here
            # Lease a whole chunk now, what can start and then what starts soonest
            # (a graph of a chunk or fewer in one claim); the rest is leased in the
            # background, ahead of need, while the first tasks run. (A claim taken
            # while tasks run waits for the busy loop at each of its trips to the
            # journal: a chain's second task waited for its lease.)
            ready: list[Node] = []
            waiting: list[Node] = []
            async for some in in_turns(to_run, _PUSH_TURN):
                for n in some:
                    (waiting if n.pending else ready).append(n)
            # Listed before the first claim: what it finds done elsewhere makes
            # some of these ready, and they must be leased all the same. The
            # deepest (added to the graph last) start soonest: first.
            waiting.reverse()
            order = ready + waiting
            await self._claim(order[:_CLAIM_CHUNK])
            async for some in in_turns(order[_CLAIM_CHUNK:], _PUSH_TURN):
                for node in some:
                    if node.status is None and node.claim == _UNCLAIMED:
                        node.claim = _ELSEWHERE  # not ours yet: parked if it gets ready first
                        later.append(node)
        self._dispatching = True
        async for some in in_turns(to_run, _PUSH_TURN):  # a wide graph: 400,000 ready
            for node in some:
                if node.status is None and node.pending == 0:
                    self._push(node)
        if self._outstanding == 0:
            return
        error: BaseException | None = None
        reporting_to = reporting.set(self._status)  # inherited by the workers and their threads
        try:
            async with anyio.create_task_group() as tg:
                self._cancel_scope = tg.cancel_scope
                self._spawn = tg.start_soon
                self._ensure_watching()
                if later:
                    tg.start_soon(self._claim_in_chunks, later)
                self._add_workers()
        except BaseExceptionGroup as group:
            error = _one_error(group)
        finally:
            reporting.reset(reporting_to)
            for node in graph.order:
                if node.status is None:
                    node.status = Status.CANCELLED
                if node.gen is not None:
                    await _close_generator(node)
        if error is not None:
            raise error

    def _add_workers(self) -> None:
        """Start workers up to ``workers``, but no more than there are tasks to run.

        Called again when dynamic requirements add tasks: a run that began with
        one task to run must still run what it yields side by side.
        """
        assert self._spawn is not None
        wanted = min(self._workers, self._outstanding)
        while self._worker_count < wanted:
            self._worker_count += 1
            self._spawn(self._worker)

    async def _worker(self) -> None:
        queue = self._queue
        handled = 0
        guard = None
        if self._may_commit is not None:
            guard = LeaseGuard(self._may_commit)
            commit_guard.set(guard)  # this worker's context: the bodies it runs
        while True:
            node = queue.get_nowait()
            if node is None:
                node = await queue.get()
                if node is None:
                    return
            try:
                outcome = await self._attempt(node, guard)
            finally:
                queue.done(node)  # resources and family slot, on every path
            if outcome is _LOST:
                pass  # another process has it now: _watch takes it from here
            elif outcome is _WAIT:
                # Suspended on dynamic requirements: no worker, no resources held.
                assert self._spawn is not None
                self._spawn(self._wait_dynamic, node)
            elif outcome is _RETRY:
                # Waiting for the next attempt holds no worker and no resources.
                assert self._spawn is not None
                self._spawn(self._requeue, node, self._policy(node).delay_for(node.attempts))
            else:
                if node.task._has_hooks:
                    await self._settled(node)
                if node.status is Status.FAILED:
                    # Processes waiting for it take this outcome. (A success needs no
                    # write: the journaled attempt tells them.)
                    await self._coordinator.release(node.task_id, self._run_id, LeaseOutcome.FAILED)
                self._finish(node)
            handled += 1
            if handled % _YIELD_EVERY == 0:
                # No-op bodies never suspend, nor do bodies that fail at once (to be
                # retried): give the rest of the loop a turn. (Retries once went on
                # uncounted: 30,000 tasks failing once held the loop 2.5 s.)
                await asyncio.sleep(0)

    async def _attempt(self, node: Node, guard: LeaseGuard | None = None) -> object:
        """One attempt of ``node``: DONE, FAILED, _RETRY (another attempt is due),
        _WAIT (suspended on dynamic requirements) or _LOST (the lease went elsewhere)."""
        task = node.task
        run_id = self._run_id
        # The kinds of event a handler listens to: emit() is called for those only
        # (three a task, a few percent of a run of no-op tasks); a counter that
        # wants only the task and duration (a tally) is called directly.
        heard = self._heard.get(type(task))
        if heard is None:
            heard = self._heard[type(task)] = self._bus.heard(type(task))
        if guard is not None:
            if not guard.holds(node.task_id) and not await self._still_mine(node.task_id):
                return self._lost(node)
            guard.task_id = node.task_id
            if node.claim == _MINE_LEFTOVERS:
                node.claim = _MINE
                await self._discard_partial_writes(node)
        if node.gen is None:
            node.where = None
            attempt = node.attempts = node.attempts + 1
            started = node.attempt_started = time.time()
            if node.started is None:
                node.started = started
            if Event.START in heard:
                self._bus.emit(Event.START, task, run_id, attempt=attempt, at=started)
            else:
                for tally in self._start_tallies:
                    try:
                        tally(task, None)
                    except Exception:
                        self._bus.tally_failed(tally, Event.START, task, run_id, None)
            if self._log_info:
                self._log.info("task.start", task_id=node.task_id, attempt=attempt)
        else:  # resuming a body that waited for its dynamic requirements
            attempt = node.attempts
            started = node.attempt_started or time.time()
        timeout = task.timeout
        scope: anyio.CancelScope | None = None
        bodies = self._bodies.get(type(task)) or self._bodies_for(type(task))
        token = self._tokens.get(node.task_id)
        writer = WriterIdentity(run_id, node.task_id, attempt, token)
        release = self._releaser(node) if node.held else None
        try:
            if timeout is None:
                await call_run(node, bodies, self._calls, release, guard, writer)
            else:
                with anyio.fail_after(timeout) as scope:
                    await call_run(node, bodies, self._calls, release, guard, writer)
            if node.outputs is None or node.outputs:  # a task without outputs: nothing to check
                await check_outputs(node, self._calls)
        except Suspended as suspended:
            node.waiting_on = suspended.requirements
            return _WAIT
        except self._cancelled_exc:
            node.status = Status.CANCELLED
            node.finished = time.time()
            node.record_attempt(attempt, started, node.finished, None)
            self._bus.emit(Event.CANCELLED, task, run_id, attempt=attempt, where=node.where)
            self._log.warning("task.cancelled", task_id=node.task_id, attempt=attempt)
            raise
        except Exception as exc:
            error: Exception = exc
            if isinstance(exc, TimeoutError) and scope is not None and scope.cancelled_caught:
                error = TaskTimeout(node.task_id, timeout or 0.0, attempt)
                error.__cause__ = exc
            return self._failed_attempt(node, attempt, started, error)
        if token is not None and not await self._accepted(node.task_id, token):
            # Fenced: the lease lapsed while the body ran; another process may
            # hold the task now, and this run must not report it done.
            lost = TaskError(
                f"{node.task_id}: its body returned, but the task is not reported done: "
                f"this run lost the journal lease it ran under (token {token}) while it "
                "ran (no heartbeat for longer than the lease lasts: the process stalled), "
                "so another process may be running it",
                task_id=node.task_id,
            )
            return self._failed_attempt(node, attempt, started, lost, lease_lost=True)
        finished = node.finished = time.time()
        node.status = Status.DONE
        if node.history is not None:  # a first attempt's success is implied by started/finished
            node.record_attempt(attempt, started, finished, None)
        duration = finished - started
        where = node.where
        if Event.SUCCESS in heard:
            self._bus.emit(Event.SUCCESS, task, run_id, attempt=attempt, at=finished, where=where)
        else:
            for tally in self._success_tallies:
                try:
                    tally(task, None)
                except Exception:
                    self._bus.tally_failed(tally, Event.SUCCESS, task, run_id, None)
        if Event.PROCESSING_TIME in heard:
            self._bus.emit(
                Event.PROCESSING_TIME,
                task,
                run_id,
                attempt=attempt,
                duration=duration,
                at=finished,
                where=where,
            )
        else:
            for tally in self._time_tallies:
                try:
                    tally(task, duration)
                except Exception:
                    self._bus.tally_failed(tally, Event.PROCESSING_TIME, task, run_id, duration)
        if self._log_info:
            self._log.info("task.done", task_id=node.task_id, duration=round(duration, 6))
        return Status.DONE

    def _failed_attempt(
        self,
        node: Node,
        attempt: int,
        started: float,
        error: Exception,
        *,
        lease_lost: bool = False,
    ) -> object:
        task = node.task
        finished = time.time()
        duration = finished - started
        where = node.where
        node.record_attempt(attempt, started, finished, error)

        def emit(kind: Event) -> None:  # every event of a failed attempt says the same
            self._bus.emit(
                kind,
                task,
                self._run_id,
                attempt=attempt,
                error=error,
                duration=duration,
                where=where,
            )

        if lease_lost or (self._may_commit is not None and not self._may_commit(node.task_id)):
            # Its writes were refused: another process may be running it now.
            emit(Event.RETRY)
            return self._lost(node)
        if isinstance(error, TaskTimeout):
            emit(Event.TIMEOUT)
        if self._policy(node).should_retry(error, attempt):
            emit(Event.RETRY)
            self._log.warning(
                "task.retry",
                task_id=node.task_id,
                attempt=attempt,
                error=describe(error),
            )
            return _RETRY
        node.finished = finished
        node.fail(error)
        emit(Event.FAILURE)
        self._log_failure(node)
        return Status.FAILED

    def _bodies_for(self, cls: type[Task]) -> BodyRunner:
        """Where the plain ``def run()`` bodies of ``cls`` go (asked once per class)."""
        remote = self._remote
        bodies = remote if remote is not None and remote.takes(cls) else self._local
        self._bodies[cls] = bodies
        return bodies

    def _policy(self, node: Node) -> RetryPolicy:
        cls = type(node.task)
        policy = self._policies.get(cls)
        if policy is None:
            policy = self._policies[cls] = RetryPolicy.for_task(cls, self._retry)
        return policy

    async def _requeue(self, node: Node, delay: float) -> None:
        if delay > 0:
            await self._clock.sleep(delay)
        self._queue.push(node)

    def _push(self, node: Node) -> None:
        """Queue a ready task, unless another process holds it (then it waits for that)."""
        claim = node.claim
        if claim is _ELSEWHERE or claim is _PARKED:
            node.claim = _PARKED
        else:
            self._queue.push(node)

    # leases --------------------------------------------------------------------

    async def _claim(self, nodes: list[Node], *, recheck: bool = False) -> None:
        """Take the leases of tasks about to be run here.

        Tasks another live process holds wait for its outcome (:meth:`_watch`).
        Tasks another run succeeded at since this run probed them, and with
        ``recheck`` every task taken after waiting for another process, are
        probed again and taken as complete if they are.
        """
        coordinator = self._coordinator
        by_id = {node.task_id: node for node in nodes}
        claim = await coordinator.claim(self._run_id, list(by_id), since=self._since)
        if claim.tokens:
            self._tokens.update(claim.tokens)
        used = claim.used
        abandoned, done = claim.abandoned, claim.done  # locals: tested for every task
        # Probed side by side before any task of the claim changes hands (each in
        # turn, 30,000 tasks taken over from a dead run took 30 s).
        to_check = claim.taken if recheck else [t for t in claim.taken if t in done]
        complete = await self._complete_among([by_id[t] for t in to_check])
        # In turns of the loop: 32,768 tasks taken while others run held it 25 ms.
        # (A task of the claim that gets ready meanwhile is parked, then queued here.)
        async for some in in_turns(claim.taken, _PUSH_TURN):
            for task_id in some:
                node = by_id[task_id]
                parked = node.claim == _PARKED
                node.claim = _MINE_LEFTOVERS if task_id in abandoned else _MINE
                if task_id in complete:
                    await coordinator.release(task_id, self._run_id, LeaseOutcome.SUCCESS)
                    self._complete_elsewhere(node)
                    continue
                if task_id in used and node.attempts == 0 and node.gen is None:
                    node.attempts = used[task_id]  # a resumed run goes on with its retries
                    if node.attempts > self._policy(node).count:
                        await coordinator.release(task_id, self._run_id, LeaseOutcome.FAILED)
                        self._retries_spent(node)
                        continue
                if parked:
                    self._queue.push(node)
        for task_id, holder in claim.held.items():
            self._wait_for_holder(by_id[task_id], holder)
        for task_id in claim.unsettled:
            self._wait_for_holder(by_id[task_id], None)
        self._ensure_watching()

    async def _claim_in_chunks(self, nodes: list[Node]) -> None:
        """Lease ``nodes`` (deepest requirements first) a chunk at a time."""
        for start in range(0, len(nodes), _CLAIM_CHUNK):
            chunk = [n for n in nodes[start : start + _CLAIM_CHUNK] if n.status is None]
            if chunk:
                await self._claim(chunk)

    def _wait_for_holder(self, node: Node, holder: Holder | None) -> None:
        if node.claim != _PARKED:
            node.claim = _ELSEWHERE
        self._watched[node.task_id] = (node, holder)
        if holder is not None:
            self._log.info(
                "task.held_elsewhere",
                task_id=node.task_id,
                holder_run_id=holder.run_id,
                holder_host=holder.host,
                holder_pid=holder.pid,
            )

    async def _still_mine(self, task_id: str) -> bool:
        """Whether this run still holds the lease, once the coordinator was asked.

        The quick check says no once no heartbeat has renewed the leases for a
        whole time-to-live: the loop or the coordinator stalled. A late heartbeat
        alone loses nothing; another process taking the task over does. So
        renew now (one renewal for every worker asking meanwhile), which
        finds out, and look again.
        """
        may_commit = self._may_commit
        assert may_commit is not None
        renewal = self._renewal
        if renewal is None:
            renewal = self._renewal = anyio.Event()
            try:
                await self._coordinator.renew()
            finally:
                self._renewal = None
                renewal.set()
        else:
            await renewal.wait()
        return may_commit(task_id)

    async def _accepted(self, task_id: str, token: int) -> bool:
        """Whether the success of ``task_id`` under ``token`` may be reported.

        Without I/O while the lease surely holds; else once the coordinator
        was asked (as :meth:`_still_mine`). The journal fences the success
        again when it writes it.
        """
        accept = self._accept
        assert accept is not None
        if accept(task_id, token):
            return True
        return await self._still_mine(task_id) and accept(task_id, token)

    def _lost(self, node: Node) -> object:
        """This run lost the task's lease (it stalled past the lease's expiry)."""
        self._log.warning(
            "task.lease_lost",
            task_id=node.task_id,
            hint="another process may run it now; waiting for its outcome",
        )
        node.claim = _PARKED
        self._watched[node.task_id] = (node, None)
        self._ensure_watching()
        return _LOST

    def _ensure_watching(self) -> None:
        """Start :meth:`_watch` when tasks wait for other processes (once the run is under way).

        One watcher at most: its scope is made here, before it starts, so that
        tasks lost one after another in the same turn of the loop share it.
        """
        if self._watched and self._watching is None and self._spawn is not None:
            self._watching = anyio.CancelScope()
            self._spawn(self._watch, self._watching)

    async def _watch(self, scope: anyio.CancelScope) -> None:
        """Follow the leases of tasks other processes hold, and take their outcomes."""
        with scope:
            try:
                while self._watched:
                    await anyio.sleep(self._lease_poll)
                    await self._look()
            finally:
                self._watching = None

    async def _look(self) -> None:
        watched = self._watched
        states = await self._coordinator.watch(list(watched))
        free: list[Node] = []
        for task_id, state in states.items():
            entry = watched.get(task_id)
            if entry is None:  # settled while the coordinator was asked
                continue
            node, holder = entry
            if node.status is not None:  # settled here meanwhile (an upstream failed)
                del watched[task_id]
            elif isinstance(state, Holder) and state.run_id != self._run_id:
                if holder is None or state.run_id != holder.run_id:
                    self._wait_for_holder(node, state)
            elif state is LeaseOutcome.SUCCESS:
                del watched[task_id]
                self._complete_elsewhere(node, holder)
            elif state is LeaseOutcome.FAILED:
                del watched[task_id]
                self._failed_elsewhere(node, holder)
            else:  # let go without an outcome, or still ours after all: claim it again
                del watched[task_id]
                free.append(node)
        if free:
            await self._claim(free, recheck=True)

    async def _discard_partial_writes(self, node: Node) -> None:
        """Remove what an interrupted earlier attempt (of a run that let go of
        the task without an outcome) left beside the outputs. Never fails the task."""
        try:
            for target in await outputs_of(node, self._calls):
                removed = await target.discard_partial_writes()
                if removed:
                    self._log.info(
                        "task.partial_writes_discarded",
                        task_id=node.task_id,
                        target=repr(target),
                        count=removed,
                    )
        except Exception as exc:
            self._log.warning(
                "task.partial_writes_not_discarded",
                task_id=node.task_id,
                error=describe(exc),
            )

    async def _complete_among(self, nodes: list[Node]) -> set[str]:
        """The ids of ``nodes`` complete now, probed afresh, ``probe_concurrency`` at a
        time; the journal is asked once for the questions of probes in flight together."""
        complete: set[str] = set()
        if not nodes:
            return complete
        probes = self._probes
        if probes is not None and probes.succeeded is not None:
            probes = JournalAnswers(Probes(probes.succeeded))  # batched, no snapshots

        async def check(node: Node) -> None:
            node.known = None
            try:
                if await is_complete(node, self._calls, probes):
                    complete.add(node.task_id)
            except Exception:
                pass  # unsure: run it

        await drain(deque(nodes), check, self._probe_concurrency)
        return complete

    def _complete_elsewhere(self, node: Node, holder: Holder | None = None) -> None:
        """Another process completed the task: take it as complete, do not run it."""
        node.status = Status.ALREADY_COMPLETE
        node.claim = _UNCLAIMED
        if self._log_info:
            extra = {} if holder is None else {"by_run_id": holder.run_id, "by_pid": holder.pid}
            self._log.info("task.done_elsewhere", task_id=node.task_id, **extra)
        self._finish(node)

    def _retries_spent(self, node: Node) -> None:
        count = self._policy(node).count
        error = TaskError(
            f"{node.task_id}: not run: its {node.attempts} failed attempts in interrupted "
            f"runs already used its retries (retry_count={count}); see `asyncflow history`. "
            "The next run starts afresh",
            task_id=node.task_id,
        )
        self._fail(node, error)

    def _failed_elsewhere(self, node: Node, holder: Holder | None) -> None:
        who = (
            "another process"
            if holder is None
            else f"run {holder.run_id} (pid {holder.pid} on {holder.host})"
        )
        error = TaskError(
            f"{node.task_id}: failed in {who}, which held it while this run waited; "
            "see its attempts with `asyncflow history`",
            task_id=node.task_id,
        )
        self._fail(node, error)

    async def _settled(self, node: Node) -> None:
        """Call the task's on_success()/on_failure() hook; a raising hook is logged."""
        task = node.task
        try:
            if node.status is Status.DONE:
                outcome = task.on_success()
            else:
                outcome = task.on_failure(node.error)  # type: ignore[arg-type]
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            self._log.exception("task.hook_failed", task_id=node.task_id)

    def _releaser(self, node: Node) -> Any:
        if not node.held:
            return None

        def release(amounts: Any) -> None:
            self._queue.release(node, amounts)

        return release

    async def _wait_dynamic(self, node: Node) -> None:
        """Add what a suspended body yielded to the graph; resume it once they are complete."""
        graph = self._graph
        try:
            children = flatten(node.waiting_on)
            for child in children:
                if not isinstance(child, Task):
                    raise TypeError(
                        f"run() may yield tasks (or a list/tuple/dict of tasks), "
                        f"found {type(child).__name__} {child!r}"
                    )
            queue: deque[Node] = deque()
            child_nodes: list[Node] = []
            # In turns of the loop: 200,000 yielded tasks' ids held it 0.6 s.
            async for some in in_turns(children, _PUSH_TURN):
                for child in some:
                    child_node, new = graph.add(child)
                    if new:
                        queue.append(child_node)
                    child_nodes.append(child_node)
            # What this expansion added, and only that: another task's yielded
            # requirements may join the graph meanwhile, and are its to settle (settled
            # here too, they ran twice, or before their own requirements were added).
            added = list(queue)
            await grow(graph, queue, self._probe_concurrency, probes=self._probes, added_here=added)
            async for some in in_turns(list(dict.fromkeys(child_nodes)), _PUSH_TURN):
                for child_node in some:
                    node.deps.append(child_node)
                    child_node.dependents.append(node)
            settle_added(added, node)
        except Exception as exc:
            error = TaskError(f"{node.task_id}: yielded requirements: {exc}", task_id=node.task_id)
            error.__cause__ = exc
            await self._fail_waiting(node, error)
            return
        self._outstanding += sum(1 for n in added if n.status is None)
        self._add_workers()
        for added_node in added:
            if added_node.status is Status.MISSING or added_node.status is Status.FAILED:
                self._report_graph_failure(added_node)
        if node.status is not None:  # failed through a yielded requirement
            return
        to_claim = [n for n in added if n.status is None]
        if to_claim:
            await self._claim(to_claim)
        node.pending = sum(1 for d in node.deps if d.status is None)
        for added_node in added:
            if added_node.status is None and added_node.pending == 0:
                self._push(added_node)
        if node.pending == 0:
            self._queue.push(node)

    async def _fail_waiting(self, node: Node, error: Exception) -> None:
        await _close_generator(node)
        node.finished = time.time()
        node.record_attempt(
            node.attempts, node.attempt_started or node.finished, node.finished, error
        )
        self._fail(node, error)

    def _fail(self, node: Node, error: Exception) -> None:
        """Fail ``node`` outside an attempt of its body: report it, settle its dependents."""
        node.fail(error)
        if node.finished is None:
            node.finished = time.time()
        self._bus.emit(Event.FAILURE, node.task, self._run_id, attempt=node.attempts, error=error)
        self._log_failure(node)
        self._finish(node)

    def _report_graph_failure(self, node: Node) -> None:
        """A task that failed (or is missing) while the graph was built."""
        if node.status is Status.MISSING:
            self._bus.emit(Event.DEPENDENCY_MISSING, node.task, self._run_id)
            self._log.warning("task.missing", task_id=node.task_id)
        else:
            self._bus.emit(Event.FAILURE, node.task, self._run_id, error=node.error)
            self._log_failure(node)
        self._propagate(node)

    def _finish(self, node: Node) -> None:
        self._outstanding -= 1
        if node.status is Status.DONE or node.status is Status.ALREADY_COMPLETE:
            dispatching = self._dispatching
            for parent in node.dependents:
                if parent.status is None:
                    parent.pending -= 1
                    if parent.pending == 0 and dispatching:
                        self._push(parent)
        else:
            self._propagate(node)
            if not self._keep_going and self._cancel_scope is not None:
                self._cancel_scope.cancel()
        if self._outstanding <= 0:
            self._close()

    def _close(self) -> None:
        self._queue.close()
        if self._watching is not None:
            self._watching.cancel()

    def _propagate(self, failed: Node) -> None:
        """Mark everything downstream of ``failed`` as UPSTREAM_FAILED.

        Each error names its requirement and, in one line, the root cause. Only
        the errors right above ``failed`` chain to its error: were each level
        chained to the one below, every level of a deep chain would carry (and
        the journal store) the tracebacks of all the levels below it.
        """
        root, why, cause = _root_cause(failed)
        stack = [(failed, why)]
        while stack:
            node, reason = stack.pop()
            for parent in node.dependents:
                if parent.status is None:
                    error = UpstreamFailed(
                        parent.task_id, node.task_id, reason, root=root, root_cause=cause
                    )
                    fell = Status.UPSTREAM_FAILED if parent.gen is None else Status.FAILED
                    parent.fail(error, fell)
                    if parent.gen is not None:
                        # Its body had started and waits for what it yielded: it fails,
                        # with the requirement's own error as the cause.
                        if node is failed and not isinstance(node.error, UpstreamFailed):
                            error.__cause__ = node.error
                        parent.finished = time.time()
                        self._bus.emit(
                            Event.FAILURE,
                            parent.task,
                            self._run_id,
                            attempt=parent.attempts,
                            error=error,
                        )
                        self._log_failure(parent)
                        if self._spawn is not None:
                            self._spawn(_close_generator, parent)
                    self._outstanding -= 1
                    stack.append((parent, _UPSTREAM_WHY[fell]))
        if self._outstanding <= 0:
            self._close()

    def _log_failure(self, node: Node) -> None:
        error = node.error
        self._log.error(
            "task.failed",
            task_id=node.task_id,
            error=describe(error) if error is not None else None,
        )


def _root_cause(failed: Node) -> tuple[str, str, str]:
    """Where a failure starts, how ``failed`` itself fell, and one line on the start.

    An upstream failure of ``failed`` passes its own root on. Only the first
    line of the root's error is quoted, cut short: it is repeated in every error
    above it.
    """
    why = _UPSTREAM_WHY.get(failed.status or Status.FAILED, "did not complete")
    error = failed.error
    if isinstance(error, UpstreamFailed) and error.root_cause is not None:
        return error.root, why, error.root_cause
    if error is not None:
        why += f": {_first_line(describe(error))}"
    return failed.task_id, why, f"{failed.task_id} {why}"


def _first_line(text: str, limit: int = 200) -> str:
    lines = text.strip().splitlines() or [""]
    line = lines[0]
    if len(line) > limit:
        return line[: limit - 3] + "..."
    return line + " ..." if len(lines) > 1 else line


def _one_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What a run raises when its background tasks failed: one error, not a group.

    Task bodies never raise here (their errors are the tasks'); what does is the
    journal failing (a JournalError), or a bug, which is wrapped in an
    AsyncflowError saying so. Cancellation and interrupts pass unchanged.
    """
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(reversed(exc.exceptions))
        else:
            leaves.append(exc)
    if not all(isinstance(exc, Exception) for exc in leaves):
        return group
    for exc in leaves:
        if isinstance(exc, AsyncflowError):
            return exc
    first = leaves[0]
    error = AsyncflowError(
        f"the run stopped on an internal error of asyncflow (please report it): "
        f"{type(first).__name__}: {first}"
    )
    error.__cause__ = first
    return error


async def _close_generator(node: Node) -> None:
    """Close a suspended body so its ``finally`` blocks run; never raises."""
    gen, node.gen = node.gen, None
    if gen is None:
        return
    # A body that raises while being closed has already failed or been cancelled.
    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
        if inspect.isgenerator(gen):  # a plain def run(): its finally blocks may block
            await anyio.to_thread.run_sync(gen.close)
        else:
            await gen.aclose()
