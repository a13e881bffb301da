"""Network clients shared by the targets of one run.

A run opens a :func:`client_scope`; targets get their client (an aiobotocore
S3 client, a gcsfs filesystem) from :func:`borrow_client`, keyed by whatever
identifies a configuration (endpoint, region, credentials). The first target
to ask creates the client; the rest of the run shares it; the scope closes it
when the run ends. Outside a run (a notebook calling ``await
target.exists()``), a client is created for the one call and closed after it.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any, Generic, TypeVar

import anyio

__all__ = ["ClientCache", "OnFirstUse", "borrow_client", "client_scope", "current_clients"]

_T = TypeVar("_T")

ClientFactory = Callable[[], AbstractAsyncContextManager[Any]]


class OnFirstUse(Generic[_T]):
    """Something opened on first use, once, even when several tasks ask for it at once."""

    def __init__(self, opener: Callable[[], Awaitable[_T]]) -> None:
        self._opener = opener
        self._value: _T | None = None
        self._lock = anyio.Lock()

    async def get(self) -> _T:
        """The value, opened now if this is the first use."""
        async with self._lock:
            if self._value is None:
                self._value = await self._opener()
            return self._value


class ClientCache:
    """Clients by key, each created once and closed with the cache."""

    def __init__(self) -> None:
        self._clients: dict[Hashable, Any] = {}
        self._locks: dict[Hashable, anyio.Lock] = {}
        self._stack = AsyncExitStack()
        self._closed = False

    def __len__(self) -> int:
        return len(self._clients)

    async def get(self, key: Hashable, factory: ClientFactory) -> Any:
        """The client for ``key``, created by entering ``factory()`` on first use."""
        client = self._clients.get(key)
        if client is not None:
            return client
        if self._closed:
            raise RuntimeError("the run's clients are already closed")
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:  # concurrent first uses share one creation
            client = self._clients.get(key)
            if client is None:
                client = await self._stack.enter_async_context(factory())
                self._clients[key] = client
        return client

    async def aclose(self) -> None:
        self._closed = True
        self._clients.clear()
        with anyio.CancelScope(shield=True):
            await self._stack.aclose()


_current: contextvars.ContextVar[ClientCache | None] = contextvars.ContextVar(
    "asyncflow_clients", default=None
)


def current_clients() -> ClientCache | None:
    """The client cache of the run this code runs in, if any."""
    return _current.get()


@asynccontextmanager
async def client_scope() -> AsyncIterator[ClientCache]:
    """Share clients among everything inside the block; close them at its end."""
    cache = ClientCache()
    token = _current.set(cache)
    try:
        yield cache
    finally:
        _current.reset(token)
        await cache.aclose()


@asynccontextmanager
async def borrow_client(key: Hashable, factory: ClientFactory) -> AsyncIterator[Any]:
    """The run's client for ``key``, or a client of its own for this block outside a run."""
    cache = _current.get()
    if cache is not None:
        yield await cache.get(key, factory)
        return
    async with factory() as client:
        yield client
