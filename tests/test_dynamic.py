from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import asyncflow
from asyncflow import Status
from asyncflow.targets import LocalTarget, MemoryStore, MemoryTarget

pytestmark = pytest.mark.anyio

STORE = MemoryStore()


@pytest.fixture(autouse=True)
def _clean() -> None:
    STORE.clear()
    Part.runs.clear()


class Part(asyncflow.Task):
    """Writes its name; counts its runs."""

    name = asyncflow.Parameter()
    runs: list[str] = []

    def output(self) -> MemoryTarget:
        return MemoryTarget(f"part/{self.name}", store=STORE)

    async def run(self) -> None:
        Part.runs.append(self.name)
        await self.output().write_text(self.name.upper())


async def test_generator_resumes_with_outputs_and_never_restarts() -> None:
    """Each yield is answered with the outputs, same shape; the body runs once."""
    entered: list[int] = []
    seen: list[Any] = []

    class Assemble(asyncflow.Task):
        def output(self) -> MemoryTarget:
            return MemoryTarget("assembled", store=STORE)

        async def run(self) -> AsyncIterator[Any]:
            entered.append(1)
            first = yield [Part("a"), Part("b")]
            seen.append(first)
            second = yield {"c": Part("c")}
            seen.append(second)
            texts = [await t.read_text() for t in [*first, second["c"]]]
            await self.output().write_text("".join(texts))

    result = await asyncflow.run(Assemble(), journal=None)
    assert result.ok, result.summary()
    assert entered == [1]
    assert seen[0] == [MemoryTarget("part/a", store=STORE), MemoryTarget("part/b", store=STORE)]
    assert seen[1] == {"c": MemoryTarget("part/c", store=STORE)}
    assert await MemoryTarget("assembled", store=STORE).read_text() == "ABC"
    assert sorted(Part.runs) == ["a", "b", "c"]
    assert result.status(Part("c")) is Status.DONE


async def test_one_worker_and_a_yielding_task_do_not_deadlock() -> None:
    """While a body waits for what it yielded, its worker runs the yielded tasks."""

    class Parent(asyncflow.Task):
        async def run(self) -> AsyncIterator[Any]:
            yield [Part(str(i)) for i in range(5)]

    with anyio.fail_after(5):
        result = await asyncflow.run(Parent(), workers=1, journal=None)
    assert result.ok and len(Part.runs) == 5


async def test_waiting_body_holds_no_resources() -> None:
    """A body holding the only slot yields a task that needs that slot: no deadlock."""

    class NeedsSlot(asyncflow.Task):
        resources = {"slot": 1}

        def output(self) -> MemoryTarget:
            return MemoryTarget("slot-child", store=STORE)

        async def run(self) -> None:
            await self.output().write_bytes(b"x")

    class HoldsSlot(asyncflow.Task):
        resources = {"slot": 1}

        async def run(self) -> AsyncIterator[Any]:
            yield NeedsSlot()

    with anyio.fail_after(5):
        result = await asyncflow.run(HoldsSlot(), resources={"slot": 1}, journal=None)
    assert result.ok


async def test_shared_yielded_task_runs_once() -> None:
    """Two bodies yielding the same task, also required statically, share one run."""

    def waiter(name: str) -> type[asyncflow.Task]:
        async def run(self: asyncflow.Task) -> AsyncIterator[Any]:
            yield Part("shared")

        return type(name, (asyncflow.Task,), {"run": run})

    class Static(asyncflow.Task):
        def requires(self) -> Part:
            return Part("shared")

    result = await asyncflow.run(waiter("W1")(), waiter("W2")(), Static(), journal=None)
    assert result.ok
    assert Part.runs == ["shared"]


async def test_complete_yielded_task_is_not_run() -> None:
    """A yielded task that is already complete is skipped; its output is still given."""
    await MemoryTarget("part/done", store=STORE).write_text("DONE")
    got: list[str] = []

    class Reader(asyncflow.Task):
        async def run(self) -> AsyncIterator[Any]:
            target = yield Part("done")
            got.append(await target.read_text())

    result = await asyncflow.run(Reader(), journal=None)
    assert result.ok and got == ["DONE"] and Part.runs == []
    assert result.status(Part("done")) is Status.ALREADY_COMPLETE


async def test_failure_of_a_yielded_task_fails_the_waiting_one_with_the_cause() -> None:
    """The waiting body fails with UpstreamFailed chained to the yielded task's error."""
    closed: list[bool] = []

    class Broken(asyncflow.Task):
        async def run(self) -> None:
            raise ValueError("bad input file")

    class Waiting(asyncflow.Task):
        async def run(self) -> AsyncIterator[Any]:
            try:
                yield Broken()
            finally:
                closed.append(True)

    result = await asyncflow.run(Waiting(), journal=None)
    assert result.status(Broken()) is Status.FAILED
    assert result.status(Waiting()) is Status.FAILED
    error = result.error(Waiting())
    assert isinstance(error, asyncflow.UpstreamFailed)
    assert Broken().task_id in str(error)
    assert isinstance(error.__cause__, ValueError)
    assert closed == [True]  # the body was closed, its finally ran


async def test_dynamic_cycle_is_reported_with_its_path() -> None:
    """A yielded task that requires the yielding one is a cycle, shown as a path."""

    class Back(asyncflow.Task):
        def requires(self) -> asyncflow.Task:
            return Loop()

    class Loop(asyncflow.Task):
        async def run(self) -> AsyncIterator[Any]:
            yield Back()

    with anyio.fail_after(5):
        result = await asyncflow.run(Loop(), journal=None)
    assert result.status(Loop()) is Status.FAILED
    cause = result.error(Loop()).__cause__
    assert isinstance(cause, asyncflow.CycleError)
    assert cause.cycle[0] == cause.cycle[-1] == Loop().task_id
    assert Back().task_id in cause.cycle


async def test_yielding_something_else_than_tasks_is_a_clear_error() -> None:
    """Yielding a non-task fails the body, naming what it yielded."""

    class Odd(asyncflow.Task):
        async def run(self) -> AsyncIterator[Any]:
            yield "not a task"

    result = await asyncflow.run(Odd(), journal=None)
    assert result.status(Odd()) is Status.FAILED
    assert "may yield tasks" in str(result.error(Odd()))


class Upper(asyncflow.Task):
    """Upper-cases one file of a folder into out/."""

    path = asyncflow.Parameter()

    def output(self) -> LocalTarget:
        source = Path(self.path)
        return LocalTarget(source.parent.parent / "out" / source.name)

    def run(self) -> None:
        with LocalTarget(self.path).open("r") as src, self.output().open("w") as dst:
            dst.write(src.read().upper())


async def test_discover_files_with_async_requires(tmp_path: Path) -> None:
    """An async requires() lists a folder and every file found gets processed."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (inbox / name).write_text(name)

    class ProcessInbox(asyncflow.WrapperTask):
        async def requires(self) -> list[Upper]:
            names = await anyio.to_thread.run_sync(lambda: sorted(p.name for p in inbox.iterdir()))
            return [Upper(str(inbox / n)) for n in names]

    result = await asyncflow.run(ProcessInbox(), journal=None)
    assert result.ok
    assert sorted(p.read_text() for p in (tmp_path / "out").iterdir()) == [
        "A.TXT",
        "B.TXT",
        "C.TXT",
    ]


async def test_discover_files_at_run_time(tmp_path: Path) -> None:
    """A generator body discovers files while running and yields a task per file."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "x.txt").write_text("x")
    (inbox / "y.txt").write_text("y")

    class Sweep(asyncflow.Task):
        def output(self) -> LocalTarget:
            return LocalTarget(tmp_path / "sweep.txt")

        async def run(self) -> AsyncIterator[Any]:
            files = await anyio.to_thread.run_sync(lambda: sorted(inbox.iterdir()))
            outputs = yield [Upper(str(p)) for p in files]
            texts = [await t.read_text() for t in outputs]
            await self.output().write_text(",".join(texts))

    result = await asyncflow.run(Sweep(), journal=None)
    assert result.ok
    assert (tmp_path / "sweep.txt").read_text() == "X,Y"


class Meeting(asyncflow.Task):
    """Waits until ``size`` of its kind run at once (a run that serialises them hangs)."""

    n = asyncflow.IntParameter()
    size = asyncflow.IntParameter()
    running = 0
    peak = 0
    met: anyio.Event | None = None

    def output(self) -> MemoryTarget:
        return MemoryTarget(f"meeting/{self.n}", store=STORE)

    async def run(self) -> None:
        cls = type(self)
        cls.running += 1
        cls.peak = max(cls.peak, cls.running)
        assert cls.met is not None
        if cls.running == self.size:
            cls.met.set()
        await cls.met.wait()
        cls.running -= 1
        await self.output().write_text("met")


async def test_yielded_tasks_run_side_by_side() -> None:
    """Tasks yielded together run on all the run's workers at once, as required ones do."""
    Meeting.running = Meeting.peak = 0
    Meeting.met = anyio.Event()

    class Fan(asyncflow.Task):
        async def run(self) -> AsyncIterator[Any]:
            yield [Meeting(n, 3) for n in range(6)]

    with anyio.fail_after(10):
        result = await asyncflow.run(Fan(), workers=3, journal=None)
    assert result.ok, result.summary()
    assert Meeting.peak == 3  # as many as the workers, no more


# A plain `def run()` that yields: as in Luigi, a generator run step by step in a
# worker thread. The same cases as for async generators above.


class SyncPart(asyncflow.Task):
    """Part, with a plain def run() (it needs a worker thread of its own)."""

    name = asyncflow.Parameter()

    def output(self) -> MemoryTarget:
        return MemoryTarget(f"part/{self.name}", store=STORE)

    def run(self) -> None:
        Part.runs.append(self.name)
        with self.output().open("w") as f:
            f.write(self.name.upper())


def read(target: MemoryTarget) -> str:
    with target.open("r") as f:
        return str(f.read())


async def test_sync_generator_resumes_with_outputs_and_never_restarts() -> None:
    """A plain def run() that yields a list, a dict and a task gets their outputs,
    same shape, in its thread; its body runs once and writes its output."""
    entered: list[int] = []
    seen: list[Any] = []

    class Assemble(asyncflow.Task):
        def output(self) -> MemoryTarget:
            return MemoryTarget("assembled", store=STORE)

        def run(self) -> Iterator[Any]:
            entered.append(1)
            first = yield [Part("a"), SyncPart("b")]
            seen.append(first)
            second = yield {"c": Part("c")}
            seen.append(second)
            third = yield SyncPart("d")
            seen.append(third)
            with self.output().open("w") as f:
                f.write("".join(read(t) for t in [*first, second["c"], third]))

    result = await asyncflow.run(Assemble(), journal=None)
    assert result.ok, result.summary()
    assert entered == [1]
    assert seen == [
        [MemoryTarget("part/a", store=STORE), MemoryTarget("part/b", store=STORE)],
        {"c": MemoryTarget("part/c", store=STORE)},
        MemoryTarget("part/d", store=STORE),
    ]
    assert await MemoryTarget("assembled", store=STORE).read_text() == "ABCD"
    assert sorted(Part.runs) == ["a", "b", "c", "d"]
    assert result.status(SyncPart("d")) is Status.DONE


async def test_sync_generator_without_outputs_runs_its_body() -> None:
    """A yielding def run() with no output is run, not reported done untouched."""
    after: list[Any] = []

    class Collect(asyncflow.Task):
        def run(self) -> Iterator[Any]:
            after.append((yield SyncPart("x")))

    result = await asyncflow.run(Collect(), journal=None)
    assert result.ok and result.status(Collect()) is Status.DONE
    assert after == [MemoryTarget("part/x", store=STORE)]
    assert Part.runs == ["x"]


async def test_sync_generator_with_one_worker_holds_no_thread_while_waiting() -> None:
    """workers=1: the waiting generator frees its worker and thread for the
    plain def bodies it yielded."""

    class Parent(asyncflow.Task):
        def run(self) -> Iterator[Any]:
            yield [SyncPart(str(i)) for i in range(5)]

    with anyio.fail_after(5):
        result = await asyncflow.run(Parent(), workers=1, journal=None)
    assert result.ok and len(Part.runs) == 5


async def test_waiting_sync_generator_holds_no_resources() -> None:
    """A def run() holding the only slot yields a task that needs that slot: no deadlock."""

    class NeedsSlot(asyncflow.Task):
        resources = {"slot": 1}

        def output(self) -> MemoryTarget:
            return MemoryTarget("slot-child", store=STORE)

        def run(self) -> None:
            with self.output().open("wb") as f:
                f.write(b"x")

    class HoldsSlot(asyncflow.Task):
        resources = {"slot": 1}

        def run(self) -> Iterator[Any]:
            yield NeedsSlot()

    with anyio.fail_after(5):
        result = await asyncflow.run(HoldsSlot(), resources={"slot": 1}, journal=None)
    assert result.ok
    assert result.status(NeedsSlot()) is Status.DONE


async def test_sync_generators_yielding_one_task_share_its_run() -> None:
    """Two def run() bodies yielding the same task, also required statically: one run."""

    got: list[Any] = []

    def waiter(name: str) -> type[asyncflow.Task]:
        def run(self: asyncflow.Task) -> Iterator[Any]:
            got.append((yield Part("shared")))

        return type(name, (asyncflow.Task,), {"run": run})

    class Static(asyncflow.Task):
        def requires(self) -> Part:
            return Part("shared")

    result = await asyncflow.run(waiter("SW1")(), waiter("SW2")(), Static(), journal=None)
    assert result.ok
    assert Part.runs == ["shared"]
    assert got == [MemoryTarget("part/shared", store=STORE)] * 2


async def test_sync_generator_gets_the_output_of_a_complete_task_without_running_it() -> None:
    """A yielded task that is already complete is skipped; its output is still sent."""
    await MemoryTarget("part/done", store=STORE).write_text("DONE")
    got: list[str] = []

    class Reader(asyncflow.Task):
        def run(self) -> Iterator[Any]:
            target = yield SyncPart("done")
            got.append(read(target))

    result = await asyncflow.run(Reader(), journal=None)
    assert result.ok and got == ["DONE"] and Part.runs == []
    assert result.status(SyncPart("done")) is Status.ALREADY_COMPLETE


async def test_failure_of_a_task_yielded_from_a_sync_generator_fails_it_with_the_cause() -> None:
    """The waiting def run() fails with UpstreamFailed chained to the yielded task's
    error, and is closed (its finally runs)."""
    closed: list[bool] = []

    class Broken(asyncflow.Task):
        def run(self) -> None:
            raise ValueError("bad input file")

    class Waiting(asyncflow.Task):
        def run(self) -> Iterator[Any]:
            try:
                yield Broken()
            finally:
                closed.append(True)

    result = await asyncflow.run(Waiting(), journal=None)
    assert result.status(Broken()) is Status.FAILED
    assert result.status(Waiting()) is Status.FAILED
    error = result.error(Waiting())
    assert isinstance(error, asyncflow.UpstreamFailed)
    assert Broken().task_id in str(error)
    assert isinstance(error.__cause__, ValueError)
    assert closed == [True]


async def test_sync_generator_raising_after_a_yield_fails_the_task() -> None:
    """An exception in the body after it was resumed fails the task with it."""

    class Raises(asyncflow.Task):
        def run(self) -> Iterator[Any]:
            yield Part("first")
            raise KeyError("gone")

    result = await asyncflow.run(Raises(), journal=None)
    assert result.status(Raises()) is Status.FAILED
    assert isinstance(result.error(Raises()), KeyError)
    assert Part.runs == ["first"]


async def test_dynamic_cycle_from_a_sync_generator_is_reported_with_its_path() -> None:
    """A task yielded by a def run() that requires the yielding task is a cycle."""

    class Back(asyncflow.Task):
        def requires(self) -> asyncflow.Task:
            return SyncLoop()

    class SyncLoop(asyncflow.Task):
        def run(self) -> Iterator[Any]:
            yield Back()

    with anyio.fail_after(5):
        result = await asyncflow.run(SyncLoop(), journal=None)
    assert result.status(SyncLoop()) is Status.FAILED
    cause = result.error(SyncLoop()).__cause__
    assert isinstance(cause, asyncflow.CycleError)
    assert cause.cycle[0] == cause.cycle[-1] == SyncLoop().task_id
    assert Back().task_id in cause.cycle


async def test_sync_generator_yielding_something_else_than_tasks_is_a_clear_error() -> None:
    """A def run() yielding a non-task fails, naming what it yielded."""

    class Odd(asyncflow.Task):
        def run(self) -> Iterator[Any]:
            yield "not a task"

    result = await asyncflow.run(Odd(), journal=None)
    assert result.status(Odd()) is Status.FAILED
    assert "may yield tasks" in str(result.error(Odd()))


async def test_sync_generator_discovers_files_at_run_time(tmp_path: Path) -> None:
    """A def run() lists a folder while running and yields a task per file (Luigi's way)."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "x.txt").write_text("x")
    (inbox / "y.txt").write_text("y")

    class Sweep(asyncflow.Task):
        def output(self) -> LocalTarget:
            return LocalTarget(tmp_path / "sweep.txt")

        def run(self) -> Iterator[Any]:
            outputs = yield [Upper(str(p)) for p in sorted(inbox.iterdir())]
            texts = []
            for target in outputs:
                with target.open("r") as f:
                    texts.append(f.read())
            with self.output().open("w") as f:
                f.write(",".join(texts))

    result = await asyncflow.run(Sweep(), journal=None)
    assert result.ok, result.summary()
    assert (tmp_path / "sweep.txt").read_text() == "X,Y"


async def test_tasks_yielded_from_a_sync_generator_run_side_by_side() -> None:
    """Tasks a def run() yields together use all the run's workers at once."""
    Meeting.running = Meeting.peak = 0
    Meeting.met = anyio.Event()

    class SyncFan(asyncflow.Task):
        def run(self) -> Iterator[Any]:
            yield [Meeting(n, 3) for n in range(6)]

    with anyio.fail_after(10):
        result = await asyncflow.run(SyncFan(), workers=3, journal=None)
    assert result.ok, result.summary()
    assert Meeting.peak == 3


async def test_decorated_sync_generator_yields_tasks() -> None:
    """@asyncflow.task on a plain generator function works as a def run() that yields."""
    got: list[Any] = []

    @asyncflow.task
    def gather(count: int) -> Iterator[Any]:
        got.append((yield [Part(str(i)) for i in range(count)]))

    result = await asyncflow.run(gather(count=2), journal=None)
    assert result.ok, result.summary()
    assert got == [[MemoryTarget("part/0", store=STORE), MemoryTarget("part/1", store=STORE)]]


class _Gate:
    """The moments the side-by-side yields test lines up (made fresh per test)."""

    mid_probed: anyio.Event
    p2_ran: anyio.Event


class _GatedTarget(MemoryTarget):
    """``mid``'s probe waits until ``p2`` has run; ``p2``'s until ``mid`` is being probed."""

    async def exists(self) -> bool:
        if self.key == "part/mid":
            _Gate.mid_probed.set()
            await _Gate.p2_ran.wait()
        elif self.key == "part/p2":
            await _Gate.mid_probed.wait()
        return await super().exists()


class _Gated(Part):
    """A part whose output's probe is gated; ``p2`` opens ``mid``'s as it runs."""

    def output(self) -> _GatedTarget:
        return _GatedTarget(f"part/{self.name}", store=STORE)

    async def run(self) -> None:
        if self.name == "p2":
            _Gate.p2_ran.set()
        await super().run()


class _GatedMid(_Gated):
    def requires(self) -> _Gated:
        return _Gated(name="leaf")


class _GatedShared(_Gated):
    def requires(self) -> _GatedMid:
        return _GatedMid(name="mid")


class _Yields(_Gated):
    async def run(self) -> AsyncIterator[list[_Gated]]:  # type: ignore[override]
        own = "p1" if self.name == "y1" else "p2"
        yield [_GatedShared(name="shared"), _Gated(name=own)]
        Part.runs.append(self.name)
        await self.output().write_text(self.name)


async def test_requirements_yielded_side_by_side_each_run_once_after_theirs() -> None:
    """Two bodies yield requirements at the same time, one of them shared. While
    the first body's are still being expanded (``mid`` added, its probe under
    way), the second's expansion ends: it once settled every task added to the
    graph since it began, the first's ``mid`` included, so ``mid`` ran before
    its own requirement was even added (which then never ran), in a run that
    reported success; with other timings a task was queued twice and ran twice."""
    _Gate.mid_probed = anyio.Event()
    _Gate.p2_ran = anyio.Event()
    with anyio.fail_after(10):
        result = await asyncflow.run(_Yields(name="y1"), _Yields(name="y2"), journal=None)
    assert result.ok
    ran = Part.runs
    assert sorted(ran) == ["leaf", "mid", "p1", "p2", "shared", "y1", "y2"], ran
    assert ran.index("leaf") < ran.index("mid") < ran.index("shared"), ran
