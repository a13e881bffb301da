"""Either backend, chosen from what names the journal (see :mod:`.where`)."""

from __future__ import annotations

import os
from typing import TypeAlias

from .opening import Opening
from .postgres import PostgresJournal
from .sqlite import DEFAULT_LEASE_TTL, Journal
from .where import is_postgres_url

__all__ = ["AnyJournal", "open_journal"]

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
