"""PostgresTarget against a real server on 127.0.0.1: transactions, races, types, secrets."""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path

import anyio
import asyncpg
import pandas as pd
import pytest
from tests.fixtures.postgres import PostgresServer, PostgresUnavailable, free_port

from asyncflow.errors import TargetError
from asyncflow.targets.table import PostgresTarget

pytestmark = pytest.mark.anyio

DAY = dt.date(2026, 11, 23)


def frame(rows: int = 5) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "name": [f"n{i}" for i in range(rows)],
            "count": list(range(rows)),
            "value": [i / 4 for i in range(rows)],
            "ok": [i % 2 == 0 for i in range(rows)],
            "at": pd.date_range("2026-11-23", periods=rows, freq="h", tz="UTC").astype(
                "datetime64[us, UTC]"
            ),
        }
    )


async def fetch(dsn: str, sql: str) -> list[tuple[object, ...]]:
    connection = await asyncpg.connect(dsn)
    try:
        return [tuple(row) for row in await connection.fetch(sql)]
    finally:
        await connection.close()


async def test_round_trip_keeps_dtypes(postgres_dsn: str) -> None:
    """Text, BIGINT, DOUBLE PRECISION, BOOLEAN and TIMESTAMPTZ come back as they went."""
    target = PostgresTarget(postgres_dsn, "reports", DAY)
    await target.write_dataframe(frame())
    pd.testing.assert_frame_equal(await target.read_dataframe(), frame())


async def test_columns_are_typed_from_the_frame(postgres_dsn: str) -> None:
    """The table created by the first load has one SQL type per dtype, plus the key."""
    await PostgresTarget(postgres_dsn, "reports", DAY).write_dataframe(
        frame().assign(day=[dt.date(2026, 1, i + 1) for i in range(5)])
    )
    columns = await fetch(
        postgres_dsn,
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'reports' ORDER BY ordinal_position",
    )
    assert columns == [
        ("name", "text"),
        ("count", "bigint"),
        ("value", "double precision"),
        ("ok", "boolean"),
        ("at", "timestamp with time zone"),
        ("day", "date"),
        ("partition_key", "text"),
    ]


async def test_a_failed_copy_leaves_neither_rows_nor_marker(postgres_dsn: str) -> None:
    """A COPY that fails after the marker and the delete rolls the whole load back."""
    await PostgresTarget(postgres_dsn, "reports", DAY).write_dataframe(frame(3))
    other = PostgresTarget(postgres_dsn, "reports", DAY + dt.timedelta(1))
    bad = frame(3).assign(count=["x", "y", "z"])  # text into BIGINT
    with pytest.raises(TargetError, match=r"reports.*2026-11-24.*failed"):
        await other.write_dataframe(bad)
    assert not await other.exists()
    assert await fetch(postgres_dsn, "SELECT count(*) FROM asyncflow_markers") == [(1,)]
    assert await fetch(
        postgres_dsn, "SELECT count(*) FROM reports WHERE partition_key = '2026-11-24'"
    ) == [(0,)]


async def test_two_loads_of_one_partition_at_once_one_wins(postgres_dsn: str) -> None:
    """Two processes' loads of one partition queue on its marker; the second is refused."""
    outcomes: list[str] = []

    async def load(offset: int) -> None:
        target = PostgresTarget(postgres_dsn, "reports", DAY)
        try:
            await target.write_dataframe(frame(3).assign(count=[offset, offset + 1, offset + 2]))
            outcomes.append("loaded")
        except TargetError as error:
            outcomes.append("refused" if "already loaded" in str(error) else str(error))

    async with anyio.create_task_group() as group:
        for offset in (0, 100, 200):
            group.start_soon(load, offset)
    assert sorted(outcomes) == ["loaded", "refused", "refused"]
    rows = await fetch(postgres_dsn, "SELECT count(*) FROM reports")
    assert rows == [(3,)]


async def test_the_password_never_shows(postgres_dsn: str) -> None:
    """A DSN's password is left out of the repr and of error messages."""
    port = postgres_dsn.rsplit(":", 1)[1].split("/")[0]
    dsn = f"postgresql://asyncflow:s3cret-pw@127.0.0.1:{port}/no_such_database"
    target = PostgresTarget(dsn, "reports", DAY)
    assert "s3cret-pw" not in repr(target)
    with pytest.raises(TargetError, match="cannot connect") as caught:
        await target.exists()
    assert "s3cret-pw" not in str(caught.value)
    assert f"postgresql://asyncflow@127.0.0.1:{port}/no_such_database" in str(caught.value)


async def test_an_unreachable_server_is_a_target_error() -> None:
    """Nothing listening: the probe fails with a TargetError naming the server."""
    dsn = f"postgresql://asyncflow@127.0.0.1:{free_port()}/db"
    with pytest.raises(TargetError, match=r"cannot connect to postgresql://asyncflow@127\.0\.0\.1"):
        await PostgresTarget(dsn, "reports").exists()


async def test_a_column_without_a_postgres_type_is_named(postgres_dsn: str) -> None:
    """A column of Python objects PostgreSQL cannot hold is refused by name."""
    target = PostgresTarget(postgres_dsn, "reports", DAY)
    with pytest.raises(
        TargetError, match=r"PostgresTarget\(.*'reports'.*column 'blob': no PostgreSQL type"
    ):
        await target.write_dataframe(frame(2).assign(blob=[{"a": 1}, {"b": 2}]))
    assert not await target.exists()


async def test_schema_qualified_table(postgres_dsn: str) -> None:
    """``analytics.reports`` creates the schema; the marker table sits in it."""
    target = PostgresTarget(postgres_dsn, "analytics.reports", DAY)
    await target.write_dataframe(frame(2))
    assert await target.exists()
    assert await fetch(postgres_dsn, "SELECT row_count FROM analytics.asyncflow_markers") == [(2,)]


def test_a_dsn_of_another_kind_is_refused() -> None:
    """Only postgresql:// URLs are accepted, and the message shows what was given."""
    with pytest.raises(ValueError, match="expected a postgresql://USER@HOST:PORT/DB URL"):
        PostgresTarget("mysql://x@127.0.0.1/db", "reports")


# --------------------------------------------------------------------------- the test server


def test_missing_server_binaries_say_how_to_install_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without initdb/pg_ctl the fixture fails saying `apt-get install postgresql`."""
    monkeypatch.setenv("ASYNCFLOW_PG_BIN", str(tmp_path))
    with pytest.raises(PostgresUnavailable, match=r"apt-get install postgresql"):
        PostgresServer().start()


def test_the_server_is_stopped_and_its_folder_removed() -> None:
    """stop() shuts the server down (its port closes) and deletes its folder."""
    server = PostgresServer()
    server.start()
    folder = server._folder
    assert folder is not None and folder.is_dir()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5):
        pass
    server.stop()
    assert not folder.exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    server.stop()  # twice is fine
