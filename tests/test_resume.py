"""Honest resume after kill -9: no finished task runs again, no output is partial."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.fixtures.kill_loop import check_resumed, kill_and_resume
from tests.fixtures.postgres import PostgresServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

SEEDS = 20
AT_ONCE = 4
"""PostgreSQL seeds run side by side: each killed run's leases take their ttl (1 s) to
expire, and the seeds wait for that rather than for the processor."""


@pytest.mark.parametrize("seed", range(SEEDS))
def test_kill_and_resume(tmp_path: Path, seed: int) -> None:
    """Killed at random points and resumed, every task ends with exactly one success
    (``benchmarks/soak_kill.py`` runs the same loop over more seeds)."""
    kills = kill_and_resume(tmp_path, seed)
    assert kills >= 1  # the test must have interrupted something
    check_resumed(tmp_path)


@pytest.mark.parametrize("first", range(0, SEEDS, AT_ONCE))
def test_kill_and_resume_on_postgresql(
    tmp_path: Path, postgres_server: PostgresServer, first: int
) -> None:
    """The same loop with a PostgreSQL journal, seeds ``first`` .. ``first + AT_ONCE - 1`` at once,
    each with a database of its own: every task ends with exactly one success."""

    def one(seed: int) -> int:
        folder = tmp_path / f"seed-{seed}"
        folder.mkdir()
        kills = kill_and_resume(folder, seed, postgres_server.create_database())
        check_resumed(folder)
        return kills

    with ThreadPoolExecutor(AT_ONCE) as pool:
        runs = {seed: pool.submit(one, seed) for seed in range(first, first + AT_ONCE)}
        kills = {seed: run.result() for seed, run in runs.items()}  # raises a seed's failure
    assert all(count >= 1 for count in kills.values()), kills
