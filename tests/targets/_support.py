"""Test doubles and helpers for the target tests."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import quote

import anyio.lowlevel

from asyncflow.errors import TargetNotFoundError
from asyncflow.targets import (
    GCSConfig,
    GCSPrefixTarget,
    GCSTarget,
    RequestRetry,
    S3Config,
    S3PrefixTarget,
    S3Target,
    Target,
)
from asyncflow.targets._prefix import RemotePrefixTarget
from asyncflow.targets._remote import RemoteTarget
from asyncflow.targets.base import AtomicWriter

TargetFactory = Callable[[str], Target]

FAST = RequestRetry(attempts=3, base_delay=0.001, max_delay=0.01)
"""Quick retries, for tests that go through a faulty proxy."""


@dataclass
class Backend:
    """One remote backend under test, reached directly or through a proxy."""

    name: str
    bucket: str
    endpoint: str

    def config(self, endpoint: str | None = None, retry: RequestRetry = FAST) -> Any:
        if self.name == "s3":
            return S3Config.from_env(endpoint_url=endpoint or self.endpoint, retry=retry)
        return GCSConfig.from_env(endpoint_url=endpoint or self.endpoint, retry=retry)

    def target(
        self, key: str, config: Any = None, *, create_only: bool = False
    ) -> RemoteTarget[Any]:
        if self.name == "s3":
            return S3Target(f"s3://{self.bucket}/{key}", config=config, create_only=create_only)
        return GCSTarget(f"gs://{self.bucket}/{key}", config=config, create_only=create_only)

    def prefix(self, key: str, config: Any = None, **options: Any) -> RemotePrefixTarget[Any]:
        if self.name == "s3":
            return S3PrefixTarget(f"s3://{self.bucket}/{key}", config=config, **options)
        return GCSPrefixTarget(f"gs://{self.bucket}/{key}", config=config, **options)

    async def stored_metadata(self, key: str) -> dict[str, str]:
        """The user metadata of an object, asked of the server directly."""
        if self.name == "s3":
            from aiobotocore.session import get_session

            async with get_session().create_client("s3", endpoint_url=self.endpoint) as s3:
                head = await s3.head_object(Bucket=self.bucket, Key=key)
                return dict(head["Metadata"])
        import aiohttp

        url = f"{self.endpoint}/storage/v1/b/{self.bucket}/o/{quote(key, safe='')}"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 200, await response.text()
            return dict(json.loads(await response.read()).get("metadata") or {})

    async def pending_uploads(self) -> int:
        """Multipart uploads pending in the bucket (S3; GCS cannot list its sessions: 0)."""
        if self.name != "s3":
            return 0
        from aiobotocore.session import get_session

        async with get_session().create_client("s3", endpoint_url=self.endpoint) as s3:
            response = await s3.list_multipart_uploads(Bucket=self.bucket)
            return len(response.get("Uploads", ()))


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
