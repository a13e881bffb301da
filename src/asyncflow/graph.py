"""Expanding requested tasks into a graph, and finding what is already complete.

:func:`expand` walks ``requires()`` from the requested tasks, iteratively (a
10,000-long chain is fine), deduplicating by ``task_id``. Each task is probed
for completeness by a bounded pool of coroutines, so one slow ``exists()``
never holds up the others. As in Luigi, the requirements of a task that is
already complete are not expanded. A cycle raises :class:`CycleError` before
anything runs. An exception from ``requires()``, ``output()`` or
``complete()`` fails that task only. Those that are plain functions are user
code that may block: they are called through :class:`~asyncflow._usercode.UserCode`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Final, TypeVar

import anyio

from ._gc import defer_for
from ._turns import drain, in_turns
from ._usercode import LATER, Later, UserCode
from .coordination import LeaseState
from .errors import CycleError, GraphError, TaskDefinitionError
from .result import Attempt, Status
from .targets.base import Target
from .task import (
    Task,
    _is_resolved,
    _resolve,
    flatten,
    map_structure,
    sync_requires,
)

__all__ = ["DEFAULT_PROBE_CONCURRENCY", "Graph", "Node", "Probes", "expand"]

DEFAULT_PROBE_CONCURRENCY = 64
"""How many completeness probes (``complete()`` calls) may be in flight at once."""

_TURN: Final = 1024  # requirements of one task linked between two turns of the loop
_SETTLE_TURN: Final = 16_384  # tasks settled between two turns of the loop (~5 ms)
_BULK_TURN: Final = 4096  # outputs of a bulk probe sorted between two turns (~3 ms)
_DEFER_EVERY: Final = 50_000  # nodes added between two calls of defer_for()
_K = TypeVar("_K")


# Task's own methods, which return None: looked up on the class for each task
# (not cached per class), since a decorator may set requires() on a class later.
_NO_OUTPUT = Task.output
_NO_REQUIREMENTS = Task.requires


class Node:
    """One task in a run's graph, with its edges and its state."""

    __slots__ = (
        "attempt_started",
        "attempts",
        "claim",
        "dependents",
        "deps",
        "error",
        "finished",
        "gen",
        "held",
        "history",
        "known",
        "outputs",
        "pending",
        "priority",
        "seq",
        "started",
        "status",
        "task",
        "task_id",
        "waiting_on",
        "where",
    )

    def __init__(self, task: Task, seq: int) -> None:
        self.task = task
        self.task_id = task.task_id
        self.seq = seq
        self.deps: list[Node] = []
        self.dependents: list[Node] = []
        self.status: Status | None = None  # None: still to run
        self.error: BaseException | None = None
        # None until output() is asked; Task's own output() is known to give none.
        self.outputs: Sequence[Target] | None = None if type(task).output is not _NO_OUTPUT else ()
        self.known: bool | None = None  # completeness found by a bulk probe
        self.pending = 0  # requirements not yet complete
        self.priority = task.priority
        self.attempts = 0
        self.started: float | None = None
        self.finished: float | None = None
        self.held: dict[str, float] | None = None  # resources held while running
        self.history: list[Attempt] | None = None  # one record per attempt, once run
        self.attempt_started: float | None = None
        self.gen: Any = None  # a run() generator suspended on dynamic requirements
        self.waiting_on: Any = None  # what it yielded (resumed with their outputs)
        self.claim = LeaseState.UNCLAIMED  # its lease: see executor.py
        self.where: str | None = None  # where its body runs, if not here (a Dask worker)

    def record_attempt(
        self, number: int, started: float, finished: float, error: BaseException | None
    ) -> None:
        if self.history is None:
            self.history = []
        self.history.append(Attempt(number, started, finished, error))

    def fail(self, error: BaseException, status: Status = Status.FAILED) -> None:
        self.status = status
        self.error = error

    def __repr__(self) -> str:
        return f"<Node {self.task_id} {self.status}>"


class Graph:
    """The expanded graph of a run: nodes by task id, and the requested roots."""

    def __init__(self, calls: UserCode | None = None) -> None:
        # Where this run calls the tasks' plain def requires()/output()/complete().
        self.calls = calls if calls is not None else user_code(DEFAULT_PROBE_CONCURRENCY)
        self.nodes: dict[str, Node] = {}
        self._by_key: dict[Any, Node] = {}  # task._key -> node: dedup without hashing ids
        self.order: list[Node] = []  # nodes in the order they were added (node.seq)
        self.roots: list[Node] = []

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def __getitem__(self, task: Task | str) -> Node:
        return self.nodes[task if isinstance(task, str) else task.task_id]

    def add(self, task: Task) -> tuple[Node, bool]:
        """The node for ``task``, and whether it is new."""
        node = self._by_key.get(task._key)
        if node is not None:
            return node, False
        return self.add_unseen(task)

    def add_unseen(self, task: Task) -> tuple[Node, bool]:
        """:meth:`add` for a task whose key the graph does not hold (yet)."""
        node = self.nodes.get(task.task_id)
        if node is not None:
            if type(node.task) is not type(task):
                raise GraphError(
                    f"two different task classes produce the task id {task.task_id}: "
                    f"{_qualname(type(node.task))} and {_qualname(type(task))}; "
                    "give one of them another name or a task_namespace"
                )
            self._by_key[task._key] = node
            return node, False
        node = Node(task, len(self.nodes))
        self._by_key[task._key] = node
        self.nodes[task.task_id] = node
        self.order.append(node)
        return node, True


async def expand(
    tasks: Sequence[Task],
    *,
    probe_concurrency: int = DEFAULT_PROBE_CONCURRENCY,
    probe: bool = True,
    probes: Probes | None = None,
) -> Graph:
    """Build the graph of ``tasks`` and everything they need that is not complete.

    Every node ends with a status (``ALREADY_COMPLETE``, ``MISSING``, ``FAILED``)
    or ``None`` (to run), and ``pending`` counts its requirements still to run.
    With ``probe=False`` nothing is probed: the whole graph is expanded, as if
    nothing were complete (for inspection and DAG checks). ``probes`` adds the
    run journal's answer for tasks without outputs, and forced tasks.

    Raises:
        CycleError: the requirements of incomplete tasks form a cycle.
    """
    graph = Graph(user_code(probe_concurrency))
    queue: deque[Node] = deque()
    async for some in in_turns(tasks, _TURN):  # tens of thousands may be requested
        for task in some:
            node, new = graph.add(task)
            if new:
                queue.append(node)
                graph.roots.append(node)
            elif node not in graph.roots:
                graph.roots.append(node)

    await grow(graph, queue, probe_concurrency, probe=probe, probes=probes)
    if probes is not None and probes.forced is not None:
        _rerun_forced(graph, probes.forced)
    await _settle(graph)
    return graph


def _rerun_forced(graph: Graph, forced: Callable[[Task], bool]) -> None:
    """Forced tasks run, and so does every complete task that depends on one:
    its inputs are about to change."""
    stack = [node for node in graph.order if forced(node.task)]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.status is Status.ALREADY_COMPLETE or node.status is None:
            node.status = None
            stack.extend(node.dependents)


class Probes:
    """What completeness probing needs beyond the tasks themselves.

    ``succeeded``: the run journal's answer for tasks without outputs (a task
    with no output is complete once the journal holds a success for it).
    ``forced``: tasks to run even though complete. ``succeeded_under``: the
    journal's successes of the ids under a prefix, None past a limit (see
    :class:`JournalAnswers`; without it every task is looked up by id).
    """

    def __init__(
        self,
        succeeded: Callable[[list[str]], Awaitable[set[str]]] | None = None,
        forced: Callable[[Task], bool] | None = None,
        succeeded_under: Callable[[str, int], Awaitable[set[str] | None]] | None = None,
    ) -> None:
        self.succeeded = succeeded
        self.forced = forced
        self.succeeded_under = succeeded_under

    async def done_in_journal(self, task: Task) -> bool:
        """Whether the journal holds a success of ``task`` (asked now, on its own)."""
        return self.succeeded is not None and task.task_id in await self.succeeded([task.task_id])

    def answer_now(self, task: Task) -> bool | None:
        """What :meth:`done_in_journal` would answer, when known without asking
        (without a journal: no); None: ask it."""
        return False if self.succeeded is None else None


class JournalAnswers(Probes):
    """The probes of one expansion: the journal's answers batched (see :func:`grow`).

    Each question to the journal is a trip to its database thread (about 0.1 ms,
    far more than the rest of probing a task), so:

    * the questions of probes in flight together go as one query: the first
      asker waits a turn of the loop for the others, then asks for all;
    * at a family's first question, its successes are read at once if there
      are at most ``SNAPSHOT_ROWS`` (a family new to the journal: a first run,
      a new date), else after ``SNAPSHOT_AFTER`` questions if there are at
      most ``SNAPSHOT_ROWS`` per question asked so far (else again after four
      times as many questions), and later questions answered from memory: a
      chain's tasks are probed one after another, and would otherwise pay one
      trip each.

    What is read may be stale by the time a task is claimed: the claim takes as
    complete the tasks that succeeded elsewhere since the run began, as for
    probes asked one by one. Only expansion batches; the executor's rechecks ask
    afresh.
    """

    SNAPSHOT_AFTER = 64
    SNAPSHOT_ROWS = 32

    def __init__(self, probes: Probes) -> None:
        super().__init__(probes.succeeded, probes.forced, probes.succeeded_under)
        self._asked: list[tuple[str, asyncio.Future[bool]]] = []
        self._asking = False
        self._snapshots: dict[str, set[str]] = {}  # by family
        self._questions: dict[str, int] = {}  # by family, until it has a snapshot
        self._next_try: dict[str, int] = {}

    def answer_now(self, task: Task) -> bool | None:
        snapshot = self._snapshots.get(task.task_family)
        return None if snapshot is None else task.task_id in snapshot

    async def done_in_journal(self, task: Task) -> bool:
        family = task.task_family
        snapshot = self._snapshots.get(family)
        if snapshot is not None:
            return task.task_id in snapshot
        asked = self._questions[family] = self._questions.get(family, 0) + 1
        if asked >= self._next_try.get(family, 1) and self.succeeded_under:
            self._next_try[family] = max(4 * asked, self.SNAPSHOT_AFTER)
            snapshot = await self.succeeded_under(family + "_", asked * self.SNAPSHOT_ROWS)
            if snapshot is not None:
                self._snapshots[family] = snapshot
                return task.task_id in snapshot
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._asked.append((task.task_id, waiter))
        if not self._asking:
            await self._ask_all()
        return await waiter

    async def _ask_all(self) -> None:
        """Ask for every question waiting, again and again until none is left."""
        assert self.succeeded is not None
        self._asking = True
        try:
            await asyncio.sleep(0)  # the other probes of this turn ask too
            while self._asked:
                asked, self._asked = self._asked, []
                try:
                    found = await self.succeeded([task_id for task_id, _ in asked])
                except Exception as exc:
                    for _, waiter in asked:
                        if not waiter.done():  # (a waiter cancelled meanwhile is done)
                            waiter.set_exception(exc)
                    continue
                for task_id, waiter in asked:
                    if not waiter.done():
                        waiter.set_result(task_id in found)
        finally:
            self._asking = False
            for _, waiter in self._asked:  # cancelled while asking: so are they
                waiter.cancel()
            self._asked = []


async def grow(
    graph: Graph,
    queue: deque[Node],
    probe_concurrency: int,
    *,
    probe: bool = True,
    probes: Probes | None = None,
    added_here: list[Node] | None = None,
) -> None:
    """Probe the queued nodes and add what the incomplete ones require, recursively.

    ``added_here``, if given, is extended with every node this call adds to the graph
    (not those of the queue given): other expansions may add nodes to the same
    graph meanwhile (tasks yielding requirements side by side).
    """

    calls = graph.calls
    if probes is not None and probes.succeeded is not None:
        probes = JournalAnswers(probes)
    nodes = graph.nodes
    by_key = graph._by_key
    next_deferral = len(nodes) + _DEFER_EVERY

    def visit(node: Node) -> Awaitable[None] | None:
        # Most tasks (plain requires(), no output or one known at once) are visited
        # without a coroutine: a node's few coroutine frames cost more than the
        # rest of its expansion. _probe_now hands over to _probe when it must wait.
        children = _probe_now(node, calls, probe, probes)
        if isinstance(children, list):
            return adopt(node, children)
        return visit_later(node, children)

    async def visit_later(node: Node, children: Awaitable[list[Task]]) -> None:
        rest = adopt(node, await children)
        if rest is not None:
            await rest

    def adopt(node: Node, children: list[Task]) -> Awaitable[None] | None:
        """Link ``node`` to its requirements' nodes and queue the new ones; what is
        left to await, if anything."""
        if len(children) > _TURN:
            return adopt_in_turns(node, children)
        added: list[Node] = []
        copies: dict[int, Task] = {}
        link(node, children, added, copies, None)
        return linked(node, added, copies)

    async def adopt_in_turns(node: Node, children: list[Task]) -> None:
        # One task requiring 100,000 others: the rest of the process gets turns too.
        added: list[Node] = []
        copies: dict[int, Task] = {}
        linked_to: set[int] = set()
        async for some in in_turns(children, _TURN):
            link(node, some, added, copies, linked_to)
        rest = linked(node, added, copies)
        if rest is not None:
            await rest

    def link(
        node: Node,
        children: Sequence[Task],
        added: list[Node],
        copies: dict[int, Task],
        linked_to: set[int] | None,
    ) -> None:
        """Link ``node`` to ``children``. ``linked_to``: when its requirements are
        linked in turns, the ``id()`` of each linked so far (another task may link
        to one of them in between, so that the check of the last dependent misses
        a repeat)."""
        deps = node.deps
        for child in children:
            try:
                dep = by_key.get(child._key)  # most requirements are in the graph already
            except TaskDefinitionError as exc:  # a task that skipped Task.__init__
                node.fail(TaskDefinitionError(node.task_id, "requires", exc))
                continue
            if dep is None:
                try:
                    dep, new = graph.add_unseen(child)
                except GraphError as exc:
                    node.fail(exc)
                    continue
                if new:
                    added.append(dep)
            if dep.task is not child:
                copies[id(child)] = dep.task
            dependents = dep.dependents
            if dependents and dependents[-1] is node:
                # The same requirement listed twice is one edge (and one task in what
                # input() reads): only this loop links ``node`` to its requirements.
                continue
            if linked_to is not None:
                if id(dep) in linked_to:
                    continue
                linked_to.add(id(dep))
            deps.append(dep)
            dependents.append(node)

    def linked(node: Node, added: list[Node], copies: dict[int, Task]) -> Awaitable[None] | None:
        if copies:
            _keep_graph_tasks(node.task, copies)
        if probe and len(added) >= BULK_PROBE_THRESHOLD:
            return probe_in_bulk(added)
        enqueue(added)
        return None

    async def probe_in_bulk(added: list[Node]) -> None:
        await _bulk_probe(added, calls, probe_concurrency)
        enqueue(added)

    def enqueue(new: list[Node]) -> None:
        nonlocal next_deferral
        queue.extend(new)
        if added_here is not None:
            added_here.extend(new)
        if len(nodes) >= next_deferral:  # a large graph: fewer full collections meanwhile
            next_deferral = len(nodes) + _DEFER_EVERY
            defer_for(len(nodes))

    await drain(queue, visit, probe_concurrency)
    defer_for(len(nodes))  # as large as it has grown


async def after_run(graph: Graph) -> None:
    """Let go of what only running the graph needed: its edges and the tasks'
    outputs. Its nodes, kept as the run's results (:class:`~asyncflow.result.TaskResults`),
    then hold little more than what they say (a 100,000-task lattice's result:
    1.1 KB a task instead of 1.3; its targets, whatever they hold, go too)."""
    async for some in in_turns(graph.order, _SETTLE_TURN):
        for node in some:
            del node.deps, node.dependents  # read after this, they fail loudly
            node.outputs = None


def _keep_graph_tasks(task: Task, copies: dict[int, Task]) -> None:
    """Make ``task``'s resolved requirements (what ``input()`` reads) refer to the
    graph's own tasks instead of equal copies of them (``copies``: by ``id()`` of
    the copy). A lattice's tasks each require a task another one required first:
    kept, each copy would cost about 0.7 KB a task for the whole run."""
    resolved = task.__dict__.get("_resolved_requires")
    if type(resolved) is list:
        task._set_resolved_requires([copies.get(id(item), item) for item in resolved])
    else:
        task._set_resolved_requires(
            map_structure(lambda item: copies.get(id(item), item), resolved)
        )


BULK_PROBE_THRESHOLD = 8
"""New requirements of one task from which their remote outputs are probed together."""


async def _bulk_probe(nodes: list[Node], calls: UserCode, concurrency: int) -> None:
    """Probe the outputs of many new requirements at once (listing shared prefixes).

    A backfill's thousands of dated objects then cost a few LIST requests
    instead of one request each. Only remote outputs are worth it; if the bulk
    probe fails, each task is probed on its own (and fails with its own error).
    """
    candidates: list[tuple[Node, list[Target]]] = []
    remote = 0
    # A backfill's root requires 200,000 dated tasks: each pass over them in turns.
    wanted = [
        n
        async for some in in_turns(nodes, _SETTLE_TURN)
        for n in some
        if n.task._default_complete and not n.task._settles_by_requirements and n.outputs is None
    ]
    found = await calls.map(_output_method, _node_outputs, wanted)
    from .targets._probe import is_remote  # the S3/GCS parts: not imported with the package

    async for indices in in_turns(range(len(wanted)), _BULK_TURN):
        for index in indices:
            outputs = found[index]
            if isinstance(outputs, Exception):
                continue  # _probe reports it when the node is visited
            node = wanted[index]
            node.outputs = outputs
            if outputs:
                candidates.append((node, outputs))
                remote += sum(1 for t in outputs if is_remote(t))
    if remote < BULK_PROBE_THRESHOLD:
        return
    try:
        known = await outputs_complete(candidates, concurrency)
    except Exception:
        return
    for node, done in known.items():
        node.known = done


async def outputs_complete(
    items: Sequence[tuple[_K, Sequence[Target]]], concurrency: int
) -> dict[_K, bool]:
    """For each key, whether its outputs are a non-empty set that all exist.

    Every output is probed in one :func:`~asyncflow.targets.probe_many` call,
    so objects under one bucket prefix cost a listing, not a request each.
    """
    from .targets._probe import probe_many

    found = await probe_many([t for _, outputs in items for t in outputs], concurrency=concurrency)
    known: dict[_K, bool] = {}
    async for some in in_turns(items, _BULK_TURN):  # keys may be tasks: hashed, ids made
        for key, outputs in some:
            known[key] = bool(outputs) and all(found[t] for t in outputs)
    return known


def settle_added(nodes: Sequence[Node], parent: Node) -> None:
    """Pending counts for nodes added while running, below ``parent``.

    Raises:
        CycleError: the new requirements lead back to ``parent`` (or loop
            among themselves).
    """
    for node in nodes:
        if node.status is None:
            node.pending = sum(1 for d in node.deps if d.status is None)
    cycle = find_cycle(parent)
    if cycle is not None:
        raise CycleError(cycle)


def find_cycle(start: Node) -> list[str] | None:
    """A cycle among the still-to-run requirements reachable from ``start``, if any."""
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    path: list[Node] = []
    stack: list[tuple[Node, Iterator[Node]]] = [(start, iter(start.deps))]
    state[id(start)] = 1
    path.append(start)
    while stack:
        node, deps = stack[-1]
        for dep in deps:
            if dep.status is not None:
                continue
            mark = state.get(id(dep))
            if mark == 1:
                cycle = path[path.index(dep) :]
                return [n.task_id for n in cycle] + [dep.task_id]
            if mark is None:
                state[id(dep)] = 1
                path.append(dep)
                stack.append((dep, iter(dep.deps)))
                break
        else:
            stack.pop()
            path.pop()
            state[id(node)] = 2
    return None


async def _probe(
    node: Node, calls: UserCode, probe: bool = True, probes: Probes | None = None
) -> list[Task]:
    """Probe one task; return the requirements to expand (none if it is complete)."""
    task = node.task
    forced = probes.forced if probes is not None else None
    if forced is not None and forced(task):
        probe = False  # forced: run it whatever its outputs say
    if probe and not task._settles_by_requirements:
        done = await _is_complete(node, calls, probes)
        if done is None:
            return []
        if done:
            node.status = Status.ALREADY_COMPLETE
            if forced is None:
                return []
            # With force=, look below complete tasks too: a forced task may be there.
    return await _requirements(node, calls, probe)


def _probe_now(
    node: Node, calls: UserCode, probe: bool, probes: Probes | None
) -> list[Task] | Awaitable[list[Task]]:
    """What :func:`_probe` finds, found here and now when nothing needs awaiting:
    completeness known at once (no outputs, or outputs known by a bulk probe, and
    the journal's answer in memory), a plain ``requires()`` called on the loop.
    Otherwise the awaitable that goes on from here (nothing done so far is undone
    or done twice by it)."""
    task = node.task
    if probes is not None and probes.forced is not None:
        return _probe(node, calls, probe, probes)
    if probe and not task._settles_by_requirements:
        done = _complete_now(node, calls, probes)
        if done is LATER:
            return _probe(node, calls, probe, probes)
        if done is None:
            return []
        if done:
            node.status = Status.ALREADY_COMPLETE
            return []
    if _without_requires(node, probe):
        return []
    if not task._sync_requires:
        return _requirements(node, calls, probe)
    try:
        requirements = calls.now(type(task).requires, sync_requires, task)
    except Exception as exc:
        return _requires_failed(node, exc)
    if requirements is LATER:  # still on trial in worker threads
        return _requirements(node, calls, probe)
    if not _is_resolved(requirements):  # a plain def returning an awaitable
        return _requirements_resolved(node, requirements)
    return _requirements_found(node, requirements)


async def _requirements(node: Node, calls: UserCode, probe: bool) -> list[Task]:
    """Call ``requires()`` and return the tasks it gives (failing the node if it raises)."""
    task = node.task
    if _without_requires(node, probe):
        return []
    try:
        if task._sync_requires:
            requirements = await calls.call(type(task).requires, sync_requires, task)
        else:
            requirements = task.requires()
    except Exception as exc:
        return _requires_failed(node, exc)
    return await _requirements_resolved(node, requirements)


async def _requirements_resolved(node: Node, requirements: Any) -> list[Task]:
    try:
        requirements = await _resolve(requirements)
    except Exception as exc:
        return _requires_failed(node, exc)
    return _requirements_found(node, requirements)


def _without_requires(node: Node, probe: bool) -> bool:
    """Whether the task has no ``requires()`` to call: external, or Task's own."""
    task = node.task
    if task._is_external:
        if probe:
            node.status = Status.MISSING
        return True
    if type(task).requires is _NO_REQUIREMENTS:  # nothing to call or check
        task._set_resolved_requires(None)
        return True
    return False


def _requirements_found(node: Node, requirements: Any) -> list[Task]:
    """The tasks of what ``requires()`` returned, kept as the task's resolved
    requirements (a requirement listed twice: see ``grow``)."""
    try:
        children = flatten(requirements)
        for child in children:
            if not isinstance(child, Task):
                raise TypeError(
                    f"requires() must return tasks (or a list/tuple/dict of tasks), "
                    f"found {type(child).__name__} {child!r}"
                )
    except Exception as exc:
        return _requires_failed(node, exc)
    node.task._set_resolved_requires(requirements)
    return children


def _requires_failed(node: Node, exc: Exception) -> list[Task]:
    if node.status is not Status.ALREADY_COMPLETE:  # a complete task need not expand
        node.fail(TaskDefinitionError(node.task_id, "requires", exc))
    return []


async def _is_complete(node: Node, calls: UserCode, probes: Probes | None = None) -> bool | None:
    """Whether the task is complete; None when probing it failed (the node is failed)."""
    try:
        return await is_complete(node, calls, probes)
    except TaskDefinitionError as exc:
        node.fail(exc)
        return None


def _complete_now(node: Node, calls: UserCode, probes: Probes | None) -> bool | Later | None:
    """:func:`_is_complete`'s answer when nothing needs awaiting: Task's own
    ``complete()``, and outputs that are none (the journal's answer in memory),
    or known by a bulk probe. Otherwise :data:`LATER` (``output()``'s answer, if
    it was called, is kept on the node)."""
    task = node.task
    cls = type(task)
    if not cls._default_complete:
        return LATER
    if node.known is not None:
        return node.known
    outputs = node.outputs
    if outputs is None:
        try:
            found = calls.now(cls.output, _outputs, task)
        except Exception as exc:
            node.fail(TaskDefinitionError(task.task_id, "output", exc))
            return None
        if found is LATER:
            return LATER
        outputs = node.outputs = found
    if outputs:
        return LATER  # exists() is a coroutine
    if probes is None:
        return False
    done = probes.answer_now(task)
    return LATER if done is None else done


async def is_complete(node: Node, calls: UserCode, probes: Probes | None = None) -> bool:
    """Whether the task is complete now: its ``complete()``, its outputs, or the journal.

    Raises:
        TaskDefinitionError: ``complete()``, ``output()`` or a probe raised.
    """
    task = node.task
    cls = type(task)
    if not cls._default_complete:
        try:
            if cls._sync_complete:
                done = await calls.call(cls.complete, _call_complete, task)
                if inspect.isawaitable(done):
                    done = await done
            else:
                done = await task.complete()
            return bool(done)
        except Exception as exc:
            raise TaskDefinitionError(task.task_id, "complete", exc) from exc
    if node.known is not None:
        return node.known
    outputs = node.outputs
    if outputs is None:
        try:
            outputs = node.outputs = await calls.call(cls.output, _outputs, task)
        except Exception as exc:
            raise TaskDefinitionError(task.task_id, "output", exc) from exc
    try:
        if not outputs:
            return probes is not None and await probes.done_in_journal(task)
        return await all_exist(outputs)
    except Exception as exc:
        raise TaskDefinitionError(task.task_id, "complete", exc) from exc


async def outputs_of(node: Node, calls: UserCode) -> Sequence[Target]:
    """The task's outputs, flattened: from ``output()`` once, then kept on the node.

    Raises:
        Exception: whatever ``output()`` raises, or TypeError for a non-target.
    """
    outputs = node.outputs
    if outputs is None:
        outputs = node.outputs = await calls.call(type(node.task).output, _outputs, node.task)
    return outputs


def user_code(concurrency: int) -> UserCode:
    """Where a run calls its tasks' plain def methods; Task's own defaults are quick."""
    return UserCode(concurrency, quick=(Task.requires, Task.output))


def _output_method(node: Node) -> object:
    return type(node.task).output


def _node_outputs(node: Node) -> list[Target]:
    return _outputs(node.task)


def _call_complete(task: Task) -> Any:
    return task.complete()


def _outputs(task: Task) -> list[Target]:
    outputs = flatten(task.output())
    for target in outputs:
        if type(target) not in _TARGET_TYPES:
            _check_target(target)
    return outputs


_TARGET_TYPES: set[type] = set()  # Target is an ABC: cache the (slow) isinstance answers


def _check_target(target: object) -> None:
    if isinstance(target, Target):
        _TARGET_TYPES.add(type(target))
        return
    raise TypeError(
        f"output() must return targets (or a list/dict of targets), "
        f"found {type(target).__name__} {target!r}"
    )


async def all_exist(targets: Sequence[Target]) -> bool:
    """Whether every target exists; several are probed concurrently."""
    return not await missing_targets(targets)


async def missing_targets(targets: Sequence[Target]) -> list[Target]:
    """The targets that do not exist, probed concurrently."""
    if len(targets) == 1:
        return [] if await targets[0].exists() else [targets[0]]
    missing: list[Target] = []

    async def probe(target: Target) -> None:
        if not await target.exists():
            missing.append(target)

    async with anyio.create_task_group() as tg:
        for target in targets:
            tg.start_soon(probe, target)
    return missing


async def _settle(graph: Graph) -> None:
    """Count pending requirements, settle wrappers, and reject cycles.

    A topological pass (Kahn) over the tasks still to run: a wrapper whose
    requirements were all complete is complete itself; whatever the pass
    cannot reach lies on or behind a cycle. Every :data:`_SETTLE_TURN` tasks
    of each of its two loops, the rest of the process has a turn.
    """
    todo = [n for n in graph.nodes.values() if n.status is None]
    left = [0] * len(graph.nodes)  # Kahn's own countdown, by node.seq
    ready: deque[Node] = deque()
    async for some in in_turns(todo, _SETTLE_TURN):
        for node in some:
            count = 0
            for dep in node.deps:
                if dep.status is None:
                    count += 1
            node.pending = left[node.seq] = count
            if count == 0:
                ready.append(node)
    order: list[Node] = []
    while ready:
        node = ready.popleft()
        order.append(node)
        if not len(order) % _SETTLE_TURN:
            await asyncio.sleep(0)
        settled = node.task._settles_by_requirements and all(
            d.status is Status.ALREADY_COMPLETE for d in node.deps
        )
        if settled:
            node.status = Status.ALREADY_COMPLETE
        for parent in node.dependents:
            if parent.status is None:
                if settled:
                    parent.pending -= 1  # it no longer waits for this wrapper
                left[parent.seq] -= 1
                if left[parent.seq] == 0:
                    ready.append(parent)
    if len(order) < len(todo):
        raise CycleError(_find_cycle([n for n in todo if left[n.seq] > 0], left))
    # A task's priority lifts what it requires (dependents come later in `order`);
    # with one priority for all, nothing moves.
    if len({node.priority for node in graph.order}) < 2:
        return
    for node in reversed(order):
        priority = node.priority
        for dep in node.deps:
            if dep.priority < priority:
                dep.priority = priority


def _find_cycle(stuck: list[Node], left: list[int]) -> list[str]:
    """Follow stuck requirements from a stuck node until one repeats."""
    path: list[Node] = []
    index: dict[int, int] = {}
    node = stuck[0]
    while id(node) not in index:
        index[id(node)] = len(path)
        path.append(node)
        node = next(d for d in node.deps if d.status is None and left[d.seq] > 0)
    cycle = path[index[id(node)] :]
    return [n.task_id for n in cycle] + [node.task_id]


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
