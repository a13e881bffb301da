"""Long passes on the event loop in turns: the rest of the process has a turn
of the loop between two slices of the work.

A run shares its loop with the application around it (a web service, a
notebook's kernel): a pass over 400,000 tasks in one piece held it for a
fifth of a second or more. :func:`in_turns` gives a pass its slices (each
caller picks a slice of a few milliseconds' work); :func:`drain` shares
turns of about :data:`_TURN_SECONDS` among workers over a queue.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio

__all__ = ["drain", "in_turns"]

_T = TypeVar("_T")

_TURN_SECONDS = 0.01
"""How long drain()'s workers together keep the event loop from the rest of the
process, at most and give or take one item, while their items do not suspend."""


async def in_turns(items: Sequence[_T], size: int) -> AsyncIterator[Sequence[_T]]:
    """``items``, ``size`` at a time, with a turn of the loop between two slices."""
    for start in range(0, len(items), size):
        if start:
            await asyncio.sleep(0)
        yield items[start : start + size]


async def drain(
    queue: deque[Any], process: Callable[[Any], Awaitable[None] | None], concurrency: int
) -> None:
    """Run ``process`` over a queue that processing may refill, ``concurrency`` at a time.

    ``process`` does what it can at once and returns what is left to await, if
    anything. Returns when the queue is empty and nothing is in flight.
    An exception of ``process`` (or of what it returned) ends the drain: the
    other workers are cancelled and it is raised in an exception group.
    """
    if not queue:
        return
    loop = asyncio.get_running_loop()
    idle: list[asyncio.Future[None]] = []
    busy = 0
    # Items that never suspend (plain requires(), in-memory probes) would let the
    # workers run one after the other within a single turn of the event loop, each
    # for as long as the queue lasts: the turn is shared, and ends for all of them.
    turn_ends = loop.time() + _TURN_SECONDS
    turn_over = False

    def next_turn() -> None:
        nonlocal turn_ends, turn_over
        turn_ends = loop.time() + _TURN_SECONDS
        turn_over = False

    def wake(count: int) -> None:
        while count > 0 and idle:
            waiter = idle.pop()
            if not waiter.done():
                waiter.set_result(None)
                count -= 1

    async def worker() -> None:
        nonlocal busy, turn_over
        while True:
            if turn_over:
                await asyncio.sleep(0)
                continue
            if queue:
                item = queue.popleft()
                busy += 1
                try:
                    rest = process(item)
                    if rest is not None:
                        await rest
                finally:
                    busy -= 1
                if idle:
                    if queue:
                        wake(len(queue))
                    elif busy == 0:
                        wake(len(idle))
                if loop.time() >= turn_ends and not turn_over:
                    turn_over = True
                    loop.call_soon(next_turn)  # before this worker's own next step
                    await asyncio.sleep(0)
                continue
            if busy == 0:
                return
            waiter = loop.create_future()
            idle.append(waiter)
            await waiter

    async with anyio.create_task_group() as tg:
        for _ in range(max(1, concurrency)):
            tg.start_soon(worker)
