"""Fenced table loads: a load under an older lease token never replaces a newer one's rows.

An attempt holding a journal lease loads with its token in its writer
identity; the load takes the partition's fence (a row of ``asyncflow_fence``)
in its own transaction, and only while no greater token holds it. DuckDB runs
on a file in the test's folder, PostgreSQL on a real server on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import asyncpg
import duckdb
import pandas as pd
import pytest

import asyncflow
from asyncflow.errors import TargetError
from asyncflow.targets.base import WriterIdentity, commit_guard, writer_identity
from asyncflow.targets.table import DuckDBTarget, PostgresTarget, TableTarget

pytestmark = pytest.mark.anyio

DAY = dt.date(2026, 11, 23)


class Warehouse:
    """One backend's database: targets in it, and what SQL sees there."""

    def __init__(self, make: Callable[[str, dt.date | None], TableTarget], fetch: Any) -> None:
        self.target = make
        self._fetch = fetch

    async def fence(self, schema: str = "") -> list[tuple[Any, ...]]:
        """The fence table's rows ``(table, partition, token, run, task, attempt)``."""
        name = f"{schema}.asyncflow_fence" if schema else "asyncflow_fence"
        rows: list[tuple[Any, ...]] = await self._fetch(
            "SELECT table_name, partition_key, token, run_id, task_id, attempt "
            f"FROM {name} ORDER BY table_name, partition_key"
        )
        return rows


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    if request.param == "duckdb":
        path = tmp_path / "w.duckdb"

        async def fetch_duckdb(sql: str) -> list[tuple[Any, ...]]:
            with duckdb.connect(str(path)) as connection:
                return connection.execute(sql).fetchall()

        return Warehouse(lambda table, day: DuckDBTarget(path, table, day), fetch_duckdb)
    dsn: str = request.getfixturevalue("postgres_dsn")
    return Warehouse(
        lambda table, day: PostgresTarget(dsn, table, day), functools.partial(pg_fetch, dsn)
    )


ROW_LOCK_WAITS = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE wait_event_type = 'Lock' AND wait_event = 'transactionid'"
)
"""Sessions waiting for another transaction to end (as on a row it locked)."""


async def pg_fetch(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    connection = await asyncpg.connect(dsn)
    try:
        return [tuple(row) for row in await connection.fetch(sql)]
    finally:
        await connection.close()


@contextmanager
def writing_as(run_id: str, token: int | None) -> Iterator[None]:
    """Load as attempt 1 of ``Load_x`` in ``run_id``, holding the lease under ``token``."""
    reset = writer_identity.set(WriterIdentity(run_id, "Load_x", 1, token))
    try:
        yield
    finally:
        writer_identity.reset(reset)


def rows(tag: str, n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"writer": [tag] * n, "i": list(range(n))})


async def writers(target: TableTarget) -> list[str]:
    frame = await target.read_dataframe()
    return sorted(set(frame["writer"]))


async def test_a_stale_load_after_a_newer_one_is_refused_and_the_newer_rows_stand(
    warehouse: Warehouse,
) -> None:
    """The holder under token 2 loaded the partition; the stalled holder under token 1
    then loads it (overwrite=True, as a task replacing its partition does): refused,
    naming the target and both tokens; the newer rows and fence stay."""
    target = warehouse.target("reports", DAY)
    with writing_as("run-new", 2):
        await target.write_dataframe(rows("new"))
    with writing_as("run-old", 1), pytest.raises(TargetError) as info:
        await target.write_dataframe(rows("old", 5), overwrite=True)
    message = str(info.value)
    assert repr(target) in message
    assert "lease token 2 (run run-new), newer than this attempt's 1" in message
    assert await writers(target) == ["new"]
    assert len(await target.read_dataframe()) == 3
    assert await warehouse.fence() == [("reports", "2026-11-23", 2, "run-new", "Load_x", 1)]


async def test_a_stale_load_of_a_whole_table_is_refused(warehouse: Warehouse) -> None:
    """partition=None: the whole table is fenced the same way."""
    target = warehouse.target("totals", None)
    with writing_as("run-new", 7):
        await target.write_dataframe(rows("new"))
    with writing_as("run-old", 6), pytest.raises(TargetError, match="newer than this attempt's 6"):
        await target.write_dataframe(rows("old"), overwrite=True)
    assert await writers(target) == ["new"]


async def test_a_newer_load_after_an_older_one_replaces_it_and_takes_the_fence(
    warehouse: Warehouse,
) -> None:
    """Token 1 loaded, then token 2 overwrites: accepted; the fence records token 2.
    Other partitions keep fences of their own."""
    target = warehouse.target("reports", DAY)
    other = warehouse.target("reports", DAY + dt.timedelta(1))
    with writing_as("run-old", 1):
        await target.write_dataframe(rows("old"))
        await other.write_dataframe(rows("old"))
    with writing_as("run-new", 2):
        await target.write_dataframe(rows("new"), overwrite=True)
    assert await writers(target) == ["new"]
    assert await warehouse.fence() == [
        ("reports", "2026-11-23", 2, "run-new", "Load_x", 1),
        ("reports", "2026-11-24", 1, "run-old", "Load_x", 1),
    ]


async def test_loads_without_a_token_neither_check_nor_move_the_fence(
    warehouse: Warehouse,
) -> None:
    """A load outside a run, or in a run without a journal (no token), behaves as
    before: it replaces a fenced partition with overwrite=True and leaves the fence;
    a stale token stays refused after it."""
    target = warehouse.target("reports", DAY)
    with writing_as("run-new", 4):
        await target.write_dataframe(rows("new"))
    await target.write_dataframe(rows("plain"), overwrite=True)
    with writing_as("run-none", None):
        await target.write_dataframe(rows("no-journal"), overwrite=True)
    assert await writers(target) == ["no-journal"]
    assert await warehouse.fence() == [("reports", "2026-11-23", 4, "run-new", "Load_x", 1)]
    with writing_as("run-old", 3), pytest.raises(TargetError, match="newer than this attempt's 3"):
        await target.write_dataframe(rows("old"), overwrite=True)
    assert await writers(target) == ["no-journal"]


async def test_remove_clears_the_fence_with_the_marker(warehouse: Warehouse) -> None:
    """remove() takes the partition's fence away with its rows and marker (as a deleted
    object takes its token on S3): a load under any token is accepted afterwards."""
    target = warehouse.target("analytics.reports", DAY)
    with writing_as("run-new", 9):
        await target.write_dataframe(rows("new"))
    assert await warehouse.fence("analytics") == [
        ("analytics.reports", "2026-11-23", 9, "run-new", "Load_x", 1)
    ]
    await target.remove()
    assert await warehouse.fence("analytics") == []
    with writing_as("run-other-journal", 1):
        await target.write_dataframe(rows("fresh"))
    assert await writers(target) == ["fresh"]


async def test_a_run_with_a_journal_loads_under_its_lease_token(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """Driven by the engine: the attempt loads under the token of the lease its run
    holds (from a plain ``def run()`` in its worker thread too); a second run, after
    the partition was removed, loads under a greater token."""

    class Load(asyncflow.Task):
        day = asyncflow.DateParameter()
        tag = asyncflow.Parameter(significant=False)

        def output(self) -> TableTarget:
            return warehouse.target("loaded", self.day)

        def run(self) -> None:
            anyio.from_thread.run(self.output().write_dataframe, rows(self.tag))

    journal = tmp_path / "journal.db"
    first = await asyncflow.run(Load(DAY, "first"), journal=journal)
    assert first.ok
    ((_, _, token, run_id, task_id, attempt),) = await warehouse.fence()
    assert (run_id, task_id, attempt) == (first.run_id, Load(DAY, "x").task_id, 1)
    await warehouse.target("loaded", DAY).remove()
    second = await asyncflow.run(Load(DAY, "second"), journal=journal)
    assert second.ok
    ((_, _, newer, newer_run, _, _),) = await warehouse.fence()
    assert newer > token and newer_run == second.run_id
    assert await writers(warehouse.target("loaded", DAY)) == ["second"]


async def test_a_stale_postgres_load_in_flight_holds_the_newer_back_then_is_replaced(
    postgres_dsn: str,
) -> None:
    """The holder under token 1 is stalled between its last lease check and its COMMIT
    (its commit guard waits, in a thread with a loop of its own): the load under token 2
    waits on the fence row's lock instead of committing in between; once the stalled
    load commits, the newer one replaces its rows and takes the fence."""
    target = PostgresTarget(postgres_dsn, "reports", DAY)
    with writing_as("run-first", 1):  # the tables exist: no DDL lock in the way
        await target.write_dataframe(rows("first"))
    stalled, go = threading.Event(), threading.Event()

    def stall(_: object) -> None:
        stalled.set()
        go.wait(30)

    async def stale_load() -> None:
        commit_guard.set(stall)
        writer_identity.set(WriterIdentity("run-old", "Load_x", 1, 1))
        await target.write_dataframe(rows("old"), overwrite=True)

    async def newer_load() -> None:
        with writing_as("run-new", 2):
            await target.write_dataframe(rows("new"), overwrite=True)

    async with anyio.create_task_group() as group:
        group.start_soon(anyio.to_thread.run_sync, anyio.run, stale_load)
        assert await anyio.to_thread.run_sync(stalled.wait, 30)
        group.start_soon(newer_load)
        with anyio.fail_after(30):
            while await pg_fetch(postgres_dsn, ROW_LOCK_WAITS) == [(0,)]:  # noqa: ASYNC110
                await anyio.sleep(0.05)  # polls the server: it has no event to await
        assert await writers(target) == ["first"]
        go.set()
    assert await writers(target) == ["new"]
    fence = await pg_fetch(postgres_dsn, "SELECT token, run_id FROM asyncflow_fence")
    assert fence == [(2, "run-new")]
