"""Folder-like prefixes of objects, complete once a ``_SUCCESS`` marker exists.

Luigi's flag-target pattern for S3 and GCS: a job writes many objects under a
prefix and then, last, the marker. A reader (or the engine probing
completeness) looks only at the marker, so it never takes a half-written
folder for a complete one. :class:`~asyncflow.targets.S3PrefixTarget` and
:class:`~asyncflow.targets.GCSPrefixTarget` are the backends' flavours.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, BinaryIO, Final, Generic, TypeVar

import anyio

from ..errors import TargetError
from ._remote import RemoteTarget, ensure_client_scope, split_url, task_group
from .base import AtomicWriter, Target

__all__ = ["MARKER", "RemotePrefixTarget"]

MARKER: Final = "_SUCCESS"
"""Name of the object that marks a prefix target complete."""

_ChildT = TypeVar("_ChildT", bound="RemoteTarget[Any]")


class RemotePrefixTarget(Target, Generic[_ChildT]):
    """A folder-like prefix of objects, complete once its ``_SUCCESS`` marker exists.

    Write the objects under it inside :meth:`publish` (or all at once with
    :meth:`write_files`); the marker is written last, when the block exits
    cleanly, so a reader never takes a half-written folder for a complete one.
    A prefix target cannot be opened: open its :meth:`child` targets.
    """

    __slots__ = ("bucket", "create_only", "prefix")
    scheme: str = ""

    def __init__(self, url: str, *, create_only: bool = False) -> None:
        self.bucket, self.prefix = split_url(url, self.scheme, prefix=True)
        self.create_only = create_only

    @property
    def url(self) -> str:
        """``scheme://bucket/prefix/``."""
        return f"{self.scheme}://{self.bucket}/{self.prefix}"

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        extra = ", create_only=True" if self.create_only else ""
        return f"{type(self).__name__}({self.url!r}{extra})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RemotePrefixTarget) and type(other) is type(self):
            return self.marker == other.marker
        return NotImplemented

    def __hash__(self) -> int:
        return hash((type(self), self.marker))

    @abc.abstractmethod
    def _make_child(self, url: str, *, create_only: bool) -> _ChildT:
        """An object target of the same backend and configuration."""

    def child(self, name: str) -> _ChildT:
        """The object ``name`` (a relative key, may contain ``/``) under the prefix."""
        if not name or name.startswith("/"):
            raise ValueError(f"invalid name {name!r} under {self.url}")
        return self._make_child(self.url + name, create_only=False)

    @property
    def marker(self) -> _ChildT:
        """The ``_SUCCESS`` object whose existence makes the prefix complete."""
        return self._make_child(self.url + MARKER, create_only=self.create_only)

    async def exists(self) -> bool:
        """Whether the marker exists (one request)."""
        return await self.marker.exists()

    async def remove(self) -> None:
        """Delete the marker first (the prefix is incomplete from then on), then every object."""
        marker = self.marker
        await marker.remove()
        config = marker._resolved_config()
        async with marker._client(config) as client:
            token: str | None = None
            while True:
                keys, token = await client.list_page(self.bucket, self.prefix, token=token)
                if keys:
                    await client.delete_many(self.bucket, keys)
                if token is None:
                    return

    async def list_files(self) -> list[str]:
        """Names (relative to the prefix) of the objects under it, marker excluded, sorted."""
        marker = self.marker
        config = marker._resolved_config()
        names: list[str] = []
        async with marker._client(config) as client:
            token: str | None = None
            while True:
                keys, token = await client.list_page(self.bucket, self.prefix, token=token)
                names.extend(k[len(self.prefix) :] for k in keys if k != marker.key)
                if token is None:
                    return names

    @asynccontextmanager
    async def publish(self) -> AsyncIterator[RemotePrefixTarget[_ChildT]]:
        """Write objects under the prefix in the block; the marker follows a clean exit.

        ::

            async with prefix.publish() as out:
                await out.child("part-0.csv").write_text(...)

        Raises:
            TargetError: the marker exists and the target is ``create_only``.
        """
        async with ensure_client_scope():
            yield self
            await self.marker.write_bytes(b"")

    async def write_files(self, files: Mapping[str, bytes | str], *, concurrency: int = 8) -> None:
        """Write every ``name -> content`` under the prefix (concurrently), then the marker."""
        limiter = anyio.CapacityLimiter(concurrency)

        async def write(name: str, content: bytes | str) -> None:
            data = content.encode("utf-8") if isinstance(content, str) else content
            async with limiter:
                await self.child(name).write_bytes(data)

        async with self.publish(), task_group() as tg:
            for name, content in files.items():
                tg.start_soon(write, name, content)

    async def _aopen_reader(self) -> BinaryIO:
        raise TargetError(f"{self.url} is a prefix: open one of its child() targets instead")

    async def _aopen_writer(self) -> AtomicWriter:
        raise TargetError(
            f"{self.url} is a prefix: write its child() targets inside publish() instead"
        )
