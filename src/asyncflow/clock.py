"""Time, injectable: the executor sleeps between retries through a clock.

``SystemClock`` is the default. ``asyncflow.testing.FakeClock`` makes backoff
tests deterministic: its sleeps return at once and advance virtual time.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

import anyio

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What the executor needs of time."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``; cancellable."""
        ...


class SystemClock:
    """Real time: ``time.monotonic()`` and ``anyio.sleep()``."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)
