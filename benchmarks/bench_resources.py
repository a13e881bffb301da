"""Overhead of resource pools: 10,000 no-op tasks holding a resource of capacity 8.

    python benchmarks/bench_resources.py [--n 10000] [--repeat 5]

Prints the median wall time of ``asyncflow.run`` with every task holding
``{"slot": 1}`` of a pool of capacity 8, next to the same run without
resources, and their ratio (target: at most 1.5x).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time

import structlog

import asyncflow
from asyncflow.targets import MemoryStore, MemoryTarget


def make_tasks(n: int, with_resources: bool) -> list[asyncflow.Task]:
    store = MemoryStore()

    class Leaf(asyncflow.Task):
        i = asyncflow.IntParameter()
        resources = {"slot": 1} if with_resources else {}

        def output(self) -> MemoryTarget:
            return MemoryTarget(f"leaf/{self.i}", store=store)

        async def run(self) -> None:
            await self.output().write_bytes(b"")

    return [Leaf(i) for i in range(n)]


async def once(n: int, with_resources: bool) -> float:
    tasks = make_tasks(n, with_resources)
    resources = {"slot": 8} if with_resources else None
    start = time.perf_counter()
    result = await asyncflow.run(tasks, workers=8, resources=resources, journal=None)
    elapsed = time.perf_counter() - start
    assert result.ok and len(result) == n
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    plain: list[float] = []
    pooled: list[float] = []
    for _ in range(args.repeat):  # alternate, so machine noise hits both alike
        plain.append(asyncio.run(once(args.n, False)))
        pooled.append(asyncio.run(once(args.n, True)))
    a, b = statistics.median(plain), statistics.median(pooled)
    print("| case | N | median s | µs/task |\n|---|---|---|---|")
    print(f"| no resources | {args.n:,} | {a:.3f} | {a / args.n * 1e6:.1f} |")
    print(f"| slot=1 of capacity 8 | {args.n:,} | {b:.3f} | {b / args.n * 1e6:.1f} |")
    print(f"\nratio with/without: {b / a:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
