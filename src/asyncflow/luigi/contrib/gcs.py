"""Luigi's ``GCSTarget`` and ``GCSClient`` over asyncflow's GCS targets.

``GCSClient(oauth_credentials=None, ...)``: credentials objects are passed to
:class:`asyncflow.targets.GCSConfig`; the endpoint and project come from the
environment (``STORAGE_EMULATOR_HOST``, ``GOOGLE_CLOUD_PROJECT``).
"""

from __future__ import annotations

from typing import Any

from ...targets import gcs as _gcs
from ..format import Format
from ..target import FileSystem, FileSystemTarget
from ._remote import RemoteLuigiTarget

__all__ = ["GCSClient", "GCSFlagTarget", "GCSTarget"]


class GCSClient(FileSystem):
    """Where and how to reach GCS, and a few operations on ``gs://`` paths."""

    def __init__(
        self, oauth_credentials: Any = None, descriptor: str = "", http_: Any = None, **kwargs: Any
    ) -> None:
        overrides: dict[str, Any] = {}
        if oauth_credentials is not None:
            overrides["credentials"] = oauth_credentials
        self.config = _gcs.GCSConfig.from_env(**overrides)

    def _target(self, path: str) -> GCSTarget:
        return GCSTarget(path, client=self)

    def exists(self, path: str) -> bool:
        return bool(self._target(path).exists())

    def remove(self, path: str, recursive: bool = True, skip_trash: bool = True) -> None:
        self._target(path).remove()

    def put_string(self, contents: str | bytes, dest_path: str, **kwargs: Any) -> None:
        data = contents.encode() if isinstance(contents, str) else contents
        with self._target(dest_path).open("wb") as file:
            file.write(data)

    def download(self, path: str, **kwargs: Any) -> Any:
        return self._target(path).open("rb")

    def mkdir(self, path: str, parents: bool = True, raise_if_exists: bool = False) -> None:
        """GCS has no folders: nothing to make."""


class GCSTarget(RemoteLuigiTarget, FileSystemTarget, _gcs.GCSTarget):  # type: ignore[override]
    """A GCS object, ``GCSTarget(path, format=None, client=None)``."""

    def __init__(
        self, path: str, format: Format | None = None, client: GCSClient | None = None, **kw: Any
    ) -> None:
        _gcs.GCSTarget.__init__(self, str(path), config=client.config if client else None)
        self.format = format
        self.client = client

    @property
    def fs(self) -> GCSClient:
        return self.client or GCSClient()


class GCSFlagTarget(FileSystemTarget, _gcs.GCSPrefixTarget):
    """A folder of objects, complete once its ``_SUCCESS`` object exists."""

    def __init__(
        self,
        path: str,
        format: Format | None = None,
        client: GCSClient | None = None,
        flag: str = "_SUCCESS",
    ) -> None:
        if flag != "_SUCCESS":
            raise ValueError("GCSFlagTarget: only the _SUCCESS flag is supported")
        _gcs.GCSPrefixTarget.__init__(self, str(path), config=client.config if client else None)
        self.format = format
        self.flag = flag

    @property
    def path(self) -> str:  # type: ignore[override]
        return self.url

    def exists(self) -> Any:
        from .._sync import run_async, wants_awaitable

        if wants_awaitable():
            return _gcs.GCSPrefixTarget.exists(self)
        return run_async(_gcs.GCSPrefixTarget.exists, self)

    exists.__asyncflow_dual__ = True  # type: ignore[attr-defined]
