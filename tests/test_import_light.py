"""``import asyncflow`` stays light: what only some programs need loads when first used.

Checked in a fresh interpreter through ``sys.modules`` (what was imported), never by
timing: the import-time figures live in ``benchmarks/``.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

HEAVY = (
    "structlog",  # imports rich: loaded with the first run or log record
    "rich",
    "aiosqlite",  # the journal's SQLite parts: loaded when a journal is opened
    "sqlite3",
    "asyncflow.journal.sqlite",
    "asyncflow.journal.history",
    "asyncflow.journal.leases",
    "asyncflow.targets.s3",  # remote and table targets: loaded when first named
    "asyncflow.targets.gcs",
    "asyncflow.targets._remote",
    "asyncflow.targets.table",
    "asyncflow.progress",
    "asyncflow.cli",
    "asyncflow.logging",
    "boto3",
    "botocore",
    "aiobotocore",
    "gcsfs",
    "pandas",
)


def _imported_after(code: str) -> list[str]:
    """The modules of HEAVY (or their submodules) a fresh interpreter has after ``code``."""
    script = (
        "import json, sys\n"
        f"{code}\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted({h for h in heavy for m in sys.modules"
        " if m == h or m.startswith(h + '.')})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def test_import_asyncflow_loads_none_of_the_heavy_parts() -> None:
    """import asyncflow loads no logging library, journal backend, remote target or CLI."""
    assert _imported_after("import asyncflow") == []


def test_defining_a_task_loads_none_of_the_heavy_parts() -> None:
    """Defining and building tasks (ids included) needs none of them either."""
    code = (
        "import asyncflow\n"
        "class T(asyncflow.Task):\n"
        "    n = asyncflow.IntParameter()\n"
        "    def output(self): return asyncflow.LocalTarget(f'/tmp/t{self.n}')\n"
        "T(n=1).task_id\n"
    )
    assert _imported_after(code) == []


@pytest.mark.parametrize(
    ("where", "name", "module"),
    [
        ("asyncflow", "S3Target", "asyncflow.targets.s3"),
        ("asyncflow", "GCSTarget", "asyncflow.targets.gcs"),
        ("asyncflow", "DuckDBTarget", "asyncflow.targets.table"),
        ("asyncflow.targets", "TableTarget", "asyncflow.targets.table"),
        ("asyncflow.targets", "probe_many", "asyncflow.targets._probe"),
        ("asyncflow.targets", "RequestCounter", "asyncflow.targets._remote"),
        ("asyncflow.journal", "Journal", "asyncflow.journal.sqlite"),
        ("asyncflow.journal", "SCHEMA_VERSION", "asyncflow.journal.schema"),
        ("asyncflow.journal", "format_run", "asyncflow.journal.format"),
    ],
)
def test_a_name_loaded_on_first_use_is_its_modules_own(where: str, name: str, module: str) -> None:
    """A lazy name is listed by dir(), its module loads at the first use, and the
    name is then that module's own object (also through ``from ... import``); an
    unknown name is still an AttributeError naming it."""
    code = (
        f"import importlib, {where}\n"
        f"package = importlib.import_module({where!r})\n"
        f"assert {module!r} not in sys.modules, 'loaded before use'\n"
        f"assert {name!r} in dir(package)\n"
        f"from {where} import {name} as value\n"
        f"assert value is getattr(importlib.import_module({module!r}), {name!r})\n"
        f"assert vars(package)[{name!r}] is value  # kept: the next use costs nothing\n"
        "try:\n"
        "    package.NoSuchName\n"
        "except AttributeError as exc:\n"
        f"    assert str(exc) == \"module {where!r} has no attribute 'NoSuchName'\", exc\n"
        "else:\n"
        "    raise AssertionError('an unknown name resolved')\n"
    )
    _imported_after(code)


def test_a_run_without_a_journal_opens_no_journal_backend() -> None:
    """run(journal=None) in a fresh interpreter never imports the SQLite journal."""
    code = (
        "import asyncio, asyncflow\n"
        "class T(asyncflow.Task):\n"
        "    async def run(self): pass\n"
        "assert asyncio.run(asyncflow.run(T(), journal=None)).ok\n"
    )
    loaded = _imported_after(code)
    assert "asyncflow.journal.sqlite" not in loaded and "aiosqlite" not in loaded
    assert "structlog" in loaded  # a run takes its logger: structlog loads now, not before


def test_a_run_on_a_journal_file_loads_no_postgresql_part(tmp_path: pathlib.Path) -> None:
    """run() on the default journal file opens it with the SQLite backend alone: the
    PostgreSQL backend (and asyncpg) load only when a URL names the journal."""
    code = (
        "import asyncio, asyncflow\n"
        "class T(asyncflow.Task):\n"
        "    async def run(self): pass\n"
        f"assert asyncio.run(asyncflow.run(T(), journal={str(tmp_path / 'j.db')!r})).ok\n"
        "postgres = [m for m in sys.modules if 'postgres' in m or m.startswith('asyncpg')]\n"
        "assert not postgres, postgres\n"
    )
    loaded = _imported_after(code)
    assert "asyncflow.journal.sqlite" in loaded  # the journal was opened
