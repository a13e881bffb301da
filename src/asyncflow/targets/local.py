"""Files on the local filesystem, written atomically.

A write goes to a hidden temporary file next to the target
(``.name.tmp-<random>``), which is flushed, fsynced and then moved onto the
final path with :func:`os.replace`; the folder is fsynced afterwards so the
rename survives a crash. Readers never see a partial file, and a reader that
already had the old file open keeps reading the old content.

``LocalTarget`` implements the synchronous hooks only; the base class runs
them in a worker thread for ``async with``, so opening, creating folders,
fsyncing, renaming and deleting never block the event loop. Reads and writes
on the returned file object are ordinary buffered file calls: in a coroutine,
large ones are better done with ``anyio.to_thread.run_sync`` (as the
``read_*``/``write_*`` helpers do).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import BinaryIO

import anyio.to_thread

from ..errors import TargetNotFoundError
from .base import AtomicWriter, Target

__all__ = ["LocalTarget"]

# O_BINARY exists (and matters) only on Windows.
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def _fsync_folder(folder: str) -> None:
    if os.name != "posix":  # folders cannot be opened on Windows
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_if_present(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


class _LocalWriter(AtomicWriter):
    """Writes to a hidden temporary file in the target's folder."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._folder, name = os.path.split(os.path.abspath(path))
        os.makedirs(self._folder, exist_ok=True)
        self._temp = os.path.join(self._folder, f".{name}.tmp-{secrets.token_hex(6)}")
        # 0o666 minus the umask, like open(): a temp file from mkstemp would be 0o600.
        fd = os.open(self._temp, _TEMP_FLAGS, 0o666)
        try:
            self.file = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            _remove_if_present(self._temp)
            raise

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self._temp, self._path)
        _fsync_folder(self._folder)

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

    def _open_reader(self) -> BinaryIO:
        try:
            return open(self.path, "rb")  # OpenTarget closes it
        except FileNotFoundError as error:
            raise TargetNotFoundError(f"no such file: {self.path}") from error

    def _open_writer(self) -> _LocalWriter:
        return _LocalWriter(self.path)
