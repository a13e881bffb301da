"""Luigi's ``MockTarget`` and ``MockFileSystem``: files kept in memory, in this process.

Every ``MockTarget`` shares one store (as in Luigi); ``MockFileSystem().clear()``
empties it. The store is asyncflow's :class:`~asyncflow.MemoryStore`, so a
``MockTarget`` is also an asyncflow memory target.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..targets import memory as _memory
from ._sync import ready, wants_awaitable
from .format import Format
from .target import FileAlreadyExists, FileSystem, FileSystemTarget, open_luigi

__all__ = ["MockFileSystem", "MockTarget"]

_STORE = _memory.MemoryStore()


class MockFileSystem(FileSystem):
    """Paths in the shared in-memory store."""

    def get_all_data(self) -> dict[str, bytes]:
        """Every stored path and its bytes (the store itself)."""
        return _STORE._data

    def get_data(self, fn: str) -> bytes:
        return _STORE._data[fn]

    def exists(self, path: str) -> bool:
        return path in _STORE._data

    def remove(self, path: str, recursive: bool = True, skip_trash: bool = True) -> None:
        data = _STORE._data
        if recursive:
            for key in [k for k in data if k == path or k.startswith(path.rstrip("/") + "/")]:
                del data[key]
        else:
            data.pop(path, None)

    def move(self, path: str, dest: str, raise_if_exists: bool = False) -> None:
        data = _STORE._data
        if raise_if_exists and dest in data:
            raise FileAlreadyExists(f"destination exists: {dest}")
        data[dest] = data.pop(path)

    def copy(self, path: str, dest: str, raise_if_exists: bool = False) -> None:
        data = _STORE._data
        if raise_if_exists and dest in data:
            raise FileAlreadyExists(f"destination exists: {dest}")
        data[dest] = data[path]

    def listdir(self, path: str) -> Iterator[str]:
        return iter(sorted(k for k in _STORE._data if k.startswith(path)))

    def isdir(self, path: str) -> bool:
        prefix = path.rstrip("/") + "/"
        return any(k.startswith(prefix) for k in _STORE._data)

    def mkdir(self, path: str, parents: bool = True, raise_if_exists: bool = False) -> None:
        """Folders need no making in memory."""

    def clear(self) -> None:
        _STORE.clear()


class MockTarget(FileSystemTarget, _memory.MemoryTarget):
    """A file in memory: ``MockTarget(fn, is_tmp=None, mirror_on_stderr=False, format=None)``."""

    fs = MockFileSystem()

    def __init__(
        self,
        fn: str,
        is_tmp: Any = None,
        mirror_on_stderr: bool = False,
        format: Format | None = None,
    ) -> None:
        _memory.MemoryTarget.__init__(self, str(fn), _STORE)
        self.path = str(fn)
        self.is_tmp = is_tmp
        self.mirror_on_stderr = mirror_on_stderr
        self.format = format

    def __repr__(self) -> str:
        return f"MockTarget({self.path!r})"

    def exists(self) -> Any:
        found = self.path in _STORE._data
        return ready(found) if wants_awaitable() else found

    exists.__asyncflow_dual__ = True  # type: ignore[attr-defined]

    def open(self, mode: str = "r") -> Any:
        return open_luigi(self, mode, self.format)

    def remove(self) -> Any:
        if wants_awaitable():
            return _memory.MemoryTarget.remove(self)
        self.fs.remove(self.path)
        return None

    def move(self, path: str, raise_if_exists: bool = False) -> None:
        self.fs.move(self.path, path, raise_if_exists=raise_if_exists)

    def rename(self, *args: Any, **kwargs: Any) -> None:
        self.move(*args, **kwargs)
