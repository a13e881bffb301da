"""DataFrame helpers (parquet and CSV) on every target backend."""

from __future__ import annotations

import anyio
import pandas as pd
import pytest

from asyncflow.errors import TargetNotFoundError
from asyncflow.targets import dataframe

from ._support import TargetFactory

pytestmark = pytest.mark.anyio


def sample_frame(rows: int = 1000) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "name": [f"sensor-{i % 17}" for i in range(rows)],
            "count": list(range(rows)),
            "value": [i / 7 for i in range(rows)],
            "ok": [i % 3 == 0 for i in range(rows)],
        }
    )


async def test_parquet_round_trip(target_factory: TargetFactory) -> None:
    """write_parquet then read_parquet gives back an identical frame, dtypes included."""
    frame = sample_frame().assign(
        at=pd.date_range("2026-11-23", periods=1000, freq="min", tz="UTC")
    )
    target = target_factory("frame.parquet")
    await target.write_parquet(frame)
    pd.testing.assert_frame_equal(await target.read_parquet(), frame)


async def test_csv_round_trip(target_factory: TargetFactory) -> None:
    """write_csv then read_csv gives back an identical frame (no index column added)."""
    frame = sample_frame()
    target = target_factory("frame.csv")
    await target.write_csv(frame)
    pd.testing.assert_frame_equal(await target.read_csv(), frame)
    assert (await target.read_text()).startswith("name,count,value,ok\n")


async def test_parquet_options_are_passed_through(target_factory: TargetFactory) -> None:
    """Keyword arguments reach pandas: here a column selection on read."""
    target = target_factory("columns.parquet")
    await dataframe.write_parquet(target, sample_frame(10), compression="zstd")
    read = await dataframe.read_parquet(target, columns=["count"])
    assert list(read.columns) == ["count"] and read["count"].tolist() == list(range(10))


async def test_failed_encoding_leaves_nothing(target_factory: TargetFactory) -> None:
    """A frame that cannot be encoded leaves no target behind (the write is atomic)."""
    bad = pd.DataFrame({"x": [object()]})
    target = target_factory("bad.parquet")
    with pytest.raises(Exception, match="object"):
        await target.write_parquet(bad)
    assert not await target.exists()


async def test_reading_a_missing_frame_raises_not_found(target_factory: TargetFactory) -> None:
    """read_parquet on a missing target raises TargetNotFoundError."""
    with pytest.raises(TargetNotFoundError):
        await target_factory("absent.parquet").read_parquet()


async def test_frames_can_be_written_from_a_sync_body(target_factory: TargetFactory) -> None:
    """In a worker thread, pandas writes straight into the target's file object."""
    frame = sample_frame(50)
    target = target_factory("sync.parquet")

    def write() -> None:
        with target.open("wb") as f:
            frame.to_parquet(f)

    await anyio.to_thread.run_sync(write)
    pd.testing.assert_frame_equal(await target.read_parquet(), frame)
