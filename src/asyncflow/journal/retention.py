"""Retention: what a prune of the journal keeps, and what it reports.

Shared by both backends (:mod:`asyncflow.journal.prune` for SQLite, the
PostgreSQL journal's own statements): the cutoff and the number of runs
kept, checked once, and :class:`Pruned`, what went.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

__all__ = ["Pruned", "bounds"]


def bounds(now: float, older_than: timedelta | None, keep_runs: int | None) -> tuple[float, int]:
    """The cutoff (epoch seconds: runs that ended before it may go) and the number of
    latest runs kept whatever their age, from a prune's arguments.

    Raises:
        ValueError: neither is given, ``older_than`` is negative, or ``keep_runs`` < 0.
    """
    if older_than is None and keep_runs is None:
        raise ValueError("prune needs older_than or keep_runs (or both)")
    if older_than is not None and older_than < timedelta(0):
        raise ValueError(f"older_than must not be negative, got {older_than}")
    if keep_runs is not None and keep_runs < 0:
        raise ValueError(f"keep_runs must be >= 0, got {keep_runs}")
    cutoff = math.inf if older_than is None else now - older_than.total_seconds()
    return cutoff, keep_runs or 0


@dataclass(frozen=True, slots=True)
class Pruned:
    """What a prune removed (or, ``dry_run``, would remove)."""

    runs: int
    """Runs deleted whole."""
    trimmed: int
    """Pruned runs kept for the latest successes they hold (their other attempts deleted)."""
    attempts: int
    """Attempts deleted."""
    kept: int
    """Successful attempts kept in pruned runs: the latest success of their task."""
    leases: int
    """Lease rows of pruned runs deleted."""
    dry_run: bool = False
    size_before: int | None = None
    """Bytes of the journal file (and its write-ahead log) before; None where not a file."""
    size_after: int | None = None
    """Bytes after (None on a dry run, or where not a file)."""
    note: str | None = None
    """Why the space was not given back, if it was not."""

    def summary(self) -> str:
        """One line: what went (or would go), and the file's size."""
        verb = "would remove" if self.dry_run else "removed"
        line = (
            f"{verb} {self.runs} run(s), {self.attempts} attempt(s) and {self.leases} lease "
            f"row(s); kept {self.kept} latest success(es)"
        )
        if self.trimmed:
            line += f" in {self.trimmed} older run(s)"
        if self.size_before is not None:
            line += f"; {_mb(self.size_before)}"
            if self.size_after is not None:
                line += f" -> {_mb(self.size_after)}"
        if self.note:
            line += f" ({self.note})"
        return line


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
