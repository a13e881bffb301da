"""The journal's connection: opening it, one lock for writes, SQLite errors as JournalError.

Every call goes through aiosqlite's thread, so none blocks the event loop.
The connection is in autocommit mode (``isolation_level=None``): a lone
statement is its own transaction, and several statements are grouped with
an explicit ``BEGIN IMMEDIATE`` (:meth:`Store.transaction`). Writes hold
:attr:`Store.lock`, so that no statement of one coroutine lands inside
another's transaction on the shared connection.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import anyio

from ..errors import JournalError
from .decode import damaged, is_damage, rows_of
from .schema import prepare, sniff

__all__ = ["Store", "marks", "sqlite_errors"]


def marks(count: int) -> str:
    """``?,?,...``: ``count`` SQL parameter marks."""
    return ",".join("?" * count)


class Store:
    """An open journal database."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self.db = db
        self.path = path
        self.lock = anyio.Lock()
        self.damage: JournalError | None = None
        """The first sign that the file is damaged (a row that does not decode, a
        page SQLite finds malformed): the journal refuses to go on after it."""

    @classmethod
    async def connect(cls, path: Path, busy_timeout: float, *, create_folder: bool) -> Store:
        """Check the folder and the file, connect, and bring the schema up to date.

        The folder is created if ``create_folder``; otherwise it must exist.

        Raises:
            JournalError: the folder is missing, the file is not ours, is newer,
                or cannot be opened.
        """
        folder = anyio.Path(path.parent)
        if create_folder:
            try:
                await folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise JournalError(f"{path}: cannot create its folder: {exc}") from exc
        elif not await folder.is_dir():
            # A mistyped path should not leave folders (and a journal) about the disk.
            raise JournalError(
                f"{path}: no folder {str(path.parent)!r} to hold the journal: create it, "
                "or choose another journal path"
            )
        await sniff(path)
        with sqlite_errors(path, "open the journal"):
            db = await aiosqlite.connect(path, isolation_level=None, timeout=busy_timeout)
        store = cls(db, path)
        try:
            # Shielded: a half-made schema or a half-open connection helps nobody.
            with anyio.CancelScope(shield=True), sqlite_errors(path, "open the journal"):
                await prepare(db, path, busy_timeout)
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            await self.db.close()

    async def fetch(self, sql: str, params: Any = ()) -> list[Any]:
        """Rows of one read statement."""
        with self._noting_damage(), sqlite_errors(self.path, "read the journal"):
            return list(await self.db.execute_fetchall(sql, params))

    @contextlib.contextmanager
    def decoding(self, row: str) -> Iterator[None]:
        """Decode ``row`` (e.g. ``"runs row 'r1'"``) read from the file.

        Raises:
            JournalError: a value of the row does not decode (the file is damaged).
        """
        with self._noting_damage(), rows_of(self.path, row):
            yield

    @contextlib.contextmanager
    def _noting_damage(self) -> Iterator[None]:
        try:
            yield
        except JournalError as exc:
            if is_damage(exc):
                self.damage = self.damage or exc
            raise

    async def write(self, sql: str, params: Any, doing: str) -> list[Any]:
        """One write statement, its own transaction; returns its RETURNING rows."""
        async with self.lock:
            with anyio.CancelScope(shield=True), sqlite_errors(self.path, doing):
                rows = await self.db.execute_fetchall(sql, params)
        return list(rows)

    @contextlib.asynccontextmanager
    async def transaction(self, doing: str, *, locked: bool = False) -> AsyncIterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error, shielded.

        Takes :attr:`lock` unless the caller holds it already (``locked``).
        """
        async with contextlib.AsyncExitStack() as stack:
            if not locked:
                await stack.enter_async_context(self.lock)
            # Shielded: a transaction left open would make the connection unusable.
            stack.enter_context(anyio.CancelScope(shield=True))
            stack.enter_context(sqlite_errors(self.path, doing))
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
                await self.db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    await self.db.execute("ROLLBACK")
                raise


@contextlib.contextmanager
def sqlite_errors(path: Path, doing: str) -> Iterator[None]:
    """Turn ``sqlite3.Error`` into :class:`JournalError` naming the file."""
    try:
        yield
    except sqlite3.Error as exc:
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
            raise damaged(path, f"cannot {doing}: {exc}") from exc  # "malformed", "not a database"
        raise JournalError(f"{path}: cannot {doing}: {exc}") from exc
