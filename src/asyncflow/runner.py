"""The entry points: ``await asyncflow.run(...)`` and ``asyncflow.build(...)``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio
import anyio.to_thread

from ._attempt import BodyRunner, ExecutorBackend
from ._gc import fewer_full_collections
from ._log import enabled
from ._log import logger as asyncflow_logger
from ._retry import RetryPolicy
from ._scheduler import Scheduler
from ._turns import in_turns
from .clock import Clock
from .config import (
    MAX_WORKERS,
    Config,
    check_amounts,
    check_journal_path,
    check_limits,
    check_positive_int,
)
from .coordination import NullCoordinator
from .errors import AsyncflowError, ConfigError, TaskDefinitionError
from .events import EventBus, EventHandler, TaskEvent
from .executor import Executor
from .graph import DEFAULT_PROBE_CONCURRENCY, Graph, Probes, after_run, expand
from .journal import RunStatus
from .journal.where import is_postgres_url
from .resources import DEFAULT_CAPACITY, ResourcePool, _current_pool
from .result import RunResult, TaskResults
from .targets._clients import client_scope
from .task import RunKind, Task, secrets_known

if TYPE_CHECKING:
    from .journal import AnyJournal
    from .progress import Progress

__all__ = ["DEFAULT_JOURNAL", "DEFAULT_WORKERS", "RunMetrics", "build", "run"]

DEFAULT_WORKERS: Final = 8
"""Task bodies that may run at once when ``workers`` is not given."""

_GRAPH_TURN: Final = 4096
"""Tasks looked at between two turns of the event loop (a few milliseconds' work)."""


class _DefaultJournal:
    def __repr__(self) -> str:
        return "DEFAULT_JOURNAL"


DEFAULT_JOURNAL: Final = _DefaultJournal()
"""``journal=`` default: the configured path, else ``.asyncflow/journal.db``."""

JournalArg = str | os.PathLike[str] | _DefaultJournal | None


async def run(
    *tasks: Task | Iterable[Task],
    workers: int | None = None,
    resources: Mapping[str, float] | None = None,
    journal: JournalArg = DEFAULT_JOURNAL,
    keep_going: bool | None = None,
    max_running: Mapping[str, int] | None = None,
    handlers: Iterable[EventHandler] = (),
    probe_concurrency: int = DEFAULT_PROBE_CONCURRENCY,
    retry: RetryPolicy | None = None,
    clock: Clock | None = None,
    config: Config | None = None,
    force: Iterable[Task | str] = (),
    progress: bool | Progress = False,
    metrics: RunMetrics | None = None,
    executor: ExecutorBackend | None = None,
) -> RunResult:
    """Run ``tasks`` and everything they need that is not already complete.

    Tasks may be given as arguments or as one list (``run([a, b])``).

    Args:
        workers: task bodies running at once (default: configured, else 8).
            Sync bodies run in worker threads, at most this many.
        resources: capacities of named resources, e.g. ``{"memory_gb": 64}``,
            on top of the configured ones.
        journal: path of the SQLite run journal, in a folder that exists,
            or the URL of a PostgreSQL one (``postgresql://user@host:port/db``,
            also ``postgres://``; needs ``asyncflow[postgres]``), which
            processes on several hosts may share; ``None`` turns it off.
            Default: the configured path, else ``.asyncflow/journal.db``
            (either's folder is created if missing).
        keep_going: when False, the first failure cancels running tasks and
            stops the run (default: configured, else True).
        max_running: per-family limits, overriding ``Task.max_running`` and
            the configured ones.
        handlers: callables receiving every :class:`~asyncflow.TaskEvent`.
        probe_concurrency: completeness probes in flight at once.
        retry: retry defaults for tasks whose classes set no retry attributes.
        clock: the time source for waits between retries (tests pass a
            :class:`asyncflow.testing.FakeClock`).
        config: settings to use instead of reading ``asyncflow.toml`` /
            ``pyproject.toml`` / ``ASYNCFLOW_*`` (see :class:`asyncflow.Config`).
        force: tasks to run even though complete: task instances, task ids or
            family names.
        progress: show live progress on stderr (True), or as a
            :class:`~asyncflow.progress.Progress` says; in a notebook, an HTML
            block updated in place.
        metrics: a handler of the run's events that is also told how the run
            ended, e.g. :class:`asyncflow.metrics.PrometheusMetrics`.
        executor: where plain ``def run()`` bodies run besides worker threads:
            ``asyncflow.dask.DaskExecutor(client_or_address)`` sends those of
            the tasks that opt in to a Dask cluster (default: the configured
            ``dask_scheduler``, else none).

    Returns:
        A :class:`RunResult`; ``result.ok`` tells whether every requested task
        is complete.

    Raises:
        CycleError: the requirements form a cycle (nothing has run).
        ConfigError: an argument is invalid.
        JournalError: the journal file cannot be used (the message says how
            to recover).
    """
    roots = _requested(tasks)
    forced = _forced_names(force)
    if config is None:
        config = await anyio.to_thread.run_sync(Config.load)
    elif not isinstance(config, Config):
        raise ConfigError(f"config must be an asyncflow.Config, got {config!r}")
    # The default journal's folder (configured, else .asyncflow) is made if missing;
    # a path given here must be in a folder that exists (a typo makes no folders).
    make_folder = journal is DEFAULT_JOURNAL
    if journal is DEFAULT_JOURNAL and config.journal is not None:
        journal = config.journal or None  # "" in the configuration: no journal
    options = _RunOptions(
        workers if workers is not None else config.workers or DEFAULT_WORKERS,
        {**config.resources, **(resources or {})},
        journal,
        {**config.max_running, **(max_running or {})},
        probe_concurrency,
    )
    if keep_going is None:
        keep_going = config.keep_going if config.keep_going is not None else True
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise ConfigError(f"retry must be an asyncflow.RetryPolicy, got {retry!r}")
    options.retry = retry
    options.clock = clock
    options.progress = _progress(progress)
    options.executor = _executor(executor, config)
    run_id = _new_run_id()
    started = time.time()
    if metrics is not None:
        handlers = [*handlers, metrics]
    # Imported here, not with the package: structlog (which imports rich) and the
    # journal's SQLite parts cost ``import asyncflow`` tens of milliseconds.
    import structlog.contextvars

    with (
        structlog.contextvars.bound_contextvars(run_id=run_id),
        secrets_known(roots),
        _told(metrics, run_id) as told,
        fewer_full_collections(),
    ):
        async with client_scope():
            if options.journal is None:
                return told(
                    await _run(
                        roots, options, run_id, started, keep_going, handlers, forced, None, None
                    )
                )
            from .journal.backends import open_journal
            from .journal.sqlite import DEFAULT_LEASE_TTL

            ttl = config.lease_ttl or DEFAULT_LEASE_TTL
            opening = open_journal(options.journal, lease_ttl=ttl, create_folder=make_folder)
            async with opening as run_journal:
                # 100,000 requested tasks' ids take 0.23 s to make: in turns of the loop.
                ids = [t.task_id async for some in in_turns(roots, _GRAPH_TURN) for t in some]
                await run_journal.begin_run(run_id, ids, started=started)
                ended = False

                async def end(ok: bool) -> None:
                    nonlocal ended
                    ended = True
                    with anyio.CancelScope(shield=True):
                        status = RunStatus.SUCCESS if ok else RunStatus.FAILED
                        await run_journal.end_run(run_id, status)

                try:
                    return told(
                        await _run(
                            roots,
                            options,
                            run_id,
                            started,
                            keep_going,
                            handlers,
                            forced,
                            run_journal,
                            end,
                        )
                    )
                finally:
                    if not ended:  # it raised or was cancelled before its end
                        with anyio.CancelScope(shield=True):
                            await run_journal.end_run(run_id, RunStatus.CANCELLED)


class RunMetrics(Protocol):
    """What ``run(metrics=...)`` takes: an event handler told how each run ended."""

    def __call__(self, event: TaskEvent, /) -> object: ...

    def run_ended(self, run_id: str, status: str) -> None: ...


@contextlib.contextmanager
def _told(metrics: RunMetrics | None, run_id: str) -> Iterator[Callable[[RunResult], RunResult]]:
    """Tells ``metrics`` how the run ended: as the result passed through says, else cancelled."""
    status = RunStatus.CANCELLED  # raised, or was cancelled, before its result

    def told(result: RunResult) -> RunResult:
        nonlocal status
        status = RunStatus.SUCCESS if result.ok else RunStatus.FAILED
        return result

    try:
        yield told
    finally:
        if metrics is not None:
            metrics.run_ended(run_id, status.value)


async def _run(
    roots: list[Task],
    options: _RunOptions,
    run_id: str,
    started: float,
    keep_going: bool,
    handlers: Iterable[EventHandler],
    forced: frozenset[str],
    journal: AnyJournal | None,
    end: Callable[[bool], Awaitable[None]] | None,
) -> RunResult:
    """Expand, execute, then ``end(ok)`` (the journal's end of the run), then the result.

    The journal ends the run before the result is built: its last writes then
    have the event loop to themselves (while the loop is busy, each of their
    trips to the database thread waits for the GIL).
    """
    logger = asyncflow_logger().bind()
    logger.info("run.start", tasks=len(roots), host=socket.gethostname(), pid=os.getpid())
    probes = (
        Probes(journal.succeeded, _is_forced(forced), journal.succeeded_under)
        if journal is not None
        else Probes(None, _is_forced(forced))
    )
    graph = await expand(roots, probe_concurrency=options.probe_concurrency, probes=probes)
    if forced:
        _check_forced(forced, graph)
    scheduler = await _scheduler(graph, options, logger)
    display = options.progress
    if display is not None:
        handlers = [*handlers, *display._handlers()]
    bus = EventBus([journal.record, *handlers] if journal is not None else handlers)
    pool_token = _current_pool.set(scheduler.pool)
    try:
        async with contextlib.AsyncExitStack() as stack:
            bodies: BodyRunner | None = None
            if options.executor is not None:
                # Before anything runs: it refuses tasks it cannot run.
                to_run = [node for node in graph.nodes.values() if node.status is None]
                bodies = await stack.enter_async_context(options.executor.open(run_id, to_run))
            executor = Executor(
                graph,
                run_id=run_id,
                workers=options.workers,
                keep_going=keep_going,
                bus=bus,
                logger=logger,
                scheduler=scheduler,
                retry=options.retry,
                clock=options.clock,
                probe_concurrency=options.probe_concurrency,
                probes=probes,
                coordinator=journal if journal is not None else NullCoordinator(),
                since=started,
                bodies=bodies,
            )
            # The events of the graph's failures are emitted in here too.
            async with bus.delivering():
                if display is None:
                    await executor.run()
                else:
                    await display._show(graph, run_id, options.workers, executor.run)
    finally:
        _current_pool.reset(pool_token)
    results = TaskResults(graph.nodes)
    ok = results.all_complete(roots)  # RunResult.ok
    if end is not None:
        await end(ok)
    await after_run(graph)  # its nodes are the run's results from here on
    result = RunResult(run_id, roots, results, started, time.time(), scheduler.pool.statistics())
    if enabled(logger, logging.INFO):  # the counts walk every task
        logger.info("run.done", ok=ok, **{s.value: n for s, n in result.counts().items()})
    return result


async def _scheduler(graph: Graph, options: _RunOptions, logger: Any) -> Scheduler:
    """The run's resource pool and limits; refuses requests that can never be met.

    Raises:
        ResourceError: a task asks for more of a resource than the run has.
    """
    pool = ResourcePool(options.resources)
    requests: dict[type, dict[str, float]] = {}
    limits: dict[type, int | None] = {}
    async for some in in_turns(graph.order, _GRAPH_TURN):  # 400,000 tasks: 60 ms
        for node in some:
            if node.status is not None:
                continue
            cls = type(node.task)
            if cls not in requests:
                requests[cls] = dict(cls.resources)
                limits[cls] = options.max_running.get(cls.task_family, cls.max_running)
                for name in requests[cls]:
                    pool.declare(name)
                pool.check(node.task_id, requests[cls])  # the class's request: once
    for name in sorted(pool.defaulted):
        logger.warning(
            "resource.default_capacity",
            resource=name,
            capacity=DEFAULT_CAPACITY,
            hint=f"tasks name {name!r} but the run gives it no capacity; it gets "
            f"{DEFAULT_CAPACITY} (set resources={{{name!r}: N}} or --resources {name}=N)",
        )
    return Scheduler(pool, limits, requests)


def build(*tasks: Task | Iterable[Task], **options: Any) -> RunResult:
    """Synchronous :func:`run`, for scripts and other code without an event loop.

    Takes the same arguments as :func:`run`.

    Raises:
        AsyncflowError: called while an event loop is running in this thread
            (in a notebook, an ``async def`` or a FastAPI handler): use
            ``await asyncflow.run(...)`` there.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise AsyncflowError(
            "asyncflow.build() cannot be called while an event loop is running in this thread "
            "(a notebook cell, an async function, a FastAPI handler); "
            "use `await asyncflow.run(...)` there instead"
        )
    return anyio.run(functools.partial(run, *tasks, **options), backend="asyncio")


class _RunOptions:
    """Validated run() arguments."""

    def __init__(
        self,
        workers: int,
        resources: Mapping[str, float] | None,
        journal: JournalArg,
        max_running: Mapping[str, int] | None,
        probe_concurrency: int,
    ) -> None:
        self.workers = check_positive_int("workers", workers, MAX_WORKERS)
        self.probe_concurrency = check_positive_int(
            "probe_concurrency", probe_concurrency, MAX_WORKERS
        )
        self.resources = dict(resources or {})
        check_amounts("resources", self.resources)
        self.max_running = dict(max_running or {})
        check_limits("max_running", self.max_running)
        self.journal = _journal_path(journal)
        self.retry: RetryPolicy | None = None
        self.clock: Clock | None = None
        self.progress: Progress | None = None
        self.executor: ExecutorBackend | None = None


def _journal_path(journal: JournalArg) -> Path | str | None:
    if journal is None:
        return None
    if isinstance(journal, _DefaultJournal):
        return Path(".asyncflow") / "journal.db"
    if is_postgres_url(journal):
        return str(check_journal_path("journal", journal))  # a URL: kept as it is
    if isinstance(journal, str | os.PathLike):
        return Path(check_journal_path("journal", journal))
    raise ConfigError(f"journal must be a path or None, or a postgresql:// URL, got {journal!r}")


def _requested(tasks: Sequence[Task | Iterable[Task]]) -> list[Task]:
    items: list[object] = []
    for entry in tasks:
        item: object = entry
        if isinstance(item, Task):
            items.append(item)
        elif isinstance(item, list | tuple | set | frozenset):
            items.extend(item)
        else:
            items.append(item)
    roots: list[Task] = []
    for item in items:
        if isinstance(item, type) and issubclass(item, Task):
            raise ConfigError(
                f"run() takes task instances, got the class {item.__name__}; "
                f"build one first, e.g. {item.__name__}(...)"
            )
        if not isinstance(item, Task):
            raise ConfigError(f"run() takes tasks, got {type(item).__name__} {item!r}")
        roots.append(item)
    return roots


def _forced_names(force: Iterable[Task | str]) -> frozenset[str]:
    """The task ids and family names ``force=`` gives (task instances by their ids)."""
    if isinstance(force, Task | str):
        force = [force]
    names: set[str] = set()
    for item in force:
        if isinstance(item, Task):
            names.add(item.task_id)
        elif isinstance(item, str):
            names.add(item)
        else:
            raise ConfigError(f"force= takes tasks, task ids or family names, got {item!r}")
    return frozenset(names)


def _is_forced(names: frozenset[str]) -> Callable[[Task], bool] | None:
    """The predicate ``Probes`` takes: a task is forced by its id or its family."""
    if not names:
        return None
    return lambda task: task.task_id in names or task.task_family in names


_LISTED_FAMILIES: Final = 20


def _check_forced(forced: frozenset[str], graph: Graph) -> None:
    """Refuse ``force=`` entries that name nothing the run could run.

    Requirements yielded by ``run()`` join the graph only as they come, and
    those of a task whose ``requires()`` raised never do: while the graph may
    hide tasks, an entry still counts if a task class defined in the process
    could have it as family or id.

    Raises:
        ConfigError: an entry names no task id and no family; the message
            lists the families there are.
    """
    families = {node.task.task_family for node in graph.nodes.values()}
    unknown = sorted(name for name in forced if name not in graph.nodes and name not in families)
    if unknown and _may_grow(graph):
        defined = _defined_families()
        unknown = [name for name in unknown if not _could_name(name, defined)]
    if not unknown:
        return
    listed = sorted(families)
    shown = ", ".join(listed[:_LISTED_FAMILIES]) + (
        ", ..." if len(listed) > _LISTED_FAMILIES else ""
    )
    raise ConfigError(
        f"force: no task id or family of the graph matches {', '.join(map(repr, unknown))} "
        f"(families there: {shown})"
    )


def _may_grow(graph: Graph) -> bool:
    """Whether tasks the graph does not show yet may still be part of the run."""
    return any(
        (node.status is None and node.task._run_kind not in _FIXED_KINDS)
        or isinstance(node.error, TaskDefinitionError)
        for node in graph.nodes.values()
    )


_FIXED_KINDS: Final = frozenset({RunKind.SYNC, RunKind.ASYNC})  # run() bodies that yield nothing


def _defined_families() -> set[str]:
    """The families of every Task class defined in the process."""
    families: set[str] = set()
    stack = [Task]
    while stack:
        cls = stack.pop()
        families.add(cls.task_family)
        stack.extend(cls.__subclasses__())
    return families


def _could_name(name: str, families: set[str]) -> bool:
    """Whether ``name`` is one of ``families`` or could be a task id of one."""
    return name in families or any(name.startswith(f"{family}_") for family in families)


def _progress(progress: object) -> Progress | None:
    if progress is False:
        return None  # without importing the display
    from .progress import Progress

    if isinstance(progress, Progress):
        return progress
    if isinstance(progress, bool):
        return Progress() if progress else None
    raise ConfigError(
        f"progress must be True, False or an asyncflow.progress.Progress, got {progress!r}"
    )


def _executor(executor: object, config: Config) -> ExecutorBackend | None:
    """The run's executor backend: the one given, else the configured Dask scheduler's."""
    if executor is None:
        if not config.dask_scheduler:
            return None
        from .dask import DaskExecutor  # only now: it imports distributed

        return DaskExecutor(config.dask_scheduler, all_sync=bool(config.dask_all_sync))
    if not callable(getattr(executor, "open", None)):
        raise ConfigError(
            f"executor must be an executor backend such as asyncflow.dask.DaskExecutor, "
            f"got {executor!r}"
        )
    return executor  # type: ignore[return-value]


def _new_run_id() -> str:
    return f"{datetime.now():%Y%m%dT%H%M%S}-{os.urandom(4).hex()}"
