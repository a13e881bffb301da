"""The demo pipeline: extract a CSV, transform it to parquet, report on it, load it.

    ExtractRaw(date)  ->  data/raw/<date>.csv
    Transform(date)   ->  data/clean/<date>.parquet   (adds value_sq)
    Report(date)      ->  data/reports/<date>.json
    LoadReport(date)  ->  table sensor_report, partition <date>, in data/warehouse.duckdb

Run it with ``make demo`` or::

    asyncflow run examples/etl.py:LoadReport --date 2026-11-23

The last step loads the report into a local DuckDB warehouse: the day's rows
and the load's marker go in one transaction, so the day counts as loaded only
once all of it is there (``duckdb data/warehouse.duckdb "FROM sensor_report"``
shows it). In production the same task would load BigQuery or PostgreSQL
with ``BigQueryTarget`` or ``PostgresTarget``.

On a terminal the run shows its live progress, then the execution summary.
A second run finds everything complete and does nothing. With
``--data-dir s3://bucket/prefix`` the same pipeline reads and writes S3
(``make demo-s3`` runs it against a local S3 server).
"""

from __future__ import annotations

import csv
import json
import random
from datetime import date
from pathlib import Path

import pandas as pd

import asyncflow

ROWS = 1_000


def target(data_dir: str, *parts: str) -> asyncflow.Target:
    """Where a file of the pipeline lives: a local path, or an S3 URL."""
    if data_dir.startswith("s3://"):
        return asyncflow.S3Target("/".join([data_dir.rstrip("/"), *parts]))
    return asyncflow.LocalTarget(Path(data_dir, *parts))


class ExtractRaw(asyncflow.Task):
    """Pretend to pull one day of raw readings from a source system."""

    date = asyncflow.DateParameter(description="the day to extract")
    data_dir = asyncflow.Parameter(
        default="data", significant=False, description="folder (or s3://bucket/prefix) for outputs"
    )

    def output(self) -> asyncflow.Target:
        return target(self.data_dir, "raw", f"{self.date}.csv")

    async def run(self) -> None:
        rng = random.Random(self.date.toordinal())
        async with self.output().open("w") as f:
            writer = csv.writer(f)
            writer.writerow(["sensor", "value"])
            for i in range(ROWS):
                writer.writerow([f"s{i % 10}", round(rng.uniform(-10, 10), 3)])


class Transform(asyncflow.Task):
    """Clean the raw CSV and add the squared value, as parquet."""

    date = asyncflow.DateParameter()
    data_dir = asyncflow.Parameter(default="data", significant=False)

    def requires(self) -> ExtractRaw:
        return ExtractRaw(self.date, self.data_dir)

    def output(self) -> asyncflow.Target:
        return target(self.data_dir, "clean", f"{self.date}.parquet")

    def run(self) -> None:  # plain def: pandas runs in a worker thread
        with self.input().open("r") as f:
            frame = pd.read_csv(f)
        frame["value_sq"] = frame["value"] ** 2
        with self.output().open("wb") as f:
            frame.to_parquet(f, index=False)


class Report(asyncflow.Task):
    """Summarise the day per sensor, as JSON."""

    date = asyncflow.DateParameter()
    data_dir = asyncflow.Parameter(default="data", significant=False)

    def requires(self) -> Transform:
        return Transform(self.date, self.data_dir)

    def output(self) -> asyncflow.Target:
        return target(self.data_dir, "reports", f"{self.date}.json")

    def run(self) -> None:
        with self.input().open("rb") as f:
            frame = pd.read_parquet(f)
        per_sensor = frame.groupby("sensor")["value_sq"].agg(["count", "mean"]).round(4)
        report = {
            "date": self.date.isoformat(),
            "rows": len(frame),
            "sum_value_sq": round(float(frame["value_sq"].sum()), 4),
            "sensors": per_sensor.to_dict(orient="index"),
        }
        with self.output().open("w") as f:
            json.dump(report, f, indent=2, sort_keys=True)


class LoadReport(asyncflow.Task):
    """Load the day's report, one row per sensor, into a warehouse table partition."""

    date = asyncflow.DateParameter()
    data_dir = asyncflow.Parameter(default="data", significant=False)
    warehouse = asyncflow.Parameter(
        default="data/warehouse.duckdb", significant=False, description="DuckDB database file"
    )

    def requires(self) -> Report:
        return Report(self.date, self.data_dir)

    def output(self) -> asyncflow.TableTarget:
        return asyncflow.DuckDBTarget(self.warehouse, "sensor_report", partition=self.date)

    async def run(self) -> None:
        report = json.loads(await self.input().read_text())
        frame = pd.DataFrame.from_dict(report["sensors"], orient="index")
        frame = frame.rename_axis("sensor").reset_index()
        frame["count"] = frame["count"].astype("int64")
        await self.output().write_dataframe(frame)


if __name__ == "__main__":
    # progress=True: the live display on stderr (status lines when not on a terminal).
    result = asyncflow.build(LoadReport(date=date(2026, 11, 23)), progress=True)
    print(result.summary())
