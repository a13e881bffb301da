"""Scheduling overhead of asyncflow on no-op DAGs, against a bare-asyncio floor.

Every (shape, N) case runs in a fresh child process, once for asyncflow and once
for the floor (one ``asyncio.Task`` per node waiting on its dependencies'
``asyncio.Event``s), so that peak RSS is per case. See ``benchmarks/README.md``.

    python benchmarks/bench_dag.py                       # all shapes, N = 1e3, 1e4, 1e5
    python benchmarks/bench_dag.py --n 1000 10000 --shapes chain lattice --repeat 3
    python benchmarks/bench_dag.py --profile lattice 10000 --sort tottime --top 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHAPES = ("chain", "wide", "lattice")
IMPLS = ("asyncflow", "floor")
DEFAULT_NS = (1_000, 10_000, 100_000)
LAYERS = 10
WORKERS = 8
RATIO_TARGET = 4.0
RATIO_TARGET_MIN_N = 10_000
PEAK_TARGET_MB = 1024.0
PEAK_TARGET_N = 100_000
BODIES = ("open", "write-bytes")
SCRIPT = Path(__file__).resolve()


# --------------------------------------------------------------------------- DAG shapes


def lattice_width(n: int) -> int:
    """Nodes per layer of a lattice of ``n`` tasks (``n`` is a multiple of LAYERS)."""
    return n // LAYERS


def dependencies(shape: str, n: int) -> list[tuple[int, ...]]:
    """Dependency indices of every node of the DAG, for the floor baseline.

    Node numbering: chain 0..n-1 (node i needs i-1); wide leaves 0..n-2 and the
    root n-1; lattice node j of layer k is ``k * W + j``.
    """
    if shape == "chain":
        return [()] + [(i - 1,) for i in range(1, n)]
    if shape == "wide":
        return [()] * (n - 1) + [tuple(range(n - 1))]
    width = lattice_width(n)
    deps: list[tuple[int, ...]] = [()] * width
    for k in range(1, LAYERS):
        base = (k - 1) * width
        for j in range(width):
            deps.append(tuple(sorted({base + j, base + (j + 1) % width})))
    return deps


def shape_tasks(shape: str, n: int, base: type[Any]) -> list[Any]:
    """The asyncflow tasks to request for ``shape`` with ``n`` tasks in all, of
    classes derived from ``base`` (an ``asyncflow.Task`` giving the body, and the
    output if any)."""
    import asyncflow

    class ChainNode(base):
        i = asyncflow.IntParameter()

        def requires(self) -> Any:
            return ChainNode(i=self.i - 1) if self.i > 0 else None

    class WideLeaf(base):
        i = asyncflow.IntParameter()

    class WideRoot(base):
        n = asyncflow.IntParameter()

        def requires(self) -> Any:
            return [WideLeaf(i=i) for i in range(self.n - 1)]

    class LatticeNode(base):
        k = asyncflow.IntParameter()
        j = asyncflow.IntParameter()
        width = asyncflow.IntParameter()

        def requires(self) -> Any:
            if self.k == 0:
                return None
            js = sorted({self.j, (self.j + 1) % self.width})
            return [LatticeNode(k=self.k - 1, j=j, width=self.width) for j in js]

    if shape == "chain":
        return [ChainNode(i=n - 1)]
    if shape == "wide":
        return [WideRoot(n=n)]
    width = lattice_width(n)
    return [LatticeNode(k=LAYERS - 1, j=j, width=width) for j in range(width)]


# --------------------------------------------------------------------------- child: floor


class _Tally:
    """Counts task bodies that ran."""

    runs: int = 0


async def _floor_node(
    index: int, deps: tuple[int, ...], events: list[asyncio.Event], tally: _Tally
) -> None:
    for dep in deps:
        await events[dep].wait()
    tally.runs += 1
    events[index].set()


async def _floor_case(shape: str, n: int, *, warm_up: bool = True) -> float:
    if warm_up:  # the same tiny warm-up as the asyncflow side gets
        await _floor_case("chain", 10, warm_up=False)
    tally = _Tally()
    start = time.perf_counter()
    graph = dependencies(shape, n)
    events = [asyncio.Event() for _ in range(n)]
    async with asyncio.TaskGroup() as group:
        for index, deps in enumerate(graph):
            group.create_task(_floor_node(index, deps, events, tally))
    wall = time.perf_counter() - start
    assert tally.runs == n, f"floor ran {tally.runs} bodies, expected {n}"
    return wall


# --------------------------------------------------------------------------- child: asyncflow


def _quiet_logging() -> None:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def _asyncflow_sinks(shape: str, n: int, tally: _Tally, body: str) -> list[Any]:
    """Build the task classes of ``shape`` and return the tasks to request.

    ``body`` "open" commits an empty output with ``async with open("wb")`` (no
    thread hop); "write-bytes" uses ``write_bytes(b"")``, which also pays the
    target's worker-thread round trip.
    """
    import asyncflow
    from asyncflow.targets import MemoryStore, MemoryTarget

    store = MemoryStore()

    class _NoOp(asyncflow.Task):
        def output(self) -> MemoryTarget:
            return MemoryTarget(self.task_id, store=store)

        async def run(self) -> None:
            tally.runs += 1
            if body == "open":
                async with self.output().open("wb"):
                    pass
            else:
                await self.output().write_bytes(b"")

    return shape_tasks(shape, n, _NoOp)


async def _asyncflow_case(shape: str, n: int, body: str) -> float:
    import asyncflow

    # Warm up on a tiny graph first: the first run of a process imports
    # anyio's backend, a one-off cost that is not per task (PERF-ANCHORS
    # likewise measures against an empty-graph engine call).
    await asyncflow.run(*_asyncflow_sinks("chain", 10, _Tally(), body), journal=None)
    tally = _Tally()
    sinks = _asyncflow_sinks(shape, n, tally, body)
    start = time.perf_counter()
    result = await asyncflow.run(*sinks, workers=WORKERS, journal=None)
    wall = time.perf_counter() - start
    assert result.ok, f"asyncflow run failed: {result.counts()}"
    assert tally.runs == n, f"asyncflow ran {tally.runs} bodies, expected {n}"
    done = result.counts().get(asyncflow.Status.DONE, 0)
    assert done == n, f"asyncflow reports {done} done, expected {n}"
    return wall


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**2 if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def run_child(impl: str, shape: str, n: int, body: str) -> None:
    """Run one case in this process and print its result as one JSON line."""
    if impl == "asyncflow":
        _quiet_logging()
        wall = asyncio.run(_asyncflow_case(shape, n, body))
    else:
        wall = asyncio.run(_floor_case(shape, n))
    record = {"impl": impl, "shape": shape, "n": n, "wall": wall, "peak_mb": _peak_rss_mb()}
    print(json.dumps(record), flush=True)


# --------------------------------------------------------------------------- parent


@dataclass
class Measure:
    """Median wall time and peak RSS of one implementation on one case."""

    wall: float
    peak_mb: float


@dataclass(frozen=True)
class Options:
    """How each case is run."""

    repeat: int
    timeout: float
    body: str


@dataclass
class Row:
    shape: str
    n: int
    asyncflow: Measure | str  # a str is an error message
    floor: Measure | str
    ratio: float | None = None  # median of the per-pair ratios


def _parse_child_output(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "wall" in record:
                return record
    raise ValueError("no JSON result line in the child's output")


def _run_once(opts: Options, impl: str, shape: str, n: int) -> dict[str, Any] | str:
    cmd = [sys.executable, str(SCRIPT), "--child", impl, shape, str(n), "--body", opts.body]
    timeout = opts.timeout
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"timeout after {timeout:g}s"
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return f"exit {proc.returncode}: {tail[:120]}"
    try:
        return _parse_child_output(proc.stdout)
    except ValueError as exc:
        return str(exc)


def measure_pairs(opts: Options, shape: str, n: int) -> Row:
    """``opts.repeat`` pairs of fresh processes, asyncflow then floor, alternating.

    Walls are medians, peaks the largest; the ratio is the median of the
    per-pair ratios, so that the machine's drift (large on a shared 2-core
    host) hits both sides of each pair alike.
    """
    walls: dict[str, list[float]] = {"asyncflow": [], "floor": []}
    peaks: dict[str, list[float]] = {"asyncflow": [], "floor": []}
    ratios: list[float] = []
    for _ in range(opts.repeat):
        pair: dict[str, float] = {}
        for impl in ("asyncflow", "floor"):
            record = _run_once(opts, impl, shape, n)
            if isinstance(record, str):
                error = Row(shape, n, record, record)
                return error
            pair[impl] = float(record["wall"])
            walls[impl].append(pair[impl])
            peaks[impl].append(float(record["peak_mb"]))
        ratios.append(pair["asyncflow"] / pair["floor"])
    af, floor = (Measure(statistics.median(walls[k]), max(peaks[k])) for k in walls)
    return Row(shape, n, af, floor, statistics.median(ratios))


def _cells(m: Measure | str, n: int) -> list[str]:
    if isinstance(m, str):
        return ["ERROR", m, "-"]
    return [f"{m.wall:.3f}", f"{m.wall / n * 1e6:.1f}", f"{m.peak_mb:.0f}"]


def _ratio(row: Row) -> float | None:
    return row.ratio


def format_table(rows: Sequence[Row]) -> str:
    header = [
        "shape", "N", "asyncflow s", "asyncflow µs/task", "asyncflow peak MB",
        "floor s", "floor µs/task", "floor peak MB", "ratio (paired median)",
    ]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        ratio = _ratio(row)
        cells = [row.shape, f"{row.n:,}", *_cells(row.asyncflow, row.n)]
        cells += [*_cells(row.floor, row.n), "-" if ratio is None else f"{ratio:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def target_notes(rows: Sequence[Row]) -> list[str]:
    """The targets, with how each measured case compares (informational only)."""
    notes = [
        f"target: asyncflow <= {RATIO_TARGET:g}x floor at N >= {RATIO_TARGET_MIN_N:,}, every shape",
        f"target: asyncflow peak < {PEAK_TARGET_MB:.0f} MB at N = {PEAK_TARGET_N:,}",
    ]
    for row in rows:
        ratio = _ratio(row)
        if row.n >= RATIO_TARGET_MIN_N and ratio is not None:
            verdict = "met" if ratio <= RATIO_TARGET else "MISSED"
            notes.append(f"  {row.shape} {row.n:,}: ratio {ratio:.2f} -> {verdict}")
        if row.n == PEAK_TARGET_N and isinstance(row.asyncflow, Measure):
            peak = row.asyncflow.peak_mb
            verdict = "met" if peak < PEAK_TARGET_MB else "MISSED"
            notes.append(f"  {row.shape} {row.n:,}: peak {peak:.0f} MB -> {verdict}")
    return notes


def environment() -> str:
    return (
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"{os.cpu_count()} CPUs, {platform.platform()}, workers={WORKERS}"
    )


def run_benchmarks(shapes: Sequence[str], ns: Sequence[int], opts: Options) -> None:
    print(f"{environment()}, body={opts.body}, repeat={opts.repeat}", flush=True)
    rows: list[Row] = []
    for n in ns:
        for shape in shapes:
            print(f"running {shape} N={n:,} ...", file=sys.stderr, flush=True)
            rows.append(measure_pairs(opts, shape, n))
    print()
    print(format_table(rows))
    print()
    print("\n".join(target_notes(rows)))


# --------------------------------------------------------------------------- profile


def run_profile(shape: str, n: int, body: str, sort: str, top: int) -> None:
    """One asyncflow case under cProfile; print the ``top`` functions by ``sort``."""
    import cProfile
    import pstats

    _quiet_logging()
    profiler = cProfile.Profile()
    profiler.enable()
    wall = asyncio.run(_asyncflow_case(shape, n, body))
    profiler.disable()
    print(f"asyncflow {shape} N={n:,} body={body}: {wall:.3f}s under cProfile ({environment()})")
    pstats.Stats(profiler).strip_dirs().sort_stats(sort).print_stats(top)


# --------------------------------------------------------------------------- CLI


def _positive(text: str) -> int:
    value = int(text.replace("_", "").replace(",", ""))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--n", nargs="+", type=_positive, default=list(DEFAULT_NS), help="DAG sizes")
    p.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    p.add_argument("--repeat", type=_positive, default=1, help="runs per case (median)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per child process")
    p.add_argument(
        "--body", choices=BODIES, default="open", help="how each no-op task commits its output"
    )
    p.add_argument("--profile", nargs=2, metavar=("SHAPE", "N"), help="profile one case")
    p.add_argument("--sort", default="cumulative", help="pstats sort key for --profile")
    p.add_argument("--top", type=_positive, default=25, help="functions shown by --profile")
    p.add_argument("--child", nargs=3, metavar=("IMPL", "SHAPE", "N"), help=argparse.SUPPRESS)
    return p


def _check_case(p: argparse.ArgumentParser, impl: str, shape: str, n: int) -> None:
    if impl not in IMPLS:
        p.error(f"unknown implementation {impl!r}; choose from {', '.join(IMPLS)}")
    if shape not in SHAPES:
        p.error(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
    if shape == "lattice" and n % LAYERS:
        p.error(f"lattice needs N to be a multiple of {LAYERS}, got {n}")


def main(argv: Sequence[str] | None = None) -> None:
    p = _parser()
    args = p.parse_args(argv)
    if args.child:
        impl, shape, n = args.child[0], args.child[1], _positive(args.child[2])
        _check_case(p, impl, shape, n)
        run_child(impl, shape, n, args.body)
    elif args.profile:
        shape, n = args.profile[0], _positive(args.profile[1])
        _check_case(p, "asyncflow", shape, n)
        run_profile(shape, n, args.body, args.sort, args.top)
    else:
        for shape in args.shapes:
            for n in args.n:
                _check_case(p, "asyncflow", shape, n)
        run_benchmarks(args.shapes, args.n, Options(args.repeat, args.timeout, args.body))


if __name__ == "__main__":
    main()
