"""Start-up: ``import asyncflow`` and ``asyncflow run`` of a one-task pipeline.

    python benchmarks/bench_startup.py [--rounds 11] [--baseline-src DIR]

Each round runs every case once in a fresh interpreter (wall time from this
process, around the child): ``python -c pass``, ``import asyncflow``, and
``python -m asyncflow run one:One`` (a task with a no-op body, the default
journal in a fresh folder). With ``--baseline-src`` each asyncflow case also
runs with that ``src`` folder first on ``PYTHONPATH``, in the same rounds.
Prints the median and min-max of each case.

Whether the interpreter may write bytecode caches matters: with
``PYTHONDONTWRITEBYTECODE=1`` every module is compiled from source at each
start, as an installed package never is.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PIPELINE = """import asyncflow


class One(asyncflow.Task):
    async def run(self) -> None:
        pass
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--baseline-src", help="another version's src folder, run beside")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="asyncflow-startup-"))
    (folder / "one.py").write_text(PIPELINE)
    python = sys.executable
    cases: dict[str, tuple[list[str], str | None]] = {
        "python -c pass": ([python, "-c", "pass"], None),
        "import asyncflow": ([python, "-c", "import asyncflow"], None),
        "asyncflow run one:One": ([python, "-m", "asyncflow", "run", "one:One"], None),
    }
    if args.baseline_src:
        for name in ("import asyncflow", "asyncflow run one:One"):
            cases[f"{name} @base"] = (cases[name][0], args.baseline_src)
    times: dict[str, list[float]] = {name: [] for name in cases}
    try:
        for _ in range(args.rounds):
            for name, (command, src) in cases.items():
                path = [str(folder), *([src] if src else []), os.environ.get("PYTHONPATH", "")]
                env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p))
                shutil.rmtree(folder / ".asyncflow", ignore_errors=True)
                start = time.perf_counter()
                subprocess.run(command, cwd=folder, env=env, check=True, capture_output=True)
                times[name].append(time.perf_counter() - start)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    cache = "off" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "on"
    print(f"{args.rounds} rounds, bytecode caching {cache}\n")
    print("| case | wall s (median) | min-max |")
    print("|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.3f} | {min(values):.3f}-{max(values):.3f} |")


if __name__ == "__main__":
    main()
