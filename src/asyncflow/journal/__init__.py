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

import typing as _typing

from .._lazy import lazy_names as _lazy_names
from ..coordination import Claim
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

if _typing.TYPE_CHECKING:
    from .format import format_run, format_runs
    from .schema import SCHEMA_VERSION
    from .sqlite import DEFAULT_LEASE_TTL, Journal

# Imported on first use: the SQLite parts (aiosqlite, the schema, the
# history's readers) are not needed to import asyncflow, only to open a journal.
_LAZY = {
    "DEFAULT_LEASE_TTL": ".sqlite",
    "Journal": ".sqlite",
    "SCHEMA_VERSION": ".schema",
    "format_run": ".format",
    "format_runs": ".format",
}

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

__getattr__, __dir__ = _lazy_names(__name__, _LAZY)
