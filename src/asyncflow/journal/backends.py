"""Either backend, chosen from what names the journal (see :mod:`.where`).

The PostgreSQL backend is imported only when a URL names it: a run on a local
journal file does not pay for it (about 20 ms).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, TypeAlias

from .opening import Opening
from .sqlite import DEFAULT_LEASE_TTL, Journal
from .where import is_postgres_url

if TYPE_CHECKING:
    from .postgres import PostgresJournal

    AnyJournal: TypeAlias = Journal | PostgresJournal
    """A journal of either backend: the same recording, history and coordination."""

__all__ = ["AnyJournal", "open_journal"]


def __getattr__(name: str) -> Any:
    if name == "AnyJournal":  # a union of both classes, so it imports the second
        from .postgres import PostgresJournal

        globals()[name] = union = Journal | PostgresJournal
        return union
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        from .postgres import PostgresJournal

        return PostgresJournal.open(os.fspath(where), lease_ttl=lease_ttl)
    return Journal.open(where, lease_ttl=lease_ttl, create_folder=create_folder)
