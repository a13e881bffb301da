"""Luigi's ``LocalTarget`` and ``LocalFileSystem``, over asyncflow's local files.

Writes go through asyncflow's atomic local writer (a hidden temporary file
beside the target, fsynced, then renamed), so a ``LocalTarget`` written in a
run also honours the run's commit guard.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from typing import Any

from ..targets import local as _local
from ._sync import ready, wants_awaitable
from .format import Format
from .target import (
    FileAlreadyExists,
    FileSystem,
    FileSystemTarget,
    MissingParentDirectory,
    NotADirectory,
    open_luigi,
)

__all__ = ["LocalFileSystem", "LocalTarget"]


class LocalFileSystem(FileSystem):
    """Operations on local paths."""

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def mkdir(self, path: str, parents: bool = True, raise_if_exists: bool = False) -> None:
        if os.path.exists(path):
            if raise_if_exists:
                raise FileAlreadyExists(f"already exists: {path}")
            if not os.path.isdir(path):
                raise NotADirectory(f"not a folder: {path}")
            return
        if parents:
            os.makedirs(path, exist_ok=True)
            return
        if not os.path.exists(os.path.dirname(path) or "."):
            raise MissingParentDirectory(f"no parent folder for {path}")
        os.mkdir(path)

    def listdir(self, path: str) -> Iterator[str]:
        """Every file under ``path``, recursively."""
        for folder, _, files in os.walk(path):
            for name in files:
                yield os.path.join(folder, name)

    def remove(self, path: str, recursive: bool = True, skip_trash: bool = True) -> None:
        if recursive and os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)

    def move(self, old_path: str, new_path: str, raise_if_exists: bool = False) -> None:
        """Move a file (atomically within one file system)."""
        if raise_if_exists and os.path.exists(new_path):
            raise FileAlreadyExists(f"destination exists: {new_path}")
        folder = os.path.dirname(new_path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        try:
            os.replace(old_path, new_path)
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
            temp = f"{new_path}-{random.randrange(1_000_000_000):09d}"
            shutil.copy(old_path, temp)
            os.replace(temp, new_path)
            os.remove(old_path)

    def rename_dont_move(self, path: str, dest: str) -> None:
        self.move(path, dest, raise_if_exists=True)

    def copy(self, old_path: str, new_path: str, raise_if_exists: bool = False) -> None:
        if raise_if_exists and os.path.exists(new_path):
            raise FileAlreadyExists(f"destination exists: {new_path}")
        folder = os.path.dirname(new_path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        shutil.copy(old_path, new_path)


class LocalTarget(FileSystemTarget, _local.LocalTarget):
    """A local file, as in Luigi: ``LocalTarget(path, format=None, is_tmp=False)``.

    ``is_tmp=True`` without a path picks a fresh path in the temporary folder,
    removed when the target is garbage-collected.
    """

    fs = LocalFileSystem()

    def __init__(self, path: Any = None, format: Format | None = None, is_tmp: bool = False):
        if not path:
            if not is_tmp:
                raise ValueError("LocalTarget: give a path, or is_tmp=True")
            name = f"luigi-tmp-{random.randrange(1_000_000_000):09d}"
            path = os.path.join(tempfile.gettempdir(), name)
        _local.LocalTarget.__init__(self, str(path))
        self.format = format
        self.is_tmp = is_tmp

    def exists(self) -> Any:
        """Whether the path exists (awaitable on the event loop: one stat, no thread)."""
        found = os.path.exists(self.path)
        return ready(found) if wants_awaitable() else found

    exists.__asyncflow_dual__ = True  # type: ignore[attr-defined]

    def open(self, mode: str = "r") -> Any:
        """A file to read or write (see :mod:`asyncflow.luigi.target`)."""
        return open_luigi(self, mode, self.format, before_write=self.makedirs)

    def remove(self) -> Any:
        """Delete the file (or folder, recursively); awaitable on the event loop."""
        if wants_awaitable():
            return _local.LocalTarget.remove(self)
        self.fs.remove(self.path)
        return None

    def makedirs(self) -> None:
        """Create the parent folders if they do not exist."""
        parent = os.path.dirname(os.path.normpath(self.path))
        if parent:
            os.makedirs(parent, exist_ok=True)

    def move(self, new_path: str, raise_if_exists: bool = False) -> None:
        self.fs.move(self.path, new_path, raise_if_exists=raise_if_exists)

    def move_dir(self, new_path: str) -> None:
        self.move(new_path)

    def copy(self, new_path: str, raise_if_exists: bool = False) -> None:
        self.fs.copy(self.path, new_path, raise_if_exists)

    @property
    def fn(self) -> str:
        warnings.warn("Use LocalTarget.path", DeprecationWarning, stacklevel=2)
        return self.path

    def __del__(self) -> None:
        if getattr(self, "is_tmp", False) and os.path.exists(self.path):
            with contextlib.suppress(OSError):
                self.fs.remove(self.path)
