"""Where asyncflow's records go: nowhere unless asked, stdlib logging, or structlog."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

import asyncflow
from asyncflow.logging import configure_logging

pytestmark = pytest.mark.anyio

# A 20-task pipeline: 19 leaves and a root; FAIL=1 in the environment fails one leaf.
PIPELINE = """
import os
import asyncflow


class Leaf(asyncflow.Task):
    i = asyncflow.IntParameter()

    async def run(self):
        if os.environ.get("FAIL") and self.i == 7:
            raise ValueError("leaf 7 is broken")


class Root(asyncflow.WrapperTask):
    def requires(self):
        return [Leaf(i) for i in range(19)]
"""


def run_script(tmp_path: Path, body: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``body`` (after importing the pipeline) in a fresh interpreter in ``tmp_path``."""
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    script = "import asyncio, logging, asyncflow\nfrom pipeline import Leaf, Root\n"
    script += textwrap.dedent(body)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCFLOW_")}
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**clean, "PYTHONPATH": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


RUN = "result = asyncio.run(asyncflow.run(Root()))\n"


def test_a_run_without_logging_setup_writes_nothing(tmp_path: Path) -> None:
    """With no logging set-up at all, a successful 20-task run prints nothing anywhere."""
    proc = run_script(tmp_path, RUN + "assert result.ok and len(result) == 20\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == ""


def test_failures_reach_stderr_like_any_library(tmp_path: Path) -> None:
    """Unconfigured, a failure still reaches stderr (stdlib's last resort), never stdout."""
    proc = run_script(tmp_path, RUN + "assert not result.ok\n", FAIL="1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("task.failed task_id=Leaf_7_")
    assert "ValueError: leaf 7 is broken" in lines[0]


def test_basic_config_shows_the_task_events(tmp_path: Path) -> None:
    """logging.basicConfig(level=INFO) shows every task's events under the asyncflow logger."""
    proc = run_script(tmp_path, "logging.basicConfig(level=logging.INFO)\n" + RUN)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    done = [line for line in proc.stderr.splitlines() if "task.done" in line]
    assert len(done) == 20
    assert all(line.startswith("INFO:asyncflow:task.done task_id=") for line in done)
    assert "INFO:asyncflow:run.done ok=True done=20" in proc.stderr


def test_the_asyncflow_logger_level_filters_them(tmp_path: Path) -> None:
    """getLogger("asyncflow").setLevel(WARNING) keeps the failures and drops the rest."""
    setup = """
    logging.basicConfig(level=logging.INFO)
    logging.getLogger("asyncflow").setLevel(logging.WARNING)
    """
    proc = run_script(tmp_path, setup + RUN, FAIL="1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        line for line in proc.stderr.splitlines() if line.startswith("ERROR:asyncflow:")
    ]
    assert "task.failed" in proc.stderr and "task.done" not in proc.stderr


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put stdlib logging and structlog back as they were after the test."""
    root = logging.getLogger()
    ours = logging.getLogger("asyncflow")
    handlers, level, our_level = list(root.handlers), root.level, ours.level
    configured, config = structlog.is_configured(), structlog.get_config()
    structlog.reset_defaults()
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        ours.setLevel(our_level)
        structlog.reset_defaults()
        if configured:
            structlog.configure(**config)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Step(asyncflow.Task):
    name = asyncflow.Parameter()

    async def run(self) -> None:
        pass


@pytest.mark.usefixtures("restore_logging")
async def test_structlog_configuration_wins_else_stdlib_records_with_fields() -> None:
    """structlog unconfigured: stdlib records, fields as attributes; configured: structlog."""
    records = Records()
    ours = logging.getLogger("asyncflow")
    ours.addHandler(records)
    ours.setLevel(logging.INFO)
    try:
        result = await asyncflow.run(Step("a"), journal=None)
        done = [r for r in records.records if r.getMessage().startswith("task.done ")]
        assert len(done) == 1
        assert done[0].task_id == Step("a").task_id  # type: ignore[attr-defined]
        assert done[0].run_id == result.run_id  # type: ignore[attr-defined]
        records.records.clear()
        with structlog.testing.capture_logs() as captured:
            await asyncflow.run(Step("b"), journal=None)
        assert records.records == []
        assert [e["task_id"] for e in captured if e["event"] == "task.done"] == [Step("b").task_id]
    finally:
        ours.removeHandler(records)


@pytest.mark.usefixtures("restore_logging")
async def test_configure_logging_levels_environment_argument_and_logger() -> None:
    """configure_logging() honours ASYNCFLOW_LOG_LEVEL, an explicit level wins over
    it, and getLogger("asyncflow").setLevel() filters after it."""
    out = io.StringIO()
    configure_logging("json", stream=out, environ={"ASYNCFLOW_LOG_LEVEL": "WARNING"})
    await asyncflow.run(Step("env"), journal=None)
    assert out.getvalue() == ""
    configure_logging("json", "INFO", stream=out, environ={"ASYNCFLOW_LOG_LEVEL": "WARNING"})
    await asyncflow.run(Step("arg"), journal=None)
    events = [json.loads(line)["event"] for line in out.getvalue().splitlines()]
    assert "task.done" in events and "run.done" in events
    out.truncate(0)
    out.seek(0)
    logging.getLogger("asyncflow").setLevel(logging.WARNING)
    logging.getLogger("app").info("app.event")
    await asyncflow.run(Step("filtered"), journal=None)
    events = [json.loads(line)["event"] for line in out.getvalue().splitlines()]
    assert events == ["app.event"]


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_refuses_a_bad_level_from_the_environment() -> None:
    """A bad ASYNCFLOW_LOG_LEVEL is an error naming the value."""
    with pytest.raises(ValueError, match="'LOUD'"):
        configure_logging("json", environ={"ASYNCFLOW_LOG_LEVEL": "LOUD"})
