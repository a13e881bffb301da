"""Tables in a warehouse as targets: :class:`TableTarget` and its marker protocol.

A file target is complete when the file exists. A table is different: it may
exist, and even hold rows, while a load is half done or has failed. So a
:class:`TableTarget` counts as complete only when its **marker** is there: one
row ``(table_name, partition_key, rows, loaded_at)`` in a small marker table
(``asyncflow_markers`` by default, beside the data). The load writes the marker
itself, in the same transaction as the rows (DuckDB, PostgreSQL), or right
after a load job that replaced the whole partition (BigQuery), so rows without
a marker never count and a half-finished load is simply loaded again. Luigi's
SQL targets keep the same kind of ``table_updates`` table.

A target is one partition of a table (``partition="2026-11-23"``) or, with
``partition=None``, the whole table. Loads are **create-only**: writing a
partition that already has a marker raises :class:`~asyncflow.TargetError`
naming the table and the partition, unless ``overwrite=True`` is passed. A
load replaces every row of its partition (of the whole table, without a
partition), so a partition never holds two loads' rows.

Each backend implements four hooks, all async (a synchronous driver runs them
in a worker thread): :meth:`TableTarget._marker_exists`,
:meth:`TableTarget._load`, :meth:`TableTarget._read` and
:meth:`TableTarget._delete`. Before committing a load, a backend calls
:meth:`TableTarget._check_commit`: the engine refuses the commit of an attempt
that was abandoned or that lost its journal lease, as it does for file writes.

Fencing: that last look answers from what the process knows, without asking
the journal, and it is check-then-act: a writer can pass it and still commit
after a newer holder took the task over. So the SQL backends also fence a
load in its own transaction. A load by an attempt holding a journal lease
(its :data:`~asyncflow.targets.base.writer_identity` has a token) upserts the
partition's row in a small fence table beside the markers
(``asyncflow_fence``: table, partition, token, run, task, attempt, time),
and the upsert only takes when the stored token is not greater than the
writer's (:func:`fence_upsert`). Otherwise the load is rolled back and fails
naming the target, the stale token and the newer one: a stale writer never
replaces the rows a newer holder committed. A stale load still in flight
when the newer one starts holds it back until it ends (PostgreSQL: the fence
row's lock; DuckDB: one writer at a time); the newer load then replaces its
rows with ``overwrite=True``, and without it is refused as already loaded,
as a create-only S3 write is. Loads without a token (``journal=None``, or
outside a run) neither look at nor touch the fence.
:meth:`TableTarget.remove` deletes the fence row with the marker, as a
deleted object takes its token with it on S3; that is also the way out for a
partition fenced under another journal (tokens of two journals do not compare).
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import re
from typing import TYPE_CHECKING, Any, BinaryIO, Final, TypeAlias

from ...errors import TargetError, TargetNotFoundError
from ..base import AtomicWriter, Target, WriterIdentity, check_commit, writer_identity

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_FENCE_TABLE",
    "DEFAULT_MARKER_TABLE",
    "DEFAULT_PARTITION_COLUMN",
    "Partition",
    "TableTarget",
    "quote_ident",
    "quote_name",
]

DEFAULT_MARKER_TABLE: Final = "asyncflow_markers"
"""The marker table's name, beside the data (same schema or dataset)."""

DEFAULT_FENCE_TABLE: Final = "asyncflow_fence"
"""The fence table's name, beside the marker table (same schema)."""

DEFAULT_PARTITION_COLUMN: Final = "partition_key"
"""The text column holding a row's partition key, in partitioned SQL tables."""

Partition: TypeAlias = str | dt.date | None
"""A partition key: text, a date (or a datetime, for hourly partitions), or None."""

_NAME_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]*")


def quote_ident(name: str) -> str:
    """One double-quoted SQL identifier (a column), whatever characters it holds."""
    return '"' + name.replace('"', '""') + '"'


def quote_name(name: str, *, what: str = "table") -> str:
    """``schema.table`` as a double-quoted SQL identifier, each part quoted.

    Raises:
        ValueError: ``name`` is empty or has an empty part.
    """
    parts = name.split(".")
    if not name or any(not part for part in parts):
        raise ValueError(f"invalid {what} name {name!r}: expected NAME or SCHEMA.NAME")
    return ".".join(quote_ident(part) for part in parts)


def marker_ddl(marker: str) -> str:
    """The marker table of the SQL backends (``marker`` already quoted)."""
    return (
        f"CREATE TABLE IF NOT EXISTS {marker} ("
        "table_name TEXT NOT NULL, partition_key TEXT NOT NULL, "
        "row_count BIGINT NOT NULL, loaded_at TIMESTAMPTZ NOT NULL, "
        "PRIMARY KEY (table_name, partition_key))"
    )


def fence_ddl(fence: str) -> str:
    """The fence table of the SQL backends (``fence`` already quoted)."""
    return (
        f"CREATE TABLE IF NOT EXISTS {fence} ("
        "table_name TEXT NOT NULL, partition_key TEXT NOT NULL, token BIGINT NOT NULL, "
        "run_id TEXT NOT NULL, task_id TEXT NOT NULL, attempt BIGINT NOT NULL, "
        "fenced_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (table_name, partition_key))"
    )


def fence_upsert(fence: str) -> str:
    """Take the fence of a partition for a writer, unless a greater token holds it.

    Parameters ``$1``..``$6``: table, partition key, token, run id, task id,
    attempt. Returns a row when the fence was taken and none when a greater
    token holds it; in PostgreSQL the upsert also locks the fence row until
    the transaction ends, so concurrent loads of the partition take turns.
    Both SQL backends run this one statement.
    """
    return (
        f"INSERT INTO {fence} AS f VALUES ($1, $2, $3, $4, $5, $6, current_timestamp) "
        "ON CONFLICT (table_name, partition_key) DO UPDATE SET token = excluded.token, "
        "run_id = excluded.run_id, task_id = excluded.task_id, attempt = excluded.attempt, "
        "fenced_at = excluded.fenced_at WHERE f.token <= excluded.token RETURNING 1"
    )


def fence_holder(fence: str) -> str:
    """The token and run that hold a partition's fence (parameters ``$1``, ``$2``)."""
    return f"SELECT token, run_id FROM {fence} WHERE table_name = $1 AND partition_key = $2"


def partition_text(partition: Partition) -> str | None:
    """The partition key as stored in the marker: ISO text for dates, as given for text."""
    if partition is None:
        return None
    if isinstance(partition, dt.datetime):
        return partition.strftime("%Y-%m-%dT%H")
    if isinstance(partition, dt.date):
        return partition.isoformat()
    if isinstance(partition, str) and partition:
        return partition
    raise ValueError(f"invalid partition {partition!r}: expected a non-empty str, a date or None")


class TableTarget(Target):
    """One partition of a warehouse table (or the whole table), loaded whole.

    Complete when the load's marker is there (see the module docstring).
    Tasks return one from ``output()`` like any target; the engine probes it
    with :meth:`exists`. Data goes in with :meth:`write_dataframe` and comes
    out with :meth:`read_dataframe`; :meth:`Target.open` does not apply to a
    table and raises.
    """

    __slots__ = ("marker_table", "partition", "partition_key", "table")

    def __init__(
        self,
        table: str,
        partition: Partition = None,
        *,
        marker_table: str | None = None,
    ) -> None:
        if not isinstance(table, str) or not table.strip():
            raise ValueError(f"{type(self).__name__}: invalid table name {table!r}")
        if marker_table is None:  # beside the table: same schema (or dataset)
            schema = table.rpartition(".")[0]
            marker_table = f"{schema}.{DEFAULT_MARKER_TABLE}" if schema else DEFAULT_MARKER_TABLE
        self.table = table
        self.partition = partition
        self.partition_key = partition_text(partition)
        self.marker_table = marker_table

    # What each backend says about itself.

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the table lives (a file, a server), for messages; never a password."""

    def _identity(self) -> tuple[Any, ...]:
        return (self.location, self.table, self.partition_key, self.marker_table)

    def __repr__(self) -> str:
        where = f", partition={self.partition_key!r}" if self.partition_key is not None else ""
        return f"{type(self).__name__}({self.location!r}, {self.table!r}{where})"

    def __eq__(self, other: object) -> bool:
        if type(other) is type(self):
            assert isinstance(other, TableTarget)
            return self._identity() == other._identity()
        return NotImplemented

    def __hash__(self) -> int:
        return hash((type(self), self._identity()))

    @property
    def description(self) -> str:
        """``table 'reports' partition '2026-11-23'`` (or ``table 'reports'``), for messages."""
        text = f"table {self.table!r}"
        if self.partition_key is not None:
            text += f" partition {self.partition_key!r}"
        return f"{text} in {self.location}"

    # The public surface.

    async def exists(self) -> bool:
        """Whether the partition (or table) has been loaded: its marker is there.

        Raises:
            TargetError: the database could not be asked; the message names it.
        """
        return await self._marker_exists()

    async def write_dataframe(self, frame: pd.DataFrame, *, overwrite: bool = False) -> None:
        """Load ``frame`` as the partition's rows, and its marker, all or nothing.

        The table (and the marker table) are created on first use from the
        frame's columns. Every row the partition held before is replaced.

        Raises:
            TargetError: the partition is already loaded (its marker is there)
                and ``overwrite`` is false; or the load failed, in which case
                nothing of it is visible. The message names the table and
                partition.
            TypeError: ``frame`` is not a pandas DataFrame.
        """
        self._check_frame(frame)
        try:
            await self._load(frame, overwrite)
        except TargetError:
            raise
        except Exception as error:
            raise TargetError(f"{self!r}: loading {self.description} failed: {error}") from error

    async def read_dataframe(self) -> pd.DataFrame:
        """The rows of the partition (of the table), without the partition column.

        Raises:
            TargetNotFoundError: the partition has not been loaded (no marker).
            TargetError: the read failed; the message names the table.
        """
        try:
            frame = await self._read()
        except TargetError:
            raise
        except Exception as error:
            raise TargetError(f"{self!r}: reading {self.description} failed: {error}") from error
        if frame is None:
            raise TargetNotFoundError(f"{self!r}: {self.description} has not been loaded")
        return frame

    async def remove(self) -> None:
        """Delete the partition's rows and its marker, in one transaction where possible.

        Nothing happens if the table or the marker table does not exist.
        """
        try:
            await self._delete()
        except TargetError:
            raise
        except Exception as error:
            raise TargetError(f"{self!r}: removing {self.description} failed: {error}") from error

    def _check_frame(self, frame: Any) -> None:
        try:
            import pandas as pd
        except ImportError as error:  # pragma: no cover - every backend extra brings pandas
            raise TargetError(f"{self!r}: write_dataframe() needs pandas: {error}") from None
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(
                f"{self!r}: write_dataframe() takes a pandas DataFrame, not {type(frame).__name__}"
            )
        names = [str(name) for name in frame.columns]
        if len(set(names)) != len(names):
            raise TargetError(f"{self!r}: the frame has duplicate column names: {names}")

    def _check_commit(self) -> None:
        """Raise when the engine forbids committing now (abandoned attempt, lost lease)."""
        check_commit(self)

    @property
    def fence_table(self) -> str:
        """The fence table's name: :data:`DEFAULT_FENCE_TABLE` in the marker table's schema."""
        schema = self.marker_table.rpartition(".")[0]
        return f"{schema}.{DEFAULT_FENCE_TABLE}" if schema else DEFAULT_FENCE_TABLE

    @staticmethod
    def _fenced_writer() -> WriterIdentity | None:
        """The attempt writing, when it holds a lease whose token fences its loads."""
        writer = writer_identity.get()
        return writer if writer is not None and writer.token is not None else None

    def _fence_params(self, writer: WriterIdentity) -> list[Any]:
        """The parameters of :func:`fence_upsert` for this partition and ``writer``."""
        return [
            self.table,
            self.partition_key or "",
            writer.token,
            writer.run_id,
            writer.task_id,
            writer.attempt,
        ]

    def _stale_writer(self, writer: WriterIdentity, holder: Any) -> TargetError:
        """The error of a load refused by the fence; ``holder`` is its (token, run_id) row."""
        newer, run = (holder[0], holder[1]) if holder else ("?", "?")
        return TargetError(
            f"{self!r}: load not committed: {self.description} was loaded under lease "
            f"token {newer} (run {run}), newer than this attempt's {writer.token} (another "
            f"process took the task over; the fence is in {self.fence_table!r})"
        )

    def _already_loaded(self) -> TargetError:
        return TargetError(
            f"{self!r}: {self.description} is already loaded (its marker is in "
            f"{self.marker_table!r}); pass overwrite=True to replace it, or remove() it first"
        )

    # Backend hooks.

    @abc.abstractmethod
    async def _marker_exists(self) -> bool:
        """Whether the marker row is there (False when the marker table is absent)."""

    @abc.abstractmethod
    async def _load(self, frame: pd.DataFrame, overwrite: bool) -> None:
        """Replace the partition's rows with ``frame`` and write the marker.

        Raise :meth:`_already_loaded` when the marker is there and not
        ``overwrite``; call :meth:`_check_commit` just before committing.
        """

    @abc.abstractmethod
    async def _read(self) -> pd.DataFrame | None:
        """The partition's rows, or None when its marker is absent."""

    @abc.abstractmethod
    async def _delete(self) -> None:
        """Delete the partition's rows and its marker."""

    # Files do not apply to tables.

    def _not_a_file(self) -> TargetError:
        return TargetError(
            f"{self!r} is a table: use read_dataframe() and write_dataframe(), not open()"
        )

    async def _aopen_reader(self) -> BinaryIO:
        raise self._not_a_file()

    async def _aopen_writer(self) -> AtomicWriter:
        raise self._not_a_file()


def rollback_quietly(connection: Any) -> None:
    """Roll back a DB-API connection's transaction, if one is still open.

    After a failed COMMIT there may be none left; the error that got here
    matters more than the rollback's.
    """
    with contextlib.suppress(Exception):
        connection.execute("ROLLBACK")


def require(module: str, extra: str, owner: str) -> Any:
    """Import ``module`` for a backend, or raise an error naming the extra to install.

    Raises:
        TargetError: the module is not installed.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise TargetError(
            f"{owner} needs {module} ({error}): pip install 'asyncflow[{extra}]'"
        ) from None
