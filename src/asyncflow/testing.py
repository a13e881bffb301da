"""Test doubles for code that uses asyncflow: in-memory targets and an event recorder.

::

    recorder = EventRecorder()
    result = await asyncflow.run(Report(date=d), handlers=[recorder], journal=None)
    assert recorder.kinds(Report(date=d)) == [Event.START, Event.SUCCESS, Event.PROCESSING_TIME]
"""

from __future__ import annotations

import anyio.lowlevel

from .events import Event, TaskEvent
from .targets.memory import MemoryStore, MemoryTarget
from .task import Task

__all__ = ["EventRecorder", "FakeClock", "MemoryStore", "MemoryTarget"]


class FakeClock:
    """A clock whose sleeps return at once, advancing virtual time.

    Pass it to a run (``run(..., clock=FakeClock())``) to test retry backoff
    without waiting: ``clock.sleeps`` lists every requested delay, in order.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._now += seconds
        await anyio.lowlevel.checkpoint()


class EventRecorder:
    """A run handler that keeps every event, in order."""

    def __init__(self) -> None:
        self.events: list[TaskEvent] = []

    def __call__(self, event: TaskEvent) -> None:
        self.events.append(event)

    def of(self, task: Task) -> list[TaskEvent]:
        """The events of one task."""
        return [e for e in self.events if e.task_id == task.task_id]

    def kinds(self, task: Task | None = None) -> list[Event]:
        """The kinds of event, of one task or of all."""
        events = self.events if task is None else self.of(task)
        return [e.kind for e in events]

    def clear(self) -> None:
        self.events.clear()
