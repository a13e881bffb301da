"""Tables in BigQuery: :class:`BigQueryTarget` (google-cloud-bigquery).

A target is one partition of a time-partitioned table, addressed with
BigQuery's partition decorator (``dataset.table$20261123``), or a whole table.
A load:

1. refuses if the partition's marker is there (unless ``overwrite=True``);
2. runs a **load job** of the frame, as parquet, into ``table$20261123`` with
   ``WRITE_TRUNCATE``: BigQuery replaces exactly that partition, atomically
   (the job commits all its rows or none), and creates the table, partitioned
   by ingestion time (or by ``partition_field``), if it is missing;
3. then writes the marker row (a ``MERGE`` keyed by table and partition) into
   ``dataset.asyncflow_markers``.

BigQuery has no transaction spanning a load job and a DML statement, so the
two steps are separate. That is safe because each is idempotent: if the
process dies between them, the partition holds the new rows without a
marker, the target counts as not loaded, and the rerun's ``WRITE_TRUNCATE``
replaces those rows again (no duplicates) before writing the marker. A
partition whose marker is there was always fully loaded first.

Fencing holds less here than in the SQL backends. What holds: the engine is
asked (:meth:`~asyncflow.targets.table.TableTarget._check_commit`) just
before the load job and again just before the marker, so an attempt that
finds its lease lost or its attempt abandoned there loads nothing, and the
journal refuses a stale holder's success whatever happened to the rows. What
does not: a load job cannot be made conditional on a fence row, and BigQuery
has no transaction spanning a load job and DML, so loads are not fenced by
lease token (no ``asyncflow_fence`` table is kept). A writer stalled after its
last look (a process stopped with its load job about to be sent, or sent but
not yet run) can still replace the partition's rows after a newer holder
loaded them; the marker then still counts the partition loaded. Such rows
come from another attempt of the same task (same parameters). Where that
matters, keep the journal's lease time-to-live well above a load's duration,
or load through a table of a SQL backend.

Table labels could hold markers too, but they belong to the table (64 at
most), not to a partition, so the marker table is used. A probe is one small
query on it (billed at BigQuery's minimum per query).

The client library is synchronous: every call runs in a worker thread. A
target makes its client on first use (``google.cloud.bigquery.Client`` with
the application default credentials), shared per project and location in the
process, unless one is passed in. Install ``asyncflow[bigquery]``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio.to_thread

from ...errors import TargetError
from .base import Partition, TableTarget, require

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BigQueryTarget"]

_T = TypeVar("_T")

_DECORATOR = re.compile(r"\d{4}(\d{2}){0,3}")
_PARTITION_TYPES: Final = {4: "YEAR", 6: "MONTH", 8: "DAY", 10: "HOUR"}
_URL_PREFIX: Final = "bigquery://"

_clients: dict[tuple[str | None, str | None], Any] = {}
_clients_guard = threading.Lock()


def decorator(partition: Partition) -> str | None:
    """BigQuery's partition decorator for ``partition``: ``20261123``, ``2026112305``...

    Raises:
        ValueError: ``partition`` is not a date, a datetime (hourly) or such digits.
    """
    if partition is None:
        return None
    if isinstance(partition, dt.datetime):
        return partition.strftime("%Y%m%d%H")
    if isinstance(partition, dt.date):
        return partition.strftime("%Y%m%d")
    text = partition.replace("-", "") if isinstance(partition, str) else ""
    if _DECORATOR.fullmatch(text):
        return text
    raise ValueError(
        f"invalid BigQuery partition {partition!r}: expected a date, a datetime (hourly "
        "partitions), or YYYY, YYYYMM, YYYYMMDD or YYYYMMDDHH"
    )


def _split_table(name: str) -> tuple[str | None, str, str | None]:
    """``[bigquery://][PROJECT.]DATASET.TABLE[$DECORATOR]`` as its three parts."""
    text = name.removeprefix(_URL_PREFIX)
    text, _, suffix = text.partition("$")
    parts = text.replace(":", ".", 1).split(".") if ":" in text else text.split(".")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(
            f"invalid BigQuery table {name!r}: expected DATASET.TABLE or PROJECT.DATASET.TABLE, "
            "optionally with a $PARTITION decorator"
        )
    project = parts[0] if len(parts) == 3 else None
    return project, ".".join(parts[-2:]), suffix or None


def _default_client(project: str | None, location: str | None) -> Any:
    bigquery = require("google.cloud.bigquery", "bigquery", "BigQueryTarget")
    with _clients_guard:
        client = _clients.get((project, location))
        if client is None:
            client = _clients[(project, location)] = bigquery.Client(
                project=project, location=location
            )
        return client


class BigQueryTarget(TableTarget):
    """A BigQuery table, or one partition of it.

    ::

        BigQueryTarget("analytics.reports", partition=date(2026, 11, 23))
        BigQueryTarget("bigquery://my-project.analytics.reports$20261123")

    ``table`` is ``DATASET.TABLE`` or ``PROJECT.DATASET.TABLE``, optionally
    prefixed with ``bigquery://`` and suffixed with a partition decorator;
    ``partition`` a date (daily), a datetime (hourly) or decorator digits;
    ``partition_field`` the column a column-partitioned table is partitioned
    on (default: partitioned by ingestion time); ``client`` a
    ``google.cloud.bigquery.Client`` (default: one per project and location,
    with the application default credentials). The marker table defaults to
    ``DATASET.asyncflow_markers``.
    """

    __slots__ = ("_client", "location_name", "partition_field", "project")

    def __init__(
        self,
        table: str,
        partition: Partition = None,
        *,
        project: str | None = None,
        location: str | None = None,
        partition_field: str | None = None,
        marker_table: str | None = None,
        client: Any = None,
    ) -> None:
        named_project, name, suffix = _split_table(table)
        if suffix is not None:
            if partition is not None:
                raise ValueError(
                    f"BigQueryTarget: {table!r} has a partition decorator and partition= "
                    f"{partition!r} was given too: pass one of them"
                )
            partition = suffix
        key = decorator(partition)
        super().__init__(name, key, marker_table=marker_table)
        self.partition = partition
        self.project = named_project or project or getattr(client, "project", None)
        self.location_name = location
        self.partition_field = partition_field
        self._client = client
        _split_table(self.marker_table)  # checked now rather than at the first load

    @property
    def location(self) -> str:
        return f"{_URL_PREFIX}{self.project}" if self.project else _URL_PREFIX.rstrip("/")

    def __repr__(self) -> str:
        where = f"${self.partition_key}" if self.partition_key is not None else ""
        return f"{type(self).__name__}({self._qualified(self.table) + where!r})"

    def _identity(self) -> tuple[Any, ...]:
        return (*super()._identity(), self.project, self.partition_field)

    def _qualified(self, name: str) -> str:
        if self.project is None or name.count(".") >= 2:
            return name
        return f"{self.project}.{name}"

    @property
    def destination(self) -> str:
        """The load's destination: ``project.dataset.table$20261123`` (or the table)."""
        suffix = f"${self.partition_key}" if self.partition_key is not None else ""
        return self._qualified(self.table) + suffix

    # Running the client in a worker thread.

    def client(self) -> Any:
        """The ``google.cloud.bigquery.Client`` this target uses (made on first use)."""
        if self._client is None:
            self._client = _default_client(self.project, self.location_name)
            if self.project is None:
                self.project = self._client.project
        return self._client

    async def _call(self, work: Callable[[Any, Any], _T]) -> _T:
        def call() -> _T:
            bigquery = require("google.cloud.bigquery", "bigquery", "BigQueryTarget")
            return work(bigquery, self.client())

        return await anyio.to_thread.run_sync(call)

    def _marker_params(self, bigquery: Any, *extra: Any) -> Any:
        return bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter("table", "STRING", self.table),
                bigquery.ScalarQueryParameter("partition", "STRING", self.partition_key or ""),
                *extra,
            ]
        )

    def _query(self, bigquery: Any, client: Any, sql: str, *extra: Any) -> list[Any]:
        rows = client.query_and_wait(
            sql, job_config=self._marker_params(bigquery, *extra), location=self.location_name
        )
        return list(rows)

    def _marker_sync(self, bigquery: Any, client: Any) -> bool:
        from google.api_core.exceptions import NotFound

        try:
            rows = self._query(
                bigquery,
                client,
                f"SELECT COUNT(*) AS n FROM `{self._qualified(self.marker_table)}` "
                "WHERE table_name = @table AND partition_key = @partition",
            )
        except NotFound:  # no marker table (or dataset) yet: nothing was loaded
            return False
        return bool(rows and rows[0][0])

    # The hooks.

    async def _marker_exists(self) -> bool:
        try:
            return await self._call(self._marker_sync)
        except TargetError:
            raise
        except Exception as error:
            raise TargetError(f"{self!r}: cannot probe {self.description}: {error}") from error

    async def _load(self, frame: pd.DataFrame, overwrite: bool) -> None:
        await self._call(
            lambda bigquery, client: self._load_sync(bigquery, client, frame, overwrite)
        )

    def _load_job_config(self, bigquery: Any) -> Any:
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
            create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
        )
        if self.partition_key is not None:
            config.time_partitioning = bigquery.TimePartitioning(
                type_=_PARTITION_TYPES[len(self.partition_key)], field=self.partition_field
            )
        return config

    def _load_sync(self, bigquery: Any, client: Any, frame: pd.DataFrame, overwrite: bool) -> None:
        if not overwrite and self._marker_sync(bigquery, client):
            raise self._already_loaded()
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        size = buffer.tell()
        buffer.seek(0)
        self._check_commit()  # the load replaces the partition: not after a lost lease
        job = client.load_table_from_file(
            buffer,
            self.destination,
            size=size,
            job_config=self._load_job_config(bigquery),
            location=self.location_name,
        )
        job.result()
        self._write_marker(bigquery, client, len(frame))

    def _write_marker(self, bigquery: Any, client: Any, rows: int) -> None:
        marker = self._qualified(self.marker_table)
        client.create_table(
            bigquery.Table(
                marker,
                schema=[
                    bigquery.SchemaField("table_name", "STRING", mode="REQUIRED"),
                    bigquery.SchemaField("partition_key", "STRING", mode="REQUIRED"),
                    bigquery.SchemaField("row_count", "INTEGER", mode="REQUIRED"),
                    bigquery.SchemaField("loaded_at", "TIMESTAMP", mode="REQUIRED"),
                ],
            ),
            exists_ok=True,
        )
        self._check_commit()
        self._query(
            bigquery,
            client,
            f"MERGE INTO `{marker}` AS m "
            "USING (SELECT @table AS table_name, @partition AS partition_key) AS s "
            "ON m.table_name = s.table_name AND m.partition_key = s.partition_key "
            "WHEN MATCHED THEN UPDATE SET row_count = @rows, loaded_at = CURRENT_TIMESTAMP "
            "WHEN NOT MATCHED THEN INSERT (table_name, partition_key, row_count, loaded_at) "
            "VALUES (@table, @partition, @rows, CURRENT_TIMESTAMP)",
            bigquery.ScalarQueryParameter("rows", "INT64", rows),
        )

    async def _read(self) -> pd.DataFrame | None:
        return await self._call(self._read_sync)

    def _read_sync(self, bigquery: Any, client: Any) -> pd.DataFrame | None:
        if not self._marker_sync(bigquery, client):
            return None
        table = client.get_table(self._qualified(self.table))
        rows = client.list_rows(
            bigquery.TableReference.from_string(self.destination, default_project=client.project),
            selected_fields=table.schema,
        )
        # Through arrow: the client's own to_dataframe() is being deprecated.
        frame: pd.DataFrame = rows.to_arrow(create_bqstorage_client=False).to_pandas()
        return frame

    async def _delete(self) -> None:
        await self._call(self._delete_sync)

    def _delete_sync(self, bigquery: Any, client: Any) -> None:
        from google.api_core.exceptions import NotFound

        # The marker first: a remove cut short leaves rows without a marker (not loaded).
        with contextlib.suppress(NotFound):  # no marker table: no marker
            self._query(
                bigquery,
                client,
                f"DELETE FROM `{self._qualified(self.marker_table)}` "
                "WHERE table_name = @table AND partition_key = @partition",
            )
        client.delete_table(self.destination, not_found_ok=True)
