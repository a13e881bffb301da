"""Reading the journal for one request."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from ..journal import AnyJournal, Journal, PostgresJournal, describe, is_postgres_url

__all__ = ["JournalReader"]


class JournalReader:
    """Opens the journal for one request and closes it after; never creates it.

    Given a path, each request opens the file (a few milliseconds): the app
    keeps no connection between requests, so it works in any event loop and
    sees what other processes wrote. Given a PostgreSQL URL, each request
    connects likewise; :attr:`path` shows it without its password. Given an
    open journal, it uses that one and leaves it open.
    """

    def __init__(self, journal: str | os.PathLike[str] | AnyJournal) -> None:
        self._url: str | None = None
        if isinstance(journal, Journal | PostgresJournal):
            self._journal: AnyJournal | None = journal
            self.path: Path | str = journal.path
        elif isinstance(journal, str | os.PathLike):
            self._journal = None
            if is_postgres_url(journal):
                self._url = str(journal)
                self.path = describe(self._url)
            else:
                self.path = Path(journal)
        else:
            raise TypeError(
                f"journal must be a path, a postgresql:// URL or an asyncflow journal, got "
                f"{journal!r}"
            )

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[AnyJournal | None]:
        """The journal, or None while there is no file at the path yet."""
        if self._journal is not None:
            yield self._journal
            return
        if self._url is not None:
            async with PostgresJournal.open(self._url) as found:
                yield found
            return
        if not await anyio.Path(self.path).is_file():
            yield None
            return
        journal = await Journal.open(self.path)
        try:
            yield journal
        finally:
            await journal.close()
