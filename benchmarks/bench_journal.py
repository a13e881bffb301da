"""Cost of the SQLite run journal: recording events, a run with and without it, leases.

    python benchmarks/bench_journal.py                   # N = 10,000 tasks, 1,000 leases
    python benchmarks/bench_journal.py --n 50000 --repeat 7
    python benchmarks/bench_journal.py --pairs 60         # the target alone, many rounds

Cases, each on a fresh journal file, medians over ``--repeat`` rounds:

- **events only**: a loop creating the START and SUCCESS ``TaskEvent`` of N
  tasks, as the executor would (the baseline of the next two);
- **events + record()**: the same loop, each event passed to
  ``Journal.record()``; then the final ``flush()`` that writes them all;
- **run** / **run + handler** / **run + journal**: ``asyncflow.run()`` of N
  independent no-op tasks (each commits an empty ``MemoryTarget``),
  ``journal=None``: without handlers; with a handler that does nothing (what
  building and dispatching the events costs by itself); with
  ``handlers=[journal.record]`` plus the final flush. Rounds interleave the
  three, and ratios are medians of per-round ratios, so that a busy machine
  weighs on each case alike (the fastest round of each against the fastest
  of the baseline is shown too). Each timing starts after a garbage
  collection. CPU time (all threads) is shown next to wall time: it is the
  steadier measure of cost on a shared machine. Target: the run with the
  journal at most 1.5x the run without (the verdict lines also list each
  round's ratio, to show the spread);
- **run(journal=path)**: what a user gets, ``asyncflow.run(tasks,
  journal=path)``: the journal opened and closed by the run, the run row, the
  leases (one claim row for the lot, as no other run is going on), attempts
  written in the background;
- **leases**: ``claim()`` + ``release()`` of 1,000 task ids, one at a time
  (a run going on alone: a claim row each).

``--pairs K`` times only the target: K rounds of the run without a journal
followed at once by ``run(journal=path)``, and prints the spread of the K
ratios. On a shared machine whose speed drifts from second to second, many
adjacent pairs say more than a few rounds of every case.
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog

import asyncflow
from asyncflow.events import Event, TaskEvent
from asyncflow.journal import Journal, LeaseOutcome
from asyncflow.targets import MemoryStore, MemoryTarget

RATIO_TARGET = 1.5
RUN_MODES = ("plain", "handler", "journal", "full")


class Noop(asyncflow.Task):
    n = asyncflow.IntParameter()
    store: MemoryStore = MemoryStore()

    def output(self) -> MemoryTarget:
        return MemoryTarget(self.task_id, store=self.store)

    async def run(self) -> None:
        async with self.output().open("wb"):
            pass


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float


class Stopwatch:
    """Wall and process CPU time since it was made.

    It first collects the garbage left so far, so that no case pays for the
    objects of the case before it (a run of 10,000 tasks leaves a lot).
    """

    def __init__(self) -> None:
        gc.collect()
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def read(self) -> Timing:
        return Timing(time.perf_counter() - self._wall, time.process_time() - self._cpu)


def events_only(tasks: Sequence[Noop]) -> Timing:
    watch = Stopwatch()
    for task in tasks:
        TaskEvent(Event.START, task, "bench")
        TaskEvent(Event.SUCCESS, task, "bench")
    return watch.read()


async def events_journaled(tasks: Sequence[Noop], folder: Path) -> tuple[Timing, Timing]:
    """Timings of the recording loop and of the final flush."""
    async with Journal.open(folder / "journal.db") as journal:
        await journal.begin_run("bench")
        watch = Stopwatch()
        for task in tasks:
            journal.record(TaskEvent(Event.START, task, "bench"))
            journal.record(TaskEvent(Event.SUCCESS, task, "bench"))
        recorded = watch.read()
        watch = Stopwatch()
        await journal.flush()
        flushed = watch.read()
        assert len(await journal.succeeded(t.task_id for t in tasks)) == len(tasks)
    return recorded, flushed


async def run_tasks(n: int, folder: Path, mode: str) -> Timing:
    """One ``asyncflow.run()`` of ``n`` no-op tasks; ``mode`` is one of RUN_MODES."""
    Noop.store = MemoryStore()
    tasks = [Noop(n=i) for i in range(n)]
    if mode in ("plain", "handler"):
        watch = Stopwatch()
        result = await asyncflow.run(
            tasks, journal=None, handlers=[] if mode == "plain" else [_ignore]
        )
        timing = watch.read()
        assert result.ok
        return timing
    if mode == "full":
        watch = Stopwatch()
        result = await asyncflow.run(tasks, journal=folder / "journal.db")
        timing = watch.read()
        assert result.ok
        async with Journal.open(folder / "journal.db") as journal:
            assert len(await journal.succeeded(t.task_id for t in tasks)) == n
        return timing
    async with Journal.open(folder / "journal.db") as journal:
        watch = Stopwatch()
        result = await asyncflow.run(tasks, journal=None, handlers=[journal.record])
        await journal.flush()
        timing = watch.read()
        assert result.ok
        assert len(await journal.succeeded(t.task_id for t in tasks)) == n
    return timing


def _ignore(event: TaskEvent) -> None:
    """A handler that does nothing: what the event bus costs by itself."""


async def leases(count: int, folder: Path) -> Timing:
    async with Journal.open(folder / "journal.db") as journal:
        await journal.begin_run("bench")
        watch = Stopwatch()
        for i in range(count):
            claim = await journal.claim("bench", [f"task-{i}"], since=0.0)
            assert claim.taken == [f"task-{i}"]
            await journal.release(f"task-{i}", "bench", LeaseOutcome.SUCCESS)
        return watch.read()


def median(timings: Sequence[Timing]) -> Timing:
    return Timing(
        statistics.median(t.wall for t in timings), statistics.median(t.cpu for t in timings)
    )


def ratio(numerators: Sequence[Timing], denominators: Sequence[Timing]) -> Timing:
    pairs = list(zip(numerators, denominators, strict=True))
    return Timing(
        statistics.median(a.wall / b.wall for a, b in pairs),
        statistics.median(a.cpu / b.cpu for a, b in pairs),
    )


async def main(n: int, lease_count: int, repeat: int) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    tasks = [Noop(n=i) for i in range(n)]
    baseline = [events_only(tasks) for _ in range(repeat)]
    recorded: list[Timing] = []
    flushed: list[Timing] = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="bench-journal-") as folder:
            rec, flush = await events_journaled(tasks, Path(folder))
        recorded.append(rec)
        flushed.append(flush)
    runs: dict[str, list[Timing]] = {mode: [] for mode in RUN_MODES}
    for _ in range(repeat):
        for mode in RUN_MODES:
            with tempfile.TemporaryDirectory(prefix="bench-journal-") as folder:
                runs[mode].append(await run_tasks(n, Path(folder), mode))
    lease_timings = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="bench-journal-") as folder:
            lease_timings.append(await leases(lease_count, Path(folder)))

    total = [Timing(r.wall + f.wall, r.cpu + f.cpu) for r, f in zip(recorded, flushed, strict=True)]
    rows: list[tuple[str, Timing, Timing | None]] = [
        ("events only (baseline)", median(baseline), None),
        ("events + record()", median(recorded), ratio(recorded, baseline)),
        ("final flush()", median(flushed), None),
        ("events + record() + flush()", median(total), ratio(total, baseline)),
        ("run, journal=None", median(runs["plain"]), None),
        (
            "run + do-nothing handler",
            median(runs["handler"]),
            ratio(runs["handler"], runs["plain"]),
        ),
        (
            "run + journal (record + flush)",
            median(runs["journal"]),
            ratio(runs["journal"], runs["plain"]),
        ),
        (
            "run(journal=path): + leases",
            median(runs["full"]),
            ratio(runs["full"], runs["plain"]),
        ),
    ]
    print(f"N = {n:,} no-op tasks (START + SUCCESS each), median of {repeat} rounds")
    print(
        f"{'case':<32}{'wall s':>9}{'us/task':>9}{'ratio':>8}{'cpu s':>9}{'us/task':>9}{'ratio':>8}"
    )
    for name, timing, against in rows:
        wall_ratio = f"{against.wall:>7.2f}x" if against else " " * 8
        cpu_ratio = f"{against.cpu:>7.2f}x" if against else ""
        print(
            f"{name:<32}{timing.wall:>9.4f}{timing.wall / n * 1e6:>9.2f}{wall_ratio}"
            f"{timing.cpu:>9.4f}{timing.cpu / n * 1e6:>9.2f}{cpu_ratio}"
        )
    for case, label in (("journal", "run + journal"), ("full", "run(journal=path)")):
        journal_ratio = ratio(runs[case], runs["plain"])
        pairs = list(zip(runs[case], runs["plain"], strict=True))
        for measure, value in (("wall", journal_ratio.wall), ("cpu", journal_ratio.cpu)):
            verdict = "met" if value <= RATIO_TARGET else "MISSED"
            rounds = " ".join(f"{getattr(a, measure) / getattr(b, measure):.2f}" for a, b in pairs)
            best = min(getattr(a, measure) for a in runs[case]) / min(
                getattr(b, measure) for b in runs["plain"]
            )
            print(
                f"{label} <= {RATIO_TARGET}x the run ({measure}): {value:.2f}x, {verdict}"
                f" (rounds: {rounds}; fastest against fastest: {best:.2f}x)"
            )
    lease = median(lease_timings)
    print(
        f"leases: {lease_count:,} x claim + release: {lease.wall:.3f} s wall "
        f"({lease.wall / lease_count * 1e6:.0f} us/task), {lease.cpu:.3f} s cpu"
    )


async def pairs(n: int, count: int) -> None:
    """The target alone: ``count`` adjacent pairs of runs without and with the journal."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    plain: list[Timing] = []
    full: list[Timing] = []
    for _ in range(count):
        for mode, timings in (("plain", plain), ("full", full)):
            with tempfile.TemporaryDirectory(prefix="bench-journal-") as folder:
                timings.append(await run_tasks(n, Path(folder), mode))
    ratios = [f.wall / p.wall for p, f in zip(plain, full, strict=True)]
    low, middle, high = statistics.quantiles(ratios, n=4)
    verdict = "met" if middle <= RATIO_TARGET else "MISSED"
    print(f"N = {n:,} no-op tasks, {count} pairs: run, journal=None then run(journal=path)")
    print(
        f"wall: run {median(plain).wall * 1000:.1f} ms, run(journal=path) "
        f"{median(full).wall * 1000:.1f} ms (medians)"
    )
    print(
        f"run(journal=path) <= {RATIO_TARGET}x the run (wall): median of pair ratios "
        f"{middle:.2f}x, {verdict} (quartiles {low:.2f}-{high:.2f}; "
        f"lowest {min(ratios):.2f}, highest {max(ratios):.2f})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="tasks (default 10,000)")
    parser.add_argument("--leases", type=int, default=1_000, help="leases (default 1,000)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds per case (default 5)")
    parser.add_argument(
        "--pairs", type=int, default=0, help="time only the target, over this many pairs"
    )
    args = parser.parse_args()
    if args.pairs:
        anyio.run(pairs, args.n, args.pairs)
    else:
        anyio.run(main, args.n, args.leases, args.repeat)
