"""Fixtures shared by the target tests: one ``target_factory`` per backend.

A new backend joins the contract suite by adding a param to ``target_factory``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import anyio.lowlevel
import pytest

from asyncflow.errors import TargetNotFoundError
from asyncflow.targets import LocalTarget, MemoryStore, MemoryTarget, Target
from asyncflow.targets.base import AtomicWriter
from asyncflow.targets.memory import default_store

TargetFactory = Callable[[str], Target]


class AsyncOnlyTarget(Target):
    """A dict-backed target with async hooks only, shaped like the S3 and GCS backends.

    Every hook checkpoints, so it fails if it is ever run outside the event loop.
    """

    def __init__(self, key: str, data: dict[str, bytes]) -> None:
        self.key = key
        self._data = data

    def __repr__(self) -> str:
        return f"AsyncOnlyTarget({self.key!r})"

    async def exists(self) -> bool:
        await anyio.lowlevel.checkpoint()
        return self.key in self._data

    async def remove(self) -> None:
        await anyio.lowlevel.checkpoint()
        self._data.pop(self.key, None)

    async def _aopen_reader(self) -> BinaryIO:
        await anyio.lowlevel.checkpoint()
        if self.key not in self._data:
            raise TargetNotFoundError(f"{self!r}: no such object: {self.key}")
        return io.BytesIO(self._data[self.key])

    async def _aopen_writer(self) -> AtomicWriter:
        await anyio.lowlevel.checkpoint()
        return _AsyncOnlyWriter(self.key, self._data)


class _AsyncOnlyWriter(AtomicWriter):
    def __init__(self, key: str, data: dict[str, bytes]) -> None:
        self._key = key
        self._data = data
        self._buffer = io.BytesIO()
        self.file = self._buffer

    async def acommit(self) -> None:
        await anyio.lowlevel.checkpoint()  # where an upload would happen
        self._data[self._key] = self._buffer.getvalue()
        self._buffer.close()

    async def adiscard(self) -> None:
        await anyio.lowlevel.checkpoint()
        self._buffer.close()


@pytest.fixture(params=["local", "memory", "async-only"])
def target_factory(request: pytest.FixtureRequest, tmp_path: Path) -> TargetFactory:
    """Return a callable making a fresh target of one backend from a name."""
    if request.param == "local":
        return lambda name: LocalTarget(tmp_path / name)
    if request.param == "memory":
        store = MemoryStore()
        return lambda name: MemoryTarget(name, store)
    data: dict[str, bytes] = {}
    return lambda name: AsyncOnlyTarget(name, data)


@pytest.fixture
def clean_default_store() -> Iterator[MemoryStore]:
    """Yield the process-wide memory store, empty, and empty it again afterwards."""
    store = default_store()
    store.clear()
    yield store
    store.clear()
