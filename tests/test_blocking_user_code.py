"""User code that blocks, and runs that stall: the loop stays free, leases are kept,
and a run always ends with a result.

Luigi code does blocking work in plain ``def requires()``, ``output()`` and
``complete()`` (listing a bucket with boto3, asking a database). The engine calls
them off the event loop, so the run's heartbeat, its probes and the other tasks
go on meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import asyncflow
from asyncflow import Config, Status
from asyncflow.journal import Journal

pytestmark = pytest.mark.anyio

BLOCK = 0.5  # seconds each blocking method sleeps
# A method run on the loop stops it for a whole BLOCK; a loop merely slowed by a
# busy machine (other processes on two cores) was seen to miss a 0.225 s bound.
BLOCKED = BLOCK * 0.9
COUNT = 10  # tasks in a run


class Blocking(asyncflow.Task):
    """Blocks in the method named ``where``, like Luigi code calling boto3 there."""

    folder = asyncflow.Parameter()
    where = asyncflow.Parameter()
    n = asyncflow.IntParameter()

    def requires(self) -> list[asyncflow.Task]:
        if self.where == "requires":
            time.sleep(BLOCK)
        return []

    def output(self) -> asyncflow.LocalTarget:
        if self.where == "output":
            time.sleep(BLOCK)
        return asyncflow.LocalTarget(Path(self.folder, f"{self.n}.txt"))

    def run(self) -> None:  # a plain def, as in Luigi: in a worker thread
        with self.output().open("w") as f:
            f.write(str(self.n))


class BlockingComplete(Blocking):
    def complete(self) -> bool:  # a plain def complete(), as in Luigi
        time.sleep(BLOCK)
        return Path(self.folder, f"{self.n}.txt").exists()


class Batch(asyncflow.WrapperTask):
    folder = asyncflow.Parameter()
    where = asyncflow.Parameter()

    def requires(self) -> list[asyncflow.Task]:
        cls = BlockingComplete if self.where == "complete" else Blocking
        return [cls(self.folder, self.where, n) for n in range(COUNT)]


@pytest.fixture
async def loop_gaps() -> AsyncIterator[list[float]]:
    """The longest stretches during which the event loop could not run a coroutine."""
    gaps: list[float] = []

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await anyio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async with anyio.create_task_group() as tg:
        tg.start_soon(tick)
        yield gaps
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("where", ["output", "requires", "complete"])
async def test_blocking_plain_def_methods_run_off_the_loop(
    tmp_path: Path, where: str, loop_gaps: list[float]
) -> None:
    """requires(), output() or complete() sleeping in ten tasks: the run succeeds with
    its journal, and the loop never waits for one of them."""
    result = await asyncflow.run(
        Batch(str(tmp_path), where), journal=tmp_path / "journal.db", config=Config()
    )
    assert result.ok, result.summary()
    assert sorted(p.name for p in tmp_path.glob("*.txt")) == sorted(
        f"{n}.txt" for n in range(COUNT)
    )
    assert max(loop_gaps) < BLOCKED, f"the loop was blocked for {max(loop_gaps):.2f} s"


def test_build_with_an_output_that_blocks_returns_a_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reported case: ten output()s sleeping half a second each, build() with the
    default journal in the working folder: a successful RunResult, not an exception,
    and soon, as the output()s are called side by side."""
    monkeypatch.chdir(tmp_path)

    class SlowOutput(asyncflow.Task):
        n = asyncflow.IntParameter()

        def output(self) -> asyncflow.LocalTarget:
            time.sleep(0.5)
            return asyncflow.LocalTarget(f"out/{self.n}.txt")

        def run(self) -> None:
            with self.output().open("w") as f:
                f.write("done")

    started = time.monotonic()
    result = asyncflow.build([SlowOutput(n) for n in range(COUNT)], config=Config())
    took = time.monotonic() - started
    assert isinstance(result, asyncflow.RunResult)
    assert result.ok, result.summary()
    # Side by side in worker threads: about 2 s (on the loop, one at a time: over 6 s).
    assert took < 4, f"took {took:.1f} s"
    assert (tmp_path / ".asyncflow" / "journal.db").exists()


async def test_async_generator_gets_outputs_computed_off_the_loop(
    tmp_path: Path, loop_gaps: list[float]
) -> None:
    """The outputs sent back into a waiting async body come from blocking output()s
    called off the loop."""
    got: list[Any] = []

    class Gather(asyncflow.Task):
        async def run(self) -> AsyncIterator[Any]:
            got.append((yield [Blocking(str(tmp_path), "output", n) for n in range(COUNT)]))

    result = await asyncflow.run(Gather(), journal=None)
    assert result.ok, result.summary()
    assert [Path(t.path) for t in got[0]] == [tmp_path / f"{n}.txt" for n in range(COUNT)]
    assert max(loop_gaps) < BLOCKED, f"the loop was blocked for {max(loop_gaps):.2f} s"


async def test_a_renewal_keeps_the_leases_taken_while_it_waited(tmp_path: Path) -> None:
    """A heartbeat that comes due while the run takes its leases does not call them lost
    (it did, and the run then gave up every task it had just leased)."""
    ids = [f"task-{n}" for n in range(COUNT)]
    async with Journal.open(tmp_path / "journal.db") as journal:
        await journal.begin_run("run", ids)
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(journal.claim, "run", ids, since=0.0))
            while not journal._store.lock.locked():  # until the claim is in its transaction
                await anyio.lowlevel.checkpoint()
            lost = await journal.renew()
        assert lost == []
        check = journal.commit_check("run")
        assert all(check.may_commit(task_id) for task_id in ids)


class Stalling(asyncflow.Task):
    """The first body to start stalls its whole process (it blocks the event loop)
    until ``resume`` is set; every body writes the name of the thread that ran it."""

    folder = asyncflow.Parameter()
    n = asyncflow.IntParameter()
    stalled = threading.Event()
    resume = threading.Event()

    def output(self) -> asyncflow.LocalTarget:
        return asyncflow.LocalTarget(Path(self.folder, f"{self.n}.txt"))

    async def run(self) -> None:
        cls = type(self)
        if not cls.stalled.is_set():
            cls.stalled.set()
            cls.resume.wait(30)  # blocking on purpose: this run stalls, as if stopped
        await self.output().write_text(threading.current_thread().name)


class Stalled(asyncflow.WrapperTask):
    folder = asyncflow.Parameter()

    def requires(self) -> list[Stalling]:
        return [Stalling(self.folder, n) for n in range(3)]


async def test_run_whose_tasks_were_taken_over_while_it_stalled_returns_a_result(
    tmp_path: Path,
) -> None:
    """A run stalls past its lease time and another takes its tasks over and finishes
    them. The stalled run then loses several leases at once: it takes the other's
    outcomes and returns a RunResult (it raised ExceptionGroup[KeyError])."""
    Stalling.stalled.clear()
    Stalling.resume.clear()
    config = Config(lease_ttl=1.0)
    journal = tmp_path / "journal.db"
    other: list[asyncflow.RunResult] = []

    def take_over() -> None:
        try:
            if Stalling.stalled.wait(30):
                other.append(
                    asyncflow.build(Stalled(str(tmp_path)), journal=journal, config=config)
                )
        finally:
            Stalling.resume.set()

    thread = threading.Thread(target=take_over, name="takeover")
    thread.start()
    try:
        with anyio.fail_after(60):
            result = await asyncflow.run(
                Stalled(str(tmp_path)), workers=1, journal=journal, config=config
            )
    finally:
        Stalling.resume.set()
        thread.join(30)
    assert other and other[0].ok, other[0].summary() if other else "the other run did not end"
    assert result.ok, result.summary()
    for n in range(3):
        assert result.status(Stalling(str(tmp_path), n)) is Status.ALREADY_COMPLETE
        assert (tmp_path / f"{n}.txt").read_text() == "takeover"  # the stalled write was refused


class Recorded(asyncflow.Task):
    """Records the thread of every output() call; sleeps there from ``slow_from`` on."""

    n = asyncflow.IntParameter()
    slow_from = asyncflow.IntParameter()
    calls: list[tuple[int, bool]] = []  # (n, on the loop's thread)

    def output(self) -> asyncflow.MemoryTarget:
        on_loop = threading.current_thread() is threading.main_thread()
        type(self).calls.append((self.n, on_loop))
        if self.n >= self.slow_from:
            time.sleep(0.02)
        return asyncflow.MemoryTarget(f"recorded/{self.n}/{self.slow_from}")

    async def run(self) -> None:
        await asyncflow.MemoryTarget(f"recorded/{self.n}/{self.slow_from}").write_text("x")


async def test_quick_plain_def_methods_are_called_on_the_loop_after_a_trial() -> None:
    """A thread per call would cost more than a no-op task: a method that keeps
    returning at once is called on the loop after a few calls in worker threads."""
    Recorded.calls.clear()
    result = await asyncflow.run([Recorded(n, 1000) for n in range(300)], journal=None)
    assert result.ok
    in_threads = sum(1 for _, on_loop in Recorded.calls if not on_loop)
    assert 0 < in_threads < 100, in_threads  # about 8 (more if the machine is busy)


async def test_a_method_that_turns_slow_on_the_loop_goes_back_to_threads() -> None:
    """output() is quick for a while, then blocks: once it blocked the loop it is
    called in worker threads again. (Quick calls still under way may bring it back
    to the loop, after a trial twice as long each time: a few slow calls at most.)"""
    Recorded.calls.clear()
    result = await asyncflow.run([Recorded(n, 200) for n in range(230)], journal=None)
    assert result.ok
    slow_on_loop = [n for n, on_loop in Recorded.calls if on_loop and n >= 200]
    assert any(on_loop for n, on_loop in Recorded.calls if n < 200)  # it was on the loop
    assert len(slow_on_loop) <= 4, slow_on_loop
    assert sum(1 for n, on_loop in Recorded.calls if n >= 200 and not on_loop) >= 26


async def test_the_engines_quick_defaults_stay_on_the_loop_after_a_pause() -> None:
    """Task's own requires() and output() return at once; a call that a pause of the
    machine (or of the collector) makes look slow must not send them to worker
    threads: every task of a large graph would then pay a thread's round trip."""
    from asyncflow.graph import user_code

    calls = user_code(8)
    loop_thread = threading.get_ident()
    threads: list[int] = []

    def paused(task: asyncflow.Task) -> None:
        threads.append(threading.get_ident())
        time.sleep(0.02)  # as if the process were descheduled during the call

    def quick(task: asyncflow.Task) -> None:
        threads.append(threading.get_ident())

    task = asyncflow.Task()
    await calls.call(asyncflow.Task.output, paused, task)
    await calls.call(asyncflow.Task.requires, paused, task)
    for _ in range(5):
        await calls.call(asyncflow.Task.output, quick, task)
        await calls.call(asyncflow.Task.requires, quick, task)
    assert threads == [loop_thread] * 12
    assert not calls.slow(asyncflow.Task.output) and not calls.slow(asyncflow.Task.requires)


async def test_pauses_of_the_machine_keep_a_quick_method_in_threads_for_a_bounded_trial() -> None:
    """A pause of the machine during a quick method's call on the loop looks like a
    slow call and sends the method to worker threads for a trial twice as long as
    the last; pause after pause, the trial stops growing at a cap, so the method is
    back on the loop after a few hundred calls, not after thousands."""
    from asyncflow._usercode import UserCode

    calls = UserCode(8)
    loop_thread = threading.get_ident()
    pauses = 0
    where: list[bool] = []  # on the loop, per call

    def quick_method() -> None: ...

    def call(_: object) -> None:
        nonlocal pauses
        on_loop = threading.get_ident() == loop_thread
        where.append(on_loop)
        if on_loop and pauses < 7:
            pauses += 1
            time.sleep(0.006)  # caught in a pause: longer than SLOW_CALL

    while pauses < 7:
        await calls.call(quick_method, call, None)
    after = len(where)
    for _ in range(600):
        await calls.call(quick_method, call, None)
        if where[-1]:
            break
    # Uncapped, seven pauses made a trial of 8 x 2**7 = 1,024 calls in threads.
    assert where[-1], f"still in threads after {len(where) - after} calls"
    assert len(where) - after <= 300


async def test_a_bulk_probe_whose_trial_call_was_slow_keeps_a_few_calls_under_way() -> None:
    """output() of a backfill's thousands of tasks, its first call slow (a pause
    of the machine): the calls go side by side, never more than the probe
    concurrency at once, and back on the loop once the method proves quick. It
    once made a coroutine per item: 200,000 of them for a wide backfill, which
    held the loop for seconds while they were made and ran 6 times as long."""
    from asyncflow._usercode import UserCode

    calls = UserCode(8)
    loop_thread = threading.get_ident()
    on_loop = [False] * 3_000  # by item: a call in a thread may end after later ones

    def output_method() -> None: ...

    def output(item: int) -> int:
        on_loop[item] = threading.get_ident() == loop_thread
        if item == 0:
            # The trial's first call is caught in a pause: slow, but shorter than
            # the other calls' patience with it (_TRIAL_PATIENCE), so that they
            # wait for its verdict. (Out longer, they go ahead, make the method
            # quick, and its late verdict sends it back to threads.)
            time.sleep(0.01)
        return item * 2

    most = 0
    done = False

    async def watch() -> None:
        nonlocal most
        while not done:
            most = max(most, len(asyncio.all_tasks()))
            # Not a turn at a time: a loop kept busy keeps the worker threads
            # from the GIL, and their quick calls would look slow (the method
            # kept in threads). A coroutine per item, as once made, would live
            # for many milliseconds: it is seen all the same.
            await asyncio.sleep(0.001)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await anyio.lowlevel.checkpoint()
        before = len(asyncio.all_tasks())
        found = await calls.map(lambda _: output_method, output, list(range(3_000)))
        done = True
    assert found == [item * 2 for item in range(3_000)]
    assert most - before <= 8 + 1, most - before  # the 8 callers (and the watcher's wake-up)
    assert on_loop[-1] and sum(on_loop) > 2_900  # back on the loop after a short trial


async def test_a_bulk_probe_of_quick_outputs_gives_the_loop_turns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once a method is called on the loop, a bulk probe's calls of it share turns
    of the loop with the rest of the process (they once went on in one piece:
    200,000 output() calls held the loop for a quarter of a second)."""
    from asyncflow import _turns
    from asyncflow._usercode import UserCode

    monkeypatch.setattr(_turns, "_TURN_SECONDS", 0.0)
    calls = UserCode(8, quick=[int])  # an engine default: on the loop from the start
    turns = 0
    done = False

    async def watch() -> None:
        nonlocal turns
        while not done:
            turns += 1
            await asyncio.sleep(0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await anyio.lowlevel.checkpoint()
        start = turns
        found = await calls.map(lambda _: int, str, list(range(1_000)))
        done = True
    assert found == [str(item) for item in range(1_000)]
    assert turns - start >= 1_000 // 8, turns - start  # a turn for each worker's call
