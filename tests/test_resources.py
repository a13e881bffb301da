from __future__ import annotations

from collections import defaultdict

import anyio
import anyio.lowlevel
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asyncflow
from asyncflow import Status
from asyncflow.resources import ResourcePool, current_pool

pytestmark = pytest.mark.anyio


class Probe:
    """Counts tasks running at once, per label, from inside run()."""

    def __init__(self) -> None:
        self.running: dict[str, int] = defaultdict(int)
        self.peak: dict[str, int] = defaultdict(int)
        self.order: list[str] = []

    async def hold(self, label: str, name: str, spins: int = 20) -> None:
        self.order.append(name)
        self.running[label] += 1
        self.peak[label] = max(self.peak[label], self.running[label])
        for _ in range(spins):
            await anyio.lowlevel.checkpoint()
        self.running[label] -= 1


def family(name: str, probe: Probe, **attrs: object) -> type[asyncflow.Task]:
    async def run(self: asyncflow.Task) -> None:
        await probe.hold(name, repr(self))

    namespace = {"n": asyncflow.IntParameter(), "run": run, **attrs}
    return type(name, (asyncflow.Task,), namespace)


async def test_seed_numbers_heavy_tasks_peak_at_eight() -> None:
    """24 tasks of 8 GB with 64 GB and 10 workers run exactly 8 at a time."""
    probe = Probe()
    heavy = family("HeavyTransform", probe, resources={"memory_gb": 8})
    result = await asyncflow.run(
        [heavy(i) for i in range(24)], workers=10, resources={"memory_gb": 64}, journal=None
    )
    assert result.ok
    assert probe.peak["HeavyTransform"] == 8
    assert result.resources["memory_gb"].in_use == 0


async def test_max_running_peaks_at_its_limit() -> None:
    """max_running = 2 means no more than two of the family at once, and two do run."""
    probe = Probe()
    export = family("Export", probe, max_running=2)
    result = await asyncflow.run([export(i) for i in range(10)], workers=8, journal=None)
    assert result.ok
    assert probe.peak["Export"] == 2


async def test_max_running_override_per_run() -> None:
    """run(max_running={"Family": n}) overrides the class attribute."""
    probe = Probe()
    export = family("Export", probe, max_running=4)
    await asyncflow.run(
        [export(i) for i in range(10)], workers=8, max_running={"Export": 1}, journal=None
    )
    assert probe.peak["Export"] == 1


async def test_opposite_orders_never_deadlock() -> None:
    """Tasks needing the same two resources (named in opposite orders) all finish."""
    probe = Probe()
    xy = family("XY", probe, resources={"x": 1, "y": 1})
    yx = family("YX", probe, resources={"y": 1, "x": 1})
    tasks = [cls(i) for i in range(10) for cls in (xy, yx)]
    with anyio.fail_after(10):
        result = await asyncflow.run(tasks, workers=8, resources={"x": 1, "y": 1}, journal=None)
    assert result.ok
    assert probe.peak["XY"] + probe.peak["YX"] <= 2
    assert max(probe.peak["XY"], probe.peak["YX"]) == 1


async def test_large_request_is_not_starved_by_small_ones() -> None:
    """A 48-of-64 request behind a stream of 8s starts once 48 are free (head reservation)."""
    probe = Probe()
    small = family("Small", probe, resources={"mem": 8})
    big = family("Big", probe, resources={"mem": 48})
    tasks = [small(i) for i in range(8)] + [big(0)] + [small(i) for i in range(8, 40)]
    result = await asyncflow.run(tasks, workers=20, resources={"mem": 64}, journal=None)
    assert result.ok
    # 8 smalls fill the pool; the big one reserves 48, so no small may start
    # until it has: it is the 9th task to start, not the last.
    assert probe.order.index(repr(big(0))) == 8


async def test_request_over_capacity_fails_before_anything_runs() -> None:
    """Asking for more than the capacity is a ResourceError naming all four facts."""
    probe = Probe()
    greedy = family("Greedy", probe, resources={"memory_gb": 80})
    with pytest.raises(asyncflow.ResourceError) as info:
        await asyncflow.run(greedy(1), resources={"memory_gb": 64}, journal=None)
    message = str(info.value)
    assert greedy(1).task_id in message and "'memory_gb'" in message
    assert "80" in message and "64" in message
    assert probe.order == []


async def test_unconfigured_resource_has_capacity_one_and_warns_once() -> None:
    """A resource with no configured capacity gets 1, with one warning."""
    probe = Probe()
    gpu = family("Gpu", probe, resources={"gpu": 1})
    with structlog.testing.capture_logs() as logs:
        result = await asyncflow.run([gpu(i) for i in range(5)], workers=5, journal=None)
    assert result.ok
    assert probe.peak["Gpu"] == 1
    warnings = [e for e in logs if e["event"] == "resource.default_capacity"]
    assert len(warnings) == 1 and warnings[0]["resource"] == "gpu"


async def test_fractional_amounts() -> None:
    """Two tasks needing 0.5 cpu share a capacity of 1."""
    probe = Probe()
    half = family("Half", probe, resources={"cpu": 0.5})
    result = await asyncflow.run(
        [half(i) for i in range(6)], workers=6, resources={"cpu": 1}, journal=None
    )
    assert result.ok and probe.peak["Half"] == 2


async def test_resources_released_after_failure_and_cancellation() -> None:
    """Failed and cancelled attempts give their resources back."""
    blocker = anyio.Event()

    class Fails(asyncflow.Task):
        resources = {"db": 1}

        async def run(self) -> None:
            raise RuntimeError("broken")

    class Next(asyncflow.Task):
        n = asyncflow.IntParameter()
        resources = {"db": 1}

        async def run(self) -> None:
            blocker.set()

    result = await asyncflow.run(
        Fails(), *[Next(i) for i in range(3)], resources={"db": 1}, journal=None
    )
    assert [result.status(Next(i)) for i in range(3)] == [Status.DONE] * 3
    assert result.resources["db"].in_use == 0

    class Hangs(asyncflow.Task):
        resources = {"db": 1}

        async def run(self) -> None:
            await anyio.sleep_forever()

    class Boom(asyncflow.Task):
        async def run(self) -> None:
            await anyio.lowlevel.checkpoint()
            raise RuntimeError("stop")

    result = await asyncflow.run(
        Hangs(), Boom(), resources={"db": 1}, keep_going=False, journal=None
    )
    assert result.status(Hangs()) is Status.CANCELLED
    assert result.resources["db"].in_use == 0


async def test_decrease_running_resources_lets_others_start() -> None:
    """A task giving back part of its resources lets a waiting task start."""
    other_started = anyio.Event()

    class Phased(asyncflow.Task):
        resources = {"memory_gb": 8}

        async def run(self) -> None:
            self.decrease_running_resources({"memory_gb": 6})
            with anyio.fail_after(5):
                await other_started.wait()

    class Needs6(asyncflow.Task):
        resources = {"memory_gb": 6}
        priority = -1  # ready after Phased started

        async def run(self) -> None:
            other_started.set()

    result = await asyncflow.run(
        Phased(), Needs6(), workers=2, resources={"memory_gb": 8}, journal=None
    )
    assert result.ok


async def test_decrease_running_resources_from_a_sync_body() -> None:
    """A sync run() in its worker thread can give resources back too."""

    class SyncPhased(asyncflow.Task):
        resources = {"memory_gb": 8}

        def run(self) -> None:
            self.decrease_running_resources({"memory_gb": 8})
            stats = anyio.from_thread.run_sync(lambda: current_pool().statistics())  # type: ignore[union-attr]
            assert stats["memory_gb"].in_use == 0

    result = await asyncflow.run(SyncPhased(), resources={"memory_gb": 8}, journal=None)
    assert result.ok, result.summary()


def test_decrease_outside_run_is_an_error() -> None:
    """decrease_running_resources() outside run() says where it works."""

    class T(asyncflow.Task):
        resources = {"memory_gb": 8}

    with pytest.raises(asyncflow.AsyncflowError, match="only inside run"):
        T().decrease_running_resources({"memory_gb": 1})


async def test_statistics_during_a_run() -> None:
    """The pool's statistics show capacity, use and waiting tasks while running."""
    seen: list[tuple[float, float, int]] = []

    class Sample(asyncflow.Task):
        n = asyncflow.IntParameter()
        resources = {"slots": 2}

        async def run(self) -> None:
            for _ in range(3):  # let the other workers try to start theirs
                await anyio.lowlevel.checkpoint()
            pool = current_pool()
            assert pool is not None
            stats = pool.statistics()["slots"]
            seen.append((stats.capacity, stats.in_use, stats.waiting))

    await asyncflow.run(
        [Sample(i) for i in range(4)], workers=4, resources={"slots": 4}, journal=None
    )
    assert seen[0] == (4, 4, 2)  # two running (2 each), two waiting


async def test_priority_lifts_requirements() -> None:
    """A high-priority task's requirement starts before unrelated low-priority work."""
    order: list[str] = []

    def make(name: str, prio: int, needs: list[type[asyncflow.Task]]) -> type[asyncflow.Task]:
        async def run(self: asyncflow.Task) -> None:
            order.append(name)

        def requires(self: asyncflow.Task) -> list[asyncflow.Task]:
            return [cls() for cls in needs]

        return type(name, (asyncflow.Task,), {"priority": prio, "run": run, "requires": requires})

    base = make("Base", 0, [])
    urgent = make("Urgent", 100, [base])
    others = [make(f"Other{i}", 10, [])() for i in range(3)]
    await asyncflow.run(*others, urgent(), workers=1, journal=None)
    assert order[:2] == ["Base", "Urgent"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    capacities=st.fixed_dictionaries(
        {"a": st.integers(2, 6), "b": st.integers(1, 4), "c": st.floats(0.5, 3.0)}
    ),
    families=st.lists(
        st.tuples(
            st.fixed_dictionaries(
                {},
                optional={
                    "a": st.integers(0, 2),
                    "b": st.integers(0, 1),
                    "c": st.sampled_from([0.25, 0.5]),
                },
            ),
            st.one_of(st.none(), st.integers(1, 3)),
            st.integers(1, 6),
            st.integers(-2, 2),
        ),
        min_size=1,
        max_size=4,
    ),
    workers=st.integers(1, 6),
)
def test_property_usage_never_exceeds_capacity(
    capacities: dict[str, float],
    families: list[tuple[dict[str, float], int | None, int, int]],
    workers: int,
) -> None:
    """Random tasks and capacities: in use <= capacity at every instant; all tasks run."""
    usage: dict[str, float] = defaultdict(float)
    running: dict[str, int] = defaultdict(int)
    ran: list[str] = []
    tasks: list[asyncflow.Task] = []
    for index, (request, limit, count, priority) in enumerate(families):
        name = f"F{index}"

        async def run(
            self: asyncflow.Task,
            request: dict[str, float] = request,
            limit: int | None = limit,
            name: str = name,
        ) -> None:
            for key, amount in request.items():
                usage[key] += amount
                assert usage[key] <= capacities[key] + 1e-9, (key, usage[key])
            running[name] += 1
            assert limit is None or running[name] <= limit
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
            running[name] -= 1
            for key, amount in request.items():
                usage[key] -= amount
            ran.append(self.task_id)

        cls = type(
            name,
            (asyncflow.Task,),
            {
                "n": asyncflow.IntParameter(),
                "run": run,
                "resources": request,
                "max_running": limit,
                "priority": priority,
            },
        )
        tasks.extend(cls(i) for i in range(count))
    result = asyncflow.build(tasks, workers=workers, resources=capacities, journal=None)
    assert result.ok
    assert sorted(ran) == sorted(t.task_id for t in tasks)
    assert all(s.in_use == 0 for s in result.resources.values())


def test_pool_statistics_snapshot_is_frozen() -> None:
    """statistics() is a snapshot of frozen records."""
    pool = ResourcePool({"a": 2})
    pool.acquire({"a": 1.5})
    stats = pool.statistics()["a"]
    assert (stats.capacity, stats.in_use, stats.available) == (2, 1.5, 0.5)
    with pytest.raises(AttributeError):
        stats.in_use = 0  # type: ignore[misc]
