"""What every table target promises, run against each backend.

DuckDB runs on a file in the test's folder, PostgreSQL on a real server on
127.0.0.1 (a fresh database per test), BigQuery through the real client
library over an in-process fake of its REST API (``_bigquery_fake``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pandas as pd
import pytest

import asyncflow
from asyncflow.errors import TargetError, TargetNotFoundError
from asyncflow.targets import Target
from asyncflow.targets.base import commit_guard
from asyncflow.targets.table import BigQueryTarget, DuckDBTarget, PostgresTarget, TableTarget
from asyncflow.targets.table.base import Partition

from ._bigquery_fake import FakeBigQuery

pytestmark = pytest.mark.anyio

TableFactory = Callable[[str, Partition], TableTarget]

DAY = dt.date(2026, 11, 23)


@pytest.fixture
def bigquery_fake() -> Iterator[FakeBigQuery]:
    fake = FakeBigQuery()
    yield fake
    fake.close()


@pytest.fixture(params=["duckdb", "postgres", "bigquery"])
def table_factory(request: pytest.FixtureRequest, tmp_path: Path) -> TableFactory:
    """A callable making a table target of one backend: ``make(table, partition)``."""
    if request.param == "duckdb":
        return lambda table, partition: DuckDBTarget(tmp_path / "w.duckdb", table, partition)
    if request.param == "postgres":
        dsn = request.getfixturevalue("postgres_dsn")
        return lambda table, partition: PostgresTarget(dsn, table, partition)
    client = request.getfixturevalue("bigquery_fake").client()
    return lambda table, partition: BigQueryTarget(f"ds.{table}", partition, client=client)


def sample(rows: int = 50, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sensor": [f"s{(i + offset) % 7}" for i in range(rows)],
            "count": [i + offset for i in range(rows)],
            "value": [(i + offset) / 8 for i in range(rows)],
            "ok": [i % 3 == 0 for i in range(rows)],
            "at": pd.date_range("2026-11-23", periods=rows, freq="min", tz="UTC"),
        }
    )


def same_rows(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Equal values, whatever the row order and the backend's choice of dtypes."""
    got = got.sort_values("count").reset_index(drop=True)
    got["at"] = got["at"].dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    expected = expected.sort_values("count").reset_index(drop=True)
    expected["at"] = expected["at"].astype("datetime64[us, UTC]")
    assert list(got.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


async def test_a_table_nobody_loaded_does_not_exist(table_factory: TableFactory) -> None:
    """Before any load (no table, no marker table) the target does not exist."""
    assert not await table_factory("reports", DAY).exists()


async def test_write_then_exists_and_reads_back(table_factory: TableFactory) -> None:
    """A loaded partition exists and reads back the rows written, without extra columns."""
    target = table_factory("reports", DAY)
    frame = sample()
    await target.write_dataframe(frame)
    assert await target.exists()
    same_rows(await target.read_dataframe(), frame)


async def test_partitions_are_independent(table_factory: TableFactory) -> None:
    """Loading one partition neither completes nor changes another one."""
    first, second = table_factory("reports", DAY), table_factory("reports", DAY + dt.timedelta(1))
    await first.write_dataframe(sample(10))
    assert not await second.exists()
    await second.write_dataframe(sample(5, offset=100))
    same_rows(await first.read_dataframe(), sample(10))
    same_rows(await second.read_dataframe(), sample(5, offset=100))


async def test_second_write_is_refused_naming_table_and_partition(
    table_factory: TableFactory,
) -> None:
    """Create-only: a partition with a marker is not loaded again; its rows stay."""
    target = table_factory("reports", DAY)
    await target.write_dataframe(sample(10))
    with pytest.raises(TargetError, match=r"reports.*partition.*already loaded.*overwrite=True"):
        await target.write_dataframe(sample(3, offset=50))
    same_rows(await target.read_dataframe(), sample(10))


async def test_overwrite_replaces_the_partition_only(table_factory: TableFactory) -> None:
    """overwrite=True replaces every row of the partition, and no other partition's."""
    target, other = table_factory("reports", DAY), table_factory("reports", DAY - dt.timedelta(1))
    await target.write_dataframe(sample(10))
    await other.write_dataframe(sample(4, offset=200))
    await target.write_dataframe(sample(3, offset=50), overwrite=True)
    same_rows(await target.read_dataframe(), sample(3, offset=50))
    same_rows(await other.read_dataframe(), sample(4, offset=200))


async def test_whole_table_without_partition(table_factory: TableFactory) -> None:
    """partition=None: the whole table is the unit, loaded and replaced whole."""
    target = table_factory("totals", None)
    await target.write_dataframe(sample(6))
    assert await target.exists()
    same_rows(await target.read_dataframe(), sample(6))
    await target.write_dataframe(sample(2, offset=9), overwrite=True)
    same_rows(await target.read_dataframe(), sample(2, offset=9))


async def test_read_of_an_unloaded_partition_raises_not_found(
    table_factory: TableFactory,
) -> None:
    """Reading a partition without a marker is TargetNotFoundError, even if the table exists."""
    await table_factory("reports", DAY).write_dataframe(sample(3))
    with pytest.raises(TargetNotFoundError, match="has not been loaded"):
        await table_factory("reports", dt.date(2026, 1, 1)).read_dataframe()


async def test_remove_deletes_rows_and_marker(table_factory: TableFactory) -> None:
    """remove() makes the partition incomplete and empty; a new load is accepted."""
    target, other = table_factory("reports", DAY), table_factory("reports", DAY + dt.timedelta(1))
    await target.write_dataframe(sample(5))
    await other.write_dataframe(sample(2, offset=30))
    await target.remove()
    assert not await target.exists()
    assert await other.exists()
    await target.write_dataframe(sample(1, offset=70))
    same_rows(await target.read_dataframe(), sample(1, offset=70))
    await table_factory("never", DAY).remove()  # nothing there: no error


async def test_open_is_refused(table_factory: TableFactory) -> None:
    """A table is not a file: open() raises and says what to use."""
    target = table_factory("reports", DAY)
    with pytest.raises(TargetError, match=r"is a table: use read_dataframe\(\)"):
        async with target.open("r"):
            pass


async def test_a_task_outputs_a_table_and_a_second_run_finds_it_complete(
    table_factory: TableFactory,
) -> None:
    """output() may return a table target: the engine runs, checks and probes it."""
    runs: list[str] = []

    class Load(asyncflow.Task):
        day = asyncflow.DateParameter()

        def output(self) -> TableTarget:
            return table_factory("loaded", self.day)

        async def run(self) -> None:
            runs.append(str(self.day))
            await self.output().write_dataframe(sample(4))

    first = await asyncflow.run(Load(DAY), journal=None)
    assert first.status(Load(DAY)) is asyncflow.Status.DONE
    second = await asyncflow.run(Load(DAY), journal=None)
    assert second.status(Load(DAY)) is asyncflow.Status.ALREADY_COMPLETE
    assert runs == [str(DAY)]


async def test_a_run_that_loads_nothing_fails_with_the_table_named(
    table_factory: TableFactory,
) -> None:
    """A body that returns without loading its table is FAILED, naming the target."""

    class Forgetful(asyncflow.Task):
        def output(self) -> TableTarget:
            return table_factory("forgotten", DAY)

        async def run(self) -> None:
            await anyio.lowlevel.checkpoint()

    result = await asyncflow.run(Forgetful(), journal=None)
    assert result.status(Forgetful()) is asyncflow.Status.FAILED
    assert "forgotten" in str(result.error(Forgetful()))


async def test_concurrent_loads_of_different_partitions(table_factory: TableFactory) -> None:
    """Loads of several partitions of one table at once all land, each with its rows."""
    targets = [table_factory("reports", DAY + dt.timedelta(days=i)) for i in range(4)]
    async with anyio.create_task_group() as group:
        for i, target in enumerate(targets):
            group.start_soon(target.write_dataframe, sample(3, offset=10 * i))
    for i, target in enumerate(targets):
        same_rows(await target.read_dataframe(), sample(3, offset=10 * i))


async def test_write_dataframe_rejects_a_non_frame(table_factory: TableFactory) -> None:
    """Only a pandas DataFrame can be loaded; the message names the target."""
    with pytest.raises(TypeError, match="takes a pandas DataFrame, not list"):
        await table_factory("reports", DAY).write_dataframe([1, 2])  # type: ignore[arg-type]


async def test_equal_targets_hash_alike(table_factory: TableFactory) -> None:
    """Two targets for the same table and partition are equal (the graph dedups them)."""
    assert table_factory("reports", DAY) == table_factory("reports", DAY)
    assert len({table_factory("reports", DAY), table_factory("reports", DAY)}) == 1
    assert table_factory("reports", DAY) != table_factory("reports", dt.date(2026, 1, 1))


async def test_a_refused_commit_leaves_the_partition_unloaded(table_factory: TableFactory) -> None:
    """When the engine refuses the commit (lost lease, abandoned attempt), nothing counts."""

    def refuse(target: Target) -> None:
        raise TargetError(f"{target!r}: write not committed (refused by the test)")

    target = table_factory("reports", DAY)
    token = commit_guard.set(refuse)
    try:
        with pytest.raises(TargetError, match="refused by the test"):
            await target.write_dataframe(sample(3))
    finally:
        commit_guard.reset(token)
    assert not await target.exists()
