"""Soak test of damaged journals: random byte flips, then a resumed run.

    python benchmarks/soak_damage.py                  # 60 flips
    python benchmarks/soak_damage.py --flips 500 --seed 7

A run of a small pipeline (``--tasks`` tasks without outputs, complete only
through their journaled success, and as many with a file output) writes a
journal and closes it. Then, for each flip, a copy of that journal gets one
random byte replaced by another random value, and the same pipeline runs on
the copy. Each flip ends one way:

- ``refused``: the run (or opening the journal) raised ``JournalError``;
- ``harmless``: the run found everything done and ran nothing;
- ``lost``: the run took recorded successes for absent and ran tasks again,
  without an error: the silent loss this script exists to count;
- ``error``: any other exception (a defect in itself).

Prints the count of each, and for every ``lost`` flip the offset, the page
and what SQLite keeps on that page. Exits 1 if any flip was lost silently.
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import sqlite3
import sys
import tempfile
import traceback
from collections import Counter
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' fixtures

from tests.fixtures.damage_tasks import File, Mark

import asyncflow


def pipeline(folder: Path, tasks: int) -> list[asyncflow.Task]:
    """Both kinds requested (a complete task's requirements are not looked at)."""
    return [*(File(str(folder), n) for n in range(tasks)), *(Mark(n) for n in range(tasks))]


def page_owners(path: Path) -> dict[int, str]:
    """Page number -> the table or index on it (SQLite's dbstat, where compiled in)."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT pageno, name FROM dbstat").fetchall()
    except sqlite3.Error:
        return {}
    finally:
        db.close()
    return {int(page): str(name) for page, name in rows}


async def trial(folder: Path, journal: Path, tasks: int) -> tuple[str, str]:
    """How the run on a damaged copy ended, and the error where there is one."""
    Mark.runs.clear()
    try:
        result = await asyncflow.run(pipeline(folder, tasks), journal=journal)
    except asyncflow.JournalError:
        return "refused", ""
    except Exception:
        return "error", traceback.format_exc(limit=-3)
    if not result.ok:
        errors = [str(result.error(failed.task)) for failed in result.failed]
        if errors and all("damaged journal" in error for error in errors):
            # Refused, by the tasks that read the damage (complete() raised).
            return "refused", ""
        return "error", (errors or ["not ok"])[0][:300]
    return ("lost" if Mark.runs else "harmless"), ""


async def main(flips: int, seed: int, tasks: int) -> int:
    logging.getLogger("asyncflow").addHandler(logging.NullHandler())  # the runs' own errors
    logging.getLogger("asyncflow").propagate = False
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="soak-damage-") as scratch:
        folder = Path(scratch)
        original = folder / "original.db"
        result = await asyncflow.run(pipeline(folder, tasks), journal=original)
        assert result.ok and len(Mark.runs) == tasks
        size = original.stat().st_size
        owners = page_owners(original)
        page_size = 4096
        outcomes: Counter[str] = Counter()
        lost: list[str] = []
        for flip in range(flips):
            copy = folder / f"flip-{flip}.db"
            shutil.copyfile(original, copy)
            offset = rng.randrange(size)
            data = bytearray(copy.read_bytes())
            data[offset] ^= rng.randrange(1, 256)
            copy.write_bytes(bytes(data))
            outcome, error = await trial(folder, copy, tasks)
            outcomes[outcome] += 1
            if outcome in ("lost", "error"):
                page = offset // page_size + 1
                where = owners.get(page, "?")
                lost.append(
                    f"flip {flip}: {outcome}: offset {offset} (page {page}, {where}) {error}"
                )
            for suffix in ("", "-wal", "-shm"):
                await anyio.Path(f"{copy}{suffix}").unlink(missing_ok=True)
    print(
        f"{flips} flips of a {size:,}-byte journal ({tasks} tasks without outputs, "
        f"{tasks} with): "
        + ", ".join(f"{outcomes[k]} {k}" for k in ("refused", "harmless", "lost", "error"))
    )
    for line in lost:
        print(f"  {line}")
    return 1 if outcomes["lost"] or outcomes["error"] else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flips", type=int, default=60, help="how many flips (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--tasks", type=int, default=20, help="tasks of each kind (default 20)")
    args = parser.parse_args()
    sys.exit(anyio.run(main, args.flips, args.seed, args.tasks, backend="asyncio"))
