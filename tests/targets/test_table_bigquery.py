"""BigQueryTarget: the requests it builds, checked on the real client's wire format.

The client is google-cloud-bigquery's own; its HTTP transport is answered by
an in-process fake of the REST API (``_bigquery_fake``), so these tests see
exactly the load jobs and queries BigQuery would receive.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from asyncflow.errors import TargetError
from asyncflow.targets.table import BigQueryTarget

from ._bigquery_fake import PROJECT, FakeBigQuery

pytestmark = pytest.mark.anyio

DAY = dt.date(2026, 11, 23)


@pytest.fixture
def fake() -> Iterator[FakeBigQuery]:
    server = FakeBigQuery()
    yield server
    server.close()


def frame(rows: int = 4) -> pd.DataFrame:
    return pd.DataFrame({"sensor": [f"s{i}" for i in range(rows)], "count": list(range(rows))})


async def test_the_load_job_truncates_the_partition_decorator(fake: FakeBigQuery) -> None:
    """One load job: destination table$20261123, WRITE_TRUNCATE, parquet, daily partitions."""
    target = BigQueryTarget("ds.reports", DAY, client=fake.client())
    await target.write_dataframe(frame())
    [load] = fake.jobs_of_kind("load")
    assert load["destinationTable"] == {
        "projectId": PROJECT,
        "datasetId": "ds",
        "tableId": "reports$20261123",
    }
    assert load["writeDisposition"] == "WRITE_TRUNCATE"
    assert load["createDisposition"] == "CREATE_IF_NEEDED"
    assert load["sourceFormat"] == "PARQUET"
    assert load["timePartitioning"] == {"type": "DAY"}
    upload = next(c for c in fake.calls if c.path.startswith("/upload/"))
    assert upload.params["uploadType"] == "multipart"


async def test_the_uploaded_parquet_is_the_frame(fake: FakeBigQuery) -> None:
    """The bytes uploaded are the frame as parquet, without the index."""
    await BigQueryTarget("ds.reports", DAY, client=fake.client()).write_dataframe(frame())
    upload = next(c for c in fake.calls if c.path.startswith("/upload/"))
    start = upload.data.index(b"PAR1")
    end = upload.data.rindex(b"PAR1") + 4
    pd.testing.assert_frame_equal(
        pq.read_table(io.BytesIO(upload.data[start:end])).to_pandas(), frame()
    )


async def test_the_marker_is_merged_after_the_load(fake: FakeBigQuery) -> None:
    """The marker is a MERGE keyed by table and partition, sent after the load job."""
    await BigQueryTarget("ds.reports", DAY, client=fake.client()).write_dataframe(frame(3))
    kinds = [
        "load" if c.path.startswith("/upload/") else c.body["query"].split()[0]
        for c in fake.calls
        if c.path.startswith("/upload/") or c.path.endswith("/queries")
    ]
    assert kinds == ["SELECT", "load", "MERGE"]
    merge = next(
        c.body for c in fake.calls if c.path.endswith("/queries") and "MERGE" in c.body["query"]
    )
    assert f"`{PROJECT}.ds.asyncflow_markers`" in merge["query"]
    params = {p["name"]: p["parameterValue"]["value"] for p in merge["queryParameters"]}
    assert params == {"table": "ds.reports", "partition": "20261123", "rows": "3"}
    assert merge["useLegacySql"] is False
    assert fake.rows(f"{PROJECT}.ds.asyncflow_markers")[0][:3] == ("ds.reports", "20261123", 3)


async def test_hourly_partitions_and_a_partition_field(fake: FakeBigQuery) -> None:
    """A datetime partition is an hourly decorator; partition_field goes to the job."""
    hour = dt.datetime(2026, 11, 23, 5)
    target = BigQueryTarget("ds.events", hour, partition_field="at", client=fake.client())
    await target.write_dataframe(
        pd.DataFrame({"at": pd.to_datetime(["2026-11-23 05:10", "2026-11-23 05:50"], utc=True)})
    )
    [load] = fake.jobs_of_kind("load")
    assert load["destinationTable"]["tableId"] == "events$2026112305"
    assert load["timePartitioning"] == {"type": "HOUR", "field": "at"}


async def test_a_rerun_after_a_crash_between_load_and_marker_does_not_duplicate(
    fake: FakeBigQuery,
) -> None:
    """Rows loaded without a marker do not count; the next load replaces them, no duplicates."""
    client = fake.client()
    target = BigQueryTarget("ds.reports", DAY, client=client)
    # What a process that died after the load job and before the marker leaves behind.
    buffer = io.BytesIO()
    frame(4).to_parquet(buffer, index=False)
    buffer.seek(0)
    from google.cloud import bigquery

    client.load_table_from_file(
        buffer, f"{PROJECT}.ds.reports$20261123", job_config=target._load_job_config(bigquery)
    ).result()
    assert not await target.exists()
    await target.write_dataframe(frame(4))
    assert await target.exists()
    assert len(fake.rows(f"{PROJECT}.ds.reports", "20261123")) == 4


async def test_a_failed_load_job_writes_no_marker(fake: FakeBigQuery) -> None:
    """A load job that ends in error fails the write; no marker is written."""
    target = BigQueryTarget("ds.reports", DAY, client=fake.client())
    fake.fail_load_jobs = True
    with pytest.raises(TargetError, match=r"ds\.reports\$20261123.*load job failed"):
        await target.write_dataframe(frame())
    fake.fail_load_jobs = False
    assert not await target.exists()
    assert not any("MERGE" in (c.body or {}).get("query", "") for c in fake.calls)


async def test_a_large_frame_goes_through_a_resumable_upload(fake: FakeBigQuery) -> None:
    """Beyond the client's multipart limit (5 MiB) the upload is resumable; same job."""
    rows = 750_000  # random floats do not compress: about 6 MB of parquet
    big = pd.DataFrame({"value": np.random.default_rng(0).random(rows)})
    target = BigQueryTarget("ds.big", DAY, client=fake.client())
    await target.write_dataframe(big)
    upload = next(c for c in fake.calls if c.path.startswith("/upload/"))
    assert upload.params["uploadType"] == "resumable"
    assert fake.jobs_of_kind("load")[0]["writeDisposition"] == "WRITE_TRUNCATE"
    assert len(fake.rows(f"{PROJECT}.ds.big", "20261123")) == rows


def test_table_names_urls_and_decorators() -> None:
    """bigquery:// URLs, PROJECT.DATASET.TABLE and $decorators are all understood."""
    target = BigQueryTarget("bigquery://proj.ds.reports$20261123")
    assert (target.project, target.table, target.partition_key) == (
        "proj",
        "ds.reports",
        "20261123",
    )
    assert target.destination == "proj.ds.reports$20261123"
    assert repr(target) == "BigQueryTarget('proj.ds.reports$20261123')"
    assert BigQueryTarget("ds.reports", "2026-11-23", project="p").partition_key == "20261123"
    assert BigQueryTarget("ds.reports", "202611", project="p").partition_key == "202611"
    assert BigQueryTarget("proj:ds.reports", project="p").project == "proj"


def test_bad_names_and_partitions_are_refused() -> None:
    """A table without a dataset, a bad decorator, or two partitions are named errors."""
    with pytest.raises(ValueError, match=r"expected DATASET\.TABLE or PROJECT\.DATASET\.TABLE"):
        BigQueryTarget("reports", project="p")
    with pytest.raises(ValueError, match="invalid BigQuery partition 'yesterday'"):
        BigQueryTarget("ds.reports", "yesterday", project="p")
    with pytest.raises(ValueError, match="pass one of them"):
        BigQueryTarget("ds.reports$20261123", DAY, project="p")
