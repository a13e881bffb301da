from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.fixtures import cli, cli_env

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


WRITE = "tests.fixtures.cli_tasks:Write"
MODULES = {
    "broken.py": "import asyncflow\n\nclass Report(asyncflow.Task)\n    pass\n",
    "raises.py": "import asyncflow\n\nSETTINGS = {}\nPATH = SETTINGS['path']\n",
    "needs_dep.py": "import asyncflow\nimport no_such_dependency_xyz\n",
    "daily.py": "import asyncflow\n\n"
    "class Report(asyncflow.Task):\n    date = asyncflow.DateParameter()\n",
    "bad_default.py": "import asyncflow\n\n"
    "class Report(asyncflow.Task):\n    n = asyncflow.IntParameter()\n\nFIRST = Report(n='x')\n",
    "bad_init.py": "import asyncflow\n\nclass Report(asyncflow.Task):\n"
    "    def __init__(self) -> None:\n        raise RuntimeError('init broke')\n",
}


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one line stderr has besides JSON log records; fails if there are more."""
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("{")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["run", WRITE, "--out", "o", "--workers", "0"],
            "asyncflow run: error: argument --workers: expected a positive integer, got '0'",
        ),
        (
            ["backfill", WRITE, "--start", "2026-01-01", "--stop", "2026-01-02", "--workers", "x"],
            "argument --workers: expected a positive integer, got 'x'",
        ),
        (
            ["run", WRITE, "--out", "o", "--resources", "memory_gb=-1"],
            "argument --resources: memory_gb must be a non-negative number, got -1",
        ),
        (
            ["run", WRITE, "--out", "o", "--resources", "memory_gb"],
            "argument --resources: expected NAME=AMOUNT, got 'memory_gb'",
        ),
        (
            ["run", WRITE, "--out", "o", "--log-level", "LOUD"],
            "argument --log-level: expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got 'LOUD'",
        ),
        (
            ["backfill", WRITE, "--start", "2026-01-01", "--stop", "2", "--log-level", "verbose"],
            "argument --log-level: expected DEBUG, INFO, WARNING, ERROR or CRITICAL",
        ),
        (["run", WRITE, "--out", "o", "--log-format", "xml"], "invalid choice: 'xml'"),
        (["graph", WRITE, "--out", "o", "--format", "png"], "invalid choice: 'png'"),
        (["history", "--limit", "0"], "argument --limit: expected a positive integer, got '0'"),
        (["show"], "the following arguments are required: RUN_ID"),
        (
            ["show", "r1", "--status", "failed,brokn"],
            "argument --status: unknown status 'brokn' (expected running, success, failed,",
        ),
        (["show", "r1", "--limit", "-1"], "argument --limit: expected 0 or a positive integer"),
        (["history", "--status", "done"], "argument --status: unknown status 'done'"),
        (["run", WRITE, "--out", "o", "--bogus", "1"], "unrecognized arguments: --bogus 1"),
        (
            ["backfill", "daily:Report", "--start", "someday", "--stop", "2026-01-02"],
            "parameter 'start': expected a date like 2026-11-23, got 'someday'",
        ),
        (
            ["run", WRITE, "--out", "o", "--force", "Nope", "--no-journal"],
            "force: no task id or family of the graph matches 'Nope' (families there: Write)",
        ),
        (
            ["run", "tests.fixtures.cli_tasks.Write", "--out", "o"],
            "expected MODULE:TASK (e.g. pipelines.daily:Report), got "
            "'tests.fixtures.cli_tasks.Write'; did you mean 'tests.fixtures.cli_tasks:Write'?",
        ),
        (
            ["graph", "tests.fixtures.cli_tasks.Write", "--out", "o"],
            "did you mean 'tests.fixtures.cli_tasks:Write'?",
        ),
        (["run", "missing.py:Report"], "no such file: missing.py"),
        (["run", "broken:Report"], "cannot import 'broken': SyntaxError: expected ':'"),
        (["graph", "broken.py:Report"], "SyntaxError: expected ':' (broken.py, line 3)"),
        (["run", "raises:Report"], "cannot import 'raises': KeyError: 'path' ({tmp}/raises.py:4)"),
        (
            ["backfill", "raises.py:Report", "--start", "2026-01-01", "--stop", "2026-01-02"],
            "cannot import 'raises.py': KeyError: 'path' ({tmp}/raises.py:4)",
        ),
        (
            ["run", "needs_dep:Report"],
            "cannot import 'needs_dep': ModuleNotFoundError: No module named "
            "'no_such_dependency_xyz' ({tmp}/needs_dep.py:2)",
        ),
        (
            ["run", "bad_default:Report"],
            "cannot import 'bad_default': ParameterError: Report: parameter 'n': "
            "expected an integer like 42, got 'x' ({tmp}/bad_default.py:6)",
        ),
        (
            ["run", "bad_init:Report"],
            "Report: cannot build the task: RuntimeError: init broke ({tmp}/bad_init.py:5)",
        ),
    ],
)
def test_usage_error_is_one_line_and_exits_two(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """A bad option, value or module gives one line naming it (no traceback), exit 2."""
    for name, text in MODULES.items():
        (tmp_path / name).write_text(text)
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message.format(tmp=tmp_path) in _one_error_line(proc)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("ASYNCFLOW_WORKERS", "x"), ("ASYNCFLOW_LOG_LEVEL", "LOUD"), ("ASYNCFLOW_LOG_FORMAT", "xml")],
)
def test_bad_variable_is_one_line_naming_it(tmp_path: Path, variable: str, value: str) -> None:
    """A bad ASYNCFLOW_* variable is reported by name in one line, exit 2."""
    (tmp_path / "asyncflow.toml").write_text("workers = 2\n")
    proc = subprocess.run(
        [sys.executable, "-m", "asyncflow", "run", WRITE, "--out", "o", "--no-journal"],
        cwd=tmp_path,
        env=cli_env(**{variable: value}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert _one_error_line(proc).startswith(f"asyncflow: error: {variable} must be ")


def test_journal_error_is_one_line(tmp_path: Path) -> None:
    """A --journal that is not a journal is a JournalError in one line, exit 2."""
    (tmp_path / "j.db").write_text("not a journal")
    proc = cli("run", WRITE, "--out", "o", "--journal", "j.db", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    line = _one_error_line(proc)
    assert line.startswith("asyncflow: error: ") and "j.db" in line


def test_show_counts_filters_and_limits_a_big_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`show` of a run of 500 tasks (50 failed twice): the attempts counted by status at
    the top, 200 rows then a line saying how many more; --status and --limit choose."""
    import anyio
    from tests.web.test_run_paging import Leaf, leaf_events

    from asyncflow.cli import main
    from asyncflow.journal import Journal, RunStatus

    path = tmp_path / "journal.db"

    async def fill() -> None:
        async with Journal.open(path) as journal:
            await journal.begin_run("big", [Leaf(i=i).task_id for i in range(500)], started=1.0)
            for i in range(500):
                for event in leaf_events("big", i):
                    journal.record(event)
            await journal.end_run("big", RunStatus.FAILED)

    anyio.run(fill, backend="asyncio")

    def show(*args: str) -> list[str]:
        assert main(["show", "big", "--journal", str(path), *args]) == 0
        return capsys.readouterr().out.rstrip("\n").splitlines()

    default = show()
    failed = show("--status", "failed", "--limit", "3", "--tracebacks")
    every = show("--limit", "0")
    assert "  attempts   450 success, 100 failed" in default
    assert any(
        line.startswith("  requested  Leaf_0_") and "and 497 more (500 in all)" in line
        for line in default
    )
    assert sum(1 for line in default if line.startswith("Leaf_")) == 200
    assert (
        default[-1] == "350 more attempts not shown (--limit N shows more, --limit 0 all of them)"
    )
    assert [line.split()[:3] for line in failed if line.startswith("Leaf_")] == [
        [Leaf(i=0).task_id, "1", "failed"],
        [Leaf(i=0).task_id, "2", "failed"],
        [Leaf(i=10).task_id, "1", "failed"],
    ]
    assert sum(1 for line in failed if line.startswith("Traceback of")) == 3
    assert failed[-1] == "97 more attempts not shown (--limit N shows more, --limit 0 all of them)"
    assert sum(1 for line in every if line.startswith("Leaf_")) == 550
    assert "more attempts not shown" not in every[-1]
    assert main(["history", "--journal", str(path), "--status", "success"]) == 0
    assert capsys.readouterr().out.strip() == "No runs in the journal."
    assert main(["history", "--journal", str(path), "--status", "failed,success"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:2] == ["big", "failed"]
