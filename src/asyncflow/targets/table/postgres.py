"""Tables in PostgreSQL: :class:`PostgresTarget` (asyncpg).

Each call opens a connection of its own (``asyncpg.connect``) and closes it:
targets are many and short-lived, and a probe is one query. A load is one
transaction: it upserts the marker first, which takes the marker row's lock,
so two processes loading the same partition at once queue behind each other
and the second finds the marker (and refuses, unless told to overwrite);
then it creates the table if needed, deletes the partition's previous rows
and copies the frame in with ``COPY`` (binary). Readers see the marker and
the rows together, or neither. A load under a lease token takes the
partition's fence before the marker, in the same transaction (see
:mod:`asyncflow.targets.table.base`): the upsert locks the fence row, so a
load stalled before its COMMIT holds back a newer holder's load until it
commits or rolls back, and the newer one then replaces its rows; once the
newer holder committed, the stale load is refused.

Columns are typed from the frame when the table is created: booleans,
integers (``BIGINT``), floats (``DOUBLE PRECISION``), timestamps with and
without a time zone, dates, text, bytes. ``asyncpg`` is imported on first
use, in a worker thread (install ``asyncflow[postgres]``).
"""

from __future__ import annotations

import sys
import urllib.parse
from typing import TYPE_CHECKING, Any, Final

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
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PostgresTarget"]

_CONNECT_TIMEOUT: Final = 30.0
_DDL_LOCK: Final = 0x6173796E63666C6F  # "asyncflo": the advisory lock around table creation


def _redacted(dsn: str) -> str:
    """The DSN without its password (for messages and reprs)."""
    parts = urllib.parse.urlsplit(dsn)
    if parts.password is None:
        return dsn
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


async def _asyncpg() -> Any:
    module = sys.modules.get("asyncpg")
    if module is None:  # the first import takes a while: not on the loop
        module = await anyio.to_thread.run_sync(require, "asyncpg", "postgres", "PostgresTarget")
    return module


def _sql_type(name: str, series: pd.Series[Any]) -> str:
    """The PostgreSQL column type for a frame column.

    Raises:
        TargetError: no type fits the column; the message names it.
    """
    import pandas as pd
    from pandas.api import types

    dtype = series.dtype
    if types.is_bool_dtype(dtype):
        return "BOOLEAN"
    if types.is_integer_dtype(dtype):
        return "BIGINT"
    if types.is_float_dtype(dtype):
        return "DOUBLE PRECISION"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "TIMESTAMPTZ"
    if types.is_datetime64_dtype(dtype):
        return "TIMESTAMP"
    if types.is_timedelta64_dtype(dtype):
        return "INTERVAL"
    inferred = types.infer_dtype(series, skipna=True)
    by_values = {"string": "TEXT", "empty": "TEXT", "date": "DATE", "bytes": "BYTEA"}
    if inferred in by_values:
        return by_values[inferred]
    raise TargetError(f"column {name!r}: no PostgreSQL type for dtype {dtype} ({inferred} values)")


def _records(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """The frame's rows as Python values, missing values as None (for COPY)."""
    boxed = frame.astype(object)
    boxed = boxed.where(frame.notna(), None)
    return list(boxed.itertuples(index=False, name=None))


def _frame(names: list[str], rows: list[Any]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame.from_records([tuple(row) for row in rows], columns=names)


class PostgresTarget(TableTarget):
    """A table (or one partition of it) in a PostgreSQL database.

    ::

        PostgresTarget("postgresql://etl@db:5432/warehouse", "reports", partition=day)

    ``dsn`` is a libpq URL (a password may come from ``PGPASSWORD`` or
    ``~/.pgpass`` instead, as asyncpg reads them); ``table`` is ``NAME`` or
    ``SCHEMA.NAME``; ``partition`` a key (text or a date) or None for the
    whole table; ``partition_column`` the text column that holds the key in
    partitioned tables. The marker table goes to the table's schema unless
    ``marker_table`` names one.
    """

    __slots__ = ("dsn", "partition_column")

    def __init__(
        self,
        dsn: str,
        table: str,
        partition: Partition = None,
        *,
        partition_column: str = DEFAULT_PARTITION_COLUMN,
        marker_table: str | None = None,
    ) -> None:
        super().__init__(table, partition, marker_table=marker_table)
        if not dsn.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                "PostgresTarget: expected a postgresql://USER@HOST:PORT/DB URL, "
                f"got {_redacted(dsn)!r}"
            )
        self.dsn = dsn
        self.partition_column = partition_column
        quote_name(table)
        quote_name(self.marker_table, what="marker table")

    @property
    def location(self) -> str:
        return _redacted(self.dsn)

    def _identity(self) -> tuple[Any, ...]:
        return (*super()._identity(), self.dsn, self.partition_column)

    async def _connect(self) -> Any:
        asyncpg = await _asyncpg()
        try:
            return await asyncpg.connect(self.dsn, timeout=_CONNECT_TIMEOUT)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
            raise TargetError(f"{self!r}: cannot connect to {self.location}: {error}") from error

    def _marker_key(self) -> tuple[str, str]:
        return (self.table, self.partition_key or "")

    @staticmethod
    async def _tables_exist(connection: Any, *names: str) -> bool:
        for name in names:
            if await connection.fetchval("SELECT to_regclass($1)", name) is None:
                return False
        return True

    async def _marker_row(self, connection: Any) -> bool:
        marker = quote_name(self.marker_table)
        if await connection.fetchval("SELECT to_regclass($1)", marker) is None:
            return False
        found = await connection.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {marker} WHERE table_name = $1 AND partition_key = $2)",
            *self._marker_key(),
        )
        return bool(found)

    # The hooks.

    async def _marker_exists(self) -> bool:
        connection = await self._connect()
        try:
            return await self._marker_row(connection)
        except TargetError:
            raise
        except Exception as error:
            raise TargetError(f"{self!r}: cannot probe {self.description}: {error}") from error
        finally:
            await connection.close()

    async def _load(self, frame: pd.DataFrame, overwrite: bool) -> None:
        names = [str(name) for name in frame.columns]
        partitioned = self.partition_key is not None
        if partitioned and self.partition_column in names:
            raise TargetError(
                f"{self!r}: the frame has a column named {self.partition_column!r}, which "
                "holds the partition key here; rename it or pass another partition_column="
            )
        try:
            columns = [
                f"{quote_ident(name)} {_sql_type(name, frame[column])}"
                for name, column in zip(names, frame.columns, strict=True)
            ]
        except TargetError as error:
            raise TargetError(f"{self!r}: {error}") from None
        if partitioned:
            columns.append(f"{quote_ident(self.partition_column)} TEXT NOT NULL")
            frame = frame.assign(**{self.partition_column: self.partition_key})
        records = await anyio.to_thread.run_sync(_records, frame)
        writer = self._fenced_writer()
        connection = await self._connect()
        try:
            async with connection.transaction():
                if writer is not None:
                    await self._take_fence(connection, writer)
                await self._load_in(connection, columns, names, records, overwrite)
        finally:
            await connection.close()

    async def _take_fence(self, connection: Any, writer: WriterIdentity) -> None:
        """Take the partition's fence for ``writer``, or raise naming the newer token."""
        fence = quote_name(self.fence_table, what="fence table")
        if await connection.fetchval("SELECT to_regclass($1)", fence) is None:
            await self._create(connection, self.fence_table, fence_ddl(fence))
        params = self._fence_params(writer)
        if await connection.fetchval(fence_upsert(fence), *params) is None:
            holder = await connection.fetchrow(fence_holder(fence), *params[:2])
            raise self._stale_writer(writer, holder)

    @staticmethod
    async def _create(connection: Any, name: str, ddl: str) -> None:
        """Run ``ddl`` creating ``name`` (and its schema), taking turns with other loads."""
        # Two transactions creating one table at once: one of them fails on
        # PostgreSQL's catalog. The first loads of a database take turns.
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _DDL_LOCK)
        if "." in name:
            schema = quote_name(name.rpartition(".")[0], what="schema")
            await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await connection.execute(ddl)

    async def _load_in(
        self,
        connection: Any,
        columns: list[str],
        names: list[str],
        records: list[tuple[Any, ...]],
        overwrite: bool,
    ) -> None:
        marker, table = quote_name(self.marker_table), quote_name(self.table)
        if not await self._tables_exist(connection, marker, table):
            await self._create(connection, self.marker_table, marker_ddl(marker))
            await self._create(
                connection, self.table, f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(columns)})"
            )
        # The marker first: its row lock queues a concurrent load of the same partition.
        created = await connection.fetchval(
            f"INSERT INTO {marker} VALUES ($1, $2, $3, now()) "
            "ON CONFLICT (table_name, partition_key) DO NOTHING RETURNING 1",
            *self._marker_key(),
            len(records),
        )
        if created is None:
            if not overwrite:
                raise self._already_loaded()
            await connection.execute(
                f"UPDATE {marker} SET row_count = $3, loaded_at = now() "
                "WHERE table_name = $1 AND partition_key = $2",
                *self._marker_key(),
                len(records),
            )
        if self.partition_key is None:
            await connection.execute(f"DELETE FROM {table}")
        else:
            column = quote_ident(self.partition_column)
            await connection.execute(f"DELETE FROM {table} WHERE {column} = $1", self.partition_key)
            names = [*names, self.partition_column]
        schema, _, name = self.table.rpartition(".")
        await connection.copy_records_to_table(
            name, records=records, columns=names, schema_name=schema or None
        )
        self._check_commit()

    async def _read(self) -> pd.DataFrame | None:
        connection = await self._connect()
        try:
            # One snapshot for the marker and the rows.
            async with connection.transaction(isolation="repeatable_read", readonly=True):
                if not await self._marker_row(connection):
                    return None
                table = quote_name(self.table)
                if self.partition_key is None:
                    statement = await connection.prepare(f"SELECT * FROM {table}")
                    rows = await statement.fetch()
                else:
                    column = quote_ident(self.partition_column)
                    statement = await connection.prepare(
                        f"SELECT * FROM {table} WHERE {column} = $1"
                    )
                    rows = await statement.fetch(self.partition_key)
                names = [attribute.name for attribute in statement.get_attributes()]
        finally:
            await connection.close()
        frame = await anyio.to_thread.run_sync(_frame, names, rows)
        if self.partition_key is not None:
            frame = frame.drop(columns=[self.partition_column])
        return frame

    async def _delete(self) -> None:
        connection = await self._connect()
        try:
            async with connection.transaction():
                for name in (self.marker_table, self.fence_table):
                    bookkeeping = quote_name(name)
                    if await connection.fetchval("SELECT to_regclass($1)", bookkeeping):
                        await connection.execute(
                            f"DELETE FROM {bookkeeping} "
                            "WHERE table_name = $1 AND partition_key = $2",
                            *self._marker_key(),
                        )
                table = quote_name(self.table)
                if await connection.fetchval("SELECT to_regclass($1)", table) is not None:
                    if self.partition_key is None:
                        await connection.execute(f"DELETE FROM {table}")
                    else:
                        column = quote_ident(self.partition_column)
                        await connection.execute(
                            f"DELETE FROM {table} WHERE {column} = $1", self.partition_key
                        )
        finally:
            await connection.close()
