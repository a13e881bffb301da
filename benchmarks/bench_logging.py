"""What logging and the progress display cost: 10,000 no-op tasks.

    python benchmarks/bench_logging.py [--n 10000] [--repeat 11] [--journal]

Each round runs every case once, in a rotating order, in this process
(``workers=8``; ``journal=None``, or with ``--journal`` a fresh journal file
per run, as ``run()`` keeps by default):

* **filtered** (the reference): structlog configured to drop everything below
  WARNING, as the other benchmarks do;
* **default**: no logging set-up at all, as in an application that never
  touched logging (target: at most 1.1x filtered);
* **stdlib INFO**: ``logging.basicConfig(level=INFO)`` into a null stream:
  what showing every task event costs (no target; for reference);
* **no-op subscriber**: default logging plus a handler of START and
  PROCESSING_TIME events that does nothing: what the event bus costs any
  subscriber of those two events (the progress display's floor);
* **progress live**: default logging plus ``progress=Progress(mode="live")``
  drawing into a terminal-like sink at its usual 4 frames a second (target:
  at most 1.05x default);
* **progress lines**: the same with the status-line mode (CI, pipes).

Prints median wall and CPU seconds, CPU µs per task, and each case's ratio
to its reference: the median of the per-round ratios of CPU time (this
process's, all threads: steadier than wall time on a shared machine), with
their min-max spread.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

import asyncflow
from asyncflow.events import handles
from asyncflow.progress import Progress


class Noop(asyncflow.Task):
    i = asyncflow.IntParameter()

    async def run(self) -> None:
        pass


class Terminal(io.StringIO):
    """A sink that says it is a terminal and forgets what it is given."""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)


def unconfigured() -> None:
    structlog.reset_defaults()
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(logging.WARNING)


def filtered() -> None:
    unconfigured()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def stdlib_info() -> None:
    unconfigured()
    logging.basicConfig(level=logging.INFO, stream=io.StringIO())


@handles(asyncflow.Event.START, asyncflow.Event.PROCESSING_TIME)
def noop(event: asyncflow.TaskEvent) -> None:
    pass


# Each case: its logging set-up, and the extra arguments of its runs.
CASES: dict[str, tuple[Callable[[], None], Callable[[], dict[str, Any]]]] = {
    "filtered": (filtered, dict),
    "default": (unconfigured, dict),
    "stdlib INFO": (stdlib_info, dict),
    "no-op subscriber": (unconfigured, lambda: {"handlers": [noop]}),
    "progress live": (unconfigured, lambda: {"progress": Progress(Terminal(), mode="live")}),
    "progress lines": (
        unconfigured,
        lambda: {"progress": Progress(Terminal(), mode="lines", interval=1.0)},
    ),
}
REFERENCE = {
    "default": "filtered",
    "stdlib INFO": "filtered",
    "no-op subscriber": "default",
    "progress live": "default",
    "progress lines": "default",
}
TARGET = {"default": 1.10, "progress live": 1.05, "progress lines": 1.05}


async def once(n: int, extra: dict[str, Any], journal: bool) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``n`` no-op tasks."""
    tasks = [Noop(i) for i in range(n)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "journal.db") if journal else None  # a fresh journal each run
        gc.collect()  # the previous case's garbage is not this one's cost
        start, cpu = time.perf_counter(), time.process_time()
        # An explicit Config: no configuration file read (a thread) in the timing.
        result = await asyncflow.run(
            tasks, workers=8, journal=path, config=asyncflow.Config(), **extra
        )
        elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    assert result.ok and len(result) == n
    return elapsed, used


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument(
        "--journal", action="store_true", help="each run keeps a journal (a fresh SQLite file)"
    )
    args = parser.parse_args()
    names = list(CASES)
    walls: dict[str, list[float]] = {name: [] for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}  # CPU
    for case in names:  # warm-up: imports (rich, anyio's backend) are not per task
        setup, extra = CASES[case]
        setup()
        asyncio.run(once(100, extra(), args.journal))
    for round_ in range(args.repeat):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for case in order:
            setup, extra = CASES[case]
            setup()
            wall, cpu = asyncio.run(once(args.n, extra(), args.journal))
            walls[case].append(wall)
            times[case].append(cpu)
    unconfigured()
    journal = "a fresh SQLite file" if args.journal else "None"
    print(f"{args.n:,} no-op tasks, workers=8, journal={journal}, {args.repeat} rounds\n")
    print("| case | wall s | CPU s | CPU µs/task | CPU ratio (min-max) | vs | target |")
    print("|---|---|---|---|---|---|---|")
    for case in names:
        median = statistics.median(times[case])
        ratio_text = vs = target = ""
        if case in REFERENCE:
            vs = REFERENCE[case]
            ratios = [a / b for a, b in zip(times[case], times[vs], strict=True)]
            ratio_text = f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
            target = f"<= {TARGET[case]:.2f}x" if case in TARGET else ""
        print(
            f"| {case} | {statistics.median(walls[case]):.3f} | {median:.3f} "
            f"| {median / args.n * 1e6:.1f} | {ratio_text} | {vs} "
            f"| {target} |"
        )


if __name__ == "__main__":
    main()
