"""What ``Journal.open()`` returns, for every backend: awaitable, or an async context manager.

``journal = await X.open(...)`` gives an open journal whose background work
the caller runs (``journal.serve()``) and closes; ``async with X.open(...) as
journal:`` also runs that work in a task group and closes the journal at the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from types import TracebackType
from typing import Any, Generic, NoReturn, Protocol, TypeVar

import anyio
from anyio.abc import TaskStatus

__all__ = ["Opening", "Served"]


class Served(Protocol):
    """A journal as :class:`Opening` needs it: background work, and closing."""

    async def serve(self, *, task_status: TaskStatus[None] = ...) -> None: ...

    async def close(self) -> None: ...


J = TypeVar("J", bound=Served)


class Opening(Generic[J]):
    """What ``open()`` returns: awaitable, or an async context manager."""

    def __init__(self, opener: Callable[[], Awaitable[J]]) -> None:
        self._opener = opener
        self._session: contextlib.AbstractAsyncContextManager[J] | None = None

    def __await__(self) -> Generator[Any, None, J]:
        return self._opener().__await__()

    async def __aenter__(self) -> J:
        self._session = _serving(self._opener)
        return await self._session.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._session is not None
        return await self._session.__aexit__(exc_type, exc, tb)


@contextlib.asynccontextmanager
async def _serving(opener: Callable[[], Awaitable[J]]) -> AsyncIterator[J]:
    journal = await opener()
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(journal.serve)
            try:
                yield journal
            finally:
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The background tasks never raise, so the group only wraps the body's
        # own exception: hand that back as it was raised.
        sole = _sole(group)
        if sole is None:
            raise
        _reraise(sole)
    finally:
        await journal.close()


def _sole(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    found: BaseException = group
    while isinstance(found, BaseExceptionGroup):
        if len(found.exceptions) != 1:
            return None
        found = found.exceptions[0]
    return found


def _reraise(exc: BaseException) -> NoReturn:
    context, suppress = exc.__context__, exc.__suppress_context__
    try:
        raise exc
    finally:
        exc.__context__, exc.__suppress_context__ = context, suppress
