"""How long a run keeps the rest of its process waiting: the event loop's longest turns.

    python benchmarks/bench_loop_lag.py                        # 400,000 tasks, wide and lattice
    python benchmarks/bench_loop_lag.py --n 100000 --rounds 3 --baseline-src /path/to/other/src

An application embedding asyncflow (a web service, a notebook's kernel) runs
its own coroutines on the loop a run uses. Beside each run, a coroutine
awaits ``asyncio.sleep(0)`` over and over and times each wait: a wait is a
turn of the loop, so the longest is how long a request to that service could
have waited for nothing. Every case runs in a fresh child process; with
``--baseline-src`` each case runs on that ``src`` folder too, interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dag import LAYERS, SHAPES, environment, shape_tasks

SCRIPT = Path(__file__).resolve()
SLOW_TURN = 0.05  # seconds: a turn this long is counted


async def _measure(shape: str, n: int, journal: bool) -> dict[str, float]:
    import asyncflow

    class NoOp(asyncflow.Task):
        async def run(self) -> None:
            pass

    folder = tempfile.mkdtemp(prefix="asyncflow-lag-")
    os.chdir(folder)
    await asyncflow.run(*shape_tasks("chain", 10, NoOp), journal=None)  # imports, once
    roots = shape_tasks(shape, n, NoOp)
    turns: list[float] = []
    done = False

    async def watch() -> None:
        while not done:
            start = time.perf_counter()
            await asyncio.sleep(0)
            turns.append(time.perf_counter() - start)

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)
    start = time.perf_counter()
    result = await asyncflow.run(*roots, **({} if journal else {"journal": None}))
    wall = time.perf_counter() - start
    done = True
    await watcher
    assert result.ok, result.counts()
    turns.sort()
    return {
        "wall": wall,
        "longest": turns[-1],
        "p99": turns[int(len(turns) * 0.99)],
        "slow": float(sum(1 for t in turns if t >= SLOW_TURN)),
    }


def _child(shape: str, n: int, journal: bool, src: str | None) -> dict[str, float]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, str(SCRIPT), "--child", shape, str(n), "on" if journal else "off"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--n", nargs="+", type=int, default=[400_000])
    p.add_argument("--shapes", nargs="+", choices=SHAPES, default=["wide", "lattice"])
    p.add_argument("--journal", nargs="+", choices=["on", "off"], default=["off", "on"])
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--baseline-src", help="also run each case with this 'src' folder (as @base)")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        shape, n, journal = args.child
        print(json.dumps(asyncio.run(_measure(shape, int(n), journal == "on"))))
        return
    trees: list[tuple[str, str | None]] = [("", None)]
    if args.baseline_src:
        trees.append(("@base", args.baseline_src))
    print(f"{environment()}, rounds={args.rounds}")
    header = "| shape | N | journal | code | run s | longest turn ms | p99 ms | turns >= 50 ms |"
    table = [header, "|" + "---|" * 8]
    for n in args.n:
        for shape in args.shapes:
            if shape == "lattice" and n % LAYERS:
                p.error(f"lattice needs N to be a multiple of {LAYERS}, got {n}")
            for journal in args.journal:
                found: dict[str, list[dict[str, float]]] = {name: [] for name, _ in trees}
                for _ in range(args.rounds):
                    for name, src in trees:
                        print(f"  {shape} {n:,} journal {journal}{name}", file=sys.stderr)
                        found[name].append(_child(shape, n, journal == "on", src))
                for name, _ in trees:
                    table.append(_row(shape, n, journal, name or "this", found[name]))
    print()
    print("\n".join(table))


def _row(shape: str, n: int, journal: str, name: str, runs: list[dict[str, Any]]) -> str:
    def median(key: str, scale: float = 1.0, fmt: str = ".0f") -> str:
        return f"{statistics.median(r[key] for r in runs) * scale:{fmt}}"

    return (
        f"| {shape} | {n:,} | {journal} | {name} | {median('wall', fmt='.2f')} | "
        f"{median('longest', 1000)} | {median('p99', 1000, '.1f')} | {median('slow')} |"
    )


if __name__ == "__main__":
    main()
