"""A damaged journal is refused, not half-read; a path that is no journal is refused.

The journals here are written by real runs, then damaged the way a disk or a
stray tool would: a value rewritten through sqlite3, bytes flipped inside the
file, page headers overwritten.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest
from tests.fixtures import cli
from tests.fixtures.damage_tasks import Files, Mark

import asyncflow
from asyncflow.journal import SCHEMA_VERSION, Journal, LeaseOutcome

pytestmark = pytest.mark.anyio

PAGE = 4096
TASKS = "tests.fixtures.damage_tasks"


def dag(folder: Path) -> Files:
    return Files(str(folder))


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    """A journal written by a real ``asyncflow run`` of :func:`dag` (all done, closed)."""
    path = tmp_path / "journal.db"
    ran = cli(
        "run", f"{TASKS}:Files", "--folder", str(tmp_path), "--journal", str(path), cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stderr
    Mark.runs.clear()
    return path


def sql(path: Path, statement: str) -> None:
    db = sqlite3.connect(path)
    try:
        with db:
            db.execute(statement)
    finally:
        db.close()


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The stderr of a command that failed with exit 2 and a one-line message."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("asyncflow: error: "), lines
    return lines[0]


def run_id_of(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return str(db.execute("SELECT run_id FROM runs").fetchone()[0])
    finally:
        db.close()


# ------------------------------------------------------- values that do not decode

DAMAGE = {
    "attempt-status": "UPDATE attempts SET status = 'stccess' WHERE task_id LIKE 'Mark_1%'",
    "params": "UPDATE attempts SET params = '{\"n\": 1' WHERE task_id LIKE 'Mark_1%'",
    "run-status": "UPDATE runs SET status = 'finnished'",
    "requested": "UPDATE run_requests SET requested = '[\"File_0'",
    "started": "UPDATE runs SET started = 'yesterday'",
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
async def test_a_row_that_does_not_decode_is_a_journal_error(journal: Path, damage: str) -> None:
    """Reading a run whose rows hold what their columns cannot raises JournalError
    naming the file and the row, and saying how to get out."""
    sql(journal, damage)
    run_id = run_id_of(journal)
    async with Journal.open(journal) as opened:
        with pytest.raises(asyncflow.JournalError) as raised:
            await opened.run(run_id)
        message = str(raised.value)
        with pytest.raises(asyncflow.JournalError):
            await opened.runs()  # refused from then on
    assert message.startswith(f"{journal}: damaged journal: ")
    assert repr(run_id) in message or "Mark_1_" in message
    assert f"asyncflow journal check {journal}" in message and "move the file aside" in message
    assert "\n" not in message


async def test_a_lease_that_does_not_decode_is_a_journal_error(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with Journal.open(path) as opened:
        await opened.begin_run("run-1")
        await opened.claim("run-1", ["a"], since=0.0)
        await opened.release("a", "run-1", LeaseOutcome.FAILED)
    sql(path, "UPDATE leases SET outcome = 'faild'")
    async with Journal.open(path) as opened:
        with pytest.raises(asyncflow.JournalError, match="lease of 'a': outcome 'faild' is not"):
            await opened.watch(["a"])


@pytest.mark.parametrize("damage", [DAMAGE["attempt-status"], DAMAGE["params"]])
def test_history_and_show_refuse_a_damaged_journal_in_one_line(journal: Path, damage: str) -> None:
    """`asyncflow history` and `asyncflow show` print one line and exit 2, no traceback."""
    sql(journal, damage)
    folder = journal.parent
    shown = one_line_error(cli("show", run_id_of(journal), "--journal", str(journal), cwd=folder))
    assert "damaged journal" in shown and "Mark_1_" in shown
    if "status" in damage:
        listed = one_line_error(cli("history", "--journal", str(journal), cwd=folder))
        assert "'stccess' is not one of" in listed


async def test_run_refuses_a_journal_whose_success_is_damaged(journal: Path) -> None:
    """The success of a task without outputs no longer reads as one: the run raises
    JournalError instead of taking the task as never done and running it again."""
    sql(journal, DAMAGE["attempt-status"])
    (journal.parent / "out" / "1.txt").unlink()  # so that the run needs Mark(1)'s success
    with pytest.raises(asyncflow.JournalError, match="damaged journal: attempts of task 'Mark_1_"):
        await asyncflow.run(dag(journal.parent), journal=journal)
    assert Mark.runs == []


# ------------------------------------------------------- bytes damaged in the file


async def test_flipped_bytes_in_stored_statuses(journal: Path) -> None:
    """Every stored "success" flipped to "stccess" inside the file (its structure
    whole): history, show and run refuse it; `journal check` lists the rows."""
    data = journal.read_bytes()
    assert b"success" in data and not journal.with_name("journal.db-wal").exists()
    journal.write_bytes(data.replace(b"success", b"stccess"))
    folder = journal.parent
    assert "damaged journal" in one_line_error(
        cli("history", "--journal", str(journal), cwd=folder)
    )
    shown = cli("show", run_id_of(journal), "--journal", str(journal), cwd=folder)
    assert "damaged journal" in one_line_error(shown)
    (folder / "out" / "1.txt").unlink()  # so that the run needs Mark(1)'s success
    with pytest.raises(asyncflow.JournalError, match="damaged journal"):
        await asyncflow.run(dag(folder), journal=journal)
    assert Mark.runs == []
    checked = cli("journal", "check", str(journal), cwd=folder)
    assert checked.returncode == 2
    assert checked.stderr.startswith(f"{journal}: damaged journal (")
    assert "runs row " in checked.stderr and "'stccess' is not one of" in checked.stderr
    assert checked.stderr.count("attempts row ") == 7  # every attempt of the run
    assert "move the file aside" in checked.stderr


async def test_malformed_pages(journal: Path) -> None:
    """Page headers overwritten: SQLite finds the file malformed; every command
    says so in one line, and `journal check` reports the integrity check."""
    data = bytearray(journal.read_bytes())
    for page in range(1, len(data) // PAGE):  # all but the first (the schema)
        data[page * PAGE] = 0x77
    journal.write_bytes(bytes(data))
    folder = journal.parent
    listed = one_line_error(cli("history", "--journal", str(journal), cwd=folder))
    assert "malformed" in listed and f"asyncflow journal check {journal}" in listed
    with pytest.raises(asyncflow.JournalError, match="malformed"):
        await asyncflow.run(dag(folder), journal=journal)
    checked = cli("journal", "check", str(journal), cwd=folder)
    assert checked.returncode == 2
    assert "integrity_check: " in checked.stderr and "malformed" in checked.stderr


# ------------------------------------------------------------------ journal check


async def test_journal_check_of_a_whole_journal(journal: Path) -> None:
    """A whole journal: exit 0, one line with what was read; the file is unchanged."""
    before = journal.read_bytes()
    checked = cli("journal", "check", str(journal), cwd=journal.parent)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines() == [
        f"{journal}: OK (schema version {SCHEMA_VERSION}; 1 runs, 7 attempts, 0 leases, "
        "0 run_claims, 1 run_keys)"
    ]
    assert journal.read_bytes() == before


def test_journal_check_of_what_is_no_journal(tmp_path: Path) -> None:
    """No file, a text file, a PNG, another application's SQLite database, a folder:
    one line naming the path, exit 2, and nothing created or changed."""
    (tmp_path / "notes.txt").write_text("not a journal\n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    other = sqlite3.connect(tmp_path / "app.db")
    other.execute("CREATE TABLE users (name TEXT)")
    other.commit()
    other.close()
    (tmp_path / "folder").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    expected = {
        "missing.db": "no such journal file",
        "notes.txt": "not an SQLite database",
        "image.png": "not an SQLite database",
        "app.db": "is an SQLite database but not an asyncflow journal",
        "folder": "is a folder",
    }
    for name, why in expected.items():
        line = one_line_error(cli("journal", "check", name, cwd=tmp_path))
        assert line.startswith(f"asyncflow: error: {name}: ") and why in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# ------------------------------------------------------------- where a journal goes


async def test_only_the_default_journal_gets_its_folder_made(tmp_path: Path) -> None:
    """journal= into a folder that does not exist: JournalError naming the folder, no
    folder made, nothing run. The default journal (here a configured one) gets its
    folder, as .asyncflow does."""
    Mark.runs.clear()
    path = tmp_path / "typo" / "journal.db"
    with pytest.raises(asyncflow.JournalError, match=f"no folder '{tmp_path / 'typo'}'"):
        await asyncflow.run(Mark(1), journal=path)
    assert not (tmp_path / "typo").exists()
    assert Mark.runs == []
    configured = tmp_path / "state" / "journal.db"
    assert await asyncflow.run(Mark(1), config=asyncflow.Config(journal=str(configured)))
    assert configured.is_file() and Mark.runs == [1]
