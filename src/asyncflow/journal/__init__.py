"""The run journal: run state, task history and leases, shared by processes.

The public names are those below; the modules of this package are internal.
From the bottom up: ``records`` (what the journal hands back), ``decode``
(strict reading of stored values), ``schema`` (versions and migrations),
``store`` (the connection, transactions, errors), then ``rows`` (events into
attempt rows), ``history`` (reads) and ``format`` (history as text),
``leases`` (which run may run a task now), and ``sqlite`` (the
:class:`Journal` that ties them together). ``check`` backs
``asyncflow journal check``.
"""

from __future__ import annotations

from ..coordination import Claim
from .format import format_run, format_runs
from .records import (
    AttemptRecord,
    AttemptStatus,
    Holder,
    JournalStatistics,
    LeaseOutcome,
    RunRecord,
    RunStatus,
    TaskSummary,
)
from .schema import SCHEMA_VERSION
from .sqlite import DEFAULT_LEASE_TTL, Journal

__all__ = [
    "DEFAULT_LEASE_TTL",
    "SCHEMA_VERSION",
    "AttemptRecord",
    "AttemptStatus",
    "Claim",
    "Holder",
    "Journal",
    "JournalStatistics",
    "LeaseOutcome",
    "RunRecord",
    "RunStatus",
    "TaskSummary",
    "format_run",
    "format_runs",
]
