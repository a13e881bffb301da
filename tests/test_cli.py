from __future__ import annotations

from pathlib import Path

import pytest
from tests.fixtures import cli

TESTS = Path(__file__).parent


def test_run_parses_parameters_and_succeeds(tmp_path: Path) -> None:
    """`asyncflow run module:Task --param value` runs it and exits 0 with a summary."""
    out = tmp_path / "out.txt"
    proc = cli(
        "run",
        "tests.fixtures.cli_tasks:Write",
        "--out",
        str(out),
        "--text",
        "ab",
        "--count",
        "2",
        "--loud",
        "--no-journal",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == "ABAB"
    assert "1 ran successfully" in proc.stdout
    assert '"event": "task.done"' in proc.stderr


def test_failed_run_exits_one(tmp_path: Path) -> None:
    """A run whose task fails exits 1 and names the failure in the summary."""
    proc = cli(
        "run",
        "tests.fixtures.cli_tasks:Fails",
        "--out",
        str(tmp_path / "x"),
        "--no-journal",
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert "RuntimeError: this task always fails" in proc.stdout


def test_bad_parameter_value_exits_two_naming_it(tmp_path: Path) -> None:
    """An unparseable value exits 2 with the task and parameter named."""
    proc = cli(
        "run", "tests.fixtures.cli_tasks:Write", "--out", "o", "--count", "many", cwd=tmp_path
    )
    assert proc.returncode == 2
    assert "Write: parameter 'count'" in proc.stderr and "'many'" in proc.stderr


def test_missing_required_parameter_exits_two(tmp_path: Path) -> None:
    """Leaving out a required parameter exits 2 naming it."""
    proc = cli("run", "tests.fixtures.cli_tasks:Write", cwd=tmp_path)
    assert proc.returncode == 2
    assert "missing required parameter 'out'" in proc.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no.such.module:Task", "cannot import module 'no.such.module'"),
        ("tests.fixtures.cli_tasks:Nope", "tasks defined there: Fails, Write"),
        ("tests.fixtures.cli_tasks", "expected MODULE:TASK"),
    ],
)
def test_unknown_task_exits_two(tmp_path: Path, spec: str, message: str) -> None:
    """A task spec that does not resolve exits 2 and says why."""
    proc = cli("run", spec, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_help_lists_task_parameters(tmp_path: Path) -> None:
    """`--help` after a task lists its parameters with type and default."""
    proc = cli("run", "tests.fixtures.cli_tasks:Write", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert "parameters of Write" in proc.stdout
    assert "file to write; str; required" in proc.stdout
    assert "--count" in proc.stdout and "default 1" in proc.stdout


def test_task_from_a_file_path(tmp_path: Path) -> None:
    """`path/to/file.py:Task` imports the task from a file."""
    out = tmp_path / "f.txt"
    path = TESTS / "fixtures" / "cli_tasks.py"
    proc = cli("run", f"{path}:Write", "--out", str(out), "--no-journal", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == "hi"
