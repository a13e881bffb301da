"""pandas DataFrames as parquet or CSV, through any target.

Every :class:`~asyncflow.targets.Target` has ``read_parquet``, ``write_parquet``,
``read_csv`` and ``write_csv`` methods that call these functions. Encoding and
decoding run in a worker thread (they are CPU-bound and would stall the event
loop), and the data streams straight between pandas and the target's file
object: a local temporary file, a memory buffer, or the spool that an S3 or
GCS write uploads on commit. No intermediate copy of the bytes is built here.
Writes are atomic like any target write.

pandas and pyarrow are imported on first use, in the worker thread (install
``asyncflow[dataframe]``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import anyio.to_thread

if TYPE_CHECKING:
    import pandas as pd

    from .base import Target

__all__ = ["read_csv", "read_parquet", "write_csv", "write_parquet"]


def _read_parquet(file: Any, kwargs: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    frame: pd.DataFrame = pd.read_parquet(file, **kwargs)
    return frame


def _read_csv(file: Any, kwargs: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    frame: pd.DataFrame = pd.read_csv(file, **kwargs)
    return frame


async def write_parquet(target: Target, frame: pd.DataFrame, **kwargs: Any) -> None:
    """Write ``frame`` to ``target`` as parquet (``kwargs`` go to ``DataFrame.to_parquet``)."""
    async with target.open("wb") as file:
        await anyio.to_thread.run_sync(functools.partial(frame.to_parquet, file, **kwargs))


async def read_parquet(target: Target, **kwargs: Any) -> pd.DataFrame:
    """Read ``target`` as parquet (``kwargs`` go to ``pandas.read_parquet``).

    Raises:
        TargetNotFoundError: the target does not exist.
    """
    async with target.open("rb") as file:
        return await anyio.to_thread.run_sync(_read_parquet, file, kwargs)


async def write_csv(
    target: Target, frame: pd.DataFrame, *, index: bool = False, **kwargs: Any
) -> None:
    """Write ``frame`` to ``target`` as UTF-8 CSV, without the index unless ``index=True``.

    ``kwargs`` go to ``DataFrame.to_csv``.
    """
    async with target.open("w") as file:
        await anyio.to_thread.run_sync(functools.partial(frame.to_csv, file, index=index, **kwargs))


async def read_csv(target: Target, **kwargs: Any) -> pd.DataFrame:
    """Read ``target`` as UTF-8 CSV (``kwargs`` go to ``pandas.read_csv``).

    Raises:
        TargetNotFoundError: the target does not exist.
    """
    async with target.open("r") as file:
        return await anyio.to_thread.run_sync(_read_csv, file, kwargs)
