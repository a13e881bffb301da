"""The run journal: run state, task history and leases, shared by processes.

The public names are those below; the modules of this package are internal.
From the bottom up: ``records`` (what the journal hands back), ``decode``
(strict reading of stored values), ``schema`` (versions and migrations),
``store`` (the connection, transactions, errors), then ``rows`` (events into
attempt rows), ``history`` (reads) and ``format`` (history as text),
``leases`` (which run may run a task now), and ``sqlite`` (the
:class:`Journal` that ties them together). ``check`` backs
``asyncflow journal check``; ``prune`` (over ``retention``) deletes old
runs. The PostgreSQL journal, for processes on several hosts, is
``postgres`` (:class:`PostgresJournal`) over
``postgres_store`` (connections, schema), ``postgres_leases`` and
``postgres_sql`` (every statement); it shares ``records``, ``decode``,
``rows`` and the history's formatting with SQLite. :func:`open_journal`
picks the backend from what names the journal: a ``postgresql://`` (or
``postgres://``) URL, else a file path.
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
from .retention import Pruned
from .where import describe, is_postgres_url

if _typing.TYPE_CHECKING:
    from .backends import AnyJournal, open_journal
    from .format import format_run, format_runs
    from .postgres import PostgresJournal
    from .schema import SCHEMA_VERSION
    from .sqlite import DEFAULT_LEASE_TTL, Journal

# Imported on first use: the backends (aiosqlite, the schema, the history's
# readers, the PostgreSQL parts) are not needed to import asyncflow, only to
# open a journal.
_LAZY = {
    "AnyJournal": ".backends",
    "open_journal": ".backends",
    "PostgresJournal": ".postgres",
    "DEFAULT_LEASE_TTL": ".sqlite",
    "Journal": ".sqlite",
    "SCHEMA_VERSION": ".schema",
    "format_run": ".format",
    "format_runs": ".format",
}

__all__ = [
    "DEFAULT_LEASE_TTL",
    "SCHEMA_VERSION",
    "AnyJournal",
    "AttemptRecord",
    "AttemptStatus",
    "Claim",
    "Holder",
    "Journal",
    "JournalStatistics",
    "LeaseOutcome",
    "PostgresJournal",
    "Pruned",
    "RunRecord",
    "RunStatus",
    "TaskSummary",
    "describe",
    "format_run",
    "format_runs",
    "is_postgres_url",
    "open_journal",
]

__getattr__, __dir__ = _lazy_names(__name__, _LAZY)
