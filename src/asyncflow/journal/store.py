"""The journal's connection: opening it, one lock for writes, SQLite errors as JournalError.

Every call goes through aiosqlite's thread, so none blocks the event loop,
and takes turns at the GIL with a busy loop (:class:`_Turns`). The
connection is in autocommit mode (``isolation_level=None``): a lone
statement is its own transaction, and several statements are grouped with
an explicit ``BEGIN IMMEDIATE`` (:meth:`Store.transaction`). Writes hold
:attr:`Store.lock`, so that no statement of one coroutine lands inside
another's transaction on the shared connection.

A new journal is made whole, then put in place: its schema is written to a
file of its own (mode 0600: it holds parameters and errors), which is then
linked to the journal path unless a file is there by then. So a journal file
is never empty, and one found empty was emptied (see :func:`schema.sniff`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any, Final

import aiosqlite
import anyio
import anyio.to_thread

from ..errors import JournalError
from .decode import damaged, is_damage, rows_of
from .schema import prepare, sniff

_DAMAGE_SIGNS: Final = ("no query solution", "no such index", "Could not decode to UTF-8")
"""How SQLite (or the sqlite3 module) words an operational error that is damage."""

_SIBLINGS: Final = ("", "-wal", "-shm", "-journal")
"""What SQLite keeps of a database file at its path plus these."""

__all__ = ["Database", "Store", "marks", "sqlite_errors"]


def marks(count: int) -> str:
    """``?,?,...``: ``count`` SQL parameter marks."""
    return ",".join("?" * count)


_TURN: Final = 0.001
"""Seconds between the waiting threads' turns (0.1 to 2 ms measured alike on a
100,000-task run)."""


class _Turns:
    """Turns at the GIL for the threads the journal waits for, while the loop is busy.

    aiosqlite runs each call in its own thread, which needs the GIL to start
    the call, again after each ``sqlite3_step`` and to hand the result back
    (and so does every ``anyio.to_thread`` call opening a journal makes). A
    busy event loop (a run's tasks going by the thousand) lets go of the GIL
    only for an instant between iterations (``epoll_wait(0)``) and takes it
    back before the waiting thread has woken up; and each such release starts
    that thread's wait for the interpreter's switch interval (5 ms, after
    which it would ask for the GIL outright) over again. So the thread got a
    turn by luck: a claim of 32,768 tasks took 350 ms instead of 25, a commit
    of as many rows 500 ms instead of 180, ten one-row reads beside a loop
    running coroutines flat out 16 s, and opening a new journal beside
    another run waited for that run to end. While the journal waits for a
    thread, the loop now sleeps for zero seconds every ``_TURN`` seconds, long
    enough for the waiting thread to take the GIL; an idle loop waits in
    ``epoll_wait`` without it and loses nothing to the ticks.
    """

    def __init__(self) -> None:
        self._waiting = 0  # blocks waiting for threads now
        self._ticking: asyncio.TimerHandle | None = None

    @contextlib.contextmanager
    def given(self) -> Iterator[None]:
        """Give waiting threads their turns for the duration of the block."""
        self._waiting += 1
        if self._ticking is None:
            self._ticking = asyncio.get_running_loop().call_later(_TURN, self._turn)
        try:
            yield
        finally:
            self._waiting -= 1

    def _turn(self) -> None:
        if not self._waiting:
            self._ticking = None
            return
        time.sleep(0)  # lets go of the GIL: the waiting thread takes it
        self._ticking = asyncio.get_running_loop().call_later(_TURN, self._turn)


class Database:
    """The journal's aiosqlite connection, whose calls give its thread turns at
    the GIL (see :class:`_Turns`)."""

    def __init__(self, db: aiosqlite.Connection, turns: _Turns) -> None:
        self._db = db
        self._turns = turns

    async def execute(self, sql: str, params: Any = None) -> None:
        with self._turns.given():
            await self._db.execute(sql, params)

    async def executemany(self, sql: str, params: Iterable[Any]) -> None:
        with self._turns.given():
            await self._db.executemany(sql, params)

    async def execute_fetchall(self, sql: str, params: Any = None) -> Iterable[sqlite3.Row]:
        with self._turns.given():
            return await self._db.execute_fetchall(sql, params)

    async def close(self) -> None:
        with self._turns.given():
            await self._db.close()


class Store:
    """An open journal database."""

    def __init__(self, db: aiosqlite.Connection, path: Path, turns: _Turns) -> None:
        self.db = Database(db, turns)
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
        turns = _Turns()
        with turns.given():  # every step waits for a thread: the loop may be busy
            return await cls._connect(path, busy_timeout, create_folder, turns)

    @classmethod
    async def _connect(
        cls, path: Path, busy_timeout: float, create_folder: bool, turns: _Turns
    ) -> Store:
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
        if not await sniff(path):
            with anyio.CancelScope(shield=True):
                await _create(path, busy_timeout)
        # Only while a process has the journal open (or after one died with it
        # open) is there a write-ahead log beside it: then check the pages.
        unclean = await anyio.to_thread.run_sync(_has_wal, path)
        # mode=rw: SQLite never creates the file here (if it went away meanwhile).
        uri = f"{(await anyio.Path(path).resolve()).as_uri()}?mode=rw"
        with sqlite_errors(path, "open the journal"):
            db = await aiosqlite.connect(uri, uri=True, isolation_level=None, timeout=busy_timeout)
        store = cls(db, path, turns)
        try:
            # Shielded: a half-made schema or a half-open connection helps nobody.
            with anyio.CancelScope(shield=True), sqlite_errors(path, "open the journal"):
                if unclean:
                    await _quick_check(db, path)
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
    """Turn ``sqlite3.Error`` into :class:`JournalError` naming the file.

    Text that is not UTF-8 (we write only UTF-8) is damage too, and so is an
    index our statements name (``INDEXED BY``) that is gone or altered.
    """
    try:
        yield
    except sqlite3.Error as exc:
        if (
            isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)
        ) or str(exc).startswith(_DAMAGE_SIGNS):
            raise damaged(path, f"cannot {doing}: {exc}") from exc  # "malformed", "not a database"
        raise JournalError(f"{path}: cannot {doing}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise damaged(path, f"cannot {doing}: a stored text is not UTF-8 ({exc})") from exc


async def _create(path: Path, busy_timeout: float) -> None:
    """Make a new journal at ``path`` whole, unless a file is there by then.

    The schema goes into a file of its own first, created with mode 0600
    (SQLite gives its -wal and -shm files the mode of the database file);
    that file is then hard-linked to ``path``, which fails if another process
    put a journal there meanwhile (theirs is then used).
    """
    fresh = path.with_name(f".{path.name}.new-{secrets.token_hex(6)}")
    try:
        await anyio.to_thread.run_sync(_create_private, fresh)
        with sqlite_errors(path, "create the journal"):
            db = await aiosqlite.connect(fresh, isolation_level=None, timeout=busy_timeout)
            try:
                await prepare(db, path, busy_timeout)
            finally:
                await db.close()
        await anyio.to_thread.run_sync(_put_in_place, fresh, path)
    except OSError as exc:
        raise JournalError(f"{path}: cannot create the journal: {exc}") from exc
    finally:
        await anyio.to_thread.run_sync(_remove, fresh)


def _create_private(path: Path) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _put_in_place(fresh: Path, path: Path) -> None:
    try:
        os.link(fresh, path)
    except FileExistsError:
        pass  # another process made the journal meanwhile: use that one
    except OSError:
        # No hard links on this file system: copy, never over an existing file.
        # (Another process opening the journal during the copy may find it short.)
        try:
            target = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return
        with os.fdopen(target, "wb") as out, open(fresh, "rb") as source:
            out.write(source.read())


def _remove(fresh: Path) -> None:
    for suffix in _SIBLINGS:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{fresh}{suffix}")


def _has_wal(path: Path) -> bool:
    try:
        return os.stat(f"{path}-wal").st_size > 0
    except OSError:
        return False


async def _quick_check(db: aiosqlite.Connection, path: Path) -> None:
    """SQLite's ``quick_check`` (the structure of every page; not row contents).

    Raises:
        JournalError: the file is damaged (what SQLite found, and the way out).
    """
    rows = list(await db.execute_fetchall("PRAGMA quick_check(5)"))
    found = [str(row[0]) for row in rows]
    if found != ["ok"]:
        raise damaged(path, "quick_check (the journal was not closed cleanly): " + "; ".join(found))
