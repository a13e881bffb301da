from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import asyncflow
from asyncflow.dag import render_dot, render_mermaid, render_text
from asyncflow.graph import expand
from asyncflow.targets import MemoryStore, MemoryTarget

STORE = MemoryStore()
ROOT = Path(__file__).parent.parent


class Extract(asyncflow.Task):
    date = asyncflow.DateParameter()

    def output(self) -> MemoryTarget:
        return MemoryTarget(f"extract/{self.date}", store=STORE)


class Clean(asyncflow.Task):
    date = asyncflow.DateParameter()

    def requires(self) -> Extract:
        return Extract(self.date)


class Enrich(asyncflow.Task):
    date = asyncflow.DateParameter()

    def requires(self) -> Extract:
        return Extract(self.date)


class Report(asyncflow.Task):
    date = asyncflow.DateParameter()

    def requires(self) -> list[asyncflow.Task]:
        return [Clean(self.date), Enrich(self.date)]


D = datetime.date(2026, 11, 23)


@pytest.mark.anyio
async def test_expand_without_probing_sees_everything() -> None:
    """probe=False expands below complete tasks and marks nothing complete."""
    STORE.clear()
    await MemoryTarget(f"extract/{D}", store=STORE).write_bytes(b"x")
    graph = await expand([Report(D)], probe=False)
    assert len(graph) == 4
    assert all(node.status is None for node in graph)
    probed = await expand([Report(D)])
    assert probed[Extract(D)].status is asyncflow.Status.ALREADY_COMPLETE


@pytest.mark.anyio
async def test_text_rendering_golden() -> None:
    """The text tree shows each task once and refers back to shared ones."""
    graph = await expand([Report(D)], probe=False)
    assert render_text(graph) == (
        "[ ] Report(date=2026-11-23)\n"
        "    [ ] Clean(date=2026-11-23)\n"
        "        [ ] Extract(date=2026-11-23)\n"
        "    [ ] Enrich(date=2026-11-23)\n"
        "        [ ] Extract(date=2026-11-23)"
    )


@pytest.mark.anyio
async def test_mermaid_and_dot_golden() -> None:
    """Mermaid and DOT list every task once and an edge per requirement."""
    graph = await expand([Clean(D)], probe=False)
    assert render_mermaid(graph) == (
        "flowchart TD\n"
        '    n0["Clean(date=2026-11-23)"]\n'
        '    n1["Extract(date=2026-11-23)"]\n'
        "    n1 --> n0"
    )
    clean, extract = Clean(D).task_id, Extract(D).task_id
    assert render_dot(graph) == (
        "digraph asyncflow {\n"
        "    rankdir=LR;\n"
        f'    "{clean}" [label="Clean(date=2026-11-23)"];\n'
        f'    "{extract}" [label="Extract(date=2026-11-23)"];\n'
        f'    "{extract}" -> "{clean}";\n'
        "}"
    )


def test_check_dag_over_a_date_range() -> None:
    """The DAG-freeze check passes for known families and returns the graph."""
    days = [D - datetime.timedelta(days=n) for n in range(30)]
    graph = asyncflow.check_dag(
        [Report(d) for d in days], families={"Report", "Clean", "Enrich", "Extract"}
    )
    assert len(graph) == 120


def test_check_dag_reports_unknown_families() -> None:
    """A family not in the frozen list fails the check, naming it."""
    with pytest.raises(asyncflow.GraphError, match=r"unknown task families.*Enrich"):
        asyncflow.check_dag(Report(D), families={"Report", "Clean", "Extract"})


def test_check_dag_reports_cycles() -> None:
    """A cycle fails the check with its path."""

    class Ping(asyncflow.Task):
        def requires(self) -> asyncflow.Task:
            return Pong()

    class Pong(asyncflow.Task):
        def requires(self) -> asyncflow.Task:
            return Ping()

    with pytest.raises(asyncflow.CycleError, match=r"Ping_.* -> Pong_.* -> Ping_"):
        asyncflow.check_dag(Ping())


def test_check_dag_reports_broken_requires() -> None:
    """A requires() that raises fails the check, naming the task."""

    class Broken(asyncflow.Task):
        def requires(self) -> None:
            raise KeyError("missing config")

    with pytest.raises(asyncflow.GraphError, match=r"Broken_.*requires\(\) raised KeyError"):
        asyncflow.check_dag(Broken())


def test_cli_graph_prints_the_tree(tmp_path: Path) -> None:
    """`asyncflow graph` prints the demo's tree without running anything."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "asyncflow",
            "graph",
            f"{ROOT}/examples/etl.py:Report",
            "--date",
            "2026-11-23",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "[ ] Report(date=2026-11-23)",
        "    [ ] Transform(date=2026-11-23)",
        "        [ ] ExtractRaw(date=2026-11-23)",
    ]
    assert list(tmp_path.iterdir()) == []  # nothing ran, nothing written
    mermaid = subprocess.run(
        [
            sys.executable,
            "-m",
            "asyncflow",
            "graph",
            f"{ROOT}/examples/etl.py:Report",
            "--date",
            "2026-11-23",
            "--format",
            "mermaid",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert mermaid.stdout.startswith("flowchart TD\n")
    assert "n2 --> n1" in mermaid.stdout


CHAIN = """
import asyncflow


class Link(asyncflow.Task):
    n = asyncflow.IntParameter()

    def requires(self):
        return Link(self.n - 1) if self.n else None
"""


def _graph_cli(tmp_path: Path, unbuffered: bool, stdout: Any) -> subprocess.Popen[bytes]:
    """`asyncflow graph` of a 5,000-long chain (about 0.5 MB of text)."""
    (tmp_path / "chain.py").write_text(CHAIN)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    command = [sys.executable, "-m", "asyncflow", "graph", "chain.py:Link", "--n", "5000"]
    return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=stdout, stderr=subprocess.PIPE)


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
def test_cli_graph_into_a_closed_pipe_fails_quietly(tmp_path: Path, unbuffered: bool) -> None:
    """A reader that stops early (`| head -1`): exit 141 as SIGPIPE would, no traceback."""
    with _graph_cli(tmp_path, unbuffered, subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline() == b"[ ] Link(n=5000)\n"
        proc.stdout.close()
        stderr = proc.stderr.read()
        assert proc.wait(timeout=60) == 141
    assert stderr == b""


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
def test_cli_graph_onto_a_full_device_fails_with_one_line(tmp_path: Path, unbuffered: bool) -> None:
    """Output that cannot be written (a full disk) is a failure, said in one line."""
    with open("/dev/full", "wb") as full, _graph_cli(tmp_path, unbuffered, full) as proc:
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert stderr.decode().splitlines() == [
        "asyncflow: error: cannot write the output: No space left on device"
    ]
