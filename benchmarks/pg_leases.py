"""The PostgreSQL journal's lease statements as a journal grows: a claim of N new
tasks, the heartbeat of a run holding them, and a claim on tables whose
statistics were gathered while they were small.

    python benchmarks/pg_leases.py                    # N = 10,000 and 100,000
    python benchmarks/pg_leases.py --n 40000 --rounds 5

Each case runs on a new database of a throwaway server started here with
Debian's binaries (as the tests do, durability off). Medians of ``--rounds``:

- ``claim``: ``claim()`` of N tasks never leased, by a run just begun;
- ``renew``: one heartbeat (``renew()``) of that run, holding the N leases;
- ``claim, analyzed small``: the same claim after one task was leased and
  the tables analyzed (as autovacuum does early in a journal's life), with
  that one task among the N (so the claim takes every lease with one
  statement that also looks up the leases taken before).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import anyio

from asyncflow.journal import RunStatus
from asyncflow.journal.postgres import PostgresJournal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fixtures.postgres import PostgresServer


async def one_round(dsn: str, n: int, small: bool) -> tuple[float, float]:
    """Seconds of the claim of ``n`` tasks, and of a heartbeat after it."""
    ids = [f"Bench_{i}" for i in range(n)]
    async with PostgresJournal.open(dsn, lease_ttl=300) as journal:
        if small:
            await journal.begin_run("before")
            await journal.claim("before", ids[:1], since=time.time())
            await journal.end_run("before", RunStatus.SUCCESS)
            async with journal._store.pool.acquire() as db:
                await db.execute("ANALYZE")
        await journal.begin_run("bench")
        started = time.perf_counter()
        claim = await journal.claim("bench", ids, since=time.time())
        claimed = time.perf_counter() - started
        assert len(claim.taken) == n, len(claim.taken)
        started = time.perf_counter()
        assert await journal.renew() == []
        renewed = time.perf_counter() - started
        await journal.end_run("bench", RunStatus.SUCCESS)
    return claimed, renewed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = PostgresServer()
    server.start()
    try:
        print("| N | claim ms | renew ms | claim, analyzed small ms |")
        print("|---|---|---|---|")
        for n in args.n:
            fresh = [
                anyio.run(one_round, server.create_database(), n, False) for _ in range(args.rounds)
            ]
            small = [
                anyio.run(one_round, server.create_database(), n, True) for _ in range(args.rounds)
            ]
            print(
                f"| {n:,} | {statistics.median(c for c, _ in fresh) * 1000:.1f} "
                f"| {statistics.median(r for _, r in fresh) * 1000:.1f} "
                f"| {statistics.median(c for c, _ in small) * 1000:.1f} |",
                flush=True,
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
