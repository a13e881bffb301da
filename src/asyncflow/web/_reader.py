"""Reading the journal for one request."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from ..journal import Journal

__all__ = ["JournalReader"]


class JournalReader:
    """Opens the journal for one request and closes it after; never creates it.

    Given a path, each request opens the file (a few milliseconds): the app
    keeps no connection between requests, so it works in any event loop and
    sees what other processes wrote. Given an open :class:`Journal`, it uses
    that one and leaves it open.
    """

    def __init__(self, journal: str | os.PathLike[str] | Journal) -> None:
        if isinstance(journal, Journal):
            self._journal: Journal | None = journal
            self.path = journal.path
        elif isinstance(journal, str | os.PathLike):
            self._journal = None
            self.path = Path(journal)
        else:
            raise TypeError(f"journal must be a path or an asyncflow Journal, got {journal!r}")

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[Journal | None]:
        """The journal, or None while there is no file at the path yet."""
        if self._journal is not None:
            yield self._journal
            return
        if not await anyio.Path(self.path).is_file():
            yield None
            return
        journal = await Journal.open(self.path)
        try:
            yield journal
        finally:
            await journal.close()
