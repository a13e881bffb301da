"""What the Luigi S3 and GCS targets share: Luigi's sync surface over asyncflow's
remote targets (answers on the event loop are awaitable, see ``asyncflow.luigi._sync``)."""

from __future__ import annotations

from typing import Any

from ...targets._remote import RemoteTarget
from .._sync import run_async, wants_awaitable
from ..format import Format
from ..target import open_luigi

__all__ = ["RemoteLuigiTarget"]


class RemoteLuigiTarget:
    """Mixin for a Luigi target over an asyncflow :class:`RemoteTarget`."""

    format: Format | None

    @property
    def path(self) -> str:
        return self.url  # type: ignore[attr-defined,no-any-return]

    def exists(self) -> Any:
        if wants_awaitable():
            return RemoteTarget.exists(self)  # type: ignore[arg-type]
        return run_async(RemoteTarget.exists, self)

    exists.__asyncflow_dual__ = True  # type: ignore[attr-defined]

    def remove(self) -> Any:
        if wants_awaitable():
            return RemoteTarget.remove(self)  # type: ignore[arg-type]
        return run_async(RemoteTarget.remove, self)

    def open(self, mode: str = "r") -> Any:
        return open_luigi(self, mode, self.format)  # type: ignore[arg-type]
