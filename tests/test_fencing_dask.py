"""Fencing on a Dask worker: a body there writes under its attempt's lease token."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import LocalCluster
from tests.fixtures.dask_cluster import local_cluster
from tests.fixtures.dask_tasks import Identified

import asyncflow
from asyncflow.dask import DaskExecutor

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """One worker process, for the module (sync: see tests/test_dask.py)."""
    with local_cluster(1) as local:
        yield local


async def test_a_body_on_a_worker_writes_under_its_lease_token(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """With a journal, the writer identity a body on a worker tags (and fences) its
    remote writes with carries the token of the lease its run took."""
    task = Identified(str(tmp_path / "out"))
    journal = tmp_path / "journal.db"
    result = await asyncflow.run(task, executor=DaskExecutor(cluster), journal=journal)
    assert result.ok, result.summary()
    run_id, task_id, attempt, token = json.loads(Path(task.path).read_text())
    db = sqlite3.connect(journal)
    try:
        [(issued,)] = db.execute("SELECT last FROM fencing").fetchall()
    finally:
        db.close()
    assert (run_id, task_id, attempt) == (result.run_id, task.task_id, 1)
    assert token == issued >= 1  # the one lease taken: the only token drawn
