"""Files on the local filesystem, written atomically.

A write goes to a hidden temporary file next to the target
(``.name.tmp-<random>``), which is flushed, fsynced and then moved onto the
final path with :func:`os.replace`; the folder is fsynced afterwards so the
rename survives a crash. Readers never see a partial file, and a reader that
already had the old file open keeps reading the old content. A process killed
mid-write leaves its temporary file behind;
:meth:`LocalTarget.discard_partial_writes` removes such leftovers.

Fencing: when the engine guards a task's commits (a run holding journal
leases), the rename happens under an exclusive ``flock`` of the folder, and
the guard is asked again while the lock is held, just before the rename. A
writer that stalled (stopped, swapped out, a slow fsync) past its lease finds
its lease lapsed there and renames nothing; if it stalls after that check,
it still holds the lock, so the new holder's rename comes after its own and
replaces it. Either way a stale writer's file never replaces a newer one.

``LocalTarget`` implements the synchronous hooks only; the base class runs
them in a worker thread for ``async with``, so opening, creating folders,
fsyncing, renaming and deleting never block the event loop. Reads and writes
on the returned file object are ordinary buffered file calls: in a coroutine,
large ones are better done with ``anyio.to_thread.run_sync`` (as the
``read_*``/``write_*`` helpers do).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import secrets
import time
from typing import TYPE_CHECKING, BinaryIO, Final

if TYPE_CHECKING:
    from typing_extensions import Buffer

import anyio.to_thread

from ..errors import TargetError, TargetNotFoundError
from .base import AtomicWriter, CommitGuard, Target, commit_guard

try:
    import fcntl
except ImportError:  # Windows: commits are checked, but not under a lock
    fcntl = None  # type: ignore[assignment]

__all__ = ["LocalTarget"]

# O_BINARY exists (and matters) only on Windows.
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
_TOKEN_BYTES: Final = 6  # temp names end with 12 hex digits


def _temp_path(folder: str, name: str) -> str:
    """A fresh temporary path for a write to ``folder/name``."""
    return os.path.join(folder, f".{name}.tmp-{secrets.token_hex(_TOKEN_BYTES)}")


def _temp_pattern(name: str) -> re.Pattern[str]:
    """Matches (with ``fullmatch``) exactly the names :func:`_temp_path` gives ``name``."""
    return re.compile(rf"\.{re.escape(name)}\.tmp-[0-9a-f]{{{2 * _TOKEN_BYTES}}}")


def _fsync_folder(folder: str) -> None:
    if os.name != "posix":  # folders cannot be opened on Windows
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fenced_replace(temp: str, target: Target, path: str, folder: str, guard: CommitGuard) -> None:
    """Ask ``guard`` again and rename ``temp`` onto ``path``, holding the folder's lock.

    The check and the rename are one step for every fenced writer of the
    folder (see the module's docstring); the folder is fsynced before the
    lock is let go.
    """
    if fcntl is None or os.name != "posix":
        guard(target)
        os.replace(temp, path)
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        _lock(fd, path, folder)  # let go when fd is closed
        guard(target)
        os.replace(temp, path)
        os.fsync(fd)
    finally:
        os.close(fd)


_LOCK_WAIT: Final = 60.0
"""Seconds a fenced commit waits for its folder's lock (held for a rename, unless the
writer holding it was stopped right then)."""


def _lock(fd: int, path: str, folder: str) -> None:
    """Take the exclusive lock of the open folder ``fd``, waiting up to ``_LOCK_WAIT``."""
    deadline = time.monotonic() + _LOCK_WAIT
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TargetError(
                    f"cannot write {path}: its folder {folder} stayed locked by another "
                    f"writer for {_LOCK_WAIT:g} s (a process stopped while committing?)"
                ) from None
            time.sleep(pause)  # in a worker thread: commits run there
            pause = min(pause * 2, 0.05)


def _remove_if_present(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _remove_temp_files(path: str) -> int:
    """Remove the temporary files of writes to ``path``; return how many were there."""
    folder, name = os.path.split(os.path.abspath(path))
    pattern = _temp_pattern(name)
    try:
        with os.scandir(folder) as entries:
            temps = [entry.path for entry in entries if pattern.fullmatch(entry.name)]
    except FileNotFoundError:
        return 0
    except OSError as error:
        raise TargetError(f"cannot look for temporary files in {folder}: {error}") from error
    removed = 0
    for temp in temps:
        try:
            os.remove(temp)
        except FileNotFoundError:
            continue  # gone since the listing: nothing left to remove
        except OSError as error:
            raise TargetError(f"cannot remove temporary file {temp}: {error}") from error
        removed += 1
    return removed


def _write_error(path: str, error: OSError) -> TargetError:
    """A failed write (a full disk, a quota, a read-only folder...), naming the target.

    The temporary file's own errors name no path, or the temporary one.
    """
    name = errno.errorcode.get(error.errno) if error.errno is not None else None
    code = f" ({name})" if name else ""
    return TargetError(f"cannot write {path}: {error.strerror or error}{code}")


class _TempFile(io.FileIO):
    """The temporary file of a write: its errors (a full disk) name the target's path.

    Buffered above, so this is called once per buffer-full or large write.
    """

    def __init__(self, fd: int, path: str) -> None:
        super().__init__(fd, "wb")
        self.target_path = path

    def write(self, data: Buffer, /) -> int:
        try:
            return super().write(data)
        except OSError as error:
            raise _write_error(self.target_path, error) from error


class _LocalWriter(AtomicWriter):
    """Writes to a hidden temporary file in the target's folder."""

    def __init__(self, path: str, target: Target) -> None:
        self._path = path
        self._target = target
        self._folder, name = os.path.split(os.path.abspath(path))
        self._temp = _temp_path(self._folder, name)
        try:
            os.makedirs(self._folder, exist_ok=True)
            # 0o666 minus the umask, like open(): a temp file from mkstemp would be 0o600.
            fd = os.open(self._temp, _TEMP_FLAGS, 0o666)
        except OSError as error:
            raise _write_error(path, error) from error
        try:
            self.file = io.BufferedWriter(_TempFile(fd, path))
        except BaseException:
            os.close(fd)
            _remove_if_present(self._temp)
            raise

    def commit(self) -> None:
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            guard = commit_guard.get()
            if guard is None:
                os.replace(self._temp, self._path)
                _fsync_folder(self._folder)
            else:
                _fenced_replace(self._temp, self._target, self._path, self._folder, guard)
        except OSError as error:
            raise _write_error(self._path, error) from error

    def discard(self) -> None:
        try:
            self.file.close()
        finally:
            # After a commit that got as far as os.replace, the temp file is gone.
            _remove_if_present(self._temp)


class LocalTarget(Target):
    """A file on the local filesystem.

    ``path`` is kept as given (relative paths stay relative, resolved against
    the working directory when used); equality and hashing use the absolute,
    normalised path computed at construction. Parent folders are created on
    write.
    """

    __slots__ = ("_absolute", "path")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path: str = os.fspath(path)
        if "\x00" in self.path:  # the operating system would refuse it at every use
            raise TargetError(f"{self.path!r} is not a valid path: it has a NUL character")
        self._absolute = os.path.abspath(self.path)

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LocalTarget) and type(other) is type(self):
            return self._absolute == other._absolute
        return NotImplemented

    def __hash__(self) -> int:
        return hash((type(self), self._absolute))

    async def exists(self) -> bool:
        """Return whether the path exists.

        This is a single ``stat`` call made directly on the event loop: cheaper
        than a thread hop, and the engine calls it for every task it considers.
        """
        return os.path.exists(self.path)  # noqa: ASYNC240  # one stat, see above

    async def remove(self) -> None:
        """Delete the file if it exists (in a worker thread)."""
        await anyio.to_thread.run_sync(_remove_if_present, self.path)

    async def discard_partial_writes(self) -> int:
        """Remove the temporary files that interrupted writes left beside the file.

        Only names of the form this target's writes use are touched: a hidden
        ``.name.tmp-`` followed by 12 hex digits. The file itself, other
        targets' temporary files and look-alike names stay. Returns how many
        were removed; 0 if the folder does not exist. Runs in a worker thread.

        Raises:
            TargetError: the folder could not be listed, or a temporary file
                could not be removed for a reason other than being gone
                already; the message names the path.
        """
        return await anyio.to_thread.run_sync(_remove_temp_files, self.path)

    def _open_reader(self) -> BinaryIO:
        try:
            return open(self.path, "rb")  # OpenTarget closes it
        except FileNotFoundError as error:
            raise TargetNotFoundError(f"no such file: {self.path}") from error

    def _open_writer(self) -> _LocalWriter:
        return _LocalWriter(self.path, self)
