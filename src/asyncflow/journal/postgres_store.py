"""The PostgreSQL journal's connections: URLs, the pool, the schema, errors as JournalError.

``asyncpg`` is imported when a PostgreSQL journal is opened (never by
``import asyncflow``); without it, opening one says which extra to install.
A URL's password never leaves this module: messages, reprs and pages show
:func:`redacted` URLs.

A connection lost (the server restarted, a failover, the network) is ridden
out: the statement is sent again on a new connection, with backoff, until the
database has been unreachable for the store's *patience*; one warning is
logged per outage, and one line when it is over. Past the patience, the
statement fails with :class:`Unreachable`, naming how long it waited. A
statement whose connection was lost may have committed: only statements that
are safe to send twice go through :meth:`PgStore.fetch` and its kin (see
:mod:`asyncflow.journal.postgres_sql` for what each does when it is sent
again); a batch of new attempt rows says so with ``landed``.
"""

from __future__ import annotations

import contextlib
import importlib
import random
import secrets
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, Final, TypeVar

import anyio
import anyio.to_thread

from .._log import log as _log
from .._version import __version__
from ..errors import JournalError
from . import postgres_sql as sql
from .where import redacted

__all__ = ["Landed", "PgStore", "Unreachable", "joined"]

T = TypeVar("T")


_CONNECT_TIMEOUT: Final = 30.0
_POOL_SIZE: Final = 4  # the writer, the heartbeat, a claim and a watch at once
_SETTINGS: Final = {"enable_seqscan": "off", "jit": "off"}
"""Sent with each connection (no round trip). The journal looks rows up by their
keys; a table's statistics gathered while it was small (a new journal's, once
autovacuum analyzed it) have the planner scan the whole table for each key
instead, and a claim of 40,000 new tasks then took 15 s instead of 0.3 s (each
scan steps over the rows the statement inserted). A statement with no index to
use still scans: the setting only makes a scan the last resort, priced so high
that the planner would compile such a statement to machine code first (JIT,
60 ms for a lookup in a table of 30 rows): no statement of a journal gains from
that, so JIT is off."""


_FIRST_PAUSE: Final = 0.05
_LONGEST_PAUSE: Final = 2.0
"""Seconds between tries to reach the database again: doubled from the first to
the longest, each drawn in its upper half (many clients coming back at once
after a failover do not come in step)."""


class Unreachable(JournalError):
    """The database could not be reached for longer than the store's patience."""


class Landed(Exception):  # (not an error: what a write sent again learned)
    """A write sent again after its connection was lost had committed the first time."""


class _Lost(Exception):
    """A statement's connection was lost or left unusable: it may have committed."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(cause)
        self.cause = cause


def _asyncpg() -> Any:
    try:
        return importlib.import_module("asyncpg")
    except ImportError as error:
        raise JournalError(
            f"a PostgreSQL journal needs asyncpg ({error}): pip install 'asyncflow[postgres]'"
        ) from None


class PgStore:
    """A pool of connections to one journal database."""

    def __init__(
        self,
        pool: Any,
        url: str,
        asyncpg: Any,
        *,
        patience: float = _CONNECT_TIMEOUT,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.url = url
        """The database's URL without its password."""
        self.patience = patience
        """Seconds the database may stay unreachable before a statement gives up."""
        self._monotonic = monotonic
        self._down_since: float | None = None  # monotonic: the outage going on began then
        # A connection lost, the server going away or not yet taking connections
        # (a restart, a failover), or full: the statement is sent again.
        self._lost: tuple[type[BaseException], ...] = (
            asyncpg.PostgresConnectionError,
            asyncpg.exceptions.AdminShutdownError,
            asyncpg.exceptions.CrashShutdownError,
            asyncpg.exceptions.CannotConnectNowError,
            asyncpg.exceptions.TooManyConnectionsError,
            OSError,
            TimeoutError,
        )
        self._interface: type[BaseException] = asyncpg.InterfaceError
        # The driver's state machine broken (asyncpg raises it when a session is
        # terminated mid-transaction): the connection cannot be trusted again.
        self._internal: type[BaseException] = asyncpg.exceptions.InternalClientError
        self._unique: type[BaseException] = asyncpg.exceptions.UniqueViolationError
        self._errors: tuple[type[BaseException], ...] = (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            OSError,
            TimeoutError,
        )
        self._retryable: tuple[type[BaseException], ...] = (
            asyncpg.exceptions.DeadlockDetectedError,
            asyncpg.exceptions.SerializationError,
        )
        self._conflicts = (*self._retryable, asyncpg.exceptions.UniqueViolationError)
        self._undefined_table: type[BaseException] = asyncpg.exceptions.UndefinedTableError

    @classmethod
    async def connect(cls, url: str, *, patience: float = _CONNECT_TIMEOUT) -> PgStore:
        """Connect to the database at ``url`` and bring its schema up to date.

        ``patience``: seconds an outage is ridden out later (see the module's docstring).

        Raises:
            JournalError: asyncpg is missing, the database cannot be reached,
                is not an asyncflow journal, or comes from a newer asyncflow.
        """
        shown = redacted(url)
        asyncpg: Any = sys.modules.get("asyncpg")
        if asyncpg is None:  # the first import takes a while: not on the loop
            asyncpg = await anyio.to_thread.run_sync(_asyncpg)
        errors = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError, ValueError)
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=_POOL_SIZE,
                timeout=_CONNECT_TIMEOUT,
                reset=_keep,
                server_settings=_SETTINGS,
            )
        except errors as exc:
            # asyncpg's messages may quote the DSN: keep only the kind and a redacted text.
            raise JournalError(f"{shown}: cannot open the journal: {_message(exc, url)}") from None
        store = cls(pool, shown, asyncpg, patience=patience)
        try:
            with anyio.CancelScope(shield=True):
                await store._prepare()
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(*self._errors):
                await self.pool.close()

    async def _prepare(self) -> None:
        """Check that the database is ours (or empty), then migrate it, under a lock."""
        # The common case first, in one statement: a journal of this version (its
        # tables and its version row were committed together).
        try:
            [(version,)] = await self.fetch(
                "SELECT max(version) FROM asyncflow_schema", doing="open the journal"
            )
        except JournalError as exc:
            if not isinstance(exc.__cause__, self._undefined_table):
                raise  # (a new database has no such table: made below)
        else:
            if version == sql.SCHEMA_VERSION:
                return
        async with self.transaction("open the journal") as db:
            version = await self._version(db)
            if version == sql.SCHEMA_VERSION:
                return
            await db.execute("SELECT pg_advisory_xact_lock($1)", sql.SCHEMA_LOCK)
            version = await self._version(db)  # another process may have migrated it meanwhile
            # Every statement of every step due, and the new version, in one round trip
            # (a script without parameters is sent as one simple query).
            steps = [statement for step in sql.MIGRATIONS[version:] for statement in step]
            steps.append(f"UPDATE asyncflow_schema SET version = {int(sql.SCHEMA_VERSION)}")
            await db.execute(";\n".join(steps))

    async def _version(self, db: Any) -> int:
        # pg_tables, not to_regclass(): a catalog read with this statement's snapshot
        # sees a schema another transaction committed while this one waited for the lock.
        # One statement, so one snapshot: a schema another process commits meanwhile
        # is seen whole or not at all (never its tables without asyncflow_schema).
        ours, tables = await db.fetchrow(
            "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename = 'asyncflow_schema'), "
            "(SELECT count(*) FROM pg_tables WHERE schemaname = current_schema())"
        )
        if not ours:
            if tables:
                raise JournalError(
                    f"{self.url}: the database holds {tables} table(s) but is not an "
                    "asyncflow journal (no asyncflow_schema table); give the journal a "
                    "database (or schema) of its own"
                )
            return 0
        version = int(await db.fetchval("SELECT max(version) FROM asyncflow_schema"))
        if version > sql.SCHEMA_VERSION:
            raise JournalError(
                f"{self.url}: journal schema version {version} is newer than asyncflow "
                f"{__version__} supports (schema version {sql.SCHEMA_VERSION}); upgrade "
                "asyncflow, or use another database"
            )
        return version

    async def fetch(self, statement: str, *args: Any, doing: str = "read the journal") -> list[Any]:
        """Rows of one statement (its own transaction), sent again on a new connection
        if its connection was lost: only for statements that are safe to send twice.

        Raises:
            Unreachable: the database stayed unreachable for longer than the patience.
            JournalError: the statement failed.
        """
        rows: list[Any] = await self.retrying(lambda db: db.fetch(statement, *args), doing=doing)
        return rows

    async def retrying(
        self,
        work: Callable[[Any], Awaitable[T]],
        *,
        doing: str,
        transaction: bool = False,
        landed: str | None = None,
    ) -> T:
        """``work(connection)`` (in a transaction if asked), done again on a new
        connection while the database is unreachable, up to the patience.

        ``landed``: a unique constraint that only a first sending of ``work`` can
        have filled (the primary key of rows it inserts, under ids nobody else
        uses). Its violation, when ``work`` is sent again after a lost connection,
        says the first sending committed: :class:`Landed` is raised.

        Raises:
            Landed: see ``landed``.
            Unreachable: the database stayed unreachable for longer than the patience.
            JournalError: ``work`` failed.
        """
        resent = False
        pause = _FIRST_PAUSE
        while True:
            try:
                with self.errors(doing):
                    result = await self._once(work, transaction)
            except _Lost as lost:
                await self._wait_out(lost.cause, doing, pause)
                pause = min(pause * 2, _LONGEST_PAUSE)
                resent = True
                continue
            except JournalError as exc:
                cause = exc.__cause__
                if (
                    resent
                    and landed is not None
                    and isinstance(cause, self._unique)
                    and getattr(cause, "constraint_name", None) == landed
                ):
                    self._back()
                    raise Landed(landed) from None
                raise
            self._back()
            return result

    async def _once(self, work: Callable[[Any], Awaitable[T]], transaction: bool) -> T:
        try:
            async with self.pool.acquire() as db:
                try:
                    if not transaction:
                        return await work(db)
                    async with db.transaction():
                        return await work(db)
                except self._internal as exc:
                    db.terminate()  # never handed out again: the pool connects anew
                    raise _Lost(exc) from exc
                except self._interface as exc:
                    if db.is_closed():
                        raise _Lost(exc) from exc
                    raise
        except self._lost as exc:
            raise _Lost(exc) from exc

    async def _wait_out(self, cause: BaseException, doing: str, pause: float) -> None:
        """Pause before the next try, or give up: the patience is spent."""
        now = self._monotonic()
        if self._down_since is None:
            self._down_since = now
            _log.warning(
                "journal.unreachable",
                url=self.url,
                error=_message(cause, None),
                patience=self.patience,
            )
        waited = now - self._down_since
        if waited >= self.patience:
            error = Unreachable(
                f"{self.url}: cannot {doing}: the database has been unreachable for "
                f"{waited:.1f} s (patience {self.patience:g} s); last error: "
                f"{_message(cause, None)}"
            )
            error.__cause__ = cause
            raise error
        await anyio.sleep(min(pause * (0.5 + random.random() / 2), self.patience - waited))

    def _back(self) -> None:
        if self._down_since is not None:
            down = self._monotonic() - self._down_since
            self._down_since = None
            _log.warning("journal.reachable_again", url=self.url, seconds=round(down, 3))

    async def search(self, statement: str, *args: Any, doing: str) -> list[Any]:
        """Rows of a statement that reads a whole table whatever its plan (a text
        search), with the sequential scan the journal's connections otherwise
        avoid (_SETTINGS): half the time of walking an index from end to end."""
        async with self.transaction(doing) as db:
            await db.execute("SET LOCAL enable_seqscan = on")
            return list(await db.fetch(statement, *args))

    async def write(
        self, statement: str, *args: Any, doing: str, landed: str | None = None
    ) -> list[Any]:
        """One write statement, its own transaction, shielded; its RETURNING rows.

        A deadlock or serialization failure (PostgreSQL rolled it back) is tried
        again, and so is a statement whose connection was lost (see :meth:`fetch`
        and, for ``landed``, :meth:`retrying`).
        """
        with anyio.CancelScope(shield=True):
            for attempt in range(3):
                try:
                    rows: list[Any] = await self.retrying(
                        lambda db: db.fetch(statement, *args), doing=doing, landed=landed
                    )
                    return rows
                except JournalError as exc:
                    if attempt == 2 or not self.collided(exc):
                        raise
        raise AssertionError("unreachable")

    def collided(self, error: JournalError) -> bool:
        """Whether ``error`` is a deadlock or serialization failure: PostgreSQL rolled
        the transaction back, and trying it again is safe."""
        return isinstance(error.__cause__, self._retryable)

    async def try_write(self, statement: str, *args: Any, doing: str) -> list[Any] | None:
        """One write statement, its own transaction, shielded; its RETURNING rows, or
        None if it collided with another transaction (a row it inserted meanwhile)."""
        with anyio.CancelScope(shield=True):
            try:
                return await self.fetch(statement, *args, doing=doing)
            except JournalError as exc:
                if isinstance(exc.__cause__, self._conflicts):
                    return None
                raise
        return None  # (a shielded scope cannot end otherwise)

    @contextlib.asynccontextmanager
    async def transaction(self, doing: str) -> AsyncIterator[Any]:
        """A connection in a transaction, committed at the end, shielded."""
        with anyio.CancelScope(shield=True), self.errors(doing):
            async with self.pool.acquire() as db, db.transaction():
                yield db

    @contextlib.contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Turn the driver's and the network's errors into :class:`JournalError`."""
        try:
            yield
        except self._errors as exc:
            error = JournalError(f"{self.url}: cannot {doing}: {_message(exc, None)}")
            error.__cause__ = exc
            raise error from exc


async def _keep(connection: Any) -> None:
    """What a connection going back to the pool needs besides asyncpg's rollback of an
    open transaction: nothing. The journal leaves no session state behind (no
    session advisory locks, cursors, LISTEN or SET; its advisory lock is the
    transaction's), so the default reset statement would be a round trip per
    statement for nothing."""


_SEPARATOR: Final = "\x1f"  # (ASCII's unit separator: no task id, family or JSON text holds it)


def joined(columns: Sequence[Sequence[str]]) -> tuple[list[str], str]:
    """Lists of texts as one string each, for ``(string_to_array($n, separator))[2:]``,
    and the separator.

    The driver encodes a ``text[]`` parameter value by value: 10,000 task ids cost
    3.8 ms a statement, as one string 0.6 ms. Each text follows the separator (an
    empty text survives the split; an empty list is ``''``). The separator is a
    control character no value holds, else a random string none holds.
    """
    separator = _SEPARATOR
    while True:
        texts = [separator + separator.join(column) if column else "" for column in columns]
        if all(
            text.count(separator) == len(column)
            for text, column in zip(texts, columns, strict=True)
        ):
            return texts, separator
        separator = f"\x1f{secrets.token_hex(8)}\x1e"


def _message(exc: BaseException, url: str | None) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if url is not None:
        text = text.replace(url, redacted(url))
        password = _password(url)
        if password:
            text = text.replace(password, "***")
    return text


def _password(url: str) -> str | None:
    try:
        return urllib.parse.urlsplit(url).password
    except ValueError:
        return None
