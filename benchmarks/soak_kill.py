"""Soak test of resume after kill -9: the loop of ``tests/test_resume.py`` over many seeds.

    python benchmarks/soak_kill.py                 # seeds 0..199
    python benchmarks/soak_kill.py --seeds 1000 --first 20

Each seed starts ``asyncflow run`` of a 50-task pipeline (5 layers of 10; each
body appends to a ledger, works a little and commits a JSON output) in a fresh
folder with its own journal, kills it with SIGKILL after a seeded number of
task starts, up to 12 times, then lets a run finish. After that every task
must have succeeded exactly once after its last interruption, every output
must be whole and hold the token of its last start, and no temporary file may
be left. Prints one line per failing seed and a summary; exits 1 on any
failure. Run it from the repository root.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' fixtures

from tests.fixtures.kill_loop import check_resumed, kill_and_resume


def main(first: int, seeds: int) -> int:
    kills: list[int] = []
    failures: list[tuple[int, str]] = []
    began = time.perf_counter()
    for seed in range(first, first + seeds):
        with tempfile.TemporaryDirectory(prefix="soak-kill-") as folder:
            try:
                kills.append(kill_and_resume(Path(folder), seed))
                check_resumed(Path(folder))
            except AssertionError as exc:
                failures.append((seed, str(exc)[:500]))
                print(f"seed {seed}: FAILED: {str(exc)[:500]}", flush=True)
    took = time.perf_counter() - began
    print(
        f"seeds {first}..{first + seeds - 1}: {seeds - len(failures)} passed, "
        f"{len(failures)} failed, {took:.0f} s"
    )
    if kills:
        print(
            f"kills per seed: total {sum(kills)}, median {statistics.median(kills):g}, "
            f"max {max(kills)}; seeds never killed: {kills.count(0)}"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200, help="how many seeds (default 200)")
    parser.add_argument("--first", type=int, default=0, help="first seed (default 0)")
    args = parser.parse_args()
    sys.exit(main(args.first, args.seeds))
