"""Luigi's ``S3Target``, ``S3FlagTarget`` and ``S3Client`` over asyncflow's S3 targets.

``S3Client(aws_access_key_id=..., aws_secret_access_key=..., aws_session_token=...,
endpoint_url=..., region_name=...)`` becomes an :class:`asyncflow.targets.S3Config`;
without a client the configuration comes from the usual AWS environment
variables.
"""

from __future__ import annotations

from typing import Any

from ...targets import s3 as _s3
from .._sync import run_async, wants_awaitable
from ..format import Format
from ..target import FileSystem, FileSystemTarget
from ._remote import RemoteLuigiTarget

__all__ = ["S3Client", "S3FlagTarget", "S3Target"]


class S3Client(FileSystem):
    """Where and how to reach S3, and a few operations on ``s3://`` paths."""

    def __init__(
        self,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        **options: Any,
    ) -> None:
        overrides: dict[str, Any] = {}
        if aws_access_key_id is not None:
            overrides["access_key_id"] = aws_access_key_id
        if aws_secret_access_key is not None:
            overrides["secret_access_key"] = aws_secret_access_key
        if aws_session_token is not None:
            overrides["session_token"] = aws_session_token
        if "endpoint_url" in options:
            overrides["endpoint_url"] = options.pop("endpoint_url")
        if "region_name" in options:
            overrides["region"] = options.pop("region_name")
        self.config = _s3.S3Config.from_env(**overrides)
        self.options = options

    def _target(self, path: str) -> S3Target:
        return S3Target(path, client=self)

    def exists(self, path: str) -> bool:
        return bool(self._target(path).exists())

    def remove(self, path: str, recursive: bool = True, skip_trash: bool = True) -> None:
        self._target(path).remove()

    def put_string(self, content: str | bytes, destination_s3_path: str, **kwargs: Any) -> None:
        data = content.encode() if isinstance(content, str) else content
        with self._target(destination_s3_path).open("wb") as file:
            file.write(data)

    def put(self, local_path: str, destination_s3_path: str, **kwargs: Any) -> None:
        with open(local_path, "rb") as source:
            self.put_string(source.read(), destination_s3_path)

    def get_as_bytes(self, s3_path: str) -> bytes:
        with self._target(s3_path).open("rb") as file:
            return bytes(file.read())

    def get_as_string(self, s3_path: str, encoding: str = "utf-8") -> str:
        return self.get_as_bytes(s3_path).decode(encoding)

    def get(self, s3_path: str, destination_local_path: str) -> None:
        with open(destination_local_path, "wb") as out:
            out.write(self.get_as_bytes(s3_path))

    def mkdir(self, path: str, parents: bool = True, raise_if_exists: bool = False) -> None:
        """S3 has no folders: nothing to make."""


class S3Target(RemoteLuigiTarget, FileSystemTarget, _s3.S3Target):  # type: ignore[override]
    """An S3 object, ``S3Target(path, format=None, client=None)``."""

    def __init__(
        self, path: str, format: Format | None = None, client: S3Client | None = None, **kwargs: Any
    ) -> None:
        _s3.S3Target.__init__(self, str(path), config=client.config if client else None)
        self.format = format
        self.client = client

    @property
    def fs(self) -> S3Client:
        return self.client or S3Client()


class S3FlagTarget(FileSystemTarget, _s3.S3PrefixTarget):
    """A folder of objects, complete once its flag object (``_SUCCESS``) exists."""

    def __init__(
        self,
        path: str,
        format: Format | None = None,
        client: S3Client | None = None,
        flag: str = "_SUCCESS",
    ) -> None:
        if flag != "_SUCCESS":
            raise ValueError("S3FlagTarget: only the _SUCCESS flag is supported")
        _s3.S3PrefixTarget.__init__(self, str(path), config=client.config if client else None)
        self.format = format
        self.flag = flag

    @property
    def path(self) -> str:  # type: ignore[override]
        return self.url

    def exists(self) -> Any:
        if wants_awaitable():
            return _s3.S3PrefixTarget.exists(self)
        return run_async(_s3.S3PrefixTarget.exists, self)

    exists.__asyncflow_dual__ = True  # type: ignore[attr-defined]
