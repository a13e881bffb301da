"""LocalTarget: atomic files on disk, and an async path that never blocks the loop."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from asyncflow.errors import TargetError, TargetNotFoundError
from asyncflow.targets import LocalTarget

from ._support import Boom, write_then_raise, write_then_raise_sync

pytestmark = pytest.mark.anyio


# --- Recording filesystem calls through audit hooks (PEP 578) -------------------
#
# Audit hooks cannot be removed, so one hook is installed for the whole session;
# it forwards to whichever recorder a test has active, and to nothing otherwise.

_FS_EVENTS = frozenset({"open", "os.mkdir", "os.rename", "os.remove", "os.scandir"})
_active: list[FsRecorder] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event in _FS_EVENTS and _active:
        _active[-1].see(event, args)


@dataclass
class FsCall:
    event: str
    path: str
    thread: int


@dataclass
class FsRecorder:
    """Records open/mkdir/rename/remove calls under ``root``, and the thread of each."""

    root: str
    calls: list[FsCall] = field(default_factory=list)
    on_call: Callable[[FsCall], None] | None = None

    def see(self, event: str, args: tuple[Any, ...]) -> None:
        path = args[0]
        if not (isinstance(path, str) and path.startswith(self.root)):
            return
        call = FsCall(event, path, threading.get_ident())
        self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)


@pytest.fixture(scope="session")
def _audit_hook() -> None:
    sys.addaudithook(_audit)


@pytest.fixture
def fs_calls(_audit_hook: None, tmp_path: Path) -> Iterator[FsRecorder]:
    """Record the filesystem calls made under tmp_path during the test."""
    recorder = FsRecorder(str(tmp_path))
    _active.append(recorder)
    yield recorder
    _active.remove(recorder)


# --- Identity -------------------------------------------------------------------


def test_path_str_fspath_and_repr() -> None:
    """The path is kept as given and shows up in str(), os.fspath() and repr()."""
    target = LocalTarget(Path("data") / "x.csv")
    assert target.path == os.path.join("data", "x.csv")
    assert str(target) == target.path
    assert os.fspath(target) == target.path
    assert repr(target) == f"LocalTarget({target.path!r})"


def test_equality_uses_absolute_normalised_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative, absolute and un-normalised spellings of one file are equal and hash alike."""
    monkeypatch.chdir(tmp_path)
    spellings = [
        LocalTarget("x.csv"),
        LocalTarget(tmp_path / "x.csv"),
        LocalTarget(f"sub{os.sep}..{os.sep}x.csv"),
    ]
    assert len(set(spellings)) == 1
    assert spellings[0] == spellings[1] == spellings[2]
    assert LocalTarget("x.csv") != LocalTarget("y.csv")


def test_not_equal_to_a_plain_path(tmp_path: Path) -> None:
    """A target is not equal to the str or Path it was made from."""
    target = LocalTarget(tmp_path / "x.csv")
    assert target != str(tmp_path / "x.csv")
    assert target != tmp_path / "x.csv"


# --- Atomic writes on disk ------------------------------------------------------


async def test_parent_folders_are_created(tmp_path: Path) -> None:
    """Writing creates the missing parent folders."""
    target = LocalTarget(tmp_path / "a" / "b" / "c.txt")
    await target.write_text("deep")
    assert (tmp_path / "a" / "b" / "c.txt").read_text(encoding="utf-8") == "deep"


async def test_data_goes_to_hidden_temp_file_until_commit(tmp_path: Path) -> None:
    """While the block is open, only a hidden temp file beside the target exists."""
    target = LocalTarget(tmp_path / "x.csv")
    async with target.open("w") as f:
        f.write("a,b\n")
        (entry,) = os.listdir(tmp_path)
        assert entry.startswith(".x.csv.tmp-")
        assert not await target.exists()
    assert os.listdir(tmp_path) == ["x.csv"]


async def test_no_temp_file_left_after_success(tmp_path: Path) -> None:
    """After a successful write the folder holds the target and nothing else."""
    target = LocalTarget(tmp_path / "x.csv")
    await target.write_text("first")
    await target.write_text("second")
    assert os.listdir(tmp_path) == ["x.csv"]


async def test_no_temp_file_left_after_exception(tmp_path: Path) -> None:
    """After a failed write the folder holds only the previous version."""
    target = LocalTarget(tmp_path / "x.csv")
    await target.write_text("old")
    with pytest.raises(Boom):
        await write_then_raise(target, "new")
    assert os.listdir(tmp_path) == ["x.csv"]
    assert (tmp_path / "x.csv").read_text(encoding="utf-8") == "old"


async def test_no_temp_file_left_after_cancellation(tmp_path: Path) -> None:
    """After a cancelled write the folder is empty."""
    target = LocalTarget(tmp_path / "x.csv")
    with anyio.CancelScope() as scope:
        async with target.open("wb") as f:
            f.write(b"partial")
            scope.cancel()
            await anyio.sleep_forever()
    assert os.listdir(tmp_path) == []


def test_write_replaces_file_instead_of_rewriting_it(tmp_path: Path) -> None:
    """A reader that opened the old file keeps reading the old content (os.replace)."""
    target = LocalTarget(tmp_path / "x.txt")
    with target.open("w") as f:
        f.write("old content")
    with open(tmp_path / "x.txt", encoding="utf-8") as old_reader:
        with target.open("w") as f:
            f.write("new content")
        assert old_reader.read() == "old content"
    assert (tmp_path / "x.txt").read_text(encoding="utf-8") == "new content"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
async def test_written_file_gets_usual_permissions(tmp_path: Path) -> None:
    """The committed file has the same mode as one made by open(), not a private 0o600."""
    reference = tmp_path / "reference"
    reference.write_bytes(b"")
    target = LocalTarget(tmp_path / "x.bin")
    await target.write_bytes(b"data")
    assert (tmp_path / "x.bin").stat().st_mode == reference.stat().st_mode


async def test_missing_file_error_names_the_path(tmp_path: Path) -> None:
    """Reading a missing file raises TargetNotFoundError with the full path in it."""
    target = LocalTarget(tmp_path / "nope.txt")
    with pytest.raises(TargetNotFoundError) as info:
        await target.read_text()
    assert str(tmp_path / "nope.txt") in str(info.value)


# --- Without an event loop ------------------------------------------------------


def test_sync_form_works_without_event_loop(tmp_path: Path) -> None:
    """Plain synchronous code with no event loop can write and read."""
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    target = LocalTarget(tmp_path / "sync" / "x.txt")
    with target.open("w") as f:
        f.write("no loop here")
    with target.open("r") as f:
        assert f.read() == "no loop here"
    assert os.listdir(tmp_path / "sync") == ["x.txt"]


def test_sync_form_discards_on_exception_without_event_loop(tmp_path: Path) -> None:
    """Without an event loop, a failed write also leaves nothing behind."""
    target = LocalTarget(tmp_path / "x.txt")
    with pytest.raises(Boom):
        write_then_raise_sync(target, "partial")
    assert os.listdir(tmp_path) == []


# --- The async form does not block the event loop -------------------------------


async def test_async_form_does_no_filesystem_call_on_event_loop_thread(
    tmp_path: Path, fs_calls: FsRecorder
) -> None:
    """Opening, creating folders, renaming and deleting all happen in worker threads."""
    loop_thread = threading.get_ident()
    target = LocalTarget(tmp_path / "sub" / "x.txt")
    await target.write_text("v1")
    with pytest.raises(Boom):
        await write_then_raise(target, "v2")
    assert await target.read_text() == "v1"
    await target.remove()

    assert {call.event for call in fs_calls.calls} == {"os.mkdir", "open", "os.rename", "os.remove"}
    assert [call for call in fs_calls.calls if call.thread == loop_thread] == []


async def test_other_coroutines_run_while_commit_renames(
    tmp_path: Path, fs_calls: FsRecorder
) -> None:
    """A ticker coroutine ticks while a large write's commit is in its rename."""
    loop_thread = threading.get_ident()
    rename_started = anyio.Event()
    ticked = anyio.Event()
    ticks: list[str] = []

    async def ticker() -> None:
        await rename_started.wait()
        ticks.append("tick")
        ticked.set()

    def hold_rename_until_ticked(call: FsCall) -> None:
        if call.event != "os.rename":
            return
        assert call.thread != loop_thread, "the commit renamed on the event loop thread"
        # This thread is inside the commit; the rename waits for the ticker.
        anyio.from_thread.run_sync(rename_started.set)
        anyio.from_thread.run(ticked.wait)

    fs_calls.on_call = hold_rename_until_ticked
    target = LocalTarget(tmp_path / "big.bin")
    payload = os.urandom(1024) * 8 * 1024  # 8 MiB
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        async with target.open("wb") as f:
            f.write(payload)
    assert ticks == ["tick"]
    assert (tmp_path / "big.bin").read_bytes() == payload


# --- Leftovers of interrupted writes --------------------------------------------

# Writes to a path in argv[1], then waits to be killed before committing.
_KILLED_WRITER = """
import sys, time
from asyncflow.targets import LocalTarget
with LocalTarget(sys.argv[1]).open("wb") as f:
    f.write(b"partial")
    f.flush()
    print("WRITING", flush=True)
    time.sleep(60)
"""


def abandon_write(target: LocalTarget, data: bytes) -> None:
    """Start a write and walk away from it without commit or discard, like a killed process."""
    writer = target._open_writer()
    writer.file.write(data)
    writer.file.close()


def temp_files(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if ".tmp-" in name)


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
async def test_discard_removes_temp_file_of_a_killed_writer(tmp_path: Path) -> None:
    """kill -9 during a write leaves one temp file; discarding removes it and keeps the file."""
    target = LocalTarget(tmp_path / "out.txt")
    await target.write_text("previous")
    command = [sys.executable, "-c", _KILLED_WRITER, target.path]
    async with await anyio.open_process(command, stdin=None, stderr=None) as proc:
        assert proc.stdout is not None
        assert await BufferedByteReceiveStream(proc.stdout).receive_until(b"\n", 100) == b"WRITING"
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert len(temp_files(tmp_path)) == 1

    assert await target.discard_partial_writes() == 1
    assert os.listdir(tmp_path) == ["out.txt"]
    assert await target.read_text() == "previous"


async def test_discard_removes_only_this_targets_temp_files(tmp_path: Path) -> None:
    """Every temp file of the target goes; other targets' temps and look-alike names stay."""
    target = LocalTarget(tmp_path / "out.txt")
    await target.write_text("committed")
    other = LocalTarget(tmp_path / "other.txt")
    abandon_write(other, b"someone else's")
    (other_temp,) = temp_files(tmp_path)
    abandon_write(target, b"first attempt")
    abandon_write(target, b"second attempt")
    look_alikes = [
        ".out.txt.tmp-notmine",
        ".out.txt.tmp-0123456789a",  # 11 hex digits
        ".out.txt.tmp-0123456789abc",  # 13
        ".out.txt.tmp-0123456789AB",  # token_hex is lower case
        ".out.txt.tmp-0123456789ab.bak",
        ".outxtxt.tmp-0123456789ab",  # the dots are literal
        "out.txt.tmp-0123456789ab",  # not hidden
        "..out.txt.tmp-0123456789ab",  # a temp of ".out.txt"
        ".x.out.txt.tmp-0123456789ab",  # a temp of "x.out.txt"
    ]
    for name in look_alikes:
        (tmp_path / name).write_bytes(b"")

    assert await target.discard_partial_writes() == 2
    assert await target.read_text() == "committed"
    assert sorted(os.listdir(tmp_path)) == sorted(["out.txt", other_temp, *look_alikes])
    assert await other.discard_partial_writes() == 1
    assert await target.discard_partial_writes() == 0


async def test_discard_in_missing_folder_returns_zero(tmp_path: Path) -> None:
    """A target whose folder does not exist has nothing to discard, and no folder is made."""
    target = LocalTarget(tmp_path / "missing" / "out.txt")
    assert await target.discard_partial_writes() == 0
    assert not (tmp_path / "missing").exists()


async def test_discard_failure_raises_target_error_naming_the_path(tmp_path: Path) -> None:
    """A leftover that cannot be removed (here a folder) raises TargetError naming it."""
    leftover = tmp_path / ".out.txt.tmp-0123456789ab"
    leftover.mkdir()
    with pytest.raises(TargetError, match=str(leftover)):
        await LocalTarget(tmp_path / "out.txt").discard_partial_writes()


async def test_discard_lists_and_removes_in_a_worker_thread(
    tmp_path: Path, fs_calls: FsRecorder
) -> None:
    """Listing the folder and removing temp files never happen on the event loop thread."""
    target = LocalTarget(tmp_path / "out.txt")
    abandon_write(target, b"partial")
    fs_calls.calls.clear()
    assert await target.discard_partial_writes() == 1
    assert {call.event for call in fs_calls.calls} == {"os.scandir", "os.remove"}
    assert [call for call in fs_calls.calls if call.thread == threading.get_ident()] == []
