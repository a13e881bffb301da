from __future__ import annotations

from collections.abc import AsyncIterator
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
