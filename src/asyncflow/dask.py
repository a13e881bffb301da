"""Task bodies on a Dask cluster: ``run(..., executor=DaskExecutor(client))``.

The run stays in this process: the graph, completeness probes, resources and
``workers``, retries and their waits, timeouts, leases and the journal. Only
plain ``def run()`` bodies go to the cluster, those of tasks that opt in::

    class Train(asyncflow.Task):
        executor = "dask"  # or "local": stays here even with all_sync=True
        resources = {"GPU": 1}  # a run's pool here, and a worker resource there

        def run(self) -> None: ...

    result = await asyncflow.run(Report(), executor=DaskExecutor("tcp://scheduler:8786"))

``async def`` bodies stay on the event loop, and ``def run()`` bodies that
yield tasks (dynamic requirements) stay in worker threads: each step of such
a body needs the run's graph.

How an attempt goes on the cluster:

* The task object goes to a worker by cloudpickle, as Dask sends functions.
  Every task of the run bound for the cluster is pickled before anything
  runs; one that does not pickle stops the run with an error naming it.
* The attempt is one Dask task (its key names the task id, the run and the
  attempt), submitted with Dask's own retries off: asyncflow retries, after
  its own waits. A task's ``resources`` are also its Dask worker resources
  (``client.submit(..., resources=...)``), so the scheduler places it on a
  worker that has them; ``worker_resources`` narrows that.
* The body writes its outputs on the worker, through the same atomic target
  code: local paths must be on storage both sides see (S3 and GCS work as
  usual). Once the Dask task ends, the run checks here that every output
  exists, as for a body run here.
* A timeout, a fail-fast stop or the run being cancelled cancel the Dask
  task. A Python body that is already running cannot be interrupted: the
  worker goes on computing and its result is ignored; its writes are refused
  once the worker has heard of the cancellation (a write committed before
  that, in the few milliseconds the message takes, stands).
* A worker that dies while it runs the attempt (or holds it, about to run it)
  fails the attempt with :class:`WorkerLost`, which the task's retry policy
  retries like any error. Dask itself would run the task again on another
  worker at once; the run cancels that run (whose writes are then refused as
  above) and retries after the task's ``retry_delay``.
* The journal records the worker's address with the attempt, the progress
  display shows it beside each running task, and records the body logs carry
  ``run_id`` and ``task_id`` (as attributes of stdlib records, and bound in
  structlog's context).

What a body on a worker cannot do: ``self.decrease_running_resources()``
(its resources are given back when it ends), and check the run's journal
lease before it commits a write. The run checks the lease when the attempt
ends and, if another process took the task meanwhile, does not take the
attempt's outcome. The body writes under its attempt's lease token (the
writer identity it is given carries it), so its S3 and GCS commits are
fenced: they never replace an object a newer holder of the task wrote. A
local file it commits after the task was taken over stands.

This module is the only one that imports ``distributed`` (the ``dask`` extra:
``pip install 'asyncflow[dask]'``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, Final, final

import anyio
import cloudpickle
import distributed
import structlog

from ._attempt import LeaseGuard, check_returned
from ._log import log
from ._redact import describe
from ._usercode import UserCode
from .errors import AsyncflowError, ConfigError, TargetError, TaskError
from .graph import Node
from .targets.base import Target, WriterIdentity, commit_guard, writer_identity
from .task import RunKind, Task

__all__ = ["DaskExecutor", "WorkerLost"]

_TOPIC: Final = "asyncflow-started"
"""The Dask event topic where workers say which attempt they start (one for all
runs: the scheduler keeps every topic it has seen)."""

_QUEUED: Final = "dask"
"""Where an attempt is while it waits on the cluster for a worker."""

_CANCEL_WAIT: Final = 10.0
"""Seconds to wait for the scheduler to take a cancellation."""


class WorkerLost(TaskError):
    """The Dask worker running (or about to run) an attempt died or left the cluster.

    An attempt's error like any other: the task's retry policy decides whether
    another attempt follows.
    """

    def __init__(self, task_id: str, worker: str) -> None:
        self.worker = worker
        super().__init__(
            f"{task_id}: the Dask worker {worker} running its attempt died or left the cluster",
            task_id=task_id,
        )


@final
class DaskExecutor:
    """Runs the plain ``def run()`` bodies of tasks that opt in on a Dask cluster.

    Pass it as ``asyncflow.run(..., executor=DaskExecutor(...))``; one
    instance may serve any number of runs, one after another or at once.

    Args:
        cluster: where the scheduler is: a ``distributed.Client``, a cluster
            object (``LocalCluster``, ``KubeCluster``: anything with a
            ``scheduler_address``), or an address (``"tcp://host:8786"``).
            Each run connects a client of its own to that scheduler (with the
            given client's security settings) and closes it when it ends.
        all_sync: send the bodies of every task with a plain ``def run()``,
            not only of those whose class says ``executor = "dask"``; a class
            saying ``executor = "local"`` still stays here.
        worker_resources: which of a task's ``resources`` are also Dask worker
            resources: all (True), none (False), or those named. A resource
            only this process knows (``db_connections``) must be left out, or
            no worker would ever be found for the task.
        connect_timeout: seconds to wait for the scheduler (default: Dask's
            ``distributed.comm.timeouts.connect``).

    Raises:
        ConfigError: ``cluster`` is none of the above.
    """

    def __init__(
        self,
        cluster: distributed.Client | str | Any,
        *,
        all_sync: bool = False,
        worker_resources: bool | Iterable[str] = True,
        connect_timeout: float | None = None,
    ) -> None:
        security = None
        if isinstance(cluster, str):
            address = cluster
        elif isinstance(cluster, distributed.Client):
            scheduler: Any = cluster.scheduler
            address = scheduler.address if scheduler is not None else ""
            security = cluster.security
        elif isinstance(getattr(cluster, "scheduler_address", None), str):
            address = cluster.scheduler_address
            security = getattr(cluster, "security", None)
        else:
            raise ConfigError(
                "DaskExecutor takes a distributed.Client, a Dask cluster or a scheduler "
                f"address such as 'tcp://host:8786', got {cluster!r}"
            )
        if not address:
            raise ConfigError(f"DaskExecutor: {cluster!r} has no scheduler address")
        self.address: str = address
        """The scheduler's address."""
        self._security = security
        self._all_sync = all_sync
        if isinstance(worker_resources, bool):
            self._resources: bool | frozenset[str] = worker_resources
        else:
            self._resources = frozenset(worker_resources)
        self._connect_timeout = connect_timeout

    def __repr__(self) -> str:
        return f"DaskExecutor({self.address!r})"

    def takes(self, cls: type[Task]) -> bool:
        """Whether the bodies of ``cls`` go to the cluster.

        Raises:
            ConfigError: ``cls.executor`` is a text other than "dask" or "local".
        """
        choice = _choice(cls)
        if cls._run_kind is not RunKind.SYNC or cls.run is Task.run:
            return False  # async bodies run on the loop; the default body does nothing
        if inspect.isgeneratorfunction(cls.run):
            return False  # it yields tasks: each of its steps needs the run's graph
        if choice is None:
            return self._all_sync
        return choice == "dask"

    def worker_resources(self, cls: type[Task]) -> dict[str, float]:
        """The Dask worker resources an attempt of ``cls`` asks for."""
        wanted = self._resources
        if wanted is False:
            return {}
        return {
            name: float(amount)
            for name, amount in cls.resources.items()
            if amount and (wanted is True or name in wanted)
        }

    @contextlib.asynccontextmanager
    async def open(self, run_id: str, nodes: Sequence[Node]) -> AsyncIterator[_DaskBodies]:
        """Connect for one run and check the tasks bound for the cluster, before any runs.

        Raises:
            AsyncflowError: the scheduler cannot be reached.
            TaskError: a task bound for the cluster does not pickle, or asks
                for a worker resource no worker of the cluster has.
        """
        taken: dict[type, bool] = {}
        payloads: dict[str, bytes] = {}
        for node in nodes:
            cls = type(node.task)
            goes = taken.get(cls)
            if goes is None:
                goes = taken[cls] = self.takes(cls)
            if goes:
                payloads[node.task_id] = _pickled(node.task)
        client = await self._connect()
        try:
            bodies = _DaskBodies(self, client, run_id, payloads)
            await bodies.check_resources(nodes)
            bodies.start()
            try:
                yield bodies
            finally:
                with anyio.CancelScope(shield=True):
                    await bodies.stop()
        finally:
            with anyio.CancelScope(shield=True):
                await client.close()

    async def _connect(self) -> Any:
        """An asynchronous client of the run's own, on this event loop (its
        events come here; the user's client, if any, is left alone)."""
        kwargs: dict[str, Any] = {"asynchronous": True, "set_as_default": False}
        if self._security is not None:
            kwargs["security"] = self._security
        if self._connect_timeout is not None:
            kwargs["timeout"] = self._connect_timeout
        try:
            client: Any = distributed.Client  # untyped
            return await client(self.address, **kwargs)
        except (OSError, TimeoutError) as exc:
            raise AsyncflowError(
                f"cannot connect to the Dask scheduler at {self.address}: {describe(exc)}"
            ) from exc


def _choice(cls: type[Task]) -> str | None:
    """``cls.executor`` ("dask", "local") if the class says; a parameter of that name is not."""
    choice = getattr(cls, "executor", None)
    if not isinstance(choice, str):
        return None
    if choice not in ("dask", "local"):
        raise ConfigError(
            f"{cls.task_family}: executor = {choice!r}: expected 'dask' (run() on the Dask "
            "cluster) or 'local' (in this process)"
        )
    return choice


def _pickled(task: Task) -> bytes:
    """The task as the cluster gets it.

    Raises:
        TaskError: it does not pickle.
    """
    try:
        return bytes(cloudpickle.dumps(task))
    except Exception as exc:
        raise TaskError(
            f"{task.task_id}: cannot be sent to the Dask cluster: the task does not pickle "
            f"({describe(exc)}); keep open files, clients and locks out of its attributes "
            f"(make them in run()), or set executor = 'local' on {type(task).__name__}",
            task_id=task.task_id,
        ) from exc


class _Attempt:
    """One attempt on the cluster, as the run follows it."""

    __slots__ = ("done", "future", "lost", "node")

    def __init__(self, node: Node, future: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.node = node
        self.future = future
        self.done: asyncio.Future[None] = loop.create_future()
        self.lost: WorkerLost | None = None
        # Dask calls back in a thread of its own once the future is done.
        future.add_done_callback(lambda _: _wake_threadsafe(loop, self.done))


def _wake(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


def _wake_threadsafe(loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
        loop.call_soon_threadsafe(_wake, done)


async def _give_up(client: Any, futures: list[Any], reason: str) -> None:
    """Cancel Dask tasks, whatever cancels the caller; not for longer than
    :data:`_CANCEL_WAIT` (a scheduler that has gone away does not answer)."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(_CANCEL_WAIT):
        try:
            await client.cancel(futures, reason=reason)
        except Exception as exc:
            log.warning("dask.cancel_failed", reason=reason, error=describe(exc))


class _DaskBodies:
    """The bodies of one run on the cluster (a :class:`~asyncflow._attempt.BodyRunner`)."""

    def __init__(
        self,
        owner: DaskExecutor,
        client: Any,
        run_id: str,
        payloads: dict[str, bytes],
    ) -> None:
        self._owner = owner
        self._client = client
        self._run_id = run_id
        self._payloads = payloads  # pickled before the run, each used by a first attempt
        self._running: dict[str, _Attempt] = {}  # by Dask key
        self._loop = asyncio.get_running_loop()
        self._subscribed: list[str] = []

    def takes(self, cls: type[Task]) -> bool:
        return self._owner.takes(cls)

    async def check_resources(self, nodes: Sequence[Node]) -> None:
        """Refuse a task asking for a worker resource no worker has, while there are workers.

        (A cluster without workers yet, say an adaptive one, is not judged.)
        """
        identity = await self._client.scheduler.identity()
        workers = identity.get("workers") or {}
        if not workers:
            return
        have: set[str] = set()
        for info in workers.values():
            have.update((info.get("resources") or {}).keys())
        checked: set[type] = set()
        for node in nodes:
            cls = type(node.task)
            if cls in checked or node.task_id not in self._payloads:
                continue
            checked.add(cls)
            missing = sorted(set(self._owner.worker_resources(cls)) - have)
            if missing:
                raise TaskError(
                    f"{node.task_id}: asks for resource(s) {', '.join(missing)}, which no "
                    f"worker of the Dask cluster at {self._owner.address} has (its workers "
                    f"have: {', '.join(sorted(have)) or 'none'}); start workers with "
                    "--resources, or leave such resources out of "
                    "DaskExecutor(worker_resources=...)",
                    task_id=node.task_id,
                )

    def start(self) -> None:
        client = self._client
        client.subscribe_topic(_TOPIC, self._on_started)
        client.subscribe_topic("all", self._on_cluster_event)
        self._subscribed = [_TOPIC, "all"]

    async def stop(self) -> None:
        """Cancel what is still on the cluster; stop listening (before the client closes,
        so that the scheduler does not write to a closed client)."""
        if self._running:  # (each attempt cancels its own as it ends: a last resort)
            futures = [attempt.future for attempt in self._running.values()]
            await _give_up(self._client, futures, "the asyncflow run ended")
        for topic in self._subscribed:
            self._client.unsubscribe_topic(topic)
        self._subscribed = []

    async def run(self, node: Node, calls: UserCode, guard: LeaseGuard | None) -> None:
        task = node.task
        task_id = node.task_id
        payload = self._payloads.pop(task_id, None) or _pickled(task)
        key = f"{task_id}-{self._run_id}-{node.attempts}"
        client = self._client
        cls = type(task)
        future = client.submit(
            _run_body,
            payload,
            self._run_id,
            task_id,
            key,
            writer_identity.get(),  # what the body's remote writes are tagged with
            key=key,
            resources=self._owner.worker_resources(cls) or None,
            priority=task.priority,
            retries=0,
            pure=False,
        )
        attempt = _Attempt(node, future, self._loop)
        node.where = _QUEUED
        self._running[key] = attempt
        try:
            await attempt.done
        except BaseException:
            # Timed out or cancelled: the body may be running; it is given up.
            await _give_up(client, [future], "asyncflow gave the attempt up")
            raise
        finally:
            del self._running[key]
        if attempt.lost is not None:
            # Dask may be running it again elsewhere already: asyncflow retries instead.
            await _give_up(client, [future], "its worker died; asyncflow retries")
            raise attempt.lost
        status = future.status
        if status == "error":
            error = await _awaited(future.exception())
            trace = await _awaited(future.traceback())
            future.release()
            if isinstance(error, distributed.KilledWorker):
                lost = WorkerLost(task_id, str(getattr(error, "last_worker", "") or "?"))
                raise lost from error
            if isinstance(error, BaseException) and not isinstance(error, Exception):
                raise TaskError(f"{task_id}: run() raised {describe(error)}", task_id=task_id)
            raise error.with_traceback(trace)
        future.release()
        if status != "finished":
            raise TaskError(
                f"{task_id}: its Dask task {key} ended as {status!r} (cancelled by another "
                "client of the cluster?)",
                task_id=task_id,
            )
        if guard is not None and not guard.holds(task_id):
            raise TargetError(
                f"{task_id}: its attempt on {node.where} ended after this run lost the journal "
                "lease (no heartbeat for longer than the lease lasts), so another process may "
                "be running the task: the attempt's outcome is not taken (what it wrote stands)"
            )

    # cluster events: on the event loop (the client is asynchronous) ----------------

    def _on_started(self, event: tuple[float, Any]) -> None:
        _, message = event
        if not isinstance(message, dict):
            return
        attempt = self._running.get(message.get("key"))  # type: ignore[arg-type]
        # An attempt whose worker died stays where it was lost: Dask may start
        # its key again elsewhere before the attempt has failed here.
        if attempt is not None and attempt.lost is None:
            attempt.node.where = str(message.get("worker") or _QUEUED)

    def _on_cluster_event(self, event: tuple[float, Any]) -> None:
        _, message = event
        if not isinstance(message, dict) or message.get("action") != "remove-worker":
            return
        if message.get("expected"):
            # Retired on purpose (scaled down): Dask places its tasks again,
            # which is no failure of theirs.
            return
        worker = str(message.get("worker"))
        for key in message.get("processing-tasks") or ():
            attempt = self._running.get(key)
            if attempt is not None and attempt.lost is None:
                attempt.node.where = worker
                attempt.lost = WorkerLost(attempt.node.task_id, worker)
                _wake(attempt.done)


async def _awaited(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


# On the worker ------------------------------------------------------------------

_ids: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "asyncflow_dask_ids", default=None
)
_factory_installed = False


def _run_body(
    payload: bytes, run_id: str, task_id: str, key: str, writer: WriterIdentity | None
) -> None:
    """On a Dask worker: run the task's body once, its writes guarded and tagged
    with the attempt (``writer``), as in the run's process."""
    worker = distributed.get_worker()
    worker.log_event(_TOPIC, {"key": key})  # the worker's address comes with it
    _label_records()
    task: Task = cloudpickle.loads(payload)
    ids = _ids.set((run_id, task_id))
    guard = commit_guard.set(_GivenUp(worker, key))
    writing = writer_identity.set(writer)
    try:
        with structlog.contextvars.bound_contextvars(run_id=run_id, task_id=task_id):
            try:
                outcome = task.run()
            except StopIteration as exc:  # a future cannot carry it
                raise RuntimeError(f"{task_id}: run() raised StopIteration") from exc
        check_returned(task_id, outcome)
    finally:
        writer_identity.reset(writing)
        commit_guard.reset(guard)
        _ids.reset(ids)


class _GivenUp:
    """Refuses the writes of an attempt the run gave up (timed out, cancelled, its
    first worker died) while its body still ran on a worker."""

    __slots__ = ("key", "worker")

    def __init__(self, worker: Any, key: str) -> None:
        self.worker = worker
        self.key = key

    def __call__(self, target: Target) -> None:
        try:
            state = self.worker.state.tasks.get(self.key)
            given_up = state is None or state.state == "cancelled"
        except AttributeError:  # a distributed without this state: cannot tell
            return
        if given_up:
            raise TargetError(
                f"{target!r}: write not committed: the run gave this attempt up (it timed "
                "out, was cancelled, or its first worker died) while its body still ran on "
                f"the Dask worker {self.worker.address}"
            )


def _label_records() -> None:
    """Give the stdlib records made during a body its ``run_id`` and ``task_id``.

    Once per worker process: a record factory around the current one, which
    adds them only while an asyncflow body runs (so that a worker's handler,
    or ``Client.forward_logging()``, shows them).
    """
    global _factory_installed
    if _factory_installed:
        return
    _factory_installed = True
    previous: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        ids = _ids.get()
        if ids is not None:
            record.run_id, record.task_id = ids
        return record

    logging.setLogRecordFactory(factory)
