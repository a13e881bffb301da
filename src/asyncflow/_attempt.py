"""Running one attempt of a task body: on the loop, in a thread, or as a generator.

Where a plain ``def run()`` body runs is a backend (:class:`BodyRunner`): worker
threads of this process by default (:class:`LocalBodies`), a Dask cluster when
the run is given ``executor=DaskExecutor(...)``. Everything around a body (its
attempt, timeout, retries, resources, the journal) stays in the executor.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, NoReturn, Protocol

import anyio
import anyio.to_thread

from ._status import reporting
from ._usercode import UserCode
from .errors import MissingOutputError, TargetError, TaskDefinitionError, TaskError
from .graph import Node, missing_targets, outputs_of
from .resources import running_release
from .targets.base import Target, WriterIdentity, commit_guard, writer_identity
from .task import RunKind, Task, flatten, map_structure

__all__ = [
    "BodyRunner",
    "ExecutorBackend",
    "LeaseGuard",
    "LocalBodies",
    "Suspended",
    "call_run",
    "check_outputs",
    "check_returned",
]


class BodyRunner(Protocol):
    """Runs the plain ``def run()`` bodies of one run's tasks somewhere.

    The executor asks :meth:`takes` once per task class, and runs the bodies of
    the classes a backend does not take in worker threads (:class:`LocalBodies`).
    """

    def takes(self, cls: type[Task]) -> bool:
        """Whether the bodies of ``cls`` (a plain ``def run()``) run here."""
        ...

    async def run(self, node: Node, calls: UserCode, guard: LeaseGuard | None) -> None:
        """Run one attempt (or one step of a generator body) of ``node``'s body.

        ``node.where`` says where it runs (None: this process). Cancellation
        (timeout, fail-fast, the run cancelled) stops waiting for the body; a
        backend makes sure what the body writes after that is not committed,
        as far as it can.

        Raises:
            Exception: what the body raised, or why the attempt failed.
        """
        ...


class ExecutorBackend(Protocol):
    """What ``run(executor=...)`` takes: a place to run bodies, opened per run."""

    def open(self, run_id: str, nodes: Sequence[Node]) -> AbstractAsyncContextManager[BodyRunner]:
        """The backend's :class:`BodyRunner` for one run, whose tasks to run are ``nodes``.

        Raises:
            AsyncflowError: the backend cannot run some of ``nodes`` (before
                anything has run), or cannot be reached.
        """
        ...


class LocalBodies:
    """Worker threads of this process: at most ``threads`` bodies at once."""

    def __init__(self, threads: anyio.CapacityLimiter) -> None:
        self._threads = threads

    def takes(self, cls: type[Task]) -> bool:
        return True

    async def run(self, node: Node, calls: UserCode, guard: LeaseGuard | None) -> None:
        await _call_sync(node, self._threads, calls, guard)


class LeaseGuard:
    """Refuses a task body's writes once its run no longer surely holds the lease.

    One per worker: the worker puts it in its context (:data:`commit_guard`)
    once, and names the task before each attempt (``task_id``), which costs
    less per task than a guard and a context change each.
    """

    __slots__ = ("holds", "task_id")

    def __init__(self, holds: Callable[[str], bool]) -> None:
        self.holds = holds
        self.task_id = ""

    def __call__(self, target: Target) -> None:
        if not self.holds(self.task_id):  # check() inlined: once per task
            self.refuse(target, self.task_id)

    def check(self, target: Target, task_id: str) -> None:
        if not self.holds(task_id):
            self.refuse(target, task_id)

    @staticmethod
    def refuse(target: Target, task_id: str) -> NoReturn:
        raise TargetError(
            f"{target!r}: write not committed: this run lost the journal lease on "
            f"{task_id} (no heartbeat for longer than the lease lasts: the "
            "process stalled, or the journal could not be written), so another "
            "process may be running the task"
        )


async def call_run(
    node: Node,
    bodies: BodyRunner,
    calls: UserCode,
    release: Callable[[Mapping[str, float]], None] | None,
    guard: LeaseGuard | None = None,
    writer: WriterIdentity | None = None,
) -> None:
    """Run the task body once, with ``task_id`` bound for logging and ``writer``
    (the attempt's identity, which remote targets tag their objects with) in
    :data:`~asyncflow.targets.base.writer_identity`.

    A plain ``def run()`` goes to ``bodies`` (the backend that takes its
    class); an ``async def`` body runs on the loop. ``release`` (when the task
    holds resources) backs
    ``Task.decrease_running_resources()``. ``guard`` (when the run holds the
    task's journal lease) is the worker's, already in its context and naming
    this task: a plain ``def run()`` in a thread keeps checking this task's
    lease even after the worker has moved on.
    """
    task = node.task
    kind = type(task)._run_kind
    bound = _task_id_var().set(node.task_id)
    releasing = running_release.set(release) if release is not None else None
    writing = writer_identity.set(writer) if writer is not None else None
    suspended = False
    try:
        if kind is RunKind.ASYNC:
            await task.run()
        elif kind is RunKind.SYNC:
            await bodies.run(node, calls, guard)
        else:
            await _run_generator(node, calls)
    except Suspended:
        suspended = True
        raise
    finally:
        bound.var.reset(bound)
        if releasing is not None:
            running_release.reset(releasing)
        if writing is not None:
            writer_identity.reset(writing)
        if writer is not None and not suspended:
            status = reporting.get()
            if status is not None and status.used:
                # Its last status before the event that ends the attempt; a
                # thread it leaves behind (timed out) reports nothing more.
                status.close(node.task_id, writer.attempt)


@functools.cache
def _task_id_var() -> contextvars.ContextVar[Any]:
    """The context variable behind structlog's ``bind_contextvars(task_id=...)``.

    Found once through structlog's public functions (the token a binding
    returns names its variable); each attempt then sets and resets it directly,
    which costs a tenth of a ``bind_contextvars()``/``reset_contextvars()`` pair
    with their keyword mappings. structlog is imported here, at the first
    attempt, not with the package.
    """
    from structlog.contextvars import bind_contextvars, reset_contextvars

    tokens = bind_contextvars(task_id=None)
    reset_contextvars(**tokens)
    return tokens["task_id"].var


async def _call_sync(
    node: Node, threads: anyio.CapacityLimiter, calls: UserCode, guard: LeaseGuard | None
) -> None:
    """A plain ``def run()`` in a worker thread; one step of it when it is a generator.

    A generator body (a ``def run()`` that yields tasks, as in Luigi) runs in a
    worker thread up to its next ``yield``; then the attempt is suspended
    (:class:`Suspended`), holding no thread, worker or resources, and the next
    step sends it the outputs of what it yielded. It is never restarted from
    the top.

    A thread cannot be killed: on timeout or cancellation the run stops waiting
    for it (``abandon_on_cancel``) and flags the attempt as abandoned, so that
    the thread's late writes are discarded instead of committed.
    """
    abandoned = threading.Event()
    task_id = node.task_id

    def refuse_if_abandoned(target: Target) -> None:
        if abandoned.is_set():
            raise TargetError(
                f"{target!r}: write not committed: its task attempt was abandoned "
                "(timed out or cancelled) while this worker thread was still running"
            )
        if guard is not None:
            guard.check(target, task_id)

    sent = None
    if node.gen is not None:  # resumed: with the outputs of what it yielded
        sent = await _yielded_outputs(node.waiting_on, calls)
    gen, node.gen = node.gen, None  # set again below if the body suspends
    node.waiting_on = None
    token = commit_guard.set(refuse_if_abandoned)  # copied into the thread's context
    try:
        gen, yielded = await anyio.to_thread.run_sync(
            _sync_step, node.task, gen, sent, limiter=threads, abandon_on_cancel=True
        )
    except BaseException:
        abandoned.set()
        raise
    finally:
        commit_guard.reset(token)
    if gen is not None:
        node.gen = gen
        raise Suspended(yielded)
    check_returned(node.task_id, yielded)


def check_returned(task_id: str, outcome: object) -> None:
    """Refuse an awaitable returned by a plain ``def run()`` (it would never run).

    Raises:
        TaskError: ``outcome`` is awaitable (it is closed first).
    """
    if inspect.isawaitable(outcome):
        close = getattr(outcome, "close", None)
        if close is not None:
            close()
        raise TaskError(
            f"{task_id}: run() is a plain function but returned an awaitable; "
            "declare it `async def run(self)`",
            task_id=task_id,
        )


async def _yielded_outputs(yielded: Any, calls: UserCode) -> Any:
    """The outputs of what a body yielded, in the same shape.

    ``output()`` is user code that may block: called as in graph probes, side
    by side when it is slow. The first exception raised is raised.
    """
    tasks = flatten(yielded)
    found = await calls.map(_output_method, _call_output, tasks)
    for outputs in found:
        if isinstance(outputs, Exception):
            raise outputs
    by_task = {id(task): outputs for task, outputs in zip(tasks, found, strict=True)}
    return map_structure(lambda task: by_task[id(task)], yielded)


def _output_method(task: Task) -> object:
    return type(task).output


def _call_output(task: Task) -> Any:
    return task.output()


def _sync_step(task: Task, gen: Any, sent: Any) -> tuple[Any, Any]:
    """In a worker thread: start ``run()``, or resume its generator with ``sent``
    (the outputs of what it yielded), up to the next ``yield``.

    Returns ``(generator, what it yielded)`` when the body suspends, else
    ``(None, what run() returned)``. ``StopIteration`` never leaves the thread:
    a future cannot carry it.
    """
    if gen is None:
        try:
            outcome = task.run()
        except StopIteration as exc:
            raise RuntimeError(f"{task.task_id}: run() raised StopIteration") from exc
        if not inspect.isgenerator(outcome):
            return None, outcome
        gen = outcome
    try:
        return gen, gen.send(sent)
    except StopIteration:
        return None, None


class Suspended(Exception):
    """The body yielded requirements; it waits for them holding nothing."""

    def __init__(self, requirements: Any) -> None:
        super().__init__("suspended on dynamic requirements")
        self.requirements = requirements


async def _run_generator(node: Node, calls: UserCode) -> None:
    """Start or resume an async-generator body until it yields or returns.

    It is resumed with the outputs of what it yielded, in the same structure,
    and never restarted from the top.
    """
    gen = node.gen
    if gen is None:
        gen = node.gen = node.task.run()
        step = gen.__anext__()
    else:
        outputs = await _yielded_outputs(node.waiting_on, calls)
        node.waiting_on = None
        step = gen.asend(outputs)
    try:
        requirements = await step
    except StopAsyncIteration:
        node.gen = None
        return
    except BaseException:
        node.gen = None  # it raised: this attempt is over
        raise
    raise Suspended(requirements)


async def check_outputs(node: Node, calls: UserCode) -> None:
    """Fail the attempt when the body returned without producing every output."""
    outputs = node.outputs
    if outputs is None:  # not probed (a custom complete(), or forced)
        try:
            outputs = await outputs_of(node, calls)
        except Exception as exc:
            raise TaskDefinitionError(node.task_id, "output", exc) from exc
    if outputs:
        missing = await missing_targets(outputs)
        if missing:
            raise MissingOutputError(node.task_id, [str(t) for t in missing])
