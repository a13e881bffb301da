from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd

ETL = Path(__file__).parent.parent / "examples" / "etl.py"


def run_demo(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncflow", "run", f"{ETL}:LoadReport", "--date", "2026-11-23"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ASYNCFLOW_LOG_FORMAT": "json"},
    )


def test_demo_pipeline_end_to_end_twice(tmp_path: Path) -> None:
    """The demo runs extract -> transform -> report -> load; a second run does nothing."""
    first = run_demo(tmp_path)
    assert first.returncode == 0, first.stderr
    assert "* 4 ran successfully:" in first.stdout
    frame = pd.read_parquet(tmp_path / "data" / "clean" / "2026-11-23.parquet")
    assert list(frame.columns) == ["sensor", "value", "value_sq"]
    assert (frame["value_sq"] == frame["value"] ** 2).all()
    report = json.loads((tmp_path / "data" / "reports" / "2026-11-23.json").read_text())
    with duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb")) as warehouse:
        loaded = warehouse.execute(
            "SELECT sensor, count, mean FROM sensor_report WHERE partition_key = '2026-11-23' "
            "ORDER BY sensor"
        ).fetchall()
        marker = warehouse.execute("SELECT row_count FROM asyncflow_markers").fetchall()
    assert loaded == [
        (sensor, stats["count"], stats["mean"])
        for sensor, stats in sorted(report["sensors"].items())
    ]
    assert marker == [(10,)]

    second = run_demo(tmp_path)
    assert second.returncode == 0, second.stderr
    assert "* 1 already complete:" in second.stdout
    assert "ran successfully" not in second.stdout
    assert '"event": "task.start"' not in second.stderr


def test_demo_against_a_local_s3_server(tmp_path: Path) -> None:
    """`make demo-s3`: the same pipeline on a local S3 server, second run does nothing."""
    proc = subprocess.run(
        [sys.executable, str(ETL.parent / "s3_demo.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
    )
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.split("--- second run ---")
    assert "* 3 ran successfully:" in first
    assert "* 1 already complete:" in second and "ran successfully" not in second
    assert list(tmp_path.iterdir()) == []  # nothing written locally
