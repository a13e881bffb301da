"""Test doubles and helpers for the target tests."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import BinaryIO

import anyio.lowlevel

from asyncflow.errors import TargetNotFoundError
from asyncflow.targets import Target
from asyncflow.targets.base import AtomicWriter

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


class Boom(Exception):
    """The exception tests raise inside write blocks."""


async def write_then_raise(target: Target, text: str) -> None:
    """Write ``text`` in an ``async with`` block that then raises Boom."""
    async with target.open("w") as f:
        f.write(text)
        raise Boom


async def write_bytes_then_raise(target: Target, data: bytes) -> None:
    """Write ``data`` in an ``async with`` block that then raises Boom."""
    async with target.open("wb") as f:
        f.write(data)
        raise Boom


def write_then_raise_sync(target: Target, text: str) -> None:
    """Write ``text`` in a plain ``with`` block that then raises Boom."""
    with target.open("w") as f:
        f.write(text)
        raise Boom
