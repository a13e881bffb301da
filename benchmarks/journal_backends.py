"""The journal's cost on each backend: 10,000 no-op tasks without a journal, on SQLite,
and on PostgreSQL.

    python benchmarks/journal_backends.py                 # N = 10,000 tasks, 5 rounds
    python benchmarks/journal_backends.py --n 20000 --rounds 9
    python benchmarks/journal_backends.py --dsn postgresql://me@db:5432/bench
    python benchmarks/journal_backends.py --same-database  # the journal a user keeps

Each round runs ``asyncflow.run()`` of N independent no-op tasks (each commits
an empty ``MemoryTarget``) three times, back to back: ``journal=None``, a fresh
SQLite file, and a fresh PostgreSQL database (``--dsn``: that one, emptied
first; else a throwaway server started here with Debian's binaries, as the
tests do, durability off). A run with a journal is what a user gets: the
journal opened and closed by the run, its run row, one claim of every lease,
attempts written in the background and checked afterwards. Medians of wall
time and of per-round ratios, with their ranges (a busy machine weighs on the three
alike). ``--same-database`` keeps one PostgreSQL database (and one SQLite file)
for every round instead, as a journal lives: the schema made once, each round's
history added to the last's (the first run's schema costs a new database tens
of milliseconds, a file a few).
Target: PostgreSQL at most 2x the run without a journal.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

import asyncflow
from asyncflow.journal import open_journal
from asyncflow.targets import MemoryStore, MemoryTarget

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fixtures.postgres import PostgresServer

TARGET = 2.0
CASES = ("none", "sqlite", "postgresql")


class Noop(asyncflow.Task):
    n = asyncflow.IntParameter()
    store: MemoryStore = MemoryStore()

    def output(self) -> MemoryTarget:
        return MemoryTarget(self.task_id, store=self.store)

    async def run(self) -> None:
        async with self.output().open("wb"):
            pass


async def timed_run(n: int, journal: str | None, first: int = 0) -> float:
    """Seconds of one run of ``n`` no-op tasks (``Noop(n=first)`` on) on ``journal``
    (checked afterwards)."""
    Noop.store = MemoryStore()
    tasks = [Noop(n=i) for i in range(first, first + n)]
    gc.collect()
    started = time.perf_counter()
    result = await asyncflow.run(tasks, journal=journal)
    seconds = time.perf_counter() - started
    assert result.ok
    if journal is not None:
        async with open_journal(journal) as opened:
            assert len(await opened.succeeded(t.task_id for t in tasks)) == n
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dsn", help="a PostgreSQL database to use (emptied each round)")
    parser.add_argument(
        "--same-database",
        action="store_true",
        help="one journal for every round (a fresh one each round by default)",
    )
    args = parser.parse_args()
    server = None if args.dsn else PostgresServer()
    if server is not None:
        server.start()
    try:
        times: dict[str, list[float]] = {case: [] for case in CASES}
        with tempfile.TemporaryDirectory() as folder:
            anyio.run(timed_run, 200, None)  # imports and caches warm before round 1
            kept = server.create_database() if server is not None else args.dsn
            if server is None or args.same_database:
                anyio.run(_empty, kept)
            for index in range(args.rounds):
                dsn = kept
                if not args.same_database and index:
                    dsn = server.create_database() if server is not None else args.dsn
                    if server is None:
                        anyio.run(_empty, dsn)
                file = f"journal-{0 if args.same_database else index}.db"
                where = {
                    "none": None,
                    "sqlite": str(Path(folder, file)),
                    "postgresql": dsn,
                }
                for case in CASES:
                    # A journal kept from round to round sees new tasks each round
                    # (as a daily run's), not the last round's again.
                    first = index * args.n if args.same_database else 0
                    times[case].append(anyio.run(timed_run, args.n, where[case], first))
                print(
                    f"round {index + 1}: "
                    + ", ".join(f"{case} {times[case][-1]:.3f} s" for case in CASES),
                    flush=True,
                )
    finally:
        if server is not None:
            server.stop()
    base = times["none"]
    print(f"\n{args.n:,} no-op tasks, medians of {args.rounds} rounds:")
    for case in CASES:
        ratios = [t / b for t, b in zip(times[case], base, strict=True)]
        print(
            f"  {case:<11} {statistics.median(times[case]):7.3f} s "
            f"({min(times[case]):.3f}-{max(times[case]):.3f})   "
            f"{statistics.median(ratios):5.2f}x the run without a journal "
            f"({min(ratios):.2f}-{max(ratios):.2f})"
        )
    ratio = statistics.median(t / b for t, b in zip(times["postgresql"], base, strict=True))
    verdict = "met" if ratio <= TARGET else "MISSED"
    print(f"target: PostgreSQL <= {TARGET:g}x: {verdict} ({ratio:.2f}x)")


async def _empty(dsn: str) -> None:
    import asyncpg

    db = await asyncpg.connect(dsn)
    try:
        await db.execute(
            "DROP TABLE IF EXISTS asyncflow_schema, runs, run_requests, run_keys, attempts, "
            "leases CASCADE; DROP SEQUENCE IF EXISTS lease_tokens"
        )
    finally:
        await db.close()


if __name__ == "__main__":
    main()
