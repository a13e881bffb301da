"""Runs an example pipeline under Luigi or under asyncflow.luigi, in a folder of its own.

The asyncflow variant is the same source with its imports changed, as a user
migrating would change them.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

PIPELINES = Path(__file__).parent / "pipelines"
VARIANTS = ("luigi", "asyncflow")
_IMPORT = re.compile(r"^(\s*)import luigi$", re.MULTILINE)
_FROM = re.compile(r"^(\s*)from luigi(\.| )", re.MULTILINE)
_SKIPPED = {".asyncflow", "__pycache__"}


def migrate(source: str) -> str:
    """``import luigi`` -> ``import asyncflow.luigi as luigi``; ``from luigi...`` likewise."""
    source = _IMPORT.sub(r"\1import asyncflow.luigi as luigi", source)
    return _FROM.sub(r"\1from asyncflow.luigi\2", source)


def prepare(folder: Path, variant: str, files: list[str]) -> None:
    """Copy the pipeline files (migrated for asyncflow) and any config beside them."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in files:
        name, _, dest = entry.partition(":")  # "retries.cfg:luigi.cfg" renames
        text = (PIPELINES / name).read_text()
        if variant == "asyncflow" and name.endswith(".py"):
            text = migrate(text)
        (folder / (dest or name)).write_text(text)


def environment(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LUIGI_", "ASYNCFLOW_"))}
    env["PYTHONPATH"] = str(folder)
    env["PYTHONHASHSEED"] = "0"
    return env


def run(
    folder: Path, args: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=folder,
        env=env or environment(folder),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def produced(folder: Path, inputs: list[str]) -> dict[str, bytes]:
    """Every file the run left, by relative path (the inputs and the journal excluded).

    gzip files are compared by content: their headers name the compressing program.
    """
    found: dict[str, bytes] = {}
    names = {entry.partition(":")[2] or entry for entry in inputs}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_dir() or set(relative.parts) & _SKIPPED or str(relative) in names:
            continue
        data = path.read_bytes()
        found[str(relative)] = gzip.decompress(data) if path.suffix == ".gz" else data
    return found


def clean(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
