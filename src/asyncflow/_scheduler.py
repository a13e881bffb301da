"""Which ready task starts next: priority, per-family limits and resources.

Ready tasks wait in one heap per task class (tasks of a class share their
resource request and family limit), ordered by priority and then by when they
became ready. ``get()`` walks the class heads in that same order: a class at its
``max_running`` limit is skipped; a head whose resources do not fit reserves
them, so that the tasks behind it only use what is left. A pick therefore costs
O(classes), never O(ready tasks).

A run without resources and limits uses one plain heap instead.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Mapping

from .graph import Node
from .resources import ResourcePool

__all__ = ["Scheduler"]


class _Group:
    __slots__ = ("heap", "limit", "request", "running")

    def __init__(self, request: Mapping[str, float], limit: int | None) -> None:
        self.request = dict(request)
        self.limit = limit
        self.running = 0
        self.heap: list[tuple[int, int, Node]] = []


class Scheduler:
    """The ready tasks of a run and the policy for starting them."""

    def __init__(
        self,
        pool: ResourcePool,
        limits: Mapping[type, int | None],
        requests: Mapping[type, Mapping[str, float]],
    ) -> None:
        self._pool = pool
        self._limits = dict(limits)
        self._requests = dict(requests)
        self._constrained = any(v is not None for v in self._limits.values()) or any(
            self._requests.values()
        )
        self._groups: dict[type, _Group] = {}
        self._heap: list[tuple[int, int, Node]] = []
        self._order = itertools.count()
        self._queued = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    def __len__(self) -> int:
        return self._queued

    @property
    def pool(self) -> ResourcePool:
        return self._pool

    def push(self, node: Node) -> None:
        entry = (-node.priority, next(self._order), node)
        self._queued += 1
        if self._constrained:
            cls = type(node.task)
            group = self._groups.get(cls)
            if group is None:
                group = self._groups[cls] = _Group(
                    self._requests.get(cls, {}), self._limits.get(cls)
                )
            heapq.heappush(group.heap, entry)
        else:
            heapq.heappush(self._heap, entry)
        self._wake_one()

    def close(self) -> None:
        """No more pushes: ``get()`` returns None once nothing is queued."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def get_nowait(self) -> Node | None:
        """The next task to start, if one can start now (else None: see :meth:`get`).

        Saves the worker a coroutine per task when tasks are ready (most of the time).
        """
        node = self._pick()
        if node is not None and self._queued:
            self._wake_one()  # maybe another fits too
        return node

    async def get(self) -> Node | None:
        """The next task to start (its resources acquired), or None when all is done."""
        while True:
            node = self.get_nowait()
            if node is not None:
                return node
            if self._closed and not self._queued:
                return None
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # pass on a wake-up this worker will not use
                raise

    def done(self, node: Node) -> None:
        """``node``'s attempt ended: give back its family slot and resources."""
        if not self._constrained:
            return
        group = self._groups[type(node.task)]
        group.running -= 1
        self.release(node, node.held)
        self._wake_one()

    def release(self, node: Node, amounts: Mapping[str, float] | None) -> None:
        """Give back some or all of what ``node`` holds."""
        if not amounts:
            return
        held = node.held or {}
        give = {name: min(amount, held.get(name, 0.0)) for name, amount in amounts.items()}
        self._pool.release(give)
        node.held = {name: held[name] - give.get(name, 0.0) for name in held}
        self._wake_one()

    def _pick(self) -> Node | None:
        if not self._constrained:
            if self._heap:
                self._queued -= 1
                return heapq.heappop(self._heap)[2]
            return None
        heads = sorted((group.heap[0][:2], group) for group in self._groups.values() if group.heap)
        reserved: dict[str, float] = {}
        waiting: dict[str, int] = {}
        picked: Node | None = None
        for _, group in heads:
            if picked is not None:
                break
            if group.limit is not None and group.running >= group.limit:
                continue
            if self._pool.fits(group.request, reserved):
                picked = heapq.heappop(group.heap)[2]
                self._queued -= 1
                group.running += 1
                self._pool.acquire(group.request)
                picked.held = dict(group.request)
            else:
                for name, amount in group.request.items():
                    reserved[name] = reserved.get(name, 0.0) + amount
                    waiting[name] = waiting.get(name, 0) + len(group.heap)
        self._pool.set_waiting(waiting)
        return picked

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
