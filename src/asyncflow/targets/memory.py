"""Targets held in memory, for tests and notebooks.

A :class:`MemoryStore` maps keys to bytes. A :class:`MemoryTarget` created
without a store uses the process-wide store returned by :func:`default_store`,
so two targets with the same key see the same data; tests that rely on it call
``default_store().clear()``. Pass your own store to keep things isolated.

No locks are needed: committing a write is one dict assignment and
``exists()`` one dict lookup, both atomic under the GIL, so targets can be
used from the event loop and from worker threads at once.
"""

from __future__ import annotations

import io
from typing import BinaryIO, final

from ..errors import TargetNotFoundError
from .base import AtomicWriter, Target, check_commit

__all__ = ["MemoryStore", "MemoryTarget", "default_store"]


@final
class MemoryStore:
    """Bytes by key: the storage behind :class:`MemoryTarget`."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"<MemoryStore at {id(self):#x}: {len(self._data)} keys>"

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def keys(self) -> list[str]:
        """Return the stored keys, sorted."""
        return sorted(self._data)

    def get(self, key: str) -> bytes | None:
        """Return the bytes stored under ``key``, or None."""
        return self._data.get(key)

    def clear(self) -> None:
        """Remove every key."""
        self._data.clear()


_DEFAULT_STORE = MemoryStore()


def default_store() -> MemoryStore:
    """Return the process-wide store used by targets created without one."""
    return _DEFAULT_STORE


class _MemoryWriter(AtomicWriter):
    def __init__(self, data: dict[str, bytes], key: str) -> None:
        self._data = data
        self._key = key
        self._buffer = io.BytesIO()
        self.file = self._buffer

    def commit(self) -> None:
        value = self._buffer.getvalue()
        self._buffer.close()
        self._data[self._key] = value

    async def acommit(self) -> None:
        self.commit()

    def discard(self) -> None:
        self.file.close()

    async def adiscard(self) -> None:
        self.discard()


class MemoryTarget(Target):
    """A key in a :class:`MemoryStore` (by default, the process-wide one)."""

    __slots__ = ("_data", "key", "store")

    def __init__(self, key: str, store: MemoryStore | None = None) -> None:
        self.key = key
        self.store = _DEFAULT_STORE if store is None else store
        self._data = self.store._data  # one attribute lookup less in exists()

    def __repr__(self) -> str:
        if self.store is _DEFAULT_STORE:
            return f"{type(self).__name__}({self.key!r})"
        return f"{type(self).__name__}({self.key!r}, store={self.store!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MemoryTarget) and type(other) is type(self):
            return self.store is other.store and self.key == other.key
        return NotImplemented

    def __hash__(self) -> int:
        return hash((type(self), id(self.store), self.key))

    async def exists(self) -> bool:
        """Return whether the key is in the store (one dict lookup)."""
        return self.key in self._data

    async def remove(self) -> None:
        """Delete the key if present."""
        self._data.pop(self.key, None)

    async def read_bytes(self) -> bytes:
        """Return the stored bytes (no worker thread: it is a dict lookup)."""
        try:
            return self._data[self.key]
        except KeyError:
            raise TargetNotFoundError(f"{self!r} does not exist") from None

    async def read_text(self) -> str:
        return (await self.read_bytes()).decode("utf-8")

    async def write_bytes(self, data: bytes) -> None:
        """Store ``data`` at once (one dict assignment, atomic).

        Raises:
            TargetError: the engine refuses the commit (the task's attempt lost
                its lease, or was abandoned), as for a write through :meth:`open`.
        """
        check_commit(self)  # this shortcut skips OpenTarget, which asks otherwise
        self._data[self.key] = bytes(data)

    async def write_text(self, text: str) -> None:
        await self.write_bytes(text.encode("utf-8"))

    def _open_reader(self) -> BinaryIO:
        try:
            return io.BytesIO(self._data[self.key])
        except KeyError:
            raise TargetNotFoundError(f"{self!r} does not exist") from None

    async def _aopen_reader(self) -> BinaryIO:
        return self._open_reader()

    def _open_writer(self) -> AtomicWriter:
        return _MemoryWriter(self._data, self.key)

    async def _aopen_writer(self) -> AtomicWriter:
        return self._open_writer()
