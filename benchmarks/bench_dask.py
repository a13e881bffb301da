"""Task bodies on a Dask cluster against worker threads.

    python benchmarks/bench_dask.py [--cpu-tasks 8] [--seconds 1] [--noops 1000] [--repeat 3]

Starts a ``distributed.LocalCluster`` of two worker processes (one thread
each) on 127.0.0.1, then measures, each case ``--repeat`` times (alternating,
so that the shared machine's drift hits both alike), the median wall time of
``asyncflow.run``:

* **CPU-bound**: ``--cpu-tasks`` pure-Python bodies of about ``--seconds``
  each (a loop holding the GIL), in worker threads of this process and on the
  cluster. Threads take them one after the other (the GIL); two worker
  processes should take about half the time. The floor is the same work on a
  ``multiprocessing`` pool of two processes: what the machine gives right now
  (on a machine shared with other jobs, less than two cores).
* **No-op**: ``--noops`` plain ``def run(): pass`` bodies, in threads and on the
  cluster, with 8 and 32 bodies in flight (``workers``): the difference per
  task is what the Dask path costs (a submission, the scheduler, a worker, the
  way back). The floor is Dask alone: as many ``client.submit`` calls of a
  no-op function, as many in flight, each awaited as asyncflow does.

Results go to stdout as a Markdown table; the cluster's start-up time is shown
apart. Logging stays at WARNING.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import time
from collections.abc import Callable

import structlog

import asyncflow
from asyncflow.dask import DaskExecutor


class Spin(asyncflow.Task):
    """``loops`` turns of a pure-Python loop: CPU work holding the GIL."""

    executor = "dask"
    n = asyncflow.IntParameter()
    loops = asyncflow.IntParameter()

    def run(self) -> None:
        spin(self.loops)


class Noop(asyncflow.Task):
    executor = "dask"
    n = asyncflow.IntParameter()

    def run(self) -> None:
        pass


def spin(loops: int) -> int:
    total = 0
    for i in range(loops):
        total += i * i % 7
    return total


def noop(_: int) -> None:
    pass


async def dask_alone(address: str, n: int, in_flight: int) -> float:
    """``n`` no-op Dask tasks, ``in_flight`` at a time, each awaited by a done callback."""
    from distributed import Client

    client = await Client(address, asynchronous=True, set_as_default=False)
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with slots:
            future = client.submit(noop, i, key=f"noop-{i}-{time.time_ns()}", pure=False)
            done = loop.create_future()
            future.add_done_callback(lambda _: loop.call_soon_threadsafe(done.set_result, None))
            await done
            future.release()

    try:
        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return time.perf_counter() - start
    finally:
        await client.close()


def pool_of_two(tasks: int, loops: int) -> float:
    """The CPU-bound work on two processes, without asyncflow or Dask."""
    from multiprocessing import get_context

    with get_context("spawn").Pool(2) as pool:
        pool.map(spin, [1000] * 2)  # both processes up
        start = time.perf_counter()
        pool.map(spin, [loops] * tasks, chunksize=1)
        return time.perf_counter() - start


def loops_for(seconds: float) -> int:
    """How many turns of :func:`spin` take ``seconds`` here (one thread, nothing else)."""
    loops = 200_000
    while True:
        start = time.perf_counter()
        spin(loops)
        took = time.perf_counter() - start
        if took > 0.2:
            return int(loops * seconds / took)
        loops *= 2


async def timed(tasks: list[asyncflow.Task], **options: object) -> float:
    start = time.perf_counter()
    result = await asyncflow.run(tasks, journal=None, **options)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    assert result.ok and len(result) == len(tasks), result.summary()
    return elapsed


def medians(cases: dict[str, Callable[[], float]], repeat: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, case in cases.items():
            times[name].append(case())
    return {name: statistics.median(found) for name, found in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-tasks", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--noops", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    from distributed import LocalCluster

    loops = loops_for(args.seconds)
    start = time.perf_counter()
    with LocalCluster(
        processes=True,
        n_workers=2,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    ) as cluster:
        started = time.perf_counter() - start
        dask = DaskExecutor(cluster)
        spins = [Spin(i, loops) for i in range(args.cpu_tasks)]
        noops = [Noop(i) for i in range(args.noops)]
        # A first run of each kind, untimed: imports, the workers' first unpickling.
        asyncio.run(timed(noops[:10], executor=dask))
        asyncio.run(timed(noops[:10]))
        cpu = medians(
            {
                "threads": lambda: asyncio.run(timed(spins, workers=args.cpu_tasks)),
                "dask": lambda: asyncio.run(timed(spins, workers=args.cpu_tasks, executor=dask)),
                "pool": lambda: pool_of_two(args.cpu_tasks, loops),
            },
            args.repeat,
        )
        cases: dict[str, Callable[[], float]] = {}
        for workers in (8, 32):
            cases[f"threads {workers}"] = lambda w=workers: asyncio.run(timed(noops, workers=w))
            cases[f"dask {workers}"] = lambda w=workers: asyncio.run(
                timed(noops, workers=w, executor=dask)
            )
            cases[f"alone {workers}"] = lambda w=workers: asyncio.run(
                dask_alone(cluster.scheduler_address, args.noops, w)
            )
        noop = medians(cases, args.repeat)
    n = args.noops
    print(
        f"machine: {os.cpu_count()} cores; cluster: 2 worker processes, started in "
        f"{started:.2f} s; median of {args.repeat}\n"
    )
    print(f"CPU-bound: {args.cpu_tasks} tasks of about {args.seconds:g} s each\n")
    print("| where | wall s | vs threads |\n|---|---|---|")
    for name, label in (
        ("threads", "worker threads"),
        ("dask", "Dask, 2 worker processes"),
        ("pool", "floor: multiprocessing pool of 2"),
    ):
        print(f"| {label} | {cpu[name]:.2f} | {cpu[name] / cpu['threads']:.2f} |")
    print(f"\nNo-op: {n:,} tasks, ms per task\n")
    print(
        "| in flight | threads | Dask | Dask minus threads | floor: Dask alone |\n"
        "|---|---|---|---|---|"
    )
    for workers in (8, 32):
        a, b, c = (noop[f"{case} {workers}"] / n * 1e3 for case in ("threads", "dask", "alone"))
        print(f"| {workers} | {a:.3f} | {b:.3f} | {b - a:.3f} | {c:.3f} |")


if __name__ == "__main__":
    main()
