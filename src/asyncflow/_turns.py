"""Long passes on the event loop, a slice at a time, the rest of the process
having a turn of the loop between two slices.

A run shares its loop with the application around it (a web service, a
notebook's kernel): a pass over 400,000 tasks in one piece held it for a
fifth of a second or more. Each caller picks a slice of a few milliseconds'
work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TypeVar

__all__ = ["in_turns"]

_T = TypeVar("_T")


async def in_turns(items: Sequence[_T], size: int) -> AsyncIterator[Sequence[_T]]:
    """``items``, ``size`` at a time, with a turn of the loop between two slices."""
    for start in range(0, len(items), size):
        if start:
            await asyncio.sleep(0)
        yield items[start : start + size]
