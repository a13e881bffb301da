"""Honest resume after kill -9: no finished task runs again, no output is partial."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tests.fixtures.kill_loop import check_resumed, kill_and_resume

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.mark.parametrize("seed", range(20))
def test_kill_and_resume(tmp_path: Path, seed: int) -> None:
    """Killed at random points and resumed, every task ends with exactly one success
    (``benchmarks/soak_kill.py`` runs the same loop over more seeds)."""
    kills = kill_and_resume(tmp_path, seed)
    assert kills >= 1  # the test must have interrupted something
    check_resumed(tmp_path)
