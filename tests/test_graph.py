from __future__ import annotations

import collections
import gc
import inspect
import sys
import types
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import asyncflow
from asyncflow import Status
from asyncflow.graph import Graph, expand
from asyncflow.targets import MemoryStore, MemoryTarget
from asyncflow.task import flatten

pytestmark = pytest.mark.anyio

STORE = MemoryStore()


@pytest.fixture(autouse=True)
def _clean_store() -> None:
    STORE.clear()


class Chain(asyncflow.Task):
    i = asyncflow.IntParameter()

    def requires(self) -> Chain | None:
        return Chain(self.i - 1) if self.i > 0 else None

    def output(self) -> MemoryTarget:
        return MemoryTarget(f"chain/{self.i}", store=STORE)

    async def run(self) -> None:
        await self.output().write_bytes(b"x")


class Cyclic(asyncflow.Task):
    i = asyncflow.IntParameter()

    def requires(self) -> Cyclic:
        return Cyclic((self.i + 1) % 3)


async def test_expansion_dedupes_shared_requirements() -> None:
    """A diamond has one node per distinct task."""

    class Leaf(asyncflow.Task):
        pass

    class Mid(asyncflow.Task):
        n = asyncflow.IntParameter()

        def requires(self) -> Leaf:
            return Leaf()

    class Top(asyncflow.Task):
        def requires(self) -> list[Mid]:
            return [Mid(1), Mid(2)]

    graph = await expand([Top()])
    assert sorted(n.task.task_family for n in graph) == ["Leaf", "Mid", "Mid", "Top"]
    assert len(graph[Leaf()].dependents) == 2


async def test_requirement_listed_twice_is_one_edge() -> None:
    """The same requirement twice in requires() gives one edge and one run."""

    class Twice(asyncflow.Task):
        def requires(self) -> list[Chain]:
            return [Chain(0), Chain(0)]

    graph = await expand([Twice()])
    assert len(graph[Twice()].deps) == 1 and graph[Twice()].pending == 1
    assert len(graph[Chain(0)].dependents) == 1


async def test_complete_task_is_not_expanded() -> None:
    """Requirements of a complete task are not visited (as in Luigi)."""
    await MemoryTarget("chain/5", store=STORE).write_bytes(b"x")
    graph = await expand([Chain(7)])
    assert sorted(n.task.i for n in graph) == [5, 6, 7]
    assert graph[Chain(5)].status is asyncflow.Status.ALREADY_COMPLETE


async def test_ten_thousand_chain_expands_without_recursion() -> None:
    """A 10,000-long chain expands (no recursion limit)."""
    graph = await expand([Chain(9_999)])
    assert len(graph) == 10_000
    assert graph[Chain(9_999)].pending == 1 and graph[Chain(0)].pending == 0


async def test_cycle_raises_with_path() -> None:
    """A cycle is reported with the path of task ids, first repeated last."""
    with pytest.raises(asyncflow.CycleError) as info:
        await expand([Cyclic(0)])
    cycle = info.value.cycle
    assert cycle[0] == cycle[-1] and len(cycle) == 4
    assert {c.split("_")[1] for c in cycle} == {"0", "1", "2"}
    assert " -> " in str(info.value)


async def test_cycle_raised_before_any_run() -> None:
    """A cycle stops the run before any task body runs."""
    ran: list[int] = []

    class Body(asyncflow.Task):
        async def run(self) -> None:
            ran.append(1)

    class Wrap(asyncflow.WrapperTask):
        def requires(self) -> list[asyncflow.Task]:
            return [Body(), Cyclic(0)]

    with pytest.raises(asyncflow.CycleError):
        await asyncflow.run(Wrap(), journal=None)
    assert ran == []


async def test_probes_run_concurrently() -> None:
    """One slow exists() does not hold up the others (all probes overlap)."""
    in_flight = 0
    peak = 0
    release = anyio.Event()

    class Slow(MemoryTarget):
        async def exists(self) -> bool:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            if peak == 10:
                release.set()
            await release.wait()
            in_flight -= 1
            return True

    class Probed(asyncflow.Task):
        n = asyncflow.IntParameter()

        def output(self) -> MemoryTarget:
            return Slow(f"slow/{self.n}", store=STORE)

    class Fan(asyncflow.Task):
        def requires(self) -> list[Probed]:
            return [Probed(n) for n in range(10)]

    with anyio.fail_after(5):
        graph = await expand([Fan()])
    assert peak == 10
    assert all(graph[Probed(n)].status is asyncflow.Status.ALREADY_COMPLETE for n in range(10))


async def test_probe_concurrency_is_bounded() -> None:
    """No more than probe_concurrency probes are in flight."""
    in_flight = 0
    peak = 0

    class Counting(MemoryTarget):
        async def exists(self) -> bool:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await anyio.lowlevel.checkpoint()
            await anyio.lowlevel.checkpoint()
            in_flight -= 1
            return True

    class Probed(asyncflow.Task):
        n = asyncflow.IntParameter()

        def output(self) -> MemoryTarget:
            return Counting(f"c/{self.n}", store=STORE)

    class Fan(asyncflow.Task):
        def requires(self) -> list[Probed]:
            return [Probed(n) for n in range(50)]

    await expand([Fan()], probe_concurrency=4)
    assert peak == 4


def test_input_of_unresolved_async_requires_is_a_clear_error() -> None:
    """input() before the engine resolved an async requires() says so."""

    class Discover(asyncflow.Task):
        async def requires(self) -> list[asyncflow.Task]:
            return []

    with pytest.raises(asyncflow.AsyncflowError, match="async requires"):
        Discover().input()


async def test_async_requires_is_awaited() -> None:
    """An async def requires() is awaited and input() follows its result."""

    class Source(asyncflow.Task):
        name = asyncflow.Parameter()

        def output(self) -> MemoryTarget:
            return MemoryTarget(self.name, store=STORE)

    class Discover(asyncflow.Task):
        async def requires(self) -> list[Source]:
            await anyio.lowlevel.checkpoint()
            return [Source("a"), Source("b")]

    graph = await expand([Discover()])
    assert len(graph) == 3
    assert graph[Discover()].task.input() == [
        MemoryTarget("a", store=STORE),
        MemoryTarget("b", store=STORE),
    ]


@pytest.mark.parametrize("method", ["requires", "output", "complete"])
async def test_definition_error_fails_only_that_task(method: str) -> None:
    """An exception in requires()/output()/complete() fails that task, naming it."""

    class Broken(asyncflow.Task):
        def requires(self) -> None:
            if method == "requires":
                raise RuntimeError("boom")

        def output(self) -> MemoryTarget:
            if method == "output":
                raise RuntimeError("boom")
            return MemoryTarget("broken", store=STORE)

        async def complete(self) -> bool:
            if method == "complete":
                raise RuntimeError("boom")
            return await asyncflow.Task.complete(self)

    class Fine(asyncflow.Task):
        def output(self) -> MemoryTarget:
            return MemoryTarget("fine", store=STORE)

        async def run(self) -> None:
            await self.output().write_bytes(b"ok")

    result = await asyncflow.run(Broken(), Fine(), journal=None)
    assert result.status(Fine()) is asyncflow.Status.DONE
    assert result.status(Broken()) is asyncflow.Status.FAILED
    error = result.error(Broken())
    assert isinstance(error, asyncflow.TaskDefinitionError)
    assert Broken().task_id in str(error) and "boom" in str(error)


async def test_requires_returning_non_task_fails_with_clear_error() -> None:
    """requires() returning something other than tasks names the bad value."""

    class Wrong(asyncflow.Task):
        def requires(self) -> list[str]:
            return ["not a task"]

    result = await asyncflow.run(Wrong(), journal=None)
    assert result.status(Wrong()) is asyncflow.Status.FAILED
    assert "must return tasks" in str(result.error(Wrong()))


async def test_wrapper_of_complete_tasks_is_already_complete() -> None:
    """A WrapperTask whose requirements are all complete is ALREADY_COMPLETE."""
    await MemoryTarget("chain/0", store=STORE).write_bytes(b"x")
    await MemoryTarget("chain/1", store=STORE).write_bytes(b"x")

    class All(asyncflow.WrapperTask):
        def requires(self) -> list[Chain]:
            return [Chain(0), Chain(1)]

    result = await asyncflow.run(All(), journal=None)
    assert result.status(All()) is asyncflow.Status.ALREADY_COMPLETE
    assert result.ok


async def test_two_classes_with_one_family_are_reported() -> None:
    """Two classes producing the same task id fail the requiring task clearly."""

    def make() -> type[asyncflow.Task]:
        class Twin(asyncflow.Task):
            pass

        return Twin

    first, second = make(), make()

    class Both(asyncflow.Task):
        def requires(self) -> list[asyncflow.Task]:
            return [first(), second()]

    result = await asyncflow.run(Both(), journal=None)
    assert result.status(Both()) is asyncflow.Status.FAILED
    assert "two different task classes" in str(result.error(Both()))


CELLS = MemoryStore()


class Cell(asyncflow.Task):
    """A small lattice: cell (k, j) requires cells (k-1, j) and (k-1, j+1 mod 3)."""

    k = asyncflow.IntParameter()
    j = asyncflow.IntParameter()

    def output(self) -> MemoryTarget:
        return MemoryTarget(f"cell/{self.k}/{self.j}", store=CELLS)

    def requires(self) -> list[Cell]:
        if self.k == 0:
            return []
        return [Cell(k=self.k - 1, j=self.j), Cell(k=self.k - 1, j=(self.j + 1) % 3)]


class Pair(asyncflow.Task):
    """Requires its cells through a dict of lists: a nested structure."""

    def requires(self) -> dict[str, list[Cell]]:
        return {"a": [Cell(k=1, j=0)], "b": [Cell(k=1, j=0), Cell(k=0, j=2)]}


async def test_a_task_keeps_the_graphs_own_requirements_not_equal_copies() -> None:
    """Each requirement a task resolved is the graph's task for it (an equal copy
    built by another requires() is not kept), and input() reads the same outputs."""
    graph = await expand([Cell(k=3, j=j) for j in range(3)] + [Pair()])
    by_key = {
        (node.task.k, node.task.j): node.task for node in graph if isinstance(node.task, Cell)
    }
    for node in graph:
        task = node.task
        resolved = task.__dict__["_resolved_requires"]
        leaves = (
            [t for group in resolved.values() for t in group]
            if isinstance(resolved, dict)
            else resolved
        )
        for required in leaves:
            assert required is by_key[(required.k, required.j)], (task, required)
        if leaves:
            outputs = task.input()
            flat = (
                [o for group in outputs.values() for o in group]
                if isinstance(outputs, dict)
                else outputs
            )
            assert flat == [t.output() for t in leaves]


async def test_requires_and_output_set_on_a_class_later_are_used() -> None:
    """A class that had Task's own requires() and output() when it was made, and
    was given its own later (as a class decorator does), is expanded and probed
    with them: expansion skips only Task's own methods, looked up per task."""

    class Later(asyncflow.Task):
        async def run(self) -> None:
            await STORE_TARGET.write_bytes(b"x")

    STORE_TARGET = MemoryTarget("later/out", store=STORE)
    Later.requires = lambda self: Chain(1)  # type: ignore[method-assign,assignment]
    Later.output = lambda self: STORE_TARGET  # type: ignore[method-assign,assignment]
    graph = await expand([Later()])
    assert sorted(node.task_id for node in graph) == sorted(
        [Later().task_id, Chain(1).task_id, Chain(0).task_id]
    )
    result = await asyncflow.run(Later(), journal=None)
    assert result.ok and STORE.get("later/out") == b"x"
    again = await expand([Later()])
    assert [node.status for node in again] == [asyncflow.Status.ALREADY_COMPLETE]


# Expansion's fast path: a task whose requires() is a plain def already found quick,
# and whose completeness needs no probe, is visited without a coroutine.


def _needs(task: Any, cls: type[Any]) -> Any:
    """What node (k, j) of a small lattice requires, in every shape requires() may take."""
    k, j = task.k, task.j
    if k == 0:
        return Outside(j) if j % 4 == 0 else None
    below = [cls(k - 1, j), cls(k - 1, (j + 1) % 7)]
    if j == 1:
        raise RuntimeError(f"cannot list ({k}, {j})")
    if j == 2 and k == 2:
        return [below[0], "not a task"]
    if j == 3:
        return [below[0], below[0], None, below[1]]  # listed twice, and a None
    if j == 4:
        return {"a": below[0], "b": [below[1], None, (below[0],)]}  # nested
    if j == 5:
        return (task for task in below)  # a generator
    return below


class Outside(asyncflow.ExternalTask):
    j = asyncflow.IntParameter()


class PlainNode(asyncflow.Task):
    k = asyncflow.IntParameter()
    j = asyncflow.IntParameter()

    def requires(self) -> Any:
        return _needs(self, PlainNode)


class AwaitedNode(asyncflow.Task):
    k = asyncflow.IntParameter()
    j = asyncflow.IntParameter()

    async def requires(self) -> Any:
        needs = _needs(self, AwaitedNode)
        return list(needs) if inspect.isgenerator(needs) else needs


def _described(graph: Graph) -> dict[tuple[int, ...], tuple[object, ...]]:
    """Each node by its parameters: its status, error, requirements and what input() holds."""
    nodes = {id(node.task): node for node in graph}
    described: dict[tuple[int, ...], tuple[object, ...]] = {}
    for node in graph:
        task = node.task
        resolved = task.__dict__.get("_resolved_requires")
        kept = flatten(resolved) if node.status is None else []
        assert all(id(t) in nodes for t in kept), task  # the graph's own tasks
        error = node.error
        described[tuple(task.param_kwargs.values())] = (
            node.status,
            node.pending,
            type(error).__name__ if error is not None else None,
            str(error).split(": ", 1)[-1] if error is not None else None,
            sorted(tuple(dep.task.param_kwargs.values()) for dep in node.deps),
            len(node.dependents),
            [tuple(t.param_kwargs.values()) for t in kept],
        )
    return described


async def test_the_fast_path_and_the_general_path_build_the_same_graph() -> None:
    """Plain requires() (visited without a coroutine once found quick) and async
    requires() (always the general path) give the same nodes, edges, failures
    and resolved requirements, each of them the graph's own task."""
    roots = range(7)
    plain = await expand([PlainNode(6, j) for j in roots])
    awaited = await expand([AwaitedNode(6, j) for j in roots])
    assert len(plain) > 30
    assert _described(plain) == _described(awaited)
    assert {n.status for n in plain} >= {None, Status.FAILED, Status.MISSING}


class Flat(asyncflow.Task):
    i = asyncflow.IntParameter()

    def requires(self) -> list[Flat]:
        return [Flat(self.i - 1), Flat(self.i - 2)] if self.i > 1 else []


async def test_a_plain_task_is_expanded_without_a_coroutine_of_its_own() -> None:
    """Once its requires() has proved quick, expanding a task with no output starts
    no coroutine for it: a node's few coroutine frames cost more than the rest of
    its expansion."""
    started: dict[int, str] = {}  # coroutine frames (a resumed one is called again)

    def profile(frame: types.FrameType, event: str, arg: object) -> None:
        code = frame.f_code
        if (
            event == "call"
            and code.co_flags & inspect.CO_COROUTINE
            and code.co_name != "worker"  # the pool's own, resumed between tasks
            and "asyncflow" in code.co_filename
        ):
            started[id(frame)] = code.co_name

    sys.setprofile(profile)
    try:
        graph = await expand([Flat(3_000)])
    finally:
        sys.setprofile(None)
    assert len(graph) == 3_001
    # A few tasks go the general way: those whose requires() was on trial in threads.
    assert len(started) < len(graph) / 2, collections.Counter(started.values())


async def test_a_graph_holds_few_objects_the_collector_tracks_per_task() -> None:
    """The collector walks every tracked object in its full collections: a node,
    its task, the task's attributes and key, two edge lists and the task's
    requirements, and no more (a task without outputs shares one empty tuple)."""
    gc.collect()
    before = len(gc.get_objects())
    graph = await expand([Flat(2_000)])
    gc.collect()
    per_task = (len(gc.get_objects()) - before) / len(graph)
    # node, task, its __dict__, key, deps, dependents and the list requires() gave
    assert per_task < 7.5, per_task


class _CountedText(asyncflow.Parameter):
    """A text parameter that counts how often a task id is made from it."""

    made = 0

    def serialize(self, value: Any) -> str:
        _CountedText.made += 1
        return str(value)


class _Leaf(asyncflow.Task):
    name = _CountedText()


class _Fan(asyncflow.Task):
    group = asyncflow.IntParameter()
    size = asyncflow.IntParameter()

    # async: a plain def requires() starts on trial in worker threads, whose calls
    # do not take turns of the loop.
    async def requires(self) -> list[_Leaf]:
        return [_Leaf(f"{self.group}-{i}") for i in range(self.size)]


class _Fans(asyncflow.WrapperTask):
    groups = asyncflow.IntParameter()
    size = asyncflow.IntParameter()

    async def requires(self) -> list[_Fan]:
        return [_Fan(g, self.size) for g in range(self.groups)]


async def _expand_beside(root: asyncflow.Task) -> tuple[int, int]:
    """Expand ``root`` while another coroutine takes turns of the event loop: how
    many turns it had, and the most task ids made between two of them."""
    _CountedText.made = 0
    done = False
    turns = most = 0

    async def watch() -> None:
        nonlocal most, turns
        seen = _CountedText.made
        while not done:
            await anyio.lowlevel.checkpoint()
            turns += 1
            most = max(most, _CountedText.made - seen)
            seen = _CountedText.made

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await anyio.lowlevel.checkpoint()
        graph = await expand([root])
        done = True
    assert _CountedText.made == len([n for n in graph if isinstance(n.task, _Leaf)])
    return turns, most


async def test_expansion_gives_the_rest_of_the_process_turns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tasks expanding at once (all 64 probe workers busy) share one turn of the
    event loop between them: with no time to spare, one task is expanded per turn,
    where 64 workers once went on for 256 tasks each."""
    monkeypatch.setattr(asyncflow._turns, "_TURN_SECONDS", 0.0)
    _, most = await _expand_beside(_Fans(64, 400))
    assert _CountedText.made == 64 * 400
    assert most == 400, most  # one _Fan's requirements


async def test_a_task_requiring_thousands_is_linked_in_turns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One task requiring 20,000 others does not hold the loop while they join the
    graph (with turns shared by the expansion's workers out of the way)."""
    monkeypatch.setattr(asyncflow._turns, "_TURN_SECONDS", 1e9)
    turns, _ = await _expand_beside(_Fan(0, 20_000))
    assert _CountedText.made == 20_000
    assert turns >= 20_000 // asyncflow.graph._TURN, turns


class _Twice(asyncflow.Task):
    """Requires 3,000 leaves, the first of them listed again near the end."""

    async def requires(self) -> list[_Leaf]:
        leaves = [_Leaf(f"twice-{i}") for i in range(3_000)]
        return [*leaves[:2_500], leaves[0], *leaves[2_500:]]


class _Also(asyncflow.Task):
    async def requires(self) -> _Leaf:
        return _Leaf("twice-0")


class _Both(asyncflow.WrapperTask):
    async def requires(self) -> list[asyncflow.Task]:
        return [_Twice(), _Also()]


async def test_a_requirement_listed_twice_in_a_long_list_is_one_edge() -> None:
    """Linked in turns, a long list's repeated requirement stays one edge, though
    another task linked to it in between."""
    graph = await expand([_Both()])
    twice, leaf = graph[_Twice()], graph[_Leaf("twice-0")]
    assert len(twice.deps) == 3_000 and len({id(d) for d in twice.deps}) == 3_000
    assert [d.task for d in leaf.dependents].count(_Twice()) == 1
    assert graph[_Also()] in leaf.dependents
    assert twice.pending == 3_000  # one for each requirement still to run
