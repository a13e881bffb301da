"""Tables in a DuckDB file: :class:`DuckDBTarget`, the default local warehouse.

DuckDB is embedded and synchronous, so every call runs in a worker thread on
a connection of its own, closed at the end of the call: the event loop never
waits on DuckDB. Within one process DuckDB shares one database instance among
the connections to a file; loads into one file are still taken one at a time
(a lock per file), as DuckDB's optimistic transactions would otherwise fail
one of two loads creating the same table at once. Another *process* cannot
open the file while this one has it open (DuckDB's file lock): for several
processes, use :class:`~asyncflow.targets.table.PostgresTarget`.

The rows of a partition carry its key in a text column (``partition_key`` by
default); the load deletes the partition's previous rows, inserts the frame
and upserts the marker in one transaction; a load under a lease token takes
the partition's fence first, in that same transaction (see
:mod:`asyncflow.targets.table.base`). ``duckdb`` is imported on first
use, in the worker thread (install ``asyncflow[duckdb]``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio.to_thread

from ...errors import TargetError
from ..base import WriterIdentity
from .base import (
    DEFAULT_PARTITION_COLUMN,
    Partition,
    TableTarget,
    fence_ddl,
    fence_holder,
    fence_upsert,
    marker_ddl,
    quote_ident,
    quote_name,
    require,
    rollback_quietly,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DuckDBTarget"]

_T = TypeVar("_T")

_FRAME_VIEW: Final = "__asyncflow_frame"

_file_locks: dict[str, threading.Lock] = {}
_file_locks_guard = threading.Lock()


def _file_lock(path: str) -> threading.Lock:
    with _file_locks_guard:
        return _file_locks.setdefault(path, threading.Lock())


class DuckDBTarget(TableTarget):
    """A table (or one partition of it) in a DuckDB database file.

    ::

        DuckDBTarget("warehouse.duckdb", "reports", partition=date(2026, 11, 23))

    ``database`` is the file (created, with its folder, by the first load);
    ``table`` is ``NAME`` or ``SCHEMA.NAME``; ``partition`` a key (text or a
    date) or None for the whole table; ``partition_column`` the text column
    that holds the key in partitioned tables.
    """

    __slots__ = ("database", "partition_column")

    def __init__(
        self,
        database: str | os.PathLike[str],
        table: str,
        partition: Partition = None,
        *,
        partition_column: str = DEFAULT_PARTITION_COLUMN,
        marker_table: str | None = None,
    ) -> None:
        super().__init__(table, partition, marker_table=marker_table)
        self.database = Path(database)
        if str(database) in ("", ":memory:"):
            raise ValueError(
                f"DuckDBTarget: database must be a file path, not {str(database)!r} "
                "(each call opens its own connection, so an in-memory database would be empty)"
            )
        self.partition_column = partition_column
        quote_name(table)
        quote_name(self.marker_table, what="marker table")

    @property
    def location(self) -> str:
        return str(self.database)

    def _identity(self) -> tuple[Any, ...]:
        return (*super()._identity(), self.partition_column)

    # Running DuckDB in a worker thread, on a connection of its own.

    async def _call(self, work: Callable[[Any], _T], *, create: bool = False) -> _T | None:
        """Run ``work(connection)`` in a worker thread; None if the file does not exist."""
        return await anyio.to_thread.run_sync(self._call_sync, work, create)

    def _call_sync(self, work: Callable[[Any], _T], create: bool) -> _T | None:
        duckdb = require("duckdb", "duckdb", "DuckDBTarget")
        path = os.path.abspath(self.database)
        if not create and not os.path.exists(path):
            return None  # probing must not create the file
        if create:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        # One call at a time per file: DuckDB takes one writer at a time anyway,
        # and a connection opened while another thread registers a frame on the
        # same database can break that registration ("pandas_scan does not exist").
        with _file_lock(path):
            try:
                connection = duckdb.connect(path)
            except duckdb.Error as error:
                raise TargetError(f"{self!r}: cannot open {path}: {error}") from error
            try:
                return work(connection)
            finally:
                connection.close()

    def _has_table(self, connection: Any, name: str) -> bool:
        schema, _, table = name.rpartition(".")
        row = connection.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_name = ? AND (? = '' OR table_schema = ?)",
            [table, schema, schema],
        ).fetchone()
        return bool(row and row[0])

    def _marker_key(self) -> list[str]:
        return [self.table, self.partition_key or ""]

    def _marker_row(self, connection: Any) -> bool:
        if not self._has_table(connection, self.marker_table):
            return False
        row = connection.execute(
            f"SELECT count(*) FROM {quote_name(self.marker_table)} "
            "WHERE table_name = ? AND partition_key = ?",
            self._marker_key(),
        ).fetchone()
        return bool(row and row[0])

    # The hooks.

    async def _marker_exists(self) -> bool:
        try:
            return bool(await self._call(self._marker_row))
        except TargetError:
            raise
        except Exception as error:
            raise TargetError(f"{self!r}: cannot probe {self.description}: {error}") from error

    async def _load(self, frame: pd.DataFrame, overwrite: bool) -> None:
        if self.partition_key is not None and self.partition_column in map(str, frame.columns):
            raise TargetError(
                f"{self!r}: the frame has a column named {self.partition_column!r}, which "
                "holds the partition key here; rename it or pass another partition_column="
            )
        writer = self._fenced_writer()
        await self._call(
            lambda connection: self._load_sync(connection, frame, overwrite, writer), create=True
        )

    def _load_sync(
        self,
        connection: Any,
        frame: pd.DataFrame,
        overwrite: bool,
        writer: WriterIdentity | None,
    ) -> None:
        table, marker = quote_name(self.table), quote_name(self.marker_table)
        partitioned = self.partition_key is not None
        column = quote_ident(self.partition_column)
        extra = f", CAST($partition AS VARCHAR) AS {column}" if partitioned else ""
        params = {"partition": self.partition_key} if partitioned else {}
        connection.register(_FRAME_VIEW, frame)
        with _transaction(connection):
            if writer is not None:
                self._take_fence(connection, writer)
            if self._marker_row(connection) and not overwrite:
                raise self._already_loaded()
            _create_schemas(connection, self.table, self.marker_table)
            connection.execute(
                f"CREATE TABLE IF NOT EXISTS {table} AS SELECT *{extra} FROM {_FRAME_VIEW} LIMIT 0",
                params,
            )
            where = f" WHERE {column} = $partition" if partitioned else ""
            connection.execute(f"DELETE FROM {table}{where}", params)
            connection.execute(
                f"INSERT INTO {table} BY NAME SELECT *{extra} FROM {_FRAME_VIEW}", params
            )
            connection.execute(marker_ddl(marker))
            connection.execute(
                f"INSERT OR REPLACE INTO {marker} VALUES (?, ?, ?, current_timestamp)",
                [*self._marker_key(), len(frame)],
            )
            self._check_commit()

    def _take_fence(self, connection: Any, writer: WriterIdentity) -> None:
        """Take the partition's fence for ``writer``, or raise naming the newer token."""
        fence = quote_name(self.fence_table, what="fence table")
        _create_schemas(connection, self.fence_table)
        connection.execute(fence_ddl(fence))
        params = self._fence_params(writer)
        if not connection.execute(fence_upsert(fence), params).fetchall():
            holder = connection.execute(fence_holder(fence), params[:2]).fetchone()
            raise self._stale_writer(writer, holder)

    async def _read(self) -> pd.DataFrame | None:
        return await self._call(self._read_sync)

    def _read_sync(self, connection: Any) -> pd.DataFrame | None:
        connection.execute("BEGIN TRANSACTION")  # the marker and the rows of one snapshot
        try:
            if not self._marker_row(connection):
                return None
            table = quote_name(self.table)
            if self.partition_key is None:
                query, params = f"SELECT * FROM {table}", []
            else:
                column = quote_ident(self.partition_column)
                query = f"SELECT * EXCLUDE ({column}) FROM {table} WHERE {column} = ?"
                params = [self.partition_key]
            frame: pd.DataFrame = connection.execute(query, params).df()
            return frame
        finally:
            connection.execute("ROLLBACK")

    async def _delete(self) -> None:
        await self._call(self._delete_sync)

    def _delete_sync(self, connection: Any) -> None:
        with _transaction(connection):
            for bookkeeping in (self.marker_table, self.fence_table):
                if self._has_table(connection, bookkeeping):
                    connection.execute(
                        f"DELETE FROM {quote_name(bookkeeping)} "
                        "WHERE table_name = ? AND partition_key = ?",
                        self._marker_key(),
                    )
            if self._has_table(connection, self.table):
                table = quote_name(self.table)
                if self.partition_key is None:
                    connection.execute(f"DELETE FROM {table}")
                else:
                    column = quote_ident(self.partition_column)
                    connection.execute(
                        f"DELETE FROM {table} WHERE {column} = ?", [self.partition_key]
                    )


def _create_schemas(connection: Any, *names: str) -> None:
    """Create the schema of each ``SCHEMA.NAME`` in ``names``, if missing."""
    for name in names:
        if "." in name:
            schema = quote_name(name.rpartition(".")[0], what="schema")
            connection.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")


@contextlib.contextmanager
def _transaction(connection: Any) -> Iterator[None]:
    """BEGIN; COMMIT when the block succeeds, ROLLBACK when it raises."""
    connection.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        rollback_quietly(connection)
        raise
    connection.execute("COMMIT")
