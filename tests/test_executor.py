from __future__ import annotations

import logging
import threading
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
import structlog

import asyncflow
from asyncflow import Status
from asyncflow.targets import LocalTarget, MemoryStore, MemoryTarget
from asyncflow.testing import EventRecorder

pytestmark = pytest.mark.anyio

STORE = MemoryStore()


@pytest.fixture(autouse=True)
def _clean_store() -> None:
    STORE.clear()


class Step(asyncflow.Task):
    """Writes its output; requires the steps named in `needs`."""

    name = asyncflow.Parameter()
    needs = asyncflow.ListParameter(default=[])
    log: list[str] = []

    def requires(self) -> list[Step]:
        return [Step(n) for n in self.needs]

    def output(self) -> MemoryTarget:
        return MemoryTarget(self.name, store=STORE)

    async def run(self) -> None:
        Step.log.append(self.name)
        await self.output().write_bytes(b"done")


class Boom(asyncflow.Task):
    def output(self) -> MemoryTarget:
        return MemoryTarget("boom", store=STORE)

    async def run(self) -> None:
        raise ValueError("bad data in row 7")


class AfterBoom(asyncflow.Task):
    def requires(self) -> Boom:
        return Boom()

    def output(self) -> MemoryTarget:
        return MemoryTarget("after-boom", store=STORE)

    async def run(self) -> None:
        raise AssertionError("must not run")


@pytest.fixture(autouse=True)
def _clear_log() -> None:
    Step.log.clear()


async def test_runs_requirements_first_and_each_once() -> None:
    """In a diamond every task runs once, after its requirements."""

    class Diamond(asyncflow.WrapperTask):
        def requires(self) -> Step:
            return Step("top", ["a", "b"])

    mids = {"a": Step("a", ["base"]), "b": Step("b", ["base"])}
    original = Step.requires

    def requires(self: Step) -> list[Step]:
        return [mids.get(n, Step(n)) for n in self.needs]

    Step.requires = requires  # type: ignore[method-assign]
    try:
        result = await asyncflow.run(Diamond(), journal=None)
    finally:
        Step.requires = original  # type: ignore[method-assign]
    assert result.ok
    assert sorted(Step.log) == ["a", "b", "base", "top"]
    assert Step.log[0] == "base" and Step.log[-1] == "top"
    assert len(result) == 5


async def test_second_run_finds_everything_complete() -> None:
    """A repeated run does nothing: the requested task is already complete."""
    await asyncflow.run(Step("x", ["y"]), journal=None)
    Step.log.clear()
    result = await asyncflow.run(Step("x", ["y"]), journal=None)
    assert Step.log == []
    assert result.status(Step("x", ["y"])) is Status.ALREADY_COMPLETE


async def test_workers_bound_running_bodies() -> None:
    """No more than `workers` bodies run at once, and the bound is reached."""
    running = 0
    peak = 0

    class Busy(asyncflow.Task):
        n = asyncflow.IntParameter()

        async def run(self) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            for _ in range(5):
                await anyio.lowlevel.checkpoint()
            running -= 1

    result = await asyncflow.run([Busy(n) for n in range(20)], workers=3, journal=None)
    assert result.ok
    assert all(r.status is Status.DONE for r in result)
    assert peak == 3


async def test_sync_body_runs_in_thread_and_loop_stays_responsive() -> None:
    """A blocking sync body runs off the loop while async tasks progress."""
    released = threading.Event()
    threads: list[str] = []

    class Blocking(asyncflow.Task):
        def run(self) -> None:
            threads.append(threading.current_thread().name)
            assert released.wait(timeout=10), "the loop was blocked"

    class Releaser(asyncflow.Task):
        async def run(self) -> None:
            await anyio.sleep(0.01)
            released.set()

    with anyio.fail_after(20):
        result = await asyncflow.run(Blocking(), Releaser(), workers=2, journal=None)
    assert [r.status for r in result] == [Status.DONE, Status.DONE]
    assert threads and threads[0] != threading.main_thread().name


async def test_keep_going_runs_independent_branches() -> None:
    """With keep_going, a failure stops only what is downstream of it."""
    result = await asyncflow.run(AfterBoom(), Step("independent"), journal=None)
    assert result.status(Boom()) is Status.FAILED
    assert result.status(AfterBoom()) is Status.UPSTREAM_FAILED
    assert result.status(Step("independent")) is Status.DONE
    upstream = result.error(AfterBoom())
    assert isinstance(upstream, asyncflow.UpstreamFailed)
    assert Boom().task_id in str(upstream)
    assert not result.ok


async def test_fail_fast_cancels_running_and_pending() -> None:
    """keep_going=False cancels running siblings and starts nothing more."""
    started = anyio.Event()

    class Sleeper(asyncflow.Task):
        async def run(self) -> None:
            started.set()
            await anyio.sleep_forever()

    class FailsLater(asyncflow.Task):
        async def run(self) -> None:
            await started.wait()
            raise RuntimeError("fatal")

    class Waiting(asyncflow.Task):
        def requires(self) -> Sleeper:
            return Sleeper()

    with anyio.fail_after(5):
        result = await asyncflow.run(
            Waiting(), FailsLater(), workers=2, keep_going=False, journal=None
        )
    assert result.status(FailsLater()) is Status.FAILED
    assert result.status(Sleeper()) is Status.CANCELLED
    assert result.status(Waiting()) is Status.CANCELLED


async def test_missing_output_after_run_fails_naming_target(tmp_path: Path) -> None:
    """A run() that returns without writing its output is FAILED, naming the target."""
    path = tmp_path / "never.csv"

    class Lazy(asyncflow.Task):
        def output(self) -> LocalTarget:
            return LocalTarget(path)

        async def run(self) -> None:
            return None

    result = await asyncflow.run(Lazy(), journal=None)
    assert result.status(Lazy()) is Status.FAILED
    error = result.error(Lazy())
    assert isinstance(error, asyncflow.MissingOutputError)
    assert str(path) in str(error) and Lazy().task_id in str(error)


async def test_failure_keeps_exception_and_traceback() -> None:
    """The exception is kept on the result with its traceback."""
    result = await asyncflow.run(Boom(), journal=None)
    error = result.error(Boom())
    assert isinstance(error, ValueError) and str(error) == "bad data in row 7"
    traceback = result[Boom()].traceback
    assert traceback is not None and "in run" in traceback and "bad data in row 7" in traceback


class PlainBoom(asyncflow.Task):
    def run(self) -> None:  # plain def: called in a worker thread
        raise ValueError("bad data in row 8")


class BadRequires(asyncflow.Task):
    def requires(self) -> list[asyncflow.Task]:
        raise KeyError("no such partition")


class NoOutput(asyncflow.Task):
    def output(self) -> MemoryTarget:
        return MemoryTarget("never-written", store=STORE)

    async def run(self) -> None:
        pass


async def test_tracebacks_start_at_the_users_code(tmp_path: Path) -> None:
    """The result's and the journal's tracebacks leave out the engine's (and anyio's,
    asyncio's) frames before the user's first one, also in a chained error; an error
    the engine raised keeps its frames. The errors themselves are not changed."""
    tasks = [Boom(), PlainBoom(), BadRequires(), NoOutput()]
    path = tmp_path / "journal.db"
    result = await asyncflow.run(tasks, journal=path)
    async with asyncflow.journal.Journal.open(path) as journal:
        journaled = {t: (await journal.attempts(t.task_id))[-1].traceback for t in tasks}
    first_frame = f'Traceback (most recent call last):\n  File "{__file__}", line '
    for task, (function, message) in {
        Boom(): ("run", "ValueError: bad data in row 7"),
        PlainBoom(): ("run", "ValueError: bad data in row 8"),
        BadRequires(): ("requires", "KeyError: 'no such partition'"),
    }.items():
        for text in (result[task].traceback, journaled[task]):
            assert text is not None and text.startswith(first_frame), (task, text)
            assert f", in {function}\n" in text and message in text
            assert "asyncflow" not in text.split("\n\n")[0], text  # the user's part
    # The engine's own error: nothing of the user's to start at, every frame kept.
    for text in (result[NoOutput()].traceback, journaled[NoOutput()]):
        assert text is not None and "check_outputs" in text and "MissingOutputError" in text
    # The error keeps the frames it was raised through.
    tb = result.error(PlainBoom()).__traceback__
    modules = []
    while tb is not None:
        modules.append(tb.tb_frame.f_globals["__name__"])
        tb = tb.tb_next
    assert modules[0].startswith("asyncflow.") and modules[-1] == __name__, modules


async def test_missing_external_input() -> None:
    """An absent ExternalTask output is MISSING and its dependents are not run."""

    class Upload(asyncflow.ExternalTask):
        def output(self) -> MemoryTarget:
            return MemoryTarget("upload", store=STORE)

    class Process(asyncflow.Task):
        def requires(self) -> Upload:
            return Upload()

        async def run(self) -> None:
            raise AssertionError("must not run")

    recorder = EventRecorder()
    result = await asyncflow.run(Process(), handlers=[recorder], journal=None)
    assert result.status(Upload()) is Status.MISSING
    assert result.status(Process()) is Status.UPSTREAM_FAILED
    assert "missing" in str(result.error(Process()))
    assert recorder.kinds(Upload()) == [asyncflow.Event.DEPENDENCY_MISSING]


async def test_present_external_input_is_already_complete() -> None:
    """An ExternalTask whose output exists is ALREADY_COMPLETE."""

    class Upload(asyncflow.ExternalTask):
        def output(self) -> MemoryTarget:
            return MemoryTarget("upload", store=STORE)

    await MemoryTarget("upload", store=STORE).write_bytes(b"x")
    result = await asyncflow.run(Upload(), journal=None)
    assert result.status(Upload()) is Status.ALREADY_COMPLETE and result.ok


async def test_priority_orders_ready_tasks() -> None:
    """Among ready tasks, higher priority starts first; ties start in order."""
    order: list[str] = []

    def make(name: str, prio: int) -> type[asyncflow.Task]:
        async def run(self: asyncflow.Task) -> None:
            order.append(name)

        return type(name, (asyncflow.Task,), {"priority": prio, "run": run})

    tasks = [make("low", 0)(), make("high", 10)(), make("mid", 5)(), make("mid2", 5)()]
    await asyncflow.run(tasks, workers=1, journal=None)
    assert order == ["high", "mid", "mid2", "low"]


async def test_events_for_a_successful_task() -> None:
    """A task that succeeds emits START, SUCCESS and PROCESSING_TIME, in order."""
    recorder = EventRecorder()
    await asyncflow.run(Step("e"), handlers=[recorder], journal=None)
    assert recorder.kinds(Step("e")) == [
        asyncflow.Event.START,
        asyncflow.Event.SUCCESS,
        asyncflow.Event.PROCESSING_TIME,
    ]
    timing = recorder.of(Step("e"))[-1]
    assert timing.duration is not None and timing.duration >= 0
    assert len({e.run_id for e in recorder.events}) == 1


async def test_class_event_handlers_apply_to_subclasses() -> None:
    """Task.event_handler on a base class receives its subclasses' events, Luigi-style."""

    class Base(asyncflow.Task):
        async def run(self) -> None:
            raise KeyError("k")

    class Sub(Base):
        pass

    failures: list[tuple[asyncflow.Task, BaseException]] = []
    starts: list[asyncflow.Task] = []
    Base.event_handler(asyncflow.Event.FAILURE)(lambda t, e: failures.append((t, e)))
    Sub.event_handler(asyncflow.Event.START)(starts.append)
    await asyncflow.run(Sub(), Base(), journal=None)
    assert {t for t, _ in failures} == {Sub(), Base()}
    assert all(isinstance(e, KeyError) for _, e in failures)
    assert starts == [Sub()]


async def test_raising_handler_is_logged_and_run_continues() -> None:
    """A handler that raises is logged; the run is unaffected."""

    def broken(event: asyncflow.TaskEvent) -> None:
        raise RuntimeError("handler bug")

    with structlog.testing.capture_logs() as logs:
        result = await asyncflow.run(Step("h"), handlers=[broken], journal=None)
    assert result.ok
    assert any(entry["event"] == "event handler failed" for entry in logs)


async def test_async_handlers_are_awaited() -> None:
    """An async handler runs to completion within the run."""
    seen: list[asyncflow.Event] = []

    async def handler(event: asyncflow.TaskEvent) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(event.kind)

    await asyncflow.run(Step("ah"), handlers=[handler], journal=None)
    assert sorted(seen) == sorted(
        [asyncflow.Event.START, asyncflow.Event.SUCCESS, asyncflow.Event.PROCESSING_TIME]
    )


async def test_task_without_output_runs_every_time() -> None:
    """Without outputs (and until a journal says so) a task is never complete."""
    runs = 0

    class NoOutput(asyncflow.Task):
        async def run(self) -> None:
            nonlocal runs
            runs += 1

    for _ in range(2):
        result = await asyncflow.run(NoOutput(), journal=None)
        assert result.status(NoOutput()) is Status.DONE
    assert runs == 2


async def test_outside_cancellation_cancels_bodies_and_leaves_no_output(
    tmp_path: Path,
) -> None:
    """Cancelling the caller cancels running bodies; no partial output; not swallowed."""
    path = tmp_path / "partial.txt"
    entered = anyio.Event()

    class Writer(asyncflow.Task):
        def output(self) -> LocalTarget:
            return LocalTarget(path)

        async def run(self) -> None:
            async with self.output().open("w") as f:
                f.write("half")
                entered.set()
                await anyio.sleep_forever()

    returned = False
    async with anyio.create_task_group() as tg:

        async def runner() -> None:
            nonlocal returned
            await asyncflow.run(Writer(), journal=None)
            returned = True

        tg.start_soon(runner)
        await entered.wait()
        tg.cancel_scope.cancel()
    assert returned is False
    assert not path.exists()
    assert list(path.parent.iterdir()) == []


async def test_logs_carry_run_and_task_ids() -> None:
    """Logging inside a body sees run_id and task_id bound as context variables."""
    seen: dict[str, object] = {}

    class Peek(asyncflow.Task):
        async def run(self) -> None:
            seen.update(structlog.contextvars.get_contextvars())

    result = await asyncflow.run(Peek(), journal=None)
    assert seen["task_id"] == Peek().task_id
    assert seen["run_id"] == result.run_id
    assert "run_id" not in structlog.contextvars.get_contextvars()
    assert "task_id" not in structlog.contextvars.get_contextvars()


async def test_run_installs_no_logging_handlers() -> None:
    """A run leaves the root logger's handlers as they were."""
    before = list(logging.getLogger().handlers)
    await asyncflow.run(Step("quiet"), journal=None)
    assert logging.getLogger().handlers == before


class Link(asyncflow.Task):
    i = asyncflow.IntParameter()

    def requires(self) -> Link | None:
        return Link(self.i - 1) if self.i else None

    def output(self) -> MemoryTarget:
        return MemoryTarget(f"link/{self.i}", store=STORE)

    async def run(self) -> None:
        await self.output().write_bytes(b"")


async def test_ten_thousand_chain_runs_in_order() -> None:
    """A 10,000-long chain runs end to end, every link once."""
    result = await asyncflow.run(Link(9_999), journal=None)
    assert result.ok and len(result) == 10_000
    assert all(r.status is Status.DONE for r in result)
    starts = [result[Link(i)].started for i in range(10_000)]
    assert starts == sorted(starts)


class _Counted(asyncflow.Task):
    """One of many tasks without outputs; the run's first body notes the time."""

    i = asyncflow.IntParameter()
    turns: list[int] = []  # the watcher's count when the first body ran

    async def run(self) -> None:
        if not _Counted.turns:
            _Counted.turns.append(_Turns.count)


class _Turns:
    count = 0


class _Many(asyncflow.WrapperTask):
    n = asyncflow.IntParameter()

    def requires(self) -> list[_Counted]:
        _Turns.count = 0  # from the last requires() of the expansion on
        return [_Counted(i) for i in range(self.n)]


async def test_the_passes_between_expansion_and_the_first_task_give_the_loop_turns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Settling the graph, the resource check, the executor's look at every task
    and its first filling of the ready queue each let the rest of the process
    run between slices of the graph (400,000 tasks once held the loop 140 ms
    between expansion and the first task). With slices of one task, each pass
    gives a turn per task. (Without the journal: its reads would give turns of
    their own.)"""
    from asyncflow import executor, graph, runner

    for module, name in [
        (graph, "_SETTLE_TURN"),
        (executor, "_PUSH_TURN"),
        (runner, "_GRAPH_TURN"),
    ]:
        monkeypatch.setattr(module, name, 1)
    _Counted.turns = []
    done = False

    async def watch() -> None:
        while not done:
            _Turns.count += 1
            await anyio.lowlevel.checkpoint()

    n = 300
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        result = await asyncflow.run(_Many(n), journal=None)
        done = True
    assert result.ok and len(result) == n + 1
    # Settling (two passes), the resource check, the look and the filling: five.
    assert _Counted.turns[0] >= 5 * n, _Counted.turns


class _FailsOnce(asyncflow.Task):
    """Fails at its first attempt, at once; counts the attempts of its kind."""

    i = asyncflow.IntParameter()
    attempts = 0
    failed: set[int] = set()

    async def run(self) -> None:
        _FailsOnce.attempts += 1
        if self.i not in _FailsOnce.failed:
            _FailsOnce.failed.add(self.i)
            raise RuntimeError("once")


async def test_bodies_that_fail_at_once_give_the_loop_turns() -> None:
    """A worker gives the loop a turn every few attempts, failed ones (to be
    retried) too: 30,000 tasks failing at their first attempt once held the
    loop 2.5 s, every first attempt in one turn."""
    _FailsOnce.attempts = 0
    _FailsOnce.failed = set()
    most = 0
    done = False

    async def watch() -> None:
        nonlocal most
        seen = 0
        while not done:
            await anyio.lowlevel.checkpoint()
            most = max(most, _FailsOnce.attempts - seen)
            seen = _FailsOnce.attempts

    n = 600
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        result = await asyncflow.run(
            [_FailsOnce(i) for i in range(n)],
            journal=None,
            retry=asyncflow.RetryPolicy(count=1, delay=0),
        )
        done = True
    assert result.ok and _FailsOnce.attempts == 2 * n
    assert most <= 8 * 16 + 8, most  # 8 workers, a turn every 16 attempts each
