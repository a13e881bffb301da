"""A damaged journal is refused, not half-read; a path that is no journal is refused.

The journals here are written by real runs, then damaged the way a disk or a
stray tool would: a value rewritten through sqlite3, bytes flipped inside the
file, page headers overwritten.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
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


# --------------------------------------------------- emptied, special and new files


async def test_an_emptied_journal_is_refused_not_taken_for_new(journal: Path) -> None:
    """A journal truncated to 0 bytes: run and history refuse it, naming the path and the
    way out (delete it), and nothing runs again; the file stays as it was."""
    journal.write_bytes(b"")
    with pytest.raises(asyncflow.JournalError) as raised:
        await asyncflow.run(Mark(1), journal=journal)
    message = str(raised.value)
    assert message.startswith(f"{journal}: is empty (0 bytes)")
    assert "delete the file" in message
    assert Mark.runs == []
    line = one_line_error(cli("history", "--journal", str(journal), cwd=journal.parent))
    assert "is empty (0 bytes)" in line
    assert journal.read_bytes() == b""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_or_a_device_at_the_journal_path_is_refused_at_once(tmp_path: Path) -> None:
    """`run` with a FIFO (or /dev/null) as its journal exits 2 at once with one line
    naming the path and what it is, where it used to hang on the FIFO."""
    fifo = tmp_path / "journal.db"
    os.mkfifo(fifo)
    for path, kind in ((fifo, "is a named pipe (FIFO)"), (Path(os.devnull), "character device")):
        ran = cli(
            "run", f"{TASKS}:Mark", "--n", "1", "--journal", str(path), cwd=tmp_path, timeout=20
        )
        line = one_line_error(ran)
        assert line.startswith(f"asyncflow: error: {path}: ") and kind in line, line


async def test_a_new_journal_is_private_and_made_whole(tmp_path: Path) -> None:
    """A new journal file (and its -wal and -shm while open) is mode 0600: it holds
    parameters and errors. Nothing but the journal is left in its folder."""
    path = tmp_path / "journal.db"
    async with Journal.open(path) as opened:
        await opened.begin_run("run-1")
        modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"journal.db": 0o600, "journal.db-wal": 0o600, "journal.db-shm": 0o600}
    assert [p.name for p in tmp_path.iterdir()] == ["journal.db"]
    assert path.read_bytes().startswith(b"SQLite format 3\x00")


# -------------------------------------------------------- damage the reads cannot see


def pages_of(path: Path, name: str) -> list[int]:
    """The pages (numbered from 1) of table or index ``name``, by SQLite's dbstat."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT pageno FROM dbstat WHERE name = ?", [name]).fetchall()
    finally:
        db.close()
    assert rows, f"no pages of {name}"
    return [int(row[0]) for row in rows]


@pytest.mark.parametrize("index", ["attempts_task", "attempts_succeeded"])
async def test_a_success_damaged_in_an_index_is_refused(journal: Path, index: str) -> None:
    """A byte of Mark(1)'s task id flipped in one index holding its success: the
    lookup would miss it and run the task again; the run refuses the journal."""
    task_id = Mark(1).task_id.encode()
    data = bytearray(journal.read_bytes())
    flipped = 0
    for page in pages_of(journal, index):
        start = (page - 1) * PAGE
        at = data.find(task_id, start, start + PAGE)
        if at >= 0:
            data[at + len(task_id) - 1] ^= 0x01  # the hash's last character
            flipped += 1
    assert flipped == 1
    journal.write_bytes(bytes(data))
    with pytest.raises(asyncflow.JournalError) as raised:
        await asyncflow.run(Mark(1), journal=journal)
    assert Mark.runs == []
    message = str(raised.value)
    assert message.startswith(f"{journal}: damaged journal: attempts of task 'Mark_1_")
    assert "both indexes of successes" in message


UNCLEAN = textwrap.dedent(
    """
    import os, sys
    import anyio
    from asyncflow.journal import Journal

    async def die_open(path):
        journal = await Journal.open(path)
        await journal.begin_run("killed")
        os._exit(0)  # the -wal file stays: not closed cleanly

    anyio.run(die_open, sys.argv[1])
    """
)


async def open_and_close(path: Path) -> None:
    opened = await Journal.open(path)
    await opened.close()


async def test_quick_check_when_the_journal_was_not_closed_cleanly(journal: Path) -> None:
    """A process died with the journal open (its -wal file is left), and a page the
    open does not read is damaged: the next open runs quick_check and refuses it."""
    pages = pages_of(journal, "attempts_family")  # (a connection closing last checkpoints)
    child = await anyio.run_process([sys.executable, "-c", UNCLEAN, str(journal)], check=False)
    assert child.returncode == 0, child.stderr
    assert journal.with_name("journal.db-wal").stat().st_size > 0
    data = bytearray(journal.read_bytes())
    for page in pages:
        data[(page - 1) * PAGE] = 0x77  # not a page type
    journal.write_bytes(bytes(data))
    with pytest.raises(asyncflow.JournalError) as raised:
        await open_and_close(journal)
    message = str(raised.value)
    assert message.startswith(f"{journal}: damaged journal: quick_check (the journal was not ")
    assert f"asyncflow journal check {journal}" in message


async def test_a_schema_text_that_is_not_utf8_is_damage(journal: Path) -> None:
    """A byte of the schema's SQL text flipped into invalid UTF-8: JournalError naming
    the file, not a UnicodeDecodeError."""
    data = bytearray(journal.read_bytes())
    at = data.index(b"CREATE TABLE", 0, PAGE)
    data[at + 3] = 0xFC  # CRE\xfcTE: SQLite's own message quotes the byte
    journal.write_bytes(bytes(data))
    with pytest.raises(asyncflow.JournalError, match=f"^{journal}: damaged journal: "):
        await asyncflow.run(Mark(1), journal=journal)
    assert Mark.runs == []
