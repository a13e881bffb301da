"""Luigi's command line: ``python -m asyncflow.luigi`` takes what ``python -m luigi``
takes, and gives the same files and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from luigi_runner import VARIANTS, environment, prepare, produced, run

pytest.importorskip("luigi")

FILES = ["cli_pipeline.py"]
COMMAND_LINES = {
    "task-params": ["Greet", "--name", "ada", "--times", "2", "--shout"],
    "global-params": ["Greet", "--name", "bo", "--Base-suffix", "-x", "--settings-greeting", "hej"],
    "workers": ["Greet", "--name", "cy", "--workers", "2"],
    "failure": ["Fails"],
    "failure-retcode": ["Fails", "--retcode-task-failed", "3"],
    "missing-input": ["NeedsInput"],
    "missing-input-retcode": ["NeedsInput", "--retcode-missing-data", "5"],
    "missing-param": ["Greet"],
    "unknown-task": ["Greeet", "--name", "x"],
    "unknown-flag": ["Greet", "--name", "x", "--colour", "red"],
    "bad-value": ["Greet", "--name", "x", "--times", "many"],
    "no-task": [],
}
_ENTRY = {
    "luigi": ["-m", "luigi", "--module", "cli_pipeline"],
    "asyncflow": ["-m", "asyncflow.luigi", "--module", "cli_pipeline"],
}


def _outcome(folder: Path, variant: str, args: list[str]) -> tuple[int, dict[str, bytes]]:
    prepare(folder, variant, FILES)
    done = run(folder, [*_ENTRY[variant], *args, "--local-scheduler"])
    return done.returncode, produced(folder, FILES)


@pytest.mark.parametrize("name", list(COMMAND_LINES))
def test_command_line_as_luigi(name: str, tmp_path: Path) -> None:
    """The same exit code and the same files as Luigi's command line."""
    luigi_code, luigi_files = _outcome(tmp_path / "luigi", "luigi", COMMAND_LINES[name])
    code, files = _outcome(tmp_path / "asyncflow", "asyncflow", COMMAND_LINES[name])
    assert (code, sorted(files)) == (luigi_code, sorted(luigi_files))
    assert files == luigi_files


def test_help_lists_the_task_parameters(tmp_path: Path) -> None:
    """``--help`` with a task shows its parameters' descriptions and exits 0."""
    for variant in VARIANTS:
        folder = tmp_path / variant
        prepare(folder, variant, FILES)
        done = run(folder, [*_ENTRY[variant], "Greet", "--help"])
        assert done.returncode == 0, done.stderr
        assert "who to greet" in done.stdout, variant
        assert "--times" in done.stdout, variant


def test_luigi_run_in_a_script(tmp_path: Path) -> None:
    """A script ending in ``luigi.run()`` runs the task its arguments name."""
    for variant in VARIANTS:
        folder = tmp_path / variant
        prepare(folder, variant, FILES)
        args = ["cli_pipeline.py", "Greet", "--name", "di", "--local-scheduler"]
        done = run(folder, args)
        assert done.returncode == 0, done.stderr
        assert (folder / "greet-di-1-False.txt").read_text() == "hello di\n", variant


def test_asyncflow_luigi_subcommand(tmp_path: Path) -> None:
    """``asyncflow luigi ...`` is the same command line."""
    prepare(tmp_path, "asyncflow", FILES)
    done = run(
        tmp_path,
        ["-m", "asyncflow", "luigi", "--module", "cli_pipeline", "Greet", "--name", "ed"],
        environment(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "greet-ed-1-False.txt").read_text() == "hello ed\n"
