"""The ready queue: tasks whose requirements are done, highest priority first."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from typing import Generic, Protocol, TypeVar


class _Prioritised(Protocol):
    priority: int


_N = TypeVar("_N", bound=_Prioritised)


class ReadyQueue(Generic[_N]):
    """A priority queue that workers await; FIFO among equal priorities.

    ``get()`` returns None once the queue is closed and empty.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, _N]] = []
        self._order = itertools.count()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, node: _N) -> None:
        heapq.heappush(self._heap, (-node.priority, next(self._order), node))
        self._wake_one()

    def close(self) -> None:
        """No more pushes: waiting and later ``get()`` calls return None once empty."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def get(self) -> _N | None:
        while True:
            if self._heap:
                return heapq.heappop(self._heap)[2]
            if self._closed:
                return None
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                # Cancelled while waiting: pass a wake-up we may have consumed on.
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()
                raise

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
