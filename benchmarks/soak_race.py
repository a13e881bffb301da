"""Soak test of two processes racing over one DAG on one journal.

    python benchmarks/soak_race.py                   # 200 rounds, seed 0
    python benchmarks/soak_race.py --rounds 1000 --seed 7

Runs the loop of ``tests/test_leases_run.py``
(``tests.fixtures.race_pipeline.race_pairs``): in each round, two forked
processes build the same layered DAG (half of its tasks without outputs) on a
fresh journal, the second started 0 to 0.3 s after the first. A round is a
violation when a body ran more or less than once, when a task journaled other
than exactly one success, or when a run did not succeed. Prints one line per
violation and a summary; exits 1 on any. Run it from the repository root.
"""

from __future__ import annotations

import argparse
import collections
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' fixtures

from tests.fixtures import ROOT, cli_env
from tests.fixtures.race_pipeline import LAYERED, ledger

_BATCH = 50  # rounds per child process (the forks share its imports)


def check_round(folder: Path) -> list[str]:
    """What went wrong in one round; empty when nothing did."""
    found = []
    bodies = collections.Counter(line[1] for line in ledger(folder) if line[0] == "run")
    if bodies != dict.fromkeys(LAYERED, 1):
        wrong = sorted(task for task in LAYERED if bodies[task] != 1)
        found.append(f"bodies not run exactly once: {wrong}")
    codes = (folder / "codes.txt").read_text()
    if codes != "0 0":
        found.append(f"exit codes {codes}")
    db = sqlite3.connect(folder / "journal.db")
    try:
        rows = db.execute(
            "SELECT task_id, count(*) FROM attempts WHERE status = 'success' GROUP BY task_id"
        ).fetchall()
    finally:
        db.close()
    if len(rows) != len(LAYERED) or any(count != 1 for _, count in rows):
        found.append(f"successes per task: {sorted(count for _, count in rows)}")
    return found


def main(rounds: int, seed: int) -> int:
    violations = 0
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="soak-race-") as base:
        for start in range(0, rounds, _BATCH):
            count = min(_BATCH, rounds - start)
            batch = Path(base) / f"batch-{start}"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tests.fixtures.race_pipeline",
                    str(batch),
                    str(count),
                    str(seed + start),
                ],
                cwd=ROOT,
                env=cli_env(),
                check=True,
                capture_output=True,
            )
            for index in range(count):
                found = check_round(batch / f"round-{index}")
                if found:
                    violations += 1
                    print(f"round {start + index}: VIOLATION: {'; '.join(found)}", flush=True)
    took = time.perf_counter() - began
    held = rounds - violations
    print(f"{rounds} race rounds (seed {seed}): {held} held, {violations} violations, {took:.0f} s")
    return 1 if violations else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="how many rounds (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the start delays (default 0)")
    args = parser.parse_args()
    sys.exit(main(args.rounds, args.seed))
