from __future__ import annotations

import pickle
import threading
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
import structlog

import asyncflow
from asyncflow import Event, Status
from asyncflow.targets import LocalTarget
from asyncflow.testing import EventRecorder, FakeClock

pytestmark = pytest.mark.anyio


def flaky(  # type: ignore[no-untyped-def]
    failures: int, error: type[Exception] = ConnectionError, name: str = "Flaky", **attrs: object
):
    """A task class whose first `failures` attempts raise `error`."""
    calls: list[int] = []

    async def run(self: asyncflow.Task) -> None:
        calls.append(1)
        if len(calls) <= failures:
            raise error(f"attempt {len(calls)} failed")

    cls = type(name, (asyncflow.Task,), {"run": run, **attrs})
    return cls, calls


async def test_succeeds_on_third_attempt() -> None:
    """A transient failure is retried until an attempt succeeds; attempts are recorded."""
    cls, calls = flaky(2, retry_count=3, retry_delay=1)
    clock = FakeClock()
    result = await asyncflow.run(cls(), clock=clock, journal=None)
    assert result.status(cls()) is Status.DONE
    assert len(calls) == 3
    history = result[cls()].history
    assert [a.number for a in history] == [1, 2, 3]
    assert [type(a.error) for a in history] == [ConnectionError, ConnectionError, type(None)]
    assert result[cls()].attempts == 3


async def test_permanent_error_is_not_retried() -> None:
    """PermanentError fails the task at once, whatever retry_count says."""
    cls, calls = flaky(5, asyncflow.PermanentError, retry_count=5)
    result = await asyncflow.run(cls(), clock=FakeClock(), journal=None)
    assert result.status(cls()) is Status.FAILED
    assert len(calls) == 1


async def test_retry_on_narrows_retryable_errors() -> None:
    """An error outside retry_on is not retried."""
    cls, calls = flaky(5, ValueError, retry_count=5, retry_on=(ConnectionError,))
    result = await asyncflow.run(cls(), clock=FakeClock(), journal=None)
    assert result.status(cls()) is Status.FAILED and len(calls) == 1


async def test_backoff_delays_double_up_to_the_cap() -> None:
    """Delays follow delay * backoff ** n, capped: 1, 2, 4, 4."""
    cls, _ = flaky(99, retry_count=4, retry_delay=1, retry_backoff=2, retry_max_delay=4)
    clock = FakeClock()
    result = await asyncflow.run(cls(), clock=clock, journal=None)
    assert result.status(cls()) is Status.FAILED
    assert clock.sleeps == [1, 2, 4, 4]
    assert result[cls()].attempts == 5


async def test_jitter_spreads_delays_within_bounds() -> None:
    """retry_jitter=0.5 keeps each delay within ±50 % of the backoff value."""
    cls, _ = flaky(99, retry_count=6, retry_delay=10, retry_backoff=1, retry_jitter=0.5)
    clock = FakeClock()
    await asyncflow.run(cls(), clock=clock, journal=None)
    assert len(clock.sleeps) == 6
    assert all(5 <= d <= 15 for d in clock.sleeps)
    assert len(set(clock.sleeps)) > 1


async def test_run_level_retry_defaults() -> None:
    """run(retry=...) applies to tasks that set no retry attributes of their own."""
    default, default_calls = flaky(1, name="Default")
    explicit, explicit_calls = flaky(1, name="Explicit", retry_count=0)
    result = await asyncflow.run(
        default(),
        explicit(),
        retry=asyncflow.RetryPolicy(count=2),
        clock=FakeClock(),
        journal=None,
    )
    assert result.status(default()) is Status.DONE and len(default_calls) == 2
    assert result.status(explicit()) is Status.FAILED and len(explicit_calls) == 1


class GateClock(FakeClock):
    """Sleeps until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = anyio.Event()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await self.gate.wait()


async def test_waiting_for_a_retry_holds_no_worker_or_resources() -> None:
    """Between attempts a task holds no worker and no resources: others run meanwhile."""
    clock = GateClock()
    order: list[str] = []

    class Retrying(asyncflow.Task):
        resources = {"db": 1}
        retry_count = 1
        retry_delay = 5

        async def run(self) -> None:
            order.append("retrying")
            if len(order) == 1:
                raise ConnectionError("first attempt fails")

    class Other(asyncflow.Task):
        resources = {"db": 1}
        priority = -1

        async def run(self) -> None:
            order.append("other")
            clock.gate.set()

    with anyio.fail_after(5):
        result = await asyncflow.run(
            Retrying(), Other(), workers=1, resources={"db": 1}, clock=clock, journal=None
        )
    assert result.ok
    assert order == ["retrying", "other", "retrying"]


async def test_timeout_of_an_async_body() -> None:
    """An attempt over its timeout is cancelled, reported TIMEOUT, and retried."""

    class Slow(asyncflow.Task):
        timeout = 0.05
        retry_count = 1

        async def run(self) -> None:
            await anyio.sleep_forever()

    recorder = EventRecorder()
    with anyio.fail_after(5):
        result = await asyncflow.run(Slow(), handlers=[recorder], clock=FakeClock(), journal=None)
    assert result.status(Slow()) is Status.FAILED
    error = result.error(Slow())
    assert isinstance(error, asyncflow.TaskTimeout) and isinstance(error, TimeoutError)
    assert "timed out after 0.05 s" in str(error) and Slow().task_id in str(error)
    assert recorder.kinds(Slow()) == [
        Event.START,
        Event.TIMEOUT,
        Event.RETRY,
        Event.START,
        Event.TIMEOUT,
        Event.FAILURE,
    ]
    assert all(a.timed_out for a in result[Slow()].history)


async def test_timeout_of_a_sync_body_discards_its_late_write(tmp_path: Path) -> None:
    """A timed-out thread is abandoned; its output write is not committed later."""
    release = threading.Event()
    finished = threading.Event()
    path = tmp_path / "late.txt"
    late_error: list[BaseException] = []

    class Blocking(asyncflow.Task):
        timeout = 0.05

        def output(self) -> LocalTarget:
            return LocalTarget(path)

        def run(self) -> None:
            try:
                with self.output().open("w") as f:
                    f.write("too late")
                    release.wait(10)
            except BaseException as exc:
                late_error.append(exc)
            finally:
                finished.set()

    with anyio.fail_after(5):
        result = await asyncflow.run(Blocking(), journal=None)
    assert isinstance(result.error(Blocking()), asyncflow.TaskTimeout)
    release.set()
    assert await anyio.to_thread.run_sync(finished.wait, 10)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []
    assert late_error and "not committed" in str(late_error[0])


async def test_fail_fast_waits_for_retries_then_cancels_siblings() -> None:
    """keep_going=False stops the run only once a task failed after its retries."""
    cls, calls = flaky(99, retry_count=2)

    class Sibling(asyncflow.Task):
        async def run(self) -> None:
            await anyio.sleep_forever()

    with anyio.fail_after(5):
        result = await asyncflow.run(
            cls(), Sibling(), workers=2, keep_going=False, clock=FakeClock(), journal=None
        )
    assert len(calls) == 3
    assert result.status(cls()) is Status.FAILED
    assert result.status(Sibling()) is Status.CANCELLED


async def test_event_order_for_a_retried_task() -> None:
    """A retried task emits START, RETRY, START, SUCCESS, PROCESSING_TIME."""
    cls, _ = flaky(1, retry_count=1)
    recorder = EventRecorder()
    await asyncflow.run(cls(), handlers=[recorder], clock=FakeClock(), journal=None)
    events = recorder.of(cls())
    assert [e.kind for e in events] == [
        Event.START,
        Event.RETRY,
        Event.START,
        Event.SUCCESS,
        Event.PROCESSING_TIME,
    ]
    assert [e.attempt for e in events] == [1, 1, 2, 2, 2]
    assert isinstance(events[1].error, ConnectionError)


async def test_hooks_called_once_after_the_final_outcome() -> None:
    """on_success/on_failure run once, after retries; a raising hook is only logged."""
    calls: list[str] = []

    class Good(asyncflow.Task):
        retry_count = 1
        attempts = 0

        async def run(self) -> None:
            Good.attempts += 1
            if Good.attempts == 1:
                raise ConnectionError("once")

        def on_success(self) -> None:
            calls.append("success")

    class Bad(asyncflow.Task):
        async def run(self) -> None:
            raise ValueError("bad")

        async def on_failure(self, exception: BaseException) -> None:
            calls.append(f"failure:{exception}")
            raise RuntimeError("hook bug")

    with structlog.testing.capture_logs() as logs:
        await asyncflow.run(Good(), Bad(), clock=FakeClock(), journal=None)
    assert sorted(calls) == ["failure:bad", "success"]
    assert any(e["event"] == "task.hook_failed" for e in logs)


def test_bad_retry_attributes_fail_at_definition() -> None:
    """Nonsense retry settings fail when the class is defined."""
    with pytest.raises(TypeError, match="retry_on must be a tuple"):
        type("Bad", (asyncflow.Task,), {"retry_on": ValueError})
    with pytest.raises(TypeError, match="retry_backoff must be >= 1"):
        type("Bad", (asyncflow.Task,), {"retry_backoff": 0.5})


def test_retry_policy_validates() -> None:
    """RetryPolicy refuses negative counts and out-of-range jitter."""
    with pytest.raises(ValueError, match="jitter"):
        asyncflow.RetryPolicy(jitter=2)
    with pytest.raises(ValueError, match=">= 0"):
        asyncflow.RetryPolicy(count=-1)


async def test_decorator_retry_keywords() -> None:
    """@task(retry_count=..., retry_delay=...) retries like the class attributes."""
    attempts: list[int] = []

    @asyncflow.task(retry_count=2, retry_delay=3)
    async def sometimes() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("again")

    clock = FakeClock()
    result = await asyncflow.run(sometimes(), clock=clock, journal=None)
    assert result.ok and clock.sleeps == [3, 6]


async def test_timed_out_attempt_releases_its_resources() -> None:
    """A timed-out attempt gives its resources back; the next task gets them."""

    class Stuck(asyncflow.Task):
        resources = {"db": 1}
        timeout = 0.05

        async def run(self) -> None:
            await anyio.sleep_forever()

    class Next(asyncflow.Task):
        resources = {"db": 1}
        priority = -1

        async def run(self) -> None:
            pass

    with anyio.fail_after(5):
        result = await asyncflow.run(Stuck(), Next(), workers=2, resources={"db": 1}, journal=None)
    assert result.status(Stuck()) is Status.FAILED
    assert result.status(Next()) is Status.DONE
    assert result.resources["db"].in_use == 0


@pytest.mark.parametrize(
    "error",
    [
        asyncflow.ParameterError("Report: parameter 'date': expected a date"),
        asyncflow.CycleError(["A_1", "B_2", "A_1"]),
        asyncflow.TaskError("T_1: failed", task_id="T_1"),
        asyncflow.TaskTimeout("T_1", 2.5, 3),
        asyncflow.MissingOutputError("T_1", ["/data/out.csv"]),
        asyncflow.UpstreamFailed("T_2", "T_1", "failed", root="T_0", root_cause="boom"),
        asyncflow.TaskDefinitionError("T_1", "requires", KeyError("x")),
        asyncflow.JournalError("cannot open /tmp/j.db"),
        asyncflow.TargetNotFoundError("/data/in.csv does not exist"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_errors_pickle_whole(error: asyncflow.AsyncflowError) -> None:
    """An asyncflow error sent to another process (a failed run's result, say)
    comes back as itself: same type, message and attributes."""
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)
    assert copy.args == error.args and vars(copy) == vars(error)
