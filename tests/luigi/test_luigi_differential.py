"""The example pipelines give the same files, events and statuses under Luigi and
under asyncflow.luigi (the same source, with only its imports changed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from luigi_runner import VARIANTS, prepare, produced, run

pytest.importorskip("luigi")

PIPELINES = {
    "basics": [],
    "dynamic": [],
    "wordcount": [],
    "failures": [],
    "params": [],
    "config": ["config.cfg:luigi.cfg"],
    "ranges": [],
    "mocks": [],
    "retries": ["retries.cfg:luigi.cfg"],
}
_NEEDS_ENGINE_GENERATORS: set[str] = set()


def _cases() -> list[object]:
    cases: list[object] = []
    for name in PIPELINES:
        marks = []
        if name in _NEEDS_ENGINE_GENERATORS:
            marks.append(
                pytest.mark.xfail(
                    strict=True, reason="needs the engine to run plain def run() generators"
                )
            )
        cases.append(pytest.param(name, marks=marks, id=name))
    return cases


@pytest.mark.parametrize("name", _cases())
def test_pipeline_gives_what_luigi_gives(name: str, tmp_path: Path) -> None:
    """Files written (report.json holds build results and events) match Luigi's."""
    files = ["_harness.py", f"{name}.py", *PIPELINES[name]]
    outcome: dict[str, dict[str, bytes]] = {}
    for variant in VARIANTS:
        folder = tmp_path / variant
        prepare(folder, variant, files)
        done = run(folder, ["-c", f"import {name}, _harness; _harness.finish({name}.scenario())"])
        assert done.returncode == 0, f"{variant}:\n{done.stderr[-4000:]}"
        outcome[variant] = produced(folder, files)
    luigi_files, ours = outcome["luigi"], outcome["asyncflow"]
    assert sorted(ours) == sorted(luigi_files)
    for path, data in luigi_files.items():
        assert ours[path] == data, f"{path} differs:\n{ours[path]!r}\nLuigi:\n{data!r}"
