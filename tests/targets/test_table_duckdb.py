"""DuckDBTarget: one transaction per load, the file left alone by probes, its SQL face."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from asyncflow.errors import TargetError
from asyncflow.targets.table import DuckDBTarget

pytestmark = pytest.mark.anyio

DAY = dt.date(2026, 11, 23)


def frame(rows: int = 5) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "name": [f"n{i}" for i in range(rows)],
            "count": list(range(rows)),
            "value": [i / 4 for i in range(rows)],
            "ok": [i % 2 == 0 for i in range(rows)],
        }
    )


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(path)) as connection:
        return connection.execute(sql).fetchall()


async def test_round_trip_keeps_dtypes(tmp_path: Path) -> None:
    """Integers, floats, booleans and text come back with their dtypes and order."""
    target = DuckDBTarget(tmp_path / "w.duckdb", "reports", DAY)
    await target.write_dataframe(frame())
    pd.testing.assert_frame_equal(await target.read_dataframe(), frame())


async def test_probing_a_missing_file_does_not_create_it(tmp_path: Path) -> None:
    """exists() on a database file that is not there answers False and creates nothing."""
    path = tmp_path / "sub" / "w.duckdb"
    assert not await DuckDBTarget(path, "reports", DAY).exists()
    assert not path.parent.exists()


async def test_the_first_load_creates_the_folder_and_file(tmp_path: Path) -> None:
    """The database file and its folder are made by the first load."""
    path = tmp_path / "warehouse" / "w.duckdb"
    await DuckDBTarget(path, "reports", DAY).write_dataframe(frame())
    assert path.is_file()


async def test_rows_and_marker_as_sql_sees_them(tmp_path: Path) -> None:
    """The partition key is a text column; the marker row records the row count."""
    path = tmp_path / "w.duckdb"
    await DuckDBTarget(path, "reports", DAY).write_dataframe(frame(3))
    assert query(path, "SELECT DISTINCT partition_key FROM reports") == [("2026-11-23",)]
    assert query(path, "SELECT table_name, partition_key, row_count FROM asyncflow_markers") == [
        ("reports", "2026-11-23", 3)
    ]


async def test_a_failed_load_leaves_neither_rows_nor_marker(tmp_path: Path) -> None:
    """A load that fails after deleting and inserting rolls back all of it."""
    path = tmp_path / "w.duckdb"
    await DuckDBTarget(path, "reports", DAY).write_dataframe(frame(3))
    target = DuckDBTarget(path, "reports", DAY)
    # Text where the table holds integers: the insert fails after the delete ran.
    bad = frame(3).assign(count=["x", "y", "z"])
    with pytest.raises(TargetError, match=r"reports.*2026-11-23.*failed"):
        await target.write_dataframe(bad, overwrite=True)
    assert await target.exists()
    pd.testing.assert_frame_equal(await target.read_dataframe(), frame(3))
    other = DuckDBTarget(path, "reports", DAY + dt.timedelta(1))
    with pytest.raises(TargetError):
        await other.write_dataframe(bad)
    assert not await other.exists()
    assert query(path, "SELECT count(*) FROM reports WHERE partition_key = '2026-11-24'") == [(0,)]


async def test_schema_qualified_table_keeps_its_marker_beside_it(tmp_path: Path) -> None:
    """``analytics.reports``: the schema is created, the marker table goes in it too."""
    path = tmp_path / "w.duckdb"
    target = DuckDBTarget(path, "analytics.reports", DAY)
    await target.write_dataframe(frame(2))
    assert await target.exists()
    assert query(path, "SELECT count(*) FROM analytics.asyncflow_markers") == [(1,)]


async def test_a_frame_column_named_like_the_partition_column_is_refused(tmp_path: Path) -> None:
    """The partition column is the target's: a frame column with its name is an error."""
    target = DuckDBTarget(tmp_path / "w.duckdb", "reports", DAY)
    with pytest.raises(TargetError, match="column named 'partition_key'"):
        await target.write_dataframe(frame().assign(partition_key="x"))
    custom = DuckDBTarget(tmp_path / "w.duckdb", "reports2", DAY, partition_column="day")
    await custom.write_dataframe(frame().assign(partition_key="x"))
    assert "partition_key" in (await custom.read_dataframe()).columns


def test_bad_arguments_are_named() -> None:
    """An in-memory database, an empty table name or an empty part are refused clearly."""
    with pytest.raises(ValueError, match="must be a file path"):
        DuckDBTarget(":memory:", "reports")
    with pytest.raises(ValueError, match="invalid table name ''"):
        DuckDBTarget("w.duckdb", "")
    with pytest.raises(ValueError, match=r"invalid table name 'a\.'"):
        DuckDBTarget("w.duckdb", "a.")
    with pytest.raises(ValueError, match="invalid partition"):
        DuckDBTarget("w.duckdb", "reports", partition="")


def test_repr_names_file_table_and_partition(tmp_path: Path) -> None:
    """The repr (used in every message) names the file, the table and the partition."""
    target = DuckDBTarget(tmp_path / "w.duckdb", "reports", dt.datetime(2026, 11, 23, 5))
    assert repr(target) == f"DuckDBTarget('{tmp_path / 'w.duckdb'}', 'reports', " + (
        "partition='2026-11-23T05')"
    )


def test_importing_asyncflow_imports_no_warehouse_driver() -> None:
    """duckdb, asyncpg and google-cloud-bigquery are imported only when used."""
    code = (
        "import sys, asyncflow, asyncflow.targets.table; "
        "print(sorted(m for m in ('duckdb', 'asyncpg', 'google.cloud.bigquery', 'pandas') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
