from __future__ import annotations

import asyncio

import anyio.lowlevel
import pytest

import asyncflow
from asyncflow.events import Event, EventBus, TaskEvent, handles
from asyncflow.testing import FakeClock, MemoryStore, MemoryTarget


class Job(asyncflow.Task):
    pass


def test_marked_handler_gets_only_the_kinds_it_names() -> None:
    """A handler marked with handles() is called for its kinds only; others get every kind."""
    marked: list[Event] = []
    unmarked: list[Event] = []

    @handles(Event.START, Event.FAILURE)
    def on_some(event: TaskEvent) -> None:
        marked.append(event.kind)

    bus = EventBus([on_some, lambda event: unmarked.append(event.kind)])
    for kind in Event:
        bus.emit(kind, Job(), "run-1")
    assert marked == [Event.START, Event.FAILURE]
    assert unmarked == list(Event)


def test_a_marked_method_keeps_its_mark_when_bound() -> None:
    """handles() on a method applies to the bound method of every instance."""

    class Listener:
        def __init__(self) -> None:
            self.seen: list[Event] = []

        @handles(Event.SUCCESS)
        def on_event(self, event: TaskEvent) -> None:
            self.seen.append(event.kind)

    listener = Listener()
    bus = EventBus([listener.on_event])
    for kind in Event:
        bus.emit(kind, Job(), "run-1")
    assert listener.seen == [Event.SUCCESS]


Seen = tuple[Event, str, int]


class Ok(asyncflow.Task):
    async def run(self) -> None:
        pass


class Flaky(asyncflow.Task):
    """Fails its first attempt, succeeds at its second."""

    retry_count = 1
    retry_delay = 1.0
    calls = 0

    async def run(self) -> None:
        type(self).calls += 1
        if type(self).calls == 1:
            raise ConnectionError("first attempt fails")


class Fails(asyncflow.Task):
    async def run(self) -> None:
        raise RuntimeError("always fails")


class Missing(asyncflow.ExternalTask):
    def output(self) -> MemoryTarget:
        return MemoryTarget("absent", store=MemoryStore())


class BadRequires(asyncflow.Task):
    def requires(self) -> asyncflow.Task:
        raise KeyError("no such input")


def _sync_and_async_run_handlers() -> tuple[list[Seen], list[Seen], list[object]]:
    sync_seen: list[Seen] = []
    async_seen: list[Seen] = []

    def on_sync(event: TaskEvent) -> None:
        sync_seen.append((event.kind, event.task_id, event.attempt))

    async def on_async(event: TaskEvent) -> None:
        await anyio.lowlevel.checkpoint()  # as a handler that sends an alert would
        async_seen.append((event.kind, event.task_id, event.attempt))

    return sync_seen, async_seen, [on_sync, on_async]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("task", "kind"),
    [(Missing(), Event.DEPENDENCY_MISSING), (BadRequires(), Event.FAILURE)],
    ids=["missing-external", "requires-raises"],
)
async def test_async_run_handler_gets_events_of_the_graph(
    task: asyncflow.Task, kind: Event
) -> None:
    """An async run handler gets the events of tasks settled while the graph is built."""
    sync_seen, async_seen, handlers = _sync_and_async_run_handlers()
    await asyncflow.run(task, handlers=handlers, journal=None)
    assert sync_seen == [(kind, task.task_id, 1)]
    assert async_seen == sync_seen


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("cls", "kind"),
    [(Missing, Event.DEPENDENCY_MISSING), (BadRequires, Event.FAILURE)],
    ids=["missing-external", "requires-raises"],
)
async def test_async_class_handler_gets_events_of_the_graph(
    cls: type[asyncflow.Task], kind: Event
) -> None:
    """An async Task.event_handler gets the events of tasks settled while the graph is built."""
    sync_seen: list[asyncflow.Task] = []
    async_seen: list[asyncflow.Task] = []

    class Sub(cls):  # type: ignore[valid-type, misc]
        pass

    @Sub.event_handler(kind)
    def on_sync(task: asyncflow.Task, *rest: object) -> None:
        sync_seen.append(task)

    @Sub.event_handler(kind)
    async def on_async(task: asyncflow.Task, *rest: object) -> None:
        await anyio.lowlevel.checkpoint()
        async_seen.append(task)

    await asyncflow.run(Sub(), journal=None)
    assert sync_seen == [Sub()]
    assert async_seen == sync_seen


def _register_sync_and_async(
    classes: tuple[type[asyncflow.Task], ...],
) -> tuple[list[Seen], list[Seen]]:
    """Register a sync and an async class handler for every kind on each of ``classes``."""
    class_sync: list[Seen] = []
    class_async: list[Seen] = []
    for cls in classes:
        for kind in Event:

            def on_sync(task: asyncflow.Task, *rest: object, kind: Event = kind) -> None:
                class_sync.append((kind, task.task_id, 0))

            async def on_async(task: asyncflow.Task, *rest: object, kind: Event = kind) -> None:
                await anyio.lowlevel.checkpoint()
                class_async.append((kind, task.task_id, 0))

            cls.event_handler(kind)(on_sync)
            cls.event_handler(kind)(on_async)
    return class_sync, class_async


@pytest.mark.anyio
async def test_sync_and_async_handlers_see_the_same_events() -> None:
    """Over a run with a success (that reports a status), a retry, a failure, a missing
    external and a failing requires(), async handlers (run and class) see what sync
    ones see, in order."""

    class Seen1(Ok):
        async def run(self) -> None:
            self.set_progress_percentage(50)

    class Seen2(Flaky):
        calls = 0

    class Seen3(Fails): ...

    class Seen4(Missing): ...

    class Seen5(BadRequires): ...

    classes = (Seen1, Seen2, Seen3, Seen4, Seen5)
    sync_seen, async_seen, handlers = _sync_and_async_run_handlers()
    class_sync, class_async = _register_sync_and_async(classes)
    await asyncflow.run(
        [cls() for cls in classes], handlers=handlers, journal=None, clock=FakeClock()
    )
    assert {kind for kind, _, _ in sync_seen} == set(Event) - {Event.TIMEOUT, Event.CANCELLED}
    assert async_seen == sync_seen
    assert [seen[:2] for seen in sync_seen] == [seen[:2] for seen in class_sync]
    assert class_async == class_sync


@pytest.mark.anyio
async def test_async_handlers_get_the_events_of_a_fail_fast_stop() -> None:
    """With keep_going=False, the failure and the cancellations it causes reach async
    handlers too, though the run is being cancelled when they are emitted."""
    started = anyio.Event()

    class Blocks(asyncflow.Task):
        async def run(self) -> None:
            started.set()
            await anyio.sleep_forever()

    class FailsLater(asyncflow.Task):
        async def run(self) -> None:
            await started.wait()
            raise RuntimeError("fails once Blocks runs")

    sync_seen, async_seen, handlers = _sync_and_async_run_handlers()
    class_sync, class_async = _register_sync_and_async((Blocks, FailsLater))
    await asyncflow.run([Blocks(), FailsLater()], handlers=handlers, journal=None, keep_going=False)
    assert {kind for kind, _, _ in sync_seen} == {Event.START, Event.FAILURE, Event.CANCELLED}
    assert async_seen == sync_seen
    assert class_async == class_sync


@pytest.mark.anyio
async def test_event_times_are_the_times_the_run_records() -> None:
    """START carries the attempt's start and SUCCESS / PROCESSING_TIME its end, as
    the result says them: one clock reading each, not a second one per event."""
    seen: dict[Event, float] = {}
    task = Job()
    result = await asyncflow.run(
        task, handlers=[lambda event: seen.setdefault(event.kind, event.time)], journal=None
    )
    outcome = result[task]
    assert seen[Event.START] == outcome.started
    assert seen[Event.SUCCESS] == seen[Event.PROCESSING_TIME] == outcome.finished


@pytest.mark.anyio
@pytest.mark.parametrize("with_handler", [True, False], ids=["beside-a-handler", "alone"])
async def test_a_tally_gets_the_task_and_duration_of_its_kinds_only(
    caplog: pytest.LogCaptureFixture, with_handler: bool
) -> None:
    """A handler marked with tallies() is called with (task, duration) for its kinds,
    beside ordinary handlers or alone; one that raises is logged and the run goes on."""
    from asyncflow.events import tallies

    started: list[asyncflow.Task] = []
    durations: list[tuple[asyncflow.Task, float | None]] = []
    kinds: list[Event] = []

    @tallies(Event.START)
    def on_start(task: asyncflow.Task, duration: float | None) -> None:
        assert duration is None
        started.append(task)

    @tallies(Event.PROCESSING_TIME)
    def on_time(task: asyncflow.Task, duration: float | None) -> None:
        durations.append((task, duration))

    @tallies(Event.SUCCESS)
    def broken(task: asyncflow.Task, duration: float | None) -> None:
        raise ValueError("a broken tally")

    tasks = [Ok(), Fails()]
    handlers: list[object] = [on_start, on_time, broken]
    if with_handler:
        handlers.append(lambda event: kinds.append(event.kind))
    result = await asyncflow.run(*tasks, handlers=handlers, journal=None)  # type: ignore[arg-type]
    assert result.counts()[asyncflow.Status.DONE] == 1
    assert sorted(map(repr, started)) == sorted(map(repr, tasks))
    assert [task for task, _ in durations] == [Ok()]
    assert isinstance(durations[0][1], float) and durations[0][1] >= 0
    if with_handler:
        expected = [Event.START, Event.START, Event.SUCCESS, Event.PROCESSING_TIME, Event.FAILURE]
        assert sorted(kinds) == sorted(expected)
    failures = [r for r in caplog.records if r.getMessage().startswith("event handler failed")]
    assert len(failures) == 1 and "broken" in failures[0].getMessage()


@pytest.mark.anyio
async def test_class_handlers_alone_still_get_every_event_of_a_task() -> None:
    """With no run-level handler at all, a class handler still gets START, SUCCESS
    and PROCESSING_TIME (the executor skips only the events nobody hears), and a
    class without handlers next to it gets none."""
    seen: list[tuple[str, object]] = []

    class Heard(asyncflow.Task):
        async def run(self) -> None:
            pass

    class Unheard(asyncflow.Task):
        async def run(self) -> None:
            pass

    for kind in (Event.START, Event.SUCCESS, Event.PROCESSING_TIME):
        Heard.event_handler(kind)(lambda task, *rest, kind=kind: seen.append((kind, rest)))
    result = await asyncflow.run(Heard(), Unheard(), journal=None)
    assert result.ok
    assert [kind for kind, _ in seen] == [Event.START, Event.SUCCESS, Event.PROCESSING_TIME]
    assert isinstance(seen[2][1][0], float)  # PROCESSING_TIME: (task, seconds)
    bus = EventBus([])
    assert bus.heard(Heard) == {Event.START, Event.SUCCESS, Event.PROCESSING_TIME}
    assert bus.heard(Unheard) == frozenset()


class Many(asyncflow.Task):
    n = asyncflow.IntParameter()

    async def run(self) -> None:
        pass


@pytest.mark.anyio
async def test_async_handlers_coroutines_are_awaited_by_a_few_tasks() -> None:
    """An async handler's coroutines (three a task) are awaited by a few deliverers,
    started in the order of the events, not an asyncio task each (~25 µs an event)."""
    tasks: set[asyncio.Task[object] | None] = set()
    kinds: list[Event] = []

    async def handler(event: TaskEvent) -> None:
        tasks.add(asyncio.current_task())
        kinds.append(event.kind)
        await anyio.lowlevel.checkpoint()

    await asyncflow.run([Many(n) for n in range(300)], handlers=[handler], journal=None)
    assert len(kinds) == 900
    assert kinds.count(Event.SUCCESS) == 300
    assert len(tasks) <= 64, len(tasks)  # 900 on the old code
