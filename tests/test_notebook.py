"""Runs and results in Jupyter: HTML results, and a progress block updated in place."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import asyncflow

pytestmark = pytest.mark.anyio

EPOCH_FLOAT = re.compile(r"\b1\d{9}\.\d")  # e.g. 1795000000.123: a time shown as a number
DATE_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")

CELLS = [
    """
import anyio
import asyncflow

class Step(asyncflow.Task):
    n = asyncflow.IntParameter()

    async def run(self):
        await anyio.sleep(0.05)
        if self.n == 3:
            raise ValueError("three <is> bad")

result = await asyncflow.run([Step(n) for n in range(20)], journal=None, workers=4, progress=True)
result
""",
    "result[Step(3)]",
]


def html_outputs(cell: Any, output_type: str) -> list[str]:
    return [
        output["data"]["text/html"]
        for output in cell["outputs"]
        if output["output_type"] == output_type and "text/html" in output.get("data", {})
    ]


def test_a_notebook_shows_progress_in_place_and_html_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Executed by a real kernel: one progress block, updated to the end; HTML results."""
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core's future paths, no warning
    import nbclient
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    path = tmp_path / "run.ipynb"
    nbformat.write(notebook, path)
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=90, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()

    run_cell, task_cell = notebook.cells
    progress = html_outputs(run_cell, "display_data")
    assert len(progress) == 1  # one block, updated in place, not one per frame
    assert 'class="asyncflow-progress"' in progress[0]
    assert "20 / 20" in progress[0]  # its final state
    assert not any(o.get("name") == "stdout" for o in run_cell["outputs"])

    (shown,) = html_outputs(run_cell, "execute_result")
    assert 'class="asyncflow-result"' in shown
    assert "ran successfully 19" in shown and "failed 1" in shown
    assert "<code>Step(n=3)</code>" in shown and "ValueError: three &lt;is&gt; bad" in shown
    assert DATE_TIME.search(shown) and not EPOCH_FLOAT.search(shown)

    (task,) = html_outputs(task_cell, "execute_result")
    assert 'class="asyncflow-task-result"' in task
    assert len(DATE_TIME.findall(task)) == 2  # started and finished
    assert not EPOCH_FLOAT.search(task)
    assert "<summary>traceback</summary>" in task and "three &lt;is&gt; bad" in task


class Fine(asyncflow.Task):
    n = asyncflow.IntParameter()

    async def run(self) -> None:
        pass


class Broken(asyncflow.Task):
    async def run(self) -> None:
        raise RuntimeError("<script>alert(1)</script>")


class NeedsBroken(asyncflow.Task):
    def requires(self) -> Broken:
        return Broken()

    async def run(self) -> None:
        pass


async def test_run_result_html_counts_failures_and_escapes() -> None:
    """RunResult's HTML: coloured counts per status and failed tasks with their escaped error."""
    result = await asyncflow.run([Fine(1), Fine(2), NeedsBroken()], journal=None)
    shown = result._repr_html_()
    assert '<b style="color:#c62828">failed</b>' in shown  # the run's verdict
    assert "ran successfully 2" in shown and "failed 1" in shown
    assert "not run because a requirement failed or is missing 1" in shown
    assert "&lt;script&gt;" in shown and "<script>" not in shown
    assert "<code>Broken()</code>" in shown
    assert "http" not in shown  # links to nothing
    assert DATE_TIME.search(shown) and not EPOCH_FLOAT.search(shown)


async def test_task_result_html_shows_dates_and_durations() -> None:
    """TaskResult's HTML: status, attempts, start and end as dates, the duration in units."""
    result = await asyncflow.run(Fine(3), journal=None)
    shown = result[Fine(3)]._repr_html_()
    assert ">done</span>" in shown
    assert len(DATE_TIME.findall(shown)) == 2
    assert re.search(r">\d+ ms<|>\d+\.\d s<", shown)
    assert "traceback" not in shown and not EPOCH_FLOAT.search(shown)
