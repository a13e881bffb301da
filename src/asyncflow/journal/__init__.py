"""The run journal: run state, task history and leases, shared by processes.

The public names are those below; the modules of this package are internal.
From the bottom up: ``records`` (what the journal hands back), ``decode``
(strict reading of stored values), ``schema`` (versions and migrations),
``store`` (the connection, transactions, errors), then ``rows`` (events into
attempt rows), ``history`` (reads) and ``format`` (history as text),
``leases`` (which run may run a task now), and ``sqlite`` (the
:class:`Journal` that ties them together). ``check`` backs
``asyncflow journal check``. The PostgreSQL journal, for processes on
several hosts, is ``postgres`` (:class:`PostgresJournal`) over
``postgres_store`` (connections, schema), ``postgres_leases`` and
``postgres_sql`` (every statement); it shares ``records``, ``decode``,
``rows`` and the history's formatting with SQLite. :func:`open_journal`
picks the backend from what names the journal: a ``postgresql://`` (or
``postgres://``) URL, else a file path.
"""

from __future__ import annotations

import os
from typing import TypeAlias

from ..coordination import Claim
from .format import format_run, format_runs
from .opening import Opening
from .postgres import PostgresJournal
from .postgres_store import is_postgres_url, redacted
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

AnyJournal: TypeAlias = Journal | PostgresJournal
"""A journal of either backend: the same recording, history and coordination."""


def open_journal(
    where: str | os.PathLike[str],
    *,
    lease_ttl: float = DEFAULT_LEASE_TTL,
    create_folder: bool = False,
) -> Opening[Journal] | Opening[PostgresJournal]:
    """Open the journal ``where`` names: a PostgreSQL URL, else an SQLite file path.

    ``create_folder`` applies to a file path only (see :meth:`Journal.open`).

    Raises:
        JournalError: the journal cannot be used (see either backend's ``open``).
    """
    if is_postgres_url(where):
        return PostgresJournal.open(os.fspath(where), lease_ttl=lease_ttl)
    return Journal.open(where, lease_ttl=lease_ttl, create_folder=create_folder)


def describe(where: str | os.PathLike[str]) -> str:
    """How to show ``where`` (a path, or a URL without its password)."""
    return redacted(os.fspath(where)) if is_postgres_url(where) else os.fspath(where)


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
    "RunRecord",
    "RunStatus",
    "TaskSummary",
    "describe",
    "format_run",
    "format_runs",
    "is_postgres_url",
    "open_journal",
]
