"""asyncflow as users run it, beside the asyncio floors (and Dask, Luigi when installed).

    python benchmarks/compare.py                                  # N = 10,000; 5 rounds
    python benchmarks/compare.py --n 10000 100000 --rounds 3
    python benchmarks/compare.py --n 1000000 --shapes wide --systems asyncflow asyncflow-again
    python benchmarks/compare.py --systems asyncflow floor --baseline-src /path/to/other/src

Every case runs in a fresh child process, so its peak memory is its own. A round
runs every system once, in an order that rotates from round to round, so the
shared machine's drift hits every system alike; the ratio column is the median
of the per-round ratios to ``floor`` (one asyncio Task + Event per node), with
their min-max. See ``benchmarks/README.md`` for what each system is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dag import LAYERS, SHAPES, dependencies, environment, lattice_width, shape_tasks

SCRIPT = Path(__file__).resolve()
REFERENCE = "floor"

SYSTEMS: dict[str, str] = {
    "floor": "one asyncio.Task per node awaiting its dependencies' asyncio.Events",
    "floor-workers8": "8 worker coroutines, a queue of ready nodes, dependency counters",
    "floor-tasks": "the least an engine with asyncflow's API does: requires() builds the "
    "tasks, each distinct task's id is made, floor-workers8 awaits their bodies",
    "asyncflow": "asyncflow.run() as a library user calls it: default journal, no logging set-up",
    "asyncflow-again": "a second run() over the journal the first left: everything complete",
    "asyncflow-nojournal": "asyncflow.run(..., journal=None)",
    "asyncflow-progress": "asyncflow.run(..., journal=None, progress=True) drawing to a sink",
    "dask-sync": "dask.get on a dict graph (the synchronous scheduler)",
    "luigi": "luigi.build(local_scheduler=True, workers=1), in-memory complete() flags",
}
DEFAULT_SYSTEMS = ("floor", "floor-workers8", "asyncflow", "asyncflow-nojournal", "dask-sync")
LUIGI_MAX_N = 2_000  # Luigi's scheduler is quadratic: 10,000 tasks take many minutes


# --------------------------------------------------------------------------- children


async def _floor(shape: str, n: int) -> tuple[float, float]:
    ran = [0]

    async def node(index: int, deps: tuple[int, ...], events: list[asyncio.Event]) -> None:
        for dep in deps:
            await events[dep].wait()
        ran[0] += 1
        events[index].set()

    start, cpu = time.perf_counter(), time.process_time()
    graph = dependencies(shape, n)
    events = [asyncio.Event() for _ in range(n)]
    async with asyncio.TaskGroup() as group:
        for index, deps in enumerate(graph):
            group.create_task(node(index, deps, events))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert ran[0] == n, f"floor ran {ran[0]} of {n}"
    return wall, cpu


async def _in_order(
    graph: Sequence[Sequence[int]], body: Callable[[int], Awaitable[None]] | None, workers: int
) -> int:
    """Run the nodes of ``graph`` (each node's dependencies) in dependency order:
    ``workers`` coroutines, a queue of ready nodes, dependency counters; each
    node's ``body`` awaited, if any. Returns how many nodes ran."""
    n = len(graph)
    ran = 0
    waiting = [len(deps) for deps in graph]
    dependents: list[list[int]] = [[] for _ in range(n)]
    for index, deps in enumerate(graph):
        for dep in deps:
            dependents[dep].append(index)
    ready: asyncio.Queue[int | None] = asyncio.Queue()
    for index, count in enumerate(waiting):
        if not count:
            ready.put_nowait(index)

    async def worker() -> None:
        nonlocal ran
        while (index := await ready.get()) is not None:
            if body is not None:
                await body(index)
            ran += 1
            for after in dependents[index]:
                waiting[after] -= 1
                if not waiting[after]:
                    ready.put_nowait(after)
            if ran == n:
                for _ in range(workers):
                    ready.put_nowait(None)

    async with asyncio.TaskGroup() as group:
        for _ in range(workers):
            group.create_task(worker())
    return ran


async def _floor_workers(shape: str, n: int, workers: int = 8) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    ran = await _in_order(dependencies(shape, n), None, workers)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert ran == n, f"floor-workers8 ran {ran} of {n}"
    return wall, cpu


async def _floor_tasks(shape: str, n: int, workers: int = 8) -> tuple[float, float]:
    """The least any engine with asyncflow's API does: the requested tasks'
    ``requires()`` build the graph's tasks, each distinct task gets its id, and
    ``floor-workers8``'s ready queue awaits their (no-op) bodies in order."""
    import asyncflow

    ran = [0]
    roots = _asyncflow_roots(shape, n, ran)
    start, cpu = time.perf_counter(), time.process_time()
    index: dict[Any, int] = {}  # by the parameter values (a copy's id is never made)
    tasks: list[Any] = []
    ids: list[str] = []
    deps: list[list[int]] = []
    unvisited: list[int] = []

    def add(task: Any) -> int:
        at = index.get(task._key)
        if at is None:
            at = index[task._key] = len(tasks)
            tasks.append(task)
            ids.append(task.task_id)
            deps.append([])
            unvisited.append(at)
        return at

    for root in roots:
        add(root)
    while unvisited:
        at = unvisited.pop()
        required = tasks[at].requires()
        if isinstance(required, asyncflow.Task):
            required = [required]
        deps[at] = [add(task) for task in required or ()]

    async def body(at: int) -> None:
        await tasks[at].run()

    await _in_order(deps, body, workers)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert ran[0] == n == len(ids), f"floor-tasks ran {ran[0]} of {n}"
    return wall, cpu


def _asyncflow_roots(shape: str, n: int, ran: list[int]) -> list[Any]:
    """No-op tasks without outputs: complete once the journal holds their success."""
    import asyncflow

    class _NoOp(asyncflow.Task):
        async def run(self) -> None:
            ran[0] += 1

    return shape_tasks(shape, n, _NoOp)


class _Sink:
    """A terminal-like stream that forgets what it is given (the progress display's)."""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


async def _asyncflow(system: str, shape: str, n: int) -> tuple[float, float]:
    import asyncflow

    options: dict[str, Any] = {}
    if system != "asyncflow" and system != "asyncflow-again":
        options["journal"] = None
    if system == "asyncflow-progress":
        from asyncflow.progress import Progress

        options["progress"] = Progress(_Sink(), mode="live")  # type: ignore[arg-type]
    # The default journal is .asyncflow/journal.db under the working directory.
    folder = tempfile.mkdtemp(prefix="asyncflow-compare-")
    os.chdir(folder)
    try:
        # A first tiny run imports anyio's backend (and, with progress, rich's
        # modules: about 20 ms): one-off costs, not per task.
        await asyncflow.run(*_asyncflow_roots("chain", 10, [0]), **{**options, "journal": None})
        ran = [0]
        roots = _asyncflow_roots(shape, n, ran)
        if system == "asyncflow-again":
            first = await asyncflow.run(*roots)
            assert first.ok and ran[0] == n, f"first run: {first.counts()}"
            ran[0] = 0
        if _PROFILER is not None:
            _PROFILER.enable()
        start, cpu = time.perf_counter(), time.process_time()
        result = await asyncflow.run(*roots, **options)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        if _PROFILER is not None:
            _PROFILER.disable()
    finally:
        os.chdir("/")
        shutil.rmtree(folder, ignore_errors=True)
    assert result.ok, f"asyncflow run failed: {result.counts()}"
    expected = 0 if system == "asyncflow-again" else n
    assert ran[0] == expected, f"{system} ran {ran[0]} bodies, expected {expected}"
    return wall, cpu


def _dask(shape: str, n: int) -> tuple[float, float]:
    import dask

    ran = [0]

    def noop(*_: Any) -> None:
        ran[0] += 1

    start, cpu = time.perf_counter(), time.process_time()
    deps_of = dependencies(shape, n)
    graph = {f"t{i}": (noop, *(f"t{d}" for d in deps)) for i, deps in enumerate(deps_of)}
    dask.get(graph, list(graph)[-lattice_width(n) if shape == "lattice" else -1 :])
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert ran[0] == n, f"dask ran {ran[0]} of {n}"
    return wall, cpu


def _luigi(shape: str, n: int) -> tuple[float, float]:
    import logging

    import luigi

    logging.getLogger("luigi-interface").setLevel(logging.WARNING)
    graph = dependencies(shape, n)
    done = [False] * n

    class Node(luigi.Task):  # type: ignore[misc]
        i = luigi.IntParameter()

        def requires(self) -> list[Node]:
            return [Node(i=d) for d in graph[self.i]]

        def complete(self) -> bool:
            return done[self.i]

        def run(self) -> None:
            done[self.i] = True

    sinks = [Node(i=i) for i in range(n - (lattice_width(n) if shape == "lattice" else 1), n)]
    start, cpu = time.perf_counter(), time.process_time()
    luigi.build(sinks, local_scheduler=True, workers=1, log_level="WARNING")
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert all(done), f"luigi ran {sum(done)} of {n}"
    return wall, cpu


RUNNERS: dict[str, Callable[[str, str, int], tuple[float, float]]] = {
    "floor": lambda _, shape, n: asyncio.run(_floor(shape, n)),
    "floor-workers8": lambda _, shape, n: asyncio.run(_floor_workers(shape, n)),
    "floor-tasks": lambda _, shape, n: asyncio.run(_floor_tasks(shape, n)),
    "dask-sync": lambda _, shape, n: _dask(shape, n),
    "luigi": lambda _, shape, n: _luigi(shape, n),
}


def run_child(system: str, shape: str, n: int) -> None:
    """Run one case in this process; print one JSON line (wall s, peak RSS MB)."""
    if system.startswith("asyncflow"):
        wall, cpu = asyncio.run(_asyncflow(system, shape, n))
    else:
        wall, cpu = RUNNERS[system](system, shape, n)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"wall": wall, "cpu": cpu, "peak_mb": peak_kb / 1024}), flush=True)


def profile(system: str, shape: str, n: int, sort: str, top: int) -> None:
    """One asyncflow case under cProfile (the timed call only)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    global _PROFILER
    _PROFILER = profiler
    wall, _ = asyncio.run(_asyncflow(system, shape, n))
    print(f"{system} {shape} N={n:,}: {wall:.3f} s under cProfile ({environment()})")
    pstats.Stats(profiler).strip_dirs().sort_stats(sort).print_stats(top)


_PROFILER: Any = None
"""Set by --profile: enabled around the timed run only."""


# --------------------------------------------------------------------------- parent


def _available(system: str) -> bool:
    module = {"dask-sync": "dask", "luigi": "luigi"}.get(system)
    if module is None:
        return True
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _child(system: str, shape: str, n: int, timeout: float, src: str | None) -> dict[str, Any]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    name = system.removesuffix("@base")
    cmd = [sys.executable, str(SCRIPT), "--child", name, shape, str(n)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:g} s"}
    if proc.returncode:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit {proc.returncode}: {tail[:100]}"}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _compile(base: str | None) -> None:
    """Compile both trees' modules to bytecode ahead, as an installed package's are.

    Children import the journal's modules inside the timed run. With
    ``PYTHONDONTWRITEBYTECODE`` set, or a source changed since it was last
    cached, each child would compile them from source (12 ms more than reading
    them from the cache, 5% of a 10,000-task run): figures would depend on the
    caller's environment, and an A/B on which tree had been cached.
    """
    import compileall

    import asyncflow

    for tree in (Path(asyncflow.__file__).parent, base):
        if tree is not None:
            compileall.compile_dir(str(tree), quiet=1)


def _spread(values: Sequence[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def measure(
    systems: Sequence[str], shape: str, n: int, rounds: int, timeout: float, base: str | None
) -> list[list[str]]:
    """``rounds`` rounds of every system, in rotating order; one table row per system."""
    walls: dict[str, list[float]] = {s: [] for s in systems}
    cpus: dict[str, list[float]] = {s: [] for s in systems}
    peaks: dict[str, list[float]] = {s: [] for s in systems}
    ratios: dict[str, list[float]] = {s: [] for s in systems}
    errors: dict[str, str] = {}
    for index in range(rounds):
        order = list(systems[index % len(systems) :]) + list(systems[: index % len(systems)])
        this_round: dict[str, float] = {}
        for system in order:
            if system in errors:
                continue
            print(f"  round {index + 1}: {system} {shape} {n:,}", file=sys.stderr, flush=True)
            src = base if system.endswith("@base") else None
            record = _child(system, shape, n, timeout, src)
            if "error" in record:
                errors[system] = str(record["error"])
                continue
            this_round[system] = record["wall"]
            walls[system].append(record["wall"])
            cpus[system].append(record["cpu"])
            peaks[system].append(record["peak_mb"])
        if REFERENCE in this_round:
            for system, wall in this_round.items():
                ratios[system].append(wall / this_round[REFERENCE])
    rows = []
    for system in systems:
        if system in errors:
            rows.append([shape, f"{n:,}", system, "ERROR: " + errors[system], *[""] * 5])
            continue
        wall = statistics.median(walls[system])
        ratio = _spread(ratios[system], ".2f") if ratios[system] else "-"
        peak = max(peaks[system])
        cpu = statistics.median(cpus[system])
        cells = [_spread(walls[system], ".3f"), f"{wall / n * 1e6:.1f}", ratio, f"{cpu:.3f}"]
        cells.append(f"{peak:.0f}")
        rows.append([shape, f"{n:,}", system, *cells, ""])
    return rows


def per_task_memory(
    rows: list[list[str]], systems: Sequence[str], timeout: float, base: str | None
) -> None:
    """Fill each row's KB/task: (peak at N - peak of the same system at 10 tasks) / N."""
    empty: dict[str, float] = {}
    for system in systems:
        src = base if system.endswith("@base") else None
        record = _child(system, "chain", 10, timeout, src)
        if "peak_mb" in record:
            empty[system] = record["peak_mb"]
    for row in rows:
        system, n = row[2], int(row[1].replace(",", ""))
        if row[7] and system in empty:
            row[8] = f"{(float(row[7]) - empty[system]) * 1024 / n:.2f}"


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--n", nargs="+", type=int, default=[10_000])
    p.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    p.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=None)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per child process")
    p.add_argument(
        "--baseline-src",
        help="also run every asyncflow system with this 'src' folder first on PYTHONPATH "
        "(shown as SYSTEM@base): an A/B of two versions of the code in one sitting",
    )
    p.add_argument(
        "--profile",
        nargs=3,
        metavar=("SYSTEM", "SHAPE", "N"),
        help="run one asyncflow case in this process under cProfile; print the top functions",
    )
    p.add_argument("--sort", default="tottime", help="pstats sort key for --profile")
    p.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    p.add_argument("--child", nargs=3, metavar=("SYSTEM", "SHAPE", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        run_child(args.child[0], args.child[1], int(args.child[2]))
        return
    if args.profile:
        profile(args.profile[0], args.profile[1], int(args.profile[2]), args.sort, args.top)
        return
    # Systems named with --systems run alone (no ratios without the floor among them).
    chosen = args.systems or [s for s in DEFAULT_SYSTEMS if _available(s)]
    if args.baseline_src:
        chosen += [f"{s}@base" for s in chosen if s.startswith("asyncflow")]
    _compile(args.baseline_src)
    print(f"{environment()}, rounds={args.rounds}")
    for name in chosen:
        print(f"- {name}: {SYSTEMS[name.removesuffix('@base')]}")
    header = ["shape", "N", "system", "wall s median (min-max)", "µs/task",
              f"ratio to {REFERENCE} (min-max)", "CPU s", "peak MB", "KB/task"]  # fmt: skip
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for n in args.n:
        for shape in args.shapes:
            if shape == "lattice" and n % LAYERS:
                p.error(f"lattice needs N to be a multiple of {LAYERS}, got {n}")
            systems = [s for s in chosen if s != "luigi" or n <= LUIGI_MAX_N]
            rows = measure(systems, shape, n, args.rounds, args.timeout, args.baseline_src)
            per_task_memory(rows, systems, args.timeout, args.baseline_src)
            table += ["| " + " | ".join(row) + " |" for row in rows]
    print()
    print("\n".join(table))


if __name__ == "__main__":
    main()
